#pragma once
// The nftables backend: jhash rules in tables of shoal's own, changed one transaction at a
// time through libnftables in-process, plus the VIP addresses and the cluster MAC joins.
// See nft_ruleset.h for the rules and why each one is there.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "dataplane/mac_membership.h"
#include "dataplane/nft_ruleset.h"
#include "dataplane/nft_session.h"
#include "dataplane/vip_addresses.h"

namespace shoal::dataplane {

/// Where the conntrack looseness sysctl of the current network namespace lives.
inline constexpr const char* kTcpLooseSysctl = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose";

/// Knobs of the nftables backend.
struct NftablesOptions {
  NftRulesetOptions ruleset;
  /// Write 0 to kTcpLooseSysctl (this network namespace) after the rules are loaded: only then
  /// is a mid-stream packet of another node's connection "invalid" rather than "new", which
  /// is what keeps established connections on their node across bucket moves. Tests that run
  /// unprivileged fakes point `tcp_loose_path` elsewhere.
  bool set_tcp_loose = true;
  std::string tcp_loose_path = kTcpLooseSysctl;
  /// File recording the VIPs shoal added (NetlinkVipAddresses), so they are recognised after a
  /// restart; empty: kept in memory only.
  std::string vip_ledger;
  /// The clock lease expiries are kept in (tests inject their own).
  std::function<std::chrono::steady_clock::time_point()> clock = std::chrono::steady_clock::now;
};

/// Dataplane on nftables. Bucket-set changes are one small transaction (flush + add of the
/// service's sets); anything else rebuilds the tables in one transaction.
class NftablesDataplane final : public Dataplane {
 public:
  /// The real thing: a libnftables session, libnl VIP addresses, packet-socket MAC joins.
  /// Errors: any of them could not be opened (usually: not root / no CAP_NET_ADMIN).
  static Result<std::unique_ptr<NftablesDataplane>> open(NftablesOptions options = {});

  /// With explicit parts (another NftSession for the benchmark, fakes for unit tests).
  NftablesDataplane(std::unique_ptr<NftSession> session, std::unique_ptr<VipAddresses> vips,
                    std::unique_ptr<MacMemberships> macs, NftablesOptions options);
  ~NftablesDataplane() override = default;

  const char* name() const override { return "nftables"; }
  /// Loads the rules first, then joins the MACs and adds the VIPs (so a VIP never exists
  /// without its rules). Validation errors name the service and field. A bucket-set change
  /// leaves the live element alone; a rebuild writes it to expire after `desired.lease`.
  Status apply(const DesiredState& desired) override;
  /// Lists shoal's tables and compares them (structure and bucket sets) with the last applied
  /// state, unless the session's ruleset generation shows no commit since they were last
  /// found intact; checks the VIPs, MAC joins and the conntrack sysctl; rebuilds what differs.
  /// With a lease, a missing live element is not drift (it may have expired: the renewal
  /// brings it back); a rebuild writes it with what is left of the lease, or not at all once
  /// it has run out: a repair never extends a lease.
  Result<DriftReport> checkAndRepair() override;
  /// Removes the VIPs it added, leaves the MACs, deletes all of shoal's tables.
  Status teardown() override;

  /// The live element expires: a lease is enforced by the kernel.
  bool leaseEnforced() const override { return true; }
  /// Timed buckets are an interval set on `meta time`: the kernel switches them (where it
  /// has such sets: NftRulesetOptions::timed_sets).
  bool timedBuckets() const override { return options_.ruleset.timed_sets; }
  bool keepsEstablished() const override { return true; }
  /// Gap bridging needs the timed sets (NftRulesetOptions::gap_bridging).
  bool bridgesGaps() const override {
    return options_.ruleset.timed_sets && options_.ruleset.gap_bridging;
  }
  bool renewsOnSend() const override;
  void renewedBySend(Millis lease) override;
  /// The live element rewritten with a timeout of `lease`: one prebuilt netlink transaction
  /// (liveRenewal()) on the session's socket, the same cost for any number of buckets.
  /// Errors: the kernel's (e.g. the table was deleted: the drift check rebuilds it).
  Status renew(Millis lease) override;

