#include "membership/udp_transport.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "core/wire_codec.h"

namespace shoal {

namespace asio = boost::asio;
using asio::ip::udp;

// Datagrams read per recvmmsg call: a round of heartbeats from every peer of a 16-node cluster.
constexpr std::size_t kReadBatch = 16;
// Room per datagram: more than the largest one shoal accepts (kMaxPacketSize and what the
// check below allows), so anything larger arrives truncated and is counted as oversized.
constexpr std::size_t kReadSlot = 2048;
// recvmmsg calls per readiness before the other sockets and timers get their turn.
constexpr int kReadBatchesPerTurn = 8;

// Room for the one control message asked for: the receive timestamp.
constexpr std::size_t kControlSlot = CMSG_SPACE(sizeof(timespec));

struct UdpTransport::Receiver {
  explicit Receiver(const asio::any_io_executor& ex) : socket(ex) {}
  udp::socket socket;
  std::array<std::array<uint8_t, kReadSlot>, kReadBatch> buffers{};
  std::array<sockaddr_storage, kReadBatch> names{};
  std::array<iovec, kReadBatch> iov{};
  struct alignas(cmsghdr) Control {
    std::array<char, kControlSlot> bytes;
  };
  std::array<Control, kReadBatch> controls{};
  std::array<mmsghdr, kReadBatch> messages{};
};

struct UdpTransport::Link {
  explicit Link(asio::io_context& io) : unicast(io.get_executor()) {}
  // Bound to this node's address on the link: sends everything, receives unicast.
  Receiver unicast;
  // This node's address on the link, and the link's multicast group (or nullopt).
  IpAddress own;
  std::optional<IpAddress> group_address;
  // On a multicast link: bound to the group, receives the peers' heartbeats.
  std::unique_ptr<Receiver> group;
  // On a multicast link: where a round's heartbeats go (the group and the port).
  std::optional<udp::endpoint> group_endpoint;
  // On a multicast link: the interface the group was joined on.
  unsigned group_ifindex = 0;
  // Counts the receiving sockets the group has had: a read started on a socket that has
  // since been replaced must not touch the new one (its buffer, its next read).
  uint64_t group_generation = 0;
  // The last error of repairGroups() on this link, so that a lasting one is reported once.
  std::string repair_error;
  Receiver& receiver(bool from_group) { return from_group ? *group : unicast; }
};

asio::ip::address toAsio(const IpAddress& address) {
  if (address.isV4()) {
    asio::ip::address_v4::bytes_type b{};
    std::copy_n(address.bytes.begin(), 4, b.begin());
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b{};
  std::copy_n(address.bytes.begin(), 16, b.begin());
  return asio::ip::address_v6(b);
}

IpAddress fromAsio(const asio::ip::address& address) {
  IpAddress out;
  if (address.is_v4()) {
    out.family = IpAddress::Family::V4;
    const auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  } else {
    out.family = IpAddress::Family::V6;
    const auto b = address.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  }
  return out;
}

namespace {

// The source of a received datagram (IPv4 or IPv6 socket address).
Endpoint endpointOf(const sockaddr_storage& name) {
  Endpoint out;
  if (name.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(name);
    out.address.family = IpAddress::Family::V4;
    std::memcpy(out.address.bytes.data(), &in.sin_addr, 4);
    out.port = ntohs(in.sin_port);
  } else if (name.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(name);
    out.address.family = IpAddress::Family::V6;
    std::memcpy(out.address.bytes.data(), &in6.sin6_addr, 16);
    out.port = ntohs(in6.sin6_port);
  }
  return out;
}

// The kernel's receive timestamp of a datagram read with SO_TIMESTAMPNS; WallTime{} if none.
UdpTransport::WallTime arrivalOf(const msghdr& h) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
        c->cmsg_len >= CMSG_LEN(sizeof(timespec))) {
      timespec ts{};
      std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
      return UdpTransport::WallTime(std::chrono::duration_cast<UdpTransport::WallTime::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
    }
  }
  return {};
}

// Asks the kernel for each datagram's receive time (SO_TIMESTAMPNS).
void timestampArrivals(udp::socket& socket) {
  const int one = 1;
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
}

// IPv6 link-local (fe80::/10): meaningful only together with an interface (its scope).
bool isLinkLocal(const IpAddress& address) {
  return !address.isV4() && address.bytes[0] == 0xfe && (address.bytes[1] & 0xc0) == 0x80;
}

// The index of the interface that holds `address` on this host, 0 if none does.
unsigned interfaceOf(const IpAddress& address) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return 0;
  }
  unsigned index = 0;
  for (const ifaddrs* i = list; i != nullptr && index == 0; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) {
      continue;
    }
    if (address.isV4() && i->ifa_addr->sa_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      if (std::memcmp(&a->sin_addr, address.bytes.data(), 4) == 0) {
        index = ::if_nametoindex(i->ifa_name);
      }
    } else if (!address.isV4() && i->ifa_addr->sa_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      if (std::memcmp(a->sin6_addr.s6_addr, address.bytes.data(), 16) == 0) {
        index = a->sin6_scope_id != 0 ? a->sin6_scope_id : ::if_nametoindex(i->ifa_name);
      }
    }
  }
  ::freeifaddrs(list);
  return index;
}

