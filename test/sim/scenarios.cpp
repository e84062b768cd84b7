#include "test/sim/scenarios.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace shoal::sim {

namespace {

using std::chrono::milliseconds;

double toMs(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

Duration interval(const TimingProfile& t) {
  return std::chrono::duration_cast<Duration>(t.heartbeat_interval);
}

void setRounds(SimCluster& sim, Rounds rounds) {
  if (rounds == Rounds::Aligned) {
    sim.alignRounds(milliseconds(1));
  }
}

}  // namespace

double percentile(std::vector<double> values, double q) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const std::size_t index = rank < 1 ? 0 : static_cast<std::size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

const char* toString(Adversity adversity) {
  switch (adversity) {
    case Adversity::Loss5:
      return "5% loss on each link";
    case Adversity::OneLinkDown:
      return "one link completely down";
    case Adversity::Loss10Jitter20:
      return "10% loss and 20 ms jitter";
    case Adversity::Stall3:
      return "a node stalled for 3 heartbeat intervals every 10 s";
  }
  return "?";
}

DetectionResult measureDetection(const TimingProfile& timing, std::size_t nodes, std::size_t links,
                                 int crashes, uint64_t seed, Rounds rounds) {
  SimCluster sim(makeDefinition(nodes, links, timing), seed);
  setRounds(sim, rounds);
  Rng rng(seed ^ 0x5eedULL);
  DetectionResult result;
  std::vector<TimePoint> dead_at(nodes, TimePoint::max());
  uint32_t victim = 0;
  bool watching = false;
  sim.setObserver([&](const Observed& o) {
    if (o.event.kind != Event::Kind::MemberChanged || o.event.state != MemberState::Dead) {
      return;
    }
    if (watching && o.event.node == victim) {
      dead_at[o.node] = std::min(dead_at[o.node], o.at);
    } else if (sim.running(o.event.node)) {
      ++result.false_deaths;
    }
  });
  sim.startAll();
  sim.runFor(milliseconds(2000));
  const std::size_t first_episode = sim.convergenceEpisodes().size();
  for (int c = 0; c < crashes; ++c) {
    victim = static_cast<uint32_t>(rng.below(nodes));
    // A random phase of the victim's heartbeat cycle.
    sim.runFor(Duration(
        static_cast<Duration::rep>(rng.below(static_cast<uint64_t>(interval(timing).count())))));
    std::fill(dead_at.begin(), dead_at.end(), TimePoint::max());
    watching = true;
    const TimePoint crashed = sim.now();
    sim.crash(victim);
    sim.runFor(milliseconds(1000));
    watching = false;
    for (uint32_t i = 0; i < nodes; ++i) {
      if (i == victim) {
        continue;
      }
      if (dead_at[i] == TimePoint::max()) {
        ++result.missed;
      } else {
        result.detection_ms.push_back(toMs(dead_at[i] - crashed));
      }
    }
    sim.start(victim);
    sim.runFor(milliseconds(1000));
  }
  const auto& episodes = sim.convergenceEpisodes();
  for (std::size_t i = first_episode; i < episodes.size(); ++i) {
    result.convergence_ms.push_back(toMs(episodes[i]));
  }
  return result;
}

SoakResult soak(const TimingProfile& timing, std::size_t nodes, Adversity adversity,
                Duration duration, uint64_t seed, Rounds rounds) {
  const auto wall_start = std::chrono::steady_clock::now();
  SimCluster sim(makeDefinition(nodes, 2, timing), seed);
  setRounds(sim, rounds);
  SoakResult result;
  sim.setObserver([&](const Observed& o) {
    if (o.event.kind == Event::Kind::MemberChanged && o.event.state == MemberState::Dead) {
      ++result.false_deaths;
    }
  });
  LinkConditions c;
  switch (adversity) {
    case Adversity::Loss5:
      c.loss = 0.05;
      sim.setLink(0, c);
      sim.setLink(1, c);
      break;
    case Adversity::OneLinkDown: {
      sim.setLink(0, c);
      LinkConditions down = c;
      down.down = true;
      sim.setLink(1, down);
      break;
    }
    case Adversity::Loss10Jitter20:
      c.loss = 0.10;
      c.jitter = milliseconds(20);
      sim.setLink(0, c);
      sim.setLink(1, c);
      break;
    case Adversity::Stall3:
      sim.setLink(0, c);
      sim.setLink(1, c);
      break;
  }
  sim.startAll();
  sim.runFor(milliseconds(2000));
  const std::size_t first_episode = sim.convergenceEpisodes().size();
  const TimePoint end = sim.now() + duration;
  if (adversity == Adversity::Stall3) {
    Rng rng(seed ^ 0x57a11ULL);
    uint32_t next = 0;
    while (sim.now() + milliseconds(10000) <= end) {
      sim.runFor(milliseconds(10000) - Duration(static_cast<Duration::rep>(rng.below(
                                           static_cast<uint64_t>(interval(timing).count())))));
      sim.pause(next, 3 * interval(timing));
      next = static_cast<uint32_t>((next + 1) % nodes);
    }
  }
  sim.runUntil(end);
  for (uint32_t i = 0; i < nodes; ++i) {
    const Counters& k = sim.core(i).counters();
    result.suspicions += k.suspicions;
    result.refutations += k.refutations;
    result.probes += k.probes_sent;
  }
  const auto& episodes = sim.convergenceEpisodes();
  for (std::size_t i = first_episode; i < episodes.size(); ++i) {
    result.convergence_ms.push_back(toMs(episodes[i]));
  }
  result.trace_digest = sim.traceDigest();
  result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return result;
}

CostResult measureCost(const TimingProfile& timing, std::size_t nodes, std::size_t links,
                       double seconds, uint64_t seed, Rounds rounds) {
  SimCluster sim(makeDefinition(nodes, links, timing), seed);
  setRounds(sim, rounds);
  sim.startAll();
  sim.runFor(milliseconds(2000));
  sim.resetStats();
  sim.measureCpu(true);
  sim.runFor(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds)));
  CostResult r;
  for (uint32_t i = 0; i < nodes; ++i) {
    const NodeStats& s = sim.stats(i);
    r.packets_per_s += static_cast<double>(s.packets_sent);
    r.bytes_per_s += static_cast<double>(s.bytes_sent);
    r.cpu_us_per_s += static_cast<double>(s.cpu_ns) / 1000.0;
  }
  const double per = static_cast<double>(nodes) * seconds;
  r.packets_per_s /= per;
  r.bytes_per_s /= per;
  r.cpu_us_per_s /= per;
  return r;
}

