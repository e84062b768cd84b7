#pragma once
// The health of this node, from the results of its health checks: rise/fall hysteresis per
// check (one odd result never moves buckets) and a hold-down after a recovery (a node whose
// check flaps does not pull buckets back and forth). Pure: the daemon feeds it results with
// their times; tests feed it simulated ones. (shoal::NodeHealth is what travels on the wire.)

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster_definition.h"

namespace shoal::daemon {

using Clock = std::chrono::steady_clock;

/// Rise/fall hysteresis of one check. The first result sets the state directly, so a node
/// that starts with a failing application never takes buckets, and one that starts healthy
/// does not wait `rise` intervals.
class CheckHysteresis {
 public:
  CheckHysteresis(uint32_t rise, uint32_t fall) : rise_(rise), fall_(fall) {}

  /// Records one result; returns true when the check's state changed.
  bool record(bool passed);
  /// True once the check has passed `rise` times in a row since it last failed (or its first
  /// result passed).
  bool healthy() const { return healthy_; }
  /// False until the first result arrives.
  bool known() const { return known_; }

 private:
  uint32_t rise_;
  uint32_t fall_;
  bool known_ = false;
  bool healthy_ = false;
  uint32_t streak_ = 0;  ///< consecutive results that disagree with the current state
};

/// The node's health: healthy when every check is healthy and the hold-down since the last
/// recovery has passed. A node with no checks is always healthy.
class CheckHealth {
 public:
  /// `hold_down`: how long the node stays unhealthy after all its checks have recovered.
  CheckHealth(const std::vector<HealthCheck>& checks, Millis hold_down);

  /// Records the result of check `index` (its position in the definition) at `now`, with a
  /// one-line detail for status output (e.g. "exit 1", "load 9.3 > 8").
  void record(Clock::time_point now, std::size_t index, bool passed, std::string detail);
  /// Whether the node may serve buckets at `now`. Checks that have not reported yet count as
  /// failing, so nothing is served before every check has spoken once.
  bool healthy(Clock::time_point now) const;
  /// When healthy() will next change by itself (the end of a hold-down), if it will.
  std::optional<Clock::time_point> nextChange(Clock::time_point now) const;
  /// "name: detail" for every check that is failing or has not reported, for status output.
  std::vector<std::string> failing() const;
  /// Changes the hold-down (a reload); a hold-down that runs ends by the new length.
  void setHoldDown(Millis hold_down) { hold_down_ = hold_down; }

 private:
  struct Entry {
    std::string name;
    CheckHysteresis state;
    std::string detail;
  };
  bool allChecksHealthy() const;

  std::vector<Entry> entries_;
  Millis hold_down_;
  bool was_all_healthy_ = false;
  bool ever_failed_ = false;
  Clock::time_point recovered_at_{};
};

}  // namespace shoal::daemon
