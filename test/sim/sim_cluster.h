#pragma once
// A deterministic network simulator for the membership core: N cores (membership/membership.h)
// driven in virtual time by a discrete-event queue, with per-link delay, jitter, loss,
// duplication, reordering and partitions, and node crash, restart and pause (a stalled
// process). Every random choice comes from one seed: the same seed gives the same run.
//
// Used by test/membership/test_simulation.cpp and test/bench/bench_membership.cpp.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster_definition.h"
#include "core/keyring.h"
#include "membership/membership.h"
#include "membership/rng.h"

namespace shoal::sim {

/// What a datagram meets on one link between two nodes (each direction drawn independently).
struct LinkConditions {
  Duration delay = std::chrono::milliseconds(1);  ///< one-way base delay
  Duration jitter{0};    ///< extra delay, uniform in [0, jitter]; reorders datagrams
  double loss = 0;       ///< probability a datagram is dropped
  double duplicate = 0;  ///< probability a datagram arrives twice
  double reorder = 0;    ///< probability a datagram is held back by reorder_delay
  Duration reorder_delay = std::chrono::milliseconds(5);
  bool down = false;  ///< the link carries nothing (cable pulled, switch dead)
};

/// A cluster definition of `nodes` nodes with `links` links each (addresses 10.L.0.N+1),
/// built directly, so it may exceed the loader's 16-node limit to show scaling.
ClusterDefinition makeDefinition(std::size_t nodes, std::size_t links, const TimingProfile& t);

/// The keyring every simulated node shares (one fixed key, id 1).
Keyring simKeyring();

/// Counts per node, for the per-node cost figures.
struct NodeStats {
  uint64_t packets_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t packets_received = 0;
  int64_t cpu_ns = 0;  ///< thread CPU time spent inside the node's core calls
};

/// One observed core event with the time and node it happened on.
struct Observed {
  TimePoint at;
  uint32_t node;
  Event event;
};

/// N simulated nodes on simulated links.
class SimCluster {
 public:
  /// `def` gives the nodes and links; `seed` fixes every random choice of the run.
  SimCluster(ClusterDefinition def, uint64_t seed);
  ~SimCluster();

  /// Sets the conditions of `link` between every pair of nodes, both directions.
  void setLink(uint32_t link, const LinkConditions& conditions);
  /// Sets the conditions of `link` between nodes a and b only, both directions.
  void setPath(uint32_t a, uint32_t b, uint32_t link, const LinkConditions& conditions);
  /// Sets the conditions of `link` from node `from` to node `to` only (a one-way fault).
  void setDirection(uint32_t from, uint32_t to, uint32_t link, const LinkConditions& conditions);
  /// Cuts every link (or only `link`) between the nodes in `side` and all others.
  void partition(const std::vector<uint32_t>& side, std::optional<uint32_t> link = {});
  /// Restores every path to the per-link conditions set with setLink().
  void heal();

  /// Makes every node started from now on put its heartbeat rounds on one grid
  /// (Membership::alignRounds), as daemons with synchronised wall clocks do: each node's clock
  /// is off by a fixed error drawn uniformly from [0, clock_error]. Without a call, each
  /// node's rounds follow its start.
  void alignRounds(Duration clock_error);
  /// Starts every node, each at a random moment within one heartbeat interval from now (as
  /// real daemons never start in lockstep).
  void startAll();
  /// Starts (or restarts after crash()) `node` now, with a new boot id and the drain state
  /// it last persisted.
  void start(uint32_t node);
  /// Kills `node` now: its state is lost, datagrams to it vanish.
  void crash(uint32_t node);
  /// Stalls `node` for `duration` from now: it runs no timer and reads no datagram until
  /// then; datagrams wait in its socket buffer and are read when it resumes.
  void pause(uint32_t node, Duration duration);
  /// Drain command given on node `at` for node `target`.
  void drain(uint32_t at, uint32_t target, DrainMode mode);
  /// Health report of `node` itself.
  void setHealth(uint32_t node, NodeHealth health);
  /// Graceful stop of `node`.
  void leave(uint32_t node);
  /// Hands raw bytes to `node` as if received on `link` from `from` (forged or replayed
  /// datagrams in tests).
  void inject(uint32_t node, uint32_t link, const std::string& bytes, const Endpoint& from);

  /// Runs the simulation until virtual time `until` (or for `duration`).
  void runUntil(TimePoint until);
  void runFor(Duration duration) { runUntil(now_ + duration); }
  TimePoint now() const { return now_; }

  std::size_t size() const;
  const ClusterDefinition& definition() const { return def_; }
  /// True while `node` runs (started and not crashed; a paused node runs).
  bool running(uint32_t node) const;
  bool paused(uint32_t node) const;
  /// The core of a running node.
  const Membership& core(uint32_t node) const;

  /// Called for every event of every core, in order.
  void setObserver(std::function<void(const Observed&)> observer) {
    observer_ = std::move(observer);
  }
  /// Records every datagram sent by `node` (its bytes) for replay tests; off by default.
  void recordSent(uint32_t node, std::vector<Datagram>* sink) { record_[node] = sink; }

  const NodeStats& stats(uint32_t node) const;
  /// Measures NodeStats::cpu_ns (one clock_gettime system call around every core call, so
  /// off unless a figure needs it).
  void measureCpu(bool on) { measure_cpu_ = on; }
  void resetStats();

  /// Durations of every episode in which the running, unpaused nodes did not hold the same
  /// view (per member: up or not, drain mode, health, held down), from the first node that
  /// changed to the last that caught up.
  const std::vector<Duration>& convergenceEpisodes() const { return episodes_; }
  /// True if the running, unpaused nodes hold the same view now.
  bool agreed() const;
  /// A digest of the view of `node` as compared for agreement.
  uint64_t viewDigest(uint32_t node) const;
  /// A digest of the whole run so far: every delivered datagram (time, receiver, link,
  /// sender, bytes) and every event (time, node, kind, member, state). Two runs with the same
  /// seed have the same digest; a change to the simulator that must not change behaviour
  /// (a faster implementation) must keep it.
  uint64_t traceDigest() const { return trace_; }

 private:
  struct Node;
  struct Item;
  struct SimDatagram;

  void push(Item item);
  void apply(uint32_t node, Output out);
  void transmit(uint32_t from, uint32_t to, uint32_t link,
                const std::shared_ptr<const SimDatagram>& datagram);
  void deliver(uint32_t node, uint32_t link, uint32_t from, const SimDatagram& datagram);
  void resume(uint32_t node);
  void checkAgreement();
  template <typename F>
  void call(uint32_t node, F&& f);
  LinkConditions& path(uint32_t from, uint32_t to, uint32_t link);
  void trace(uint64_t word) { trace_ = (trace_ ^ word) * 1099511628211ull; }

  ClusterDefinition def_;
  Keyring keys_;
  Rng rng_;
  std::vector<std::optional<Duration>> round_offsets_;  // per node; none: rounds not aligned
  uint64_t seed_;
  TimePoint now_{};
  uint64_t sequence_ = 0;
  std::vector<Node> nodes_;
  std::vector<Item> queue_;  // a binary heap ordered by (time, sequence)
  std::vector<LinkConditions> link_defaults_;
  std::vector<LinkConditions> paths_;  // [from][to][link]
  std::vector<std::vector<Datagram>*> record_;
  std::function<void(const Observed&)> observer_;
  bool measure_cpu_ = false;
  std::optional<TimePoint> diverged_since_;
  std::vector<Duration> episodes_;
  uint64_t trace_ = 1469598103934665603ull;
};

}  // namespace shoal::sim
