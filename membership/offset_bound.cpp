#include "membership/offset_bound.h"

#include <algorithm>

namespace shoal {
namespace {

// What a bound may have grown by over `d` (at least zero), rounded up.
Duration aging(Duration d) {
  return d <= Duration::zero() ? Duration::zero()
                               : (d + Duration(kClockRateBound - 1)) / kClockRateBound;
}

Duration sampleOf(uint64_t sent_us, TimePoint arrived) {
  return arrived.time_since_epoch() - std::chrono::microseconds(static_cast<int64_t>(sent_us));
}

}  // namespace

void OffsetBound::add(uint64_t boot, uint64_t sent_us, TimePoint arrived) {
  if (sent_us == 0 || sent_us > kMaxSentUs) {
    return;
  }
  const Duration sample = sampleOf(sent_us, arrived);
  if (!known_ || boot != boot_ || arrived - anchor_ > kOffsetMemory) {
    known_ = true;
    boot_ = boot;
    bound_ = sample;
    anchor_ = arrived;
    return;
  }
  if (arrived >= anchor_) {
    const Duration aged = bound_ + aging(arrived - anchor_);
    // A sample far above what the rates allow: the bound may no longer hold (a clock that
    // stood still or ran too fast), or the trip was slow. Either way the sample is safe.
    bound_ = sample > aged + kOffsetJump ? sample : std::min(sample, aged);
    anchor_ = arrived;
  } else {
    // Received before the anchor (another socket was read first): aged forward to it.
    bound_ = std::min(bound_, sample + aging(anchor_ - arrived));
  }
}

std::optional<Duration> OffsetBound::at(uint64_t boot, TimePoint t) const {
  if (!known_ || boot != boot_) {
    return std::nullopt;
  }
  return bound_ + aging(t - anchor_) + aging(anchor_ - t);
}

TimePoint OffsetBound::stopOf(uint64_t boot, uint64_t sent_us, uint64_t left_us,
                              TimePoint arrived) const {
  const Duration left = std::chrono::microseconds(static_cast<int64_t>(left_us));
  const Duration stretch = aging(left);
  std::optional<Duration> bound =
      sent_us == 0 || sent_us > kMaxSentUs ? std::nullopt : at(boot, arrived);
  if (!bound) {
    return arrived + left + stretch;  // (this heartbeat is its own sample)
  }
  bound = std::min(*bound, sampleOf(sent_us, arrived));
  return TimePoint(std::chrono::microseconds(static_cast<int64_t>(sent_us))) + *bound + left +
         stretch;
}

}  // namespace shoal
