#pragma once
// The membership core: an IO-free SWIM-style state machine that lets every node agree, fast
// and without false alarms, on who is alive, who is drained and how healthy each node is.
//
// It owns no socket, clock, thread or random source. The caller (the daemon with
// membership/udp_transport.h, or the simulator under test/sim/) hands it the time and each
// received datagram, sends the datagrams it returns, acts on its events and calls onTick() at
// the returned next_wakeup. Randomness comes from a seed, so a seed fixes a run.
//
// The protocol, per peer and link:
// - Every heartbeat_interval this node sends a signed Heartbeat to every peer on every link,
//   carrying its incarnation, its health and the member updates being disseminated
//   (each change rides on the next three rounds; changes this node makes itself are also
//   sent at once, on every link).
// - Backup links (links 1 and up) are monitored, not flooded: while a lower link works both
//   ways with a peer (this node heard the peer on it within 1.5 heartbeat intervals, and the
//   peer's latest heartbeat, as fresh, says it heard this node on it too), a round reaches
//   that peer on the backup link only every kBackupRoundDivisor-th time. When the lower link
//   fails, rounds go out on the backup link every time again: from the first round 1.5
//   intervals after the last packet on it if the cut is both ways or towards this node, up
//   to 3.5 intervals if only this node's packets are lost (it learns that from the peer's
//   heartbeats). A direct probe on every link answers any silence check meanwhile. A backup
//   link is reported down after kBackupRoundDivisor times the usual silence (as many lost
//   heartbeats at the reduced rate), as usual once the lower links have been silent for two
//   more intervals, and at once when this node declares the peer dead.
// - A peer silent on every link for suspect_after is probed directly on every link and,
//   at the same time, through `indirect_probes` other members (SWIM's ping-req). An answer
//   through any of them ends the matter: the peer is reachable.
// - With no answer within probe_timeout the peer is announced as suspect, with this node
//   named as an accuser. It refutes by raising its incarnation as soon as it hears of it;
//   otherwise it is declared dead suspicion_timeout after it was first found silent (dead
//   about suspect_after + suspicion_timeout after its last heartbeat). Every other member that
//   suspects it independently (its own probe failed too) shortens that, down to half the
//   suspicion_timeout once kSuspicionConfirmations others agree (Lifeguard's dynamic
//   suspicion): a crash that every node sees is declared fast, one node's bad path is not.
// - Every packet is verified (keyring MAC, cluster fingerprint, addressee, replay window)
//   before it can change anything; rejections are counted by reason.
// - Lifeguard local health: late wakeups, probes unanswered even by the helpers, and having
//   to refute raise a score; timeouts that lead to an accusation are multiplied by
//   1 + score, so a slow node accuses more slowly instead of declaring healthy peers dead.
// - Flap damping: a member that died flap_threshold times within flap_window is held out for
//   flap_hold_down when it returns.
// - Claims: every heartbeat says which buckets its sender answers, which of them it hands
//   over and until when (time left, and its monotonic sealing time), and whether it is
//   leaving (membership/ownership.h decides from them). Receivers turn a hand-over's stop
//   into their own clock with the offset bound of that peer: the smallest receive time
//   (the caller's kernel stamp, `arrived`) minus sealing time of its recent heartbeats, aged
//   by kClockRateBound; never earlier than the sender really stops.
// - Drain is cluster state: last writer wins on (Lamport clock, writer); the caller persists
//   drainSnapshot() on every DrainChanged event and passes the saved one to start(). A
//   restarting node also learns it from its peers (full state exchange on join).
// - A full state exchange (push-pull) runs on join, whenever a member comes back, and with
//   one random peer every 20 heartbeat intervals, repairing anything gossip missed.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/cluster_definition.h"
#include "core/keyring.h"
#include "core/replay_window.h"
#include "core/wire_codec.h"
#include "membership/drain_snapshot.h"
#include "membership/flap_damper.h"
#include "membership/local_health.h"
#include "membership/membership_types.h"
#include "membership/offset_bound.h"
#include "membership/rng.h"

