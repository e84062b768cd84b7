// The hand-off rule from membership view to the buckets this node holds.

#include <doctest/doctest.h>

#include <random>

#include "core/rebalance.h"
#include "membership/ownership.h"

namespace {

using shoal::BucketSet;
using shoal::MemberState;

struct Fixture {
  shoal::ClusterDefinition def;
  shoal::View view;
  std::vector<BucketSet> held;

  explicit Fixture(uint32_t self, std::size_t nodes = 3) {
    def.name = "t";
    shoal::Service svc;
    svc.name = "http";
    svc.buckets = 16;
    svc.seed = 7;
    def.services.push_back(svc);
    for (std::size_t i = 0; i < nodes; ++i) {
      shoal::Node n;
      n.name = "n" + std::to_string(i);
      def.nodes.push_back(n);
    }
    view.self = self;
    view.members.resize(nodes);
    for (auto& m : view.members) {
      m.state = MemberState::Alive;
      m.claims_known = true;
    }
    for (auto& m : view.members) {
      m.claims = {BucketSet(16)};
    }
    held = {BucketSet(16)};
  }

  shoal::OwnershipDecision decide(bool settled = true) const {
    return shoal::decideOwnership({&def, &view, &held, settled});
  }

  uint32_t mask() const {
    uint32_t m = 0;
    for (std::size_t i = 0; i < view.members.size(); ++i) {
      m |= view.members[i].serving() ? (1u << i) : 0u;
    }
    return m;
  }

  std::vector<uint32_t> targetOf(int node) const {
    const auto owners = shoal::computeOwners(def, def.services[0], mask());
    std::vector<uint32_t> out;
    for (uint32_t b = 0; b < owners.size(); ++b) {
      if (owners[b] == node) {
        out.push_back(b);
      }
    }
    return out;
  }
};

}  // namespace

TEST_CASE("ownership takes every unclaimed target bucket and nothing else") {
  Fixture f(0);
  const auto d = f.decide();
  CHECK(d.quorum);
  CHECK(d.hold[0].list() == f.targetOf(0));
  CHECK(d.waiting == 0);
}

TEST_CASE("ownership waits for a bucket a live peer still claims, then takes it") {
  Fixture f(0);
  const auto mine = f.targetOf(0);
  REQUIRE_FALSE(mine.empty());
  f.view.members[1].claims[0].set(mine[0]);  // peer 1 has not released it yet
  auto d = f.decide();
  CHECK_FALSE(d.hold[0].has(mine[0]));
  CHECK(d.waiting == 1);
  f.view.members[1].claims[0].set(mine[0], false);  // its next heartbeat: released
  d = f.decide();
  CHECK(d.hold[0].has(mine[0]));
}

TEST_CASE("ownership keeps a held target bucket even if a peer claims it too") {
  Fixture f(0);
  const auto mine = f.targetOf(0);
  f.held[0].set(mine[0]);
  f.view.members[2].claims[0].set(mine[0]);
  CHECK(f.decide().hold[0].has(mine[0]));
}

TEST_CASE("ownership releases a held bucket that is no longer its target") {
  Fixture f(0);
  const auto theirs = f.targetOf(1);
  REQUIRE_FALSE(theirs.empty());
  f.held[0].set(theirs[0]);
  CHECK_FALSE(f.decide().hold[0].has(theirs[0]));
}

TEST_CASE("ownership ignores the claims of a dead peer: a crash is taken over at once") {
  Fixture f(0);
  const auto before = f.targetOf(1);
  for (uint32_t b : before) {
    f.view.members[1].claims[0].set(b);
  }
  f.view.members[1].state = MemberState::Dead;
  const auto d = f.decide();
  for (uint32_t b : before) {
    CHECK(d.targets[0][b] != 1);
  }
  CHECK(d.hold[0].list() == f.targetOf(0));
  CHECK(d.waiting == 0);
}

