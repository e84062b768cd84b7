// The clock offset bound that places a peer's announced stop on this node's clock: never
// earlier than the truth under the rate bound, tighter than one heartbeat's trip.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "membership/offset_bound.h"

using namespace shoal;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

// A peer whose clock is `offset` behind this node's and runs `ppm` faster; heartbeats every
// 40 ms with trips drawn from `trip`. Times are this node's.
struct Peer {
  Duration offset;
  int64_t ppm = 0;
  // The peer's clock, in microseconds, at this node's time t (rounded down, as it seals).
  uint64_t clock(TimePoint t) const {
    const Duration d = t.time_since_epoch() - offset;
    const Duration skewed = d + d * ppm / 1000000;
    return static_cast<uint64_t>(std::chrono::floor<microseconds>(skewed).count());
  }
  // This node's time at which the peer's clock reads `us`.
  TimePoint when(uint64_t us) const {
    const Duration peer = microseconds(static_cast<int64_t>(us));
    return TimePoint(peer - peer * ppm / (1000000 + ppm) + offset);
  }
};

}  // namespace

TEST_CASE("offset bound: the fastest recent trip bounds the stop, never before the truth") {
  std::mt19937 rng(11);
  for (const int64_t ppm : {-900, 0, 900}) {
    Peer peer{std::chrono::seconds(1000), ppm};
    OffsetBound bound;
    TimePoint t{std::chrono::seconds(5000)};
    Duration worst_gap{};
    std::vector<Duration> gaps;
    for (int i = 0; i < 2000; ++i) {
      t += milliseconds(40);
      // Trips of 20 us, with one in ten slow (up to 1.5 ms): a loaded machine.
      const Duration trip = microseconds(rng() % 10 == 0 ? 20 + rng() % 1500 : 20);
      const uint64_t sent = peer.clock(t);
      const TimePoint arrived = t + trip;
      bound.add(7, sent, arrived);
      // The peer announces it stops 30 ms after sealing.
      const uint64_t left = 30000;
      const TimePoint placed = bound.stopOf(7, sent, left, arrived);
      const TimePoint truth = peer.when(sent + left);
      CAPTURE(ppm);
      CAPTURE(i);
      REQUIRE(placed >= truth);
      worst_gap = std::max(worst_gap, placed - truth);
      gaps.push_back(placed - truth);
    }
    // A slow trip does not make the gap that slow: the fastest recent one counts, plus the
    // rate allowance (a thousandth of the 30 ms and of the 40 ms since the last sample) and,
    // with clocks that really drift apart, what they drift meanwhile.
    // (The allowance grows with the time since the fastest trip: 40 us per heartbeat; a
    // run of four slow ones in a row makes it 160 us.)
    CAPTURE(ppm);
    std::sort(gaps.begin(), gaps.end());
    CHECK(gaps[gaps.size() / 2] < microseconds(ppm == 0 ? 20 + 30 + 40 + 2 : 150));
    CHECK(worst_gap < microseconds(400));
  }
}

TEST_CASE("offset bound: a clock that stood still, a new boot or a long silence replace it") {
  Peer peer{std::chrono::seconds(1000)};
  OffsetBound bound;
  TimePoint t{std::chrono::seconds(5000)};
  for (int i = 0; i < 10; ++i) {
    t += milliseconds(40);
    bound.add(7, peer.clock(t), t + microseconds(20));
  }
  // The peer's clock stops for 50 ms (a suspended host): from then on it is 50 ms behind.
  const uint64_t frozen = peer.clock(t);
  peer.offset += milliseconds(50);
  t += milliseconds(90);
  REQUIRE(peer.clock(t) == frozen + 40000);
  bound.add(7, peer.clock(t), t + microseconds(20));
  const TimePoint placed = bound.stopOf(7, peer.clock(t), 30000, t + microseconds(20));
  CHECK(placed >= peer.when(peer.clock(t) + 30000));
  // Another boot of the peer: its clock has a new epoch; nothing of the old bound is kept.
  CHECK_FALSE(bound.at(8, t).has_value());
  bound.add(8, 123, t + microseconds(20));
  CHECK(bound.at(8, t + microseconds(20)) ==
        (t + microseconds(20)).time_since_epoch() - microseconds(123));
  // Two seconds of silence: the next sample stands alone, though 1 ms above the old bound
  // aged by a thousandth (less than a jump).
  const Duration before = *bound.at(8, t + microseconds(20));
  t += std::chrono::seconds(2);
  bound.add(8, 123 + 2000000 - 3000, t + microseconds(20));
  CHECK(*bound.at(8, t + microseconds(20)) == before + milliseconds(3));
  // Within the memory, such a sample does not raise the bound.
  t += milliseconds(40);
  bound.add(8, 123 + 2040000 - 4000, t + microseconds(20));  // another 1 ms slower
  CHECK(*bound.at(8, t + microseconds(20)) == before + milliseconds(3) + microseconds(40));
}

TEST_CASE("offset bound: nonsense sealing times are ignored; without a bound the trip counts") {
  OffsetBound bound;
  const TimePoint arrived{std::chrono::seconds(10)};
  bound.add(1, 0, arrived);
  bound.add(1, kMaxSentUs + 1, arrived);
  CHECK_FALSE(bound.at(1, arrived).has_value());
  // The stop then counts from the arrival: time left plus a thousandth of it.
  CHECK(bound.stopOf(1, kMaxSentUs + 1, 30000, arrived) ==
        arrived + microseconds(30000) + std::chrono::nanoseconds(30000));
}
