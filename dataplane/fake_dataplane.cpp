#include "dataplane/fake_dataplane.h"

namespace shoal::dataplane {

Status FakeDataplane::apply(const DesiredState& desired) {
  attempts_.push_back(desired);
  if (apply_failures_left_ > 0) {
    --apply_failures_left_;
    return Error{apply_failure_};
  }
  applied_.push_back(desired);
  current_ = desired;
  return Ok{};
}

Result<DriftReport> FakeDataplane::checkAndRepair() {
  ++checks_;
  if (check_failure_) {
    std::string message = std::move(*check_failure_);
    check_failure_.reset();
    return Error{message};
  }
  if (drift_) {
    DriftReport report = std::move(*drift_);
    drift_.reset();
    return report;
  }
  return DriftReport{};
}

Status FakeDataplane::teardown() {
  ++teardowns_;
  if (teardown_failure_) {
    std::string message = std::move(*teardown_failure_);
    teardown_failure_.reset();
    return Error{message};
  }
  current_.reset();
  return Ok{};
}

Status FakeDataplane::renew(Millis lease) {
  renewals_.push_back(lease);
  if (renew_failure_) {
    std::string message = std::move(*renew_failure_);
    renew_failure_.reset();
    return Error{message};
  }
  if (current_) current_->lease = lease;
  return Ok{};
}

void FakeDataplane::failNextRenewal(std::string message) { renew_failure_ = std::move(message); }

std::vector<uint32_t> FakeDataplane::ownedBuckets(const std::string& service) const {
  if (!current_) {
    return {};
  }
  for (const ServiceAssignment& assignment : current_->services) {
    if (assignment.service.name == service) {
      return assignment.owned;
    }
  }
  return {};
}

void FakeDataplane::failApplies(std::string message, uint32_t count) {
  apply_failure_ = std::move(message);
  apply_failures_left_ = count;
}

void FakeDataplane::failNextCheck(std::string message) { check_failure_ = std::move(message); }

void FakeDataplane::failNextTeardown(std::string message) {
  teardown_failure_ = std::move(message);
}

void FakeDataplane::reportDriftOnce(DriftReport report) { drift_ = std::move(report); }

}  // namespace shoal::dataplane