namespace shoal {

/// Heartbeat rounds that carry each member update after it changes.
inline constexpr uint32_t kGossipRounds = 3;
/// While a lower link works both ways with a peer, a backup link carries one heartbeat round
/// in this many to it (see the protocol above). Eight: an eighth of the packets on the second
/// link (at 16 nodes a tenth fewer datagrams per round than with four), and a failed backup
/// link still reported within a second (8 times the usual silence, 960 ms by default) while
/// link 0 works. The rate decides only how soon a failed backup link is noticed: when link 0
/// fails, every round goes out on the backup link again within 1.5 intervals, whatever it is.
inline constexpr uint32_t kBackupRoundDivisor = 8;
/// Heartbeat intervals between two full state exchanges with a random peer.
inline constexpr uint32_t kPushPullRounds = 20;
/// Most member updates piggybacked on one packet (keeps it under kMaxPacketSize).
inline constexpr std::size_t kMaxUpdatesPerPacket = 32;
/// Independent accusers beyond the first after which a suspicion runs for its shortest time
/// (Lifeguard's K; fewer when the cluster has fewer other members up).
inline constexpr uint32_t kSuspicionConfirmations = 2;
/// Highest Lifeguard local-health score (timeouts at most 1 + 8 = 9 times as long).
inline constexpr uint32_t kMaxLocalHealth = 8;
/// Most foreign peers remembered (a misconfigured LAN must not grow memory without bound).
inline constexpr std::size_t kMaxForeignPeers = 64;

/// The membership state machine of one node.
class Membership {
 public:
  /// `def` is the cluster definition (node ids are indices into def.nodes; it must have at
  /// least one node and every node the same number of addresses), `self` this node's index,
  /// `keys` the keyring, `boot_id` this run's newBootId() (strictly larger than the last
  /// run's), `seed` the seed of all random choices.
  Membership(ClusterDefinition def, uint32_t self, Keyring keys, uint64_t boot_id, uint64_t seed);

  /// Starts the node at `now`: takes the drain state saved by an earlier run (an empty
  /// snapshot if none), sends the first heartbeats and asks every peer for its full state.
  /// Call once, before anything else.
  Output start(TimePoint now, const DrainSnapshot& saved = {});

  /// Handles one datagram received on heartbeat link `link` from `from`. Anything that fails
  /// verification is counted in counters().rejected and changes nothing else.
  /// `arrived`, if known (not TimePoint{}, not after `now`): when the datagram reached this
  /// host (the kernel's receive timestamp, no earlier than the truth); the clock offset
  /// bound of the sender (membership/offset_bound.h) is sampled from it, else from `now`.
  Output onPacket(TimePoint now, std::span<const uint8_t> bytes, uint32_t link,
                  const Endpoint& from, TimePoint arrived = TimePoint{});
  /// The same, for a datagram the caller has already opened: `opened` must be
  /// openPacket(bytes, keys, identity) with this node's keyring and wireIdentity(). For a
  /// caller that hands one datagram to several cores that share a keyring (the simulator
  /// delivers a heartbeat sent to all peers to each of them) and verifies it once: for such
  /// a datagram the result does not depend on the receiver.
  Output onPacket(TimePoint now, const Opened& opened, std::span<const uint8_t> bytes,
                  uint32_t link, const Endpoint& from, TimePoint arrived = TimePoint{});
  /// The identity packets are opened against (cluster fingerprint, this node, node count).
  const WireIdentity& wireIdentity() const { return identity_; }

  /// Runs the timers due at `now`: heartbeats, probes, suspicion and death, link state,
  /// flap hold-down, state exchanges. Call at (or after) Output::next_wakeup.
  Output onTick(TimePoint now);

  /// Sets the drain of `node` (any node, this one included) as a new cluster-wide write.
  /// An out-of-range node changes nothing.
  Output drain(TimePoint now, uint32_t node, DrainMode mode);

  /// Sets this node's own health (from the health checks); peers learn it at once.
  Output setOwnHealth(TimePoint now, NodeHealth health);

  /// Sets the buckets this node answers (per service, in definition order) and its view
  /// digest; both ride on every heartbeat, and a change is sent to every peer at once so a
  /// peer waiting for a released bucket takes it one packet latency later.
  Output setOwnClaims(TimePoint now, std::vector<BucketSet> claims, uint64_t view_digest);
  /// The same, with the buckets among `claims` this node is handing over and answers only
  /// until `release_at` (a planned move switched at an instant, membership/ownership.h):
  /// every heartbeat carries them with the time left, counted from the `now` of the call
  /// that seals it, rounded up. Pass a fresh `now`: the time left is measured from it.
  Output setOwnClaims(TimePoint now, std::vector<BucketSet> claims,
                      std::vector<BucketSet> releasing, TimePoint release_at, uint64_t view_digest);

