#pragma once
// The TCP connections a node still serves: conntrack entries whose mark carries
// kAcceptedFlowBit (set by the nftables rules on the first packet of a connection the node
// accepted, dataplane/nft_ruleset.h) and that are not closed. A stopping shoald serves them
// until none is left or its linger ends (ClusterDefinition::leave_linger).
//
// An established connection that has been silent for long is not waited for: conntrack keeps
// an established entry for days after its last packet (nf_conntrack_tcp_timeout_established,
// five days by default), so a client that vanished without a FIN would hold every stop for
// the whole linger, and a connection idle for minutes gives no sign of ending within it. The
// silence is what the entry's timeout has run down from that sysctl.

#include <chrono>
#include <cstddef>
#include <memory>

#include "core/result.h"

namespace shoal::dataplane {

/// What one count found.
struct Connections {
  std::size_t open = 0;  ///< to wait for
  std::size_t idle = 0;  ///< established but silent for longer than the cutoff: not waited for
};

/// Counts the open connections this node accepted.
class ConnectionCount {
 public:
  virtual ~ConnectionCount() = default;
  /// Entries of both address families in any TCP state but TIME_WAIT and CLOSE; established
  /// entries silent for longer than `idle_cutoff` are counted as idle instead (all are open
  /// if the established timeout cannot be read). Errors: the conntrack table could not be
  /// read.
  virtual Result<Connections> count(std::chrono::seconds idle_cutoff) = 0;
};

/// How long an established entry has been silent: `established_timeout` (the sysctl) less
/// the `remaining` seconds of its timeout; zero if the entry has more left than that (the
/// sysctl was lowered after its last packet).
std::chrono::seconds silentFor(std::chrono::seconds established_timeout,
                               std::chrono::seconds remaining);

/// ConnectionCount through ctnetlink (libnetfilter_conntrack), in the caller's network
/// namespace; the kernel filters the dump by the mark. Errors: no netlink socket (no
/// nf_conntrack, no CAP_NET_ADMIN).
Result<std::unique_ptr<ConnectionCount>> openConntrackCount();

}  // namespace shoal::dataplane
