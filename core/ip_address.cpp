#include "core/ip_address.h"

#include <arpa/inet.h>

#include <cstdio>
#include <string>

namespace shoal {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return std::nullopt;
  }
  const std::string s(text);  // inet_pton needs a NUL-terminated string
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = Family::V4;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = Family::V6;
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(isV4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

bool IpAddress::isMulticast() const {
  return isV4() ? bytes[0] >= 224 && bytes[0] <= 239 : bytes[0] == 0xff;
}

bool IpAddress::isLoopback() const {
  if (isV4()) {
    return bytes[0] == 127;
  }
  bool zero_prefix = true;
  for (int i = 0; i < 15; ++i) {
    zero_prefix = zero_prefix && bytes[i] == 0;
  }
  return zero_prefix && bytes[15] == 1;
}

bool IpAddress::isUnusableAsVip() const {
  if (isV4()) {
    const bool unspecified = bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0 && bytes[3] == 0;
    const bool broadcast = bytes[0] == 255 && bytes[1] == 255 && bytes[2] == 255 && bytes[3] == 255;
    return unspecified || broadcast || isLoopback() || isMulticast();
  }
  bool zero_prefix = true;
  for (int i = 0; i < 15; ++i) {
    zero_prefix = zero_prefix && bytes[i] == 0;
  }
  const bool unspecified = zero_prefix && bytes[15] == 0;
  return unspecified || isLoopback() || isMulticast();
}

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
  // Exactly six two-digit hex groups with one consistent separator.
  if (text.size() != 17) {
    return std::nullopt;
  }
  const char sep = text[2];
  if (sep != ':' && sep != '-') {
    return std::nullopt;
  }
  MacAddress m;
  for (int i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != sep) {
      return std::nullopt;
    }
    int v = 0;
    for (int j = 0; j < 2; ++j) {
      const char c = text[i * 3 + j];
      int d = 0;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return std::nullopt;
      }
      v = v * 16 + d;
    }
    m.bytes[i] = static_cast<uint8_t>(v);
  }
  return m;
}

std::string MacAddress::toString() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                bytes[3], bytes[4], bytes[5]);
  return buf;
}

bool MacAddress::isBroadcast() const {
  for (uint8_t b : bytes) {
    if (b != 0xff) {
      return false;
    }
  }
  return true;
}

}  // namespace shoal
