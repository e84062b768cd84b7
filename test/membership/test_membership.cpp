// Unit tests of the membership core and its pure helpers, driven by hand with simulated
// time: datagrams are passed between cores directly, never through a socket.

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "core/fingerprint.h"
#include "core/timing_profile.h"
#include "membership/drain_snapshot.h"
#include "membership/flap_damper.h"
#include "membership/local_health.h"
#include "membership/membership.h"
#include "membership/state_file.h"
#include "test/sim/sim_cluster.h"

using namespace shoal;
using std::chrono::milliseconds;

namespace {

const TimePoint t0 = TimePoint{} + std::chrono::seconds(100);

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A tiny harness: a few cores and the datagrams in flight between them, delivered with zero
// delay when step() is called.
struct Harness {
  ClusterDefinition def;
  std::vector<std::unique_ptr<Membership>> cores;
  std::vector<std::pair<uint32_t, Datagram>> in_flight;  // (sender, datagram)
  std::vector<std::vector<Event>> events;
  std::vector<TimePoint> wake;
  std::vector<bool> cut;     // node isolated: nothing to or from it is delivered
  std::vector<bool> paused;  // node stalled: datagrams to it wait until it runs again

  explicit Harness(std::size_t n, std::size_t links = 2, bool with_service = false)
      : def(sim::makeDefinition(n, links, *timingPreset("default"))),
        events(n),
        wake(n, TimePoint::max()),
        cut(n, false),
        paused(n, false) {
    if (with_service) {
      Service web;
      web.name = "web";
      web.buckets = 16;
      def.services.push_back(web);
    }
    for (uint32_t i = 0; i < n; ++i) {
      cores.push_back(std::make_unique<Membership>(def, i, sim::simKeyring(), 1, 42 + i));
    }
  }
  void take(uint32_t node, Output out) {
    for (Datagram& d : out.send) {
      if (d.node != kAllPeers) {
        in_flight.emplace_back(node, std::move(d));
        continue;
      }
      for (uint32_t n = 0; n < cores.size(); ++n) {
        if (n != node && d.reaches(n)) {
          in_flight.emplace_back(node, Datagram{d.link, n, d.bytes});
        }
      }
    }
    for (Event& e : out.events) {
      events[node].push_back(e);
    }
    wake[node] = out.next_wakeup;
  }
  void startAll(TimePoint now) {
    for (uint32_t i = 0; i < cores.size(); ++i) {
      take(i, cores[i]->start(now));
    }
  }
  // Delivers everything in flight (and what that triggers) at `now`.
  void step(TimePoint now) {
    std::vector<std::pair<uint32_t, Datagram>> held;
    for (int round = 0; round < 10 && !in_flight.empty(); ++round) {
      auto batch = std::move(in_flight);
      in_flight.clear();
      for (auto& [from, d] : batch) {
        if (cut[from] || cut[d.node]) {
          continue;
        }
        if (paused[d.node]) {
          held.emplace_back(from, std::move(d));
          continue;
        }
        const Endpoint src{def.nodes[from].addresses[d.link], def.port};
        take(d.node, cores[d.node]->onPacket(now, bytesOf(d.bytes), d.link, src));
      }
    }
    for (auto& item : held) {
      in_flight.push_back(std::move(item));
    }
  }
  // Runs every core's timers from `from` to `to` in 1 ms steps, delivering as it goes.
  void run(TimePoint from, TimePoint to) {
    for (TimePoint now = from; now <= to; now += milliseconds(1)) {
      for (uint32_t i = 0; i < cores.size(); ++i) {
        if (wake[i] <= now && !paused[i]) {
          take(i, cores[i]->onTick(now));
        }
      }
      step(now);
    }
  }
  const MemberView& viewOf(uint32_t at, uint32_t node) const {
    return cores[at]->view().members[node];
  }
};

// Runs a harness in 1 ms steps and remembers when each node logged each event, so a test
// can ask when a node first saw a member enter a state.
class Timeline {
 public:
  explicit Timeline(Harness& h) : h_(h), first_(h.events.size()), times_(h.events.size()) {
    for (std::size_t i = 0; i < h.events.size(); ++i) {
      first_[i] = h.events[i].size();
    }
  }
  // Runs (from, to].
  void run(TimePoint from, TimePoint to) {
    for (TimePoint now = from + milliseconds(1); now <= to; now += milliseconds(1)) {
      h_.run(now, now);
      for (std::size_t i = 0; i < times_.size(); ++i) {
        times_[i].resize(h_.events[i].size() - first_[i], now);
      }
    }
  }
  // When node `at` first saw `node` enter `state` during run().
  std::optional<TimePoint> first(uint32_t at, uint32_t node, MemberState state) const {
    for (std::size_t k = 0; k < times_[at].size(); ++k) {
      const Event& e = h_.events[at][first_[at] + k];
      if (e.kind == Event::Kind::MemberChanged && e.node == node && e.state == state) {
        return times_[at][k];
      }
    }
    return std::nullopt;
  }

