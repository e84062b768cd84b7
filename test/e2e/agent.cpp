// dataplane_agent: holds one Dataplane for one node (run it inside the node's network
// namespace), applies the services given on the command line, then takes changes from stdin
// so that bucket moves can be applied to a running dataplane. kill -9 of this process is the
// fail-safe check: whatever it held in the kernel must stop answering.
//
//   dataplane_agent [--backend nftables|nft-command|clusterip] [--lease-ms MS [--renew-ms MS]]
//                   --service name=web,vip=10.77.0.100,dev=eth0,mac=01:00:5e:4d:00:64,
//                             hash=sourceip,buckets=16,seed=0x5eed,owned=0:3:6[,reset=3]
//                   [--service ...]
//
// stdin, one command a line; each answers "ok ..." or "error ..." on stdout:
//   set NAME OWNED [RESET]   new owned (and reset-orphan) buckets for service NAME ("-": none);
//                            clears its timed buckets
//   timed NAME BUCKETS FROM UNTIL
//                            BUCKETS of service NAME answered only from FROM until UNTIL,
//                            milliseconds from now on the wall clock ("-": open), taken out of
//                            its owned and reset buckets (a hand-off at a kernel-clock instant)
//   check                    checkAndRepair(); answers "ok repaired=N" and the details
//   teardown                 teardown()
//   quit                     teardown() and exit (also on EOF and SIGTERM/SIGINT)
// "ready" is printed once the first apply succeeded.
// With --lease-ms the buckets are leased (dataplane/lease.h) and renewed every --renew-ms
// (default a third of the lease) from the command loop: SIGSTOP of this process makes its
// node stop answering within the lease, SIGCONT makes it answer again at the next renewal.

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "dataplane/backend_select.h"
#include "dataplane/nftables_dataplane.h"
#include "test/e2e/e2e_args.h"

namespace {

using namespace shoal;
using namespace shoal::dataplane;

volatile sig_atomic_t g_stop = 0;
void onSignal(int) { g_stop = 1; }

int usage(const std::string& why) {
  std::fprintf(stderr, "dataplane_agent: %s\n(see the top of test/e2e/agent.cpp for usage)\n",
               why.c_str());
  return 2;
}

Result<std::unique_ptr<Dataplane>> makeBackend(const std::string& backend,
                                               const DesiredState& state) {
  if (backend == "nftables") {
    auto dp = NftablesDataplane::open();
    if (!dp) return dp.error();
    return std::unique_ptr<Dataplane>(std::move(dp).value());
  }
  if (backend == "nft-command") {
    // The same rules through one `nft` process per change; tables cannot be owned then.
    NftablesOptions options;
    options.ruleset.owner_tables = false;
    auto vips = NetlinkVipAddresses::open();
    if (!vips) return vips.error();
    auto macs = PacketSocketMemberships::open();
    if (!macs) return macs.error();
    return std::unique_ptr<Dataplane>(std::make_unique<NftablesDataplane>(
        std::make_unique<NftCommandSession>(), std::move(vips).value(), std::move(macs).value(),
        options));
  }
  if (backend == "clusterip") {
    ClusterDefinition definition;
    definition.backend = Backend::ClusterIp;
    for (const auto& a : state.services) definition.services.push_back(a.service);
    DataplaneSettings settings;
    settings.backend = Backend::ClusterIp;
    auto vips = NetlinkVipAddresses::open();
    if (!vips) return vips.error();
    settings.addresses = std::shared_ptr<VipAddresses>(std::move(vips).value());
    return makeDataplane(definition, settings);
  }
  return Error{"unknown backend '" + backend + "' (nftables, nft-command, clusterip)"};
}

void say(const std::string& line) {
  std::cout << line << std::endl;  // flushed: a driver script waits for each answer
}

}  // namespace

