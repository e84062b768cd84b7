// The netlink and packet-socket parts against the real kernel, each test in a fresh network
// namespace of its own (unshare), so nothing outside it is touched. Needs root: fails
// (never skips) without it.

#include <doctest/doctest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/backend_select.h"
#include "dataplane/jhash.h"
#include "dataplane/link_monitor.h"
#include "dataplane/mac_membership.h"
#include "dataplane/nftables_dataplane.h"
#include "dataplane/vip_addresses.h"

using namespace shoal;
using namespace shoal::dataplane;

namespace {

// Moves this process into a new, empty network namespace with a veth pair (a0 up, b0 peer).
void freshNamespace() {
  REQUIRE_MESSAGE(geteuid() == 0, "the kernel dataplane tests must run as root");
  REQUIRE(unshare(CLONE_NEWNET) == 0);
  REQUIRE(std::system("ip link set lo up && ip link add a0 type veth peer name b0 && "
                      "ip link set a0 up && ip link set b0 up") == 0);
}

bool shell(const std::string& command) { return std::system(command.c_str()) == 0; }

// An IPv4 service on a0 with 8 buckets.
Service v4Service() {
  Service s;
  s.name = "web";
  s.vip = *IpAddress::parse("10.9.0.100");
  s.interface = "a0";
  s.cluster_mac = *MacAddress::parse("01:00:5e:09:00:64");
  s.buckets = 8;
  s.seed = 7;
  return s;
}

}  // namespace

TEST_CASE("VIP addresses: idempotent add, and only addresses shoal added are removed") {
  freshNamespace();
  auto vips = NetlinkVipAddresses::open();
  REQUIRE(vips.ok());
  const IpAddress vip = *IpAddress::parse("10.9.0.100");
  CHECK(*(*vips)->ensure("a0", vip) == true);
  CHECK(*(*vips)->ensure("a0", vip) == false);
  CHECK(*(*vips)->present("a0", vip));
  REQUIRE((*vips)->remove("a0", vip).ok());
  CHECK_FALSE(*(*vips)->present("a0", vip));
  CHECK((*vips)->remove("a0", vip).ok());  // already gone: fine

  // An operator's address: ensure() leaves it someone else's, remove() does not touch it.
  REQUIRE(shell("ip addr add 10.9.0.101/32 dev a0"));
  const IpAddress theirs = *IpAddress::parse("10.9.0.101");
  CHECK(*(*vips)->ensure("a0", theirs) == false);
  REQUIRE((*vips)->remove("a0", theirs).ok());
  CHECK(*(*vips)->present("a0", theirs));

  // IPv6 VIPs skip duplicate address detection: usable at once, never "tentative".
  const IpAddress vip6 = *IpAddress::parse("fd09::100");
  CHECK(*(*vips)->ensure("a0", vip6) == true);
  CHECK(shell("ip -6 addr show dev a0 | grep -q 'fd09::100/128'"));
  CHECK_FALSE(shell("ip -6 addr show dev a0 | grep 'fd09::100' | grep -q tentative"));
  CHECK_FALSE((*vips)->ensure("nosuch0", vip).ok());
}

TEST_CASE("cluster MAC joins show in the kernel and vanish with the socket") {
  freshNamespace();
  const MacAddress mac = *MacAddress::parse("01:00:5e:09:00:64");
  {
    auto macs = PacketSocketMemberships::open();
    REQUIRE(macs.ok());
    REQUIRE((*macs)->join("a0", mac).ok());
    REQUIRE((*macs)->join("a0", mac).ok());
    CHECK(*(*macs)->present("a0", mac));
    REQUIRE((*macs)->leave("a0", mac).ok());
    CHECK_FALSE(*(*macs)->present("a0", mac));
    REQUIRE((*macs)->join("a0", mac).ok());
    auto own = (*macs)->hardwareAddress("a0");
    REQUIRE(own.ok());
    CHECK_FALSE(own->isMulticast());
  }
  // The object (and its socket) is gone, as after a crash: so is the join.
  auto probe = PacketSocketMemberships::open();
  REQUIRE(probe.ok());
  CHECK_FALSE(*(*probe)->present("a0", mac));
}

