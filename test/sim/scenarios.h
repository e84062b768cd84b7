#pragma once
// The measured scenarios behind the membership figures, shared by the simulation tests (which
// assert bounds on them) and the bench (which prints them). All run in virtual time from a seed.

#include <cstdint>
#include <string>
#include <vector>

#include "test/sim/sim_cluster.h"

namespace shoal::sim {

/// Value at quantile q (0..1) of `values` (nearest rank); 0 for an empty list.
double percentile(std::vector<double> values, double q);

/// When the simulated nodes send their heartbeat rounds.
enum class Rounds {
  Free,     ///< each node's rounds follow its own start (clocks not synchronised)
  Aligned,  ///< on one grid, as shoald does, with clock errors of up to 1 ms (NTP on a LAN)
};

/// Crash detection: times from a crash to each survivor declaring the crashed node dead.
struct DetectionResult {
  std::vector<double> detection_ms;    ///< one per survivor and crash
  std::vector<double> convergence_ms;  ///< every disagreement episode, in milliseconds
  uint64_t missed = 0;                 ///< survivors that never declared the crashed node dead
  uint64_t false_deaths = 0;           ///< deaths declared of nodes that were running
};

/// Crashes one node at a time (`crashes` times, at a random phase of the heartbeat), restarts
/// it after a second, on a cluster of `nodes` nodes with `links` links of 1 ms delay.
DetectionResult measureDetection(const TimingProfile& timing, std::size_t nodes, std::size_t links,
                                 int crashes, uint64_t seed, Rounds rounds = Rounds::Free);

/// The adverse conditions under which no node may be declared dead.
enum class Adversity {
  Loss5,           ///< 5 % loss on each link
  OneLinkDown,     ///< link 1 completely down
  Loss10Jitter20,  ///< 10 % loss and 0..20 ms extra delay on each link
  Stall3,          ///< every 10 s, one node (in turn) stalls for three heartbeat intervals
};
const char* toString(Adversity adversity);

/// What a soak run saw.
struct SoakResult {
  uint64_t false_deaths = 0;  ///< Dead events of any node at any node (nothing crashed)
  uint64_t suspicions = 0;    ///< suspicions announced, summed over nodes
  uint64_t refutations = 0;   ///< refutations, summed over nodes
  uint64_t probes = 0;        ///< direct probes sent, summed over nodes
  std::vector<double> convergence_ms;
  double wall_seconds = 0;  ///< real time the simulation took
  uint64_t trace_digest = 0;  ///< SimCluster::traceDigest() at the end
};

/// Runs `nodes` nodes (two links, 1 ms delay) for `duration` of virtual time under `adversity`.
SoakResult soak(const TimingProfile& timing, std::size_t nodes, Adversity adversity,
                Duration duration, uint64_t seed, Rounds rounds = Rounds::Free);

/// Cost of one node in steady state.
struct CostResult {
  double packets_per_s = 0;  ///< datagrams sent per node per simulated second
  double bytes_per_s = 0;    ///< bytes sent per node per simulated second
  double cpu_us_per_s = 0;   ///< CPU microseconds in the core per node per simulated second
};

/// Measures CostResult over `seconds` of virtual time after a warm-up.
CostResult measureCost(const TimingProfile& timing, std::size_t nodes, std::size_t links,
                       double seconds, uint64_t seed, Rounds rounds = Rounds::Free);

/// Drain and health changes: every episode until all nodes agree, in milliseconds.
std::vector<double> measureChangeConvergence(const TimingProfile& timing, std::size_t nodes,
                                             int changes, uint64_t seed);

}  // namespace shoal::sim
