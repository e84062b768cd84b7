// The real transport with multicast heartbeats (ClusterDefinition::heartbeat_groups): three
// cores, each in a network namespace of its own, joined by a bridge that floods multicast
// (as a switch without IGMP/MLD snooping does). A child process unshares the namespaces, so
// the host's interfaces are never touched. Needs root; fails (never skips) without it.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/timing_profile.h"
#include "test/membership/live_node.h"

using namespace shoal;
using namespace shoal::test;

namespace {

constexpr uint32_t kNodes = 3;

// Node i: IPv4 10.9.0.(i+1) on link 0 and IPv6 link-local fe80::9:(i+1) on link 1 (both on
// its interface m0), plus the ULA fd00:9::(i+1) for a routed-scope IPv6 group.
ClusterDefinition twoLinks(std::vector<std::optional<IpAddress>> groups) {
  ClusterDefinition def = sim::makeDefinition(kNodes, 2, *timingPreset("fast"));
  for (uint32_t i = 0; i < kNodes; ++i) {
    def.nodes[i].addresses[0] = *IpAddress::parse("10.9.0." + std::to_string(i + 1));
    def.nodes[i].addresses[1] = *IpAddress::parse("fe80::9:" + std::to_string(i + 1));
  }
  def.port = 7400;
  def.heartbeat_groups = std::move(groups);
  return def;
}

int run(const char* what, const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "cannot %s: %s\n", what, command.c_str());
    return 1;
  }
  return 0;
}

// Runs `body` in a child process: a hub namespace with a bridge (snooping off) and one
// namespace per node, each with interface m0 on the bridge. `body` gets the nodes' namespace
// descriptors (setns() into one before opening that node's sockets: a socket stays in the
// namespace it was made in). Returns the child's exit status: 0 when the body passed.
int inNamespaces(int (*body)(const std::vector<int>&)) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) {
      std::perror("unshare(CLONE_NEWNET) (needs root)");
      std::_Exit(90);
    }
    const int hub = ::open("/proc/self/ns/net", O_RDONLY);
    if (hub < 0 || run("set up the hub", "ip link set lo up && ip link add br0 type bridge "
                                         "mcast_snooping 0 && ip link set br0 up") != 0) {
      std::_Exit(91);
    }
    std::vector<int> nodes;
    for (uint32_t i = 0; i < kNodes; ++i) {
      if (::unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare(CLONE_NEWNET)");
        std::_Exit(91);
      }
      const int ns = ::open("/proc/self/ns/net", O_RDONLY);
      const std::string n = std::to_string(i + 1);
      if (ns < 0 || ::setns(hub, CLONE_NEWNET) != 0 ||
          run("link a node to the hub", "ip link add h" + n + " type veth peer name m0 netns /proc/" +
                                            std::to_string(::getpid()) + "/fd/" +
                                            std::to_string(ns) + " && ip link set h" + n +
                                            " master br0 up") != 0 ||
          ::setns(ns, CLONE_NEWNET) != 0 ||
          run("set up a node", "ip link set lo up && ip link set m0 up && ip addr add 10.9.0." + n +
                                   "/24 dev m0 && ip -6 addr add fe80::9:" + n +
                                   "/64 dev m0 nodad && ip -6 addr add fd00:9::" + n +
                                   "/64 dev m0 nodad") != 0) {
        std::_Exit(91);
      }
      nodes.push_back(ns);
    }
    int code = 92;
    try {
      code = body(nodes);
    } catch (...) {
      std::fprintf(stderr, "the body failed with an exception (see the failed check above)\n");
    }
    std::fflush(nullptr);
    std::_Exit(code);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    return 99;
  }
  return WEXITSTATUS(status);
}

// Three cores on `def` agree within 3 s; then, over one more second, each node's transport
// must have sent exactly the datagrams that `assumed` calls for: a round's heartbeats to all
// peers once on a multicast link of `assumed`, once per peer on a unicast one. With
// `expect_equal` false the counts must differ instead (the control).
int agreeAndCount(const std::vector<int>& ns, const ClusterDefinition& def,
                  const ClusterDefinition& assumed, bool expect_equal) {
  asio::io_context io;
  std::vector<std::unique_ptr<LiveNode>> nodes;
  std::vector<uint64_t> asked(kNodes, 0);
  for (uint32_t i = 0; i < kNodes; ++i) {
    if (::setns(ns[i], CLONE_NEWNET) != 0) {
      std::perror("setns");
      return 1;
    }
    nodes.push_back(std::make_unique<LiveNode>(io, def, i));
    nodes.back()->tap = [&asked, &assumed, i](const Datagram& d) {
      if (d.node != kAllPeers || assumed.heartbeatGroup(d.link) != nullptr) {
        asked[i] += 1;
        return;
      }
      for (uint32_t n = 0; n < kNodes; ++n) {
        asked[i] += n != i && d.reaches(n) ? 1 : 0;
      }
    };
  }
  if (!runUntil(io, [&] { return allAlive(nodes); }, milliseconds(3000))) {
    std::fprintf(stderr, "the cores did not agree within 3 s\n");
    return 1;
  }
  std::vector<uint64_t> sent_before(kNodes);
  for (uint32_t i = 0; i < kNodes; ++i) {
    asked[i] = 0;
    sent_before[i] = nodes[i]->transport->stats().sent;
  }
  runUntil(io, [] { return false; }, milliseconds(1000));
  int failed = 0;
  for (uint32_t i = 0; i < kNodes; ++i) {
    const uint64_t sent = nodes[i]->transport->stats().sent - sent_before[i];
    std::printf("node %u: %llu datagrams expected, the transport sent %llu\n", i,
                static_cast<unsigned long long>(asked[i]), static_cast<unsigned long long>(sent));
    if (asked[i] < 100 || (sent == asked[i]) != expect_equal) {
      failed = 1;
    }
  }
  if (!allAlive(nodes)) {
    std::fprintf(stderr, "the cores disagree after the counting second\n");
    failed = 1;
  }
  return failed;
}

int bothLinksMulticast(const std::vector<int>& ns) {
  // IPv4 group on link 0; a link-local-scope IPv6 group on link 1 (needs the interface).
  const ClusterDefinition def =
      twoLinks({IpAddress::parse("239.192.74.1"), IpAddress::parse("ff02::74:1")});
  return agreeAndCount(ns, def, def, true);
}

int routedScopeGroup(const std::vector<int>& ns) {
  ClusterDefinition def = twoLinks({std::nullopt, IpAddress::parse("ff15::74:2")});
  for (uint32_t i = 0; i < kNodes; ++i) {
    def.nodes[i].addresses[1] = *IpAddress::parse("fd00:9::" + std::to_string(i + 1));
  }
  return agreeAndCount(ns, def, def, true);
}

int unicastControl(const std::vector<int>& ns) {
  // Unicast on both links, counted as if both were multicast: the counts must differ.
  return agreeAndCount(
      ns, twoLinks({}),
      twoLinks({IpAddress::parse("239.192.74.1"), IpAddress::parse("ff02::74:1")}), false);
}

}  // namespace

TEST_CASE("multicast heartbeats: IPv4 and link-local IPv6 groups, one datagram per round") {
  CHECK(inNamespaces(bothLinksMulticast) == 0);
}

TEST_CASE("multicast heartbeats: a site-scope IPv6 group beside a unicast link") {
  CHECK(inNamespaces(routedScopeGroup) == 0);
}

TEST_CASE("unicast heartbeats (the control): the count tells them from multicast") {
  CHECK(inNamespaces(unicastControl) == 0);
}
