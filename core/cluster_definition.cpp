#include "core/cluster_definition.h"

namespace shoal {

int ClusterDefinition::nodeIndex(const std::string& node_name) const {
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].name == node_name) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

const char* toString(HashMode mode) {
  switch (mode) {
    case HashMode::SourceIp:
      return "sourceip";
    case HashMode::SourceIpSourcePort:
      return "sourceip-sourceport";
    case HashMode::SourceIpSourcePortDestPort:
      return "sourceip-sourceport-destport";
  }
  return "?";
}

const char* toString(Backend backend) {
  switch (backend) {
    case Backend::Auto:
      return "auto";
    case Backend::Nftables:
      return "nftables";
    case Backend::ClusterIp:
      return "clusterip";
  }
  return "?";
}

const char* toString(PartitionPolicy policy) {
  switch (policy) {
    case PartitionPolicy::Majority:
      return "majority";
    case PartitionPolicy::ServeAll:
      return "serve-all";
  }
  return "?";
}

}  // namespace shoal