 private:
  Harness& h_;
  std::vector<std::size_t> first_;  // events logged before the timeline began, per node
  std::vector<std::vector<TimePoint>> times_;
};

// Starts every node at t0, cuts `node` off from all others at `cut_at` and runs 400 ms more.
Timeline isolateAt(Harness& h, uint32_t node, TimePoint cut_at) {
  h.startAll(t0);
  h.run(t0, cut_at);
  h.cut[node] = true;
  Timeline timeline(h);
  timeline.run(cut_at, cut_at + milliseconds(400));
  return timeline;
}

// The claims of a node of a one-service (16-bucket) cluster: `list` of that service.
std::vector<BucketSet> oneService(std::initializer_list<uint32_t> list) {
  BucketSet set(16);
  for (uint32_t b : list)
    set.set(b);
  return std::vector<BucketSet>{set};
}

}  // namespace

TEST_CASE("drain writes are ordered by clock, then by writer") {
  DrainState a{DrainMode::Drained, 5, 1};
  DrainState b{DrainMode::None, 5, 2};
  DrainState c{DrainMode::Draining, 6, 0};
  CHECK(b.newerThan(a));
  CHECK_FALSE(a.newerThan(b));
  CHECK(c.newerThan(b));
  CHECK_FALSE(a.newerThan(a));
}

TEST_CASE("drain snapshot survives encoding, by node name") {
  const ClusterDefinition def = sim::makeDefinition(4, 2, *timingPreset("default"));
  DrainSnapshot s;
  s.clock = 9;
  s.drains.resize(4);
  s.drains[1] = DrainState{DrainMode::Drained, 7, 3};
  s.drains[2] = DrainState{DrainMode::None, 9, 2};
  const std::string text = encodeDrainSnapshot(s, def);
  CHECK(text.find("node n1 drained 7 n3") != std::string::npos);
  auto back = decodeDrainSnapshot(text, def, "state");
  REQUIRE(back.ok());
  CHECK(back.value() == s);

  SUBCASE("a node no longer in the definition is skipped") {
    auto r =
        decodeDrainSnapshot("shoal-drain-state 1\nclock 3\nnode gone drained 3 n0\n", def, "state");
    REQUIRE(r.ok());
    CHECK(r.value().clock == 3);
    CHECK(r.value().drains[0].clock == 0);
  }
  SUBCASE("a malformed line is reported with its number") {
    auto r = decodeDrainSnapshot("shoal-drain-state 1\nnode n1 sideways 3 n0\n", def, "state");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("state:2:") == 0);
  }
  SUBCASE("another file is refused") {
    auto r = decodeDrainSnapshot("hello\n", def, "state");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("shoal-drain-state") != std::string::npos);
  }
}

TEST_CASE("state file is replaced whole and read back") {
  const std::string dir =
      std::filesystem::temp_directory_path() / ("shoal-state-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/drain";
  auto missing = readSmallFile(path);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.rfind("missing:", 0) == 0);
  REQUIRE(writeFileAtomically(path, "one\n").ok());
  REQUIRE(writeFileAtomically(path, "two\n").ok());
  auto read = readSmallFile(path);
  REQUIRE(read.ok());
  CHECK(read.value() == "two\n");
  // No temporary file is left behind.
  CHECK(std::distance(std::filesystem::directory_iterator(dir),
                      std::filesystem::directory_iterator()) == 1);
  CHECK_FALSE(writeFileAtomically(dir + "/no/such/folder/file", "x").ok());
  std::filesystem::remove_all(dir);
}

