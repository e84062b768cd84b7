// flow_client: the client side of the end-to-end tests. It predicts the owner of every flow
// with shoal's own hash, not with the kernel's answer, and checks that exactly that node
// answers.
//
//   flow_client udp|tcp --vip ADDR --ports P1,P2 --sources FIRST+COUNT --flows N
//               --service hash=MODE,buckets=B,seed=S [--owner NAME=0:3:6 ...]
//               [--timeout-ms T] [--hash-kind nftables|clusterip]
//
// --hash-kind: which backend's hash predicts the bucket: nftables (the default; jhash over
//   the concatenated fields, dataplane/jhash.h) or clusterip (ipt_CLUSTERIP's
//   jhash_Nwords, dataplane/clusterip_hash.h; IPv4 only).
//
// udp: N flows (source address round-robin, ephemeral source port, destination port
//   round-robin) send one datagram each (re-sent while unanswered) and collect every answer
//   until the timeout. A flow passes when the distinct answering nodes are exactly {owner},
//   or nothing when no --owner lists its bucket. Prints a summary; exit 0 iff all pass.
// tcp: opens N connections, reads each greeting (the accepting node's name) and checks it as
//   above; prints "connected ..." then waits for stdin commands, keeping the connections:
//     check alive    every connection must echo a line back
//     check reset-from NAME   connections NAME accepted must be reset (their bucket was taken
//                             over from a dead NAME) within the timeout; all others echo
//     check silent-from NAME  connections NAME accepted must get no answer at all within the
//                             timeout (NAME's node has stopped answering); all others echo
//   each prints a result line ending in PASS or FAIL. Exits on EOF.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dataplane/clusterip_hash.h"
#include "dataplane/jhash.h"
#include "test/e2e/e2e_args.h"

namespace {

using namespace shoal;
using Clock = std::chrono::steady_clock;

struct Options {
  bool tcp = false;
  IpAddress vip;
  std::vector<uint32_t> ports;
  std::vector<IpAddress> sources;
  uint32_t flows = 200;
  Service service;
  std::map<uint32_t, std::string> owner_of_bucket;
  int timeout_ms = 1500;
  bool clusterip_hash = false;  // predict with CLUSTERIP's hash instead of nftables' jhash
};

struct Flow {
  int fd = -1;
  IpAddress source;
  uint16_t source_port = 0;
  uint16_t dest_port = 0;
  std::string expected;  // "" = nobody
  std::set<std::string> answers;
  std::string greeting_buffer;
  bool greeted = false;
};

std::optional<std::vector<IpAddress>> parseSources(const std::string& text) {
  const auto plus = text.find('+');
  if (plus == std::string::npos) return std::nullopt;
  auto first = IpAddress::parse(text.substr(0, plus));
  const unsigned long count = std::strtoul(text.c_str() + plus + 1, nullptr, 10);
  if (!first || count == 0) return std::nullopt;
  std::vector<IpAddress> out;
  IpAddress cur = *first;
  const int last = cur.isV4() ? 3 : 15;
  for (unsigned long i = 0; i < count; ++i) {
    out.push_back(cur);
    for (int b = last; b >= 0 && ++cur.bytes[static_cast<std::size_t>(b)] == 0; --b) {
    }
  }
  return out;
}

sockaddr_storage toSockaddr(const IpAddress& ip, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (ip.isV4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.bytes.data(), 4);
    *len = sizeof *sin;
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, ip.bytes.data(), 16);
    *len = sizeof *sin6;
  }
  return ss;
}

