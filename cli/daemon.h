#pragma once
// shoald's wiring: membership -> rebalance and hand-off -> dataplane, on one Boost.Asio event
// loop. Everything that decides is elsewhere (membership/membership.h, membership/ownership.h,
// core/rebalance.h); this class moves facts between them and the outside world: sockets,
// timers, signals, the control socket, health checks, notify hooks and the state files.

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/clock_lead.h"
#include "cli/event_log.h"
#include "cli/health_checks.h"
#include "cli/health_state.h"
#include "cli/notify_hooks.h"
#include "cli/state_saver.h"
#include "cli/wakeup_timer.h"
#include "core/bucket_set.h"
#include "core/cluster_definition.h"
#include "core/result.h"
#include "dataplane/conntrack_count.h"
#include "dataplane/dataplane.h"
#include "dataplane/lease.h"
#include "dataplane/link_monitor.h"
#include "membership/membership.h"
#include "membership/ownership.h"
#include "membership/udp_transport.h"
#include "proto/control.pb.h"

namespace shoal::daemon {

class ControlServer;

struct DaemonOptions {
  std::string config_path;
  std::string node;  ///< empty: found by the local addresses
  std::string socket_path = "/run/shoal/shoald.sock";
  std::string state_dir = "/var/lib/shoal";
  std::optional<Backend> backend;  ///< overrides the definition's dataplane
  /// Scripts run on bucket and node changes (notify_hooks.h), after the definition's
  /// notify_hooks.
  std::vector<std::string> notify_scripts;
  /// Overrides the definition's health_hold_down_ms (how long a node whose checks recovered
  /// stays out, against flapping health).
  std::optional<Millis> health_hold_down;
};

class Daemon {
 public:
  /// Reads the definition and key, finds this node, opens the sockets, the dataplane and the
  /// control socket. Errors say what to fix; nothing is left installed on failure.
  static Result<std::unique_ptr<Daemon>> create(boost::asio::io_context& io, DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// Starts membership and the timers; returns at once (the caller runs the io_context).
  void start();
  /// Process exit status once the io_context has stopped: 0 after a graceful leave.
  int exitCode() const { return exit_code_; }

 private:
  Daemon(boost::asio::io_context& io, DaemonOptions options, ClusterDefinition def, uint32_t self);

  // Membership plumbing.
  /// The kernel's receive timestamp of a datagram read at `now`, in monotonic time;
  /// TimePoint{} when there is none or it cannot be trusted (the wall clock was stepped).
  TimePoint arrivalTime(TimePoint now, const ClockLead& lead, WallTime arrived);
  /// Monotonic instant `t` on the wall clock for the kernel (ns since the epoch): no earlier
  /// than the truth for the start of a take (`from`), no later for the end of a release.
  int64_t wallInstant(TimePoint t, bool from) const;
  /// Forgets the wall-clock values of instants no longer in timed_.
  void pruneWallInstants();
  void handle(Output out);
  void armTimer(TimePoint when);
  void onTimer();
  /// Joins multicast heartbeat groups again on replaced interfaces; logs what it did.
  void repairHeartbeatGroups();
  void onLinkReadable(const boost::system::error_code& ec);
  void onEvent(const Event& e);

  // Buckets.
  bool settled(TimePoint now) const;
  /// After a lease lapse: true once every up peer has been heard from since the stall
  /// (dataplane/lease.h); true when no lapse is pending.
  bool resettled(TimePoint now);
  /// Checks the dataplane lease right before anything is sent: renews it (or leaves that to
  /// the heartbeats about to leave) and handles a lapse.
  void keepLease(TimePoint now);
  /// Acts on what the lease keeper did: logs a failed renewal once, until one succeeds again;
  /// on a lapse, logs it and holds nothing until the peers have been heard from again.
  void noteRenewal(TimePoint now, const dataplane::LeaseKeeper::Renewal& r);
  void reconcile();
  /// The gap bridging of planned hand-overs (dataplane.h: ForwardedBucket), per service.
  struct GapBridges {
    std::vector<std::vector<dataplane::ForwardedBucket>> forwarded;
    std::vector<std::vector<dataplane::TimedBucket>> noted;
    bool operator==(const GapBridges&) const = default;
  };
  dataplane::DesiredState desiredState(const std::vector<BucketSet>& hold, const TimedHold& timed,
                                       const GapBridges& bridges) const;
  /// The bridges for decision `d`: the windows kept from before that still matter, plus one
  /// per release (forwarded to the bucket's target) and per take (noted) that `d` starts.
  GapBridges bridgesFor(const OwnershipDecision& d) const;
  /// The address of node `m` on the heartbeat link to copy packets of a service of
  /// family `v4` over: the first link it is heard on, else the first of that family.
  std::optional<IpAddress> bridgeAddress(std::size_t m, bool v4) const;
  /// What this node answers now or is committed to (its claims): held, releasing, taking.
  std::vector<BucketSet> claims() const;
  /// Logs and hooks the buckets gained and lost between two "answered now" sets
  /// (answered()).
  void reportBucketChanges(const std::vector<BucketSet>& before);
  /// Logs the hand-overs started since `before` (releases, takes; a take loaded after its
  /// instant is a warning and counted).
  void reportHandOffs(const TimedHold& before, TimePoint now);
  /// The buckets answered now: held and still releasing.
  std::vector<BucketSet> answered() const;
  /// Arms the hand-off timer for the next release or take instant (reconcile() then).
  void armHandOff(TimePoint when);
  /// Tells the peers what this node claims and hands over (at once, on every link).
  void announceClaims();
  /// Announces the claims with `digest` if the view digest last announced differs.
  void announceIfViewChanged(uint64_t digest);

  // Health.
  void onCheckResult(CheckResult r);
  void onLinkChange(const std::string& interface, std::optional<bool> up);
  void publishHealth();
  // The definition's hold-down unless --health-hold-down-ms overrides it.
  Millis holdDown() const { return options_.health_hold_down.value_or(def_.health_hold_down); }
  // The definition's notify hooks, then the ones given with --notify.
  std::vector<std::string> hookScripts() const;

  // Control socket.
  control::Response onControl(const control::Request& request);
  control::Status buildStatus() const;

  // Signals.
  void waitForSignal();
  /// SIGTERM: announces the leave and hands the buckets over (timed where the dataplane can
  /// switch on time), then finishLeave() once the hand-over instant has passed.
  void gracefulLeave();
  /// After the hand-over instant: lets go of everything, then lingers or leaves.
  void finishLeave();
  /// With leave_linger_ms and a dataplane that keeps established connections on their node:
  /// while connections this node accepted are open, it stays a member that owns nothing
  /// (peers reset no flow of a member that is up) and serves them, checking every 100 ms,
  /// until none is left or the linger ends. False: nothing to wait for, leave now.
  bool startLinger(TimePoint now);
  /// Counts the open connections off the event loop; onConnectionCount() gets the result.
  void countConnections();
  void onConnectionCount(const Result<dataplane::Connections>& found);
  void pollLinger();
  /// Leave message, dataplane teardown, exit.
  void completeLeave();
  void reload();

  void persistDrain();
  void scheduleDriftCheck();
  void hook(std::map<std::string, std::string> env);

  boost::asio::io_context& io_;
  DaemonOptions options_;
  ClusterDefinition def_;
  uint32_t self_;
  TimePoint started_;
  TimePoint next_realign_{};  // when the heartbeat grid is next put on the wall clock
  std::unique_ptr<Membership> membership_;
  std::unique_ptr<UdpTransport> transport_;
  std::unique_ptr<dataplane::Dataplane> dataplane_;
  /// Every apply goes through it: the buckets answered expire unless renewed.
  std::unique_ptr<dataplane::LeaseKeeper> lease_;
  /// Set by a lease lapse or by regaining quorum: the node holds nothing until every up peer
  /// has been heard from again (fresh claims) and every other has had the time to be, as
  /// after a start.
  std::optional<TimePoint> resettle_from_;
  std::string resettle_reason_;  ///< what started it, for the log
  // Resettling: when the sockets were first seen empty after the lapse (see resettled()).
  std::optional<TimePoint> backlog_read_;
  bool renew_failed_ = false;
  std::unique_ptr<dataplane::LinkMonitor> links_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> links_fd_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<HookRunner> hooks_;
  std::unique_ptr<StateSaver> drain_saver_;  // drain.state, written off the event loop
  std::unique_ptr<HealthRunner> health_runner_;
  std::vector<HealthCheck> checks_;  ///< the definition's checks plus one per LAN interface
  CheckHealth health_;
  std::unique_ptr<WakeupTimer> wakeup_;  ///< the membership core's next wake-up
  boost::asio::steady_timer drift_timer_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer handoff_timer_;  // the next release or take instant
  boost::asio::steady_timer leave_timer_;    // a graceful stop's hand-over instant
  boost::asio::steady_timer health_timer_;
  boost::asio::signal_set signals_;
  EventLog events_;
  std::vector<BucketSet> held_;  ///< answered without a time limit
  /// Answered within a window of time: planned moves switched at an instant (ownership.h).
  TimedHold timed_;
  GapBridges bridges_;                        ///< in force with held_ and timed_
  std::string bridge_warning_;                ///< why the gaps cannot be bridged here, for status
  TimePoint next_change_ = TimePoint::max();  ///< when the decision must be made again
  TimePoint handoff_armed_ = TimePoint::max();  ///< where handoff_timer_ is set (max: not)
  /// Per service and bucket: the last up peer seen claiming it, and the node this node took it
  /// from (-1: nobody), to tell take-overs from a dead node from hand-overs.
  std::vector<std::vector<int>> last_claimant_;
  std::vector<std::vector<int>> taken_from_;
  std::vector<std::vector<uint32_t>> applied_orphans_;
  OwnershipDecision last_;
  OwnershipInputs decided_inputs_;  ///< what last_ was decided from
  bool have_decision_ = false;
  shoal::NodeHealth published_health_;
  bool health_published_ = false;
  uint64_t last_digest_ = 0;
  bool apply_failed_ = false;
  bool stopping_ = false;       // SIGTERM: leaving, handing the buckets over
  bool leaving_ = false;        // left: nothing more is sent or decided
  bool lingering_ = false;      // stopping, owning nothing, serving open connections
  bool linger_reported_ = false;  // the first count that found open connections was logged
  bool linger_idle_reported_ = false;  // the first count that found idle ones was logged
  bool leave_now_ = false;        // a second stop signal: no lingering
  TimePoint linger_from_{};
  TimePoint linger_until_{};
  std::unique_ptr<dataplane::ConnectionCount> connections_;  // opened at the first stop
  std::thread count_thread_;    // the count in progress (a conntrack dump), joined before the next
  bool drain_unsaved_ = false;  // a drain write arrived; persistDrain() at the end of handle()
  uint64_t drift_repairs_ = 0;
  uint64_t late_takes_ = 0;              // timed takes loaded after their instant
  std::optional<ClockLead> last_lead_;  // the two clocks' difference at the last read
  TimePoint stamps_distrusted_until_{};
  /// The wall-clock values the kernel got for the hand-over instants ((instant, is a take
  /// start) -> ns), kept while the instants are in use.
  mutable std::map<std::pair<TimePoint, bool>, int64_t> wall_instants_;
  bool reconvert_ = false;  // the wall clock was stepped: apply the timed buckets again
  int exit_code_ = 0;
};

}  // namespace shoal::daemon
