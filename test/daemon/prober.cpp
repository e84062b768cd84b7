// prober: a client that measures what a cluster's users see while nodes crash, drain or
// leave. Every interval it sends one request per source address to the VIP and records the
// answers until it is stopped (SIGTERM/SIGINT) or its duration ends, then prints a summary.
//
//   prober udp --vip ADDR --port P --sources FIRST+COUNT [--interval-ms 10] [--duration-ms D]
//   prober tcp --vip ADDR --port P --sources FIRST+COUNT [--interval-ms 10] [--duration-ms D]
//
// udp: one datagram per source and interval, each from a socket of its own, so every answer
//   is matched to its request; a request is settled 300 ms after it was sent.
//   Unanswered = lost, more than one answer = duplicate.
//   The outage of a source is its longest run of unanswered requests times the interval.
// tcp: one new connection per source and interval (like a web client); a request succeeds
//   when the node's greeting arrives, fails on reset or after 5 s. Reports failures and the
//   slowest request (a SYN dropped during a hand-off is retransmitted after 1 s).
//
//   prober listen --bind ADDR --port P --duration-ms D [--grid-ms G]
//
// listen: receives datagrams on ADDR:P for D ms (a node's heartbeat address while its
//   shoald is down: the peers keep sending to it) and reports, for the wall-clock time each
//   arrived, how far past a whole multiple of G ms it was: median and p90 of that phase.
//   Heartbeat rounds aligned to the wall clock arrive just past the grid; unaligned ones
//   are spread over the whole interval (a median near G / 2).
//
// Output, last line machine-readable:
//   RESULT mode=udp requests=N answered=A lost=L duplicates=D max_outage_ms=X outages=K ...

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "core/ip_address.h"

