// responder: the service on each node of the end-to-end tests.
//   UDP: every datagram is answered with "NAME" from the address it was sent to.
//   TCP: every connection gets "NAME\n" at once, stays open and echoes what it receives.
// Listens on IPv4 and IPv6 (any address) on every port given.
//
//   responder --name node1 --ports 7000,7001,7002,7003
//
// Single-threaded (poll); runs until killed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "test/e2e/e2e_args.h"

namespace {

enum class Kind { Udp, Listener, Connection };

struct Socket {
  int fd;
  Kind kind;
};

int openSocket(int family, int type, uint16_t port) {
  const int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (type == SOCK_DGRAM) {
    // Learn each datagram's destination so the answer leaves from the VIP it was sent to.
    if (family == AF_INET) {
      setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    } else {
      setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
    }
  }
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    len = sizeof *sin;
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    len = sizeof *sin6;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  if (type == SOCK_STREAM && listen(fd, 1024) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Answers one datagram from the address it arrived on (the pktinfo goes back as the source).
void answerDatagram(int fd, const std::string& name) {
  char data[2048];
  char control[256];
  sockaddr_storage peer{};
  iovec iov{data, sizeof data};
  msghdr msg{};
  msg.msg_name = &peer;
  msg.msg_namelen = sizeof peer;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (recvmsg(fd, &msg, 0) < 0) return;
  char reply_control[256] = {};
  msghdr out{};
  iovec out_iov{const_cast<char*>(name.data()), name.size()};
  out.msg_name = &peer;
  out.msg_namelen = msg.msg_namelen;
  out.msg_iov = &out_iov;
  out.msg_iovlen = 1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      info.ipi_spec_dst = info.ipi_addr;
      info.ipi_ifindex = 0;
      out.msg_control = reply_control;
      out.msg_controllen = CMSG_SPACE(sizeof info);
      cmsghdr* r = CMSG_FIRSTHDR(&out);
      r->cmsg_level = IPPROTO_IP;
      r->cmsg_type = IP_PKTINFO;
      r->cmsg_len = CMSG_LEN(sizeof info);
      std::memcpy(CMSG_DATA(r), &info, sizeof info);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      info.ipi6_ifindex = 0;
      out.msg_control = reply_control;
      out.msg_controllen = CMSG_SPACE(sizeof info);
      cmsghdr* r = CMSG_FIRSTHDR(&out);
      r->cmsg_level = IPPROTO_IPV6;
      r->cmsg_type = IPV6_PKTINFO;
      r->cmsg_len = CMSG_LEN(sizeof info);
      std::memcpy(CMSG_DATA(r), &info, sizeof info);
    }
  }
  (void)sendmsg(fd, &out, 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  std::vector<uint32_t> ports;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--name") {
      name = argv[i + 1];
    } else if (arg == "--ports") {
      auto parsed = shoal::e2e::parseBuckets(argv[i + 1]);
      if (parsed) ports = *parsed;
    }
  }
  if (name.empty() || ports.empty()) {
    std::fprintf(stderr, "usage: responder --name NAME --ports P1,P2,...\n");
    return 2;
  }
  std::vector<Socket> sockets;
  for (uint32_t port : ports) {
    for (int family : {AF_INET, AF_INET6}) {
      const int u = openSocket(family, SOCK_DGRAM, static_cast<uint16_t>(port));
      const int t = openSocket(family, SOCK_STREAM, static_cast<uint16_t>(port));
      if (u < 0 || t < 0) {
        std::fprintf(stderr, "responder: cannot listen on port %u: %s\n", port,
                     std::strerror(errno));
        return 1;
      }
      sockets.push_back({u, Kind::Udp});
      sockets.push_back({t, Kind::Listener});
    }
  }
  std::printf("listening\n");
  std::fflush(stdout);
  const std::string greeting = name + "\n";
  for (;;) {
    std::vector<pollfd> fds;
    for (const auto& s : sockets) fds.push_back({s.fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return 1;
    std::vector<Socket> added;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Socket& s = sockets[i];
      if (s.kind == Kind::Udp) {
        answerDatagram(s.fd, name);
      } else if (s.kind == Kind::Listener) {
        for (;;) {
          const int c = accept4(s.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          (void)!write(c, greeting.data(), greeting.size());
          added.push_back({c, Kind::Connection});
        }
      } else {
        char buf[4096];
        const ssize_t n = read(s.fd, buf, sizeof buf);
        if (n > 0) {
          (void)!write(s.fd, buf, static_cast<std::size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          close(s.fd);
          s.fd = -1;
        }
      }
    }
    std::erase_if(sockets, [](const Socket& s) { return s.fd < 0; });
    sockets.insert(sockets.end(), added.begin(), added.end());
  }
}
