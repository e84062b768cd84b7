#pragma once
// The dataplane: what makes the kernel answer exactly the buckets this node owns.
// One interface, one implementation per kernel mechanism (nftables, CLUSTERIP), and a
// recording fake for unit tests of the layers above.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster_definition.h"
#include "core/result.h"

namespace shoal::dataplane {

/// "No end" for TimedBucket::until_ns.
inline constexpr int64_t kForeverNs = INT64_MAX;

/// A bucket answered only while the kernel's wall clock (CLOCK_REALTIME, nanoseconds since the
/// epoch: the time nftables' `meta time` reads for each packet) is in [from_ns, until_ns).
/// A planned hand-off switches a bucket at one instant this way: the releasing node answers
/// it until T, the receiving node from T' >= T (membership/ownership.h says how the two
/// instants are agreed without synchronised clocks), so no request is answered twice and
/// only those that arrive between T and T' (about the fastest recent heartbeat's trip plus
/// a margin) would go unanswered, but for the bridging of that gap (ForwardedBucket).
struct TimedBucket {
  uint32_t bucket = 0;
  int64_t from_ns = 0;            ///< 0: answered from the past on
  int64_t until_ns = kForeverNs;  ///< exclusive; kForeverNs: no end

  auto operator<=>(const TimedBucket&) const = default;
};

/// The gap of a timed hand-off, bridged (nftables): a packet that reaches both nodes in the
/// gap, after the releaser's instant but before the taker's, is answered by the taker
/// through a copy the releaser sends it over a heartbeat link.
///  - The releaser copies every packet of a released bucket it drops within
///    [from_ns, until_ns) of its own clock to `to`, the taker's heartbeat address (the
///    kernel sends the copy, nftables' `dup`); TCP only for its first packet (a SYN: the
///    releaser keeps serving its established connections).
///  - The taker notes each packet of a bucket it is taking that it drops within a window of
///    its own clock around its instant (ServiceAssignment::gap_noted), and answers a copy that
///    arrives on any other interface than the service's only if it noted the same packet (source,
///    source port, IP ID and the next 4 bytes of the transport header; IPv6 without an ID),
///    once. A packet is answered by the releaser, by the taker directly, or by the taker
///    through the copy; by two only if two distinct packets share all of those fields.
struct ForwardedBucket {
  uint32_t bucket = 0;
  int64_t from_ns = 0;   ///< CLOCK_REALTIME, as TimedBucket
  int64_t until_ns = 0;  ///< exclusive
  IpAddress to;          ///< the taker's heartbeat address (the service's address family)

  auto operator<=>(const ForwardedBucket&) const = default;
};

/// The buckets this node must answer for one service. `owned` is sorted, each < buckets.
struct ServiceAssignment {
  Service service;
  std::vector<uint32_t> owned;
  /// Owned buckets taken over from a node that died (sorted, a subset of `owned`). Mid-stream
  /// TCP packets of flows this node never accepted get a TCP reset in these buckets, so the
  /// dead node's clients fail fast instead of hanging. Leave out buckets that moved from a live
  /// node: that node keeps serving its established connections and a reset would kill them.
  std::vector<uint32_t> reset_orphans;
  /// Buckets answered within a window of the wall clock only, sorted by bucket, none of them
  /// in `owned`. Only for backends whose timedBuckets() is true.
  std::vector<TimedBucket> timed;
  /// Released buckets whose dropped packets are copied to their taker within a window
  /// (ForwardedBucket), sorted. Only for backends whose bridgesGaps() is true.
  std::vector<ForwardedBucket> forwarded;
  /// Buckets about to be taken whose dropped packets are noted within a window, so that
  /// the releaser's copies of them are answered (ForwardedBucket), sorted, none in `owned`.
  std::vector<TimedBucket> gap_noted;
};

/// Everything the kernel must enforce on this node. An empty `owned` list still keeps the
/// service's rules in place (the node answers nothing for it).
struct DesiredState {
  std::vector<ServiceAssignment> services;
  /// The lease (dataplane/lease.h): the owned and timed buckets, the reset orphans and the
  /// node's established connections are answered for this long from the apply, then no more unless
  /// renew() is called. nullopt: they never expire. At least 1 ms when set. Backends that
  /// cannot expire state (leaseEnforced() false) ignore it.
  std::optional<Millis> lease{};
};

/// What a drift check found and repaired.
struct DriftReport {
  uint32_t repaired = 0;  ///< number of things put back (rules, sets, addresses, MAC joins)
  std::vector<std::string> details;  ///< one human-readable line per repair
};

/// A kernel mechanism that enforces bucket ownership. Implementations are not thread-safe;
/// the daemon calls them from its one event loop.
class Dataplane {
 public:
  virtual ~Dataplane() = default;

  /// Short name for logs and status ("nftables", "clusterip", "fake").
  virtual const char* name() const = 0;

  /// Makes the kernel enforce `desired`, atomically per change where the mechanism allows.
  /// Idempotent. On error the previous state stays in force and the error says what failed.
  virtual Status apply(const DesiredState& desired) = 0;

  /// Compares the kernel with the last applied state, repairs any difference and reports it.
  virtual Result<DriftReport> checkAndRepair() = 0;

  /// Removes everything this dataplane installed (rules, VIPs it added, MAC joins).
  virtual Status teardown() = 0;

  /// True if the kernel stops answering by itself when a lease runs out (nftables: set
  /// elements with a timeout). False if the state stays until it is changed (CLUSTERIP: its
  /// /proc responsibility has no timeout, so a stalled daemon's node keeps answering).
  virtual bool leaseEnforced() const = 0;

  /// Renews the lease of the state in force: its owned buckets, reset orphans and established
  /// connections are answered for `lease` (at least 1 ms) from now. One atomic change: no
  /// packet finds the lease missing while it is renewed. A lease that ran out comes back.
  /// A no-op returning Ok where leaseEnforced() is false, or before the first apply().
  virtual Status renew(Millis lease) = 0;

  /// True if the kernel answers ServiceAssignment::timed buckets exactly within their
  /// windows (nftables: `meta time` against an interval set). Backends that cannot
  /// (CLUSTERIP: its /proc responsibility switches when written) refuse timed buckets, and
  /// the daemon hands buckets over the untimed way: release, announce, take.
  virtual bool timedBuckets() const { return false; }
  /// True if the backend bridges the gaps of timed hand-offs (ServiceAssignment::forwarded
  /// and gap_noted; nftables). Others ignore those lists.
  virtual bool bridgesGaps() const { return false; }
  /// Whether connections this node accepted stay on it after their bucket moves away (and
  /// while it owns no bucket at all), as long as the lease runs.
  virtual bool keepsEstablished() const { return false; }

  /// True if each heartbeat this node sends renews the lease of the state in force by itself
  /// (nftables: a rule on the output path), so the caller needs renew() only when none left.
  virtual bool renewsOnSend() const { return false; }
  /// Records that heartbeats sent just now renewed the lease in the kernel: it runs for at
  /// least `lease` from now (what a rebuild writes back).
  virtual void renewedBySend(Millis lease) { (void)lease; }
};

}  // namespace shoal::dataplane
