// Median time of one rebalance computation (core/rebalance.h) for 16 nodes and 16, 256 and
// 4096 buckets, beside a highest-random-weight baseline with capacity caps measured in the
// same run. Goals: under 10 us for 16 x 16 and under 100 us for 16 x 256.
//
// Each sample times a batch of calls and divides by the batch size (the clock is too coarse
// for one call); the median over the samples is printed.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/rebalance.h"

namespace {

using shoal::RebalanceInput;

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Baseline: each bucket in turn goes to the live node with the highest hash(seed, bucket,
// node) that has room (floor of its share, or the ceiling while extra buckets remain). The
// same baseline as in test/test_rebalance.cpp, for equal weights.
std::vector<int16_t> hrwWithCaps(const RebalanceInput& input) {
  std::vector<int16_t> owners(input.buckets, shoal::kNoOwner);
  const std::size_t nodes = input.weights.size();
  const auto live =
      static_cast<uint32_t>(__builtin_popcount(input.live_mask & ((1U << nodes) - 1)));
  if (live == 0) {
    return owners;
  }
  const uint32_t floor_count = input.buckets / live;
  uint32_t extras = input.buckets % live;
  std::vector<uint32_t> count(nodes, 0);
  for (uint32_t bucket = 0; bucket < input.buckets; ++bucket) {
    uint64_t best_score = 0;
    int best = -1;
    for (std::size_t node = 0; node < nodes; ++node) {
      const bool room = count[node] < floor_count || (count[node] == floor_count && extras > 0);
      if (((input.live_mask >> node) & 1U) == 0 || !room) {
        continue;
      }
      const uint64_t score = mix64((uint64_t{input.seed} << 32) ^ (uint64_t{bucket} << 8) ^ node);
      if (best < 0 || score > best_score) {
        best_score = score;
        best = static_cast<int>(node);
      }
    }
    const auto winner = static_cast<std::size_t>(best);
    if (count[winner] == floor_count) {
      --extras;
    }
    ++count[winner];
    owners[bucket] = static_cast<int16_t>(best);
  }
  return owners;
}

// Median nanoseconds per call of `layoutOf(input)`.
double medianNanos(const std::function<std::vector<int16_t>(const RebalanceInput&)>& layoutOf,
                   const RebalanceInput& input) {
  using Clock = std::chrono::steady_clock;
  // Batch size: about 200 us per sample, measured on a first call.
  const auto probe_start = Clock::now();
  volatile int16_t sink = layoutOf(input).front();
  const double probe = std::chrono::duration<double, std::nano>(Clock::now() - probe_start).count();
  const int batch = std::max(1, static_cast<int>(200000.0 / std::max(probe, 1.0)));
  constexpr int kSamples = 201;
  std::vector<double> samples;
  samples.reserve(kSamples);
  for (int sample = 0; sample < kSamples; ++sample) {
    const auto start = Clock::now();
    for (int call = 0; call < batch; ++call) {
      sink = layoutOf(input)[static_cast<std::size_t>(call) % input.buckets];
    }
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
                      batch);
  }
  (void)sink;
  std::nth_element(samples.begin(), samples.begin() + kSamples / 2, samples.end());
  return samples[kSamples / 2];
}

}  // namespace

int main() {
  struct Case {
    uint32_t buckets;
    uint32_t live_mask;
    const char* goal;
  };
  const Case cases[] = {
      {16, 0xffff, "goal < 10 us"},   {16, 0x6f5b, "goal < 10 us"}, {256, 0xffff, "goal < 100 us"},
      {256, 0x6f5b, "goal < 100 us"}, {4096, 0xffff, "no goal"},
  };
  std::printf("rebalance: median time of one computation, 16 configured nodes\n");
  for (const Case& c : cases) {
    RebalanceInput input;
    input.buckets = c.buckets;
    input.weights.assign(16, 1);
    input.live_mask = c.live_mask;
    input.seed = 0x5eed;
    const double ours =
        medianNanos([](const RebalanceInput& in) { return shoal::computeOwners(in); }, input);
    const double baseline = medianNanos(hrwWithCaps, input);
    std::printf(
        "  %4u buckets, %2d live: rebalance %9.2f us   HRW with caps %9.2f us   "
        "ratio %.2f   (%s)\n",
        c.buckets, __builtin_popcount(c.live_mask), ours / 1000.0, baseline / 1000.0,
        ours / baseline, c.goal);
  }
  return 0;
}