uint16_t boundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// Opens the flow's socket bound to its source address, connected to VIP:port.
bool openFlow(Flow& f, const Options& o) {
  const int family = o.vip.isV4() ? AF_INET : AF_INET6;
  f.fd = socket(family, (o.tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (f.fd < 0) return false;
  socklen_t len;
  sockaddr_storage src = toSockaddr(f.source, 0, &len);
  if (bind(f.fd, reinterpret_cast<sockaddr*>(&src), len) != 0) {
    std::fprintf(stderr, "bind %s: %s\n", f.source.toString().c_str(), std::strerror(errno));
    return false;
  }
  sockaddr_storage dst = toSockaddr(o.vip, f.dest_port, &len);
  if (connect(f.fd, reinterpret_cast<sockaddr*>(&dst), len) != 0 && errno != EINPROGRESS) {
    std::fprintf(stderr, "connect: %s\n", std::strerror(errno));
    return false;
  }
  f.source_port = boundPort(f.fd);
  dataplane::FlowKey key{f.source, static_cast<uint8_t>(o.tcp ? 6 : 17), f.source_port,
                         f.dest_port};
  const uint32_t bucket =
      o.clusterip_hash
          ? dataplane::clusterip::bucketOf(f.source, f.source_port, f.dest_port, o.service.hash,
                                           o.service.buckets, o.service.seed)
          : dataplane::bucketOf(key, o.service.hash, o.service.buckets, o.service.seed);
  auto it = o.owner_of_bucket.find(bucket);
  f.expected = it == o.owner_of_bucket.end() ? "" : it->second;
  return true;
}

std::string describe(const Flow& f) {
  std::string names;
  for (const auto& n : f.answers) names += (names.empty() ? "" : ",") + n;
  return f.source.toString() + ":" + std::to_string(f.source_port) + "->" +
         std::to_string(f.dest_port) + " expected=" + (f.expected.empty() ? "none" : f.expected) +
         " got=" + (names.empty() ? "none" : names);
}

bool report(const std::vector<Flow>& flows, const char* what) {
  std::map<std::string, int> by_node;
  int ok = 0, none = 0, dup = 0, wrong = 0, expected_silent = 0;
  std::vector<std::string> bad;
  for (const auto& f : flows) {
    for (const auto& n : f.answers) ++by_node[n];
    if (f.expected.empty()) ++expected_silent;
    const bool pass = f.expected.empty() ? f.answers.empty()
                                         : f.answers == std::set<std::string>{f.expected};
    if (pass) {
      ++ok;
    } else {
      if (f.answers.empty()) ++none;
      else if (f.answers.size() > 1) ++dup;
      else ++wrong;
      if (bad.size() < 10) bad.push_back(describe(f));
    }
  }
  std::string nodes;
  for (const auto& [n, c] : by_node) nodes += " " + n + "=" + std::to_string(c);
  const bool pass = ok == static_cast<int>(flows.size());
  std::printf("%s flows=%zu ok=%d unanswered=%d duplicated=%d wrong_node=%d expected_silent=%d "
              "answers_by_node:%s %s\n",
              what, flows.size(), ok, none, dup, wrong, expected_silent, nodes.c_str(),
              pass ? "PASS" : "FAIL");
  for (const auto& b : bad) std::printf("  bad flow %s\n", b.c_str());
  std::fflush(stdout);
  return pass;
}

int runUdp(const Options& o, std::vector<Flow>& flows) {
  const auto start = Clock::now();
  auto last_send = start - std::chrono::hours(1);
  for (;;) {
    const auto now = Clock::now();
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count();
    if (elapsed >= o.timeout_ms) break;
    // (Re-)send every 250 ms while unanswered: the first datagrams may wait on ARP/ND.
    if (now - last_send >= std::chrono::milliseconds(250)) {
      for (auto& f : flows) {
        if (f.answers.empty()) (void)!send(f.fd, "q", 1, 0);
      }
      last_send = now;
    }
    std::vector<pollfd> fds;
    for (const auto& f : flows) fds.push_back({f.fd, POLLIN, 0});
    poll(fds.data(), fds.size(), 50);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      char buf[256];
      ssize_t n;
      while ((n = recv(flows[i].fd, buf, sizeof buf, 0)) > 0) {
        flows[i].answers.insert(std::string(buf, static_cast<std::size_t>(n)));
      }
    }
  }
  return report(flows, "udp") ? 0 : 1;
}

// Reads what is available on a TCP flow; returns false on reset, closes or errors.
bool readSome(Flow& f, std::string& into, int* error) {
  char buf[512];
  for (;;) {
    const ssize_t n = recv(f.fd, buf, sizeof buf, 0);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      *error = EPIPE;
      return false;
    }
    if (errno == EAGAIN) return true;
    *error = errno;
    return false;
  }
}

