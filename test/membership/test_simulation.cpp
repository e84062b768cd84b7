// The properties the membership layer promises, checked on simulated clusters (test/sim/):
// 16 nodes, two links and 1 ms delay unless a test says otherwise. Virtual time only.

#include <doctest/doctest.h>

#include <chrono>
#include <tuple>

#include "core/fingerprint.h"
#include "core/timing_profile.h"
#include "test/sim/scenarios.h"

using namespace shoal;
using namespace shoal::sim;
using std::chrono::milliseconds;

namespace {

const TimingProfile kDefault = *timingPreset("default");
const TimingProfile kFast = *timingPreset("fast");

using Trace = std::vector<std::tuple<int64_t, uint32_t, int, uint32_t, int>>;

Trace runTrace(uint64_t seed) {
  SimCluster sim(makeDefinition(16, 2, kDefault), seed);
  LinkConditions c;
  c.loss = 0.2;
  c.jitter = milliseconds(30);
  c.duplicate = 0.05;
  c.reorder = 0.05;
  sim.setLink(0, c);
  sim.setLink(1, c);
  Trace trace;
  sim.setObserver([&](const Observed& o) {
    trace.emplace_back(o.at.time_since_epoch().count(), o.node, static_cast<int>(o.event.kind),
                       o.event.node, static_cast<int>(o.event.state));
  });
  sim.startAll();
  sim.runFor(milliseconds(1500));
  sim.crash(3);
  sim.drain(5, 7, DrainMode::Drained);
  sim.runFor(milliseconds(1500));
  sim.start(3);
  sim.runFor(milliseconds(1000));
  for (uint32_t i = 0; i < 16; ++i) {
    const Counters& k = sim.core(i).counters();
    trace.emplace_back(static_cast<int64_t>(k.packets_sent), i,
                       static_cast<int>(k.rejected.total()), 0, 0);
  }
  return trace;
}

uint64_t deadEvents(const std::vector<Observed>& log) {
  uint64_t n = 0;
  for (const Observed& o : log) {
    n += o.event.kind == Event::Kind::MemberChanged && o.event.state == MemberState::Dead;
  }
  return n;
}

bool allSee(const SimCluster& sim, uint32_t node, DrainMode mode) {
  for (uint32_t i = 0; i < sim.size(); ++i) {
    if (sim.running(i) && sim.core(i).view().members[node].drain.mode != mode) {
      return false;
    }
  }
  return true;
}

// Every survivor of each of `crashes` crashes of 16 nodes declared the victim dead, nobody
// else died, detection p99 within `bound_ms` and convergence p99 within 50 ms.
void checkDetection(const char* name, const DetectionResult& r, int crashes, double bound_ms) {
  REQUIRE(r.detection_ms.size() == static_cast<std::size_t>(crashes) * 15);
  CHECK(r.missed == 0);
  CHECK(r.false_deaths == 0);
  MESSAGE(name << ": p50 " << percentile(r.detection_ms, 0.5) << " ms, p99 "
               << percentile(r.detection_ms, 0.99) << " ms");
  CHECK(percentile(r.detection_ms, 0.99) <= bound_ms);
  CHECK(percentile(r.convergence_ms, 0.99) <= 50.0);
}

}  // namespace