TEST_CASE("local health rises on bad signs, falls on good ones and decays") {
  LocalHealth h(3, milliseconds(100));
  CHECK(h.multiplier() == 1);
  h.worse(t0);
  h.worse(t0);
  CHECK(h.score() == 2);
  h.better(t0 + milliseconds(10));
  CHECK(h.score() == 1);
  h.worse(t0);
  h.worse(t0);
  h.worse(t0);
  h.worse(t0);
  CHECK(h.score() == 3);  // capped
  h.decay(t0 + milliseconds(250));
  CHECK(h.score() == 1);
  CHECK(h.nextDecay() == t0 + milliseconds(300));
}

TEST_CASE("flap damping holds a node out after threshold deaths within the window") {
  FlapDamper f(3, milliseconds(60000), milliseconds(30000));
  f.died(t0);
  f.died(t0 + milliseconds(1000));
  CHECK(f.returned(t0 + milliseconds(2000)) == TimePoint{});
  f.died(t0 + milliseconds(3000));
  CHECK(f.returned(t0 + milliseconds(4000)) == t0 + milliseconds(34000));
  // Deaths older than the window no longer count.
  CHECK(f.returned(t0 + milliseconds(61000)) == TimePoint{});
}

TEST_CASE("start sends a signed heartbeat and a state request to every peer on every link") {
  Harness h(3);
  Output out = h.cores[0]->start(t0);
  std::map<std::pair<uint32_t, uint32_t>, int> heartbeats;
  int state_requests = 0;
  for (const Datagram& d : out.send) {
    if (d.node == kAllPeers) {
      // A heartbeat round: one datagram per link, accepted by every peer.
      for (uint32_t peer = 1; peer < 3; ++peer) {
        WireIdentity receiver{fingerprint64(h.def), peer, 3};
        Opened opened = openPacket(d.bytes, sim::simKeyring(), receiver);
        REQUIRE(opened.ok());
        CHECK(opened.envelope().sender() == 0);
        REQUIRE(opened.envelope().has_heartbeat());
        CHECK(opened.envelope().heartbeat().link() == d.link);
        CHECK(opened.envelope().heartbeat().probe_id() == 0);
        ++heartbeats[{peer, d.link}];
      }
      continue;
    }
    WireIdentity receiver{fingerprint64(h.def), d.node, 3};
    Opened opened = openPacket(d.bytes, sim::simKeyring(), receiver);
    REQUIRE(opened.ok());
    CHECK(opened.envelope().sender() == 0);
    state_requests += opened.envelope().has_state_exchange() ? 1 : 0;
    // Only the addressee accepts it.
    WireIdentity other{fingerprint64(h.def), d.node == 1 ? 2u : 1u, 3};
    CHECK((openPacket(d.bytes, sim::simKeyring(), other).reason() == Rejection::Replay));
  }
  CHECK(heartbeats.size() == 4);  // 2 peers x 2 links
  CHECK(state_requests == 4);
  CHECK(out.next_wakeup <= t0 + milliseconds(50));
}

TEST_CASE("peers become alive, links up, and the view agrees after start") {
  Harness h(3);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(200));
  for (uint32_t a = 0; a < 3; ++a) {
    for (uint32_t b = 0; b < 3; ++b) {
      CHECK((h.viewOf(a, b).state == MemberState::Alive));
      if (a != b) {
        CHECK(h.viewOf(a, b).reachable());
        CHECK(h.viewOf(a, b).links[0].up);
        CHECK(h.viewOf(a, b).links[1].up);
      }
    }
  }
}

TEST_CASE("a silent peer is suspected, then dead within suspect_after + suspicion_timeout") {
  Harness h(3);
  const TimePoint cut_at = t0 + milliseconds(500);
  const Timeline timeline = isolateAt(h, 2, cut_at);
  auto suspect = timeline.first(0, 2, MemberState::Suspect);
  auto dead = timeline.first(0, 2, MemberState::Dead);
  REQUIRE(suspect);
  REQUIRE(dead);
  // Last heard up to one heartbeat before the cut. Suspected once the probe started after
  // suspect_after fails; both survivors accuse it, so dead half a suspicion_timeout after the
  // probe began (Lifeguard), never later than the full one.
  const TimingProfile& t = h.def.timing;
  CHECK(*suspect - cut_at >= t.suspect_after + t.probe_timeout - t.heartbeat_interval);
  CHECK(*suspect - cut_at <= t.suspect_after + t.probe_timeout + milliseconds(2));
  CHECK(*dead - cut_at >= t.suspect_after + t.suspicion_timeout / 2 - t.heartbeat_interval);
  CHECK(*dead - cut_at <= t.suspect_after + t.suspicion_timeout / 2 + milliseconds(2));
  CHECK(h.cores[0]->counters().probes_sent > 0);
  CHECK(h.cores[0]->counters().indirect_probes_sent > 0);
  // Both links to it are reported down.
  CHECK_FALSE(h.viewOf(0, 2).reachable());
}

