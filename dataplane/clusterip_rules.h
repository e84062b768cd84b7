#pragma once
// The IO-free core of the CLUSTERIP backend: which iptables-legacy rules shoal wants, what the
// kernel has (parsed from `iptables-legacy-save -t filter`), the restore scripts that move one
// to the other, and the /proc responsibility text (`1,2` read, `+K` / `-K` written).
//
// Layout in the filter table, all of it shoal's own:
//   INPUT:      `-j SHOAL` as the first rule (exactly once)
//   SHOAL:      one CLUSTERIP rule per service (`-d VIP/32 -i IF -j CLUSTERIP --new ...`)
//   SHOAL-NEW:  exists only for a moment while a new VIP's CLUSTERIP state is created
//               unreachably, so its responsibility can be set before any packet meets it.
// Bucket b is CLUSTERIP node number b + 1.
//
// To debug by hand: `iptables-legacy-save -t filter` and `cat /proc/net/ipt_CLUSTERIP/VIP`.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/cluster_definition.h"
#include "core/ip_address.h"
#include "core/result.h"

namespace shoal::dataplane::clusterip {

/// The chain that holds shoal's CLUSTERIP rules, jumped to first from INPUT.
inline constexpr std::string_view kChain = "SHOAL";
/// The unreachable chain that creates a new VIP's CLUSTERIP state before it goes live.
inline constexpr std::string_view kStagingChain = "SHOAL-NEW";

/// CLUSTERIP node number (1..16) of a bucket (0..15).
constexpr uint32_t nodeNumber(uint32_t bucket) { return bucket + 1; }
/// Bucket of a CLUSTERIP node number (1..16).
constexpr uint32_t bucketOf(uint32_t node_number) { return node_number - 1; }

/// The parameters of one CLUSTERIP rule that shoal sets and checks. The kernel keeps one
/// CLUSTERIP state per VIP; its parameters are fixed when the state is created.
struct RuleSpec {
  IpAddress vip;
  std::string interface;
  HashMode hash = HashMode::SourceIp;
  MacAddress cluster_mac;
  uint32_t total_nodes = 0;  ///< the service's bucket count
  uint32_t hash_init = 0;    ///< the service's seed
  bool operator==(const RuleSpec&) const = default;
};

/// The rule a service needs.
RuleSpec ruleFor(const Service& service);

/// Checks that a service can be enforced by CLUSTERIP: an IPv4 VIP (CLUSTERIP is an IPv4
/// target), 1..16 buckets, an interface name and a multicast cluster MAC. The error names the
/// service and what to change.
Status checkService(const Service& service);

/// What shoal's part of the kernel's filter table looks like.
struct KernelRules {
  bool chain_exists = false;     ///< SHOAL exists
  bool staging_exists = false;   ///< SHOAL-NEW exists (left over from an interrupted apply)
  uint32_t jumps = 0;            ///< how many INPUT rules are exactly `-j SHOAL`
  bool jump_first = false;       ///< the first INPUT rule is `-j SHOAL`
  std::vector<RuleSpec> rules;   ///< CLUSTERIP rules in SHOAL, in order
  std::vector<std::string> foreign;  ///< other rules found in SHOAL (removed on repair)
};

/// Parses `iptables-legacy-save -t filter` output. Lines outside shoal's chains are ignored.
/// An error only when the text is not iptables-save output at all.
Result<KernelRules> parseSave(std::string_view save_output);

/// One line of restore input: `-A <chain> -d VIP/32 -i IF -j CLUSTERIP --new ...`.
/// `local_node` is used only when the rule creates the VIP's CLUSTERIP state.
std::string ruleLine(std::string_view chain, const RuleSpec& rule, uint32_t local_node);

/// A service as it should stand in the kernel after a converge.
struct WantedRule {
  RuleSpec rule;
  uint32_t local_node = 1;  ///< first node number of the wanted set (1 when the set is empty)
};

/// Restore input (for `iptables-legacy-restore --noflush`) that puts `rules` in SHOAL in order,
/// makes `-j SHOAL` the first INPUT rule exactly once and removes SHOAL-NEW. One COMMIT: the
/// kernel sees the whole change at once.
std::string chainScript(const std::vector<WantedRule>& rules, const KernelRules& current);

/// Restore input that creates SHOAL-NEW holding `rules` and leaves everything else as it is.
/// No packet reaches SHOAL-NEW; the rules exist only to create the CLUSTERIP state.
std::string stagingScript(const std::vector<WantedRule>& rules);

/// Restore input that removes the jump, SHOAL and SHOAL-NEW (nothing if none exist).
std::string teardownScript(const KernelRules& current);

/// Restore input applied by the fail-safe when the process holding the dataplane dies
/// without tearing down: SHOAL is emptied of its CLUSTERIP rules (which releases every
/// VIP's CLUSTERIP state and its multicast MAC) and drops all traffic to `vips`, so the
/// dead node answers nothing until a live process takes over. Creates SHOAL if missing.
std::string failSafeScript(const std::vector<IpAddress>& vips);

/// Parses the text of /proc/net/ipt_CLUSTERIP/VIP (`1,2\n`, or empty) into sorted node
/// numbers. An error names the unexpected text.
Result<std::vector<uint32_t>> parseNodeList(std::string_view text);

/// Node numbers of a sorted bucket list.
std::vector<uint32_t> nodesOf(const std::vector<uint32_t>& buckets);

/// The /proc writes (`-K` first, then `+K`) that turn the set `current` into `wanted`; both
/// are sorted node-number lists. Removals come first so the node never answers more than
/// either set.
std::vector<std::string> responsibilityWrites(const std::vector<uint32_t>& current,
                                              const std::vector<uint32_t>& wanted);

/// `1,2,5` for messages (`none` when empty).
std::string formatNodes(const std::vector<uint32_t>& nodes);

}  // namespace shoal::dataplane::clusterip
