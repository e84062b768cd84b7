#include "cli/health_checks.h"

#include "cli/process.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>

extern char** environ;

namespace shoal::daemon {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string format(const char* fmt, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

// Splits "host:port", "[v6]:port" or "host"; port 0 when absent.
bool splitTarget(const std::string& target, std::string& host, uint16_t& port) {
  port = 0;
  if (!target.empty() && target.front() == '[') {
    const auto close = target.find(']');
    if (close == std::string::npos) {
      return false;
    }
    host = target.substr(1, close - 1);
    if (close + 1 < target.size()) {
      if (target[close + 1] != ':') {
        return false;
      }
      port = static_cast<uint16_t>(std::strtoul(target.c_str() + close + 2, nullptr, 10));
    }
    return true;
  }
  const auto colon = target.find(':');
  if (colon != std::string::npos && target.find(':', colon + 1) == std::string::npos) {
    host = target.substr(0, colon);
    port = static_cast<uint16_t>(std::strtoul(target.c_str() + colon + 1, nullptr, 10));
    return port != 0;
  }
  host = target;
  return true;
}

bool waitFd(int fd, short events, Millis timeout) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

uint16_t icmpChecksum(const uint8_t* data, std::size_t len) {
  uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < len; i += 2) {
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  }
  if (len % 2 != 0) {
    sum += static_cast<uint32_t>(data[len - 1] << 8);
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum);
}

CheckResult icmpEcho(const sockaddr_storage& addr, socklen_t len, Millis timeout) {
  const bool v6 = addr.ss_family == AF_INET6;
  // A datagram ICMP socket needs no privilege where net.ipv4.ping_group_range allows it; a
  // raw one works for root everywhere.
  const int proto = v6 ? static_cast<int>(IPPROTO_ICMPV6) : static_cast<int>(IPPROTO_ICMP);
  int fd = ::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, proto);
  const bool raw = fd < 0;
  if (raw) {
    fd = ::socket(addr.ss_family, SOCK_RAW | SOCK_CLOEXEC, proto);
  }
  if (fd < 0) {
    return {0, false, std::string("no ICMP socket: ") + std::strerror(errno)};
  }
  uint8_t packet[16] = {static_cast<uint8_t>(v6 ? 128 : ICMP_ECHO), 0, 0, 0, 0x5e, 0xed, 0, 1};
  std::memcpy(packet + 8, "shoal-hc", 8);
  if (!v6) {
    const uint16_t sum = icmpChecksum(packet, sizeof packet);
    packet[2] = static_cast<uint8_t>(sum >> 8);
    packet[3] = static_cast<uint8_t>(sum);
  }
  const auto start = SteadyClock::now();
  if (::sendto(fd, packet, sizeof packet, 0, reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return {0, false, "echo not sent: " + why};
  }
  for (;;) {
    const auto left = timeout - std::chrono::duration_cast<Millis>(SteadyClock::now() - start);
    if (left.count() <= 0 || !waitFd(fd, POLLIN, left)) {
      ::close(fd);
      return {0, false, "no echo reply"};
    }
    uint8_t reply[1500];
    sockaddr_storage from{};
    socklen_t from_len = sizeof from;
    const ssize_t n = ::recvfrom(fd, reply, sizeof reply, 0, reinterpret_cast<sockaddr*>(&from),
                                 &from_len);
    if (n <= 0) {
      continue;
    }
    std::size_t off = 0;
    if (raw && !v6) {
      off = static_cast<std::size_t>(reply[0] & 0x0f) * 4;  // raw IPv4 sockets include the header
    }
    const uint8_t echo_reply = v6 ? 129 : ICMP_ECHOREPLY;
    if (static_cast<std::size_t>(n) >= off + 8 && reply[off] == echo_reply) {
      ::close(fd);
      const auto ms = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() -
                                                                            start);
      return {0, true, format("echo reply in %.1f ms", static_cast<double>(ms.count()) / 1000.0)};
    }
  }
}

}  // namespace