TEST_CASE("independent accusers shorten a suspicion; a lone accuser waits the full time") {
  // Node 0 is cut off from the four others: each of them suspects it, and they confirm each
  // other, while node 0 alone suspects each of them and has nobody to confirm.
  Harness h(5);
  const TimePoint cut_at = t0 + milliseconds(500);
  const Timeline timeline = isolateAt(h, 0, cut_at);
  auto deadAt = [&](uint32_t at, uint32_t node) {
    return timeline.first(at, node, MemberState::Dead);
  };
  const TimingProfile& t = h.def.timing;
  for (uint32_t i = 1; i < 5; ++i) {
    const auto dead = deadAt(i, 0);
    REQUIRE(dead);
    CHECK(*dead - cut_at <= t.suspect_after + t.suspicion_timeout / 2 + milliseconds(2));
  }
  // Node 0's own probes of the others fail too, but nobody confirms its suspicions: the full
  // suspicion_timeout, or longer once its local health score rises (no helper answered).
  int declared = 0;
  for (uint32_t node = 1; node < 5; ++node) {
    if (const auto dead = deadAt(0, node)) {
      ++declared;
      CHECK(*dead - cut_at >= t.suspect_after + t.suspicion_timeout - t.heartbeat_interval);
    }
  }
  CHECK(declared > 0);
}

TEST_CASE("a suspected node refutes with a higher incarnation") {
  Harness h(2);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  const uint64_t inc = h.cores[0]->view().members[0].incarnation;
  // Node 1 tells node 0 that node 0 is suspect.
  wire::Envelope env;
  wire::Heartbeat* hb = env.mutable_heartbeat();
  hb->set_incarnation(h.cores[1]->view().members[1].incarnation);
  wire::MemberUpdate* u = hb->add_updates();
  u->set_node(0);
  u->set_incarnation(inc);
  u->set_state(wire::MEMBER_SUSPECT);
  PacketSealer sealer(fingerprint64(h.def), 1, 99);
  const std::string bytes = sealer.seal(sim::simKeyring(), 0, env);
  Output out = h.cores[0]->onPacket(t0 + milliseconds(101), bytesOf(bytes), 0,
                                    Endpoint{h.def.nodes[1].addresses[0], h.def.port});
  CHECK(h.cores[0]->view().members[0].incarnation == inc + 1);
  CHECK(h.cores[0]->counters().refutations == 1);
  bool refuted_event = false;
  for (const Event& e : out.events) {
    refuted_event |= e.kind == Event::Kind::Refuted;
  }
  CHECK(refuted_event);
  // The refutation goes out at once, on every link.
  int sent = 0;
  for (const Datagram& d : out.send) {
    Opened o = openPacket(d.bytes, sim::simKeyring(), WireIdentity{fingerprint64(h.def), 1, 2});
    REQUIRE(o.ok());
    if (o.envelope().has_heartbeat() && o.envelope().heartbeat().incarnation() == inc + 1) {
      ++sent;
    }
  }
  CHECK(sent == 2);
}

