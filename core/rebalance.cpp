#include "core/rebalance.h"

#include <algorithm>
#include <array>
#include <numeric>

// How the layout is built, and why.
//
// Buckets come in groups of 16: bucket b is in group b / 16 and has the home leaf b mod 16
// of a 16-leaf binary tree. Each group places the configured nodes on its leaves (see
// leafOccupants: with equal weights, one leaf per node; a seeded permutation per group).
// Bucket b looks at the leaves home ^ offset for the offsets of kOffsetOrder in turn; at
// each offset, every bucket still without an owner is taken by the node on that leaf if the
// node is live and accepts it. A node has room while it holds fewer than floor(share)
// buckets, or fewer than ceil(share) while some of the `buckets - sum(floor(share))` extra
// buckets are still unclaimed. With at most 16 buckets the walk over the offsets is repeated
// level by level (see computeOwners).
//
// Why this shape (figures: total extra moves over the 524,272 single-node leaves of 16 nodes
// and 16 buckets, and sampled leaves for 64 and 256 buckets, test/test_rebalance.cpp):
// - For a fixed offset, leaf -> leaf ^ offset is a bijection, so within a group no two
//   buckets want the same node at the same step, and when a node leaves, only its own
//   buckets look further; the rest keep their owners unless a bound changes.
// - XOR offsets pair up (leaf x's k-th choice is y exactly when y's k-th choice is x), so a
//   leaver's buckets land where the neighbouring live sets also put them. Hashing each
//   bucket's node order independently (highest random weight with the same bounds) measured
//   about 2.6 times the extra moves.
// - The "+1" holders are whichever nodes the leftover buckets reach, not a fixed node
//   priority: measured, a fixed priority about doubles the extra moves.
// - Each group has its own placement of nodes on leaves, so the buckets a leaver leaves
//   behind spread over many nodes instead of all landing on one neighbour: for 256 buckets
//   one placement for all groups made four times the extra moves.
// - With unequal weights, a heavy node gets more leaves, so more buckets have it as home
//   and fewer reach it by spilling over: about a third fewer extra moves for 256 buckets with
//   random weights than one leaf per node.
// - The offset order was chosen by a local search over orders, measuring the exhaustive
//   total; the plain order 0, 1, 2, ... 15 makes about 25% more extra moves.