CheckResult runScriptCheck(const std::string& path, Millis timeout) {
  const ProcessResult r = runProcess(path, environ, timeout);
  if (r.spawn_error != 0) {
    return {0, false, std::string("cannot run: ") + std::strerror(r.spawn_error)};
  }
  if (r.timed_out) {
    return {0, false, format("timed out after %lld ms", static_cast<long long>(timeout.count()))};
  }
  if (WIFEXITED(r.status)) {
    return {0, WEXITSTATUS(r.status) == 0, format("exit %d", WEXITSTATUS(r.status))};
  }
  return {0, false, format("killed by signal %d", WTERMSIG(r.status))};
}

CheckResult runLoadCheck(double max_load, const std::string& loadavg_file) {
  std::ifstream in(loadavg_file);
  double load = 0;
  if (!(in >> load)) {
    return {0, false, "cannot read " + loadavg_file};
  }
  const bool ok = load <= max_load;
  return {0, ok, format("load %.2f %s %.2f", load, ok ? "<=" : ">", max_load)};
}

CheckResult runDiskCheck(const std::string& path, double min_free_percent) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0 || st.f_blocks == 0) {
    return {0, false, "cannot stat " + path + ": " + std::strerror(errno)};
  }
  const double free_pct =
      100.0 * static_cast<double>(st.f_bavail) / static_cast<double>(st.f_blocks);
  const bool ok = free_pct >= min_free_percent;
  return {0, ok, format("%.1f%% free %s %.1f%%", free_pct, ok ? ">=" : "<", min_free_percent)};
}

CheckResult runReachCheck(const std::string& target, Millis timeout) {
  std::string host;
  uint16_t port = 0;
  if (!splitTarget(target, host, port)) {
    return {0, false, "bad target " + target};
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST;  // no DNS: a health check must not hang on a resolver
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
    return {0, false, "not a numeric address: " + host};
  }
  sockaddr_storage addr{};
  const socklen_t len = res->ai_addrlen;
  std::memcpy(&addr, res->ai_addr, len);
  ::freeaddrinfo(res);
  if (port == 0) {
    return icmpEcho(addr, len, timeout);
  }
  if (addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return {0, false, std::string("socket: ") + std::strerror(errno)};
  }
  CheckResult r{0, false, ""};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
    r = {0, true, "connected"};
  } else if (errno != EINPROGRESS) {
    r.detail = std::string("connect: ") + std::strerror(errno);
  } else if (!waitFd(fd, POLLOUT, timeout)) {
    r.detail = "connect timed out";
  } else {
    int err = 0;
    socklen_t elen = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    r = err == 0 ? CheckResult{0, true, "connected"}
                 : CheckResult{0, false, std::string("connect: ") + std::strerror(err)};
  }
  ::close(fd);
  return r;
}

HealthRunner::HealthRunner(std::vector<HealthCheck> checks, Callback callback)
    : checks_(std::move(checks)), callback_(std::move(callback)) {
  const bool any = std::any_of(checks_.begin(), checks_.end(), [](const HealthCheck& c) {
    return c.kind != HealthCheck::Kind::Link;
  });
  if (any) {
    thread_ = std::thread([this] { loop(); });
  }
}

HealthRunner::~HealthRunner() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void HealthRunner::loop() {
  std::vector<SteadyClock::time_point> due(checks_.size(), SteadyClock::now());
  for (;;) {
    std::size_t next = checks_.size();
    for (std::size_t i = 0; i < checks_.size(); ++i) {
      if (checks_[i].kind != HealthCheck::Kind::Link && (next == checks_.size() || due[i] < due[next])) {
        next = i;
      }
    }
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_until(lock, due[next], [this] { return stop_; })) {
        return;
      }
    }
    const HealthCheck& c = checks_[next];
    CheckResult r;
    switch (c.kind) {
      case HealthCheck::Kind::Script:
        r = runScriptCheck(c.target, c.timeout);
        break;
      case HealthCheck::Kind::Load:
        r = runLoadCheck(c.threshold);
        break;
      case HealthCheck::Kind::Disk:
        r = runDiskCheck(c.target, c.threshold);
        break;
      case HealthCheck::Kind::Reach:
        r = runReachCheck(c.target, c.timeout);
        break;
      case HealthCheck::Kind::Link:
        break;
    }
    r.index = next;
    due[next] = SteadyClock::now() + c.interval;
    callback_(std::move(r));
  }
}

}  // namespace shoal::daemon
