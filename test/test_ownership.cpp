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

TEST_CASE("ownership of a drained node is empty and its buckets go to the others") {
  Fixture f(0);
  f.view.members[0].drain.mode = shoal::DrainMode::Drained;
  const auto d = f.decide();
  CHECK(d.hold[0].empty());
  CHECK((d.serving_mask & 1u) == 0);
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
}

namespace {

bool sameDecision(const shoal::OwnershipDecision& a, const shoal::OwnershipDecision& b) {
  return a.quorum == b.quorum && a.serving_mask == b.serving_mask && a.targets == b.targets &&
         a.hold == b.hold && a.waiting == b.waiting;
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
  auto input = [&] {
    shoal::OwnershipInput in{&f.def, &f.view, &f.held, settled};
    in.now = now;
    in.quorum_window = std::chrono::milliseconds(150);
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
  for (int step = 0; step < 5000; ++step) {
    auto& m = f.view.members[rng() % f.view.members.size()];
    bool irrelevant = false;
    switch (rng() % 12) {
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
    if (!moved) {
      ++unchanged;
      CHECK(sameDecision(d, previous));
    } else {
      ++changed;
    }
    previous = d;
  }
  // Both outcomes occur often, and the node often serves, so the walk tests something.
  CHECK(unchanged > 1000);
  CHECK(changed > 1000);
  CHECK(serving > 1000);
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