TEST_CASE("link monitor reports down and up changes through its fd and process()") {
  freshNamespace();
  std::vector<LinkEvent> events;
  auto monitor = NetlinkLinkMonitor::open([&](const LinkEvent& e) { events.push_back(e); });
  REQUIRE(monitor.ok());
  CHECK((*monitor)->isUp("a0") == true);
  auto drain = [&] {
    for (int i = 0; i < 20; ++i) {
      pollfd p{(*monitor)->fd(), POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) break;
      REQUIRE((*monitor)->process().ok());
    }
  };
  // The last event about `name` since index `from`, if any.
  auto lastFor = [&](const std::string& name, std::size_t from) -> std::optional<bool> {
    std::optional<bool> up;
    for (std::size_t i = from; i < events.size(); ++i) {
      if (events[i].interface == name) up = events[i].up;
    }
    return up;
  };
  REQUIRE(shell("ip link set a0 down"));
  drain();
  CHECK(lastFor("a0", 0) == false);
  CHECK(lastFor("b0", 0) == false);  // its peer lost the carrier
  const std::size_t seen = events.size();
  REQUIRE(shell("ip link set a0 up"));
  drain();
  CHECK(lastFor("a0", seen) == true);
  CHECK(lastFor("b0", seen) == true);
  CHECK((*monitor)->isUp("a0") == true);
}

TEST_CASE("nftables dataplane: owned tables vanish with the process, the guard stays") {
  freshNamespace();
  const Service s = v4Service();
  {
    auto dp = NftablesDataplane::open();
    REQUIRE(dp.ok());
    REQUIRE((*dp)->apply(DesiredState{{ServiceAssignment{s, {1, 2}, {}, {}, {}, {}}}}).ok());
    CHECK(shell("nft list table inet shoal | grep -q 'elements = { 0x53480001, 0x53480002 }'"));
    CHECK(shell("nft list table inet shoal_guard >/dev/null"));
    std::string loose;
    std::ifstream(kTcpLooseSysctl) >> loose;
    CHECK(loose == "0");
    // Another process cannot flush shoal's owned tables, only the guard; the check restores it.
    REQUIRE(shell("nft flush ruleset"));
    CHECK(shell("nft list table inet shoal >/dev/null"));
    auto report = (*dp)->checkAndRepair();
    REQUIRE(report.ok());
    CHECK(report->repaired == 2);
    CHECK(shell("nft list table inet shoal_guard >/dev/null"));
    auto again = (*dp)->checkAndRepair();
    REQUIRE(again.ok());
    CHECK(again->repaired == 0);
    // With no commit since, the next check trusts the generation; a flush is a commit and is
    // repaired as the first one was.
    REQUIRE(shell("nft flush ruleset"));
    auto after_flush = (*dp)->checkAndRepair();
    REQUIRE(after_flush.ok());
    CHECK(after_flush->repaired == report->repaired);
  }
  // The dataplane (and its netlink socket) is gone without teardown, as after kill -9.
  CHECK_FALSE(shell("nft list table inet shoal >/dev/null 2>&1"));
  CHECK_FALSE(shell("nft list table arp shoal >/dev/null 2>&1"));
  CHECK(shell("nft list table inet shoal_guard | grep -q '10.9.0.100'"));
}

TEST_CASE("ruleset generation: steady without commits, moved by anyone's commit") {
  freshNamespace();
  auto session = LibNftablesSession::open();
  REQUIRE(session.ok());
  const auto first = (*session)->generation();
  REQUIRE(first.has_value());
  REQUIRE((*session)->run("list ruleset").ok());  // reading is not a commit
  CHECK((*session)->generation() == first);
  REQUIRE(shell("nft add table ip shoal_generation_probe"));
  const auto second = (*session)->generation();
  REQUIRE(second.has_value());
  CHECK(*second != *first);
  REQUIRE((*session)->run("delete table ip shoal_generation_probe").ok());
  CHECK((*session)->generation() != second);
}

