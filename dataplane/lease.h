#pragma once
// The dead-man switch on the kernel state: everything a node answers is leased. On nftables
// the lease is one set element with a timeout (`live`, dataplane/nft_ruleset.h) and every
// service chain drops what it would answer (new flows, its established connections, orphan
// resets) while that element is missing; the bucket sets themselves are permanent. The
// heartbeats renew it themselves: a rule on the output path (chain lease_out,
// dataplane/nft_ruleset.h) writes the element with the full lease for every heartbeat that
// leaves the daemon's sockets, so a round costs no netlink transaction. When a round sends
// nothing (a one-node cluster, every link down), the daemon renews with one prebuilt netlink
// transaction instead (flush + add of that element: it is never missing while renewals come
// in time). Either costs the same for any number of buckets. A daemon that is killed was already
// covered (the owned tables vanish with its socket); this covers one that is stalled:
// SIGSTOPped, swapped out, starved of CPU. Its node stops answering before any peer can have
// taken its buckets.
//
// Why the lease length is safe:
//  - A peer declares this node dead no earlier than suspect_after + the minimum suspicion
//    timeout after the last packet it received from it (membership/membership.h: it probes
//    after suspect_after of silence and declares a suspect dead a suspicion timeout after
//    that). Lifeguard multiplies both by the *peer's* 1 + score, which only makes it later;
//    however short the minimum suspicion timeout is made, it is not negative. The peer takes
//    the buckets after the declaration. So no peer answers this node's buckets before
//    T_send + suspect_after, T_send being when this node sent its last packet.
//  - A heartbeat renews as it leaves (T_renew = T_send), and the netlink fallback renews right
//    before the daemon sends (LeaseKeeper::beforeSend() in the same handler, nothing in
//    between that can block), so a renewal at T_renew writes an expiry
//    T_renew + lease <= T_send + lease. Every other write (apply) keeps the expiry of the last
//    renewal the daemon knows of, which is no later: nothing else extends the lease.
//  - The rule renews only an element that is still there: a lease that ran out stays out
//    whatever is sent, until the daemon has emptied its bucket sets and renews by netlink
//    (beforeSend() finds the lapse before a send, afterSend() one that happened while the
//    heartbeats were on their way; see below).
//  - Hence with lease <= suspect_after the kernel stops answering no later than any peer can
//    start. The margin is the minimum suspicion timeout plus the network latency.
//  - This node's own local-health multiplier stretches the timeouts it applies to its peers,
//    not theirs to it: the lease is the base suspect_after, never multiplied.
//  - The kernel keeps element timeouts in jiffies and may expire them up to a jiffy late
//    (4 ms at HZ=250, Debian's setting): the lease is shortened by kKernelTimerSlack. A
//    lookup treats an element as gone from its expiry on, before garbage collection removes
//    it (test/e2e/run_e2e.sh checks a stopped node is silent 50 ms after its lease).
//  - Not covered: a running node whose heartbeats are lost. Its peers may declare it dead
//    while it renews; that is a partition, for the quorum rule (membership/ownership.h).
// A renewal that comes later than the lease (the daemon stalled for longer than
// lease - spacing) finds it lapsed: the node has answered nothing since the expiry, and its
// peers may have taken its buckets. LeaseKeeper then brings the lease back with nothing owned;
// the caller takes its buckets again through the hand-off rule, with fresh claims.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "core/cluster_definition.h"
#include "dataplane/dataplane.h"

namespace shoal::dataplane {

using SteadyTime = std::chrono::steady_clock::time_point;

/// How late the kernel may expire a set element: one jiffy at HZ=250.
inline constexpr Millis kKernelTimerSlack{4};

/// The lease for `timing`: suspect_after - kKernelTimerSlack (at least 1 ms). See above.
Millis leaseLength(const TimingProfile& timing);

/// The shortest time between two renewals: half a heartbeat interval (at least 1 ms). Every
/// heartbeat round renews; the extra sends between rounds (acks, claims) do not by netlink
/// (with the heartbeats renewing in the kernel, every datagram on the cluster port does).
Millis renewSpacing(const TimingProfile& timing);

/// The arithmetic of one lease, with the time passed in. Before the first renewal there is
/// no lease: nothing is due to run out.
class Lease {
 public:
  /// `length` and `spacing` at least 1 ms (smaller values are raised to 1 ms).
  Lease(Millis length, Millis spacing);