TEST_CASE("rejected packets are counted by reason and change nothing") {
  Harness h(2);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  Membership& core = *h.cores[0];
  const View before = core.view();
  const Endpoint from{h.def.nodes[1].addresses[0], h.def.port};
  const TimePoint now = t0 + milliseconds(101);

  SUBCASE("random bytes") {
    std::string junk(64, '\0');
    for (std::size_t i = 0; i < junk.size(); ++i) {
      junk[i] = static_cast<char>(i * 37 + 11);
    }
    (void)core.onPacket(now, bytesOf(junk), 0, from);
    CHECK((core.counters().rejected[Rejection::Malformed] == 1));
  }
  SUBCASE("a wrong key") {
    std::array<uint8_t, kKeySize> other{};
    other.fill(0xee);
    std::vector<Key> keys;
    keys.emplace_back(1, other);
    Keyring wrong = std::move(Keyring::fromKeys(std::move(keys), 1)).value();
    wire::Envelope env;
    env.mutable_heartbeat()->set_incarnation(7);
    PacketSealer sealer(fingerprint64(h.def), 1, 99);
    (void)core.onPacket(now, bytesOf(sealer.seal(wrong, 0, env)), 0, from);
    CHECK((core.counters().rejected[Rejection::BadMac] == 1));
    CHECK(core.view().members[1].incarnation == before.members[1].incarnation);
  }
  SUBCASE("a replayed packet") {
    wire::Envelope env;
    env.mutable_heartbeat()->set_incarnation(5);
    PacketSealer sealer(fingerprint64(h.def), 1, 99);
    const std::string bytes = sealer.seal(sim::simKeyring(), 0, env);
    (void)core.onPacket(now, bytesOf(bytes), 0, from);
    CHECK(core.view().members[1].incarnation == 5);
    const uint64_t accepted = core.counters().packets_accepted;
    (void)core.onPacket(now, bytesOf(bytes), 0, from);
    CHECK((core.counters().rejected[Rejection::Replay] == 1));
    CHECK(core.counters().packets_accepted == accepted);
  }
  SUBCASE("another cluster definition: not admitted, reported with its address") {
    ClusterDefinition other = h.def;
    other.name = "another";
    wire::Envelope env;
    env.mutable_heartbeat()->set_incarnation(3);
    PacketSealer sealer(fingerprint64(other), 1, 99);
    const Endpoint stranger{*IpAddress::parse("192.0.2.7"), 7400};
    Output out = core.onPacket(now, bytesOf(sealer.seal(sim::simKeyring(), 0, env)), 0, stranger);
    CHECK((core.counters().rejected[Rejection::OtherCluster] == 1));
    REQUIRE(core.foreignPeers().size() == 1);
    CHECK(core.foreignPeers()[0].from.toString() == "192.0.2.7:7400");
    CHECK(core.foreignPeers()[0].fingerprint == fingerprint64(other));
    REQUIRE(out.events.size() == 1);
    CHECK((out.events[0].kind == Event::Kind::ForeignPeerSeen));
  }
  for (uint32_t n = 0; n < 2; ++n) {
    CHECK((core.view().members[n].state == before.members[n].state));
    CHECK(core.view().members[n].drain == before.members[n].drain);
  }
  CHECK(core.counters().rejected.total() == 1);
}

TEST_CASE("drain set on one node reaches the others at once and is persisted") {
  Harness h(3);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  h.take(1, h.cores[1]->drain(t0 + milliseconds(101), 2, DrainMode::Drained));
  h.step(t0 + milliseconds(101));
  for (uint32_t a = 0; a < 3; ++a) {
    CHECK((h.viewOf(a, 2).drain.mode == DrainMode::Drained));
    CHECK(h.viewOf(a, 2).drain.writer == 1);
    CHECK_FALSE(h.viewOf(a, 2).serving());
    bool persisted = false;
    for (const Event& e : h.events[a]) {
      persisted |= e.kind == Event::Kind::DrainChanged && e.node == 2;
    }
    CHECK(persisted);
  }
  const DrainSnapshot snap = h.cores[0]->drainSnapshot();
  CHECK((snap.drains[2].mode == DrainMode::Drained));
  CHECK(snap.clock >= snap.drains[2].clock);
}

TEST_CASE("own health reaches peers at once; an unhealthy node does not serve") {
  Harness h(2);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  const uint64_t inc = h.viewOf(0, 0).incarnation;
  h.take(0, h.cores[0]->setOwnHealth(t0 + milliseconds(101),
                                     NodeHealth{HealthStatus::Failing, 0b100}));
  h.step(t0 + milliseconds(101));
  CHECK(h.viewOf(0, 0).incarnation == inc + 1);
  CHECK((h.viewOf(1, 0).health.status == HealthStatus::Failing));
  CHECK(h.viewOf(1, 0).health.failing_checks == 0b100);
  CHECK(h.viewOf(1, 0).up());
  CHECK_FALSE(h.viewOf(1, 0).serving());
}