TEST_CASE("the same seed gives the same run; another seed another") {
  const Trace a = runTrace(7);
  const Trace b = runTrace(7);
  const Trace c = runTrace(8);
  CHECK(a.size() > 100);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("crash detection: p99 within 300 ms (default profile)") {
  checkDetection("default", measureDetection(kDefault, 16, 2, 12, 101), 12, 300.0);
}

TEST_CASE("crash detection: p99 within 60 ms (fast profile)") {
  checkDetection("fast", measureDetection(kFast, 16, 2, 8, 102), 8, 60.0);
}

// shoald puts its rounds on the wall clock's grid: every node sends at about the same moment.
// Detection and false deaths must not depend on that.
TEST_CASE("crash detection with aligned rounds: the same bounds (both profiles)") {
  checkDetection("default, aligned", measureDetection(kDefault, 16, 2, 12, 111, Rounds::Aligned),
                 12, 300.0);
  checkDetection("fast, aligned", measureDetection(kFast, 16, 2, 8, 112, Rounds::Aligned), 8,
                 60.0);
}

TEST_CASE("no false death with aligned rounds: loss and jitter, and stalls") {
  const SoakResult j = soak(kDefault, 16, Adversity::Loss10Jitter20, std::chrono::minutes(2), 213,
                            Rounds::Aligned);
  CHECK(j.false_deaths == 0);
  CHECK(j.probes > 0);
  const SoakResult s =
      soak(kDefault, 16, Adversity::Stall3, std::chrono::minutes(2), 214, Rounds::Aligned);
  CHECK(s.false_deaths == 0);
  CHECK(s.suspicions > 0);
  CHECK(s.refutations > 0);
}

// A whole simulated hour under the hardest of the four conditions. Eight nodes keep it near a
// minute of CPU (every datagram is sealed and verified with HMAC-SHA256); the bench runs the
// four conditions for an hour at 16 nodes.
TEST_CASE("no false death in one simulated hour with 10 % loss and 20 ms jitter (8 nodes)") {
  const SoakResult r = soak(kDefault, 8, Adversity::Loss10Jitter20, std::chrono::hours(1), 201);
  MESSAGE("one hour, 8 nodes, 10 % loss, 20 ms jitter: " << r.wall_seconds << " s wall, "
                                                         << r.probes << " probes, " << r.suspicions
                                                         << " suspicions");
  CHECK(r.false_deaths == 0);
  CHECK(r.probes > 0);
}

TEST_CASE("no false death with one link completely down") {
  const SoakResult r = soak(kDefault, 16, Adversity::OneLinkDown, std::chrono::minutes(2), 205);
  CHECK(r.false_deaths == 0);
  CHECK(r.suspicions == 0);
}

TEST_CASE("no false death with 5 % loss on each link") {
  const SoakResult r = soak(kDefault, 16, Adversity::Loss5, std::chrono::minutes(2), 202);
  CHECK(r.false_deaths == 0);
}

TEST_CASE("no false death with 10 % loss and 20 ms jitter") {
  const SoakResult r = soak(kDefault, 16, Adversity::Loss10Jitter20, std::chrono::minutes(2), 203);
  CHECK(r.false_deaths == 0);
  CHECK(r.probes > 0);  // the conditions do make nodes probe each other
}

TEST_CASE("no false death with a node stalled for three heartbeat intervals") {
  const SoakResult r = soak(kDefault, 16, Adversity::Stall3, std::chrono::minutes(2), 204);
  CHECK(r.false_deaths == 0);
  CHECK(r.suspicions > 0);   // the stalls are noticed...
  CHECK(r.refutations > 0);  // ...and refuted
}

TEST_CASE("all nodes hold the same view within 50 ms of a drain or health change (p99)") {
  const std::vector<double> episodes = measureChangeConvergence(kDefault, 16, 60, 301);
  REQUIRE(episodes.size() >= 30);
  CHECK(percentile(episodes, 0.99) <= 50.0);
}

TEST_CASE("conflicting drain commands resolve the same way on every node") {
  SimCluster sim(makeDefinition(16, 2, kDefault), 401);
  sim.startAll();
  sim.runFor(milliseconds(1000));
  // Two halves, cut off from each other, give opposite commands for node 3; the half that
  // writes more often has the larger clock and must win everywhere once they meet again.
  std::vector<uint32_t> left;
  for (uint32_t i = 0; i < 8; ++i) {
    left.push_back(i);
  }
  sim.partition(left);
  sim.drain(1, 3, DrainMode::Drained);
  sim.drain(9, 3, DrainMode::None);
  sim.runFor(milliseconds(10));
  sim.drain(10, 3, DrainMode::Draining);
  sim.runFor(milliseconds(100));
  CHECK((sim.core(0).view().members[3].drain.mode == DrainMode::Drained));
  CHECK((sim.core(12).view().members[3].drain.mode == DrainMode::Draining));
  sim.heal();
  sim.runFor(milliseconds(3000));
  CHECK(allSee(sim, 3, DrainMode::Draining));
  CHECK(sim.agreed());

  SUBCASE("equal clocks: the larger writer id wins") {
    sim.partition(left);
    sim.runFor(milliseconds(10));
    sim.drain(2, 6, DrainMode::Drained);  // writer 2
    sim.drain(14, 6, DrainMode::None);    // writer 14, same clock on both sides
    const DrainState a = sim.core(2).view().members[6].drain;
    const DrainState b = sim.core(14).view().members[6].drain;
    REQUIRE(a.clock == b.clock);
    sim.heal();
    sim.runFor(milliseconds(3000));
    CHECK(allSee(sim, 6, DrainMode::None));
  }
}

TEST_CASE("drain state survives the restart of all nodes") {
  SimCluster sim(makeDefinition(5, 2, kDefault), 402);
  sim.startAll();
  sim.runFor(milliseconds(500));
  sim.drain(0, 4, DrainMode::Drained);
  sim.drain(1, 2, DrainMode::Draining);
  sim.runFor(milliseconds(200));
  for (uint32_t i = 0; i < 5; ++i) {
    sim.crash(i);
  }
  sim.runFor(milliseconds(500));
  sim.startAll();
  sim.runFor(milliseconds(1000));
  CHECK(allSee(sim, 4, DrainMode::Drained));
  CHECK(allSee(sim, 2, DrainMode::Draining));
  CHECK(allSee(sim, 0, DrainMode::None));
}

TEST_CASE("a restarting node learns drain writes it missed from its peers") {
  SimCluster sim(makeDefinition(6, 2, kDefault), 403);
  sim.startAll();
  sim.runFor(milliseconds(500));
  sim.crash(5);
  sim.drain(1, 3, DrainMode::Drained);
  sim.runFor(milliseconds(500));
  sim.start(5);  // its state file predates the drain
  sim.runFor(milliseconds(300));
  CHECK((sim.core(5).view().members[3].drain.mode == DrainMode::Drained));
  CHECK(sim.core(5).view().members[3].drain.writer == 1);
  // And its peers see it alive again with a higher incarnation than its last run.
  for (uint32_t i = 0; i < 5; ++i) {
    CHECK((sim.core(i).view().members[5].state == MemberState::Alive));
  }
  CHECK(sim.agreed());
}

TEST_CASE("a stalled node is suspected, refutes and is never declared dead") {
  SimCluster sim(makeDefinition(16, 2, kDefault), 501);
  std::vector<Observed> log;
  sim.setObserver([&](const Observed& o) { log.push_back(o); });
  sim.startAll();
  sim.runFor(milliseconds(1000));
  // Three heartbeat intervals, at every phase of node 4's heartbeat: the stalls that begin
  // late in an interval are long enough to be suspected.
  const Duration interval = sim.definition().timing.heartbeat_interval;
  for (int i = 0; i < 8; ++i) {
    sim.pause(4, 3 * interval);
    sim.runFor(milliseconds(1000) + i * interval / 8);
  }
  uint64_t suspected = 0;
  uint64_t refuted = 0;
  for (const Observed& o : log) {
    suspected += o.event.kind == Event::Kind::MemberChanged && o.event.node == 4 &&
                 o.event.state == MemberState::Suspect;
    refuted += o.event.kind == Event::Kind::Refuted && o.node == 4;
  }
  CHECK(suspected > 0);
  CHECK(refuted > 0);
  CHECK(deadEvents(log) == 0);
  CHECK(sim.core(4).view().members[4].incarnation > 0);
  CHECK(sim.agreed());
}

TEST_CASE("indirect probes keep a node alive when only the direct paths to it are cut") {
  SimCluster sim(makeDefinition(8, 2, kDefault), 502);
  std::vector<Observed> log;
  sim.setObserver([&](const Observed& o) { log.push_back(o); });
  sim.startAll();
  sim.runFor(milliseconds(500));
  LinkConditions down;
  down.down = true;
  sim.setPath(0, 1, 0, down);
  sim.setPath(0, 1, 1, down);
  sim.runFor(milliseconds(3000));
  CHECK(deadEvents(log) == 0);
  CHECK((sim.core(0).view().members[1].state == MemberState::Alive));
  CHECK_FALSE(sim.core(0).view().members[1].reachable());  // reported: no direct link
  CHECK(sim.core(0).counters().indirect_probes_sent > 0);
}

TEST_CASE("link state is kept per peer: one dead link is reported, the node stays alive") {
  SimCluster sim(makeDefinition(4, 2, kDefault), 503);
  sim.startAll();
  sim.runFor(milliseconds(500));
  sim.partition({2}, 1);  // link 1 of node 2 is cut
  // A backup link is reported kBackupRoundDivisor times suspect_after (120 ms) after the last
  // heartbeat on it, which came before the cut.
  sim.runFor(milliseconds(kBackupRoundDivisor * 120 + 100));
  const MemberView& m = sim.core(0).view().members[2];
  CHECK((m.state == MemberState::Alive));
  CHECK(m.links[0].up);
  CHECK_FALSE(m.links[1].up);
  CHECK(sim.core(0).view().members[1].links[1].up);
  CHECK(sim.core(0).counters().suspicions == 0);
}

// Rounds of `sent` (datagrams of one node) that reached node `to` on `link`.
uint64_t reached(const std::vector<Datagram>& sent, uint32_t to, uint32_t link) {
  uint64_t n = 0;
  for (const Datagram& d : sent) {
    n += d.link == link && d.node == kAllPeers && d.reaches(to) ? 1 : 0;
  }
  return n;
}

uint64_t linkDownEvents(const std::vector<Observed>& log, uint32_t link) {
  uint64_t n = 0;
  for (const Observed& o : log) {
    n += o.event.kind == Event::Kind::LinkChanged && o.event.link == link && !o.event.up ? 1 : 0;
  }
  return n;
}

uint64_t totalSuspicions(const SimCluster& sim) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < sim.size(); ++i) {
    n += sim.core(i).counters().suspicions;
  }
  return n;
}

