// bench_dataplane: median time from an apply() call to the kernel enforcing a new bucket set,
// for the nftables backend (a prebuilt netlink batch on libnftables' socket, nft_batch.h)
// against the same change as an nft script, run by libnftables in-process (how apply() made
// it before) and by the `nft` command (one process per change), measured in the same run.
//
// "Enforced" here means the transaction is committed: apply() returns after the kernel acked
// the netlink batch, and from then on every packet sees the new set (nf_tables commits a
// batch atomically). After every timed move the benchmark lists the set (untimed) and
// checks that it holds exactly the new elements; a mismatch aborts the run.
//
// Then the lease (dataplane/lease.h): a bucket move with a lease, and the renewal the daemon
// makes every heartbeat round, at 16, 256 and 4096 buckets, two ways in the same run:
//  - old: one libnftables transaction that flushes and re-adds every set (how renewals were
//    made while every bucket set was leased; here the bucket elements carry no timeout, as
//    the sets no longer take one, which only spares nft a few words to parse);
//  - new: NftablesDataplane::renew(), the prebuilt netlink batch that rewrites the one live
//    element (nft_batch.h).
// For each: median wall time of one renewal, the CPU it costs this process (user + system,
// CLOCK_PROCESS_CPUTIME_ID, so the kernel's commit inside sendmsg is counted; work the kernel
// defers to its workers and RCU is not, for either way), the ratio old / new, and what the
// new way comes to per second at the default and fast timing profiles.
//
// Runs as root in a network namespace of its own (unshare), on a veth interface, so it
// touches nothing of the host.   Usage: bench_dataplane [moves]   (default 300)

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/timing_profile.h"
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
  return DesiredState{{ServiceAssignment{s, owned, {}, {}, {}, {}}}, lease};
}

// How a move is made: apply() (the batch), or the set update script run by the session.
enum class Move { Apply, Script };

