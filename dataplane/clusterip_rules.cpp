#include "dataplane/clusterip_rules.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <sstream>

namespace shoal::dataplane::clusterip {
namespace {

std::vector<std::string_view> splitWords(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      words.push_back(line.substr(start, i - start));
    }
  }
  return words;
}

std::optional<uint32_t> parseNumber(std::string_view text) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::optional<HashMode> parseHashMode(std::string_view text) {
  for (HashMode mode : {HashMode::SourceIp, HashMode::SourceIpSourcePort,
                        HashMode::SourceIpSourcePortDestPort}) {
    if (text == toString(mode)) {
      return mode;
    }
  }
  return std::nullopt;
}

// Reads the words after `-A SHOAL` as one of shoal's CLUSTERIP rules; nullopt when the rule
// carries anything shoal does not write (then it is foreign and goes on repair).
std::optional<RuleSpec> parseRule(const std::vector<std::string_view>& words) {
  RuleSpec rule;
  bool has_vip = false, has_if = false, has_target = false, has_new = false, has_hash = false,
       has_mac = false, has_total = false, has_init = false;
  for (std::size_t i = 2; i < words.size(); ++i) {
    std::string_view word = words[i];
    bool has_value = i + 1 < words.size();
    std::string_view value = has_value ? words[i + 1] : std::string_view();
    if (word == "--new") {
      has_new = true;
      continue;
    }
    if (!has_value) {
      return std::nullopt;
    }
    ++i;
    if (word == "-d") {
      std::string_view address = value;
      if (auto slash = address.find('/'); slash != std::string_view::npos) {
        if (address.substr(slash + 1) != "32") {
          return std::nullopt;
        }
        address = address.substr(0, slash);
      }
      auto vip = IpAddress::parse(address);
      if (!vip || !vip->isV4()) {
        return std::nullopt;
      }
      rule.vip = *vip;
      has_vip = true;
    } else if (word == "-i") {
      rule.interface = std::string(value);
      has_if = true;
    } else if (word == "-j") {
      has_target = value == "CLUSTERIP";
      if (!has_target) {
        return std::nullopt;
      }
    } else if (word == "--hashmode") {
      auto mode = parseHashMode(value);
      if (!mode) {
        return std::nullopt;
      }
      rule.hash = *mode;
      has_hash = true;
    } else if (word == "--clustermac") {
      auto mac = MacAddress::parse(value);
      if (!mac) {
        return std::nullopt;
      }
      rule.cluster_mac = *mac;
      has_mac = true;
    } else if (word == "--total-nodes") {
      auto n = parseNumber(value);
      if (!n) {
        return std::nullopt;
      }
      rule.total_nodes = *n;
      has_total = true;
    } else if (word == "--local-node") {
      if (!parseNumber(value)) {
        return std::nullopt;
      }
    } else if (word == "--hash-init") {
      auto n = parseNumber(value);
      if (!n) {
        return std::nullopt;
      }
      rule.hash_init = *n;
      has_init = true;
    } else {
      return std::nullopt;
    }
  }
  if (!(has_vip && has_if && has_target && has_new && has_hash && has_mac && has_total &&
        has_init)) {
    return std::nullopt;
  }
  return rule;
}

}  // namespace

RuleSpec ruleFor(const Service& service) {
  return RuleSpec{service.vip,         service.interface, service.hash,
                  service.cluster_mac, service.buckets,   service.seed};
}

Status checkService(const Service& service) {
  const std::string where = "service '" + service.name + "': ";
  if (!service.vip.isV4()) {
    return Error{where + "VIP " + service.vip.toString() +
                 " is IPv6, but CLUSTERIP is an IPv4 target; use backend nftables for IPv6 "
                 "services"};
  }
  if (service.buckets < 1 || service.buckets > kMaxClusterIpBuckets) {
    return Error{where + "buckets is " + std::to_string(service.buckets) +
                 ", but CLUSTERIP supports 1.." + std::to_string(kMaxClusterIpBuckets) +
                 " (its --total-nodes limit); lower buckets or use backend nftables"};
  }
  if (service.interface.empty()) {
    return Error{where + "no interface given; CLUSTERIP needs the LAN interface of the VIP"};
  }
  if (!service.cluster_mac.isMulticast() || service.cluster_mac.isBroadcast()) {
    return Error{where + "cluster MAC " + service.cluster_mac.toString() +
                 " is not a multicast MAC; CLUSTERIP needs one (first byte odd, e.g. "
                 "01:00:5e:00:00:20)"};
  }
  return Ok{};
}

Result<KernelRules> parseSave(std::string_view save_output) {
  KernelRules kernel;
  bool in_filter = false;
  bool first_input_rule_seen = false;
  std::size_t line_start = 0;
  int line_number = 0;
  while (line_start < save_output.size()) {
    std::size_t line_end = save_output.find('\n', line_start);
    if (line_end == std::string_view::npos) {
      line_end = save_output.size();
    }
    std::string_view line = save_output.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_number;
    if (line.empty() || line[0] == '#') {
      continue;
    }
    if (line[0] == '*') {
      in_filter = line == "*filter";
      continue;
    }
    if (line == "COMMIT") {
      in_filter = false;
      continue;
    }
    if (line[0] == ':') {
      auto words = splitWords(line.substr(1));
      if (in_filter && !words.empty()) {
        kernel.chain_exists = kernel.chain_exists || words[0] == kChain;
        kernel.staging_exists = kernel.staging_exists || words[0] == kStagingChain;
      }
      continue;
    }
    if (line.rfind("-A ", 0) != 0) {
      return Error{"iptables-legacy-save output line " + std::to_string(line_number) +
                   " is not a chain, rule or table line: '" + std::string(line) + "'"};
    }
    if (!in_filter) {
      continue;
    }
    auto words = splitWords(line);
    if (words.size() < 2) {
      continue;
    }
    if (words[1] == "INPUT") {
      bool is_jump = words.size() == 4 && words[2] == "-j" && words[3] == kChain;
      if (is_jump) {
        ++kernel.jumps;
      }
      if (!first_input_rule_seen) {
        kernel.jump_first = is_jump;
        first_input_rule_seen = true;
      }
    } else if (words[1] == kChain) {
      if (auto rule = parseRule(words)) {
        kernel.rules.push_back(*rule);
      } else {
        kernel.foreign.emplace_back(line);
      }
    }
  }
  return kernel;
}

