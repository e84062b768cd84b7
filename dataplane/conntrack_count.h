#pragma once
// The TCP connections a node still serves: conntrack entries whose mark carries
// kAcceptedFlowBit (set by the nftables rules on the first packet of a connection the node
// accepted, dataplane/nft_ruleset.h) and that are not closed. A stopping shoald serves them
// until none is left or its linger ends (ClusterDefinition::leave_linger).

#include <cstddef>
#include <memory>

#include "core/result.h"

namespace shoal::dataplane {

/// Counts the open connections this node accepted.
class ConnectionCount {
 public:
  virtual ~ConnectionCount() = default;
  /// Entries of both address families in any TCP state but TIME_WAIT and CLOSE. Errors: the
  /// conntrack table could not be read.
  virtual Result<std::size_t> open() = 0;
};

/// ConnectionCount through ctnetlink (libnetfilter_conntrack), in the caller's network
/// namespace; the kernel filters the dump by the mark. Errors: no netlink socket (no
/// nf_conntrack, no CAP_NET_ADMIN).
Result<std::unique_ptr<ConnectionCount>> openConntrackCount();

}  // namespace shoal::dataplane
