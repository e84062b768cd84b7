// The dataplane lease: its length against the membership timing, its arithmetic, and the
// renewal logic (LeaseKeeper) driven with simulated time against the recording fake.

#include <doctest/doctest.h>

#include "core/timing_profile.h"
#include "dataplane/fake_dataplane.h"
#include "dataplane/lease.h"

using namespace shoal;
using namespace shoal::dataplane;
using std::chrono::milliseconds;

namespace {

const SteadyTime t0 = SteadyTime{} + std::chrono::hours(1);

DesiredState stateOwning(std::vector<uint32_t> owned, std::vector<uint32_t> reset = {}) {
  Service s;
  s.name = "web";
  s.vip = *IpAddress::parse("10.0.0.100");
  s.interface = "eth0";
  s.cluster_mac = *MacAddress::parse("01:00:5e:00:00:64");
  s.buckets = 16;
  DesiredState d;
  d.services.push_back(ServiceAssignment{s, std::move(owned), std::move(reset), {}, {}, {}});
  return d;
}

// The earliest a peer can declare a silent node dead, after the last packet it received:
// suspect_after + the minimum suspicion timeout, both times the peer's Lifeguard multiplier
// (membership/membership.h). `min_suspicion_divisor` 3 is the shortest suspicion timeout
// planned (suspicion_timeout / 3); a huge divisor approximates a zero timeout.
milliseconds earliestDeath(const TimingProfile& t, uint32_t multiplier,
                           long min_suspicion_divisor) {
  return (t.suspect_after + t.suspicion_timeout / min_suspicion_divisor) * multiplier;
}

}  // namespace

TEST_CASE("the lease runs out before any peer can declare the node dead, for every profile") {
  for (const std::string& name : timingPresetNames()) {
    const TimingProfile t = *timingPreset(name);
    const milliseconds lease = leaseLength(t);
    // Renewed right before the last send at T: answered until T + lease, which must come
    // before T + the earliest death, with room for the kernel's timer slack.
    for (uint32_t multiplier = 1; multiplier <= 9; ++multiplier) {
      for (long divisor : {1L, 3L, 1000000L}) {
        CHECK(lease + kKernelTimerSlack <= earliestDeath(t, multiplier, divisor));
      }
    }
    // Not shorter than a renewal interval plus some slack: a renewal on time never lapses.
    CHECK(lease > t.heartbeat_interval);
    CHECK(renewSpacing(t) <= t.heartbeat_interval);
  }
}

TEST_CASE("the lease is the base suspect_after, whatever this node's own local health") {
  // leaseLength depends only on the timing profile: a slow node (multiplier 9) does not get a
  // longer lease, because its multiplier stretches only the timeouts it applies to others.
  TimingProfile t = *timingPreset("default");
  CHECK(leaseLength(t) == t.suspect_after - kKernelTimerSlack);
  t.suspect_after = milliseconds{2};  // below the slack: still a usable lease
  CHECK(leaseLength(t) == milliseconds{1});
  t.heartbeat_interval = milliseconds{1};
  CHECK(renewSpacing(t) == milliseconds{1});
}

TEST_CASE("lease arithmetic: expiry, remaining time, due renewals and lapses") {
  Lease lease(milliseconds{146}, milliseconds{25});
  CHECK_FALSE(lease.started());
  CHECK(lease.renewalDue(t0));
  CHECK_FALSE(lease.lapsedBy(t0 + std::chrono::hours(1)));  // no lease yet: nothing runs out
  CHECK(lease.remaining(t0) == milliseconds{146});

  lease.renewed(t0);
  CHECK(lease.expiry() == t0 + milliseconds{146});
  CHECK_FALSE(lease.renewalDue(t0 + milliseconds{24}));
  CHECK(lease.renewalDue(t0 + milliseconds{25}));
  CHECK(lease.remaining(t0 + std::chrono::microseconds{45500}) == milliseconds{100});  // floor
  CHECK_FALSE(lease.lapsedBy(t0 + milliseconds{145}));
  CHECK(lease.lapsedBy(t0 + milliseconds{146}));
  CHECK(lease.remaining(t0 + milliseconds{146}) == milliseconds{0});
  CHECK(lease.remaining(t0 + milliseconds{500}) == milliseconds{0});

  Lease tiny(milliseconds{0}, milliseconds{0});  // raised to 1 ms
  CHECK(tiny.length() == milliseconds{1});
  CHECK(tiny.spacing() == milliseconds{1});
}

