#pragma once
// Which node of the cluster definition this machine is, when --node is not given: the node
// one of whose management addresses is configured on a local interface.

#include <string>

#include "core/cluster_definition.h"
#include "core/result.h"

namespace shoal::daemon {

/// Index of the node whose address is local. Errors name the addresses looked for when none
/// matches, and the nodes when several do (then --node must say which).
Result<uint32_t> detectSelf(const ClusterDefinition& def);

}  // namespace shoal::daemon
