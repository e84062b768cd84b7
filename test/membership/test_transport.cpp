// Three membership cores over real UDP sockets on loopback (127.0.0.1-3 and 127.0.1.1-3, two
// links), each wired to the real transport and a steady_clock timer. Real time here, bounded:
// the fast profile detects a death in about 50 ms, and every wait gives up after seconds.

#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>

#include "core/fingerprint.h"
#include "core/timing_profile.h"
#include "core/wire_codec.h"
#include "membership/membership.h"
#include "membership/udp_transport.h"
#include "test/membership/live_node.h"
#include "test/sim/sim_cluster.h"

using namespace shoal;
using namespace shoal::test;
using std::chrono::milliseconds;
namespace asio = boost::asio;

namespace {

ClusterDefinition loopbackDefinition() {
  ClusterDefinition def = sim::makeDefinition(3, 2, *timingPreset("fast"));
  for (uint32_t i = 0; i < 3; ++i) {
    def.nodes[i].addresses[0] = *IpAddress::parse("127.0.0." + std::to_string(i + 1));
    def.nodes[i].addresses[1] = *IpAddress::parse("127.0.1." + std::to_string(i + 1));
  }
  // A port of its own per run, so parallel runs on one machine do not meet.
  def.port = static_cast<uint16_t>(20000 + (::getpid() % 20000));
  return def;
}

void sendRaw(const ClusterDefinition& def, const std::string& bytes) {
  asio::io_context io;
  asio::ip::udp::socket s(io);
  s.open(asio::ip::udp::v4());
  s.send_to(asio::buffer(bytes),
            asio::ip::udp::endpoint(toAsio(def.nodes[0].addresses[0]), def.port));
}

}  // namespace

TEST_CASE("addresses convert to Boost.Asio and back, IPv4 and IPv6") {
  for (const char* text : {"127.0.0.3", "2001:db8::7", "::1"}) {
    const IpAddress a = *IpAddress::parse(text);
    CHECK(fromAsio(toAsio(a)) == a);
  }
}

TEST_CASE("a burst longer than many reads is read whole, in order, and oversized ones counted") {
  asio::io_context io;
  const ClusterDefinition def = loopbackDefinition();
  struct Got {
    std::size_t size;
    std::size_t index;  // of a 2-byte datagram: its bytes, little-endian
    Endpoint from;
    UdpTransport::WallTime arrived;
    UdpTransport::WallTime read;
  };
  std::vector<Got> got;
  auto t = UdpTransport::open(
      io, def, 0,
      [&](uint32_t link, std::span<const uint8_t> bytes, const Endpoint& from,
          UdpTransport::WallTime arrived) {
        CHECK(link == 0);
        const std::size_t index = bytes.size() == 2 ? bytes[0] + 256U * bytes[1] : 0;
        got.push_back(Got{bytes.size(), index, from, arrived, std::chrono::system_clock::now()});
      });
  const auto sent_from = std::chrono::system_clock::now();
  REQUIRE(t.ok());
  // 150 small datagrams (more than eight batches of reads, so the reader has to yield and go
  // on), one of the largest accepted size, one a byte larger, one far larger.
  asio::ip::udp::socket s(io);
  s.open(asio::ip::udp::v4());
  s.bind(asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.9"), 0));
  const asio::ip::udp::endpoint to(toAsio(def.nodes[0].addresses[0]), def.port);
  for (std::size_t i = 0; i < 150; ++i) {
    const std::array<uint8_t, 2> b{static_cast<uint8_t>(i % 256), static_cast<uint8_t>(i / 256)};
    s.send_to(asio::buffer(b), to);
  }
  s.send_to(asio::buffer(std::string(kMaxPacketSize + 512, 'x')), to);
  s.send_to(asio::buffer(std::string(kMaxPacketSize + 513, 'x')), to);
  s.send_to(asio::buffer(std::string(3000, 'x')), to);
  const auto until = std::chrono::steady_clock::now() + milliseconds(2000);
  while ((*t)->stats().received + (*t)->stats().oversized < 153 &&
         std::chrono::steady_clock::now() < until) {
    io.run_for(milliseconds(10));
  }
  CHECK((*t)->stats().received == 151);
  CHECK((*t)->stats().oversized == 2);
  REQUIRE(got.size() == 151);
  for (std::size_t i = 0; i < 150; ++i) {
    CHECK(got[i].size == 2);
    CHECK(got[i].index == i);
    CHECK(got[i].from.address == *IpAddress::parse("127.0.0.9"));
    CHECK(got[i].from.port == s.local_endpoint().port());
    // The kernel's receive time: after the sends began, before the read.
    CHECK(got[i].arrived >= sent_from);
    CHECK(got[i].arrived <= got[i].read);
  }
  CHECK(got[150].size == kMaxPacketSize + 512);
}

TEST_CASE("binding an address this host does not have is an error naming it") {
  asio::io_context io;
  ClusterDefinition def = loopbackDefinition();
  def.nodes[0].addresses[1] = *IpAddress::parse("192.0.2.123");
  auto t = UdpTransport::open(
      io, def, 0,
      [](uint32_t, std::span<const uint8_t>, const Endpoint&, UdpTransport::WallTime) {});
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.find("link 1") != std::string::npos);
  CHECK(t.error().message.find("192.0.2.123") != std::string::npos);
}