TEST_CASE("the first apply starts the lease with its full length") {
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1, 2})).ok());
  REQUIRE(dp.applied().size() == 1);
  CHECK((dp.applied()[0].lease == milliseconds{146}));
  CHECK(keeper.lease().started());
  CHECK(keeper.lease().expiry() == t0 + milliseconds{146});
}

TEST_CASE("renewals happen before sends at most once per spacing, each for the full length") {
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  // Nothing applied yet: nothing to renew.
  CHECK((keeper.beforeSend(t0).outcome == LeaseKeeper::Outcome::NotDue));
  REQUIRE(keeper.apply(t0, stateOwning({1, 2})).ok());
  CHECK((keeper.beforeSend(t0 + milliseconds{10}).outcome == LeaseKeeper::Outcome::NotDue));
  // Heartbeat rounds every 50 ms: each renews.
  for (int round = 1; round <= 20; ++round) {
    const SteadyTime now = t0 + milliseconds{50 * round};
    CHECK((keeper.beforeSend(now).outcome == LeaseKeeper::Outcome::Renewed));
    CHECK(keeper.lease().expiry() == now + milliseconds{146});
    // An ack sent 5 ms after the round does not renew again.
    CHECK((keeper.beforeSend(now + milliseconds{5}).outcome == LeaseKeeper::Outcome::NotDue));
  }
  CHECK(dp.renewals().size() == 20);
  for (auto l : dp.renewals())
    CHECK(l == milliseconds{146});
  CHECK(keeper.renewals() == 20);
  CHECK(keeper.lapses() == 0);
  CHECK(dp.ownedBuckets("web") == std::vector<uint32_t>{1, 2});
}

TEST_CASE("an apply between renewals never extends the lease") {
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1})).ok());
  REQUIRE((keeper.beforeSend(t0 + milliseconds{50}).outcome == LeaseKeeper::Outcome::Renewed));
  // A bucket gained 30 ms after the renewal expires with the others, 116 ms later.
  REQUIRE(keeper.apply(t0 + milliseconds{80}, stateOwning({1, 5})).ok());
  CHECK((dp.applied().back().lease == milliseconds{116}));
  CHECK(keeper.lease().expiry() == t0 + milliseconds{196});
}

TEST_CASE("a late renewal is a lapse: counted, nothing owned comes back, the lease restarts") {
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1, 2}, {2})).ok());
  REQUIRE((keeper.beforeSend(t0 + milliseconds{50}).outcome == LeaseKeeper::Outcome::Renewed));
  // Stalled for a second (SIGSTOP): the kernel stopped answering at t0 + 196 ms.
  const SteadyTime resumed = t0 + milliseconds{1050};
  // An apply that comes before the first send writes nothing: the view is stale.
  const std::size_t applies = dp.applied().size();
  REQUIRE(keeper.apply(resumed, stateOwning({1, 2, 3})).ok());
  CHECK(dp.applied().size() == applies);
  const auto r = keeper.beforeSend(resumed);
  CHECK((r.outcome == LeaseKeeper::Outcome::Lapsed));
  CHECK(r.error.empty());
  CHECK(r.silent == milliseconds{1000});
  CHECK(keeper.lapses() == 1);
  // The state in force owns nothing and has a fresh lease (established connections again).
  CHECK(dp.ownedBuckets("web").empty());
  REQUIRE(dp.current());
  CHECK(dp.current()->services[0].reset_orphans.empty());
  CHECK((dp.current()->lease == milliseconds{146}));
  CHECK(keeper.lease().expiry() == resumed + milliseconds{146});
  // From then on renewals are on time again and the buckets come back only by an apply.
  CHECK((keeper.beforeSend(resumed + milliseconds{50}).outcome == LeaseKeeper::Outcome::Renewed));
  CHECK(dp.ownedBuckets("web").empty());
  REQUIRE(keeper.apply(resumed + milliseconds{60}, stateOwning({1, 2})).ok());
  CHECK(dp.ownedBuckets("web") == std::vector<uint32_t>{1, 2});
  CHECK(keeper.lapses() == 1);
}