TEST_CASE("ownership keeps the claims of a dead peer it still hears until it falls silent") {
  // Node 1 declared dead by gossip from a node that could not reach it (a partition heals),
  // while this node heard it 10 ms ago: it may be serving what it claims.
  Fixture f(0);
  const auto before = f.targetOf(1);
  for (uint32_t b : before) {
    f.view.members[1].claims[0].set(b);
  }
  for (auto& m : f.view.members) {
    m.links = {shoal::LinkView{true, true, shoal::TimePoint{} + std::chrono::milliseconds(990)}};
  }
  f.view.members[1].state = MemberState::Dead;
  shoal::OwnershipInput in{&f.def, &f.view, &f.held, true};
  in.now = shoal::TimePoint{} + std::chrono::milliseconds(1000);
  in.quorum_window = std::chrono::milliseconds(120);
  auto d = shoal::decideOwnership(in);
  REQUIRE(d.quorum);
  for (uint32_t b : before) {
    CHECK(d.targets[0][b] != 1);
    CHECK_FALSE(d.hold[0].has(b));
  }
  CHECK(d.waiting > 0);
  // Silent for longer than the window (as a crashed node is long before it is declared
  // dead): taken over at once.
  f.view.members[1].links[0].last_heard = shoal::TimePoint{} + std::chrono::milliseconds(870);
  f.view.members[2].links[0].last_heard = in.now;
  d = shoal::decideOwnership(in);
  for (uint32_t b : before) {
    if (d.targets[0][b] == 0) {
      CHECK(d.hold[0].has(b));
    }
  }
  CHECK(d.waiting == 0);
}

TEST_CASE("ownership of a drained node is empty and its buckets go to the others") {
  Fixture f(0);
  f.view.members[0].drain.mode = shoal::DrainMode::Drained;
  const auto d = f.decide();
  CHECK(d.hold[0].empty());
  CHECK((d.serving_mask & 1u) == 0);
}

TEST_CASE("ownership: hold-downs count unless they would leave nobody to serve") {
  Fixture f(0);
  f.view.members[1].held_down = true;
  auto d = f.decide();
  CHECK(d.serving_mask == 0b101u);
  CHECK_FALSE(d.holds_ignored);
  // Every node that could serve held down (each side of repeated partitions saw the others
  // die): they serve as if none were.
  f.view.members[0].held_down = true;
  f.view.members[2].held_down = true;
  d = f.decide();
  CHECK(d.serving_mask == 0b111u);
  CHECK(d.holds_ignored);
  CHECK_FALSE(d.hold[0].empty());
  // Not for nodes that are drained: a drained, held-down cluster serves nothing.
  f.view.members[1].drain.mode = shoal::DrainMode::Drained;
  d = f.decide();
  CHECK(d.serving_mask == 0b101u);
  for (auto& m : f.view.members) {
    m.drain.mode = shoal::DrainMode::Drained;
  }
  d = f.decide();
  CHECK(d.serving_mask == 0u);
  CHECK_FALSE(d.holds_ignored);
}

TEST_CASE("ownership without quorum holds nothing under the majority policy") {
  Fixture f(0);
  f.view.members[1].state = MemberState::Suspect;  // suspects do not count for quorum
  f.view.members[2].state = MemberState::Dead;
  CHECK_FALSE(f.decide().quorum);
  CHECK(f.decide().hold[0].empty());
  f.def.partition_policy = shoal::PartitionPolicy::ServeAll;
  CHECK(f.decide().quorum);
  CHECK_FALSE(f.decide().hold[0].empty());
}

TEST_CASE("ownership holds nothing before the node has settled") {
  Fixture f(0);
  CHECK(f.decide(false).hold[0].empty());
}

TEST_CASE("quorum is a strict majority of the configured nodes") {
  using shoal::hasQuorum;
  using shoal::PartitionPolicy;
  CHECK(hasQuorum(PartitionPolicy::Majority, 2, 3));
  CHECK_FALSE(hasQuorum(PartitionPolicy::Majority, 1, 3));
  CHECK_FALSE(hasQuorum(PartitionPolicy::Majority, 2, 4));
  CHECK(hasQuorum(PartitionPolicy::Majority, 1, 1));
  CHECK(hasQuorum(PartitionPolicy::ServeAll, 1, 16));
}

