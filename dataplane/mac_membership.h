#pragma once
// Link-layer addresses of interfaces: joining the cluster's multicast MAC so the network card
// passes frames sent to it, and reading an interface's own hardware address.

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "core/ip_address.h"
#include "core/result.h"

namespace shoal::dataplane {

/// Joins and leaves multicast MAC addresses on interfaces.
class MacMemberships {
 public:
  virtual ~MacMemberships() = default;
  /// Makes sure `mac` is joined on `interface` (again, if the interface was re-created).
  /// Idempotent. Errors: unknown interface, kernel refusal.
  virtual Status join(const std::string& interface, const MacAddress& mac) = 0;
  /// Leaves a MAC this object joined; otherwise does nothing.
  virtual Status leave(const std::string& interface, const MacAddress& mac) = 0;
  /// Whether the kernel's multicast list of `interface` holds `mac` (whoever joined it).
  virtual Result<bool> present(const std::string& interface, const MacAddress& mac) = 0;
  /// The interface's own hardware address. Errors: unknown interface, not Ethernet-like.
  virtual Result<MacAddress> hardwareAddress(const std::string& interface) = 0;
};

/// MacMemberships through one AF_PACKET socket (PACKET_ADD_MEMBERSHIP). The kernel drops the
/// joins when the socket closes, so a crashed daemon leaves no membership behind.
class PacketSocketMemberships final : public MacMemberships {
 public:
  /// Opens the packet socket (receives no packets). Errors: no CAP_NET_RAW.
  static Result<std::unique_ptr<PacketSocketMemberships>> open();
  ~PacketSocketMemberships() override;
  PacketSocketMemberships(const PacketSocketMemberships&) = delete;
  PacketSocketMemberships& operator=(const PacketSocketMemberships&) = delete;

  Status join(const std::string& interface, const MacAddress& mac) override;
  Status leave(const std::string& interface, const MacAddress& mac) override;
  Result<bool> present(const std::string& interface, const MacAddress& mac) override;
  Result<MacAddress> hardwareAddress(const std::string& interface) override;

 private:
  explicit PacketSocketMemberships(int fd) : fd_(fd) {}
  Status change(int option, int ifindex, const MacAddress& mac);
  int fd_;
  /// (interface, mac) -> ifindex it was joined on.
  std::map<std::pair<std::string, MacAddress>, int> joined_;
};

}  // namespace shoal::dataplane