TEST_CASE("a slow start that owned nothing is renewed, not counted as a lapse") {
  for (bool by_send : {false, true}) {
    CAPTURE(by_send);
    FakeDataplane dp;
    dp.renewOnSend(by_send);
    LeaseKeeper keeper(dp, milliseconds{14}, milliseconds{2});
    // The rules go in with nothing owned; the first send comes 71 ms later.
    REQUIRE(keeper.apply(t0, stateOwning({})).ok());
    const SteadyTime first_send = t0 + milliseconds{71};
    const auto r = keeper.beforeSend(first_send);
    CHECK((r.outcome == LeaseKeeper::Outcome::Renewed));
    CHECK(keeper.lapses() == 0);
    CHECK(dp.renewals().size() == 1);  // by the dataplane: the element had run out
    CHECK(keeper.lease().expiry() == first_send + milliseconds{14});
    // Once renewed, running out again is a lapse, even with nothing owned.
    CHECK((keeper.beforeSend(first_send + milliseconds{100}).outcome ==
           LeaseKeeper::Outcome::Lapsed));
    CHECK(keeper.lapses() == 1);
  }
  // Owning something before the first renewal, running out is a lapse as before.
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{14}, milliseconds{2});
  REQUIRE(keeper.apply(t0, stateOwning({3})).ok());
  CHECK((keeper.beforeSend(t0 + milliseconds{71}).outcome == LeaseKeeper::Outcome::Lapsed));
  CHECK(keeper.lapses() == 1);
  CHECK(dp.ownedBuckets("web").empty());
}

TEST_CASE("a renewal just before the expiry is on time; at the expiry it is a lapse") {
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1})).ok());
  CHECK((keeper.beforeSend(t0 + milliseconds{145}).outcome == LeaseKeeper::Outcome::Renewed));
  CHECK((keeper.beforeSend(t0 + milliseconds{145 + 146}).outcome == LeaseKeeper::Outcome::Lapsed));
  CHECK(keeper.lapses() == 1);
}

TEST_CASE("a refused renewal is reported, keeps the old expiry and is retried at the next send") {
  FakeDataplane dp;
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1})).ok());
  dp.failNextRenewal("nftables rejected the change");
  const auto r = keeper.beforeSend(t0 + milliseconds{50});
  CHECK((r.outcome == LeaseKeeper::Outcome::Failed));
  CHECK(r.error == "nftables rejected the change");
  CHECK(keeper.lease().expiry() == t0 + milliseconds{146});
  CHECK((keeper.beforeSend(t0 + milliseconds{51}).outcome == LeaseKeeper::Outcome::Renewed));
  CHECK(dp.renewals().size() == 2);
}

TEST_CASE("a backend that cannot expire state gets no lease and no renewals") {
  FakeDataplane dp;
  dp.enforceLease(false);
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1})).ok());
  CHECK_FALSE(dp.applied()[0].lease.has_value());
  CHECK(
      (keeper.beforeSend(t0 + std::chrono::hours(1)).outcome == LeaseKeeper::Outcome::NotEnforced));
  CHECK(dp.renewals().empty());
  CHECK(keeper.lapses() == 0);
  // Applies are never held back either: there is no lease to run out.
  REQUIRE(keeper.apply(t0 + std::chrono::hours(2), stateOwning({1, 2})).ok());
  CHECK(dp.ownedBuckets("web") == std::vector<uint32_t>{1, 2});
}

