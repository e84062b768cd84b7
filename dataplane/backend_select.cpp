#include "dataplane/backend_select.h"

#include <nftables/libnftables.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "dataplane/clusterip_dataplane.h"
#include "dataplane/lease.h"
#include "dataplane/nftables_dataplane.h"

namespace shoal::dataplane {
namespace {

bool fileContains(const std::string& path, std::string_view needle) {
  std::ifstream in(path);
  if (!in) {
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str().find(needle) != std::string::npos;
}

bool pathExists(const std::string& path) {
  struct stat info{};
  return ::stat(path.c_str(), &info) == 0;
}

bool inPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) {
      end = dirs.size();
    }
    std::string candidate = dirs.substr(start, end - start) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

// A module is usable if it is loaded, built in, or installed for the running release.
bool moduleAvailable(const std::string& release, const std::string& module) {
  if (pathExists("/sys/module/" + module)) {
    return true;
  }
  std::string dir = "/lib/modules/" + release + "/";
  return fileContains(dir + "modules.dep", "/" + module + ".ko") ||
         fileContains(dir + "modules.builtin", "/" + module + ".ko");
}

// Whether the running kernel certainly lacks `module`: only when its module lists can be read
// and name it nowhere. A kernel with the feature built in and no /lib/modules (containers,
// minimal images) leaves no trace in /sys/module; the first apply() then says what is wrong.
bool moduleCertainlyMissing(const std::string& release, const std::string& module) {
  const std::string dir = "/lib/modules/" + release + "/";
  return pathExists(dir + "modules.dep") && pathExists(dir + "modules.builtin") &&
         !moduleAvailable(release, module);
}

std::string versionText(const KernelFacts& facts) {
  auto version = kernelVersion(facts.release);
  if (!version) {
    return facts.release;
  }
  return std::to_string(version->first) + "." + std::to_string(version->second);
}

}  // namespace

std::optional<std::pair<int, int>> kernelVersion(std::string_view release) {
  int major = 0, minor = 0;
  const char* begin = release.data();
  const char* end = release.data() + release.size();
  auto first = std::from_chars(begin, end, major);
  if (first.ec != std::errc() || first.ptr == end || *first.ptr != '.') {
    return std::nullopt;
  }
  auto second = std::from_chars(first.ptr + 1, end, minor);
  if (second.ec != std::errc()) {
    return std::nullopt;
  }
  return std::pair{major, minor};
}

std::optional<std::string> clusterIpProblem(const KernelFacts& facts) {
  auto version = kernelVersion(facts.release);
  if (version && *version >= std::pair{6, 3}) {
    return "kernel " + versionText(facts) + " has no CLUSTERIP (removed in 6.3)";
  }
  if (!facts.clusterip_module) {
    return "kernel " + facts.release +
           " has no ipt_CLUSTERIP module (built without CONFIG_IP_NF_TARGET_CLUSTERIP?)";
  }
  if (!facts.iptables_legacy) {
    return std::string("iptables-legacy-restore/-save are not in PATH (install the iptables "
                       "package)");
  }
  return std::nullopt;
}

Result<Backend> chooseBackend(Backend requested, const KernelFacts& facts) {
  auto clusterip_problem = clusterIpProblem(facts);
  switch (requested) {
    case Backend::Nftables:
      if (!facts.nftables_works) {
        return Error{"dataplane: nftables requested, but on kernel " + versionText(facts) +
                     " it does not work: " + facts.nftables_problem +
                     (clusterip_problem ? std::string() : "; clusterip would work here")};
      }
      return Backend::Nftables;
    case Backend::ClusterIp:
      if (clusterip_problem) {
        return Error{"dataplane: clusterip requested, but " + *clusterip_problem +
                     (facts.nftables_works ? "; use nftables" : "")};
      }
      return Backend::ClusterIp;
    case Backend::Auto:
      if (facts.nftables_works) {
        return Backend::Nftables;
      }
      if (!clusterip_problem) {
        return Backend::ClusterIp;
      }
      return Error{"dataplane: no backend works on kernel " + versionText(facts) +
                   ": nftables: " + facts.nftables_problem + "; clusterip: " +
                   *clusterip_problem};
  }
  return Error{"dataplane: unknown backend"};
}

namespace {

// Whether the kernel takes the timed set and its lookup: checked, not committed (a dry run:
// the kernel validates the whole transaction and aborts it).
// Whether the kernel takes `script` (checked, never committed).
bool kernelTakes(const char* script) {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    return false;
  }
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  nft_ctx_set_dry_run(ctx, true);
  const int rc = nft_run_cmd_from_buffer(ctx, script);
  nft_ctx_free(ctx);
  return rc == 0;
}

bool timedSetsWork() {
  return kernelTakes(
      "table inet shoal_probe {\n"
      "  set t { typeof meta mark . meta time; flags interval; }\n"
      "  chain c { meta mark . meta time @t accept; }\n"
      "}\n");
}

// The statements gap bridging uses (nft_ruleset.cpp), in both families.
bool gapBridgingWorks() {
  return kernelTakes(
      "table inet shoal_probe {\n"
      "  set s { typeof ip saddr . th sport . ip id . @th,32,32; size 16; "
      "flags dynamic,timeout; timeout 50ms; }\n"
      "  set s6 { typeof ip6 saddr . th sport . @th,32,32; size 16; "
      "flags dynamic,timeout; timeout 50ms; }\n"
      "  chain c {\n"
      "    ip saddr . th sport . ip id . @th,32,32 @s delete @s { ip saddr . th sport . ip id . "
      "@th,32,32 } counter accept\n"
      "    add @s { ip saddr . th sport . ip id . @th,32,32 }\n"
      "    add @s6 { ip6 saddr . th sport . @th,32,32 }\n"
      "  }\n"
      "}\n"
      "table ip shoal_probe {\n"
      "  map m { typeof meta mark . meta time : ip daddr; flags interval; }\n"
      "  chain c { type filter hook prerouting priority mangle - 5; "
      "dup to meta mark . meta time map @m; }\n"
      "}\n"
      "table ip6 shoal_probe {\n"
      "  map m { typeof meta mark . meta time : ip6 daddr; flags interval; }\n"
      "  chain c { type filter hook prerouting priority mangle - 5; "
      "dup to meta mark . meta time map @m; }\n"
      "}\n");
}

}  // namespace

