#pragma once
// The values the membership core (membership/membership.h) takes and returns: time, peer
// addresses, datagrams to send, events, the view of the cluster and the counters.
// Plain data, no behaviour beyond small helpers.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/bucket_set.h"
#include "core/ip_address.h"
#include "core/wire_codec.h"

namespace shoal {

/// Monotonic time as the core sees it. The daemon passes std::chrono::steady_clock::now();
/// the simulator passes virtual time counted from TimePoint{}.
using TimePoint = std::chrono::steady_clock::time_point;
/// A span of TimePoint time (nanoseconds).
using Duration = std::chrono::steady_clock::duration;

/// A UDP address: where a datagram came from (used to report foreign peers).
struct Endpoint {
  IpAddress address;
  uint16_t port = 0;

  /// "192.0.2.1:7400" or "[2001:db8::1]:7400".
  std::string toString() const;
  auto operator<=>(const Endpoint&) const = default;
};

/// Datagram::node of a datagram meant for every other node of the cluster.
inline constexpr uint32_t kAllPeers = UINT32_MAX;

/// One datagram the caller must send: on heartbeat link `link` (the index into
/// Node::addresses) to node `node` (index into ClusterDefinition::nodes) at its address on that
/// link and the cluster port; or, when `node` is kAllPeers, the same bytes to every node of
/// the definition except this one and those in `skip` (a heartbeat round: signed once, sent
/// to all; a backup link's round leaves out the peers it need not reach, see membership.h).
/// A caller that sends a kAllPeers datagram to a multicast group sends it once, to the group.
struct Datagram {
  uint32_t link = 0;
  uint32_t node = 0;
  std::string bytes;  ///< a sealed packet (core/wire_codec.h), at most kMaxPacketSize bytes
  uint64_t skip = 0;  ///< kAllPeers only: bit n set leaves node n out

  /// Whether the datagram is meant for node `n` (the sender excludes itself).
  bool reaches(uint32_t n) const {
    return node == kAllPeers ? n >= 64 || ((skip >> n) & 1) == 0 : node == n;
  }
};

/// A member's liveness as this node sees it.
enum class MemberState : uint8_t {
  Unknown,  ///< never heard of since this node started (not serving)
  Alive,
  Suspect,  ///< silent and unreachable through other members; dead unless it refutes in time
  Dead,
  Left,  ///< stopped gracefully
};

/// Operator-set drain of a node (cluster state: any node may set it for any node).
enum class DrainMode : uint8_t {
  None,      ///< serves normally
  Draining,  ///< takes no new connections' buckets; established flows finish
  Drained,   ///< owns no buckets at all
};

/// Result of a node's own health checks, as it reports it itself.
enum class HealthStatus : uint8_t {
  Unstated,  ///< no check has finished yet, or none is configured: counts as healthy
  Ok,
  Failing,
};

/// A node's self-reported health.
struct NodeHealth {
  HealthStatus status = HealthStatus::Unstated;
  /// Bit i set: health check i of the definition is failing (checks beyond 64 only in status).
  uint64_t failing_checks = 0;

  bool operator==(const NodeHealth&) const = default;
};

/// One drain write: the mode and the (clock, writer) pair that orders conflicting writes.
/// The write with the larger (clock, writer) wins on every node (last writer wins on a
/// Lamport clock), so concurrent drain commands resolve the same way everywhere.
struct DrainState {
  DrainMode mode = DrainMode::None;
  uint64_t clock = 0;   ///< Lamport clock of the write; 0 = never written
  uint32_t writer = 0;  ///< node index that made the write; breaks clock ties

  /// True if this write wins over `other`.
  bool newerThan(const DrainState& other) const {
    return clock != other.clock ? clock > other.clock : writer > other.writer;
  }
  bool operator==(const DrainState&) const = default;
};

/// This node's knowledge of one heartbeat link to one peer.
struct LinkView {
  bool up = false;         ///< a packet arrived on this link within the suspicion window
  bool heard = false;      ///< anything ever arrived on it since this node started
  TimePoint last_heard{};  ///< arrival of the last accepted packet on this link
};

/// What this node believes about one member.
struct MemberView {
  MemberState state = MemberState::Unknown;
  uint64_t incarnation = 0;  ///< raised only by the member itself (refutation, health change)
  NodeHealth health;
  DrainState drain;
  /// Held out by flap damping: it died flap_threshold times within flap_window and came back;
  /// it does not serve until held_until.
  bool held_down = false;
  TimePoint held_until{};
  /// One entry per heartbeat link (empty for this node itself).
  std::vector<LinkView> links;
  /// The buckets it says it answers, per service, from its latest heartbeat (for this node:
  /// what it announced with setOwnClaims()).
  std::vector<BucketSet> claims;
  /// Its viewDigest() from its latest heartbeat (0: none heard yet).
  uint64_t view_digest = 0;
  /// False from the moment it comes (back) up until its first heartbeat since: `claims` may
  /// be stale (it may have taken buckets while it was away from this node).
  bool claims_known = false;
  /// When its latest heartbeat (the source of `claims`) was received; other packets (acks,
  /// probes) say nothing of its claims.
  TimePoint claims_heard{};
  /// The buckets among `claims` it is handing over, per service (empty entries: none), and
  /// when it stops answering them, in this node's time: the latest moment it can stop, as
  /// the offset bound of its heartbeats places its announced stop (membership/offset_bound.h;
  /// never earlier than the member really stops; the earliest of the announcement's copies).
  /// For this node itself: what it announced with setOwnClaims().
  std::vector<BucketSet> releasing;
  TimePoint release_at{};
  /// It is stopping gracefully (it said so in its heartbeats): out of the rebalance while it
  /// hands its buckets over.
  bool leaving = false;