TEST_CASE("nftables dataplane: teardown removes every table and the VIP it added") {
  freshNamespace();
  Service s;
  s.name = "web";
  s.vip = *IpAddress::parse("fd09::100");
  s.interface = "a0";
  s.cluster_mac = *MacAddress::parse("33:33:00:09:01:00");
  auto dp = NftablesDataplane::open();
  REQUIRE(dp.ok());
  REQUIRE((*dp)->apply(DesiredState{{ServiceAssignment{s, {0}, {}, {}, {}, {}}}}).ok());
  CHECK(shell("ip -6 addr show dev a0 | grep -q 'fd09::100'"));
  REQUIRE((*dp)->teardown().ok());
  CHECK_FALSE(shell("ip -6 addr show dev a0 | grep -q 'fd09::100'"));
  CHECK_FALSE(shell("nft list tables | grep -q shoal"));
}

TEST_CASE("nftables dataplane: the live element expires in the kernel, bucket sets stay, and "
          "a renewal brings it back") {
  freshNamespace();
  const Service s = v4Service();
  auto dp = NftablesDataplane::open();
  REQUIRE(dp.ok());
  DesiredState d{{ServiceAssignment{s, {1, 2}, {2}, {}, {}, {}}}};
  d.lease = Millis{300};
  REQUIRE((*dp)->apply(d).ok());
  CHECK(shell("nft list set inet shoal s0_owned | "
              "grep -q 'elements = { 0x53480001, 0x53480002 }'"));
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 300ms expires'"));
  // The gate the kernel loaded, as nft reads it back.
  CHECK(shell("nft list chain inet shoal s0 | grep -q 'meta mark & 0xffff0000 != @live drop'"));
  // Renewed in time (every 100 ms for 600 ms): still there after twice the lease.
  for (int i = 0; i < 6; ++i) {
    usleep(100000);
    REQUIRE((*dp)->renew(Millis{300}).ok());
  }
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 300ms expires'"));
  // Not renewed: the live element is gone, the buckets are not, and a drift check neither
  // calls that drift nor brings the element back.
  usleep(400000);
  CHECK_FALSE(shell("nft list set inet shoal live | grep -q 'elements'"));
  CHECK(shell("nft list set inet shoal s0_reset | grep -q 'elements = { 0x53480002 }'"));
  auto report = (*dp)->checkAndRepair();
  REQUIRE(report.ok());
  CHECK(report->repaired == 0);
  CHECK_FALSE(shell("nft list set inet shoal live | grep -q 'elements'"));
  // A late renewal brings it back.
  REQUIRE((*dp)->renew(Millis{300}).ok());
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 300ms'"));
  // The table is owned by the dataplane's socket: nobody else may renew (or touch) it.
  CHECK_FALSE(shell("nft add element inet shoal live '{ 0x53480000 timeout 10s }' 2>/dev/null"));
}