KernelFacts probeKernel() {
  KernelFacts facts;
  utsname name{};
  if (::uname(&name) == 0) {
    facts.release = name.release;
  }
  facts.clusterip_module = fileContains("/proc/net/ip_tables_targets", "CLUSTERIP") ||
                           moduleAvailable(facts.release, "ipt_CLUSTERIP");
  facts.iptables_legacy = inPath("iptables-legacy-restore") && inPath("iptables-legacy-save");

  // A read-only question to the kernel: does it speak nf_tables at all?
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    facts.nftables_problem = "libnftables could not create a context";
    return facts;
  }
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  int rc = nft_run_cmd_from_buffer(ctx, "list tables");
  std::string error = nft_ctx_get_error_buffer(ctx);
  nft_ctx_free(ctx);
  if (rc != 0) {
    while (!error.empty() && error.back() == '\n') {
      error.pop_back();
    }
    facts.nftables_problem = "nf_tables does not answer (" + error + ")";
  } else if (moduleCertainlyMissing(facts.release, "nft_hash")) {
    facts.nftables_problem = "the nft_hash module (jhash) is missing";
  } else {
    facts.nftables_works = true;
    facts.nftables_timed = timedSetsWork();
    facts.nftables_gap_bridging = facts.nftables_timed && gapBridgingWorks();
  }
  return facts;
}

namespace {

// Lets the CLUSTERIP backend own a handle to a shared address manager.
class SharedVipAddresses final : public VipAddresses {
 public:
  explicit SharedVipAddresses(std::shared_ptr<VipAddresses> inner) : inner_(std::move(inner)) {}
  Result<bool> ensure(const std::string& interface, const IpAddress& vip) override {
    return inner_->ensure(interface, vip);
  }
  Status remove(const std::string& interface, const IpAddress& vip) override {
    return inner_->remove(interface, vip);
  }
  std::string removeCommand(const std::string& interface, const IpAddress& vip) const override {
    return inner_->removeCommand(interface, vip);
  }

 private:
  std::shared_ptr<VipAddresses> inner_;
};

}  // namespace

Result<std::unique_ptr<Dataplane>> makeDataplane(const ClusterDefinition& definition,
                                                 const DataplaneSettings& settings) {
  Backend requested = settings.backend.value_or(definition.backend);
  KernelFacts facts = settings.facts ? *settings.facts : probeKernel();
  auto backend = chooseBackend(requested, facts);
  if (!backend) {
    return backend.error();
  }
  if (*backend == Backend::ClusterIp) {
    if (Status ok = ClusterIpDataplane::checkServices(definition.services); !ok) {
      return Error{"dataplane: clusterip backend: " + ok.error().message};
    }
    std::unique_ptr<VipAddresses> addresses;
    if (settings.addresses) {
      addresses = std::make_unique<SharedVipAddresses>(settings.addresses);
    }
    std::string script = settings.clusterip_fail_safe_script;
    if (auto at = script.find("{pid}"); at != std::string::npos) {
      script.replace(at, 5, std::to_string(::getpid()));
    }
    std::unique_ptr<Dataplane> dataplane = std::make_unique<ClusterIpDataplane>(
        systemClusterIpParts(script, std::move(addresses)));
    return dataplane;
  }
  NftablesOptions options;
  options.vip_ledger = settings.vip_ledger;
  options.ruleset.timed_sets = facts.nftables_timed;
  options.ruleset.gap_bridging = facts.nftables_gap_bridging && settings.gap_bridging;
  if (settings.renew_on_send) {
    options.ruleset.renew_sport = definition.port;
    options.ruleset.renew_uid = static_cast<uint32_t>(::geteuid());
    options.ruleset.renew_lease = leaseLength(definition.timing);
  }
  auto nftables = NftablesDataplane::open(std::move(options));
  if (!nftables) {
    return Error{"dataplane: nftables backend: " + nftables.error().message};
  }
  return std::unique_ptr<Dataplane>(std::move(nftables).value());
}

}  // namespace shoal::dataplane