  /// Announces that this node is stopping gracefully: its heartbeats say so from now on (the
  /// first at once), so the peers count it out of the rebalance while its claims still hold
  /// and take its buckets as it hands them over. leave() follows once that is done.
  Output setLeaving(TimePoint now);

  /// Leaves the cluster gracefully: peers mark this node Left at once instead of suspecting
  /// it. Afterwards the core sends nothing more and ignores packets.
  Output leave(TimePoint now);

  /// Puts the heartbeat rounds after the next one on a grid: at the times t where
  /// t + `offset` is a whole multiple of the heartbeat interval. The daemon passes the offset
  /// of the wall clock, so the nodes of a cluster whose clocks agree (NTP) send their rounds
  /// together and each node reads its peers' heartbeats in a burst, a few wake-ups per round
  /// instead of one per peer. Clocks that disagree only lose that saving: a round is never
  /// later than one interval after the one before. Without a call, each round follows the
  /// previous one by an interval. May be called again (the wall clock was stepped).
  void alignRounds(Duration offset) { round_offset_ = offset; }

  /// Replaces the keyring (key rotation); takes effect for the next packet.
  void setKeyring(Keyring keys) { keys_ = std::move(keys); }

  /// This node's view of every member (indexed like the definition's nodes).
  const View& view() const { return view_; }
  /// Counters since construction.
  const Counters& counters() const { return counters_; }
  /// The drain state to persist (see membership/drain_snapshot.h).
  DrainSnapshot drainSnapshot() const;
  /// Peers that sent authentic packets with another cluster fingerprint.
  const std::vector<ForeignPeer>& foreignPeers() const { return foreign_; }
  const ClusterDefinition& definition() const { return def_; }
  uint32_t self() const { return self_; }

 private:
  // Per-peer timers and probe bookkeeping (the shared state is in view_).
  struct Peer {
    explicit Peer(FlapDamper damper) : flap(std::move(damper)) {}
    TimePoint last_heard{};  // any link, or an answered indirect probe
    bool probing = false;
    uint64_t probe_id = 0;
    TimePoint probe_started{};
    TimePoint probe_deadline{};
    uint32_t nacks_expected = 0;
    uint32_t nacks_received = 0;
    TimePoint suspicion_deadline{};
    TimePoint suspected_at{};  // start of this node's suspicion window
    uint64_t accusers = 0;     // bit i: node i suspects the member itself (MemberUpdate.accusers)
    TimePoint next_correction{};
    uint32_t gossip_left = 0;
    TimePoint hold_ended{};  // when this node last saw the member's hold-down end
    /// When this node last declared the member dead after not hearing it itself (TimePoint{}:
    /// the death was another node's view): counted by the flap damper at its return, unless
    /// this node was in a minority meanwhile (see last_minority_at_).
    TimePoint died_at{};
    // (boot id, sequence) of the heartbeat its claims came from: a heartbeat delayed past a
    // newer one (reordered, or sent on a slower link) must not bring older claims back.
    uint64_t claims_boot = 0;
    uint64_t claims_sequence = 0;
    // Heartbeat.release_serial of the stop instant MemberView::release_at bounds.
    uint32_t release_serial = 0;
    // How far this node's clock is ahead of the peer's, from its heartbeats' sealing times.
    OffsetBound offset;
    // Links on which the peer heard this node, as its latest heartbeat said (Heartbeat.heard),
    // and when that heartbeat arrived.
    uint8_t heard_me = 0;
    TimePoint heard_me_at{};
    FlapDamper flap;
  };
  // A probe this node runs for another member (it was asked through an IndirectProbe).
  struct Relay {
    uint32_t requester = 0;
    uint32_t reply_link = 0;
    uint64_t requester_probe = 0;
    uint32_t target = 0;
    uint32_t link = 0;
    uint64_t probe_id = 0;
    TimePoint deadline{};
  };

  void catchUp(TimePoint now);
  void tick(TimePoint now);
  Output finish(TimePoint now);

  void handleEnvelope(TimePoint now, const wire::Envelope& env, uint32_t link);
  void handleHeartbeat(TimePoint now, const wire::Envelope& in, uint32_t link);
  void handleAck(TimePoint now, uint32_t sender, uint32_t link, const wire::Ack& ack);
  void handleIndirectProbe(TimePoint now, uint32_t sender, uint32_t link,
                           const wire::IndirectProbe& probe);
  void handleStateExchange(TimePoint now, uint32_t sender, uint32_t link,
                           const wire::StateExchange& state);
  void recordForeign(TimePoint now, std::span<const uint8_t> bytes, const Endpoint& from);

