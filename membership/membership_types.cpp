#include "membership/membership_types.h"

#include <algorithm>

namespace shoal {

std::string Endpoint::toString() const {
  const std::string host = address.toString();
  return (address.isV4() ? host : "[" + host + "]") + ":" + std::to_string(port);
}

bool MemberView::reachable() const {
  return std::any_of(links.begin(), links.end(), [](const LinkView& l) { return l.up; });
}

const char* toString(MemberState state) {
  switch (state) {
    case MemberState::Unknown:
      return "unknown";
    case MemberState::Alive:
      return "alive";
    case MemberState::Suspect:
      return "suspect";
    case MemberState::Dead:
      return "dead";
    case MemberState::Left:
      return "left";
  }
  return "?";
}

const char* toString(DrainMode mode) {
  switch (mode) {
    case DrainMode::None:
      return "none";
    case DrainMode::Draining:
      return "draining";
    case DrainMode::Drained:
      return "drained";
  }
  return "?";
}

const char* toString(HealthStatus status) {
  switch (status) {
    case HealthStatus::Unstated:
      return "unstated";
    case HealthStatus::Ok:
      return "ok";
    case HealthStatus::Failing:
      return "failing";
  }
  return "?";
}

}  // namespace shoal
