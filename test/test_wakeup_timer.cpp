// The daemon's wake-up timer (cli/wakeup_timer.h) on a real timerfd and io_context.

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "cli/wakeup_timer.h"

using namespace shoal;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("wake-up timer: fires once at its deadline, not before") {
  boost::asio::io_context io;
  std::vector<Clock::time_point> fired;
  auto t = daemon::WakeupTimer::open(io, [&] { fired.push_back(Clock::now()); });
  REQUIRE(t.ok());
  const auto deadline = Clock::now() + 30ms;
  t.value()->arm(deadline);
  CHECK(t.value()->deadline() == deadline);
  io.run_for(100ms);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0] >= deadline);
  CHECK(t.value()->deadline() == TimePoint::max());
}

TEST_CASE("wake-up timer: a new deadline replaces the old one, earlier or later") {
  boost::asio::io_context io;
  std::vector<Clock::time_point> fired;
  auto t = daemon::WakeupTimer::open(io, [&] { fired.push_back(Clock::now()); });
  REQUIRE(t.ok());
  const auto start = Clock::now();
  t.value()->arm(start + 10ms);
  t.value()->arm(start + 300ms);  // later: nothing at 10 ms
  io.run_for(40ms);
  CHECK(fired.empty());
  t.value()->arm(start + 45ms);  // earlier than 300 ms
  io.run_for(200ms);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0] >= start + 45ms);
  CHECK(fired[0] < start + 300ms);
}

TEST_CASE("wake-up timer: a passed deadline fires at once; cancel stops a pending one") {
  boost::asio::io_context io;
  int fired = 0;
  auto t = daemon::WakeupTimer::open(io, [&] { ++fired; });
  REQUIRE(t.ok());
  t.value()->arm(Clock::now() - 5ms);
  io.run_for(10ms);
  CHECK(fired == 1);
  t.value()->arm(Clock::now() + 10ms);
  t.value()->cancel();
  io.run_for(40ms);
  CHECK(fired == 1);
  // Readiness left over from a replaced deadline does not fire early: expire one deadline
  // unseen, then arm a later one before the loop runs.
  t.value()->arm(Clock::now() + 1ms);
  const auto later = Clock::now() + 30ms;
  std::this_thread::sleep_for(5ms);
  t.value()->arm(later);
  io.restart();
  io.run_for(10ms);
  CHECK(fired == 1);
  io.run_for(40ms);
  CHECK(fired == 2);
}