std::string ruleLine(std::string_view chain, const RuleSpec& rule, uint32_t local_node) {
  std::ostringstream out;
  out << "-A " << chain << " -d " << rule.vip.toString() << "/32 -i " << rule.interface
      << " -j CLUSTERIP --new --hashmode " << toString(rule.hash) << " --clustermac "
      << rule.cluster_mac.toString() << " --total-nodes " << rule.total_nodes
      << " --local-node " << local_node << " --hash-init " << rule.hash_init;
  return out.str();
}

std::string chainScript(const std::vector<WantedRule>& rules, const KernelRules& current) {
  std::ostringstream out;
  out << "*filter\n";
  // With --noflush, declaring an existing user chain flushes it; a missing one is created.
  out << ":" << kChain << " - [0:0]\n";
  for (const WantedRule& wanted : rules) {
    out << ruleLine(kChain, wanted.rule, wanted.local_node) << "\n";
  }
  if (current.jumps != 1 || !current.jump_first) {
    for (uint32_t i = 0; i < current.jumps; ++i) {
      out << "-D INPUT -j " << kChain << "\n";
    }
    out << "-I INPUT 1 -j " << kChain << "\n";
  }
  if (current.staging_exists) {
    out << ":" << kStagingChain << " - [0:0]\n";
    out << "-X " << kStagingChain << "\n";
  }
  out << "COMMIT\n";
  return out.str();
}

std::string stagingScript(const std::vector<WantedRule>& rules) {
  std::ostringstream out;
  out << "*filter\n";
  out << ":" << kStagingChain << " - [0:0]\n";
  for (const WantedRule& wanted : rules) {
    out << ruleLine(kStagingChain, wanted.rule, wanted.local_node) << "\n";
  }
  out << "COMMIT\n";
  return out.str();
}

std::string teardownScript(const KernelRules& current) {
  if (!current.chain_exists && !current.staging_exists && current.jumps == 0) {
    return "";
  }
  std::ostringstream out;
  out << "*filter\n";
  for (uint32_t i = 0; i < current.jumps; ++i) {
    out << "-D INPUT -j " << kChain << "\n";
  }
  for (std::string_view chain : {kChain, kStagingChain}) {
    bool exists = chain == kChain ? current.chain_exists : current.staging_exists;
    if (exists) {
      out << ":" << chain << " - [0:0]\n";
      out << "-X " << chain << "\n";
    }
  }
  out << "COMMIT\n";
  return out.str();
}

std::string failSafeScript(const std::vector<IpAddress>& vips) {
  std::ostringstream out;
  out << "*filter\n";
  out << ":" << kChain << " - [0:0]\n";
  for (const IpAddress& vip : vips) {
    out << "-A " << kChain << " -d " << vip.toString() << "/32 -j DROP\n";
  }
  out << "COMMIT\n";
  return out.str();
}

Result<std::vector<uint32_t>> parseNodeList(std::string_view text) {
  std::vector<uint32_t> nodes;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = text.find_first_of(",\n", i);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view item = text.substr(i, end - i);
    i = end + 1;
    if (item.empty()) {
      continue;
    }
    auto n = parseNumber(item);
    if (!n || *n < 1 || *n > kMaxClusterIpBuckets) {
      return Error{"unexpected CLUSTERIP node list '" + std::string(text) +
                   "' (expected comma-separated numbers 1.." +
                   std::to_string(kMaxClusterIpBuckets) + ")"};
    }
    nodes.push_back(*n);
  }
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  return nodes;
}

std::vector<uint32_t> nodesOf(const std::vector<uint32_t>& buckets) {
  std::vector<uint32_t> nodes;
  nodes.reserve(buckets.size());
  for (uint32_t bucket : buckets) {
    nodes.push_back(nodeNumber(bucket));
  }
  return nodes;
}

std::vector<std::string> responsibilityWrites(const std::vector<uint32_t>& current,
                                              const std::vector<uint32_t>& wanted) {
  std::vector<std::string> writes;
  for (uint32_t node : current) {
    if (!std::binary_search(wanted.begin(), wanted.end(), node)) {
      writes.push_back("-" + std::to_string(node));
    }
  }
  for (uint32_t node : wanted) {
    if (!std::binary_search(current.begin(), current.end(), node)) {
      writes.push_back("+" + std::to_string(node));
    }
  }
  return writes;
}

std::string formatNodes(const std::vector<uint32_t>& nodes) {
  if (nodes.empty()) {
    return "none";
  }
  std::string text;
  for (uint32_t node : nodes) {
    if (!text.empty()) {
      text += ",";
    }
    text += std::to_string(node);
  }
  return text;
}

}  // namespace shoal::dataplane::clusterip
