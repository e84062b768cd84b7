#pragma once
// Choosing the dataplane backend: `auto` takes nftables when the running kernel has what
// shoal's nftables rules need, CLUSTERIP otherwise; an explicit choice the kernel cannot do
// is an error at start-up that says why, never a silent fallback.
//
// The decision is a pure function of probed facts (chooseBackend) so it can be tested for
// every kernel without owning one; probeKernel gathers the facts on the running system.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/cluster_definition.h"
#include "core/result.h"
#include "dataplane/dataplane.h"

namespace shoal::dataplane {

class VipAddresses;

/// What the running system offers, as probed.
struct KernelFacts {
  std::string release;             ///< `uname -r`, e.g. "6.1.0-56-cloud-amd64"
  bool nftables_works = false;     ///< nf_tables answers and jhash (nft_hash) is available
  std::string nftables_problem;    ///< why not, when nftables_works is false
  /// nf_tables takes a set of `meta mark . meta time` intervals (meta time: kernel 5.4,
  /// concatenated intervals: 5.6; nft 0.9.4 for `typeof`): the timed buckets of planned
  /// hand-overs (dataplane.h). Without it the nftables backend runs without them.
  bool nftables_timed = false;
  /// nf_tables can bridge the gaps of timed hand-overs (dataplane.h: ForwardedBucket): `dup`
  /// to an address from an interval map (nft_dup_ipv4/ipv6), and a dynamic set of
  /// concatenated raw header fields that rules add to and delete from (5.19 for deleting).
  bool nftables_gap_bridging = false;
  bool clusterip_module = false;   ///< ipt_CLUSTERIP is loaded, built in or installed
  bool iptables_legacy = false;    ///< iptables-legacy-restore and -save are in PATH
};

/// Major and minor version of a kernel release string ("6.1.0-56-cloud-amd64" -> {6, 1}).
std::optional<std::pair<int, int>> kernelVersion(std::string_view release);

/// Whether CLUSTERIP can work here; nullopt if yes, else the reason (one sentence that
/// names the kernel release and what to do).
std::optional<std::string> clusterIpProblem(const KernelFacts& facts);

/// The backend to use for `requested` on a system with `facts`. Auto prefers nftables and
/// falls back to CLUSTERIP only when nftables does not work; an error when neither works or
/// when an explicitly requested backend does not work, e.g. "dataplane: clusterip requested,
/// but kernel 6.18.0 has no CLUSTERIP (removed in 6.3); use nftables".
Result<Backend> chooseBackend(Backend requested, const KernelFacts& facts);

/// Probes the running system: uname, /proc/net/ip_tables_targets, /sys/module and the
/// modules.dep / modules.builtin of the running release, PATH, and a read-only
/// `list tables` through libnftables.
KernelFacts probeKernel();

/// What makeDataplane needs besides the definition.
struct DataplaneSettings {
  /// Overrides the definition's backend (e.g. a command-line flag); nullopt: use it.
  std::optional<Backend> backend;
  /// Facts to decide on instead of probing (tests); nullopt: probeKernel().
  std::optional<KernelFacts> facts;
  /// Where the CLUSTERIP fail-safe keeps its release script ("{pid}" becomes the process
  /// id, so processes in different network namespaces of one host keep theirs apart);
  /// empty: no fail-safe guard.
  std::string clusterip_fail_safe_script = "/run/shoal/clusterip-release-{pid}.sh";
  /// Puts VIP addresses on interfaces for the CLUSTERIP backend; null: someone else does.
  std::shared_ptr<VipAddresses> addresses;
  /// Ledger of the VIPs shoal added, for the nftables backend (NftablesOptions::vip_ledger).
  std::string vip_ledger;
  /// nftables: the heartbeats (UDP from the definition's port, sockets of this process's
  /// user) renew the lease as they leave (NftRulesetOptions::renew_sport).
  bool renew_on_send = true;
  /// nftables: bridge the gaps of timed hand-overs where the kernel can
  /// (KernelFacts::nftables_gap_bridging).
  bool gap_bridging = true;
};

/// Picks the backend for `definition` (see chooseBackend), checks the definition's services
/// against it (e.g. an IPv6 service on CLUSTERIP is an error) and builds it. Nothing is
/// installed in the kernel until the first apply().
Result<std::unique_ptr<Dataplane>> makeDataplane(const ClusterDefinition& definition,
                                                 const DataplaneSettings& settings = {});

}  // namespace shoal::dataplane
