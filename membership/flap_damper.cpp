#include "membership/flap_damper.h"

namespace shoal {

FlapDamper::FlapDamper(uint32_t threshold, Duration window, Duration hold_down)
    : threshold_(threshold), window_(window), hold_down_(hold_down) {}

void FlapDamper::died(TimePoint now) {
  deaths_.push_back(now);
  // Only the last `threshold` deaths can matter; keep the history bounded.
  while (deaths_.size() > threshold_ && !deaths_.empty()) {
    deaths_.pop_front();
  }
}

uint32_t FlapDamper::recentDeaths(TimePoint now) {
  while (!deaths_.empty() && now - deaths_.front() > window_) {
    deaths_.pop_front();
  }
  return static_cast<uint32_t>(deaths_.size());
}

TimePoint FlapDamper::returned(TimePoint now) {
  if (threshold_ == 0 || recentDeaths(now) < threshold_) {
    return TimePoint{};
  }
  return now + hold_down_;
}

}  // namespace shoal