int main(int argc, char** argv) {
  std::string backend = "nftables";
  DesiredState state;
  long renew_ms = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--backend" && i + 1 < argc) {
      backend = argv[++i];
    } else if ((arg == "--lease-ms" || arg == "--renew-ms") && i + 1 < argc) {
      const long ms = std::strtol(argv[++i], nullptr, 10);
      if (ms < 1) return usage(arg + " needs a positive number of milliseconds");
      if (arg == "--lease-ms") {
        state.lease = Millis{ms};
      } else {
        renew_ms = ms;
      }
    } else if (arg == "--service" && i + 1 < argc) {
      auto spec = e2e::parseServiceSpec(argv[++i]);
      if (!spec) return usage(spec.error().message);
      state.services.push_back({spec->service, spec->owned, spec->reset, {}, {}, {}});
    } else {
      return usage("unknown argument '" + arg + "'");
    }
  }
  if (state.services.empty()) return usage("at least one --service is needed");
  if (state.lease && renew_ms == 0) renew_ms = std::max(1L, state.lease->count() / 3);
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_renewal = Clock::now() + Millis{renew_ms};

  auto made = makeBackend(backend, state);
  if (!made) return usage(made.error().message);
  std::unique_ptr<Dataplane> dp = std::move(made).value();
  if (Status st = dp->apply(state); !st) {
    std::fprintf(stderr, "dataplane_agent: apply failed: %s\n", st.error().message.c_str());
    return 1;
  }
  if (auto* nft = dynamic_cast<NftablesDataplane*>(dp.get())) {
    for (const auto& w : nft->warnings()) std::fprintf(stderr, "warning: %s\n", w.c_str());
  }
  say("ready");

  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::string pending;
  while (!g_stop) {
    pollfd p{0, POLLIN, 0};
    const int n = poll(&p, 1, state.lease ? static_cast<int>(renew_ms) : 200);
    if (state.lease && Clock::now() >= next_renewal) {
      if (Status st = dp->renew(*state.lease); !st) {
        std::fprintf(stderr, "dataplane_agent: renewal failed: %s\n", st.error().message.c_str());
      }
      next_renewal = Clock::now() + Millis{renew_ms};
    }
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = read(0, buf, sizeof buf);
    if (got <= 0) break;  // EOF: the driver is done with us
    pending.append(buf, static_cast<std::size_t>(got));
    std::size_t nl;
    bool quit = false;
    while ((nl = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      const auto words = e2e::split(line, ' ');
      if (words.empty() || words[0].empty()) continue;
      if (words[0] == "set" && (words.size() == 3 || words.size() == 4)) {
        DesiredState next = state;
        bool found = false;
        for (auto& a : next.services) {
          if (a.service.name != words[1]) continue;
          auto owned = e2e::parseBuckets(words[2]);
          auto reset = e2e::parseBuckets(words.size() == 4 ? words[3] : "-");
          if (!owned || !reset) break;
          a.owned = *owned;
          a.reset_orphans = *reset;
          a.timed.clear();
          found = true;
        }
        if (!found) {
          say("error bad set command: " + line);
          continue;
        }
        const auto start = std::chrono::steady_clock::now();
        Status st = dp->apply(next);
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
        if (!st) {
          say("error " + st.error().message);
          continue;
        }
        state = next;
        say("ok applied in " + std::to_string(us) + " us");
      } else if (words[0] == "timed" && words.size() == 5) {
        DesiredState next = state;
        bool found = false;
        const auto buckets = e2e::parseBuckets(words[2]);
        const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
        const auto instant = [&](const std::string& w, int64_t open) {
          return w == "-" ? open : now_ns + std::strtoll(w.c_str(), nullptr, 10) * 1000000;
        };
        for (auto& a : next.services) {
          if (a.service.name != words[1] || !buckets)
            continue;
          for (uint32_t b : *buckets) {
            std::erase(a.owned, b);
            std::erase(a.reset_orphans, b);
            std::erase_if(a.timed, [b](const TimedBucket& t) { return t.bucket == b; });
            a.timed.push_back(TimedBucket{b, instant(words[3], 0), instant(words[4], kForeverNs)});
          }
          std::sort(a.timed.begin(), a.timed.end());
          found = true;
        }
        if (!found) {
          say("error bad timed command: " + line);
          continue;
        }
        if (Status st = dp->apply(next); !st) {
          say("error " + st.error().message);
          continue;
        }
        state = next;
        say("ok");
      } else if (words[0] == "check") {
        auto report = dp->checkAndRepair();
        if (!report) {
          say("error " + report.error().message);
          continue;
        }
        std::string details;
        for (const auto& d : report->details) details += " | " + d;
        say("ok repaired=" + std::to_string(report->repaired) + details);
      } else if (words[0] == "teardown") {
        Status st = dp->teardown();
        say(st ? "ok" : "error " + st.error().message);
      } else if (words[0] == "quit") {
        quit = true;
        break;
      } else {
        say("error unknown command: " + line);
      }
    }
    if (quit) break;
  }
  Status st = dp->teardown();
  if (!st) {
    std::fprintf(stderr, "dataplane_agent: teardown: %s\n", st.error().message.c_str());
    return 1;
  }
  return 0;
}
