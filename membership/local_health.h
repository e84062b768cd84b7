#pragma once
// Lifeguard-style local health: a node that notices that it is itself slow (it woke up late,
// or its own probes went unanswered even by the members it asked for help) raises a score
// and becomes slower to accuse others, instead of declaring healthy peers dead because it
// could not hear them. Pure and clock-free: the caller passes the time of each observation.

#include <cstdint>

#include "membership/membership_types.h"

namespace shoal {

/// The local-health score of one node.
class LocalHealth {
 public:
  /// `max_score` caps the multiplier at 1 + max_score; `decay_after` is how long the node must
  /// go without a bad sign before the score drops by one.
  LocalHealth(uint32_t max_score, Duration decay_after);

  /// A bad sign at `now` (late wakeup, probe unanswered by anyone, had to refute): score + 1.
  void worse(TimePoint now);
  /// A good sign (a probe answered): score - 1.
  void better(TimePoint now);
  /// Applies time-based decay up to `now`.
  void decay(TimePoint now);

  uint32_t score() const { return score_; }
  /// 1 + score: every timeout that leads to an accusation is multiplied by it.
  uint32_t multiplier() const { return 1 + score_; }
  /// When the next decay step is due; TimePoint::max() at score 0.
  TimePoint nextDecay() const;

 private:
  uint32_t max_score_;
  Duration decay_after_;
  uint32_t score_ = 0;
  TimePoint last_change_{};
};

}  // namespace shoal