TEST_CASE("ownership: every bucket is held by exactly one node once claims settle") {
  // Three nodes that share a view exchange claims until nothing changes; then every bucket
  // has exactly one holder.
  std::vector<Fixture> nodes{Fixture(0), Fixture(1), Fixture(2)};
  for (int round = 0; round < 4; ++round) {
    std::vector<std::vector<BucketSet>> claims(3);
    for (int i = 0; i < 3; ++i) {
      claims[i] = nodes[i].held;
    }
    for (int i = 0; i < 3; ++i) {
      for (int m = 0; m < 3; ++m) {
        nodes[i].view.members[m].claims = claims[m];
      }
      nodes[i].held = nodes[i].decide().hold;
    }
  }
  for (uint32_t b = 0; b < 16; ++b) {
    int holders = 0;
    for (const auto& n : nodes) {
      holders += n.held[0].has(b) ? 1 : 0;
    }
    CHECK(holders == 1);
  }
}

TEST_CASE("view digest differs exactly when the rebalance inputs differ") {
  Fixture a(0);
  Fixture b(1);
  CHECK(shoal::viewDigest(a.view) == shoal::viewDigest(b.view));  // self does not matter
  b.view.members[2].incarnation = 9;                              // neither does incarnation
  CHECK(shoal::viewDigest(a.view) == shoal::viewDigest(b.view));
  b.view.members[2].drain.mode = shoal::DrainMode::Drained;
  CHECK(shoal::viewDigest(a.view) != shoal::viewDigest(b.view));
  b.view.members[2].drain.mode = shoal::DrainMode::None;
  b.view.members[1].state = MemberState::Dead;
  CHECK(shoal::viewDigest(a.view) != shoal::viewDigest(b.view));
}

TEST_CASE("ownership takes nothing new while an up peer's claims are unknown") {
  Fixture f(0);
  const auto mine = f.targetOf(0);
  f.held[0].set(mine[0]);
  f.view.members[2].claims_known = false;  // just came back: may hold anything
  auto d = f.decide();
  CHECK(d.hold[0].list() == std::vector<uint32_t>{mine[0]});  // keeps what it has, no more
  f.view.members[2].claims_known = true;
  d = f.decide();
  CHECK(d.hold[0].list() == mine);
}

TEST_CASE("quorum counts only peers heard within the window, whatever their state says") {
  Fixture f(0);
  const shoal::TimePoint now{std::chrono::seconds(10)};
  for (auto& m : f.view.members) {
    m.links.assign(2, shoal::LinkView{});
  }
  f.view.members[1].links[0].heard = true;
  f.view.members[1].links[0].last_heard = now - std::chrono::milliseconds(100);
  f.view.members[2].links[1].heard = true;
  f.view.members[2].links[1].last_heard = now - std::chrono::milliseconds(400);
  // Both peers are Alive, but only one was heard within 150 ms: 2 of 3 is still a majority.
  CHECK(shoal::quorumCount(f.view, now, std::chrono::milliseconds(150)) == 2);
  f.view.members[1].links[0].last_heard = now - std::chrono::milliseconds(200);
  CHECK(shoal::quorumCount(f.view, now, std::chrono::milliseconds(150)) == 1);
  shoal::OwnershipInput in{&f.def, &f.view, &f.held, true};
  in.now = now;
  in.quorum_window = std::chrono::milliseconds(150);
  CHECK_FALSE(shoal::decideOwnership(in).quorum);  // cut off: let go before being declared dead
  CHECK(shoal::quorumCount(f.view, now, shoal::Duration::zero()) == 3);
  // Declared dead by gossip while this node hears it (a partition heals): still counted.
  f.view.members[1].links[0].last_heard = now - std::chrono::milliseconds(100);
  f.view.members[1].state = MemberState::Dead;
  CHECK(shoal::quorumCount(f.view, now, std::chrono::milliseconds(150)) == 2);
  f.view.members[1].links[0].last_heard = now - std::chrono::milliseconds(200);
  CHECK(shoal::quorumCount(f.view, now, std::chrono::milliseconds(150)) == 1);
}

