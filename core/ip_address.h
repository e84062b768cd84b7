#pragma once
// IPv4/IPv6 addresses as plain values, parsed and printed with inet_pton/ntop.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shoal {

/// An IPv4 or IPv6 address. IPv4 addresses use the first 4 bytes of `bytes`.
struct IpAddress {
  enum class Family : uint8_t { V4 = 4, V6 = 6 };
  Family family = Family::V4;
  std::array<uint8_t, 16> bytes{};

  /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nullopt if it is neither.
  static std::optional<IpAddress> parse(std::string_view text);
  /// Canonical text form (inet_ntop).
  std::string toString() const;
  bool isV4() const { return family == Family::V4; }
  /// 224.0.0.0/4 or ff00::/8.
  bool isMulticast() const;
  /// 127.0.0.0/8 or ::1.
  bool isLoopback() const;
  /// Multicast, broadcast, unspecified or loopback: never valid as a VIP.
  bool isUnusableAsVip() const;
  auto operator<=>(const IpAddress&) const = default;
};

/// An Ethernet MAC address.
struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  /// Parses "01:00:5e:00:00:20" (':' or '-' separated, hex, case-insensitive).
  static std::optional<MacAddress> parse(std::string_view text);
  /// Lower-case colon-separated text.
  std::string toString() const;
  /// The I/G bit: set for multicast (and broadcast) addresses.
  bool isMulticast() const { return (bytes[0] & 0x01) != 0; }
  bool isBroadcast() const;
  auto operator<=>(const MacAddress&) const = default;
};

}  // namespace shoal
