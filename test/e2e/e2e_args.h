#pragma once
// Small command-line helpers shared by the end-to-end test programs (agent, responder,
// flow client). Header-only so each program stays one self-contained binary.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "core/cluster_definition.h"
#include "core/result.h"

namespace shoal::e2e {

/// Splits `text` at every `sep` (empty pieces kept).
inline std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

/// Parses "0:3:6", "0,3,6" or "-" (none) into sorted bucket numbers; nullopt on bad input.
inline std::optional<std::vector<uint32_t>> parseBuckets(const std::string& text) {
  std::vector<uint32_t> out;
  if (text.empty() || text == "-") return out;
  std::string norm = text;
  for (char& c : norm) {
    if (c == ':') c = ',';
  }
  for (const auto& piece : split(norm, ',')) {
    if (piece.empty()) return std::nullopt;
    char* end = nullptr;
    const unsigned long v = std::strtoul(piece.c_str(), &end, 0);
    if (*end != '\0') return std::nullopt;
    out.push_back(static_cast<uint32_t>(v));
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// "sourceip", "sourceip-sourceport", "sourceip-sourceport-destport".
inline std::optional<HashMode> parseHashMode(const std::string& text) {
  for (HashMode m : {HashMode::SourceIp, HashMode::SourceIpSourcePort,
                     HashMode::SourceIpSourcePortDestPort}) {
    if (text == toString(m)) return m;
  }
  return std::nullopt;
}

/// One service on the command line with its buckets:
/// name=web,vip=10.0.0.100,dev=eth0,mac=01:00:5e:01:02:03,hash=sourceip,buckets=16,
/// seed=0x5eed,owned=0:3:6,reset=3
struct ServiceSpec {
  Service service;
  std::vector<uint32_t> owned;
  std::vector<uint32_t> reset;
};

/// Parses a ServiceSpec; the error names the bad key or value.
inline Result<ServiceSpec> parseServiceSpec(const std::string& text) {
  ServiceSpec spec;
  spec.service.name = "svc";
  for (const auto& item : split(text, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      return Error{"expected key=value, got '" + item + "'"};
    }
    const std::string key = item.substr(0, eq);
    const std::string value = item.substr(eq + 1);
    bool ok = true;
    if (key == "name") {
      spec.service.name = value;
    } else if (key == "vip") {
      auto ip = IpAddress::parse(value);
      ok = ip.has_value();
      if (ok) spec.service.vip = *ip;
    } else if (key == "dev") {
      spec.service.interface = value;
    } else if (key == "mac") {
      auto mac = MacAddress::parse(value);
      ok = mac.has_value();
      if (ok) spec.service.cluster_mac = *mac;
    } else if (key == "hash") {
      auto mode = parseHashMode(value);
      ok = mode.has_value();
      if (ok) spec.service.hash = *mode;
    } else if (key == "buckets") {
      spec.service.buckets = static_cast<uint32_t>(std::strtoul(value.c_str(), nullptr, 0));
    } else if (key == "seed") {
      spec.service.seed = static_cast<uint32_t>(std::strtoul(value.c_str(), nullptr, 0));
    } else if (key == "owned" || key == "reset") {
      auto b = parseBuckets(value);
      ok = b.has_value();
      if (ok) (key == "owned" ? spec.owned : spec.reset) = *b;
    } else {
      ok = false;
    }
    if (!ok) {
      return Error{"bad " + key + " '" + value + "'"};
    }
  }
  return spec;
}

}  // namespace shoal::e2e