TEST_CASE("a backup link carries one round in kBackupRoundDivisor while link 0 works both ways") {
  SimCluster sim(makeDefinition(4, 2, kDefault), 505);
  std::vector<Observed> log;
  sim.setObserver([&](const Observed& o) { log.push_back(o); });
  sim.startAll();
  sim.runFor(milliseconds(500));
  std::vector<Datagram> sent;
  sim.recordSent(0, &sent);
  sim.runFor(milliseconds(4000));  // 100 rounds
  sim.recordSent(0, nullptr);
  for (uint32_t peer = 1; peer < 4; ++peer) {
    const uint64_t primary = reached(sent, peer, 0);
    const uint64_t backup = reached(sent, peer, 1);
    MESSAGE("to node " << peer << ": link 0 " << primary << " rounds, link 1 " << backup);
    CHECK(primary >= 100);
    CHECK(backup >= 100 / kBackupRoundDivisor - 1);
    CHECK(backup <= 100 / kBackupRoundDivisor + 3);
  }
  CHECK(sim.core(0).counters().backup_heartbeats_skipped > 0);
  // Heartbeats at the reduced rate are no reason to report the backup link down.
  CHECK(linkDownEvents(log, 1) == 0);
  for (uint32_t i = 0; i < 4; ++i) {
    for (uint32_t n = 0; n < 4; ++n) {
      if (n != i) {
        CHECK(sim.core(i).view().members[n].links[1].up);
      }
    }
  }
}

