// The membership figures, measured in simulation (test/sim/): crash detection per timing
// profile, false deaths in one simulated hour of four adverse conditions, convergence after
// changes, and the cost per node at 3, 16 and 64 nodes. 16 nodes, two links and 1 ms delay
// unless a line says otherwise.
//
// Usage: bench_membership [--quick]   (--quick: one simulated minute instead of an hour)
// Detection and the default-profile soaks run twice: with each node's heartbeat rounds
// following its own start, and with the rounds aligned on one grid as shoald sends them.
//        bench_membership --soak N SECONDS   (only the default-profile soak of condition N,
//                                             0..3, for SECONDS simulated seconds)
// The eight hour-long default-profile runs dominate: each delivers some 43 million datagrams
// and seals and verifies about 3 million (HMAC-SHA256; the simulator opens a heartbeat sent
// to all peers once for all its receivers), 7-14 s of wall time each on a 2-core machine.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/timing_profile.h"
#include "test/sim/scenarios.h"

using namespace shoal;
using namespace shoal::sim;

namespace {

const char* label(Rounds rounds) {
  return rounds == Rounds::Aligned ? "aligned" : "free";
}

void printDetection(const char* name, const TimingProfile& t, int crashes, uint64_t seed,
                    Rounds rounds) {
  const auto start = std::chrono::steady_clock::now();
  const DetectionResult r = measureDetection(t, 16, 2, crashes, seed, rounds);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "crash detection, %-7s, rounds %-7s (heartbeat %lld ms, suspect %lld ms, suspicion %lld "
      "ms): "
      "p50 %.1f ms, p99 %.1f ms, max %.1f ms over %zu survivor detections of %d crashes; "
      "missed %llu, false deaths %llu; convergence p99 %.1f ms (%.1f s wall)\n",
      name, label(rounds), static_cast<long long>(t.heartbeat_interval.count()),
      static_cast<long long>(t.suspect_after.count()),
      static_cast<long long>(t.suspicion_timeout.count()), percentile(r.detection_ms, 0.5),
      percentile(r.detection_ms, 0.99), percentile(r.detection_ms, 1.0), r.detection_ms.size(),
      crashes, static_cast<unsigned long long>(r.missed),
      static_cast<unsigned long long>(r.false_deaths), percentile(r.convergence_ms, 0.99), wall);
}

void printSoak(const char* name, const TimingProfile& t, Adversity a, Duration d, uint64_t seed,
               Rounds rounds = Rounds::Free) {
  const SoakResult r = soak(t, 16, a, d, seed, rounds);
  std::printf(
      "no false death, %-7s, rounds %-7s, %-52s: %.0f simulated s, false deaths %llu, "
      "suspicions %llu, refutations %llu, probes %llu, convergence p99 %.1f ms (%.1f s wall; "
      "trace %016llx)\n",
      name, label(rounds), toString(a), std::chrono::duration<double>(d).count(),
      static_cast<unsigned long long>(r.false_deaths),
      static_cast<unsigned long long>(r.suspicions), static_cast<unsigned long long>(r.refutations),
      static_cast<unsigned long long>(r.probes), percentile(r.convergence_ms, 0.99),
      r.wall_seconds, static_cast<unsigned long long>(r.trace_digest));
}

}  // namespace

int main(int argc, char** argv) {
  // One line per figure as soon as it is known: the whole run takes a while.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const TimingProfile def = *timingPreset("default");
  const TimingProfile fast = *timingPreset("fast");
  if (argc == 4 && std::strcmp(argv[1], "--soak") == 0) {
    const int which = std::atoi(argv[2]);
    const Adversity all[] = {Adversity::Loss5, Adversity::OneLinkDown, Adversity::Loss10Jitter20,
                             Adversity::Stall3};
    if (which < 0 || which > 3) {
      std::fprintf(stderr, "bench_membership: --soak takes a condition 0..3\n");
      return 2;
    }
    const Adversity a = all[which];
    printSoak("default", def, a, std::chrono::seconds(std::atoi(argv[3])),
              10 + static_cast<uint64_t>(a));
    return 0;
  }
  const Duration soak_time =
      quick ? Duration(std::chrono::minutes(1)) : Duration(std::chrono::hours(1));

  std::printf("== membership figures (simulation; 16 nodes, 2 links, 1 ms delay unless said)\n");
  // Free: each node's rounds follow its start; aligned: on one grid with clock errors of up to
  // 1 ms, as shoald sends them (Membership::alignRounds).
  printDetection("default", def, 60, 1, Rounds::Free);
  printDetection("fast", fast, 40, 2, Rounds::Free);
  printDetection("default", def, 60, 5, Rounds::Aligned);
  printDetection("fast", fast, 40, 6, Rounds::Aligned);

  const std::vector<double> changes = measureChangeConvergence(def, 16, 200, 3);
  std::printf(
      "convergence after drain/undrain/health changes (default): p50 %.1f ms, p99 %.1f ms, "
      "max %.1f ms over %zu episodes\n",
      percentile(changes, 0.5), percentile(changes, 0.99), percentile(changes, 1.0),
      changes.size());
  const std::vector<double> changes_fast = measureChangeConvergence(fast, 16, 200, 4);
  std::printf(
      "convergence after drain/undrain/health changes (fast): p50 %.1f ms, p99 %.1f ms, "
      "max %.1f ms over %zu episodes\n",
      percentile(changes_fast, 0.5), percentile(changes_fast, 0.99), percentile(changes_fast, 1.0),
      changes_fast.size());

  for (Adversity a :
       {Adversity::Loss5, Adversity::OneLinkDown, Adversity::Loss10Jitter20, Adversity::Stall3}) {
    printSoak("default", def, a, soak_time, 10 + static_cast<uint64_t>(a));
  }
  for (Adversity a :
       {Adversity::Loss5, Adversity::OneLinkDown, Adversity::Loss10Jitter20, Adversity::Stall3}) {
    printSoak("default", def, a, soak_time, 40 + static_cast<uint64_t>(a), Rounds::Aligned);
  }
  for (Adversity a :
       {Adversity::Loss5, Adversity::OneLinkDown, Adversity::Loss10Jitter20, Adversity::Stall3}) {
    printSoak("fast", fast, a, quick ? soak_time : Duration(std::chrono::minutes(2)),
              20 + static_cast<uint64_t>(a));
  }

  for (std::size_t n : {3, 16, 64}) {
    for (const TimingProfile* t : {&def, &fast}) {
      const CostResult c = measureCost(*t, n, 2, quick ? 2 : 10, 30 + n);
      std::printf(
          "cost per node, %2zu nodes, %-7s: %.0f packets/s, %.0f bytes/s, %.0f us CPU per "
          "simulated second (%.2f %% of a core)\n",
          n, t->name.c_str(), c.packets_per_s, c.bytes_per_s, c.cpu_us_per_s, c.cpu_us_per_s / 1e4);
    }
  }
  return 0;
}