namespace {

bool sameDecision(const shoal::OwnershipDecision& a, const shoal::OwnershipDecision& b) {
  return a.quorum == b.quorum && a.serving_mask == b.serving_mask && a.targets == b.targets &&
         a.hold == b.hold && a.waiting == b.waiting && a.timed == b.timed &&
         a.next_change == b.next_change;
}

}  // namespace

TEST_CASE("recorded ownership inputs: unchanged facts mean an unchanged decision") {
  // A random walk over views: every step changes one fact, relevant to the decision or not.
  // Whenever the record says nothing changed, deciding again must give the same decision;
  // facts the decision does not read (incarnation, digest, link flags) must not count.
  Fixture f(1, 5);
  for (auto& m : f.view.members) {
    m.links.assign(2, shoal::LinkView{});
  }
  std::mt19937 rng(20240607);
  shoal::TimePoint now{std::chrono::seconds(100)};
  bool settled = true;
  shoal::OwnershipInputs record;
  shoal::TimedHold timed;
  shoal::Duration lead = shoal::kHandOffLead;
  auto input = [&] {
    shoal::OwnershipInput in{&f.def, &f.view, &f.held, settled};
    in.now = now;
    in.quorum_window = std::chrono::milliseconds(150);
    in.timed = &timed;
    in.handoff_lead = lead;
    return in;
  };
  // Claims and holdings matter only on buckets this node is the target of: mostly those.
  auto someBucket = [&]() -> uint32_t {
    const auto mine = f.targetOf(static_cast<int>(f.view.self));
    return mine.empty() || rng() % 4 == 0 ? rng() % 16 : mine[rng() % mine.size()];
  };
  CHECK(record.update(input()));
  auto previous = shoal::decideOwnership(input());
  int unchanged = 0;
  int changed = 0;
  int serving = 0;
  int with_timed = 0;
  for (int step = 0; step < 8000; ++step) {
    auto& m = f.view.members[rng() % f.view.members.size()];
    bool irrelevant = false;
    switch (rng() % 17) {
      case 0:
        m.state = rng() % 3 != 0 ? MemberState::Alive : static_cast<MemberState>(rng() % 4);
        break;
      case 1:
        m.held_down = !m.held_down;
        break;
      case 2:
        m.drain.mode = static_cast<shoal::DrainMode>(rng() % 3);
        break;
      case 3:
        m.health.status = static_cast<shoal::HealthStatus>(rng() % 3);
        break;
      case 4:  // mostly known, as in a settled cluster
        m.claims_known = rng() % 4 != 0;
        break;
      case 5: {
        const uint32_t b = someBucket();
        m.claims[0].set(b, !m.claims[0].has(b));
        break;
      }
      case 6:
        m.claims[0] = BucketSet(16);
        break;
      case 7: {
        auto& l = m.links[rng() % 2];
        l.heard = true;
        l.last_heard = now - std::chrono::milliseconds(rng() % 200);
        break;
      }
      case 8:
        now += std::chrono::milliseconds(rng() % 40);
        break;
      case 9:
        settled = rng() % 4 != 0;
        break;
      case 10: {
        const uint32_t b = someBucket();
        f.held[0].set(b, !f.held[0].has(b));
        break;
      }
      case 11: {  // a peer hands a bucket over, or stops doing so
        const uint32_t b = someBucket();
        m.releasing.resize(1, BucketSet(16));
        m.releasing[0].set(b, !m.releasing[0].has(b));
        m.release_at = now + std::chrono::milliseconds(rng() % 20);
        break;
      }
      case 12:
        m.leaving = !m.leaving;
        break;
      case 13:  // the daemon forgets its timed hold (a lease lapse)
        timed = shoal::TimedHold{};
        break;
      case 14:
        lead = rng() % 3 == 0 ? shoal::Duration::zero() : shoal::kHandOffLead;
        break;
      case 15:
        now = std::min(previous.next_change, now + std::chrono::milliseconds(15));
        break;
      default:
        m.incarnation += 1;
        m.view_digest = rng();
        m.links[0].up = !m.links[0].up;
        irrelevant = true;
        break;
    }
    const bool moved = record.update(input());
    const auto d = shoal::decideOwnership(input());
    if (irrelevant) {
      CHECK_FALSE(moved);
    }
    serving += d.quorum && settled ? 1 : 0;
    with_timed += d.timed.empty() ? 0 : 1;
    if (!moved && now < previous.next_change) {
      ++unchanged;
      CHECK(sameDecision(d, previous));
    } else {
      ++changed;
    }
    previous = d;
    // The daemon keeps the timed part of what it decided: a release keeps its instant.
    if (d.timed != timed) {
      timed = d.timed;
      CHECK(record.update(input()));
      previous = shoal::decideOwnership(input());
    }
  }
  // Both outcomes occur often, and the node often serves, so the walk tests something.
  CHECK(unchanged > 1000);
  CHECK(changed > 1000);
  CHECK(serving > 1000);
  CHECK(with_timed > 100);  // releases and takes at an instant are part of the walk
}

