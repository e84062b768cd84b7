#pragma once
// The daemon's membership wake-up: one timerfd, armed with an absolute CLOCK_MONOTONIC
// deadline (the clock of std::chrono::steady_clock) and watched by the io_context. An Asio
// steady_timer programs the reactor's own timerfd twice per wake-up (the reactor re-arms it
// for its next timer as this one fires, then the handler schedules the next wake-up); this
// arms once, which matters at 25 to 170 wake-ups a second on every node.

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>

#include "core/result.h"
#include "membership/membership_types.h"

namespace shoal::daemon {

class WakeupTimer {
 public:
  /// Creates the timerfd; `on_fire` runs on the io_context each time an armed deadline comes.
  /// Errors name the system's reason.
  static Result<std::unique_ptr<WakeupTimer>> open(boost::asio::io_context& io,
                                                   std::function<void()> on_fire);

  /// Fires once when `when` has come (at once if it has passed), replacing any earlier
  /// deadline. TimePoint::max() disarms.
  void arm(TimePoint when);
  /// Disarms; a pending deadline does not fire.
  void cancel();
  /// The deadline last armed (TimePoint::max() when disarmed or fired).
  TimePoint deadline() const { return deadline_; }

 private:
  WakeupTimer(boost::asio::io_context& io, std::function<void()> on_fire)
      : fd_(io), on_fire_(std::move(on_fire)) {}
  void wait();

  boost::asio::posix::stream_descriptor fd_;
  std::function<void()> on_fire_;
  TimePoint deadline_ = TimePoint::max();
  bool waiting_ = false;
};

}  // namespace shoal::daemon
