#pragma once
// Which bucket CLUSTERIP puts a packet in, computed the way ipt_CLUSTERIP.c does, so tests
// and tools can predict the answering node on the CLUSTERIP backend. It differs from the
// nftables backend's hash (dataplane/jhash.h): CLUSTERIP calls jhash_1word / jhash_2words /
// jhash_3words on the host-order source address and the ports exactly as they sit in the
// packet (network byte order read as a CPU word), then reciprocal_scale() to 0..N-1 (node
// numbers are that plus one).

#include <cstdint>

#include "core/cluster_definition.h"
#include "core/ip_address.h"

namespace shoal::dataplane::clusterip {

/// jhash_3words() of include/linux/jhash.h; jhash_1word(a) is jhash3(a, 0, 0) with
/// words = 1, jhash_2words(a, b) is jhash3(a, b, 0) with words = 2.
uint32_t jhashWords(uint32_t a, uint32_t b, uint32_t c, uint32_t words, uint32_t seed);

/// The bucket (0..buckets-1) of a packet from `source`:`source_port` to `dest_port` (ports in
/// host order; ignored by the modes that do not use them; pass 0 for protocols without
/// ports) for a CLUSTERIP service with this hash mode, bucket count and seed. `source` must
/// be IPv4.
uint32_t bucketOf(const IpAddress& source, uint16_t source_port, uint16_t dest_port,
                  HashMode mode, uint32_t buckets, uint32_t seed);

}  // namespace shoal::dataplane::clusterip
