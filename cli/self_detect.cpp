#include "cli/self_detect.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <cstring>
#include <vector>

namespace shoal::daemon {

Result<uint32_t> detectSelf(const ClusterDefinition& def) {
  std::vector<IpAddress> local;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return Error{"cannot list local addresses; give the node with --node NAME"};
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
    local.push_back(a);
  }
  ::freeifaddrs(list);
  std::vector<uint32_t> matches;
  for (uint32_t n = 0; n < def.nodes.size(); ++n) {
    for (const IpAddress& a : def.nodes[n].addresses) {
      bool found = false;
      for (const IpAddress& l : local) {
        found = found || l == a;
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