  Millis length() const { return length_; }
  Millis spacing() const { return spacing_; }
  /// True once renewed() was called.
  bool started() const { return started_; }
  /// When the lease runs out (meaningful once started).
  SteadyTime expiry() const { return expiry_; }
  /// True if a renewal is due at `now`: never renewed, or `spacing` passed since the last.
  bool renewalDue(SteadyTime now) const;
  /// True if the lease has run out by `now` (false before it started).
  bool lapsedBy(SteadyTime now) const;
  /// Whole milliseconds left at `now`, rounded down; zero once lapsed; `length` before start.
  Millis remaining(SteadyTime now) const;
  /// Records a renewal written at `now`: the lease runs until now + length.
  void renewed(SteadyTime now);

 private:
  Millis length_;
  Millis spacing_;
  bool started_ = false;
  SteadyTime last_renewal_{};
  SteadyTime expiry_{};
};

/// Keeps one Dataplane's lease: applies states so that nothing outlives the lease, renews it
/// when the caller is about to send, and handles a lapse. Pure logic around the dataplane;
/// the caller passes the time. Not thread-safe.
class LeaseKeeper {
 public:
  /// What beforeSend() did.
  enum class Outcome {
    NotEnforced,  ///< the dataplane cannot expire state (CLUSTERIP): nothing to do
    NotDue,       ///< renewed less than `spacing` ago
    Renewed,      ///< renewed for the full length
    BySend,       ///< due; the heartbeats about to leave renew it (call afterSend())
    Lapsed,       ///< the lease had run out: counted; renewed with nothing owned
    Failed,       ///< the dataplane refused (error): the lease keeps its old expiry
  };
  struct Renewal {
    Outcome outcome = Outcome::NotDue;
    std::string error;  ///< set for Failed (and for Lapsed if the empty state failed to apply)
    Millis silent{0};   ///< for Lapsed: time since the renewal before, whole ms
  };

  /// `dataplane` must outlive the keeper.
  LeaseKeeper(Dataplane& dataplane, Millis length, Millis spacing);

  /// Applies `desired` (its `lease` is set here). Without enforcement: as is. Before the
  /// first renewal: with the full length, which starts the lease. Afterwards: with what is
  /// left of the lease, so an apply never extends it (a bucket-set change does not touch the
  /// leased element; a rebuild writes it with that remainder). Once the lease has run out
  /// nothing is written (the kernel answers none of the owned buckets anyway): the state is
  /// kept for beforeSend(), which handles the lapse. Errors: the dataplane's.
  Status apply(SteadyTime now, DesiredState desired);

  /// Call immediately before sending anything to the peers, in the same handler (see the top
  /// of this file for why). Renews when due. On a lapse it counts it and applies the last
  /// state with every owned and reset bucket removed under a fresh lease: the caller must
  /// treat its buckets as gone and take them again only with fresh claims from its peers.
  /// A lease that ran out before its first renewal while the state owned nothing (a slow
  /// start between the first apply and the first send) is renewed, not a lapse.
  Renewal beforeSend(SteadyTime now);

  /// Call right after sending (`now` read after it), when beforeSend() answered BySend, with
  /// `sent_any`: whether the kernel took at least one of the datagrams (each passed the rule
  /// that renews). If it did, the lease counts as renewed at the time given to beforeSend(),
  /// no later than the kernel's own renewal. If none left (no peer, every link down), it
  /// renews the usual way. If the lease ran out meanwhile (a stall between the two calls),
  /// handles the lapse as beforeSend() does. Returns Renewed, Failed or Lapsed; NotDue if no
  /// renewal was pending.
  Renewal afterSend(SteadyTime now, bool sent_any);

  bool enforced() const { return dataplane_.leaseEnforced(); }
  const Lease& lease() const { return lease_; }
  /// Lapses since construction.
  uint64_t lapses() const { return lapses_; }
  /// Successful renewals since construction (lapse recoveries included).
  uint64_t renewals() const { return renewals_; }

 private:
  Dataplane& dataplane_;
  Lease lease_;
  // Renews through the dataplane (a kernel call) and records it at `now`.
  Renewal renewNow(SteadyTime now);
  // The lease ran out: counts it and applies the last state with nothing owned under a
  // fresh lease (see beforeSend()).
  Renewal recoverLapse(SteadyTime now);

  std::optional<DesiredState> last_;  ///< the last state given to apply()
  std::optional<SteadyTime> pending_;  ///< beforeSend() answered BySend at this time
  uint64_t lapses_ = 0;
  uint64_t renewals_ = 0;
};

}  // namespace shoal::dataplane
