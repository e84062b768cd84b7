// bench_dataplane: median time from an apply() call to the kernel enforcing a new bucket set,
// for the nftables backend in-process (libnftables) against the same change made through the
// `nft` command (one process per change), measured in the same run.
//
// "Enforced" here means the transaction is committed: apply() returns after the kernel acked
// the netlink batch, and from then on every packet sees the new set (nf_tables commits a
// batch atomically). After every timed move the benchmark lists the set (untimed) and
// checks that it holds exactly the new elements; a mismatch aborts the run.
//
// Runs as root in a network namespace of its own (unshare), on a veth interface, so it
// touches nothing of the host.   Usage: bench_dataplane [moves]   (default 300)

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/nftables_dataplane.h"

namespace {

using namespace shoal;
using namespace shoal::dataplane;

struct Figures {
  double median_ms = 0;
  double p90_ms = 0;
  std::size_t moves = 0;
};

DesiredState stateFor(uint32_t move) {
  Service s;
  s.name = "bench";
  s.vip = *IpAddress::parse("10.99.0.100");
  s.interface = "bench0";
  s.cluster_mac = *MacAddress::parse("01:00:5e:63:00:64");
  s.hash = HashMode::SourceIpSourcePort;
  s.buckets = 64;
  s.seed = 0x5eed;
  // Each move hands 4 buckets on: the owned window of 32 buckets slides by 4.
  std::vector<uint32_t> owned;
  for (uint32_t i = 0; i < 32; ++i) owned.push_back((move * 4 + i) % s.buckets);
  std::sort(owned.begin(), owned.end());
  return DesiredState{{ServiceAssignment{s, owned, {}}}};
}

Result<Figures> measure(NftablesDataplane& dp, uint32_t moves) {
  if (Status st = dp.apply(stateFor(0)); !st) return st.error();
  std::vector<double> ms;
  for (uint32_t m = 1; m <= moves; ++m) {
    const DesiredState next = stateFor(m);
    const auto start = std::chrono::steady_clock::now();
    Status st = dp.apply(next);
    const auto end = std::chrono::steady_clock::now();
    if (!st) return st.error();
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    auto listed = dp.session().run("list set inet shoal " + ownedSetName(0));
    if (!listed) return listed.error();
    auto elements = setElements(*listed, ownedSetName(0));
    std::vector<uint32_t> want;
    for (uint32_t b : next.services[0].owned) want.push_back(kMarkBase + b);
    if (!elements || *elements != want) {
      return Error{"after move " + std::to_string(m) + " the kernel's set differs"};
    }
  }
  if (Status st = dp.teardown(); !st) return st.error();
  std::sort(ms.begin(), ms.end());
  return Figures{ms[ms.size() / 2], ms[ms.size() * 9 / 10], ms.size()};
}

std::unique_ptr<NftablesDataplane> build(std::unique_ptr<NftSession> session, bool owner) {
  auto vips = NetlinkVipAddresses::open();
  auto macs = PacketSocketMemberships::open();
  if (!vips || !macs) return nullptr;
  NftablesOptions options;
  options.ruleset.owner_tables = owner;
  return std::make_unique<NftablesDataplane>(std::move(session), std::move(vips).value(),
                                             std::move(macs).value(), options);
}

}  // namespace

int main(int argc, char** argv) {
  const uint32_t moves = argc > 1 ? static_cast<uint32_t>(std::atoi(argv[1])) : 300;
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_dataplane: needs root (network namespace, nftables)\n");
    return 1;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("bench_dataplane: unshare(CLONE_NEWNET)");
    return 1;
  }
  if (std::system("ip link add bench0 type veth peer name bench1 && ip link set bench0 up") != 0) {
    std::fprintf(stderr, "bench_dataplane: cannot create a veth interface\n");
    return 1;
  }
  auto lib = LibNftablesSession::open();
  if (!lib) {
    std::fprintf(stderr, "bench_dataplane: %s\n", lib.error().message.c_str());
    return 1;
  }
  auto in_process = build(std::move(lib).value(), true);
  auto command = build(std::make_unique<NftCommandSession>(), false);
  if (!in_process || !command) {
    std::fprintf(stderr, "bench_dataplane: cannot open netlink or packet sockets\n");
    return 1;
  }
  auto fast = measure(*in_process, moves);
  if (!fast) {
    std::fprintf(stderr, "bench_dataplane: libnftables: %s\n", fast.error().message.c_str());
    return 1;
  }
  const uint32_t command_moves = std::max<uint32_t>(moves / 4, 20);
  auto slow = measure(*command, command_moves);
  if (!slow) {
    std::fprintf(stderr, "bench_dataplane: nft command: %s\n", slow.error().message.c_str());
    return 1;
  }
  std::printf("bucket move (64 buckets, 4 change owner), apply() to committed transaction:\n");
  std::printf("  nftables via libnftables in-process: median %.3f ms  p90 %.3f ms  (%zu moves)\n",
              fast->median_ms, fast->p90_ms, fast->moves);
  std::printf("  nftables via the nft command:        median %.3f ms  p90 %.3f ms  (%zu moves)\n",
              slow->median_ms, slow->p90_ms, slow->moves);
  std::printf("  ratio nft command / in-process: %.1fx; goal for in-process: under 2 ms: %s\n",
              slow->median_ms / fast->median_ms, fast->median_ms < 2.0 ? "met" : "NOT met");
  return 0;
}
