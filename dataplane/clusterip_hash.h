#pragma once
// Which bucket CLUSTERIP puts a packet in, computed the way ipt_CLUSTERIP.c (Linux 6.1,
// clusterip_hashfn) does, so tests and tools can predict the answering node on the CLUSTERIP
// backend. It differs from the nftables backend's hash (dataplane/jhash.h): CLUSTERIP calls
// jhash_1word / jhash_2words / jhash_3words on the host-order source address and the ports
// exactly as they sit in the packet (network byte order read as a CPU word, zero-extended),
// seeded with the rule's --hash-init, then reciprocal_scale() to 0..N-1 (node numbers are
// that plus one). Protocols without ports (proto_ports_offset() < 0, ICMP among them) hash
// ports as 0. The kernel re-hashes every packet, established flows included.

#include <cstdint>

#include "core/cluster_definition.h"
#include "core/ip_address.h"

namespace shoal::dataplane::clusterip {

/// jhash_3words() of include/linux/jhash.h (__jhash_nwords with seed + JHASH_INITVAL +
/// (words << 2)); jhash_1word(a) is jhashWords(a, 0, 0, 1, seed), jhash_2words(a, b) is
/// jhashWords(a, b, 0, 2, seed). `words` is 1, 2 or 3.
uint32_t jhashWords(uint32_t a, uint32_t b, uint32_t c, uint32_t words, uint32_t seed);

/// The bucket (0..buckets-1) of a packet from `source`:`source_port` to `dest_port` (ports in
/// host order; ignored by the modes that do not use them; pass 0 for protocols without
/// ports) for a CLUSTERIP service with this hash mode, bucket count and seed. `source` must
/// be IPv4.
uint32_t bucketOf(const IpAddress& source, uint16_t source_port, uint16_t dest_port, HashMode mode,
                  uint32_t buckets, uint32_t seed);

}  // namespace shoal::dataplane::clusterip