TEST_CASE("link 0 cut under the reduced backup rate: the backup link takes over, no suspicion") {
  for (const uint64_t seed : {506, 507, 508}) {
    SimCluster sim(makeDefinition(8, 2, kDefault), seed);
    if (seed == 508) {
      sim.alignRounds(milliseconds(2));
    }
    std::vector<Observed> log;
    sim.setObserver([&](const Observed& o) { log.push_back(o); });
    sim.startAll();
    sim.runFor(milliseconds(1000));
    REQUIRE(sim.core(0).counters().backup_heartbeats_skipped > 0);
    LinkConditions down;
    down.down = true;
    sim.setLink(0, down);
    sim.runFor(milliseconds(200));
    std::vector<Datagram> sent;
    sim.recordSent(0, &sent);
    sim.runFor(milliseconds(1000));  // 25 rounds
    sim.recordSent(0, nullptr);
    sim.runFor(milliseconds(2000));
    CAPTURE(seed);
    CHECK(deadEvents(log) == 0);
    CHECK(totalSuspicions(sim) == 0);
    CHECK(linkDownEvents(log, 1) == 0);
    for (uint32_t peer = 1; peer < 8; ++peer) {
      CHECK(reached(sent, peer, 1) >= 24);  // every round on the backup link now
      const MemberView& m = sim.core(0).view().members[peer];
      CHECK((m.state == MemberState::Alive));
      CHECK_FALSE(m.links[0].up);
      CHECK(m.links[1].up);
    }
    uint64_t probes = 0;
    for (uint32_t i = 0; i < 8; ++i) {
      probes += sim.core(i).counters().probes_sent;
    }
    MESSAGE("seed " << seed << ": " << probes << " direct probes while the backup link took over");
  }
}

