#pragma once
// The wall clock against the monotonic clock, for the daemon's conversions between the two:
// the kernel stamps received datagrams and switches timed buckets on the wall clock
// (CLOCK_REALTIME), the membership core and the ownership rule count on the monotonic one.
// A conversion that may err must err on the safe side: a release ends no later, a take
// starts no earlier, a receive time is no earlier than the truth. So the difference of the
// two clocks is read as an interval that surely holds it.

#include <chrono>
#include <cstdint>

#include "membership/membership_types.h"

namespace shoal::daemon {

/// Wall-clock time, as the kernel and std::chrono::system_clock give it.
using WallTime = std::chrono::system_clock::time_point;

/// Wall clock minus monotonic clock, bracketed: the monotonic clock, the wall clock and the
/// monotonic clock again are read in that order, so low <= the difference at the wall read
/// <= high, and high - low is the time the reads took.
struct ClockLead {
  Duration low{};
  Duration high{};
};

/// Reads the two clocks (retrying a few times if the reads were interrupted for longer than
/// 20 us, so the interval stays narrow).
ClockLead readClockLead();

/// Monotonic instant `t` on the wall clock, in nanoseconds since the epoch, no earlier than
/// the true instant (for the start of a take).
int64_t wallNotBefore(TimePoint t, const ClockLead& lead);
/// The same, no later than the true instant (for the end of a release).
int64_t wallNotAfter(TimePoint t, const ClockLead& lead);
/// Wall-clock instant `w` in monotonic time, no earlier than the true instant (for receive
/// timestamps: a later one only loosens the bounds placed from it).
TimePoint steadyNotBefore(WallTime w, const ClockLead& lead);

}  // namespace shoal::daemon
