#pragma once
// `shoalctl plan`: the bucket assignment the cluster would have with some nodes down or
// drained, and what moves compared with all nodes up. Pure: no IO, so it is unit-tested.

#include <cstdint>
#include <string>
#include <vector>

#include "core/cluster_definition.h"
#include "core/result.h"

namespace shoal::cli {

/// Node names to treat as down or drained.
struct PlanRequest {
  std::vector<std::string> down;
  std::vector<std::string> drained;
};

/// One service's assignment under the request, beside the all-up baseline.
struct ServicePlan {
  std::size_t service_index = 0;
  std::vector<int> owners;    ///< node index per bucket under the request, -1 = nobody
  std::vector<int> baseline;  ///< node index per bucket with every node up and undrained
  uint32_t moved = 0;   ///< buckets whose owner differs from the baseline
  uint32_t forced = 0;  ///< of those, buckets whose baseline owner is down or drained
};

enum class PlannedNodeState : uint8_t { Up, Down, Drained };

struct Plan {
  std::vector<PlannedNodeState> nodes;  ///< per node index
  std::vector<ServicePlan> services;    ///< per service, in definition order
};

/// Computes the plan. Fails with a message naming the unknown node if a name in the request
/// is not in the definition.
Result<Plan> makePlan(const ClusterDefinition& def, const PlanRequest& request);

/// Human-readable report: per node its state and buckets, per bucket owner and baseline owner,
/// and the count of moves.
std::string renderPlanText(const ClusterDefinition& def, const Plan& plan);

/// JSON object. `buckets` is an array indexed by bucket number holding the owner's node name
/// or null; with several services it is an object of such arrays keyed by service name.
/// `services` always holds the full per-service detail.
std::string renderPlanJson(const ClusterDefinition& def, const Plan& plan);

const char* toString(PlannedNodeState state);

}  // namespace shoal::cli
