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
/// leaves it. Which addresses shoal added is kept in a ledger file when one is given, so a
/// VIP left by a crashed daemon is still recognised as shoal's (and removed at the next
/// teardown) after a restart; without a ledger it is kept in memory only.
class NetlinkVipAddresses final : public VipAddresses {
 public:
  /// Opens the netlink socket and reads `ledger` (one "INTERFACE ADDRESS" per line; a missing
  /// file is an empty ledger). Errors: socket or connect failed.
  static Result<std::unique_ptr<NetlinkVipAddresses>> open(std::string ledger = {});
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
  /// Rewrites the ledger (temporary file + rename) after `ours_` changed.
  void saveLedger() const;
  ::nl_sock* sock_;
  std::string ledger_;
  std::set<std::pair<std::string, IpAddress>> ours_;
};

}  // namespace shoal::dataplane