TEST_CASE("claims from a heartbeat older than the last one heard are not taken back") {
  Harness h(2, 2, true);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  const auto claims = oneService;
  // Node 0 claims bucket 3, then releases it; the first announcement is held back and
  // arrives after the second (the release) was heard.
  h.take(0, h.cores[0]->setOwnClaims(t0 + milliseconds(101), claims({3, 4}), 7));
  auto older = std::move(h.in_flight);
  h.in_flight.clear();
  h.take(0, h.cores[0]->setOwnClaims(t0 + milliseconds(102), claims({4}), 8));
  h.step(t0 + milliseconds(102));
  CHECK(h.viewOf(1, 0).claims == claims({4}));
  CHECK(h.viewOf(1, 0).view_digest == 8);
  const TimePoint heard = h.viewOf(1, 0).claims_heard;
  h.in_flight = std::move(older);
  h.step(t0 + milliseconds(103));
  CHECK(h.viewOf(1, 0).claims == claims({4}));
  CHECK(h.viewOf(1, 0).view_digest == 8);
  CHECK(h.viewOf(1, 0).claims_heard == heard);
  CHECK(h.cores[1]->counters().stale_claims >= 1);
  // The older packets were authentic and fresh to the replay window: accepted, not rejected.
  CHECK(h.cores[1]->counters().rejected.total() == 0);
  // The next heartbeat round carries the current claims and is taken as usual.
  h.run(t0 + milliseconds(104), t0 + milliseconds(150));
  CHECK(h.viewOf(1, 0).claims == claims({4}));
  CHECK(h.viewOf(1, 0).claims_heard > heard);
}

TEST_CASE(
    "a release announced with its time left reaches peers at once, counted from the "
    "arrival, never before the sender stops") {
  Harness h(2, 2, true);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  const auto buckets = oneService;
  // Node 0 answers 3 and 4 and hands 4 over, answering it until 30 ms from now.
  const TimePoint sealed = t0 + milliseconds(101);
  const TimePoint stops = sealed + milliseconds(30) + std::chrono::nanoseconds(300);
  h.take(0, h.cores[0]->setOwnClaims(sealed, buckets({3, 4}), buckets({4}), stops, 7));
  REQUIRE_FALSE(h.in_flight.empty());  // at once, not at the next round
  // Delivered 1.5 ms later, and read 1 ms after it reached the host.
  const TimePoint arrival = sealed + std::chrono::microseconds(1500);
  for (auto& [from, d] : h.in_flight) {
    const Endpoint src{h.def.nodes[from].addresses[d.link], h.def.port};
    h.take(d.node, h.cores[d.node]->onPacket(arrival + milliseconds(1), bytesOf(d.bytes), d.link,
                                             src, arrival));
  }
  h.in_flight.clear();
  const MemberView& seen = h.viewOf(1, 0);
  CHECK(seen.claims == buckets({3, 4}));
  CHECK(seen.releasing == buckets({4}));
  CHECK(seen.releases(0, 4));
  CHECK_FALSE(seen.releases(0, 3));
  // Not counted from this copy's slow trip: the heartbeats before it came at once (the same
  // clock, no delay), so the offset bound is about zero (aged at most 40 us since the last
  // one), plus the time left stretched by a thousandth for clock rates.
  CHECK(seen.release_at >= stops);
  CHECK(seen.release_at <= stops + std::chrono::microseconds(1 + 31 + 40 + 1));
  CHECK(seen.release_at < arrival + milliseconds(30));
  // The next round (at 120 ms) says how much is left then; delivered here in the instant it
  // is sent, so counted from the sealing: the stop itself, rounded up.
  h.run(t0 + milliseconds(102), t0 + milliseconds(125));
  CHECK(h.viewOf(1, 0).claims_heard >= t0 + milliseconds(120));
  CHECK(h.viewOf(1, 0).releasing == buckets({4}));
  CHECK(h.viewOf(1, 0).release_at >= stops);
  // 11.0003 ms left: 11001 us, stretched by a thousandth of it (11001 ns, rounded up).
  CHECK(h.viewOf(1, 0).release_at == stops - std::chrono::nanoseconds(300) +
                                         std::chrono::microseconds(1) +
                                         std::chrono::nanoseconds(11001));
  // Once the stop has passed, zero is left (the arrival itself), but the earliest bound of
  // the same instant stands.
  const TimePoint best = h.viewOf(1, 0).release_at;
  h.run(t0 + milliseconds(126), t0 + milliseconds(165));
  CHECK(h.viewOf(1, 0).claims_heard >= t0 + milliseconds(160));
  CHECK(h.viewOf(1, 0).releasing == buckets({4}));
  CHECK(h.viewOf(1, 0).release_at == best);
  // A new instant is not bounded by the announcements of the old one.
  const TimePoint later = t0 + milliseconds(190);
  h.take(0,
         h.cores[0]->setOwnClaims(t0 + milliseconds(165), buckets({3, 4}), buckets({4}), later, 9));
  h.step(t0 + milliseconds(165));
  CHECK(h.viewOf(1, 0).release_at == later + std::chrono::microseconds(25));
  // Done: the claims without the bucket, nothing releasing.
  h.take(0, h.cores[0]->setOwnClaims(t0 + milliseconds(166), buckets({3}), {}, TimePoint{}, 8));
  h.step(t0 + milliseconds(166));
  CHECK(h.viewOf(1, 0).claims == buckets({3}));
  CHECK(h.viewOf(1, 0).releasing.empty());
}

