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
//
// Planned moves switched at an instant (with a handoff_lead, for a dataplane that switches
// timed buckets in the kernel, dataplane/dataplane.h): releasing first and taking one packet
// later leaves a gap of a heartbeat's trip plus the taker's reaction, in which neither node
// answers. Instead:
// - a node that is to let go of a bucket it holds, to an owner that is up (a planned move),
//   keeps answering it until release_at = now + handoff_lead and not a moment longer (its
//   kernel switches then), and announces it at once: the bucket stays among its claims,
//   marked releasing, with the time left until release_at (Heartbeat.release_in_us). The
//   announcement is never extended: it stops at release_at at the latest (earlier only when
//   it loses quorum or must settle again). Releases decided while one runs join it (same
//   instant) if at least half the lead is left, and are otherwise held until it has passed
//   and then get an instant of their own. With no
//   owner up, or without quorum or settling, it lets go at once (the running release too:
//   answering less is always safe);
// - the bucket's owner, seeing every up peer that claims it releasing it, answers it from
//   the latest of their release_at (plus kTakeMargin and take_margin) on. The membership core
//   places each release_at (MemberView::release_at): the peer's stop in its own clock (sealing time
//   plus time left, both in the heartbeat) plus an upper bound of how far this node's clock is
//   ahead of the peer's, the smallest receive-minus-sealing time of its recent heartbeats
//   (the kernel's receive stamps), aged and stretched for clock rates (kClockRateBound). A
//   heartbeat arrives after it was sealed, so the bound holds on any clocks and the taker's
//   instant is never before the releaser's stop; the gap is about the fastest recent trip.
//   Every copy of the announcement (one per link, one per round until the instant) bounds
//   the stop; the earliest bound counts. The taker adds take_margin: each node decides a
//   client's packet by its own clock when it processes it, and one node may process a packet
//   later than another after it reached both. Until then
//   the bucket is among the taker's claims (it is committed to it; nobody else takes it);
//   if the taker stops being the owner before the instant, or a lower-numbered node claims
//   the bucket without handing it over (their views differ), it simply cancels;
// - an announcement that comes late (or not at all: the releaser's next claims no longer
//   hold the bucket) makes the take late: a gap, never an overlap.
// The gap itself is bridged where the dataplane can (dataplane/dataplane.h, ForwardedBucket:
// the releaser's kernel copies the gap's packets to the taker, which answers those it dropped).

#include <cstdint>
#include <map>
#include <vector>

#include "core/bucket_set.h"
#include "core/cluster_definition.h"
#include "membership/membership_types.h"

namespace shoal {

/// How long a node keeps answering a bucket it hands over (see above): time for the taker to
/// receive the announcement and load its side in the kernel before the instant. Typically
/// a millisecond; on a two-core machine running three nodes and a client of 3,200
/// connections a second, 10 ms still left one take in ten late (a gap of up to 18 ms),
/// 30 ms none in a hundred. It costs that much more time for a drain or a graceful stop.
inline constexpr Duration kHandOffLead = std::chrono::milliseconds(30);
/// Added to a releasing peer's stop before taking over, besides take_margin: rounding of the
/// microseconds on the wire (the clock conversions themselves err on the safe side:
/// cli/clock_lead.h).
inline constexpr Duration kTakeMargin = std::chrono::microseconds(1);

/// The timed part of what a node answers: planned moves switched at an instant.
struct TimedHold {
  /// Per service, the buckets it answers until `release_at` and not after (handing over).
  std::vector<BucketSet> releasing;
  TimePoint release_at{};
  /// Per service, the buckets it answers from an instant on (taking over): bucket -> instant.
  std::vector<std::map<uint32_t, TimePoint>> taking;

  /// Nothing timed at all.
  bool empty() const;
  bool operator==(const TimedHold&) const = default;
};

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
  /// What this node answers within a window of time now (nullptr: nothing).
  const TimedHold* timed = nullptr;
  /// Zero: planned moves are not timed (release at once, take once nobody claims).
  /// Otherwise how long a released bucket is still answered: kHandOffLead.
  Duration handoff_lead{};
  /// Added to the releasers' stop before a timed take starts: how much later one node may
  /// process a client's packet than another after it reached both (interrupt moderation,
  /// softirq scheduling). Each node decides its packets on its own clock as it processes
  /// them, so without it a packet the taker processes that much later than the releaser is
  /// answered by both. ClusterDefinition::handoff_margin.
  Duration take_margin{};
};

struct OwnershipDecision {
  /// This node may serve under the partition policy.
  bool quorum = false;
  /// Members the rebalance counts (bit i = node i).
  uint32_t serving_mask = 0;
  /// Every member that could serve is held down by flap damping, so the hold-downs were
  /// ignored: serving_mask has them all.
  bool holds_ignored = false;
  /// Per service, the rebalance's owner of every bucket (-1 = nobody).
  std::vector<std::vector<int16_t>> targets;
  /// Per service, what this node should hold now, without a time limit.
  std::vector<BucketSet> hold;
  /// What it should answer within a window of time (releasing and taking; see above).
  TimedHold timed;
  /// When the decision must be made again though nothing else changed: the next release
  /// or take instant still ahead (TimePoint::max(): none).
  TimePoint next_change = TimePoint::max();
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
  /// the input recorded last, as long as `now` has not reached that decision's next_change;
  /// true on the first call and after any change.
  bool update(const OwnershipInput& input);

 private:
  struct Member {
    MemberState state = MemberState::Unknown;
    bool held_down = false;
    DrainMode drain = DrainMode::None;
    HealthStatus health = HealthStatus::Unstated;
    bool claims_known = false;
    bool recent = false;  ///< heard within the quorum window
    bool leaving = false;
    std::vector<BucketSet> claims;
    std::vector<BucketSet> releasing;
    TimePoint release_at{};
  };
  static Member factsOf(const MemberView& m, TimePoint now, Duration window);

  bool recorded_ = false;
  uint32_t self_ = 0;
  bool settled_ = false;
  std::vector<BucketSet> held_;
  TimedHold timed_;
  Duration handoff_lead_{};
  std::vector<Member> members_;
};

}  // namespace shoal
