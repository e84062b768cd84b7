#include "cli/wakeup_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

namespace shoal::daemon {

Result<std::unique_ptr<WakeupTimer>> WakeupTimer::open(boost::asio::io_context& io,
                                                      std::function<void()> on_fire) {
  // steady_clock is CLOCK_MONOTONIC on Linux, so its time points are the timerfd's.
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) {
    return Error{std::string("cannot create the wake-up timer (timerfd_create): ") +
                 std::strerror(errno)};
  }
  std::unique_ptr<WakeupTimer> t(new WakeupTimer(io, std::move(on_fire)));
  boost::system::error_code ec;
  t->fd_.assign(fd, ec);
  if (ec) {
    ::close(fd);
    return Error{"cannot watch the wake-up timer: " + ec.message()};
  }
  return t;
}

void WakeupTimer::arm(TimePoint when) {
  deadline_ = when;
  itimerspec spec{};
  if (when != TimePoint::max()) {
    // An all-zero value disarms: a deadline at or before the clock's origin becomes 1 ns.
    const int64_t ns =
        std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 when.time_since_epoch())
                                 .count());
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  // Cannot fail for a valid descriptor and value; if it did, the deadline would be missed,
  // and the membership core is driven by packets too.
  ::timerfd_settime(fd_.native_handle(), TFD_TIMER_ABSTIME, &spec, nullptr);
  if (when != TimePoint::max() && !waiting_) {
    wait();
  }
}

void WakeupTimer::cancel() { arm(TimePoint::max()); }

void WakeupTimer::wait() {
  waiting_ = true;
  fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                 [this](const boost::system::error_code& ec) {
                   if (ec) {
                     return;  // closed (the timer may be gone): touch nothing
                   }
                   waiting_ = false;
                   if (deadline_ == TimePoint::max()) {
                     return;
                   }
                   // Readiness left from a deadline that was replaced before it was seen:
                   // the current one has not come yet.
                   if (std::chrono::steady_clock::now() < deadline_) {
                     wait();
                     return;
                   }
                   deadline_ = TimePoint::max();
                   on_fire_();
                 });
}

}  // namespace shoal::daemon