namespace shoal {
namespace {

constexpr std::size_t kLeaves = 16;
static_assert(kMaxNodes <= kLeaves, "with equal weights every node needs its own leaf");

// The order in which a bucket tries the leaves around its home (as XOR offsets from it).
// Every offset 0..15 appears once, so every leaf of the group is tried.
constexpr std::array<uint8_t, kLeaves> kOffsetOrder = {0,  3, 12, 4, 1, 10, 6, 13,
                                                       11, 8, 14, 5, 2, 9,  7, 15};

// SplitMix64: a small, well-mixed, platform-independent sequence for the seeded choices.
class SeedSequence {
 public:
  explicit SeedSequence(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

uint64_t groupSeed(uint32_t seed, std::size_t group, uint64_t purpose) {
  return (uint64_t{seed} << 32) ^ (uint64_t{group} << 2) ^ purpose;
}

// The configured node on each leaf of `group`, or kNoOwner. Depends on the configured
// weights only, never on the live set, so a node's leaves stay put while others come and go.
//
// Node i gets about quota_i = w_i * c leaves, c = min(16 / sum(w), 1 / min(w)): with equal
// weights exactly one leaf each (unused leaves stay empty, which measured better than
// spreading few nodes over all leaves); with unequal weights all 16 leaves are shared in
// proportion to weight, so a heavy node is the home of more buckets. The fractional parts
// are settled per group by systematic sampling (16 evenly spaced points with a seeded start
// over the nodes' consecutive quota intervals), so each node gets floor or ceil of its quota
// in every group and its quota on average. Integer arithmetic keeps every platform alike.
std::array<int16_t, kLeaves> leafOccupants(const std::vector<uint32_t>& weights,
                                           std::size_t node_count, uint32_t seed,
                                           std::size_t group) {
  uint64_t total = 0;
  uint64_t lightest = 0;
  for (std::size_t node = 0; node < node_count; ++node) {
    if (weights[node] > 0) {
      total += weights[node];
      lightest = lightest == 0 ? weights[node] : std::min<uint64_t>(lightest, weights[node]);
    }
  }
  std::array<int16_t, kLeaves> by_point{};
  by_point.fill(kNoOwner);
  if (total == 0) {
    return by_point;
  }
  // Quota of node i = weights[i] * scale / spacing leaves.
  const bool fill_all = kLeaves * lightest <= total;
  const uint64_t spacing = fill_all ? total : lightest;
  const uint64_t scale = fill_all ? kLeaves : 1;

  SeedSequence sequence(groupSeed(seed, group, 1));
  const uint64_t start = sequence.next() % spacing;
  uint64_t interval_end = 0;
  std::size_t node = 0;
  for (std::size_t point = 0; point < kLeaves; ++point) {
    const uint64_t position = start + point * spacing;
    while (node < node_count && interval_end + weights[node] * scale <= position) {
      interval_end += weights[node] * scale;
      ++node;
    }
    if (node < node_count) {
      by_point[point] = static_cast<int16_t>(node);
    }
  }

  // Scatter the points over the leaves by a seeded permutation (Fisher-Yates).
  std::array<uint8_t, kLeaves> leaf_of_point{};
  std::iota(leaf_of_point.begin(), leaf_of_point.end(), uint8_t{0});
  for (std::size_t i = kLeaves - 1; i > 0; --i) {
    std::swap(leaf_of_point[i], leaf_of_point[sequence.next() % (i + 1)]);
  }
  std::array<int16_t, kLeaves> occupants{};
  for (std::size_t point = 0; point < kLeaves; ++point) {
    occupants[leaf_of_point[point]] = by_point[point];
  }
  return occupants;
}

// Count bounds of the live nodes and the claim on the extra buckets.
class Capacity {
 public:
  Capacity(const RebalanceInput& input, std::size_t node_count, uint64_t total_weight) {
    uint64_t floor_sum = 0;
    for (std::size_t node = 0; node < node_count; ++node) {
      if (((input.live_mask >> node) & 1U) != 0 && input.weights[node] > 0) {
        const uint64_t scaled = uint64_t{input.buckets} * input.weights[node];
        min_[node] = scaled / total_weight;
        max_[node] = min_[node] + (scaled % total_weight != 0 ? 1U : 0U);
        floor_sum += min_[node];
      }
    }
    extras_left_ = input.buckets - floor_sum;
  }
  /// The largest floor(share) of any node.
  uint64_t largestFloor() const { return *std::max_element(min_.begin(), min_.end()); }
  /// Whether `node` holds fewer than min(floor(share), level) buckets.
  bool belowFloor(std::size_t node, uint64_t level) const {
    return count_[node] < std::min(min_[node], level);
  }
  /// Whether `node` may take one more bucket now.
  bool hasRoom(std::size_t node) const {
    return count_[node] < min_[node] || (count_[node] < max_[node] && extras_left_ > 0);
  }
  /// Records one more bucket for `node`; hasRoom(node) must hold.
  void take(std::size_t node) {
    if (count_[node] >= min_[node]) {
      --extras_left_;
    }
    ++count_[node];
  }

 private:
  std::array<uint64_t, kLeaves> min_{};
  std::array<uint64_t, kLeaves> max_{};
  std::array<uint64_t, kLeaves> count_{};
  uint64_t extras_left_ = 0;
};

}  // namespace

std::vector<int16_t> computeOwners(const RebalanceInput& input) {
  std::vector<int16_t> owners(input.buckets, kNoOwner);
  const std::size_t node_count = std::min(input.weights.size(), kMaxNodes);
  auto isLive = [&](std::size_t node) {
    return ((input.live_mask >> node) & 1U) != 0 && input.weights[node] > 0;
  };
  uint64_t total_weight = 0;
  for (std::size_t node = 0; node < node_count; ++node) {
    total_weight += isLive(node) ? input.weights[node] : 0;
  }
  if (total_weight == 0 || input.buckets == 0) {
    return owners;
  }
  Capacity capacity(input, node_count, total_weight);

  // live_on_leaf[group * 16 + leaf]: the live node on that leaf of that group, or kNoOwner.
  const std::size_t groups = (input.buckets + kLeaves - 1) / kLeaves;
  std::vector<int16_t> live_on_leaf(groups * kLeaves, kNoOwner);
  for (std::size_t group = 0; group < groups; ++group) {
    const auto occupants = leafOccupants(input.weights, node_count, input.seed, group);
    for (std::size_t leaf = 0; leaf < kLeaves; ++leaf) {
      const int16_t node = occupants[leaf];
      if (node != kNoOwner && isLive(static_cast<std::size_t>(node))) {
        live_on_leaf[group * kLeaves + leaf] = node;
      }
    }
  }

  std::vector<uint32_t> pending(input.buckets);
  std::iota(pending.begin(), pending.end(), 0U);
  // One walk over the offsets: each pending bucket goes to the live node on its leaf at that
  // offset if `accepts(node)`. Returns true when no bucket is left.
  auto walkOffsets = [&](const auto& accepts) {
    for (const uint8_t offset : kOffsetOrder) {
      std::size_t still_pending = 0;
      for (const uint32_t bucket : pending) {
        const std::size_t home = bucket % kLeaves;
        const int16_t node = live_on_leaf[bucket - home + (home ^ offset)];
        if (node != kNoOwner && accepts(static_cast<std::size_t>(node))) {
          capacity.take(static_cast<std::size_t>(node));
          owners[bucket] = node;
        } else {
          pending[still_pending++] = bucket;
        }
      }
      pending.resize(still_pending);
      if (pending.empty()) {
        return true;
      }
    }
    return false;
  };

  // With at most 16 buckets (one group; the CLUSTERIP backend's range), the nodes fill up
  // level by level: first no node takes a second bucket, then no node a third, and so on up
  // to floor(share); the extra buckets come last. Deciding the "+1" holders by where the
  // leftover buckets are, rather than by which node happens to fill first, measured about 6%
  // fewer extra moves over the exhaustive 16 x 16 set, and the levels below the floor
  // another 0.7%. With more buckets the extra buckets are a small part of each node's count,
  // and holding nodes back only sends buckets further from home: measured from 24 buckets
  // on, one walk that accepts any node with room does better (about 12% fewer extra moves at
  // 64 and 256 buckets), so larger services use that.
  if (input.buckets <= kLeaves) {
    for (uint64_t level = 1; level <= capacity.largestFloor(); ++level) {
      if (walkOffsets([&](std::size_t node) { return capacity.belowFloor(node, level); })) {
        return owners;
      }
    }
  }
  if (walkOffsets([&](std::size_t node) { return capacity.hasRoom(node); })) {
    return owners;
  }

  // Left over: buckets of groups where no live node with room has a leaf (possible with
  // unequal weights, where a light node may have no leaf in a group). Each goes to the live
  // node with room that ranks highest for it by a seeded hash; one always exists, because
  // the bounds add up to at least the bucket count and a node's room only shrinks.
  for (const uint32_t bucket : pending) {
    uint64_t best_rank = 0;
    std::size_t best = kLeaves;
    for (std::size_t node = 0; node < node_count; ++node) {
      if (!isLive(node) || !capacity.hasRoom(node)) {
        continue;
      }
      const uint64_t rank = SeedSequence(groupSeed(input.seed, bucket, 2) ^ (node << 48)).next();
      if (best == kLeaves || rank > best_rank) {
        best_rank = rank;
        best = node;
      }
    }
    if (best != kLeaves) {
      capacity.take(best);
      owners[bucket] = static_cast<int16_t>(best);
    }
  }
  return owners;
}

std::vector<int16_t> computeOwners(const ClusterDefinition& definition, const Service& service,
                                   uint32_t live_mask) {
  RebalanceInput input;
  input.buckets = service.buckets;
  input.live_mask = live_mask;
  input.seed = service.seed;
  input.weights.reserve(definition.nodes.size());
  for (const Node& node : definition.nodes) {
    input.weights.push_back(node.weight);
  }
  return computeOwners(input);
}

}  // namespace shoal