// Sends one UDP datagram to 127.0.0.1:9 from source port `sport` of this process.
void sendFromPort(uint16_t sport) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_port = htons(sport);
  from.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&from), sizeof from) == 0);
  sockaddr_in to = from;
  to.sin_port = htons(9);
  REQUIRE(::sendto(fd, "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 1);
  ::close(fd);
}

TEST_CASE("nftables dataplane renewed by heartbeats: a datagram from the heartbeat port renews "
          "a running lease in the kernel, one from another port does not, none revives one") {
  freshNamespace();
  NftablesOptions options;
  options.ruleset.renew_sport = 7466;
  options.ruleset.renew_uid = static_cast<uint32_t>(geteuid());
  options.ruleset.renew_lease = Millis{300};
  auto dp = NftablesDataplane::open(std::move(options));
  REQUIRE(dp.ok());
  DesiredState d{{ServiceAssignment{v4Service(), {1, 2}, {}, {}, {}, {}}}};
  d.lease = Millis{300};
  REQUIRE((*dp)->apply(d).ok());
  CHECK((*dp)->renewsOnSend());
  // Heartbeats every 100 ms for 600 ms, no renew() call: the element is still there.
  for (int i = 0; i < 6; ++i) {
    usleep(100000);
    sendFromPort(7466);
  }
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 300ms expires'"));
  // Other traffic of the host does not keep the lease.
  for (int i = 0; i < 4; ++i) {
    usleep(100000);
    sendFromPort(7467);
  }
  CHECK_FALSE(shell("nft list set inet shoal live | grep -q 'elements'"));
  // A heartbeat does not bring a lease that ran out back: only the daemon does, by netlink,
  // once it has released its buckets. Then the heartbeats keep it again, and the drift check
  // sees nothing to repair in a lease they keep.
  sendFromPort(7466);
  CHECK_FALSE(shell("nft list set inet shoal live | grep -q 'elements'"));
  REQUIRE((*dp)->renew(Millis{300}).ok());
  for (int i = 0; i < 4; ++i) {
    usleep(100000);
    sendFromPort(7466);
  }
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 300ms'"));
  (*dp)->renewedBySend(Millis{300});
  auto report = (*dp)->checkAndRepair();
  REQUIRE(report.ok());
  CHECK(report->repaired == 0);
}

TEST_CASE("nftables dataplane renewed by heartbeats: a rule that never matches is found by the "
          "drift check, which restores the lease and renews by netlink from then on") {
  freshNamespace();
  NftablesOptions options;
  options.ruleset.renew_sport = 7466;
  options.ruleset.renew_uid = static_cast<uint32_t>(geteuid()) + 4242;  // not this process
  options.ruleset.renew_lease = Millis{300};
  auto dp = NftablesDataplane::open(std::move(options));
  REQUIRE(dp.ok());
  DesiredState d{{ServiceAssignment{v4Service(), {1}, {}, {}, {}, {}}}};
  d.lease = Millis{300};
  REQUIRE((*dp)->apply(d).ok());
  // The daemon believes its heartbeats renew the lease; they do not.
  for (int i = 0; i < 4; ++i) {
    usleep(100000);
    sendFromPort(7466);
    (*dp)->renewedBySend(Millis{300});
  }
  CHECK_FALSE(shell("nft list set inet shoal live | grep -q 'elements'"));
  auto report = (*dp)->checkAndRepair();
  REQUIRE(report.ok());
  CHECK(report->repaired == 1);
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout'"));
  CHECK_FALSE((*dp)->renewsOnSend());
}

TEST_CASE("nftables dataplane through the nft command: renewals go out on a socket of its "
          "own; after the table was deleted they fail until the drift check rebuilds it") {
  freshNamespace();
  NftablesOptions options;
  options.ruleset.owner_tables = false;  // (an owned table cannot be deleted by anyone else)
  auto vips = NetlinkVipAddresses::open();
  auto macs = PacketSocketMemberships::open();
  REQUIRE(vips.ok());
  REQUIRE(macs.ok());
  NftablesDataplane dp(std::make_unique<NftCommandSession>(), std::move(vips).value(),
                       std::move(macs).value(), options);
  DesiredState d{{ServiceAssignment{v4Service(), {1}, {}, {}, {}, {}}}};
  d.lease = Millis{2000};
  REQUIRE(dp.apply(d).ok());
  REQUIRE(dp.renew(Millis{5000}).ok());
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 5s'"));
  REQUIRE(shell("nft delete table inet shoal"));
  auto refused = dp.renew(Millis{5000});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("No such file or directory") != std::string::npos);
  auto report = dp.checkAndRepair();
  REQUIRE(report.ok());
  CHECK(report->repaired >= 1);
  REQUIRE(dp.renew(Millis{5000}).ok());
  CHECK(shell("nft list set inet shoal live | grep -q '0x53480000 timeout 5s'"));
  CHECK(shell("nft list set inet shoal s0_owned | grep -q 'elements = { 0x53480001 }'"));
  REQUIRE(dp.teardown().ok());
}

TEST_CASE("the kernel probe finds sets of meta time intervals on this kernel, without a trace") {
  freshNamespace();
  const KernelFacts facts = probeKernel();
  CHECK(facts.nftables_works);
  CHECK(facts.nftables_timed);
  CHECK(facts.nftables_gap_bridging);
  // A dry run: the probe's table was never committed.
  CHECK_FALSE(shell("nft list tables | grep -q shoal_probe"));
}

namespace {

// The figure of the first counter in `nft list chain` output of `chain`.
long counterOf(const std::string& chain) {
  FILE* p = ::popen(("nft list chain " + chain).c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), p) != nullptr)
    out += buf.data();
  ::pclose(p);
  const std::size_t at = out.find("counter packets ");
  REQUIRE(at != std::string::npos);
  return std::stol(out.substr(at + 16));
}

