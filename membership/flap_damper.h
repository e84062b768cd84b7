#pragma once
// Flap damping: a node that keeps dying and coming back (a bad cable, a crash loop) is held
// out of service for a hold-down time when it returns, so clients are not moved back and
// forth. Pure and clock-free.

#include <cstdint>
#include <deque>

#include "membership/membership_types.h"

namespace shoal {

/// Death history of one member.
class FlapDamper {
 public:
  /// `threshold` deaths within `window` make the next return a hold-down of `hold_down`.
  FlapDamper(uint32_t threshold, Duration window, Duration hold_down);

  /// The member was declared dead at `now`.
  void died(TimePoint now);
  /// The member came back at `now`. Returns the end of its hold-down, or TimePoint{} when
  /// it may serve at once.
  TimePoint returned(TimePoint now);
  /// Deaths counted within the window ending at `now`.
  uint32_t recentDeaths(TimePoint now);

 private:
  uint32_t threshold_;
  Duration window_;
  Duration hold_down_;
  std::deque<TimePoint> deaths_;
};

}  // namespace shoal