TEST_CASE("link 0 lost in one direction only: the sender hears of it and uses the backup link") {
  SimCluster sim(makeDefinition(4, 2, kDefault), 509);
  std::vector<Observed> log;
  sim.setObserver([&](const Observed& o) { log.push_back(o); });
  sim.startAll();
  sim.runFor(milliseconds(1000));
  LinkConditions down;
  down.down = true;
  sim.setDirection(0, 1, 0, down);  // node 1 no longer hears node 0 on link 0; the rest works
  sim.runFor(milliseconds(300));
  std::vector<Datagram> sent;
  sim.recordSent(0, &sent);
  sim.runFor(milliseconds(1000));
  sim.recordSent(0, nullptr);
  CHECK(deadEvents(log) == 0);
  CHECK(totalSuspicions(sim) == 0);
  CHECK(reached(sent, 1, 1) >= 24);                            // node 1: every round on link 1
  CHECK(reached(sent, 2, 1) <= 25 / kBackupRoundDivisor + 3);  // node 2: still reduced
  const MemberView& seen_by_1 = sim.core(1).view().members[0];
  CHECK_FALSE(seen_by_1.links[0].up);
  CHECK(seen_by_1.links[1].up);
  CHECK(sim.core(0).view().members[1].links[0].up);  // node 0 still hears node 1 on link 0
}

TEST_CASE("a partition of every link: each side declares the other dead, and heals") {
  SimCluster sim(makeDefinition(6, 2, kDefault), 504);
  sim.startAll();
  sim.runFor(milliseconds(500));
  sim.partition({0, 1, 2});
  sim.runFor(milliseconds(1000));
  CHECK((sim.core(0).view().members[4].state == MemberState::Dead));
  CHECK((sim.core(4).view().members[0].state == MemberState::Dead));
  sim.heal();
  sim.runFor(milliseconds(1000));
  for (uint32_t a = 0; a < 6; ++a) {
    for (uint32_t b = 0; b < 6; ++b) {
      CHECK((sim.core(a).view().members[b].state == MemberState::Alive));
    }
  }
  CHECK(sim.agreed());
}

namespace {

// Flap damping that holds a node out for 5 s after its third death within 20 s.
TimingProfile flapTiming() {
  TimingProfile t = kDefault;
  t.flap_window = milliseconds(20000);
  t.flap_threshold = 3;
  t.flap_hold_down = milliseconds(5000);
  return t;
}

}  // namespace

