#include "core/rebalance.h"

#include <algorithm>
#include <array>
#include <numeric>

// How the layout is built, and why.
//
// Nodes and buckets are placed on the 16 leaves of a binary tree (leaf numbers 0..15): node i
// sits on leaf nodeLeaf[i], and bucket b has the home leaf homeLeaf[b mod 16] (both are
// permutations drawn from the seed). Bucket b looks at the leaves home ^ offset for the
// offsets of kOffsetOrder in turn; for each offset, every bucket still without an owner is
// taken by the node on that leaf if the node is live and has room. A node has room while it
// holds fewer than floor(share) buckets, or fewer than ceil(share) while some of the
// `buckets - sum(floor(share))` extra buckets are still unclaimed.
//
// Why this shape:
// - For a fixed offset, b -> home(b) ^ offset is a bijection on the leaves, so within one
//   pass no two of the first 16 buckets want the same node: who gets a bucket depends on the
//   live set, not on a processing order, and most buckets keep their owner when another node
//   goes (which is what the disruption figures count).
// - When a node leaves, its buckets go to the first live node with room along their own
//   offset order; the XOR structure makes these orders pair up (leaf x's k-th choice is y
//   exactly when y's k-th choice is x), so the leaver's buckets land where the other states
//   of the cluster would also put them and few other buckets are pushed around.
// - Letting the first nodes that reach floor(share) take the extra buckets (rather than a
//   fixed node priority) avoids conflicts between the "+1" holders of neighbouring states;
//   measured, a fixed priority more than doubles the extra moves.
// - The offset order itself was chosen by measuring the total extra moves over all 524,272
//   single-node leaves of 16 nodes and 16 buckets for candidate orders (a local search); the
//   plain order 0, 1, 2, ... 15 makes about 22% more extra moves than the one below.

namespace shoal {
namespace {

constexpr std::size_t kLeaves = 16;
static_assert(kMaxNodes <= kLeaves, "every node needs its own leaf");

// The order in which a bucket tries the leaves around its home (as XOR offsets from it).
// Every offset 0..15 appears once, so every live node is tried and every bucket gets an owner.
constexpr std::array<uint8_t, kLeaves> kOffsetOrder = {0, 3,  12, 4,  1,  10, 6, 13,
                                                       11, 8, 14, 5, 2, 9, 7,  15};

// SplitMix64: a small, well-mixed, platform-independent sequence for the seeded permutations.
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

// A permutation of the leaves drawn from `seed` (Fisher-Yates).
std::array<uint8_t, kLeaves> leafPermutation(uint64_t seed) {
  std::array<uint8_t, kLeaves> leaves{};
  std::iota(leaves.begin(), leaves.end(), uint8_t{0});
  SeedSequence sequence(seed);
  for (std::size_t i = kLeaves - 1; i > 0; --i) {
    std::swap(leaves[i], leaves[sequence.next() % (i + 1)]);
  }
  return leaves;
}

}  // namespace

std::vector<int16_t> computeOwners(const RebalanceInput& input) {
  std::vector<int16_t> owners(input.buckets, kNoOwner);
  const std::size_t node_count = std::min(input.weights.size(), kMaxNodes);
  auto isLive = [&](std::size_t node) {
    return ((input.live_mask >> node) & 1U) != 0 && input.weights[node] > 0;
  };

  uint64_t total_weight = 0;
  for (std::size_t node = 0; node < node_count; ++node) {
    if (isLive(node)) {
      total_weight += input.weights[node];
    }
  }
  if (total_weight == 0 || input.buckets == 0) {
    return owners;
  }

  // Bounds of each live node's count: floor and ceil of its weighted share.
  std::array<uint32_t, kLeaves> min_count{};
  std::array<uint32_t, kLeaves> max_count{};
  std::array<uint32_t, kLeaves> count{};
  uint64_t floor_sum = 0;
  for (std::size_t node = 0; node < node_count; ++node) {
    if (!isLive(node)) {
      continue;
    }
    const uint64_t scaled = uint64_t{input.buckets} * input.weights[node];
    min_count[node] = static_cast<uint32_t>(scaled / total_weight);
    max_count[node] = min_count[node] + (scaled % total_weight != 0 ? 1U : 0U);
    floor_sum += min_count[node];
  }
  // Buckets beyond every node's floor: that many nodes end at their ceiling.
  uint64_t extras_left = input.buckets - floor_sum;

  // Buckets are laid out in groups of 16 (bucket b is in group b / 16 and has home leaf
  // b mod 16); each group places the nodes on the leaves by its own seeded permutation, so
  // that the buckets a node leaves behind go to different neighbours in different groups.
  // nodeOnLeaf(group, leaf): the live node on that leaf of that group, or -1.
  const std::size_t groups = (input.buckets + kLeaves - 1) / kLeaves;
  std::vector<int16_t> node_on_leaf(groups * kLeaves, kNoOwner);
  for (std::size_t group = 0; group < groups; ++group) {
    const auto node_leaf = leafPermutation((uint64_t{input.seed} << 32) | group);
    for (std::size_t node = 0; node < node_count; ++node) {
      if (isLive(node)) {
        node_on_leaf[group * kLeaves + node_leaf[node]] = static_cast<int16_t>(node);
      }
    }
  }

  std::vector<uint32_t> pending(input.buckets);
  std::iota(pending.begin(), pending.end(), 0U);
  for (const uint8_t offset : kOffsetOrder) {
    std::size_t still_pending = 0;
    for (const uint32_t bucket : pending) {
      const std::size_t group_base = bucket - bucket % kLeaves;
      const int16_t node = node_on_leaf[group_base + ((bucket % kLeaves) ^ offset)];
      bool taken = false;
      if (node != kNoOwner) {
        const auto n = static_cast<std::size_t>(node);
        if (count[n] < min_count[n]) {
          taken = true;
        } else if (count[n] < max_count[n] && extras_left > 0) {
          --extras_left;
          taken = true;
        }
        if (taken) {
          ++count[n];
          owners[bucket] = node;
        }
      }
      if (!taken) {
        pending[still_pending++] = bucket;
      }
    }
    pending.resize(still_pending);
    if (pending.empty()) {
      break;
    }
  }
  // Every offset visits every leaf, and a node's room only shrinks, so a bucket left over
  // here would mean every live node is full, which the bounds above rule out.
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
