#include "dataplane/vip_addresses.h"

#include <linux/if_addr.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <fstream>

namespace shoal::dataplane {
namespace {

int familyOf(const IpAddress& ip) { return ip.isV4() ? AF_INET : AF_INET6; }
unsigned lengthOf(const IpAddress& ip) { return ip.isV4() ? 4 : 16; }

std::string where(const std::string& interface, const IpAddress& vip) {
  return "VIP " + vip.toString() + " on " + interface;
}

// An rtnl_addr for vip/32 or vip/128 on ifindex; the caller frees it with rtnl_addr_put.
rtnl_addr* buildAddress(int ifindex, const IpAddress& vip) {
  rtnl_addr* addr = rtnl_addr_alloc();
  if (addr == nullptr) return nullptr;
  nl_addr* local = nl_addr_build(familyOf(vip), vip.bytes.data(), lengthOf(vip));
  if (local == nullptr) {
    rtnl_addr_put(addr);
    return nullptr;
  }
  nl_addr_set_prefixlen(local, static_cast<int>(lengthOf(vip) * 8));
  rtnl_addr_set_ifindex(addr, ifindex);
  rtnl_addr_set_family(addr, familyOf(vip));
  rtnl_addr_set_local(addr, local);
  rtnl_addr_set_prefixlen(addr, static_cast<int>(lengthOf(vip) * 8));
  nl_addr_put(local);
  // Every node holds the same VIP: duplicate address detection would disable it.
  if (!vip.isV4()) rtnl_addr_set_flags(addr, IFA_F_NODAD);
  return addr;
}

}  // namespace

Result<std::unique_ptr<NetlinkVipAddresses>> NetlinkVipAddresses::open(std::string ledger) {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return Error{"libnl: cannot allocate a netlink socket"};
  const int rc = nl_connect(sock, NETLINK_ROUTE);
  if (rc < 0) {
    nl_socket_free(sock);
    return Error{std::string("libnl: cannot connect to NETLINK_ROUTE: ") + nl_geterror(rc)};
  }
  std::unique_ptr<NetlinkVipAddresses> self(new NetlinkVipAddresses(sock));
  self->ledger_ = std::move(ledger);
  if (!self->ledger_.empty()) {
    std::ifstream in(self->ledger_);
    std::string interface;
    std::string text;
    while (in >> interface >> text) {
      if (auto vip = IpAddress::parse(text)) {
        self->ours_.insert({interface, *vip});
      }
    }
  }
  return self;
}

void NetlinkVipAddresses::saveLedger() const {
  if (ledger_.empty()) return;
  const std::string tmp = ledger_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [interface, vip] : ours_) out << interface << ' ' << vip.toString() << '\n';
    if (!out) return;  // the in-memory set still holds; the next change tries again
  }
  std::rename(tmp.c_str(), ledger_.c_str());
}

NetlinkVipAddresses::~NetlinkVipAddresses() { nl_socket_free(sock_); }

Result<bool> NetlinkVipAddresses::present(const std::string& interface, const IpAddress& vip) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex == 0) return Error{"interface '" + interface + "' does not exist"};
  nl_cache* cache = nullptr;
  const int rc = rtnl_addr_alloc_cache(sock_, &cache);
  if (rc < 0) return Error{std::string("libnl: cannot read addresses: ") + nl_geterror(rc)};
  bool found = false;
  for (nl_object* obj = nl_cache_get_first(cache); obj != nullptr && !found;
       obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_ifindex(addr) != ifindex || rtnl_addr_get_family(addr) != familyOf(vip)) {
      continue;
    }
    nl_addr* local = rtnl_addr_get_local(addr);
    found = local != nullptr && nl_addr_get_len(local) == lengthOf(vip) &&
            std::memcmp(nl_addr_get_binary_addr(local), vip.bytes.data(), lengthOf(vip)) == 0;
  }
  nl_cache_free(cache);
  return found;
}

Result<bool> NetlinkVipAddresses::ensure(const std::string& interface, const IpAddress& vip) {
  auto there = present(interface, vip);
  if (!there) return there.error();
  if (*there) return false;  // ours already, or someone else's that we must leave alone
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  rtnl_addr* addr = buildAddress(ifindex, vip);
  if (addr == nullptr) return Error{"libnl: out of memory building " + where(interface, vip)};
  const int rc = rtnl_addr_add(sock_, addr, NLM_F_EXCL);
  rtnl_addr_put(addr);
  if (rc == -NLE_EXIST) return false;
  if (rc < 0) return Error{"cannot add " + where(interface, vip) + ": " + nl_geterror(rc)};
  ours_.insert({interface, vip});
  saveLedger();
  return true;
}

std::string NetlinkVipAddresses::removeCommand(const std::string& interface,
                                               const IpAddress& vip) const {
  return "ip addr del " + vip.toString() + (vip.isV4() ? "/32" : "/128") + " dev " + interface;
}

Status NetlinkVipAddresses::remove(const std::string& interface, const IpAddress& vip) {
  if (!addedByUs(interface, vip)) return Ok{};
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  ours_.erase({interface, vip});
  saveLedger();
  if (ifindex == 0) return Ok{};  // the interface is gone, and the address with it
  rtnl_addr* addr = buildAddress(ifindex, vip);
  if (addr == nullptr) return Error{"libnl: out of memory building " + where(interface, vip)};
  const int rc = rtnl_addr_delete(sock_, addr, 0);
  rtnl_addr_put(addr);
  if (rc < 0 && rc != -NLE_NOADDR && rc != -NLE_OBJ_NOTFOUND && rc != -NLE_NODEV) {
    return Error{"cannot remove " + where(interface, vip) + ": " + nl_geterror(rc)};
  }
  return Ok{};
}

bool NetlinkVipAddresses::addedByUs(const std::string& interface, const IpAddress& vip) const {
  return ours_.count({interface, vip}) != 0;
}

}  // namespace shoal::dataplane