// One UDP datagram from `source` to `vip`:9999 as an Ethernet frame for `dst_mac`.
std::vector<uint8_t> udpFrame(const MacAddress& dst_mac, const IpAddress& source,
                              const IpAddress& vip) {
  std::vector<uint8_t> f(14 + 20 + 8 + 4, 0);
  std::memcpy(f.data(), dst_mac.bytes.data(), 6);
  f[6] = 0x02;  // a locally administered source MAC
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  ip[3] = 20 + 8 + 4;
  ip[8] = 64;
  ip[9] = 17;
  std::memcpy(ip + 12, source.bytes.data(), 4);
  std::memcpy(ip + 16, vip.bytes.data(), 4);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2)
    sum += (ip[i] << 8) | ip[i + 1];
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = static_cast<uint8_t>(~sum >> 8);
  ip[11] = static_cast<uint8_t>(~sum);
  uint8_t* udp = ip + 20;
  udp[0] = 0x30;  // source port 12345
  udp[1] = 0x39;
  udp[2] = 0x27;  // destination port 9999
  udp[3] = 0x0f;
  udp[5] = 8 + 4;  // no checksum (allowed for IPv4)
  return f;
}

}  // namespace

TEST_CASE(
    "nftables dataplane: a bucket handed over at an instant and taken back is answered "
    "throughout, however often it moves between the owned and the timed set") {
  freshNamespace();
  auto dp = NftablesDataplane::open(NftablesOptions{});
  REQUIRE(dp.ok());
  const Service s = v4Service();
  // A source address whose packets fall into bucket 3.
  IpAddress source = *IpAddress::parse("10.9.1.1");
  for (int i = 1; i < 250; ++i) {
    source = *IpAddress::parse("10.9.1." + std::to_string(i));
    if (bucketOf(FlowKey{source, 17, 12345, 9999}, s.hash, s.buckets, s.seed) == 3)
      break;
  }
  REQUIRE(bucketOf(FlowKey{source, 17, 12345, 9999}, s.hash, s.buckets, s.seed) == 3);
  DesiredState owned{{ServiceAssignment{s, {1, 3}, {}, {}, {}, {}}}};
  DesiredState timed{
      {ServiceAssignment{s, {1, 5}, {}, {TimedBucket{3, 0, kForeverNs - 1}}, {}, {}}}};
  REQUIRE((*dp)->apply(owned).ok());
  // Counted as they arrive and again after shoal's chains (and its guard) decided.
  REQUIRE(
      shell("nft -f - <<'EOF'\n"
            "table inet probe {\n"
            "  chain in { type filter hook prerouting priority -400; ip daddr 10.9.0.100 "
            "udp dport 9999 counter; }\n"
            "  chain out { type filter hook prerouting priority 0; ip daddr 10.9.0.100 "
            "udp dport 9999 counter; }\n"
            "}\n"
            "EOF"));
  auto macs = PacketSocketMemberships::open();
  REQUIRE(macs.ok());
  auto a0_mac = (*macs)->hardwareAddress("a0");
  REQUIRE(a0_mac.ok());
  const std::vector<uint8_t> frame = udpFrame(*a0_mac, source, s.vip);
  const int fd = ::socket(AF_PACKET, SOCK_RAW, 0);
  REQUIRE(fd >= 0);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex("b0"));
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, a0_mac->bytes.data(), 6);
  std::atomic<bool> stop{false};
  std::thread flood([&] {
    while (!stop) {
      ::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<const sockaddr*>(&to),
               sizeof to);
    }
  });
  for (int i = 0; i < 150; ++i) {
    CHECK((*dp)->apply(timed).ok());
    CHECK((*dp)->apply(owned).ok());
  }
  stop = true;
  flood.join();
  ::close(fd);
  usleep(20000);
  const long arrived = counterOf("inet probe in");
  const long answered = counterOf("inet probe out");
  MESSAGE(arrived << " packets of the moving bucket during 300 moves, " << answered << " answered");
  CHECK(arrived > 10000);
  CHECK(answered == arrived);
}
