#include "cli/health_state.h"

namespace shoal::daemon {

bool CheckHysteresis::record(bool passed) {
  if (!known_) {
    known_ = true;
    healthy_ = passed;
    return true;
  }
  if (passed == healthy_) {
    streak_ = 0;
    return false;
  }
  ++streak_;
  const uint32_t needed = healthy_ ? fall_ : rise_;
  if (streak_ < needed) {
    return false;
  }
  healthy_ = passed;
  streak_ = 0;
  return true;
}

CheckHealth::CheckHealth(const std::vector<HealthCheck>& checks, Millis hold_down)
    : hold_down_(hold_down) {
  for (const HealthCheck& c : checks) {
    entries_.push_back({c.name, CheckHysteresis(c.rise, c.fall), "no result yet"});
  }
  was_all_healthy_ = entries_.empty();
}

bool CheckHealth::allChecksHealthy() const {
  for (const Entry& e : entries_) {
    if (!e.state.known() || !e.state.healthy()) {
      return false;
    }
  }
  return true;
}

void CheckHealth::record(Clock::time_point now, std::size_t index, bool passed,
                        std::string detail) {
  if (index >= entries_.size()) {
    return;
  }
  Entry& e = entries_[index];
  e.state.record(passed);
  e.detail = std::move(detail);
  const bool all = allChecksHealthy();
  // A real failure (not a check that has not reported yet) arms the hold-down for the next
  // recovery.
  ever_failed_ = ever_failed_ || (e.state.known() && !e.state.healthy());
  if (all && !was_all_healthy_) {
    recovered_at_ = now;
  }
  was_all_healthy_ = all;
}

bool CheckHealth::healthy(Clock::time_point now) const {
  if (!was_all_healthy_) {
    return false;
  }
  if (!ever_failed_) {
    return true;
  }
  return now - recovered_at_ >= hold_down_;
}

std::optional<Clock::time_point> CheckHealth::nextChange(Clock::time_point now) const {
  if (was_all_healthy_ && ever_failed_ && now - recovered_at_ < hold_down_) {
    return recovered_at_ + hold_down_;
  }
  return std::nullopt;
}

std::vector<std::string> CheckHealth::failing() const {
  std::vector<std::string> out;
  for (const Entry& e : entries_) {
    if (!e.state.known() || !e.state.healthy()) {
      out.push_back(e.name + ": " + e.detail);
    }
  }
  return out;
}

}  // namespace shoal::daemon
