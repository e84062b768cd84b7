#pragma once
// Which buckets this node answers, decided from its membership view: the rebalance names a
// target owner for every bucket, and a hand-off rule turns targets into what this node may
// hold right now so that no bucket is ever answered by two nodes that agree on the view.
//
// The hand-off rule (per bucket):
// - a node lets go of a bucket as soon as it is no longer the target;
// - it takes a bucket it is the target of only when no up peer claims it, where a claim is
//   what the peer said it holds in its latest heartbeat;
// - it keeps a bucket it holds while it is the target, even if a peer also claims it (that
//   peer is releasing it: views differ only until gossip converges);
// - a dead or departed peer's claims count for nothing: a crash is taken over as soon as it
//   is declared.
// A releasing node announces its new claims at once, so on a planned move (drain, undrain,
// join, graceful leave) the receiver takes the bucket one packet latency after the release:
// no request is answered twice, and the gap is one heartbeat round trip.
//
// Quorum (partition policy `majority`): a node serves only while more than half of the
// configured nodes are Alive in its view (itself included). Suspect members do not count,
// so a minority side lets go suspicion_timeout before the majority side declares it dead and
// takes over. With `serve-all` every side of a partition serves.
//
// Settling: a node that has just started has not heard its peers' claims. Until it is
// settled (every peer heard from, or declared dead), it holds nothing.

#include <cstdint>
#include <vector>

#include "core/bucket_set.h"
#include "core/cluster_definition.h"
#include "membership/membership_types.h"

namespace shoal {

struct OwnershipInput {
  const ClusterDefinition* def = nullptr;
  const View* view = nullptr;
  /// Per member (indexed like def->nodes), the buckets it claims per service, from its latest
  /// heartbeat. An entry with fewer services than the definition claims nothing for the rest.
  const std::vector<std::vector<BucketSet>>* claims = nullptr;
  /// What this node holds now, per service.
  const std::vector<BucketSet>* held = nullptr;
  /// False right after start, until every peer has been heard from or declared dead.
  bool settled = false;
};

struct OwnershipDecision {
  /// This node may serve under the partition policy.
  bool quorum = false;
  /// Members the rebalance counts (bit i = node i).
  uint32_t serving_mask = 0;
  /// Per service, the rebalance's owner of every bucket (-1 = nobody).
  std::vector<std::vector<int16_t>> targets;
  /// Per service, what this node should hold now.
  std::vector<BucketSet> hold;
  /// Buckets this node is the target of but waits for (a live peer still claims them).
  uint32_t waiting = 0;
};

/// Applies the rules above. Pure; O(services * buckets * nodes).
OwnershipDecision decideOwnership(const OwnershipInput& input);

/// A digest of what the rebalance depends on in `view` (each member's liveness, drain, health
/// and hold-down): equal on two nodes exactly when they would compute the same targets.
/// Carried in heartbeats so `shoalctl status` can say whether all nodes share one view.
uint64_t viewDigest(const View& view);

/// Members counted for quorum: Alive in the view (suspect ones do not count).
uint32_t aliveCount(const View& view);

/// Whether a node seeing `alive` of `configured` nodes may serve under `policy`.
bool hasQuorum(PartitionPolicy policy, uint32_t alive, uint32_t configured);

}  // namespace shoal
