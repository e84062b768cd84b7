#include "dataplane/mac_membership.h"

#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shoal::dataplane {
namespace {

std::string errnoText() { return std::strerror(errno); }

std::string compactHex(const MacAddress& mac) {
  char buf[13];
  for (int i = 0; i < 6; ++i) std::snprintf(buf + 2 * i, 3, "%02x", mac.bytes[static_cast<std::size_t>(i)]);
  return buf;
}

}  // namespace

Result<std::unique_ptr<PacketSocketMemberships>> PacketSocketMemberships::open() {
  // Protocol 0: the socket is bound to no ethertype and receives nothing; it only holds joins.
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error{"cannot open a packet socket to join the cluster MAC (needs CAP_NET_RAW): " +
                 errnoText()};
  }
  return std::unique_ptr<PacketSocketMemberships>(new PacketSocketMemberships(fd));
}

PacketSocketMemberships::~PacketSocketMemberships() { close(fd_); }

Status PacketSocketMemberships::change(int option, int ifindex, const MacAddress& mac) {
  packet_mreq req{};
  req.mr_ifindex = ifindex;
  req.mr_type = PACKET_MR_MULTICAST;
  req.mr_alen = 6;
  std::memcpy(req.mr_address, mac.bytes.data(), 6);
  if (setsockopt(fd_, SOL_PACKET, option, &req, sizeof req) != 0) {
    return Error{std::string(option == PACKET_ADD_MEMBERSHIP ? "join" : "leave") + " of " +
                 mac.toString() + " failed: " + errnoText()};
  }
  return Ok{};
}

Status PacketSocketMemberships::join(const std::string& interface, const MacAddress& mac) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex == 0) return Error{"interface '" + interface + "' does not exist"};
  const auto key = std::make_pair(interface, mac);
  auto it = joined_.find(key);
  if (it != joined_.end()) {
    auto there = present(interface, mac);
    if (!there) return there.error();
    if (it->second == ifindex && *there) return Ok{};
    // The interface was re-created or the join lost: drop the stale one, join again.
    if (it->second == ifindex) (void)change(PACKET_DROP_MEMBERSHIP, it->second, mac);
    joined_.erase(it);
  }
  Status st = change(PACKET_ADD_MEMBERSHIP, ifindex, mac);
  if (!st) return Error{"interface " + interface + ": " + st.error().message};
  joined_[key] = ifindex;
  return Ok{};
}

Status PacketSocketMemberships::leave(const std::string& interface, const MacAddress& mac) {
  auto it = joined_.find({interface, mac});
  if (it == joined_.end()) return Ok{};
  const int ifindex = it->second;
  joined_.erase(it);
  if (static_cast<int>(if_nametoindex(interface.c_str())) != ifindex) return Ok{};  // gone
  Status st = change(PACKET_DROP_MEMBERSHIP, ifindex, mac);
  if (!st && errno != EADDRNOTAVAIL && errno != ENODEV) {
    return Error{"interface " + interface + ": " + st.error().message};
  }
  return Ok{};
}

Result<bool> PacketSocketMemberships::present(const std::string& interface,
                                              const MacAddress& mac) {
  // /proc/net/dev_mcast (this network namespace): "ifindex name users global hexaddr".
  std::ifstream in("/proc/net/dev_mcast");
  if (!in) return Error{"cannot read /proc/net/dev_mcast: " + errnoText()};
  const std::string want = compactHex(mac);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string index, name, users, global, address;
    if (!(fields >> index >> name >> users >> global >> address)) continue;
    if (name == interface && address == want) return true;
  }
  return false;
}

Result<MacAddress> PacketSocketMemberships::hardwareAddress(const std::string& interface) {
  ifreq req{};
  if (interface.size() >= sizeof req.ifr_name) return Error{"interface name too long: " + interface};
  std::memcpy(req.ifr_name, interface.c_str(), interface.size());
  if (ioctl(fd_, SIOCGIFHWADDR, &req) != 0) {
    return Error{"cannot read the hardware address of '" + interface + "': " + errnoText()};
  }
  if (req.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    return Error{"interface '" + interface + "' is not Ethernet; shoal needs an Ethernet LAN"};
  }
  MacAddress mac;
  std::memcpy(mac.bytes.data(), req.ifr_hwaddr.sa_data, 6);
  return mac;
}

}  // namespace shoal::dataplane
