#pragma once
// The kernel's jhash as nftables' `jhash ... mod N seed S` computes it, so that tests and
// tools can predict which bucket a flow lands in without asking the kernel.
//
// nft_hash.c hashes the raw bytes of its source registers with jhash() from
// include/linux/jhash.h (Bob Jenkins' lookup3, reading 32-bit words in CPU byte order,
// little-endian on the machines shoal targets) and scales the result to 0..N-1 with
// reciprocal_scale(). A concatenation `ip saddr . th sport` occupies whole 32-bit registers:
// each field is padded with zero bytes to a multiple of 4 bytes, so the hashed bytes are
// saddr (4 or 16) + sport (2) + 00 00 [+ dport (2) + 00 00].

#include <cstdint>
#include <span>
#include <vector>

#include "core/cluster_definition.h"
#include "core/ip_address.h"

namespace shoal::dataplane {

/// jhash() of include/linux/jhash.h over `bytes` with `seed`, with 32-bit words read
/// little-endian (the kernel reads them in CPU order; shoal targets little-endian CPUs).
uint32_t jhash(std::span<const uint8_t> bytes, uint32_t seed);

/// reciprocal_scale(): maps a 32-bit hash to 0..modulus-1 as the kernel does
/// ((hash * modulus) >> 32). `modulus` must be at least 1.
uint32_t reciprocalScale(uint32_t hash, uint32_t modulus);

/// IP protocol numbers whose first four transport bytes are source and destination port.
/// Only these are hashed with ports in the port modes; other protocols hash the source
/// address alone (see nft_ruleset.h).
bool protocolHasPorts(uint8_t ip_protocol);

/// One packet's hashed fields. Ports are host-order values.
struct FlowKey {
  IpAddress source;
  uint8_t protocol = 17;  ///< IP protocol number (6 TCP, 17 UDP)
  uint16_t source_port = 0;
  uint16_t dest_port = 0;
};

/// The bytes nftables feeds to jhash for `flow` under `mode`, padding included.
std::vector<uint8_t> hashInput(const FlowKey& flow, HashMode mode);

/// The bucket (0..buckets-1) the nftables backend assigns `flow` for a service with this
/// hash mode, bucket count and seed.
uint32_t bucketOf(const FlowKey& flow, HashMode mode, uint32_t buckets, uint32_t seed);

}  // namespace shoal::dataplane