TEST_CASE("three cores over loopback UDP agree, detect a killed one, and ignore bad packets") {
  asio::io_context io;
  const ClusterDefinition def = loopbackDefinition();
  std::vector<std::unique_ptr<LiveNode>> nodes;
  std::string captured;  // a datagram node 1 sent node 0 on link 0, for the replay
  for (uint32_t i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<LiveNode>(io, def, i));
  }
  nodes[1]->tap = [&](const Datagram& d) {
    if (captured.empty() && (d.node == 0 || d.node == kAllPeers) && d.link == 0) {
      captured = d.bytes;
    }
  };
  REQUIRE(runUntil(
      io, [&] { return allAlive(nodes); }, milliseconds(3000)));
  REQUIRE(runUntil(
      io, [&] { return !captured.empty(); }, milliseconds(1000)));
  CHECK(nodes[0]->transport->stats().received > 0);
  CHECK(nodes[0]->transport->stats().send_errors == 0);

  SUBCASE("a wrong key, a replayed packet and random bytes are counted and change nothing") {
    const View before = nodes[0]->core.view();
    const RejectionCounters rejected = nodes[0]->core.counters().rejected;
    std::array<uint8_t, kKeySize> other{};
    other.fill(0x42);
    std::vector<Key> keys;
    keys.emplace_back(1, other);
    const Keyring wrong = std::move(Keyring::fromKeys(std::move(keys), 1)).value();
    wire::Envelope env;
    wire::MemberUpdate* u = env.mutable_heartbeat()->add_updates();
    u->set_node(2);
    u->set_incarnation(999);
    u->set_state(wire::MEMBER_DEAD);
    PacketSealer forger(fingerprint64(def), 1, 1);
    sendRaw(def, forger.seal(wrong, 0, env));
    sendRaw(def, captured);
    sendRaw(def, std::string("\x0a\x03garbage\xff\x00\x13", 13));
    const auto& now = nodes[0]->core.counters().rejected;
    REQUIRE(runUntil(
        io, [&] { return now.total() >= rejected.total() + 3; }, milliseconds(2000)));
    CHECK(now[Rejection::BadMac] == rejected[Rejection::BadMac] + 1);
    CHECK(now[Rejection::Replay] == rejected[Rejection::Replay] + 1);
    CHECK(now[Rejection::Malformed] == rejected[Rejection::Malformed] + 1);
    CHECK((nodes[0]->core.view().members[2].state == MemberState::Alive));
    CHECK(nodes[0]->core.view().members[2].incarnation == before.members[2].incarnation);
  }

  SUBCASE("a killed node is declared dead by both survivors") {
    const auto killed_at = std::chrono::steady_clock::now();
    nodes[2].reset();  // closes its sockets: it goes silent, as after kill -9
    REQUIRE(runUntil(
        io,
        [&] {
          return nodes[0]->core.view().members[2].state == MemberState::Dead &&
                 nodes[1]->core.view().members[2].state == MemberState::Dead;
        },
        milliseconds(3000)));
    const auto took = std::chrono::steady_clock::now() - killed_at;
    MESSAGE("detected over loopback in " << std::chrono::duration_cast<milliseconds>(took).count()
                                         << " ms");
    CHECK((nodes[0]->core.view().members[1].state == MemberState::Alive));
    CHECK((nodes[1]->core.view().members[0].state == MemberState::Alive));
    // Its links fade once nothing has come over them for the suspicion window, which can
    // end after the declaration (gossip from the other survivor may come first).
    CHECK(runUntil(
        io, [&] { return !nodes[0]->core.view().members[2].reachable(); }, milliseconds(1000)));
  }
}
