#pragma once
// shoalctl's views of a running cluster: `status` (in the spirit of crm_mon and consul
// members) and `events`, as text for people or JSON for scripts. Pure functions of the
// daemon's answer, so they are unit-tested.

#include <string>

#include "proto/control.pb.h"

namespace shoal::cli {

/// The status as text: header, per-node table, per-service bucket owners, warnings.
std::string renderStatusText(const control::Status& status);

/// The status as one JSON object (field names as in proto/control.proto).
std::string renderStatusJson(const control::Status& status);

/// Recent events, oldest first, one line each with a local timestamp.
std::string renderEventsText(const control::EventList& events);

/// Recent events as a JSON object {"events": [...]}.
std::string renderEventsJson(const control::EventList& events);

}  // namespace shoal::cli
