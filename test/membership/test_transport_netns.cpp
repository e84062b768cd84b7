// The real transport on IPv6 link-local heartbeat addresses (fe80::/10), which only work with
// an interface scope. Runs in a network namespace of its own (a child process unshares one,
// so the host's interfaces are never touched): one end of a veth pair carries the three nodes'
// link-local addresses of their only heartbeat link. Needs root; fails (never skips)
// without it.

#include <doctest/doctest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/timing_profile.h"
#include "test/membership/live_node.h"

using namespace shoal;
using namespace shoal::test;

namespace {

ClusterDefinition linkLocalDefinition() {
  ClusterDefinition def = sim::makeDefinition(3, 1, *timingPreset("fast"));
  for (uint32_t i = 0; i < 3; ++i) {
    def.nodes[i].addresses[0] = *IpAddress::parse("fe80::5:" + std::to_string(i + 1));
  }
  def.port = 7400;
  return def;
}

// Runs `body` in a child process inside a new network namespace with its interface (a veth
// pair) set up; returns the child's exit status: 0 when the body passed. The child never
// returns into the test runner, whatever the body does.
int inNamespace(int (*body)()) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) {
      std::perror("unshare(CLONE_NEWNET) (needs root)");
      std::_Exit(90);
    }
    const char* setup =
        "ip link set lo up && ip link add shl0 type veth peer name shl1 && "
        "ip link set shl1 up && ip link set shl0 up && "
        "ip -6 addr add fe80::5:1/64 dev shl0 nodad && "
        "ip -6 addr add fe80::5:2/64 dev shl0 nodad && "
        "ip -6 addr add fe80::5:3/64 dev shl0 nodad";
    if (std::system(setup) != 0) {
      std::fprintf(stderr, "cannot set up the namespace: %s\n", setup);
      std::_Exit(91);
    }
    int code = 92;
    try {
      code = body();
    } catch (...) {
      std::fprintf(stderr, "the body failed with an exception (see the failed check above)\n");
    }
    std::_Exit(code);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    return 99;
  }
  return WEXITSTATUS(status);
}

int threeCoresAgree() {
  asio::io_context io;
  const ClusterDefinition def = linkLocalDefinition();
  std::vector<std::unique_ptr<LiveNode>> nodes;
  for (uint32_t i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<LiveNode>(io, def, i));
  }
  if (!runUntil(io, [&] { return allAlive(nodes); }, milliseconds(3000))) {
    std::fprintf(stderr, "the cores did not agree over link-local addresses within 3 s\n");
    return 1;
  }
  return 0;
}

int openError(const ClusterDefinition& def, const char* expected) {
  asio::io_context io;
  auto t = UdpTransport::open(
      io, def, 0,
      [](uint32_t, std::span<const uint8_t>, const Endpoint&, UdpTransport::WallTime) {});
  if (t.ok()) {
    std::fprintf(stderr, "open() succeeded; expected an error with \"%s\"\n", expected);
    return 1;
  }
  if (t.error().message.find(expected) == std::string::npos) {
    std::fprintf(stderr, "open() error \"%s\" lacks \"%s\"\n", t.error().message.c_str(),
                 expected);
    return 1;
  }
  return 0;
}

int missingAddressIsNamed() {
  ClusterDefinition def = linkLocalDefinition();
  def.nodes[0].addresses[0] = *IpAddress::parse("fe80::5:99");
  return openError(def, "no interface of this host has the link-local address fe80::5:99");
}

int mixedLinkIsRefused() {
  ClusterDefinition def = linkLocalDefinition();
  def.nodes[2].addresses[0] = *IpAddress::parse("2001:db8::3");
  return openError(def, "mixes IPv6 link-local");
}

}  // namespace

TEST_CASE("three cores agree over IPv6 link-local heartbeat addresses (scope from the interface)") {
  CHECK(inNamespace(threeCoresAgree) == 0);
}

TEST_CASE("a link-local address no interface holds is an error naming it") {
  CHECK(inNamespace(missingAddressIsNamed) == 0);
}

TEST_CASE("a link mixing link-local and other addresses is refused") {
  CHECK(inNamespace(mixedLinkIsRefused) == 0);
}
