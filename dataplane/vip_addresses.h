#pragma once
// VIP addresses on the LAN interface: added and removed idempotently, and never removing an
// address that shoal did not add (an operator's own address must survive shoal).
//
// The interface is shared by every backend. clusterip_dataplane.h still carries a
// token-identical copy of it and defines the default removeCommand(); once it includes this
// header instead, that copy goes.

#include <memory>
#include <set>
#include <string>
#include <utility>

#include "core/ip_address.h"
#include "core/result.h"

struct nl_sock;

namespace shoal::dataplane {

/// Puts VIP addresses on interfaces and takes them off (the netlink address manager in
/// production; a recording fake in tests). The CLUSTERIP backend needs the VIP as a local
/// address so the kernel accepts and answers for it; the multicast MAC it joins itself.
class VipAddresses {
 public:
  virtual ~VipAddresses() = default;
  /// Makes sure `vip` is an address of `interface`; true when it had to add it now.
  virtual Result<bool> ensure(const std::string& interface, const IpAddress& vip) = 0;
  /// Removes `vip` from `interface`; no error when it is not there.
  virtual Status remove(const std::string& interface, const IpAddress& vip) = 0;
  /// Shell command that removes the address, for the fail-safe release script.
  virtual std::string removeCommand(const std::string& interface, const IpAddress& vip) const;
};

/// VipAddresses through libnl-route (rtnl_addr) on a NETLINK_ROUTE socket of its own.
/// Addresses are /32 or /128; IPv6 ones skip duplicate address detection (every node holds
/// the same VIP). An address that was there before ensure() stays someone else's: remove()
/// leaves it. Which addresses this object added is kept in memory only, so after a restart
/// a VIP left by the previous process counts as someone else's until it is removed by hand.
class NetlinkVipAddresses final : public VipAddresses {
 public:
  /// Opens the netlink socket. Errors: socket or connect failed.
  static Result<std::unique_ptr<NetlinkVipAddresses>> open();
  ~NetlinkVipAddresses() override;
  NetlinkVipAddresses(const NetlinkVipAddresses&) = delete;
  NetlinkVipAddresses& operator=(const NetlinkVipAddresses&) = delete;

  /// Adds the address if missing. Errors: unknown interface, kernel refusal.
  Result<bool> ensure(const std::string& interface, const IpAddress& vip) override;
  /// Removes the address if this object added it; otherwise does nothing.
  Status remove(const std::string& interface, const IpAddress& vip) override;
  /// `ip addr del VIP/32|/128 dev IF`.
  std::string removeCommand(const std::string& interface, const IpAddress& vip) const override;

  /// Whether `vip` is currently on `interface` (whoever added it).
  Result<bool> present(const std::string& interface, const IpAddress& vip);
  /// Whether this object added `vip` on `interface` and has not removed it since.
  bool addedByUs(const std::string& interface, const IpAddress& vip) const;

 private:
  explicit NetlinkVipAddresses(::nl_sock* sock) : sock_(sock) {}
  ::nl_sock* sock_;
  std::set<std::pair<std::string, IpAddress>> ours_;
};

}  // namespace shoal::dataplane
