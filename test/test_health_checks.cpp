// Health check kinds against the real system: scripts, load average, free disk, TCP and
// ICMP reachability on loopback.

#include "cli/health_checks.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

using shoal::Millis;
using namespace shoal::daemon;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/shoal-hc-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
  std::string script(const std::string& name, const std::string& body) const {
    const std::string p = path + "/" + name;
    std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
    ::chmod(p.c_str(), 0700);
    return p;
  }
};

// A TCP listener on 127.0.0.1 with a kernel-chosen port.
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

}  // namespace

TEST_CASE("script check passes on exit 0, fails on others and on time-out") {
  TempDir dir;
  CHECK(runScriptCheck(dir.script("ok.sh", "exit 0"), Millis(2000)).passed);
  const auto bad = runScriptCheck(dir.script("bad.sh", "exit 4"), Millis(2000));
  CHECK_FALSE(bad.passed);
  CHECK(bad.detail == "exit 4");
  const auto slow = runScriptCheck(dir.script("slow.sh", "sleep 20"), Millis(200));
  CHECK_FALSE(slow.passed);
  CHECK(slow.detail.find("timed out") != std::string::npos);
  CHECK_FALSE(runScriptCheck(dir.path + "/missing.sh", Millis(200)).passed);
}

TEST_CASE("load check compares the 1-minute load average") {
  TempDir dir;
  const std::string f = dir.path + "/loadavg";
  std::ofstream(f) << "3.50 2.00 1.00 1/100 12345\n";
  CHECK(runLoadCheck(4.0, f).passed);
  const auto high = runLoadCheck(3.0, f);
  CHECK_FALSE(high.passed);
  CHECK(high.detail == "load 3.50 > 3.00");
  CHECK_FALSE(runLoadCheck(4.0, dir.path + "/none").passed);
}

TEST_CASE("disk check compares the free percentage") {
  CHECK(runDiskCheck("/", 0.0).passed);
  CHECK_FALSE(runDiskCheck("/", 100.5).passed);
  CHECK_FALSE(runDiskCheck("/nonexistent/path", 1.0).passed);
}

TEST_CASE("reach check: tcp connect to a listener passes, to a closed port fails") {
  Listener l;
  CHECK(runReachCheck("127.0.0.1:" + std::to_string(l.port), Millis(1000)).passed);
  const uint16_t closed = l.port;
  ::close(l.fd);
  l.fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const auto r = runReachCheck("127.0.0.1:" + std::to_string(closed), Millis(1000));
  CHECK_FALSE(r.passed);
  CHECK_FALSE(runReachCheck("not-an-address:80", Millis(100)).passed);
}

TEST_CASE("reach check: icmp echo to loopback is answered") {
  const auto r = runReachCheck("127.0.0.1", Millis(1000));
  INFO(r.detail);
  CHECK(r.passed);
}
