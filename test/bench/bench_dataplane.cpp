// bench_dataplane: median time from an apply() call to the kernel enforcing a new bucket set,
// for the nftables backend in-process (libnftables) against the same change made through the
// `nft` command (one process per change), measured in the same run.
//
// "Enforced" here means the transaction is committed: apply() returns after the kernel acked
// the netlink batch, and from then on every packet sees the new set (nf_tables commits a
// batch atomically). After every timed move the benchmark lists the set (untimed) and
// checks that it holds exactly the new elements; a mismatch aborts the run.
//
// Then the lease (dataplane/lease.h): a bucket move with leased elements, and the renewal the
// daemon makes every heartbeat interval: median wall time of one renewal transaction, the CPU
// it costs this process (user + system, from getrusage, so the kernel's commit is counted),
// and what that comes to per second at the default (20 renewals/s) and fast (100/s) timing.
//
// Runs as root in a network namespace of its own (unshare), on a veth interface, so it
// touches nothing of the host.   Usage: bench_dataplane [moves]   (default 300)

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
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

DesiredState stateFor(uint32_t move, std::optional<Millis> lease = std::nullopt) {
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
  return DesiredState{{ServiceAssignment{s, owned, {}}}, lease};
}

Result<Figures> measure(NftablesDataplane& dp, uint32_t moves,
                        std::optional<Millis> lease = std::nullopt) {
  if (Status st = dp.apply(stateFor(0, lease)); !st) return st.error();
  std::vector<double> ms;
  for (uint32_t m = 1; m <= moves; ++m) {
    const DesiredState next = stateFor(m, lease);
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

double cpuMs() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

struct RenewalFigures {
  double median_ms = 0;
  double cpu_ms = 0;  ///< CPU per renewal (user + system), mean over the run
  std::size_t renewals = 0;
};

// Renewals of a leased state that owns `owned` of `buckets` buckets; after the run the set is
// listed and must still hold every owned bucket.
Result<RenewalFigures> measureRenewals(NftablesDataplane& dp, uint32_t buckets, uint32_t owned,
                                       uint32_t renewals) {
  DesiredState state = stateFor(0, Millis{146});
  state.services[0].service.buckets = buckets;
  state.services[0].owned.clear();
  for (uint32_t b = 0; b < owned; ++b) state.services[0].owned.push_back(b * (buckets / owned));
  if (Status st = dp.apply(state); !st) return st.error();
  std::vector<double> ms;
  const double cpu_start = cpuMs();
  for (uint32_t r = 0; r < renewals; ++r) {
    const auto start = std::chrono::steady_clock::now();
    Status st = dp.renew(Millis{146});
    const auto end = std::chrono::steady_clock::now();
    if (!st) return st.error();
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  const double cpu = (cpuMs() - cpu_start) / renewals;
  auto listed = dp.session().run("list set inet shoal " + ownedSetName(0));
  if (!listed) return listed.error();
  auto elements = setElements(*listed, ownedSetName(0));
  if (!elements || elements->size() != owned) return Error{"renewed set lost elements"};
  if (Status st = dp.teardown(); !st) return st.error();
  std::sort(ms.begin(), ms.end());
  return RenewalFigures{ms[ms.size() / 2], cpu, ms.size()};
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

  auto leased = measure(*in_process, moves, Millis{146});
  if (!leased) {
    std::fprintf(stderr, "bench_dataplane: leased moves: %s\n", leased.error().message.c_str());
    return 1;
  }
  std::printf("the same move with leased elements (timeout 146 ms): median %.3f ms  p90 %.3f ms"
              "  (%.2fx the unleased move)\n",
              leased->median_ms, leased->p90_ms, leased->median_ms / fast->median_ms);
  std::printf("lease renewal (flush + add of every set, one transaction), libnftables:\n");
  struct Shape {
    uint32_t buckets, owned;
    const char* what;
  };
  for (const Shape& shape : {Shape{64, 32, "64 buckets, 32 owned (as above)"},
                             Shape{256, 16, "256 buckets, 16 owned (one of 16 nodes)"},
                             Shape{4096, 1365, "4096 buckets, 1365 owned (one of 3 nodes)"}}) {
    auto r = measureRenewals(*in_process, shape.buckets, shape.owned, moves);
    if (!r) {
      std::fprintf(stderr, "bench_dataplane: renewals: %s\n", r.error().message.c_str());
      return 1;
    }
    std::printf("  %-42s median %.3f ms (%.2fx a move)  CPU %.3f ms each: %.1f ms/s at "
                "default timing (20/s), %.1f ms/s at fast (100/s)\n",
                shape.what, r->median_ms, r->median_ms / fast->median_ms, r->cpu_ms,
                r->cpu_ms * 20, r->cpu_ms * 100);
  }
  return 0;
}