  /// Problems that do not stop enforcement but weaken it (e.g. tcp_loose could not be set).
  const std::vector<std::string>& warnings() const { return warnings_; }
  /// Total number of repairs made by checkAndRepair since construction.
  uint64_t repairsTotal() const { return repairs_total_; }
  /// Number of whole-table rebuilds (first apply, service changes, repairs).
  uint64_t fullRebuilds() const { return full_rebuilds_; }
  /// Bucket moves applied as a set-contents batch (the hot path, no rebuild).
  uint64_t setUpdates() const { return set_updates_; }
  /// The session the rules go through.
  NftSession& session() { return *session_; }

 private:
  Status rebuild(const DesiredState& desired);
  /// Replaces the contents of the given sets in one prebuilt netlink transaction.
  Status sendSets(const std::vector<SetContents>& sets, const std::vector<TimedSetContents>& timed);
  // Changes both the bucket sets and the interval sets to `desired` in three transactions,
  // none of which leaves a bucket of either state unanswered (see the definition).
  Status sendInSteps(const DesiredState& desired, const std::vector<TimedSetContents>& timed);
  /// Joins MACs and adds VIPs that are missing; returns one line per thing (re)done.
  Result<std::vector<std::string>> ensureLinkLayer(const DesiredState& desired);
  /// Removes VIPs and leaves MACs that `previous` used and `next` does not.
  Status releaseUnused(const DesiredState& previous, const DesiredState& next);
  /// Sets the sysctl if it is not 0; returns a line if it had to.
  Result<std::vector<std::string>> ensureTcpLoose();
  Result<std::vector<std::string>> listTables();
  /// Runs a script that changes the rules, keeping track of whether the kernel's rules are
  /// still known intact (intact_generation_) across this node's own commits.
  Result<std::string> runCommit(const std::string& script);
  /// After a commit of this node's (a script or a batch): counts it into the generation the
  /// next check expects (intact_generation_), without asking the kernel.
  void noteCommit(bool committed);

  std::unique_ptr<NftSession> session_;
  std::unique_ptr<VipAddresses> vips_;
  std::unique_ptr<MacMemberships> macs_;
  NftablesOptions options_;
  std::optional<DesiredState> applied_;  ///< what the kernel holds, if apply() succeeded
  ElementRenewal live_renewal_;          ///< built once, patched per renewal
  uint32_t next_seq_ = 1;                ///< netlink sequence numbers of the renewals
  /// When the live element written last expires (with a lease).
  std::chrono::steady_clock::time_point lease_expiry_{};
  // The heartbeats were found not to renew the lease (checkAndRepair()): netlink only.
  bool send_renewal_off_ = false;
  std::vector<std::string> structure_;  ///< listings after the last rebuild, sets emptied
  /// The ruleset generation at which the tables hold what was applied if nobody else has
  /// committed: the one a check found them intact at, plus this object's own commits since.
  std::optional<uint32_t> intact_generation_;
  std::vector<std::string> warnings_;
  uint64_t repairs_total_ = 0;
  uint64_t full_rebuilds_ = 0;
  uint64_t set_updates_ = 0;
};

/// Checks what every backend requires of a DesiredState: bucket counts in 1..max_buckets,
/// owned and reset lists sorted, unique, below the bucket count, resets a subset of owned,
/// usable VIPs, multicast cluster MACs, an interface, no VIP twice.
Status validateDesiredState(const DesiredState& desired, uint32_t max_buckets);

/// `listing` with every `elements = { ... }` line removed (for comparing table structure
/// apart from the bucket sets; an empty set prints no such line).
std::string withoutElements(const std::string& listing);

/// The marks of the elements of timed set `set_name` in a table listing (each element is
/// "MARK . WINDOW"), sorted; nullopt if the set is not in the listing.
std::optional<std::vector<uint32_t>> timedSetMarks(const std::string& listing,
                                                   const std::string& set_name);

/// The elements of set `set_name` in a table listing, expanded from nft's "a-b" ranges.
/// nullopt if the set is not in the listing.
std::optional<std::vector<uint32_t>> setElements(const std::string& listing,
                                                 const std::string& set_name);

}  // namespace shoal::dataplane