TEST_CASE("recorded ownership inputs notice time passing the quorum window") {
  Fixture f(0);
  const shoal::TimePoint now{std::chrono::seconds(10)};
  for (auto& m : f.view.members) {
    m.links.assign(1, shoal::LinkView{true, true, now});
  }
  shoal::OwnershipInputs record;
  shoal::OwnershipInput in{&f.def, &f.view, &f.held, true};
  in.now = now;
  in.quorum_window = std::chrono::milliseconds(150);
  CHECK(record.update(in));
  in.now = now + std::chrono::milliseconds(100);
  CHECK_FALSE(record.update(in));  // still heard within the window
  in.now = now + std::chrono::milliseconds(200);
  CHECK(record.update(in));  // nobody heard lately: quorum may be gone
  CHECK_FALSE(shoal::decideOwnership(in).quorum);
}

namespace {

// A fixture with timed hand-offs on, at `now`.
struct Timed : Fixture {
  shoal::TimedHold timed;
  shoal::TimePoint now{std::chrono::seconds(50)};
  explicit Timed(uint32_t self, std::size_t nodes = 3) : Fixture(self, nodes) {}
  shoal::OwnershipDecision decideTimed(shoal::Duration lead = shoal::kHandOffLead) const {
    shoal::OwnershipInput in{&def, &view, &held, true};
    in.now = now;
    in.timed = &timed;
    in.handoff_lead = lead;
    return shoal::decideOwnership(in);
  }
  // Peer `node` claims bucket `b` and hands it over, stopping `in` from now.
  shoal::MemberView& releasingPeer(uint32_t node, uint32_t b, shoal::Duration in) {
    auto& peer = view.members[node];
    peer.claims[0].set(b);
    peer.releasing = {BucketSet(16)};
    peer.releasing[0].set(b);
    peer.release_at = now + in;
    return peer;
  }
  // Takes the decision as the daemon does: what to hold, and the timed part.
  void adopt(const shoal::OwnershipDecision& d) {
    held = d.hold;
    timed = d.timed;
  }
};

}  // namespace

TEST_CASE("timed hand-off: a planned release is answered until now + lead, then let go") {
  Timed f(0);
  const auto mine = f.targetOf(0);
  for (uint32_t b : mine)
    f.held[0].set(b);
  f.view.members[0].drain.mode = shoal::DrainMode::Drained;  // drained: every bucket moves
  auto d = f.decideTimed();
  CHECK(d.hold[0].empty());
  CHECK(d.timed.releasing[0].list() == mine);
  CHECK(d.timed.release_at == f.now + shoal::kHandOffLead);
  CHECK(d.next_change == d.timed.release_at);
  f.adopt(d);
  // Undrained again before the instant: the announcement stands, nothing is taken back yet.
  f.view.members[0].drain.mode = shoal::DrainMode::None;
  f.now += std::chrono::milliseconds(4);
  d = f.decideTimed();
  CHECK(d.timed.releasing[0].list() == mine);
  CHECK(d.hold[0].empty());
  f.adopt(d);
  // The instant has come: gone; back through the ordinary rule (here: nobody claims them).
  f.now = f.timed.release_at;
  d = f.decideTimed();
  CHECK(d.timed.releasing[0].empty());
  CHECK(d.timed.release_at == shoal::TimePoint{});
  CHECK(d.hold[0].list() == mine);
}

