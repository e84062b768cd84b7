#pragma once
// A recording Dataplane for unit tests of the layers above (the daemon, the CLI): it keeps
// every call, can be told to fail, and reports drift it was told to report. No kernel.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"

namespace shoal::dataplane {

/// The recording fake. Not thread-safe, like every Dataplane.
class FakeDataplane final : public Dataplane {
 public:
  const char* name() const override { return "fake"; }
  /// Records `desired`; fails with the configured message instead when told to (the
  /// failed state is recorded in attempts() but not in applied()).
  Status apply(const DesiredState& desired) override;
  /// Counts the call and returns the drift set with reportDriftOnce() (then none again),
  /// or the configured failure.
  Result<DriftReport> checkAndRepair() override;
  /// Counts the call and forgets the current state; fails when told to.
  Status teardown() override;
  /// As set with enforceLease() (true unless told otherwise).
  bool leaseEnforced() const override { return lease_enforced_; }
  /// Records the renewal (the state in force gets `lease`); fails when told to.
  Status renew(Millis lease) override;
  /// As set with renewOnSend() (false unless told otherwise).
  bool renewsOnSend() const override { return renews_on_send_; }
  /// As set with timeBuckets() (false unless told otherwise).
  bool timedBuckets() const override { return timed_buckets_; }
  /// Records the renewal by heartbeats in sendRenewals().
  void renewedBySend(Millis lease) override { send_renewals_.push_back(lease); }

  /// Every state passed to apply(), successful or not, in call order.
  const std::vector<DesiredState>& attempts() const { return attempts_; }
  /// Every state that apply() accepted, in call order.
  const std::vector<DesiredState>& applied() const { return applied_; }
  /// The state in force: the last accepted one since the last teardown, if any.
  const std::optional<DesiredState>& current() const { return current_; }
  /// Buckets owned for the service called `service` in the state in force (empty if none).
  std::vector<uint32_t> ownedBuckets(const std::string& service) const;
  /// Every lease passed to renew(), successful or not, in call order.
  const std::vector<Millis>& renewals() const { return renewals_; }
  /// Every lease passed to renewedBySend(), in call order.
  const std::vector<Millis>& sendRenewals() const { return send_renewals_; }
  uint32_t checks() const { return checks_; }
  uint32_t teardowns() const { return teardowns_; }

  /// The next `count` apply() calls fail with `message` (count 0: stop failing).
  void failApplies(std::string message, uint32_t count = 1);
  /// The next checkAndRepair() call fails with `message`.
  void failNextCheck(std::string message);
  /// The next teardown() call fails with `message`.
  void failNextTeardown(std::string message);
  /// The next successful checkAndRepair() returns `report`.
  void reportDriftOnce(DriftReport report);
  /// The next renew() call fails with `message`.
  void failNextRenewal(std::string message);
  /// What leaseEnforced() answers (a CLUSTERIP-like backend: false).
  void enforceLease(bool enforced) { lease_enforced_ = enforced; }
  /// What renewsOnSend() answers (nftables with its lease_out rule: true).
  void renewOnSend(bool on) { renews_on_send_ = on; }
  /// What timedBuckets() answers (nftables: true).
  void timeBuckets(bool on) { timed_buckets_ = on; }

 private:
  std::vector<DesiredState> attempts_;
  std::vector<DesiredState> applied_;
  std::optional<DesiredState> current_;
  uint32_t checks_ = 0;
  uint32_t teardowns_ = 0;
  std::string apply_failure_;
  uint32_t apply_failures_left_ = 0;
  std::optional<std::string> check_failure_;
  std::optional<std::string> teardown_failure_;
  std::optional<DriftReport> drift_;
  std::vector<Millis> renewals_;
  std::optional<std::string> renew_failure_;
  bool lease_enforced_ = true;
  bool renews_on_send_ = false;
  bool timed_buckets_ = false;
  std::vector<Millis> send_renewals_;
};

}  // namespace shoal::dataplane