  void heardFrom(TimePoint now, uint32_t node, uint32_t link);
  void selfReport(TimePoint now, uint32_t node, uint64_t incarnation, const NodeHealth& health);
  void applyUpdate(TimePoint now, const wire::MemberUpdate& update);
  void applyAboutSelf(TimePoint now, MemberState state, uint64_t incarnation);
  void adoptHoldDown(TimePoint now, uint32_t node, uint32_t hold_down_ms);
  void mergeDrain(TimePoint now, uint32_t node, const DrainState& drain);
  void setState(TimePoint now, uint32_t node, MemberState state, uint64_t incarnation);
  void setHealth(uint32_t node, const NodeHealth& health);
  void maybeCorrect(TimePoint now, uint32_t node, uint32_t link, uint64_t claimed);
  void queueGossip(uint32_t node);
  void accuse(uint32_t node);
  void mergeAccusers(uint32_t node, uint64_t accusers);
  void updateSuspicionDeadline(uint32_t node);

  void startProbe(TimePoint now, uint32_t node);
  // `scheduled`: the round of the heartbeat interval (backup links may leave peers out); the
  // extra round that carries this node's own changes at once goes out on every link.
  void heartbeatRound(TimePoint now, bool scheduled);
  // True if a link below `link` works both ways with `node` at `now` (see the protocol above).
  bool lowerLinkConfirmed(TimePoint now, uint32_t node, uint32_t link) const;
  // When `link` of `node` is reported down if nothing more arrives on it: suspect_after after
  // its last packet, or for a backup link, kBackupRoundDivisor times that while the peer may
  // still be sending the reduced rate on it, i.e. until two intervals after the lower links
  // fell silent too (by then the peer has noticed and sends every round).
  TimePoint linkDownAt(uint32_t node, uint32_t link) const;
  TimePoint nextRound(TimePoint now) const;
  void sendStateExchange(uint32_t node, uint32_t link, bool reply_wanted);
  void sendJoin();

  wire::MemberUpdate record(uint32_t node) const;
  void addGossip(google::protobuf::RepeatedPtrField<wire::MemberUpdate>* updates) const;
  wire::Heartbeat ownHeartbeat(uint32_t link, uint64_t probe_id) const;
  void send(uint32_t node, uint32_t link, wire::Envelope envelope);

  Duration suspectAfter() const;
  Duration suspicionTimeout() const;
  Duration suspicionTimeout(uint32_t node) const;
  Duration probeTimeout() const;
  uint32_t linkCount() const { return links_; }

  ClusterDefinition def_;
  uint32_t self_;
  uint32_t links_;
  Keyring keys_;
  WireIdentity identity_;
  PacketSealer sealer_;
  ReplayGuard replay_;
  Rng rng_;
  LocalHealth local_health_;
  FlapDamper self_flap_;
  /// The last time this node saw fewer than half of the configured nodes up, itself
  /// included (updated in finish()). Flap damping counts only deaths that a node saw while
  /// it was not in such a minority: a node cut off from the others sees all of them die at
  /// once, and repeated partitions would otherwise hold every node out of service.
  TimePoint last_minority_at_{};

  View view_;
  std::vector<Peer> peers_;
  std::vector<Relay> relays_;
  std::vector<ForeignPeer> foreign_;
  Counters counters_;
  Output out_;

  bool started_ = false;
  bool left_ = false;
  // When the packet being handled reached this host (onPacket()).
  TimePoint arrived_{};
  // Counts this node's own stop instants (Heartbeat.release_serial).
  uint32_t release_serial_ = 0;
  bool joined_ = false;
  bool broadcast_pending_ = false;
  uint32_t join_attempts_ = 0;
  uint64_t lamport_ = 0;
  TimePoint now_{};  // time of the current call (for the hold-down left in records)
  TimePoint scheduled_ = TimePoint::max();
  TimePoint next_heartbeat_{};
  uint64_t rounds_ = 0;  // scheduled heartbeat rounds sent
  std::optional<Duration> round_offset_;  // alignRounds(); none: every interval after the last
  TimePoint next_join_{};
  TimePoint next_push_pull_{};
};

}  // namespace shoal