TEST_CASE("timed hand-off: without lead, without quorum or to nobody, a bucket is let go at once") {
  Timed f(0);
  const auto theirs = f.targetOf(1);
  f.held[0].set(theirs[0]);
  auto untimed = f.decideTimed(shoal::Duration::zero());
  CHECK_FALSE(untimed.hold[0].has(theirs[0]));
  CHECK(untimed.timed.releasing[0].empty());
  CHECK(untimed.next_change == shoal::TimePoint::max());
  // Quorum lost: nothing, not even a release already running.
  f.adopt(f.decideTimed());
  REQUIRE(f.timed.releasing[0].has(theirs[0]));
  f.view.members[1].state = MemberState::Dead;
  f.view.members[2].state = MemberState::Dead;
  auto lost = f.decideTimed();
  CHECK(lost.hold[0].empty());
  CHECK(lost.timed.empty());
}

TEST_CASE("timed hand-off: a release decided while one runs joins its instant") {
  Timed f(0, 4);
  const auto mine = f.targetOf(0);
  REQUIRE(mine.size() >= 2);
  for (uint32_t b : mine)
    f.held[0].set(b);
  // First one bucket moves away (it is held but no longer this node's target).
  f.held[0].set(f.targetOf(1)[0]);
  f.adopt(f.decideTimed());
  const shoal::TimePoint first = f.timed.release_at;
  REQUIRE(f.timed.releasing[0].count() == 1);
  // 3 ms later this node is drained: the rest joins the first release's instant.
  f.now += std::chrono::milliseconds(3);
  f.view.members[0].drain.mode = shoal::DrainMode::Drained;
  f.adopt(f.decideTimed());
  CHECK(f.timed.release_at == first);
  CHECK(f.timed.releasing[0].count() == mine.size() + 1);
  CHECK(f.held[0].empty());
}

TEST_CASE(
    "timed hand-off: the owner takes a bucket every claimer hands over from the latest "
    "stop on, and only then") {
  Timed f(0);
  const auto mine = f.targetOf(0);
  const uint32_t b = mine[0];
  auto& peer = f.releasingPeer(1, b, std::chrono::milliseconds(7));
  auto d = f.decideTimed();
  CHECK_FALSE(d.hold[0].has(b));
  REQUIRE(d.timed.taking[0].count(b) == 1);
  CHECK(d.timed.taking[0].at(b) == peer.release_at + shoal::kTakeMargin);
  CHECK(d.next_change == peer.release_at + shoal::kTakeMargin);
  f.adopt(d);
  // A second claimer that does not hand it over (views differ): the scheduled take stands,
  // nothing new is scheduled for other buckets it claims.
  f.now += std::chrono::milliseconds(2);
  d = f.decideTimed();
  CHECK(d.timed.taking[0].count(b) == 1);
  f.adopt(d);
  // The instant: held like any other bucket.
  f.now = peer.release_at + shoal::kTakeMargin;
  d = f.decideTimed();
  CHECK(d.hold[0].has(b));
  CHECK(d.timed.taking[0].empty());
}