namespace {

using Clock = std::chrono::steady_clock;
volatile std::sig_atomic_t g_stop = 0;

struct Options {
  bool udp = true;
  shoal::IpAddress vip;
  uint16_t port = 0;
  shoal::IpAddress first;
  int count = 0;
  int interval_ms = 10;
  long duration_ms = 0;  // 0: until signalled
};

sockaddr_storage toSockaddr(const shoal::IpAddress& a, uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  if (a.isV4()) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    std::memcpy(&s->sin_addr, a.bytes.data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    std::memcpy(&s->sin6_addr, a.bytes.data(), 16);
    len = sizeof(sockaddr_in6);
  }
  return ss;
}

shoal::IpAddress nth(shoal::IpAddress a, int n) {
  const int last = a.isV4() ? 3 : 15;
  for (int i = 0; i < n; ++i) {
    for (int b = last; b >= 0 && ++a.bytes[static_cast<std::size_t>(b)] == 0; --b) {
    }
  }
  return a;
}

int bindSource(const shoal::IpAddress& src, int type) {
  const int fd = ::socket(src.isV4() ? AF_INET : AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  socklen_t len = 0;
  const auto ss = toSockaddr(src, 0, len);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct SourceStats {
  long requests = 0;
  long answered = 0;
  long lost = 0;
  long duplicates = 0;
  long run = 0;       // current run of lost requests
  long longest = 0;   // longest run
  long outages = 0;   // runs of at least one lost request
};

// How long a UDP request waits for (more) answers before it is settled.
constexpr auto kUdpWindow = std::chrono::milliseconds(300);

struct UdpRequest {
  int fd = -1;
  std::size_t source = 0;
  Clock::time_point sent;
  int replies = 0;
  std::string answered_by;  ///< the answers' names, space-separated
};

int runUdp(const Options& o) {
  // One socket per request: an answer can only belong to its own request, however late it
  // comes (within kUdpWindow), so lost and duplicate answers are told apart exactly.
  std::vector<shoal::IpAddress> sources;
  for (int i = 0; i < o.count; ++i) {
    sources.push_back(nth(o.first, i));
  }
  socklen_t vlen = 0;
  const auto vip = toSockaddr(o.vip, o.port, vlen);
  std::vector<SourceStats> stats(sources.size());
  std::deque<UdpRequest> open;
  const auto start_time = Clock::now();
  const auto settle = [&](UdpRequest& r) {
    SourceStats& s = stats[r.source];
    ++s.requests;
    if (r.replies == 0) {
      ++s.lost;
      // The first lost requests are named on stderr with their wall-clock send time, to be
      // matched with the daemons' logged hand-over instants.
      if (s.lost <= 20) {
        const auto wall = std::chrono::system_clock::now() - (Clock::now() - r.sent);
        std::fprintf(
            stderr, "lost: source %s at +%lld ms (wall %.6f s)\n",
            sources[r.source].toString().c_str(),
            static_cast<long long>(
                std::chrono::duration_cast<std::chrono::milliseconds>(r.sent - start_time).count()),
            std::chrono::duration<double>(wall.time_since_epoch()).count());
      }
      if (s.run++ == 0) {
        ++s.outages;
      }
      s.longest = std::max(s.longest, s.run);
    } else {
      ++s.answered;
      if (r.replies > 1) {
        ++s.duplicates;
        // The first few duplicates are named on stderr: who answered twice is the question.
        if (s.duplicates <= 3) {
          std::fprintf(stderr, "duplicate: source %s at +%lld ms answered by%s\n",
                       sources[r.source].toString().c_str(),
                       static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  r.sent - start_time)
                                                  .count()),
                       r.answered_by.c_str());
        }
      }
      s.run = 0;
    }
    ::close(r.fd);
  };
  const auto start = Clock::now();
  auto next = start;
  std::vector<pollfd> pfds;
  for (;;) {
    const auto now = Clock::now();
    const bool over = g_stop || (o.duration_ms > 0 &&
                                 now - start >= std::chrono::milliseconds(o.duration_ms));
    if (!over && now >= next) {
      for (std::size_t i = 0; i < sources.size(); ++i) {
        const int fd = bindSource(sources[i], SOCK_DGRAM);
        if (fd < 0) {
          std::fprintf(stderr, "prober: cannot bind source %s: %s\n",
                       sources[i].toString().c_str(), std::strerror(errno));
          return 2;
        }
        const char msg[] = "probe";
        ::sendto(fd, msg, sizeof msg - 1, 0, reinterpret_cast<const sockaddr*>(&vip), vlen);
        open.push_back({fd, i, Clock::now(), 0, {}});
      }
      next += std::chrono::milliseconds(o.interval_ms);
    }
    while (!open.empty() && Clock::now() - open.front().sent >= kUdpWindow) {
      settle(open.front());
      open.pop_front();
    }
    if (over && open.empty()) {
      break;
    }
    pfds.clear();
    for (const auto& r : open) {
      pfds.push_back({r.fd, POLLIN, 0});
    }
    ::poll(pfds.data(), pfds.size(), 2);
    for (std::size_t i = 0; i < open.size(); ++i) {
      if ((pfds[i].revents & POLLIN) == 0) {
        continue;
      }
      char buf[256];
      ssize_t n = 0;
      while ((n = ::recv(open[i].fd, buf, sizeof buf, 0)) > 0) {
        ++open[i].replies;
        open[i].answered_by += " " + std::string(buf, static_cast<std::size_t>(n));
      }
    }
  }
  SourceStats total;
  for (const auto& s : stats) {
    total.requests += s.requests;
    total.answered += s.answered;
    total.lost += s.lost;
    total.duplicates += s.duplicates;
    total.longest = std::max(total.longest, s.longest);
    total.outages += s.outages;
  }
  std::printf("RESULT mode=udp requests=%ld answered=%ld lost=%ld duplicates=%ld "
              "max_outage_ms=%ld outages=%ld sources=%zu interval_ms=%d\n",
              total.requests, total.answered, total.lost, total.duplicates,
              total.longest * o.interval_ms, total.outages, sources.size(), o.interval_ms);
  return 0;
}

struct Pending {
  int fd = -1;
  Clock::time_point started;
  bool connected = false;
};

int runTcp(const Options& o) {
  socklen_t vlen = 0;
  const auto vip = toSockaddr(o.vip, o.port, vlen);
  std::vector<Pending> pending;
  long requests = 0;
  long ok = 0;
  long failed = 0;
  long slowest_ms = 0;
  long over_100ms = 0;
  const auto start = Clock::now();
  auto next = start;
  const auto finish = [&](Pending& p, bool success) {
    const long ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - p.started).count();
    ++requests;
    if (success) {
      ++ok;
      slowest_ms = std::max(slowest_ms, ms);
      over_100ms += ms > 100 ? 1 : 0;
    } else {
      ++failed;
    }
    ::close(p.fd);
    p.fd = -1;
  };
  for (;;) {
    const auto now = Clock::now();
    const bool over = g_stop || (o.duration_ms > 0 &&
                                 now - start >= std::chrono::milliseconds(o.duration_ms));
    if (!over && now >= next) {
      for (int i = 0; i < o.count; ++i) {
        const int fd = bindSource(nth(o.first, i), SOCK_STREAM);
        if (fd < 0) {
          ++requests;
          ++failed;
          continue;
        }
        ::connect(fd, reinterpret_cast<const sockaddr*>(&vip), vlen);
        pending.push_back({fd, Clock::now(), false});
      }
      next += std::chrono::milliseconds(o.interval_ms);
    }
    if (over && pending.empty()) {
      break;
    }
    std::vector<pollfd> pfds;
    for (const auto& p : pending) {
      pfds.push_back({p.fd, static_cast<short>(POLLIN | POLLOUT), 0});
    }
    ::poll(pfds.data(), pfds.size(), 2);
    for (std::size_t i = 0; i < pending.size(); ++i) {
      Pending& p = pending[i];
      if ((pfds[i].revents & (POLLERR | POLLHUP)) != 0 && (pfds[i].revents & POLLIN) == 0) {
        finish(p, false);
        continue;
      }
      if ((pfds[i].revents & POLLIN) != 0) {
        char buf[64];
        const ssize_t n = ::recv(p.fd, buf, sizeof buf, 0);
        finish(p, n > 0);
        continue;
      }
      if (Clock::now() - p.started > std::chrono::seconds(5)) {
        finish(p, false);
      }
    }
    pending.erase(std::remove_if(pending.begin(), pending.end(),
                                 [](const Pending& p) { return p.fd < 0; }),
                  pending.end());
  }
  std::printf("RESULT mode=tcp requests=%ld ok=%ld lost=%ld slowest_ms=%ld over_100ms=%ld "
              "sources=%d interval_ms=%d\n",
              requests, ok, failed, slowest_ms, over_100ms, o.count, o.interval_ms);
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: prober udp|tcp --vip ADDR --port P --sources FIRST+COUNT "
               "[--interval-ms 10] [--duration-ms D]\n"
               "       prober listen --bind ADDR --port P --duration-ms D [--grid-ms 40]\n");
  return 2;
}

