#pragma once
// Which node of the cluster definition this machine is, when --node is not given: the node
// one of whose management addresses is configured on a local interface.

#include <string>
#include <vector>

#include "core/cluster_definition.h"
#include "core/result.h"

namespace shoal::daemon {

/// Index of the node whose address is local. Errors name the addresses looked for when none
/// matches, and the nodes when several do (then --node must say which).
Result<uint32_t> detectSelf(const ClusterDefinition& def);

/// The local interfaces holding one of the IPv4 `addresses` that filter by reverse path
/// strictly (rp_filter 1, the larger of `all` and the interface's own value): they drop
/// packets whose source is routed elsewhere, such as the copies a releasing node sends a
/// taker over a heartbeat link (dataplane.h: ForwardedBucket). Empty if none, or if the
/// addresses cannot be listed.
std::vector<std::string> strictReversePathInterfaces(const std::vector<IpAddress>& addresses);

}  // namespace shoal::daemon
