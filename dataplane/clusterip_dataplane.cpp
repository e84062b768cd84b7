#include "dataplane/clusterip_dataplane.h"

#include <algorithm>

namespace shoal::dataplane {
namespace cip = clusterip;
namespace {

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

Status checkAssignments(const DesiredState& desired) {
  std::vector<Service> services;
  for (const ServiceAssignment& assignment : desired.services) {
    services.push_back(assignment.service);
    const Service& service = assignment.service;
    if (!assignment.timed.empty()) {
      return Error{"service '" + service.name +
                   "': CLUSTERIP cannot answer a bucket within a window of time (timed "
                   "buckets need the nftables backend)"};
    }
    for (std::size_t i = 0; i < assignment.owned.size(); ++i) {
      uint32_t bucket = assignment.owned[i];
      if (bucket >= service.buckets) {
        return Error{"service '" + service.name + "': owned bucket " + std::to_string(bucket) +
                     " is not below its bucket count " + std::to_string(service.buckets)};
      }
      if (i > 0 && assignment.owned[i - 1] >= bucket) {
        return Error{"service '" + service.name +
                     "': owned buckets must be sorted and distinct (internal error)"};
      }
    }
  }
  return ClusterIpDataplane::checkServices(services);
}

// Whether two states need the same rules (they may differ in owned buckets only).
bool sameRules(const DesiredState& a, const DesiredState& b) {
  if (a.services.size() != b.services.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.services.size(); ++i) {
    if (!(cip::ruleFor(a.services[i].service) == cip::ruleFor(b.services[i].service))) {
      return false;
    }
  }
  return true;
}

cip::WantedRule wantedRule(const ServiceAssignment& assignment) {
  cip::WantedRule wanted{cip::ruleFor(assignment.service), 1};
  if (!assignment.owned.empty()) {
    wanted.local_node = cip::nodeNumber(assignment.owned.front());
  }
  return wanted;
}

}  // namespace

// The default for VipAddresses (dataplane/vip_addresses.h) lives here, beside its one user.
std::string VipAddresses::removeCommand(const std::string& interface,
                                        const IpAddress& vip) const {
  return "ip addr del " + vip.toString() + "/32 dev " + interface;
}

ClusterIpParts systemClusterIpParts(const std::string& fail_safe_script,
                                    std::unique_ptr<VipAddresses> addresses) {
  ClusterIpParts parts;
  parts.commands = std::make_unique<SubprocessRunner>();
  parts.files = std::make_unique<ProcResponsibilityFiles>();
  if (!fail_safe_script.empty()) {
    parts.fail_safe = std::make_unique<GuardProcessFailSafe>(fail_safe_script);
  }
  parts.addresses = std::move(addresses);
  return parts;
}

Status ClusterIpDataplane::checkServices(const std::vector<Service>& services) {
  for (std::size_t i = 0; i < services.size(); ++i) {
    if (Status ok = cip::checkService(services[i]); !ok) {
      return ok;
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (services[j].vip == services[i].vip) {
        return Error{"services '" + services[j].name + "' and '" + services[i].name +
                     "' share VIP " + services[i].vip.toString() +
                     "; CLUSTERIP keeps one state per VIP, so each service needs its own"};
      }
    }
  }
  return Ok{};
}

ClusterIpDataplane::ClusterIpDataplane(ClusterIpParts parts, ClusterIpOptions options)
    : parts_(std::move(parts)), options_(std::move(options)) {}

ClusterIpDataplane::~ClusterIpDataplane() {
  if (applied_ && options_.teardown_on_destroy) {
    // Best effort on the way out; a failure leaves the fail-safe armed, which then releases.
    (void)teardown();
  }
}

Result<cip::KernelRules> ClusterIpDataplane::readRules() {
  auto output = parts_.commands->run({options_.save_command, "-t", "filter"}, "");
  if (!output) {
    return output.error();
  }
  if (output->exit_code != 0) {
    return Error{options_.save_command + " -t filter failed (exit " +
                 std::to_string(output->exit_code) + "): " + trimmed(output->err) +
                 "; the CLUSTERIP backend needs iptables-legacy and the ip_tables module"};
  }
  return cip::parseSave(output->out);
}

Status ClusterIpDataplane::restore(const std::string& script, const char* purpose) {
  if (script.empty()) {
    return Ok{};
  }
  auto output = parts_.commands->run({options_.restore_command, "-w", "--noflush"}, script);
  if (!output) {
    return output.error();
  }
  if (output->exit_code != 0) {
    return Error{options_.restore_command + " failed to " + purpose + " (exit " +
                 std::to_string(output->exit_code) + "): " + trimmed(output->err) +
                 " -- is the ipt_CLUSTERIP module available (kernels up to 6.2)? Input was:\n" +
                 script};
  }
  return Ok{};
}

// Sets the VIP's /proc responsibility to the assignment's buckets and verifies it by reading
// it back. True when it had to change something. An error when the file is missing (the
// VIP's CLUSTERIP state does not exist) or reads back wrong.
Result<bool> ClusterIpDataplane::syncResponsibility(const ServiceAssignment& assignment) {
  const IpAddress& vip = assignment.service.vip;
  auto text = parts_.files->read(vip);
  if (!text) {
    return text.error();
  }
  auto current = cip::parseNodeList(*text);
  if (!current) {
    return current.error();
  }
  std::vector<uint32_t> wanted = cip::nodesOf(assignment.owned);
  std::vector<std::string> writes = cip::responsibilityWrites(*current, wanted);
  for (const std::string& command : writes) {
    if (Status written = parts_.files->write(vip, command); !written) {
      return written.error();
    }
  }
  auto after_text = parts_.files->read(vip);
  if (!after_text) {
    return after_text.error();
  }
  auto after = cip::parseNodeList(*after_text);
  if (!after) {
    return after.error();
  }
  if (*after != wanted) {
    return Error{"CLUSTERIP responsibility of " + vip.toString() + " reads " +
                 cip::formatNodes(*after) + " after writing, expected " +
                 cip::formatNodes(wanted) + " (another process writing to /proc/net/" +
                 "ipt_CLUSTERIP/" + vip.toString() + "?)"};
  }
  return !writes.empty();
}

// Makes the kernel match `target` and returns one line per thing it had to change.
Result<std::vector<std::string>> ClusterIpDataplane::converge(const DesiredState& target) {
  std::vector<std::string> fixes;
  if (parts_.addresses) {
    for (const ServiceAssignment& assignment : target.services) {
      const Service& service = assignment.service;
      auto added = parts_.addresses->ensure(service.interface, service.vip);
      if (!added) {
        return added.error();
      }
      if (*added) {
        std::pair<std::string, IpAddress> key{service.interface, service.vip};
        if (std::find(added_addresses_.begin(), added_addresses_.end(), key) ==
            added_addresses_.end()) {
          added_addresses_.push_back(key);
        }
        fixes.push_back("VIP " + service.vip.toString() + " added to " + service.interface);
      }
    }
  }

  auto kernel = readRules();
  if (!kernel) {
    return kernel.error();
  }
  std::vector<cip::WantedRule> keep;       // rules that are right and stay
  std::vector<cip::WantedRule> create;     // rules whose CLUSTERIP state must be created
  std::vector<const ServiceAssignment*> created;
  bool prune = false;
  for (const ServiceAssignment& assignment : target.services) {
    cip::WantedRule wanted = wantedRule(assignment);
    bool present = false, differs = false;
    for (const cip::RuleSpec& rule : kernel->rules) {
      if (rule.vip == wanted.rule.vip) {
        (rule == wanted.rule ? present : differs) = true;
      }
    }
    if (present && !differs) {
      keep.push_back(wanted);
      continue;
    }
    create.push_back(wanted);
    created.push_back(&assignment);
    if (differs) {
      prune = true;
      fixes.push_back("rule for " + wanted.rule.vip.toString() +
                      " had other parameters; recreated");
    } else {
      fixes.push_back("rule for " + wanted.rule.vip.toString() + " installed");
    }
  }
  for (const cip::RuleSpec& rule : kernel->rules) {
    bool wanted = std::any_of(target.services.begin(), target.services.end(),
                              [&](const ServiceAssignment& a) { return a.service.vip == rule.vip; });
    if (!wanted) {
      prune = true;
      fixes.push_back("rule for " + rule.vip.toString() + " not wanted; removed");
    }
  }
  for (const std::string& line : kernel->foreign) {
    fixes.push_back("foreign rule removed from " + std::string(cip::kChain) + ": " + line);
  }
  if (kernel->jumps != 1 || !kernel->jump_first) {
    fixes.push_back("jump from INPUT to " + std::string(cip::kChain) + " restored (found " +
                    std::to_string(kernel->jumps) + (kernel->jump_first ? ", first)" : ")"));
  }
  if (kernel->staging_exists) {
    fixes.push_back("leftover chain " + std::string(cip::kStagingChain) + " removed");
  }

  // Old CLUSTERIP state must be gone before a VIP's state is created with new parameters.
  if (prune) {
    if (Status ok = restore(cip::chainScript(keep, *kernel), "remove outdated rules"); !ok) {
      return ok.error();
    }
    kernel = readRules();
    if (!kernel) {
      return kernel.error();
    }
  }
  if (!create.empty()) {
    if (Status ok = restore(cip::stagingScript(create), "create CLUSTERIP state"); !ok) {
      return ok.error();
    }
    for (const ServiceAssignment* assignment : created) {
      if (auto synced = syncResponsibility(*assignment); !synced) {
        return synced.error();
      }
    }
    kernel->staging_exists = true;
  }
  bool rewrite = !create.empty() || !kernel->foreign.empty() || kernel->jumps != 1 ||
                 !kernel->jump_first || kernel->staging_exists || !kernel->chain_exists;
  if (rewrite) {
    std::vector<cip::WantedRule> all;
    for (const ServiceAssignment& assignment : target.services) {
      all.push_back(wantedRule(assignment));
    }
    if (Status ok = restore(cip::chainScript(all, *kernel), "install rules"); !ok) {
      return ok.error();
    }
  }

  for (const ServiceAssignment& assignment : target.services) {
    bool just_created = std::find(created.begin(), created.end(), &assignment) != created.end();
    auto before = just_created ? Result<std::string>(std::string()) :
                                 parts_.files->read(assignment.service.vip);
    auto synced = syncResponsibility(assignment);
    if (!synced) {
      return synced.error();
    }
    if (*synced && !just_created) {
      auto nodes = before ? cip::parseNodeList(*before) : Result<std::vector<uint32_t>>(Error{});
      fixes.push_back("responsibility of " + assignment.service.vip.toString() + " was " +
                      (nodes ? cip::formatNodes(*nodes) : std::string("unreadable")) +
                      ", set to " + cip::formatNodes(cip::nodesOf(assignment.owned)));
    }
  }
  return fixes;
}

Status ClusterIpDataplane::armFailSafe(const DesiredState& state) {
  if (!parts_.fail_safe) {
    return Ok{};
  }
  std::vector<IpAddress> vips;
  for (const ServiceAssignment& assignment : state.services) {
    vips.push_back(assignment.service.vip);
  }
  std::string script = "# shoal CLUSTERIP fail-safe: the process holding the dataplane died\n";
  script += options_.restore_command + " -w --noflush <<'SHOAL_RULES'\n";
  script += cip::failSafeScript(vips);
  script += "SHOAL_RULES\n";
  if (parts_.addresses) {
    for (const auto& [interface, vip] : added_addresses_) {
      script += parts_.addresses->removeCommand(interface, vip) + "\n";
    }
  }
  script += "rm -f -- \"$0\"\n";
  return parts_.fail_safe->arm(script);
}

Status ClusterIpDataplane::apply(const DesiredState& desired) {
  if (Status ok = checkAssignments(desired); !ok) {
    return ok;
  }
  // The hot path: only responsibilities change. Anything unexpected (a missing /proc file
  // after a flush) falls through to the full converge.
  if (applied_ && sameRules(desired, last_)) {
    bool all_synced = true;
    for (const ServiceAssignment& assignment : desired.services) {
      if (!syncResponsibility(assignment)) {
        all_synced = false;
        break;
      }
    }
    if (all_synced) {
      last_ = desired;
      return Ok{};
    }
  }
  auto fixes = converge(desired);
  if (!fixes) {
    return fixes.error();
  }
  last_ = desired;
  applied_ = true;
  return armFailSafe(desired);
}

Result<DriftReport> ClusterIpDataplane::checkAndRepair() {
  DriftReport report;
  if (!applied_) {
    return report;
  }
  auto fixes = converge(last_);
  if (!fixes) {
    return fixes.error();
  }
  report.details = std::move(*fixes);
  report.repaired = static_cast<uint32_t>(report.details.size());
  if (report.repaired > 0) {
    if (Status ok = armFailSafe(last_); !ok) {
      return ok.error();
    }
  }
  return report;
}

Status ClusterIpDataplane::teardown() {
  auto kernel = readRules();
  if (!kernel) {
    return kernel.error();
  }
  if (Status ok = restore(cip::teardownScript(*kernel), "remove shoal's rules"); !ok) {
    return ok;
  }
  if (parts_.addresses) {
    for (const auto& [interface, vip] : added_addresses_) {
      if (Status ok = parts_.addresses->remove(interface, vip); !ok) {
        return ok;
      }
    }
  }
  added_addresses_.clear();
  applied_ = false;
  last_ = DesiredState{};
  if (parts_.fail_safe) {
    return parts_.fail_safe->disarm();
  }
  return Ok{};
}

}  // namespace shoal::dataplane
