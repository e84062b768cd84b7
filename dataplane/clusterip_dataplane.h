#pragma once
// The CLUSTERIP backend (kernels up to 6.2): iptables-legacy CLUSTERIP rules in a chain of
// shoal's own, installed atomically with `iptables-legacy-restore --noflush`; bucket
// responsibility through /proc/net/ipt_CLUSTERIP/<VIP> (`+K` / `-K`, read back and verified).
// Bucket b is CLUSTERIP node number b + 1; at most 16 buckets; IPv4 VIPs only.
//
// Behaviour worth knowing (see also clusterip_rules.h and clusterip_failsafe.h):
//  - CLUSTERIP re-hashes every packet: when a bucket moves, its established flows move with
//    it and break on the new owner (TCP resets). Connection preservation needs the nftables
//    backend.
//  - The kernel keeps one CLUSTERIP state per VIP, created by the first rule that names the
//    VIP; its hash mode, bucket count, seed and MAC are fixed until the last rule for the VIP
//    goes. A changed service is therefore removed and created anew (a short gap in answers).
//  - A new VIP's state is first created in the unreachable SHOAL-NEW chain, its
//    responsibility set through /proc, and only then linked into SHOAL, so the node never
//    answers a bucket it does not own (CLUSTERIP insists on one --local-node at creation).
//  - No lease: a stalled (not dead) daemon's node keeps answering; see leaseEnforced().
//  - Rules outlive the process. The owner must call teardown() on every exit path it can
//    catch; the destructor does it too. For the ones it cannot catch, a FailSafe guard
//    process releases the node when the process dies.

#include <memory>
#include <string>
#include <vector>

#include "dataplane/clusterip_failsafe.h"
#include "dataplane/clusterip_rules.h"
#include "dataplane/clusterip_system.h"
#include "dataplane/dataplane.h"
#include "dataplane/vip_addresses.h"

namespace shoal::dataplane {

/// Program names, so hosts where plain `iptables-restore` is the legacy one can say so.
struct ClusterIpOptions {
  std::string save_command = "iptables-legacy-save";
  std::string restore_command = "iptables-legacy-restore";
  /// Tear down in the destructor if apply() succeeded and teardown() was not called.
  bool teardown_on_destroy = true;
};

/// What the backend works through. `commands` and `files` are required; `fail_safe` and
/// `addresses` may be null (no guard; VIP addresses managed by someone else).
struct ClusterIpParts {
  std::unique_ptr<CommandRunner> commands;
  std::unique_ptr<ResponsibilityFiles> files;
  std::unique_ptr<FailSafe> fail_safe;
  std::unique_ptr<VipAddresses> addresses;
};

/// The real parts: posix_spawn, /proc/net/ipt_CLUSTERIP, a guard process keeping its
/// release script at `fail_safe_script` (empty: no guard), and `addresses` as given.
ClusterIpParts systemClusterIpParts(const std::string& fail_safe_script,
                                    std::unique_ptr<VipAddresses> addresses);

/// The CLUSTERIP implementation of Dataplane.
class ClusterIpDataplane final : public Dataplane {
 public:
  /// Start-up check of a definition's services for this backend (clusterip::checkService
  /// for each, and no VIP twice). The first problem as an error naming the service.
  static Status checkServices(const std::vector<Service>& services);

  explicit ClusterIpDataplane(ClusterIpParts parts, ClusterIpOptions options = {});
  ~ClusterIpDataplane() override;
  ClusterIpDataplane(const ClusterIpDataplane&) = delete;
  ClusterIpDataplane& operator=(const ClusterIpDataplane&) = delete;

  const char* name() const override { return "clusterip"; }
  /// Rules are read and rewritten only when the set of services differs from the last
  /// apply (or the /proc file of a VIP is missing); a pure bucket move is /proc writes only.
  /// Errors: a service CLUSTERIP cannot run, a failed restore (with iptables' message), or
  /// a /proc file that reads back other than written.
  Status apply(const DesiredState& desired) override;
  /// Reads the rules and every VIP's /proc file, restores whatever differs from the last
  /// applied state (flushed rules, a missing jump, a missing VIP address, a changed
  /// responsibility) and reports one line per repair. Nothing to do before the first apply.
  Result<DriftReport> checkAndRepair() override;
  /// Removes the jump, shoal's chains (which releases each VIP's CLUSTERIP state and its
  /// multicast MAC), the VIP addresses it added, and disarms the fail-safe.
  Status teardown() override;
  /// False: the limitation of this backend. CLUSTERIP's responsibility (/proc) has no
  /// timeout, so a daemon that is stalled (SIGSTOP, swapped out, starved) rather than dead
  /// leaves its node answering buckets its peers may already have taken over; only a dead
  /// daemon is covered (the fail-safe guard). Use the nftables backend where that matters.
  bool leaseEnforced() const override { return false; }
  /// Does nothing (see leaseEnforced()); DesiredState::lease is ignored likewise.
  Status renew(Millis) override { return Ok{}; }

 private:
  Result<clusterip::KernelRules> readRules();
  Status restore(const std::string& script, const char* purpose);
  Result<std::vector<std::string>> converge(const DesiredState& target);
  Result<bool> syncResponsibility(const ServiceAssignment& assignment);
  Status armFailSafe(const DesiredState& state);

  ClusterIpParts parts_;
  ClusterIpOptions options_;
  DesiredState last_;
  bool applied_ = false;
  /// (interface, VIP) pairs this dataplane added and must remove.
  std::vector<std::pair<std::string, IpAddress>> added_addresses_;
};

}  // namespace shoal::dataplane
