#pragma once
// The heartbeat sockets: Boost.Asio UDP, one socket per heartbeat link, bound to this node's
// management address of that link and the cluster port, IPv4 or IPv6. A link with a multicast
// group (ClusterDefinition::heartbeat_groups) sends a round's heartbeats once, to the group,
// and has a second socket bound to the group that receives the peers' heartbeats. The only code of the
// membership layer that touches the network; the daemon wires it to the core
// (membership/membership.h): received datagrams go to Membership::onPacket, Output::send
// goes to send(). IPv6 link-local management addresses (fe80::/10) work: a link's scope is
// the interface that holds this node's own address on it.

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/cluster_definition.h"
#include "core/result.h"
#include "membership/membership_types.h"

namespace shoal {

/// Socket counters (packet-level faults are counted, not logged).
struct TransportStats {
  uint64_t sent = 0;
  uint64_t send_errors = 0;  ///< datagrams the kernel refused (no route, buffer full, ...)
  uint64_t received = 0;
  uint64_t receive_errors = 0;
  uint64_t oversized = 0;  ///< datagrams larger than the receive buffer (dropped)
};

/// One UDP socket per heartbeat link, all driven by the caller's io_context.
class UdpTransport {
 public:
  /// The wall clock (CLOCK_REALTIME) as the kernel timestamps received datagrams.
  using WallTime = std::chrono::system_clock::time_point;
  /// Called for every received datagram with the link it arrived on, its source and when it
  /// reached this host (the kernel's receive timestamp, SO_TIMESTAMPNS; WallTime{} if the
  /// kernel gave none). The bytes are valid only during the call.
  using Receive = std::function<void(uint32_t link, std::span<const uint8_t> bytes,
                                     const Endpoint& from, WallTime arrived)>;

  /// Opens and binds the sockets of node `self` of `def` (address i of the node on link i,
  /// port def.port) and starts receiving. Errors name the link, address and port and the
  /// system's reason (e.g. "link 1: cannot bind 10.0.1.2:7400: Cannot assign requested
  /// address").
  static Result<std::unique_ptr<UdpTransport>> open(boost::asio::io_context& io,
                                                    const ClusterDefinition& def, uint32_t self,
                                                    Receive on_receive);
  ~UdpTransport();
  UdpTransport(const UdpTransport&) = delete;
  UdpTransport& operator=(const UdpTransport&) = delete;

  /// Sends `datagram` to its node's address on its link, or, when its node is kAllPeers, to
  /// every other node's that it reaches (Datagram::reaches; on a multicast link one datagram
  /// to the group instead). Never blocks: a datagram the kernel cannot take now is dropped
  /// and counted (heartbeats are repeated anyway).
  void send(const Datagram& datagram);
  /// Closes every socket; pending receives end. Called by the destructor.
  void close();
  /// True if no received datagram waits in any socket's queue (all were read). A daemon that
  /// was stalled uses it to tell datagrams queued during the stall from ones sent after it.
  bool backlogEmpty() const;

  /// Joins each multicast link's group again if the interface holding this node's address
  /// on that link was replaced (deleted and created again: the kernel drops the membership
  /// with the old interface). Cheap when nothing changed (one address lookup per multicast
  /// link); call it on link events and now and then. Returns one line per repair or error.
  std::vector<std::string> repairGroups();

  const TransportStats& stats() const { return stats_; }

 private:
  struct Receiver;
  struct Link;
  UdpTransport(const ClusterDefinition& def, Receive on_receive);
  // Sets `link` up for its multicast group: its unicast socket sends to the group out of the
  // interface holding the link's own address, and a second socket bound to group:port receives.
  static Status joinGroup(Link& link, uint16_t port);
  void receiveNext(std::size_t link, bool from_group);
  // Reads what is queued on a link's receiving socket (its group socket if `from_group`, of
  // that `generation`) in batches; waits for readiness again once it is drained.
  void readQueued(std::size_t link, bool from_group, uint64_t generation,
                  const std::shared_ptr<bool>& guard);
  void sendToAll(const Datagram& datagram);
  // Gives the peers of a link of IPv6 link-local addresses their scope (the interface).
  Status scopeLink(const ClusterDefinition& def, std::size_t link);

  std::vector<boost::asio::ip::udp::endpoint> peers_;  // [node * links + link]
  std::size_t link_count_ = 0;
  std::size_t self_ = 0;
  std::vector<std::unique_ptr<Link>> links_;
  Receive on_receive_;
  TransportStats stats_;
  // Cleared on destruction so that completion handlers still queued do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

/// Conversions between shoal's and Boost.Asio's address types.
boost::asio::ip::address toAsio(const IpAddress& address);
IpAddress fromAsio(const boost::asio::ip::address& address);

}  // namespace shoal