// An IPv6 group of interface- or link-local scope (ff01::/16, ff02::/16) means something only
// together with an interface, like a link-local address.
bool groupNeedsScope(const IpAddress& group) {
  return !group.isV4() && (group.bytes[1] & 0x0f) <= 2;
}

}  // namespace

UdpTransport::UdpTransport(const ClusterDefinition& def, Receive on_receive)
    : on_receive_(std::move(on_receive)) {
  link_count_ = def.nodes.empty() ? 0 : def.nodes[0].addresses.size();
  for (const Node& n : def.nodes) {
    for (std::size_t l = 0; l < link_count_; ++l) {
      peers_.emplace_back(toAsio(n.addresses.at(l)), def.port);
    }
  }
}

UdpTransport::~UdpTransport() {
  *alive_ = false;
  close();
}

Result<std::unique_ptr<UdpTransport>> UdpTransport::open(asio::io_context& io,
                                                         const ClusterDefinition& def,
                                                         uint32_t self, Receive on_receive) {
  if (self >= def.nodes.size()) {
    return Error{"node index " + std::to_string(self) + " is not in the cluster definition (" +
                 std::to_string(def.nodes.size()) + " nodes)"};
  }
  std::unique_ptr<UdpTransport> t(new UdpTransport(def, std::move(on_receive)));
  t->self_ = self;
  const Node& me = def.nodes[self];
  for (std::size_t l = 0; l < me.addresses.size(); ++l) {
    auto link = std::make_unique<Link>(io);
    link->own = me.addresses[l];
    if (const IpAddress* group = def.heartbeatGroup(l)) {
      link->group_address = *group;
    }
    udp::endpoint local(toAsio(me.addresses[l]), def.port);
    const std::string where = "link " + std::to_string(l) + ": ";
    const std::string what = Endpoint{me.addresses[l], def.port}.toString();
    if (Status scoped = t->scopeLink(def, l); !scoped.ok()) {
      return Error{where + scoped.error().message};
    }
    if (isLinkLocal(me.addresses[l])) {
      local = t->peers_[self * t->link_count_ + l];
    }
    boost::system::error_code ec;
    link->unicast.socket.open(local.protocol(), ec);
    if (!ec && !local.address().is_v4()) {
      // Only IPv6 on an IPv6 socket: the link's address family is fixed by the definition.
      link->unicast.socket.set_option(asio::ip::v6_only(true), ec);
    }
    if (ec) {
      return Error{where + "cannot open a UDP socket for " + what + ": " + ec.message()};
    }
    link->unicast.socket.bind(local, ec);
    if (ec) {
      return Error{where + "cannot bind " + what + ": " + ec.message() +
                   " (is the address configured on this host, and the port free?)"};
    }
    timestampArrivals(link->unicast.socket);
    link->unicast.socket.non_blocking(true, ec);
    if (ec) {
      return Error{where + "cannot make the socket of " + what + " non-blocking: " + ec.message()};
    }
    if (link->group_address) {
      if (Status joined = joinGroup(*link, def.port); !joined.ok()) {
        return Error{where + joined.error().message};
      }
    }
    t->links_.push_back(std::move(link));
  }
  for (std::size_t l = 0; l < t->links_.size(); ++l) {
    t->receiveNext(l, false);
    if (t->links_[l]->group) {
      t->receiveNext(l, true);
    }
  }
  return t;
}

