#include "cli/clock_lead.h"

namespace shoal::daemon {
namespace {

constexpr Duration kNarrow = std::chrono::microseconds(20);
constexpr int kTries = 5;

int64_t ns(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

ClockLead readClockLead() {
  ClockLead lead;
  for (int i = 0; i < kTries; ++i) {
    const TimePoint before = std::chrono::steady_clock::now();
    const auto wall = std::chrono::duration_cast<Duration>(
        std::chrono::system_clock::now().time_since_epoch());
    const TimePoint after = std::chrono::steady_clock::now();
    // The wall read happened between the two monotonic reads.
    lead = ClockLead{wall - after.time_since_epoch(), wall - before.time_since_epoch()};
    if (after - before <= kNarrow) {
      break;
    }
  }
  return lead;
}

int64_t wallNotBefore(TimePoint t, const ClockLead& lead) { return ns(t + lead.high); }

int64_t wallNotAfter(TimePoint t, const ClockLead& lead) { return ns(t + lead.low); }

TimePoint steadyNotBefore(WallTime w, const ClockLead& lead) {
  return TimePoint(std::chrono::duration_cast<Duration>(w.time_since_epoch()) - lead.low);
}

}  // namespace shoal::daemon