// The listen mode: phases of arrival against the wall clock's grid of `grid_ms`.
int runListen(const shoal::IpAddress& bind, uint16_t port, long duration_ms, long grid_ms) {
  socklen_t len = 0;
  const sockaddr_storage ss = toSockaddr(bind, port, len);
  const int fd = ::socket(ss.ss_family, SOCK_DGRAM, 0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    std::fprintf(stderr, "prober: cannot bind %s:%u: %s\n", bind.toString().c_str(),
                 static_cast<unsigned>(port), std::strerror(errno));
    return 1;
  }
  const auto end = Clock::now() + std::chrono::milliseconds(duration_ms);
  const int64_t grid_ns = grid_ms * 1000000;
  std::vector<double> phases;
  std::vector<char> buffer(65536);
  while (!g_stop && Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left))) <= 0) {
      continue;
    }
    if (::recv(fd, buffer.data(), buffer.size(), 0) < 0) {
      continue;
    }
    const int64_t wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
    phases.push_back(static_cast<double>(wall % grid_ns) / 1e6);
  }
  ::close(fd);
  std::sort(phases.begin(), phases.end());
  auto at = [&](double q) {
    if (phases.empty()) {
      return -1.0;
    }
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(phases.size())));
    return phases[std::min(phases.size() - 1, rank == 0 ? 0 : rank - 1)];
  };
  std::printf("RESULT mode=listen datagrams=%zu grid_ms=%ld median_phase_ms=%.2f p90_phase_ms=%.2f\n",
              phases.size(), grid_ms, at(0.5), at(0.9));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    return usage();
  }
  Options o;
  const std::string mode = argv[1];
  if (mode == "listen") {
    std::optional<shoal::IpAddress> bind;
    long port = 0;
    long duration_ms = 0;
    long grid_ms = 40;
    for (int i = 2; i + 1 < argc; i += 2) {
      const std::string k = argv[i];
      const std::string v = argv[i + 1];
      if (k == "--bind") {
        bind = shoal::IpAddress::parse(v);
      } else if (k == "--port") {
        port = std::strtol(v.c_str(), nullptr, 10);
      } else if (k == "--duration-ms") {
        duration_ms = std::strtol(v.c_str(), nullptr, 10);
      } else if (k == "--grid-ms") {
        grid_ms = std::strtol(v.c_str(), nullptr, 10);
      } else {
        return usage();
      }
    }
    if (!bind || port <= 0 || port > 65535 || duration_ms <= 0 || grid_ms <= 0) {
      return usage();
    }
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    return runListen(*bind, static_cast<uint16_t>(port), duration_ms, grid_ms);
  }
  if (mode != "udp" && mode != "tcp") {
    return usage();
  }
  o.udp = mode == "udp";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--vip") {
      auto a = shoal::IpAddress::parse(v);
      if (!a) {
        return usage();
      }
      o.vip = *a;
    } else if (k == "--port") {
      o.port = static_cast<uint16_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (k == "--sources") {
      const auto plus = v.find('+');
      auto a = shoal::IpAddress::parse(v.substr(0, plus));
      if (plus == std::string::npos || !a) {
        return usage();
      }
      o.first = *a;
      o.count = std::atoi(v.c_str() + plus + 1);
    } else if (k == "--interval-ms") {
      o.interval_ms = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--duration-ms") {
      o.duration_ms = std::atol(v.c_str());
    } else {
      return usage();
    }
  }
  if (o.port == 0 || o.count <= 0) {
    return usage();
  }
  // One socket per request in flight: up to sources x (window / interval) of them.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return o.udp ? runUdp(o) : runTcp(o);
}