Status UdpTransport::joinGroup(Link& link, uint16_t port) {
  const IpAddress& own = link.own;
  const IpAddress& group = *link.group_address;
  // The group is joined on, and sent out of, the interface that holds this node's address on
  // the link; the datagrams keep that address as their source, so peers tell the sender by
  // its address exactly as with unicast.
  const std::string name = "multicast group " + group.toString();
  const unsigned ifindex = interfaceOf(own);
  if (ifindex == 0) {
    return Error{"no interface of this host has the address " + own.toString() + " (needed for " +
                 name + ")"};
  }
  char ifname[IF_NAMESIZE] = {};
  const std::string on =
      std::string(" on ") + (::if_indextoname(ifindex, ifname) != nullptr ? ifname : "?");
  udp::endpoint to(toAsio(group), port);
  if (groupNeedsScope(group)) {
    asio::ip::address_v6 scoped = to.address().to_v6();
    scoped.scope_id(ifindex);
    to.address(scoped);
  }
  boost::system::error_code ec;
  udp::socket& out = link.unicast.socket;
  if (group.isV4()) {
    out.set_option(asio::ip::multicast::outbound_interface(toAsio(own).to_v4()), ec);
  } else {
    out.set_option(asio::ip::multicast::outbound_interface(ifindex), ec);
  }
  // One hop (the heartbeat link is one LAN), and no copy back to this host.
  if (!ec) {
    out.set_option(asio::ip::multicast::hops(1), ec);
  }
  if (!ec) {
    out.set_option(asio::ip::multicast::enable_loopback(false), ec);
  }
  if (ec) {
    return Error{"cannot send to " + name + on + ": " + ec.message()};
  }
  auto in = std::make_unique<Receiver>(out.get_executor());
  in->socket.open(to.protocol(), ec);
  if (!ec && !group.isV4()) {
    in->socket.set_option(asio::ip::v6_only(true), ec);
  }
  if (ec) {
    return Error{"cannot open a UDP socket for " + name + ": " + ec.message()};
  }
  in->socket.bind(to, ec);
  if (ec) {
    return Error{"cannot bind " + name + " port " + std::to_string(port) + on + ": " +
                 ec.message() + " (is another shoald using the group and port on this host?)"};
  }
  if (group.isV4()) {
    in->socket.set_option(
        asio::ip::multicast::join_group(toAsio(group).to_v4(), toAsio(own).to_v4()), ec);
  } else {
    in->socket.set_option(asio::ip::multicast::join_group(toAsio(group).to_v6(), ifindex), ec);
  }
  if (ec) {
    return Error{"cannot join " + name + on + ": " + ec.message() +
                 " (does the interface have the MULTICAST flag? see ip link show)"};
  }
  timestampArrivals(in->socket);
  in->socket.non_blocking(true, ec);
  if (ec) {
    return Error{"cannot make the socket of " + name + " non-blocking: " + ec.message()};
  }
  link.group = std::move(in);
  link.group_endpoint = to;
  link.group_ifindex = ifindex;
  ++link.group_generation;
  return Ok{};
}

std::vector<std::string> UdpTransport::repairGroups() {
  std::vector<std::string> report;
  for (std::size_t l = 0; l < links_.size(); ++l) {
    Link& link = *links_[l];
    if (!link.group || !link.unicast.socket.is_open()) {
      continue;  // a unicast link, or the transport is closed
    }
    const unsigned ifindex = interfaceOf(link.own);
    if (ifindex == 0 || ifindex == link.group_ifindex) {
      continue;  // the address is not back yet, or nothing changed
    }
    // The interface was replaced: the kernel dropped the membership with the old one, and
    // the receiving socket of a link-local-scope group is bound to the old one. Build the
    // group's side of the link again. The old receiving socket goes first (it holds the
    // group and port); its pending read ends with operation_aborted.
    boost::system::error_code ignored;
    link.group->socket.close(ignored);
    const std::string where = "link " + std::to_string(l) + ": ";
    if (Status joined = joinGroup(link, link.group_endpoint->port()); !joined.ok()) {
      if (joined.error().message != link.repair_error) {
        link.repair_error = joined.error().message;
        report.push_back(where + joined.error().message);
      }
      continue;
    }
    link.repair_error.clear();
    char name[IF_NAMESIZE] = {};
    report.push_back(where + "joined multicast group " + link.group_address->toString() + " again on " +
                     (::if_indextoname(ifindex, name) != nullptr ? name : "?") +
                     " (the interface was replaced)");
    receiveNext(l, true);
  }
  return report;
}

