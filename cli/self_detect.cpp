#include "cli/self_detect.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace shoal::daemon {

namespace {

struct LocalAddress {
  IpAddress address;
  std::string interface;
};

// Every address configured on a local interface; nullopt if they cannot be listed.
std::optional<std::vector<LocalAddress>> localAddresses() {
  std::vector<LocalAddress> local;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return std::nullopt;
  }
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) {
      continue;
    }
    IpAddress a;
    if (i->ifa_addr->sa_family == AF_INET) {
      a.family = IpAddress::Family::V4;
      std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      a.family = IpAddress::Family::V6;
      std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
    } else {
      continue;
    }
    local.push_back({a, i->ifa_name != nullptr ? i->ifa_name : ""});
  }
  ::freeifaddrs(list);
  return local;
}

int readSysctl(const std::string& path) {
  std::ifstream in(path);
  int v = -1;
  in >> v;
  return in ? v : -1;
}

}  // namespace

std::vector<std::string> strictReversePathInterfaces(const std::vector<IpAddress>& addresses) {
  std::vector<std::string> out;
  const auto local = localAddresses();
  if (!local) {
    return out;
  }
  const int all = readSysctl("/proc/sys/net/ipv4/conf/all/rp_filter");
  for (const LocalAddress& l : *local) {
    if (!l.address.isV4() ||
        std::find(addresses.begin(), addresses.end(), l.address) == addresses.end()) {
      continue;
    }
    // The kernel applies the larger of the two values.
    const int own = readSysctl("/proc/sys/net/ipv4/conf/" + l.interface + "/rp_filter");
    if (std::max(all, own) == 1 && std::find(out.begin(), out.end(), l.interface) == out.end()) {
      out.push_back(l.interface);
    }
  }
  return out;
}

Result<uint32_t> detectSelf(const ClusterDefinition& def) {
  const auto listed = localAddresses();
  if (!listed) {
    return Error{"cannot list local addresses; give the node with --node NAME"};
  }
  std::vector<uint32_t> matches;
  for (uint32_t n = 0; n < def.nodes.size(); ++n) {
    for (const IpAddress& a : def.nodes[n].addresses) {
      bool found = false;
      for (const LocalAddress& l : *listed) {
        found = found || l.address == a;
      }
      if (found) {
        matches.push_back(n);
        break;
      }
    }
  }
  if (matches.size() == 1) {
    return matches[0];
  }
  if (matches.empty()) {
    return Error{"none of the nodes' management addresses is configured on this machine; "
                 "give the node with --node NAME"};
  }
  std::string names;
  for (uint32_t n : matches) {
    names += (names.empty() ? "" : ", ") + def.nodes[n].name;
  }
  return Error{"addresses of several nodes are local (" + names + "); give the node with --node"};
}

}  // namespace shoal::daemon
