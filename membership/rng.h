#pragma once
// The core's only source of randomness: a small seedable generator (SplitMix64), so that a
// seed fixes every choice the core makes (probe ids, which members relay a probe) and the
// simulator can replay a run exactly. The daemon seeds it from std::random_device.

#include <cstdint>

namespace shoal {

/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, passes BigCrush, one add and three
/// multiply-xorshift steps per number.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  /// The next 64 random bits.
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n); n must be > 0. (Modulo bias is below 2^-50 for the small n used.)
  uint64_t below(uint64_t n) { return next() % n; }
  /// Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace shoal
