#pragma once
// The rebalance: which live node answers each hash bucket of a service.
//
// A pure function of (bucket count, node weights, set of live and undrained nodes, seed):
// every node computes the same owners from the same facts, whatever order the facts arrived
// in, and no node needs another node's copy. The layout keeps balance exact (each live node
// within one bucket of its weighted share) and keeps the buckets that move when one node
// leaves or joins close to the leaver's own (or to those the joiner receives).
// test/test_rebalance.cpp measures this exhaustively for 16 nodes and 16 buckets.

#include <cstdint>
#include <vector>

#include "core/cluster_definition.h"

namespace shoal {

/// Owner value of a bucket that no node answers (no live node).
inline constexpr int16_t kNoOwner = -1;

/// Everything the layout depends on. Plain values; nothing is kept between calls.
struct RebalanceInput {
  /// Number of hash buckets, 1..kMaxBuckets (validated by the definition loader). 0 gives an
  /// empty layout.
  uint32_t buckets = 0;
  /// Weight of each configured node, indexed by node id (its index in the definition), 1..100.
  /// Only the first kMaxNodes entries are used. A node of weight 0 is treated as not live.
  std::vector<uint32_t> weights;
  /// Bit i set: node i is live and not drained. Bits at or beyond weights.size() are ignored.
  uint32_t live_mask = 0;
  /// Per-service seed: it permutes the layout, so services with different seeds usually get
  /// different layouts (the disruption figures do not depend on it).
  uint32_t seed = 0;
};

/// Owner (node id) of every bucket, indexed by bucket, or kNoOwner for every bucket when no
/// node is live. Guarantees, for any input within the documented ranges:
/// - every owner is a live node with non-zero weight;
/// - each live node i owns floor(s_i) or ceil(s_i) buckets, s_i = buckets * w_i / (sum of
///   the live weights), and the counts add up to `buckets`;
/// - the result depends only on the input's values.
/// Cost: O(buckets * 16) steps and O(buckets) memory, no shared state (safe to call from
/// any thread); test/bench/bench_rebalance.cpp prints the time (well under a microsecond for
/// 16 buckets, a few microseconds for 256).
std::vector<int16_t> computeOwners(const RebalanceInput& input);

/// Convenience for the daemon: the layout of `service` in `definition` (its bucket count and
/// seed, the nodes' weights) for the live and undrained nodes in `live_mask` (bit i = node i
/// of definition.nodes).
std::vector<int16_t> computeOwners(const ClusterDefinition& definition, const Service& service,
                                   uint32_t live_mask);

}  // namespace shoal