TEST_CASE(
    "timed hand-off: an earlier bound of the same stop moves a scheduled take earlier; "
    "a later one, or the claim's end, does not make it later") {
  Timed f(0);
  const uint32_t b = f.targetOf(0)[0];
  auto& peer = f.releasingPeer(1, b, std::chrono::milliseconds(9));
  f.adopt(f.decideTimed());
  REQUIRE(f.timed.taking[0].at(b) == peer.release_at + shoal::kTakeMargin);
  peer.release_at -= std::chrono::milliseconds(2);  // a copy that travelled faster
  f.adopt(f.decideTimed());
  CHECK(f.timed.taking[0].at(b) == peer.release_at + shoal::kTakeMargin);
  const shoal::TimePoint best = f.timed.taking[0].at(b);
  peer.release_at += std::chrono::milliseconds(5);
  f.adopt(f.decideTimed());
  CHECK(f.timed.taking[0].at(b) == best);
  // The releaser no longer claims it (it stopped): taken at once.
  peer.claims[0].set(b, false);
  peer.releasing[0].set(b, false);
  const auto d = f.decideTimed();
  CHECK(d.hold[0].has(b));
  CHECK(d.timed.taking[0].empty());
}

TEST_CASE("timed hand-off: a plain claim, or one claimer of two not handing over, means wait") {
  Timed f(0);
  const uint32_t b = f.targetOf(0)[0];
  f.view.members[1].claims[0].set(b);
  f.view.members[2].claims[0].set(b);
  f.view.members[1].releasing = {BucketSet(16)};
  f.view.members[1].releasing[0].set(b);
  f.view.members[1].release_at = f.now + std::chrono::milliseconds(5);
  auto d = f.decideTimed();
  CHECK(d.timed.taking[0].empty());
  CHECK_FALSE(d.hold[0].has(b));
  CHECK(d.waiting >= 1);
  // Without a lead (a dataplane that cannot switch on time): a releasing claim is a claim.
  f.view.members[2].claims[0].set(b, false);
  d = f.decideTimed(shoal::Duration::zero());
  CHECK(d.timed.taking[0].empty());
  CHECK_FALSE(d.hold[0].has(b));
  // With it: scheduled; a stop already past: taken at once.
  CHECK(f.decideTimed().timed.taking[0].count(b) == 1);
  f.now += std::chrono::milliseconds(6);
  d = f.decideTimed();
  CHECK(d.hold[0].has(b));
  CHECK(d.timed.taking[0].empty());
}

TEST_CASE("timed hand-off: a scheduled take is cancelled when the bucket stops being ours") {
  Timed f(0);
  const uint32_t b = f.targetOf(0)[0];
  auto& peer = f.releasingPeer(1, b, std::chrono::milliseconds(5));
  f.timed.taking = {{{b, peer.release_at + shoal::kTakeMargin}}};
  f.timed.releasing = {BucketSet(16)};
  CHECK(f.decideTimed().timed.taking[0].count(b) == 1);
  f.view.members[0].drain.mode = shoal::DrainMode::Drained;
  auto d = f.decideTimed();
  CHECK(d.timed.taking[0].empty());
  CHECK(d.timed.releasing[0].empty());  // never answered: nothing to hand over
  CHECK_FALSE(d.hold[0].has(b));
}

