#include "dataplane/lease.h"

#include <algorithm>

namespace shoal::dataplane {

Millis leaseLength(const TimingProfile& timing) {
  return std::max(Millis{1}, timing.suspect_after - kKernelTimerSlack);
}

Millis renewSpacing(const TimingProfile& timing) {
  return std::max(Millis{1}, timing.heartbeat_interval / 2);
}

Lease::Lease(Millis length, Millis spacing)
    : length_(std::max(Millis{1}, length)), spacing_(std::max(Millis{1}, spacing)) {}

bool Lease::renewalDue(SteadyTime now) const {
  return !started_ || now >= last_renewal_ + spacing_;
}

bool Lease::lapsedBy(SteadyTime now) const {
  return started_ && now >= expiry_;
}

Millis Lease::remaining(SteadyTime now) const {
  if (!started_)
    return length_;
  if (now >= expiry_)
    return Millis{0};
  return std::chrono::floor<Millis>(expiry_ - now);
}

void Lease::renewed(SteadyTime now) {
  started_ = true;
  last_renewal_ = now;
  expiry_ = now + length_;
}

namespace {

bool ownsNothing(const DesiredState& state) {
  for (const ServiceAssignment& a : state.services) {
    if (!a.owned.empty() || !a.reset_orphans.empty() || !a.timed.empty())
      return false;
  }
  return true;
}

}  // namespace

LeaseKeeper::LeaseKeeper(Dataplane& dataplane, Millis length, Millis spacing)
    : dataplane_(dataplane), lease_(length, spacing) {}

Status LeaseKeeper::apply(SteadyTime now, DesiredState desired) {
  if (!enforced()) {
    desired.lease.reset();
    Status st = dataplane_.apply(desired);
    if (st)
      last_ = std::move(desired);
    return st;
  }
  const Millis left = lease_.remaining(now);
  if (left < Millis{1}) {
    // Run out: writing now would answer buckets again on a view that is as old as the stall.
    last_ = std::move(desired);
    return Ok{};
  }
  desired.lease = left;
  Status st = dataplane_.apply(desired);
  if (!st)
    return st;
  if (!lease_.started())
    lease_.renewed(now);
  last_ = std::move(desired);
  return Ok{};
}

LeaseKeeper::Renewal LeaseKeeper::beforeSend(SteadyTime now) {
  if (!enforced())
    return {Outcome::NotEnforced, {}};
  if (!last_ || !lease_.renewalDue(now))
    return {Outcome::NotDue, {}};
  if (lease_.lapsedBy(now))
    return recoverLapse(now);
  // Renewed by the heartbeats only with room to spare: they renew a lease that is still
  // running, never one that ran out while they were on their way (see afterSend()).
  if (dataplane_.renewsOnSend() && lease_.remaining(now) > kKernelTimerSlack + Millis{1}) {
    pending_ = now;
    return {Outcome::BySend, {}};
  }
  return renewNow(now);
}

LeaseKeeper::Renewal LeaseKeeper::recoverLapse(SteadyTime now) {
  // Run out before it was ever renewed while nothing was owned: the start-up (rules in
  // place, nothing answered yet) took longer than the lease. Nothing was answered, so
  // nothing was lost and no view is stale: a plain renewal, not a lapse.
  if (renewals_ == 0 && ownsNothing(*last_))
    return renewNow(now);
  ++lapses_;
  const Millis silent = std::chrono::floor<Millis>(now - (lease_.expiry() - lease_.length()));
  DesiredState none = *last_;
  for (ServiceAssignment& a : none.services) {
    a.owned.clear();
    a.reset_orphans.clear();
    a.timed.clear();
  }
  none.lease = lease_.length();
  Status st = dataplane_.apply(none);
  // The apply emptied the bucket sets while nothing was answered; only now does the
  // renewal bring the lease element back.
  if (st)
    st = dataplane_.renew(lease_.length());
  if (!st)
    return {Outcome::Lapsed, st.error().message, silent};
  last_ = std::move(none);
  lease_.renewed(now);
  ++renewals_;
  return {Outcome::Lapsed, {}, silent};
}

LeaseKeeper::Renewal LeaseKeeper::renewNow(SteadyTime now) {
  Status st = dataplane_.renew(lease_.length());
  if (!st)
    return {Outcome::Failed, st.error().message};
  lease_.renewed(now);
  ++renewals_;
  return {Outcome::Renewed, {}};
}

LeaseKeeper::Renewal LeaseKeeper::afterSend(SteadyTime now, bool sent_any) {
  if (!pending_)
    return {Outcome::NotDue, {}};
  const SteadyTime before = *pending_;
  pending_.reset();
  if (lease_.lapsedBy(now)) {
    // Stalled between the check and the sends for longer than the lease had left: the
    // element ran out first, and the heartbeats (which only renew a running lease) did not
    // bring it back. Handle the lapse now rather than at the next send.
    return recoverLapse(now);
  }
  if (sent_any) {
    // The kernel renewed as each heartbeat left, after `before`: counting from `before` keeps
    // the daemon's expiry no later than the kernel's.
    lease_.renewed(before);
    dataplane_.renewedBySend(lease_.remaining(now));
    ++renewals_;
    return {Outcome::Renewed, {}};
  }
  return renewNow(now);
}

}  // namespace shoal::dataplane