TEST_CASE("renewed by the heartbeats: no kernel call when they leave, the usual one when none did") {
  FakeDataplane dp;
  dp.renewOnSend(true);
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  CHECK((keeper.afterSend(t0, true).outcome == LeaseKeeper::Outcome::NotDue));  // nothing pending
  REQUIRE(keeper.apply(t0, stateOwning({1, 2})).ok());
  for (int round = 1; round <= 10; ++round) {
    const SteadyTime now = t0 + milliseconds{50 * round};
    CHECK((keeper.beforeSend(now).outcome == LeaseKeeper::Outcome::BySend));
    // The heartbeats left 1 ms later: the lease counts from before them, never later.
    CHECK((keeper.afterSend(now + milliseconds{1}, true).outcome == LeaseKeeper::Outcome::Renewed));
    CHECK(keeper.lease().expiry() == now + milliseconds{146});
    CHECK((keeper.beforeSend(now + milliseconds{5}).outcome == LeaseKeeper::Outcome::NotDue));
    CHECK((keeper.afterSend(now + milliseconds{5}, true).outcome == LeaseKeeper::Outcome::NotDue));
  }
  CHECK(dp.renewals().empty());
  REQUIRE(dp.sendRenewals().size() == 10);
  CHECK(dp.sendRenewals().back() == milliseconds{145});  // what is left 1 ms after the round
  CHECK(keeper.renewals() == 10);
  // A round none of whose heartbeats left (every link down): renewed by the dataplane instead.
  const SteadyTime lonely = t0 + milliseconds{550};
  CHECK((keeper.beforeSend(lonely).outcome == LeaseKeeper::Outcome::BySend));
  CHECK((keeper.afterSend(lonely + milliseconds{1}, false).outcome == LeaseKeeper::Outcome::Renewed));
  REQUIRE(dp.renewals().size() == 1);
  CHECK(dp.renewals()[0] == milliseconds{146});
  CHECK(keeper.lease().expiry() == lonely + milliseconds{147});
  // That fallback can fail like any renewal, keeping the old expiry.
  dp.failNextRenewal("nftables rejected the change");
  CHECK((keeper.beforeSend(lonely + milliseconds{50}).outcome == LeaseKeeper::Outcome::BySend));
  const auto failed = keeper.afterSend(lonely + milliseconds{51}, false);
  CHECK((failed.outcome == LeaseKeeper::Outcome::Failed));
  CHECK(keeper.lease().expiry() == lonely + milliseconds{147});
}

TEST_CASE("renewed by the heartbeats: a lapse is still found, and handled, before anything is sent") {
  FakeDataplane dp;
  dp.renewOnSend(true);
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1, 2})).ok());
  REQUIRE((keeper.beforeSend(t0 + milliseconds{50}).outcome == LeaseKeeper::Outcome::BySend));
  REQUIRE((keeper.afterSend(t0 + milliseconds{50}, true).outcome == LeaseKeeper::Outcome::Renewed));
  // Stalled for a second: the first heartbeat after it would bring the element back, so the
  // owned buckets must be gone before it leaves.
  const SteadyTime resumed = t0 + milliseconds{1050};
  const auto r = keeper.beforeSend(resumed);
  CHECK((r.outcome == LeaseKeeper::Outcome::Lapsed));
  CHECK(dp.ownedBuckets("web").empty());
  CHECK(keeper.lapses() == 1);
  CHECK((keeper.afterSend(resumed, true).outcome == LeaseKeeper::Outcome::NotDue));
}

TEST_CASE("renewed by the heartbeats: a stall between the check and the sends is a lapse") {
  FakeDataplane dp;
  dp.renewOnSend(true);
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1, 2})).ok());
  REQUIRE((keeper.beforeSend(t0 + milliseconds{50}).outcome == LeaseKeeper::Outcome::BySend));
  // Stopped right before the sends, for longer than the 146 ms the lease had: the element ran
  // out before the heartbeats left (they renew only a running lease).
  const auto r = keeper.afterSend(t0 + milliseconds{400}, true);
  CHECK((r.outcome == LeaseKeeper::Outcome::Lapsed));
  CHECK(keeper.lapses() == 1);
  CHECK(dp.ownedBuckets("web").empty());
  CHECK(dp.sendRenewals().empty());
  REQUIRE(dp.renewals().size() == 1);  // the lease back, by the dataplane, owning nothing
  CHECK(keeper.lease().expiry() == t0 + milliseconds{546});
}

TEST_CASE("renewed by the heartbeats only with room to spare: a nearly spent lease by the dataplane") {
  FakeDataplane dp;
  dp.renewOnSend(true);
  LeaseKeeper keeper(dp, milliseconds{146}, milliseconds{25});
  REQUIRE(keeper.apply(t0, stateOwning({1})).ok());
  // 5 ms left (one jiffy of kernel slack and 1 ms): the heartbeats might arrive too late.
  CHECK((keeper.beforeSend(t0 + milliseconds{141}).outcome == LeaseKeeper::Outcome::Renewed));
  CHECK(dp.renewals().size() == 1);
  CHECK((keeper.beforeSend(t0 + milliseconds{191}).outcome == LeaseKeeper::Outcome::BySend));
}
