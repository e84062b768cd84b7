// The daemon's conversions between the wall clock and the monotonic clock err only on the
// safe side: against clocks read here around a wall-clock reading.

#include <doctest/doctest.h>

#include <chrono>

#include "cli/clock_lead.h"

using namespace shoal;
using namespace shoal::daemon;
using std::chrono::microseconds;

namespace {

int64_t ns(std::chrono::system_clock::time_point w) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(w.time_since_epoch()).count();
}

}  // namespace

TEST_CASE("the clocks' difference is bracketed, narrowly") {
  for (int i = 0; i < 1000; ++i) {
    const ClockLead lead = readClockLead();
    CHECK(lead.low <= lead.high);
    CHECK(lead.high - lead.low < std::chrono::milliseconds(1));
  }
}

TEST_CASE("a release ends no later, a take starts no earlier, a receive time is no earlier "
          "than the truth") {
  // A wall-clock reading w between two monotonic readings: w is the wall clock of some instant
  // in [before, after]. (1 us of slack for the difference of the clocks changing between
  // this reading and the one readClockLead() makes: NTP slews far slower.)
  const auto slack = std::chrono::duration_cast<std::chrono::nanoseconds>(microseconds(1)).count();
  for (int i = 0; i < 1000; ++i) {
    const TimePoint before = std::chrono::steady_clock::now();
    const auto w = std::chrono::system_clock::now();
    const TimePoint after = std::chrono::steady_clock::now();
    const ClockLead lead = readClockLead();
    CHECK(wallNotAfter(before, lead) <= ns(w) + slack);
    CHECK(wallNotBefore(after, lead) + slack >= ns(w));
    CHECK(steadyNotBefore(w, lead) + microseconds(1) >= before);
    // And neither is far off: the brackets are the reads' duration wide.
    CHECK(wallNotBefore(after, lead) - wallNotAfter(before, lead) <
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::milliseconds(1))
              .count());
  }
}