TEST_CASE("flap damping: a node that keeps dying is held out on every node, then serves") {
  SimCluster sim(makeDefinition(5, 2, flapTiming()), 601);
  sim.startAll();
  sim.runFor(milliseconds(500));
  for (int i = 0; i < 3; ++i) {
    sim.crash(2);
    sim.runFor(milliseconds(600));
    sim.start(2);
    sim.runFor(milliseconds(600));
  }
  for (uint32_t i = 0; i < 5; ++i) {
    const MemberView& m = sim.core(i).view().members[2];
    CHECK((m.state == MemberState::Alive));
    CHECK(m.held_down);
    CHECK_FALSE(m.serving());
  }
  CHECK(sim.agreed());  // the flapping node holds itself out too
  sim.runFor(milliseconds(5000));
  for (uint32_t i = 0; i < 5; ++i) {
    CHECK(sim.core(i).view().members[2].serving());
  }
  CHECK(sim.agreed());
}

TEST_CASE("flap damping: repeated partitions of one node hold out that node, not the others") {
  SimCluster sim(makeDefinition(3, 2, flapTiming()), 611);
  sim.startAll();
  sim.runFor(milliseconds(500));
  // Node 2 is cut off from both others three times: it sees both of them die each time
  // (from a minority), they see it die (from a majority).
  for (int i = 0; i < 3; ++i) {
    sim.partition({2});
    sim.runFor(milliseconds(1000));
    sim.heal();
    sim.runFor(milliseconds(1000));
  }
  for (uint32_t i = 0; i < 3; ++i) {
    const View& v = sim.core(i).view();
    CHECK((v.members[0].state == MemberState::Alive));
    CHECK(v.members[0].serving());
    CHECK(v.members[1].serving());
    CHECK(v.members[2].held_down);
  }
  CHECK(sim.agreed());
}

TEST_CASE("forged, replayed and foreign packets are counted and change nothing") {
  SimCluster sim(makeDefinition(4, 2, kDefault), 701);
  std::vector<Datagram> sent;
  sim.startAll();
  sim.runFor(milliseconds(500));
  // Record what node 1 sends once node 0 runs, so that node 0 has received all of it.
  sim.recordSent(1, &sent);
  sim.runFor(milliseconds(400));
  sim.recordSent(1, nullptr);
  sim.runFor(milliseconds(10));
  const uint64_t digest = sim.viewDigest(0);
  const Endpoint from{sim.definition().nodes[1].addresses[0], sim.definition().port};
  const Counters before = sim.core(0).counters();
  // Replays of everything node 1 sent to node 0.
  uint64_t replays = 0;
  for (const Datagram& d : sent) {
    if (d.reaches(0)) {
      sim.inject(0, d.link, d.bytes, from);
      ++replays;
    }
  }
  REQUIRE(replays >= 8);
  // Random bytes.
  Rng rng(5);
  for (int i = 0; i < 50; ++i) {
    std::string junk(static_cast<std::size_t>(rng.below(300)), '\0');
    for (char& ch : junk) {
      ch = static_cast<char>(rng.next());
    }
    sim.inject(0, 0, junk, from);
  }
  // A node of another cluster (same key, another definition).
  ClusterDefinition other = makeDefinition(4, 2, kDefault);
  other.name = "elsewhere";
  wire::Envelope env;
  env.mutable_heartbeat()->set_incarnation(1000);
  PacketSealer sealer(fingerprint64(other), 1, 5);
  const Endpoint stranger{*IpAddress::parse("2001:db8::9"), 7400};
  sim.inject(0, 0, sealer.seal(simKeyring(), 0, env), stranger);

  const Counters& after = sim.core(0).counters();
  CHECK(after.rejected[Rejection::Replay] - before.rejected[Rejection::Replay] == replays);
  CHECK(after.rejected[Rejection::Malformed] - before.rejected[Rejection::Malformed] +
            after.rejected[Rejection::UnsupportedVersion] + after.rejected[Rejection::UnknownKey] +
            after.rejected[Rejection::BadMac] ==
        50);
  CHECK(after.rejected[Rejection::OtherCluster] == 1);
  REQUIRE(sim.core(0).foreignPeers().size() == 1);
  CHECK(sim.core(0).foreignPeers()[0].from.toString() == "[2001:db8::9]:7400");
  CHECK(sim.core(0).view().members[1].incarnation < 1000);
  CHECK(sim.viewDigest(0) == digest);
  sim.runFor(milliseconds(500));
  CHECK(sim.agreed());
}