Status UdpTransport::scopeLink(const ClusterDefinition& def, std::size_t link) {
  // A link-local address names an interface only together with it: the link's interface is
  // the one that holds this node's own address, and every peer on the link is reached
  // through it. A link cannot mix link-local and other addresses (no interface to take the
  // scope from, or a scope that a routed address must not carry).
  const IpAddress& own = def.nodes[self_].addresses[link];
  bool any_link_local = false;
  bool all_link_local = true;
  for (const Node& n : def.nodes) {
    any_link_local = any_link_local || isLinkLocal(n.addresses.at(link));
    all_link_local = all_link_local && isLinkLocal(n.addresses.at(link));
  }
  if (!any_link_local) {
    return Ok{};
  }
  if (!all_link_local) {
    return Error{"mixes IPv6 link-local (fe80::/10) and other addresses; use link-local "
                 "addresses for every node of a link or for none"};
  }
  const unsigned scope = interfaceOf(own);
  if (scope == 0) {
    return Error{"no interface of this host has the link-local address " + own.toString() +
                 " (ip -6 addr shows which ones it has)"};
  }
  for (std::size_t n = 0; n < def.nodes.size(); ++n) {
    udp::endpoint& peer = peers_[n * link_count_ + link];
    asio::ip::address_v6 scoped = peer.address().to_v6();
    scoped.scope_id(scope);
    peer.address(scoped);
  }
  return Ok{};
}

void UdpTransport::receiveNext(std::size_t index, bool from_group) {
  // Wait for readiness, then read everything queued with recvmmsg: one system call for a
  // burst of heartbeats instead of one read per datagram plus one that finds nothing.
  Receiver& r = links_[index]->receiver(from_group);
  std::weak_ptr<bool> alive = alive_;
  const uint64_t generation = from_group ? links_[index]->group_generation : 0;
  r.socket.async_wait(udp::socket::wait_read, [this, index, from_group, generation,
                                               alive](const boost::system::error_code& ec) {
    const auto guard = alive.lock();
    if (!guard || !*guard) {
      return;
    }
    if (from_group && links_[index]->group_generation != generation) {
      return;  // started on a receiving socket that repairGroups() has replaced
    }
    if (ec == asio::error::operation_aborted || !links_[index]->receiver(from_group).socket.is_open()) {
      return;
    }
    if (ec) {
      ++stats_.receive_errors;
    }
    readQueued(index, from_group, generation, guard);
  });
}

void UdpTransport::readQueued(std::size_t index, bool from_group, uint64_t generation,
                              const std::shared_ptr<bool>& guard) {
  // Still this receiver: the callback may close the transport or replace the group socket.
  auto current = [&] {
    return *guard && (!from_group || links_[index]->group_generation == generation) &&
           links_[index]->receiver(from_group).socket.is_open();
  };
  for (int batch = 0; batch < kReadBatchesPerTurn; ++batch) {
    Receiver& r = links_[index]->receiver(from_group);
    for (std::size_t i = 0; i < kReadBatch; ++i) {
      r.iov[i].iov_base = r.buffers[i].data();
      r.iov[i].iov_len = r.buffers[i].size();
      r.messages[i] = mmsghdr{};
      r.messages[i].msg_hdr.msg_name = &r.names[i];
      r.messages[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      r.messages[i].msg_hdr.msg_iov = &r.iov[i];
      r.messages[i].msg_hdr.msg_iovlen = 1;
      r.messages[i].msg_hdr.msg_control = r.controls[i].bytes.data();
      r.messages[i].msg_hdr.msg_controllen = kControlSlot;
    }
    const int n = ::recvmmsg(r.socket.native_handle(), r.messages.data(), kReadBatch, MSG_DONTWAIT,
                             nullptr);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ++stats_.receive_errors;
      }
      receiveNext(index, from_group);
      return;
    }
    for (int i = 0; i < n; ++i) {
      const mmsghdr& m = r.messages[static_cast<std::size_t>(i)];
      if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0 || m.msg_len > kMaxPacketSize + 512) {
        ++stats_.oversized;
        continue;
      }
      ++stats_.received;
      on_receive_(
          static_cast<uint32_t>(index),
          std::span<const uint8_t>(r.buffers[static_cast<std::size_t>(i)].data(), m.msg_len),
          endpointOf(r.names[static_cast<std::size_t>(i)]), arrivalOf(m.msg_hdr));
      if (!current()) {
        return;
      }
    }
    if (static_cast<std::size_t>(n) < kReadBatch) {
      receiveNext(index, from_group);  // drained: wait for the next datagram
      return;
    }
  }
  if (!current()) {
    return;
  }
  // More may be queued (a flood): let the other sockets and the timers run first, then go on.
  // Readiness would not come again for datagrams already queued, so this is a post.
  std::weak_ptr<bool> alive = guard;
  asio::post(links_[index]->receiver(from_group).socket.get_executor(),
             [this, index, from_group, generation, alive] {
               const auto g = alive.lock();
               if (g && *g && (!from_group || links_[index]->group_generation == generation) &&
                   links_[index]->receiver(from_group).socket.is_open()) {
                 readQueued(index, from_group, generation, g);
               }
             });
}

