// Node health from check results: hysteresis and hold-down, in simulated time.

#include "cli/health_state.h"

#include <doctest/doctest.h>

using shoal::HealthCheck;
using shoal::Millis;
using shoal::daemon::CheckHysteresis;
using shoal::daemon::Clock;
using shoal::daemon::CheckHealth;

namespace {
HealthCheck check(const char* name, uint32_t rise, uint32_t fall) {
  HealthCheck c;
  c.name = name;
  c.rise = rise;
  c.fall = fall;
  return c;
}
}  // namespace

TEST_CASE("hysteresis: first result decides, then fall failures and rise passes flip it") {
  CheckHysteresis h(3, 2);
  CHECK_FALSE(h.known());
  CHECK(h.record(true));
  CHECK(h.healthy());
  CHECK_FALSE(h.record(false));  // one failure is not enough
  CHECK(h.healthy());
  CHECK_FALSE(h.record(true));  // and a pass resets the streak
  CHECK_FALSE(h.record(false));
  CHECK(h.record(false));  // two in a row: failed
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.record(true));
  CHECK_FALSE(h.record(true));
  CHECK_FALSE(h.healthy());
  CHECK(h.record(true));  // three passes: healthy again
  CHECK(h.healthy());
}

TEST_CASE("node health waits for every check before serving") {
  const Clock::time_point t0{};
  CheckHealth h({check("a", 2, 2), check("b", 2, 2)}, Millis(10000));
  CHECK_FALSE(h.healthy(t0));
  h.record(t0, 0, true, "ok");
  CHECK_FALSE(h.healthy(t0));
  CHECK(h.failing().size() == 1);
  h.record(t0, 1, true, "ok");
  CHECK(h.healthy(t0));  // no failure yet: no hold-down
  CHECK(h.failing().empty());
}

TEST_CASE("node health with no checks is healthy") {
  CheckHealth h({}, Millis(10000));
  CHECK(h.healthy(Clock::time_point{}));
}

TEST_CASE("node health holds down after a recovery") {
  using std::chrono::milliseconds;
  Clock::time_point t{};
  CheckHealth h({check("app", 2, 1)}, Millis(10000));
  h.record(t, 0, true, "exit 0");
  CHECK(h.healthy(t));
  t += milliseconds(1000);
  h.record(t, 0, false, "exit 1");
  CHECK_FALSE(h.healthy(t));
  CHECK(h.failing().front() == "app: exit 1");
  t += milliseconds(1000);
  h.record(t, 0, true, "exit 0");
  CHECK_FALSE(h.healthy(t));  // rise is 2
  t += milliseconds(1000);
  h.record(t, 0, true, "exit 0");
  const auto recovered = t;
  CHECK_FALSE(h.healthy(t));  // recovered, but held down
  REQUIRE(h.nextChange(t).has_value());
  CHECK(*h.nextChange(t) == recovered + milliseconds(10000));
  CHECK_FALSE(h.healthy(recovered + milliseconds(9999)));
  CHECK(h.healthy(recovered + milliseconds(10000)));
  CHECK_FALSE(h.nextChange(recovered + milliseconds(10000)).has_value());
}

TEST_CASE("node health ignores results for checks it does not know") {
  CheckHealth h({check("a", 1, 1)}, Millis(0));
  h.record(Clock::time_point{}, 7, false, "bogus");
  h.record(Clock::time_point{}, 0, true, "ok");
  CHECK(h.healthy(Clock::time_point{}));
}