  /// Alive or Suspect: a suspect still serves until it is declared dead.
  bool up() const { return state == MemberState::Alive || state == MemberState::Suspect; }
  /// Reachable directly: some link to it is up (indirect probes may keep it alive without).
  bool reachable() const;
  /// Takes buckets in the rebalance: up, not held down, not leaving, not drained or
  /// draining, and not failing its health checks (an unhealthy node counts as drained).
  bool serving() const { return servingUnlessHeld() && !held_down; }
  /// Would take buckets but for a flap-damping hold-down.
  bool servingUnlessHeld() const {
    return up() && !leaving && drain.mode == DrainMode::None &&
           health.status != HealthStatus::Failing;
  }
  /// Whether it is handing over bucket `bucket` of service `service` (releasing holds it).
  bool releases(std::size_t service, uint32_t bucket) const {
    return service < releasing.size() && releasing[service].has(bucket);
  }
};

/// The whole view of one node: members indexed like ClusterDefinition::nodes.
struct View {
  uint32_t self = 0;
  std::vector<MemberView> members;
  /// Lifeguard local-health score (0 = healthy); timeouts are multiplied by 1 + score.
  uint32_t local_health = 0;
};

/// A peer that sent an authentic packet (right key) with another cluster fingerprint: it runs
/// a different cluster definition and is not admitted.
struct ForeignPeer {
  Endpoint from;
  uint64_t fingerprint = 0;  ///< its fingerprint64(), as carried in its envelope
  uint64_t packets = 0;
  TimePoint last_seen{};
};

/// Something the caller should know about (log, status, rebalance, persistence).
struct Event {
  enum class Kind : uint8_t {
    MemberChanged,    ///< `node` moved to `state`
    LinkChanged,      ///< `link` to `node` went up (`up`) or down
    DrainChanged,     ///< drain of `node` changed; persist drainSnapshot()
    HealthChanged,    ///< `node` reported another health
    HoldDownStarted,  ///< `node` is held out by flap damping
    HoldDownEnded,    ///< `node` is no longer held out
    ForeignPeerSeen,  ///< first packet from a peer with another cluster fingerprint
    Refuted,          ///< this node was suspected or declared dead and refuted it
  };
  Kind kind = Kind::MemberChanged;
  uint32_t node = 0;
  uint32_t link = 0;
  MemberState state = MemberState::Unknown;
  bool up = false;
  ForeignPeer foreign;  ///< set for ForeignPeerSeen
};

/// What a call into the core returns.
struct Output {
  std::vector<Datagram> send;
  std::vector<Event> events;
  /// Call onTick() at this time (or earlier); TimePoint::max() when nothing is pending.
  TimePoint next_wakeup = TimePoint::max();
};

/// Counters of one core, for status output and the figures.
struct Counters {
  uint64_t packets_received = 0;  ///< datagrams handed to onPacket()
  uint64_t bytes_received = 0;
  uint64_t packets_accepted = 0;  ///< verified, fresh and applied
  uint64_t packets_sent = 0;
  uint64_t bytes_sent = 0;
  RejectionCounters rejected;  ///< by reason; nothing in a rejected packet changed any state
  uint64_t heartbeats_sent = 0;       ///< one per peer reached
  uint64_t backup_heartbeats_skipped = 0;  ///< left out on a backup link (one per peer)
  uint64_t probes_sent = 0;           ///< direct probes (one per link)
  uint64_t indirect_probes_sent = 0;  ///< requests to other members (one per member and link)
  uint64_t nacks_sent = 0;
  uint64_t suspicions = 0;   ///< peers this node announced as suspect
  uint64_t deaths = 0;       ///< peers this node declared dead itself
  uint64_t refutations = 0;  ///< times this node refuted a suspicion or death of itself
  uint64_t state_exchanges_sent = 0;
  uint64_t late_wakeups = 0;  ///< calls that found this node had stalled
  uint64_t stale_claims = 0;  ///< heartbeats older than the claims already heard (kept those)
};

const char* toString(MemberState state);
const char* toString(DrainMode mode);
const char* toString(HealthStatus status);

}  // namespace shoal