TEST_CASE("with nothing faster heard before, a release is bounded by its announcement's own trip") {
  Harness h(2, 2, true);
  h.cut[0] = true;  // node 1 hears nothing of node 0 before the announcement
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  h.cut[0] = false;
  h.in_flight.clear();
  const TimePoint sealed = t0 + milliseconds(101);
  const TimePoint stops = sealed + milliseconds(30) + std::chrono::nanoseconds(300);
  h.take(0, h.cores[0]->setOwnClaims(sealed, oneService({3, 4}), oneService({4}), stops, 7));
  const TimePoint arrival = sealed + milliseconds(2);
  for (auto& [from, d] : h.in_flight) {
    if (d.node != 1)
      continue;
    const Endpoint src{h.def.nodes[from].addresses[d.link], h.def.port};
    h.take(1,
           h.cores[1]->onPacket(arrival + milliseconds(1), bytesOf(d.bytes), d.link, src, arrival));
  }
  h.in_flight.clear();
  // 30.0003 ms left when sealed, rounded up to whole microseconds, from the arrival, and
  // stretched by a thousandth (clock rates), rounded up.
  CHECK(h.viewOf(1, 0).release_at ==
        arrival + std::chrono::microseconds(30001) + std::chrono::nanoseconds(30001));
}

TEST_CASE("a node that announces it is leaving stops serving in every view, claims still held") {
  Harness h(3, 2, true);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  BucketSet held(16);
  held.set(5);
  h.take(2, h.cores[2]->setOwnClaims(t0 + milliseconds(101), {held}, 1));
  h.step(t0 + milliseconds(101));
  CHECK(h.viewOf(0, 2).serving());
  h.take(2, h.cores[2]->setLeaving(t0 + milliseconds(102)));
  REQUIRE_FALSE(h.in_flight.empty());
  h.step(t0 + milliseconds(102));
  for (uint32_t at : {0u, 1u, 2u}) {
    CHECK(h.viewOf(at, 2).leaving);
    CHECK_FALSE(h.viewOf(at, 2).serving());
    CHECK((h.viewOf(at, 2).state == MemberState::Alive));
  }
  CHECK(h.viewOf(0, 2).claims == std::vector<BucketSet>{held});
  h.run(t0 + milliseconds(103), t0 + milliseconds(300));
  CHECK(h.viewOf(1, 2).leaving);
  CHECK(h.cores[0]->counters().suspicions == 0);
}

TEST_CASE("a node that leaves is marked left at once, not suspected") {
  Harness h(3);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(100));
  h.take(2, h.cores[2]->leave(t0 + milliseconds(101)));
  h.step(t0 + milliseconds(101));
  CHECK((h.viewOf(0, 2).state == MemberState::Left));
  CHECK((h.viewOf(1, 2).state == MemberState::Left));
  CHECK(h.wake[2] == TimePoint::max());
  h.run(t0 + milliseconds(102), t0 + milliseconds(600));
  CHECK((h.viewOf(0, 2).state == MemberState::Left));
  CHECK(h.cores[0]->counters().suspicions == 0);
}