std::vector<double> measureChangeConvergence(const TimingProfile& timing, std::size_t nodes,
                                             int changes, uint64_t seed) {
  SimCluster sim(makeDefinition(nodes, 2, timing), seed);
  Rng rng(seed ^ 0xd4a1ULL);
  sim.startAll();
  sim.runFor(milliseconds(2000));
  const std::size_t first_episode = sim.convergenceEpisodes().size();
  for (int c = 0; c < changes; ++c) {
    const auto at = static_cast<uint32_t>(rng.below(nodes));
    const auto target = static_cast<uint32_t>(rng.below(nodes));
    switch (rng.below(3)) {
      case 0:
        sim.drain(at, target, DrainMode::Drained);
        break;
      case 1:
        sim.drain(at, target, DrainMode::None);
        break;
      default: {
        NodeHealth h;
        h.status = rng.below(2) == 0 ? HealthStatus::Failing : HealthStatus::Ok;
        sim.setHealth(target, h);
        break;
      }
    }
    sim.runFor(milliseconds(200) + Duration(static_cast<Duration::rep>(rng.below(
                                       static_cast<uint64_t>(interval(timing).count())))));
  }
  std::vector<double> out;
  const auto& episodes = sim.convergenceEpisodes();
  for (std::size_t i = first_episode; i < episodes.size(); ++i) {
    out.push_back(toMs(episodes[i]));
  }
  return out;
}

}  // namespace shoal::sim