int runTcp(const Options& o, std::vector<Flow>& flows) {
  const auto start = Clock::now();
  for (;;) {
    bool waiting = false;
    std::vector<pollfd> fds;
    for (const auto& f : flows) {
      fds.push_back({f.fd, static_cast<short>(f.greeted ? 0 : POLLIN), 0});
      waiting |= !f.greeted;
    }
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    if (!waiting || elapsed >= o.timeout_ms) break;
    poll(fds.data(), fds.size(), 50);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      Flow& f = flows[i];
      if (f.greeted || !(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      int err = 0;
      if (!readSome(f, f.greeting_buffer, &err)) f.greeted = true;
      const auto nl = f.greeting_buffer.find('\n');
      if (nl != std::string::npos) {
        f.answers.insert(f.greeting_buffer.substr(0, nl));
        f.greeted = true;
      }
    }
  }
  const bool connected = report(flows, "tcp-connect");
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::string reset_prefix = "check reset-from ";
    const std::string silent_prefix = "check silent-from ";
    const bool want_alive = line == "check alive";
    // NAME's connections are expected in state 2 (reset) or 0 (no answer).
    std::string dead;
    int dead_state = 2;
    if (line.rfind(reset_prefix, 0) == 0) {
      dead = line.substr(reset_prefix.size());
    } else if (line.rfind(silent_prefix, 0) == 0) {
      dead = line.substr(silent_prefix.size());
      dead_state = 0;
    }
    if (!want_alive && dead.empty()) {
      std::printf("unknown command: %s FAIL\n", line.c_str());
      std::fflush(stdout);
      continue;
    }
    const auto t0 = Clock::now();
    std::vector<int> state(flows.size(), 0);  // 0 waiting, 1 echoed, 2 reset/closed
    std::vector<std::string> got(flows.size());
    std::vector<double> reset_ms(flows.size(), 0);
    for (std::size_t i = 0; i < flows.size(); ++i) {
      if (send(flows[i].fd, "ping\n", 5, MSG_NOSIGNAL) != 5) state[i] = 2;
    }
    for (;;) {
      std::vector<pollfd> fds;
      bool waiting = false;
      for (std::size_t i = 0; i < flows.size(); ++i) {
        fds.push_back({flows[i].fd, static_cast<short>(state[i] == 0 ? POLLIN : 0), 0});
        waiting |= state[i] == 0;
      }
      const auto elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
      if (!waiting || elapsed >= o.timeout_ms) break;
      poll(fds.data(), fds.size(), 20);
      for (std::size_t i = 0; i < flows.size(); ++i) {
        if (state[i] != 0 || !(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        int err = 0;
        if (!readSome(flows[i], got[i], &err)) {
          state[i] = 2;
          reset_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        } else if (got[i].find("ping\n") != std::string::npos) {
          state[i] = 1;
        }
      }
    }
    int alive = 0, reset = 0, silent = 0, as_expected = 0;
    double worst_reset = 0;
    for (std::size_t i = 0; i < flows.size(); ++i) {
      const bool from_dead = !dead.empty() && flows[i].answers.count(dead) != 0;
      if (state[i] == (from_dead ? dead_state : 1)) ++as_expected;
      if (state[i] == 1) ++alive;
      if (state[i] == 2) {
        ++reset;
        worst_reset = std::max(worst_reset, reset_ms[i]);
      }
      if (state[i] == 0) ++silent;
    }
    const int n = static_cast<int>(flows.size());
    const bool pass = as_expected == n;
    std::printf("%s connections=%d as_expected=%d alive=%d reset=%d silent=%d "
                "slowest_reset_ms=%.1f %s\n",
                line.c_str(), n, as_expected, alive, reset, silent, worst_reset,
                pass ? "PASS" : "FAIL");
    std::fflush(stdout);
  }
  return connected ? 0 : 1;
}

int usage(const std::string& why) {
  std::fprintf(stderr, "flow_client: %s\n(see the top of test/e2e/flow_client.cpp)\n",
               why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage("udp or tcp?");
  Options o;
  const std::string mode = argv[1];
  if (mode != "udp" && mode != "tcp") return usage("mode must be udp or tcp");
  o.tcp = mode == "tcp";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const std::string val = argv[i + 1];
    if (arg == "--vip") {
      auto ip = IpAddress::parse(val);
      if (!ip) return usage("bad --vip");
      o.vip = *ip;
    } else if (arg == "--ports") {
      auto p = e2e::parseBuckets(val);
      if (!p || p->empty()) return usage("bad --ports");
      o.ports = *p;
    } else if (arg == "--sources") {
      auto s = parseSources(val);
      if (!s) return usage("bad --sources (FIRST+COUNT)");
      o.sources = *s;
    } else if (arg == "--flows") {
      o.flows = static_cast<uint32_t>(std::strtoul(val.c_str(), nullptr, 10));
    } else if (arg == "--timeout-ms") {
      o.timeout_ms = std::atoi(val.c_str());
    } else if (arg == "--hash-kind") {
      if (val != "nftables" && val != "clusterip") {
        return usage("bad --hash-kind '" + val + "' (nftables or clusterip)");
      }
      o.clusterip_hash = val == "clusterip";
    } else if (arg == "--service") {
      auto spec = e2e::parseServiceSpec(val);
      if (!spec) return usage(spec.error().message);
      o.service = spec->service;
    } else if (arg == "--owner") {
      const auto eq = val.find('=');
      auto b = e2e::parseBuckets(eq == std::string::npos ? "" : val.substr(eq + 1));
      if (eq == std::string::npos || !b) return usage("bad --owner NAME=0:1:2");
      for (uint32_t bucket : *b) o.owner_of_bucket[bucket] = val.substr(0, eq);
    } else {
      return usage("unknown argument " + arg);
    }
  }
  if (o.sources.empty() || o.ports.empty() || o.flows == 0) {
    return usage("--sources, --ports and --flows are needed");
  }
  if (o.clusterip_hash && (!o.vip.isV4() || !o.sources.front().isV4())) {
    return usage("--hash-kind clusterip needs an IPv4 --vip and IPv4 --sources");
  }
  std::vector<Flow> flows(o.flows);
  for (uint32_t i = 0; i < o.flows; ++i) {
    flows[i].source = o.sources[i % o.sources.size()];
    flows[i].dest_port = static_cast<uint16_t>(o.ports[(i / o.sources.size()) % o.ports.size()]);
    if (!openFlow(flows[i], o)) return 1;
  }
  return o.tcp ? runTcp(o, flows) : runUdp(o, flows);
}
