#pragma once
// A membership core wired to the real UDP transport and a steady_clock timer on one
// io_context, as the daemon wires them; shared by the transport tests.

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "membership/membership.h"
#include "membership/udp_transport.h"
#include "test/sim/sim_cluster.h"

namespace shoal::test {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// What the daemon will do: a core, its sockets and its timer on one io_context.
struct LiveNode {
  LiveNode(asio::io_context& io, const ClusterDefinition& def, uint32_t self)
      : core(def, self, sim::simKeyring(), 1, 1000 + self), timer(io) {
    auto t = UdpTransport::open(
        io, def, self,
        [this](uint32_t link, std::span<const uint8_t> bytes, const Endpoint& from,
               UdpTransport::WallTime) {
          handle(core.onPacket(std::chrono::steady_clock::now(), bytes, link, from));
        });
    REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
    transport = std::move(t).value();
    handle(core.start(std::chrono::steady_clock::now()));
  }
  void handle(Output out) {
    for (const Datagram& d : out.send) {
      if (tap) {
        tap(d);
      }
      transport->send(d);
    }
    if (out.next_wakeup == TimePoint::max()) {
      return;
    }
    timer.expires_at(out.next_wakeup);
    // A wait that had completed before the node was destroyed still runs, without an error:
    // it must find the node gone rather than use it.
    std::weak_ptr<bool> weak = alive;
    timer.async_wait([this, weak](const boost::system::error_code& ec) {
      if (!ec && weak.lock()) {
        handle(core.onTick(std::chrono::steady_clock::now()));
      }
    });
  }
  ~LiveNode() { alive.reset(); }
  LiveNode(const LiveNode&) = delete;
  LiveNode& operator=(const LiveNode&) = delete;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  Membership core;
  asio::steady_timer timer;
  std::unique_ptr<UdpTransport> transport;
  std::function<void(const Datagram&)> tap;
};

// Runs `io` until `done` holds or `limit` passes; returns whether it held.
inline bool runUntil(asio::io_context& io, const std::function<bool()>& done, milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    io.run_for(milliseconds(5));
    if (done()) {
      return true;
    }
  }
  return false;
}

inline bool allAlive(const std::vector<std::unique_ptr<LiveNode>>& nodes) {
  for (const auto& a : nodes) {
    for (uint32_t b = 0; b < nodes.size(); ++b) {
      if (a->core.view().members[b].state != MemberState::Alive ||
          (b != a->core.self() && !a->core.view().members[b].reachable())) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace shoal::test