TEST_CASE(
    "timed hand-off: a leaving node hands every bucket over; its peers take them at its "
    "stop, never before, whatever the announcement's delay") {
  // Node 2 leaves. Its announcement reaches node 0 after `delay`; node 0 counts the time left
  // from the arrival (as the membership core does), decides, and the kernel's windows are
  // compared: node 0 never answers a bucket before node 2 stops, and starts within the
  // announcement's delay (plus the margin) of it when the delay is below the lead.
  std::mt19937 rng(77);
  for (int run = 0; run < 200; ++run) {
    Timed leaver(2);
    Timed taker(0);
    const auto owned_by_2 = leaver.targetOf(2);
    for (uint32_t b : owned_by_2)
      leaver.held[0].set(b);
    for (auto* v : {&leaver.view, &taker.view})
      v->members[2].leaving = true;
    for (uint32_t b : owned_by_2)
      taker.view.members[2].claims[0].set(b);
    const auto d = leaver.decideTimed();
    REQUIRE(d.hold[0].empty());
    REQUIRE(d.timed.releasing[0].list() == owned_by_2);
    const shoal::TimePoint stop = d.timed.release_at;
    // Sealed at leaver.now; announced time left rounded up to microseconds.
    const auto left = std::chrono::ceil<std::chrono::microseconds>(stop - leaver.now);
    const auto delay = std::chrono::microseconds(rng() % 15000);
    const shoal::TimePoint arrival = leaver.now + delay;
    auto& seen = taker.view.members[2];
    seen.releasing = d.timed.releasing;
    seen.release_at = arrival + left;
    taker.now = arrival + std::chrono::microseconds(rng() % 500);  // read a little later
    const auto t = taker.decideTimed();
    const auto mine_now = taker.targetOf(0);
    for (uint32_t b : owned_by_2) {
      if (std::find(mine_now.begin(), mine_now.end(), b) == mine_now.end())
        continue;
      const shoal::TimePoint starts = t.hold[0].has(b) ? taker.now : t.timed.taking[0].at(b);
      CHECK(starts >= stop);  // never answered twice
      if (taker.now < stop) {
        CHECK(starts - stop <= delay + shoal::kTakeMargin + std::chrono::microseconds(1));
      }
    }
  }
}

TEST_CASE("timed hand-off: a release decided when the running one is nearly over waits for the "
          "next instant, held meanwhile") {
  Timed f(0, 4);
  const auto theirs = f.targetOf(1);
  REQUIRE(theirs.size() >= 2);
  f.held[0].set(theirs[0]);
  f.adopt(f.decideTimed());
  const shoal::TimePoint first = f.timed.release_at;
  // 20 of the 30 ms gone: another bucket stops being ours.
  f.now += std::chrono::milliseconds(20);
  f.held[0].set(theirs[1]);
  auto d = f.decideTimed();
  CHECK(d.hold[0].has(theirs[1]));  // still answered, not announced yet
  CHECK_FALSE(d.timed.releasing[0].has(theirs[1]));
  CHECK(d.timed.releasing[0].has(theirs[0]));
  CHECK(d.next_change == first);
  f.adopt(d);
  // The first instant: the second bucket gets an instant of its own, a full lead away.
  f.now = first;
  d = f.decideTimed();
  CHECK(d.timed.releasing[0].list() == std::vector<uint32_t>{theirs[1]});
  CHECK(d.timed.release_at == first + shoal::kHandOffLead);
  CHECK_FALSE(d.hold[0].has(theirs[1]));
}

TEST_CASE("timed hand-off: of two nodes that both scheduled a take, the higher-numbered one "
          "gives way to a plain claim of the other") {
  Timed f(1);
  const uint32_t b = f.targetOf(1)[0];
  f.timed.taking = {{{b, f.now + std::chrono::milliseconds(5)}}};
  f.timed.releasing = {BucketSet(16)};
  f.view.members[2].claims[0].set(b);  // node 2 claims it too: 1 keeps its take
  auto& releaser = f.releasingPeer(2, b, std::chrono::milliseconds(4));
  releaser.releasing[0].set(b, false);
  CHECK(f.decideTimed().timed.taking[0].count(b) == 1);
  f.view.members[0].claims[0].set(b);  // node 0 claims it: 1 gives way
  const auto d = f.decideTimed();
  CHECK(d.timed.taking[0].empty());
  CHECK_FALSE(d.hold[0].has(b));
}

TEST_CASE("timed hand-off: the take margin delays the taker's start past the releaser's stop") {
  Timed f(0);
  const uint32_t b = f.targetOf(0)[0];
  auto& peer = f.releasingPeer(1, b, std::chrono::milliseconds(9));
  shoal::OwnershipInput in{&f.def, &f.view, &f.held, true};
  in.now = f.now;
  in.timed = &f.timed;
  in.handoff_lead = shoal::kHandOffLead;
  in.take_margin = std::chrono::microseconds(250);
  const auto d = shoal::decideOwnership(in);
  CHECK(d.timed.taking[0].at(b) ==
        peer.release_at + shoal::kTakeMargin + std::chrono::microseconds(250));
}
