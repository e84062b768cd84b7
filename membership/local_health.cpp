#include "membership/local_health.h"

namespace shoal {

LocalHealth::LocalHealth(uint32_t max_score, Duration decay_after)
    : max_score_(max_score), decay_after_(decay_after) {}

void LocalHealth::worse(TimePoint now) {
  decay(now);
  if (score_ < max_score_) {
    ++score_;
  }
  last_change_ = now;
}

void LocalHealth::better(TimePoint now) {
  decay(now);
  if (score_ > 0) {
    --score_;
    last_change_ = now;
  }
}

void LocalHealth::decay(TimePoint now) {
  while (score_ > 0 && now - last_change_ >= decay_after_) {
    --score_;
    last_change_ += decay_after_;
  }
}

TimePoint LocalHealth::nextDecay() const {
  return score_ == 0 ? TimePoint::max() : last_change_ + decay_after_;
}

}  // namespace shoal