Result<Figures> measure(NftablesDataplane& dp, uint32_t moves,
                        std::optional<Millis> lease = std::nullopt, Move how = Move::Apply) {
  if (Status st = dp.apply(stateFor(0, lease)); !st) return st.error();
  std::vector<double> ms;
  for (uint32_t m = 1; m <= moves; ++m) {
    const DesiredState next = stateFor(m, lease);
    const auto start = std::chrono::steady_clock::now();
    Status st = Ok{};
    if (how == Move::Apply) {
      st = dp.apply(next);
    } else if (auto ran = dp.session().run(setUpdateScript(0, next.services[0], {})); !ran) {
      st = ran.error();
    }
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
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

struct RenewalFigures {
  double median_ms = 0;
  double cpu_ms = 0;  ///< CPU per renewal (user + system), mean over the run
  std::size_t renewals = 0;
};

// How renewals were made before the lease moved to the live element: every set flushed and
// re-added in one libnftables transaction, the live element with the lease as its timeout.
std::string renewEverySetScript(const DesiredState& state, Millis lease) {
  auto marks = [](const std::vector<uint32_t>& buckets) {
    std::string out;
    for (uint32_t b : buckets) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%08x", kMarkBase + b);
      out += (out.empty() ? "" : ", ") + std::string(buf);
    }
    return out;
  };
  std::string o;
  for (std::size_t i = 0; i < state.services.size(); ++i) {
    const auto& a = state.services[i];
    for (const auto& [set, buckets] : {std::pair{ownedSetName(i), a.owned},
                                       std::pair{resetSetName(i), a.reset_orphans}}) {
      o += "flush set inet shoal " + set + "\n";
      if (!buckets.empty()) o += "add element inet shoal " + set + " { " + marks(buckets) + " }\n";
    }
  }
  char live[16];
  std::snprintf(live, sizeof live, "0x%08x", kLiveMark);
  o += "flush set inet shoal " + liveSetName() + "\nadd element inet shoal " + liveSetName() +
       " { " + live + " timeout " + std::to_string(lease.count()) + "ms }\n";
  return o;
}

enum class Way { EverySet, LiveElement };

// `renewals` renewals, one way, of a leased state that owns `owned` of `buckets` buckets;
// afterwards the owned set must still hold every owned bucket and the live set its element.
Result<RenewalFigures> measureRenewals(NftablesDataplane& dp, Way way, uint32_t buckets,
                                       uint32_t owned, uint32_t renewals) {
  DesiredState state = stateFor(0, Millis{146});
  state.services[0].service.buckets = buckets;
  state.services[0].owned.clear();
  for (uint32_t b = 0; b < owned; ++b) state.services[0].owned.push_back(b * (buckets / owned));
  if (Status st = dp.apply(state); !st) return st.error();
  const std::string script = renewEverySetScript(state, Millis{146});
  std::vector<double> ms;
  const double cpu_start = cpuMs();
  for (uint32_t r = 0; r < renewals; ++r) {
    const auto start = std::chrono::steady_clock::now();
    Status st = Ok{};
    if (way == Way::LiveElement) {
      st = dp.renew(Millis{146});
    } else if (auto done = dp.session().run(script); !done) {
      st = done.error();
    }
    const auto end = std::chrono::steady_clock::now();
    if (!st) return st.error();
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  const double cpu = (cpuMs() - cpu_start) / renewals;
  auto listed = dp.session().run("list table inet shoal");
  if (!listed) return listed.error();
  auto elements = setElements(*listed, ownedSetName(0));
  if (!elements || elements->size() != owned) return Error{"renewed set lost elements"};
  auto live = setElements(*listed, liveSetName());
  if (!live || *live != std::vector<uint32_t>{kLiveMark}) return Error{"live element missing"};
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
    std::fprintf(stderr, "bench_dataplane: apply: %s\n", fast.error().message.c_str());
    return 1;
  }
  auto script = measure(*in_process, moves, std::nullopt, Move::Script);
  if (!script) {
    std::fprintf(stderr, "bench_dataplane: libnftables: %s\n", script.error().message.c_str());
    return 1;
  }
  const uint32_t command_moves = std::max<uint32_t>(moves / 4, 20);
  auto slow = measure(*command, command_moves, std::nullopt, Move::Script);
  if (!slow) {
    std::fprintf(stderr, "bench_dataplane: nft command: %s\n", slow.error().message.c_str());
    return 1;
  }
  std::printf("bucket move (64 buckets, 4 change owner), call to committed transaction:\n");
  std::printf("  apply(): prebuilt netlink batch:        median %.3f ms  p90 %.3f ms  (%zu moves)\n",
              fast->median_ms, fast->p90_ms, fast->moves);
  std::printf("  nft script via libnftables in-process: median %.3f ms  p90 %.3f ms  (%zu moves)\n",
              script->median_ms, script->p90_ms, script->moves);
  std::printf("  nft script via the nft command:        median %.3f ms  p90 %.3f ms  (%zu moves)\n",
              slow->median_ms, slow->p90_ms, slow->moves);
  std::printf("  ratio libnftables script / apply(): %.1fx; nft command / apply(): %.1fx; goal for "
              "apply(): under 2 ms: %s\n",
              script->median_ms / fast->median_ms, slow->median_ms / fast->median_ms,
              fast->median_ms < 2.0 ? "met" : "NOT met");

  auto leased = measure(*in_process, moves, Millis{146});
  if (!leased) {
    std::fprintf(stderr, "bench_dataplane: leased moves: %s\n", leased.error().message.c_str());
    return 1;
  }
  std::printf("the same move under a lease (146 ms; the bucket sets carry no timeout): "
              "median %.3f ms  p90 %.3f ms"
              "  (%.2fx the unleased move)\n",
              leased->median_ms, leased->p90_ms, leased->median_ms / fast->median_ms);
  // One renewal per heartbeat round.
  const double default_rate = 1000.0 / timingPreset("default")->heartbeat_interval.count();
  const double fast_rate = 1000.0 / timingPreset("fast")->heartbeat_interval.count();
  std::printf("lease renewal, old = libnftables flush + add of every set, new = prebuilt "
              "netlink batch for the live element (CPU goal: at most 0.030 ms):\n");
  struct Shape {
    uint32_t buckets, owned;
    const char* what;
  };
  bool goal_met = true;
  for (const Shape& shape : {Shape{16, 6, "16 buckets, 6 owned (one of 3 nodes)"},
                             Shape{256, 16, "256 buckets, 16 owned (one of 16 nodes)"},
                             Shape{4096, 1365, "4096 buckets, 1365 owned (one of 3 nodes)"}}) {
    auto old_way = measureRenewals(*in_process, Way::EverySet, shape.buckets, shape.owned, moves);
    auto new_way =
        measureRenewals(*in_process, Way::LiveElement, shape.buckets, shape.owned, moves * 10);
    if (!old_way || !new_way) {
      std::fprintf(stderr, "bench_dataplane: renewals: %s\n",
                   (!old_way ? old_way.error() : new_way.error()).message.c_str());
      return 1;
    }
    goal_met = goal_met && new_way->cpu_ms <= 0.030;
    std::printf("  %s\n", shape.what);
    std::printf("    old: median %.4f ms  CPU %.4f ms each  (%zu renewals)\n", old_way->median_ms,
                old_way->cpu_ms, old_way->renewals);
    std::printf("    new: median %.4f ms  CPU %.4f ms each  (%zu renewals): %.2f ms/s at default "
                "timing (%.0f/s), %.2f ms/s at fast (%.0f/s)\n",
                new_way->median_ms, new_way->cpu_ms, new_way->renewals,
                new_way->cpu_ms * default_rate, default_rate, new_way->cpu_ms * fast_rate,
                fast_rate);
    std::printf("    ratio old / new: wall %.1fx, CPU %.1fx\n",
                old_way->median_ms / new_way->median_ms, old_way->cpu_ms / new_way->cpu_ms);
  }
  std::printf("  goal (new way at most 0.030 ms CPU per renewal at every size): %s\n",
              goal_met ? "met" : "NOT met");
  return 0;
}
