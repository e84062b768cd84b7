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
//   is declared;
// - a peer that has just come (back) up, and whose first heartbeat since has not arrived,
//   may hold anything (it may have served while it was cut off from this node): nothing new
//   is taken until its claims are known.
// A releasing node announces its new claims at once, so on a planned move (drain, undrain,
// join, graceful leave) the receiver takes the bucket one packet latency after the release:
// no request is answered twice, and the gap is one heartbeat round trip.
//
// Quorum (partition policy `majority`): a node serves only while more than half of the
// configured nodes are Alive in its view (itself included) and have been heard from within
// the quorum window (suspect_after, never stretched by Lifeguard). A cut-off node therefore
// lets go suspect_after after the cut, while the other side declares it dead only after
// suspect_after + suspicion_timeout (or later, when Lifeguard slows it): the minority side
// always releases first. With `serve-all` every side of a partition serves.
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
  /// The membership view; each peer's MemberView::claims (from its latest heartbeat) says
  /// what it holds. An entry with fewer services than the definition claims nothing for the rest.
  const View* view = nullptr;
  /// What this node holds now, per service.
  const std::vector<BucketSet>* held = nullptr;
  /// False right after start, until every peer has been heard from or declared dead.
  bool settled = false;
  /// Now, and how recently a peer must have been heard to count for quorum (zero: the
  /// membership state alone decides).
  TimePoint now{};
  Duration quorum_window{};
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

/// Members counted for quorum: this node, and peers Alive in the view (suspect ones do not
/// count) heard from on some link within `window` before `now` (any time when `window` is 0).
uint32_t quorumCount(const View& view, TimePoint now, Duration window);

/// Whether a node seeing `alive` of `configured` nodes may serve under `policy`.
bool hasQuorum(PartitionPolicy policy, uint32_t alive, uint32_t configured);

/// The facts of an OwnershipInput that decideOwnership() reads, kept from one call to the
/// next so a caller can skip deciding again when none changed: the daemon reconciles on every
/// packet, and almost every heartbeat repeats what was already known.
class OwnershipInputs {
 public:
  /// Records the facts of `input` (the definition is taken as fixed). Returns false when they
  /// equal the recorded ones, in which case decideOwnership(input) equals the decision for
  /// the input recorded last; true on the first call and after any change.
  bool update(const OwnershipInput& input);

 private:
  struct Member {
    MemberState state = MemberState::Unknown;
    bool held_down = false;
    DrainMode drain = DrainMode::None;
    HealthStatus health = HealthStatus::Unstated;
    bool claims_known = false;
    bool recent = false;  ///< heard within the quorum window
    std::vector<BucketSet> claims;
  };
  static Member factsOf(const MemberView& m, TimePoint now, Duration window);

  bool recorded_ = false;
  uint32_t self_ = 0;
  bool settled_ = false;
  std::vector<BucketSet> held_;
  std::vector<Member> members_;
};

}  // namespace shoal
