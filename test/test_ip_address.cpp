#include "core/ip_address.h"

#include <doctest/doctest.h>

using shoal::IpAddress;
using shoal::MacAddress;

TEST_CASE("ip addresses parse and print both families") {
  auto v4 = IpAddress::parse("192.0.2.10");
  REQUIRE(v4.has_value());
  CHECK(v4->isV4());
  CHECK(v4->toString() == "192.0.2.10");
  auto v6 = IpAddress::parse("2001:db8::10");
  REQUIRE(v6.has_value());
  CHECK_FALSE(v6->isV4());
  CHECK(v6->toString() == "2001:db8::10");
  CHECK_FALSE(IpAddress::parse("192.0.2.256").has_value());
  CHECK_FALSE(IpAddress::parse("").has_value());
  CHECK_FALSE(IpAddress::parse("eth0").has_value());
}

TEST_CASE("unusable vips are recognised") {
  CHECK(IpAddress::parse("0.0.0.0")->isUnusableAsVip());
  CHECK(IpAddress::parse("127.0.0.1")->isUnusableAsVip());
  CHECK(IpAddress::parse("239.1.2.3")->isUnusableAsVip());
  CHECK(IpAddress::parse("::1")->isUnusableAsVip());
  CHECK(IpAddress::parse("ff02::1")->isUnusableAsVip());
  CHECK_FALSE(IpAddress::parse("10.0.0.1")->isUnusableAsVip());
  CHECK_FALSE(IpAddress::parse("2001:db8::1")->isUnusableAsVip());
}

TEST_CASE("mac addresses parse strictly and know multicast") {
  auto m = MacAddress::parse("01:00:5E:00:00:20");
  REQUIRE(m.has_value());
  CHECK(m->isMulticast());
  CHECK(m->toString() == "01:00:5e:00:00:20");
  CHECK_FALSE(MacAddress::parse("00:11:22:33:44:55")->isMulticast());
  CHECK(MacAddress::parse("33-33-00-00-00-01").has_value());
  CHECK_FALSE(MacAddress::parse("01:00:5e:00:00").has_value());
  CHECK_FALSE(MacAddress::parse("01:00:5e:00:00:2g").has_value());
  CHECK_FALSE(MacAddress::parse("01:00-5e:00:00:20").has_value());
  CHECK(MacAddress::parse("ff:ff:ff:ff:ff:ff")->isBroadcast());
}

TEST_CASE("multicast and loopback, IPv4 and IPv6") {
  CHECK(IpAddress::parse("224.0.0.0")->isMulticast());
  CHECK(IpAddress::parse("239.255.255.255")->isMulticast());
  CHECK_FALSE(IpAddress::parse("223.255.255.255")->isMulticast());
  CHECK_FALSE(IpAddress::parse("240.0.0.0")->isMulticast());
  CHECK(IpAddress::parse("ff02::1")->isMulticast());
  CHECK_FALSE(IpAddress::parse("fe80::1")->isMulticast());
  CHECK(IpAddress::parse("127.0.0.1")->isLoopback());
  CHECK(IpAddress::parse("127.255.0.9")->isLoopback());
  CHECK_FALSE(IpAddress::parse("128.0.0.1")->isLoopback());
  CHECK(IpAddress::parse("::1")->isLoopback());
  CHECK_FALSE(IpAddress::parse("::")->isLoopback());
  CHECK_FALSE(IpAddress::parse("::2")->isLoopback());
  CHECK(IpAddress::parse("::")->isUnusableAsVip());
  CHECK(IpAddress::parse("::1")->isUnusableAsVip());
  CHECK_FALSE(IpAddress::parse("2001:db8::1")->isUnusableAsVip());
}