TEST_CASE("the core asks to be woken no later than its next heartbeat") {
  Harness h(2);
  h.startAll(t0);
  for (TimePoint now = t0; now < t0 + milliseconds(500); now += milliseconds(1)) {
    h.run(now, now);
    CHECK(h.wake[0] <= now + milliseconds(50));
    CHECK(h.wake[0] >= now);
  }
}

TEST_CASE("aligned heartbeat rounds fall on the grid of the offset, whenever a node starts") {
  // Node 0 starts at t0 + 3 ms, node 1 at t0 + 17 ms, both on the grid of offset 7 ms: after
  // its first round (at start), each sends when t + 7 ms is a multiple of 40 ms, so both send
  // together. Node 2 is not aligned: its rounds follow its start.
  Harness h(3);
  const Duration offset = milliseconds(7);
  const Duration interval = h.def.timing.heartbeat_interval;
  h.cores[0]->alignRounds(offset);
  h.cores[1]->alignRounds(offset);
  const TimePoint starts[3] = {t0 + milliseconds(3), t0 + milliseconds(17), t0 + milliseconds(5)};
  std::vector<std::vector<TimePoint>> rounds(3);
  std::vector<uint64_t> sent(3, 0);
  for (TimePoint now = t0; now < t0 + milliseconds(400); now += milliseconds(1)) {
    for (uint32_t i = 0; i < 3; ++i) {
      if (now == starts[i]) {
        h.take(i, h.cores[i]->start(now));
      }
    }
    h.run(now, now);
    for (uint32_t i = 0; i < 3; ++i) {
      const uint64_t hb = h.cores[i]->counters().heartbeats_sent;
      if (hb != sent[i]) {
        rounds[i].push_back(now);
        sent[i] = hb;
      }
    }
  }
  for (uint32_t i = 0; i < 3; ++i) {
    REQUIRE(rounds[i].size() >= 9);
    CHECK(rounds[i][0] == starts[i]);
  }
  for (uint32_t i = 0; i < 2; ++i) {
    for (std::size_t k = 1; k < rounds[i].size(); ++k) {
      CHECK((rounds[i][k].time_since_epoch() + offset) % interval == Duration::zero());
      CHECK(rounds[i][k] - rounds[i][k - 1] <= interval);
    }
  }
  CHECK(rounds[0].back() == rounds[1].back());
  for (std::size_t k = 1; k < rounds[2].size(); ++k) {
    CHECK(rounds[2][k] - rounds[2][k - 1] == interval);
  }
  CHECK((rounds[2].back() - starts[2]) % interval == Duration::zero());

  // A new offset (the wall clock was stepped) moves the grid; no gap grows beyond an interval.
  const TimePoint before = rounds[0].back();
  h.cores[0]->alignRounds(milliseconds(31));
  std::vector<TimePoint> moved;
  for (TimePoint now = t0 + milliseconds(400); now < t0 + milliseconds(600);
       now += milliseconds(1)) {
    h.run(now, now);
    const uint64_t hb = h.cores[0]->counters().heartbeats_sent;
    if (hb != sent[0]) {
      moved.push_back(now);
      sent[0] = hb;
    }
  }
  REQUIRE(moved.size() >= 4);
  CHECK(moved[0] - before <= interval);
  for (std::size_t k = 1; k < moved.size(); ++k) {
    CHECK((moved[k].time_since_epoch() + milliseconds(31)) % interval == Duration::zero());
  }
}

TEST_CASE("a stalled node does not accuse its peers when it wakes up") {
  Harness h(3);
  h.startAll(t0);
  h.run(t0, t0 + milliseconds(300));
  // Node 0 sleeps 400 ms (longer than suspect_after + suspicion_timeout): the others keep
  // running, and it reads everything queued for it when it wakes.
  const TimePoint wake_at = t0 + milliseconds(700);
  h.paused[0] = true;
  h.run(t0 + milliseconds(301), wake_at - milliseconds(1));
  h.paused[0] = false;
  h.run(wake_at, wake_at + milliseconds(100));
  CHECK(h.cores[0]->counters().late_wakeups >= 1);
  CHECK(h.cores[0]->view().local_health >= 1);
  CHECK(h.cores[0]->counters().deaths == 0);
  CHECK((h.viewOf(0, 1).state == MemberState::Alive));
  CHECK((h.viewOf(0, 2).state == MemberState::Alive));
}
