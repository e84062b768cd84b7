#pragma once
// How far this node's monotonic clock is ahead of a peer's, bounded from above by the peer's
// heartbeats: each was sealed at the peer's time `sent` and received at this node's time
// `arrived`, so arrived - sent is the offset plus the heartbeat's trip, never less than the
// offset. The smallest such sample lately, aged for the clocks' rates, is the bound; it
// places a peer's announced stop on this node's clock (membership/ownership.h). Pure.
//
// Safe as long as the two clocks run at rates within 1/kClockRateBound of each other, which
// the aging allows for. A sample that shows the offset grew by more than that allows (a peer
// whose clock stood still, a clock slewed far faster than NTP's limit, or just a slow trip)
// replaces the bound outright, as does a new boot of the peer and a second without samples:
// what is left undetected is less than kOffsetJump.

#include <cstdint>
#include <optional>

#include "membership/membership_types.h"

namespace shoal {

/// A peer's announced time is stretched by 1/kClockRateBound of itself, and the offset bound
/// grows by that share of the time since its sample: the kernel lets NTP run a clock at most
/// 500 ppm off (MAXFREQ), so two clocks disagree on a rate by at most 1000 ppm. A clock
/// slewed faster (chrony after a large offset, with tick adjustments) is not covered.
inline constexpr int64_t kClockRateBound = 1000;
/// A sample above the aged bound by more than this replaces the bound (see above): more than
/// a loaded machine's slow trips usually add (up to 1.7 ms seen on the test machine), less
/// than any real stop of a clock (a suspended host or paused VM, tens of ms and more).
inline constexpr Duration kOffsetJump = std::chrono::milliseconds(2);
/// A bound with no sample for this long is replaced by the next sample.
inline constexpr Duration kOffsetMemory = std::chrono::seconds(1);
/// Sealing times beyond this (microseconds, about 142 years of uptime) are not believed.
inline constexpr uint64_t kMaxSentUs = uint64_t{1} << 52;

class OffsetBound {
 public:
  /// A heartbeat of the peer's boot `boot`, sealed at its `sent_us` (its monotonic clock,
  /// microseconds, rounded down) and received at `arrived` (this node's clock). A sealing
  /// time of 0 or beyond kMaxSentUs is ignored.
  void add(uint64_t boot, uint64_t sent_us, TimePoint arrived);

  /// The bound at `at` (this node's clock), for the peer's boot `boot`: nullopt if there is no
  /// sample of that boot.
  std::optional<Duration> at(uint64_t boot, TimePoint at) const;

  /// The latest instant of this node's clock at which a peer of boot `boot` that said, in a
  /// heartbeat sealed at `sent_us` and received at `arrived`, that it stops answering
  /// `left_us` later, can stop: its stop on its own clock, plus the bound, plus the share of
  /// the time left the rates allow. Without a usable bound, counted from `arrived` (the
  /// heartbeat's own sample).
  TimePoint stopOf(uint64_t boot, uint64_t sent_us, uint64_t left_us, TimePoint arrived) const;

 private:
  bool known_ = false;
  uint64_t boot_ = 0;
  Duration bound_{};  // at anchor_
  TimePoint anchor_{};
};

}  // namespace shoal