void UdpTransport::send(const Datagram& datagram) {
  if (datagram.node == kAllPeers) {
    sendToAll(datagram);
    return;
  }
  const std::size_t slot = static_cast<std::size_t>(datagram.node) * link_count_ + datagram.link;
  if (datagram.link >= links_.size() || slot >= peers_.size() ||
      !links_[datagram.link]->unicast.socket.is_open()) {
    ++stats_.send_errors;
    return;
  }
  boost::system::error_code ec;
  links_[datagram.link]->unicast.socket.send_to(asio::buffer(datagram.bytes.data(), datagram.bytes.size()),
                                        peers_[slot], 0, ec);
  if (ec) {
    ++stats_.send_errors;
  } else {
    ++stats_.sent;
  }
}

void UdpTransport::sendToAll(const Datagram& datagram) {
  const std::size_t nodes = link_count_ == 0 ? 0 : peers_.size() / link_count_;
  const std::size_t others = nodes > 0 ? nodes - 1 : 0;
  if (datagram.link >= links_.size() || !links_[datagram.link]->unicast.socket.is_open()) {
    stats_.send_errors += others;
    return;
  }
  Link& link = *links_[datagram.link];
  if (link.group_endpoint) {
    // A multicast link: one datagram reaches every peer that joined the group.
    boost::system::error_code ec;
    link.unicast.socket.send_to(asio::buffer(datagram.bytes.data(), datagram.bytes.size()),
                                *link.group_endpoint, 0, ec);
    if (ec) {
      ++stats_.send_errors;
    } else {
      ++stats_.sent;
    }
    return;
  }
  // One system call for the whole round (sendmmsg) instead of one per peer.
  std::vector<mmsghdr> messages;
  std::vector<iovec> payload(1);
  payload[0].iov_base = const_cast<char*>(datagram.bytes.data());
  payload[0].iov_len = datagram.bytes.size();
  messages.reserve(others);
  for (std::size_t n = 0; n < nodes; ++n) {
    if (n == self_ || !datagram.reaches(static_cast<uint32_t>(n))) {
      continue;
    }
    udp::endpoint& to = peers_[n * link_count_ + datagram.link];
    mmsghdr m{};
    m.msg_hdr.msg_name = to.data();
    m.msg_hdr.msg_namelen = static_cast<socklen_t>(to.size());
    m.msg_hdr.msg_iov = payload.data();
    m.msg_hdr.msg_iovlen = 1;
    messages.push_back(m);
  }
  const int fd = link.unicast.socket.native_handle();
  std::size_t done = 0;
  while (done < messages.size()) {
    const int n = ::sendmmsg(fd, messages.data() + done,
                             static_cast<unsigned>(messages.size() - done), MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      stats_.sent += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    // The first datagram left was refused (no route to that peer, buffer full): count it
    // and go on with the rest, as one send_to() per peer would.
    ++stats_.send_errors;
    ++done;
  }
}

bool UdpTransport::backlogEmpty() const {
  for (const auto& link : links_) {
    for (const Receiver* r : {&link->unicast, link->group.get()}) {
      boost::system::error_code ec;
      if (r != nullptr && r->socket.is_open() && r->socket.available(ec) > 0 && !ec) {
        return false;
      }
    }
  }
  return true;
}

void UdpTransport::close() {
  for (auto& link : links_) {
    boost::system::error_code ec;
    link->unicast.socket.close(ec);
    if (link->group) {
      link->group->socket.close(ec);
    }
  }
}

}  // namespace shoal
