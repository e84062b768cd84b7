#include "cli/daemon.h"

#include <malloc.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <random>

#include "cli/clock_lead.h"
#include "cli/control_server.h"
#include "cli/log.h"
#include "cli/sd_notify.h"
#include "cli/self_detect.h"
#include "cli/text_format.h"
#include "core/config_loader.h"
#include "core/fingerprint.h"
#include "core/keyring.h"
#include "core/replay_window.h"
#include "dataplane/backend_select.h"
#include "dataplane/vip_addresses.h"
#include "membership/drain_snapshot.h"
#include "membership/state_file.h"
#include "membership/udp_transport.h"

namespace shoal::daemon {

namespace asio = boost::asio;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

constexpr Millis kDriftCheckInterval{2000};
constexpr Millis kApplyRetry{200};
// How often the heartbeat grid is put back on the wall clock (after a clock step).
constexpr Millis kRealignInterval{10000};

// Wall clock minus monotonic clock: Membership::alignRounds() with it puts the heartbeat
// rounds on the wall clock's grid, the same on every node whose clock is synchronised.
Duration wallClockOffset() {
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  const auto mono = std::chrono::steady_clock::now().time_since_epoch();
  return std::chrono::duration_cast<Duration>(wall) - mono;
}
constexpr milliseconds kHookTimeout{10000};
// How much longer than the margin a planned hand-over's gap is bridged (Daemon::bridgesFor).
constexpr Duration kBridgeWindow = std::chrono::milliseconds(5);

// A stopping node does not wait for an established connection silent for longer than this
// or its linger, whichever is longer: nothing suggests it ends within the linger
// (dataplane/conntrack_count.h).
std::chrono::seconds lingerIdleCutoff(Millis linger) {
  return std::max(std::chrono::seconds{60}, std::chrono::ceil<std::chrono::seconds>(linger));
}

// Receive timestamps (wall clock) are not used for kStampDistrust after the wall clock moved
// against the monotonic clock by more than kWallStepLimit between two reads (a step: NTP
// slews far slower), nor when older than kStampMaxAge (no queue holds a heartbeat that long).
constexpr Duration kWallStepLimit = std::chrono::milliseconds(1);
constexpr Duration kStampDistrust = std::chrono::seconds(1);
constexpr Duration kStampMaxAge = std::chrono::milliseconds(200);

// A monotonic instant on the wall clock, for logs (not for the kernel: see wallFrom()).
int64_t wallNs(TimePoint t) { return wallNotAfter(t, readClockLead()); }

// A wall-clock instant (ns since the epoch) as "HH:MM:SS.uuuuuu" in local time, for logs
// that compare instants across nodes.
std::string wallText(int64_t ns) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%06lld", tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(ns % 1000000000 / 1000));
  return buf;
}

std::string joinErrors(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += (out.empty() ? "" : "\n") + e.toString();
  }
  return out;
}

uint64_t realtimeMicros() {
  return static_cast<uint64_t>(
      duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// Boot ids must grow across restarts (replay protection): the last one is kept on disk.
Result<uint64_t> nextBootId(const std::string& state_dir) {
  const std::string path = state_dir + "/boot-id";
  uint64_t previous = 0;
  auto old = readSmallFile(path);
  if (old.ok()) {
    previous = std::strtoull(old->c_str(), nullptr, 10);
  } else if (old.error().message.rfind("missing:", 0) != 0) {
    return old.error();
  }
  const uint64_t id = newBootId(previous, realtimeMicros());
  if (auto st = writeFileAtomically(path, std::to_string(id) + "\n"); !st.ok()) {
    return st.error();
  }
  return id;
}

int64_t msSince(TimePoint now, TimePoint then) {
  return duration_cast<milliseconds>(now - then).count();
}

}  // namespace

Daemon::Daemon(asio::io_context& io, DaemonOptions options, ClusterDefinition def, uint32_t self)
    : io_(io),
      options_(std::move(options)),
      def_(std::move(def)),
      self_(self),
      health_({}, holdDown()),
      drift_timer_(io),
      retry_timer_(io),
      handoff_timer_(io),
      leave_timer_(io),
      health_timer_(io),
      signals_(io, SIGTERM, SIGINT, SIGHUP) {}

Daemon::~Daemon() {
  if (count_thread_.joinable()) {
    count_thread_.join();
  }
}

Result<std::unique_ptr<Daemon>> Daemon::create(asio::io_context& io, DaemonOptions options) {
  auto loaded = loadClusterDefinition(options.config_path);
  if (!loaded.ok()) {
    return Error{"the cluster definition has errors:\n" + joinErrors(loaded.errors)};
  }
  ClusterDefinition def = std::move(*loaded.definition);
  uint32_t self = 0;
  if (!options.node.empty()) {
    const int index = def.nodeIndex(options.node);
    if (index < 0) {
      return Error{"--node " + options.node + " is not a node of " + options.config_path};
    }
    self = static_cast<uint32_t>(index);
  } else {
    auto found = detectSelf(def);
    if (!found.ok()) {
      return found.error();
    }
    self = *found;
  }
  auto keys = Keyring::load(resolveKeyFilePath(def));
  if (!keys.ok()) {
    return keys.error();
  }
  auto boot = nextBootId(options.state_dir);
  if (!boot.ok()) {
    return Error{"cannot keep the boot id in " + options.state_dir + ": " + boot.error().message};
  }

  std::unique_ptr<Daemon> d(new Daemon(io, std::move(options), std::move(def), self));
  d->checks_ = d->def_.health_checks;
  // The LAN interface of every service is checked even when nobody configured it: a node
  // whose VIP interface is down cannot answer its buckets.
  for (const Service& svc : d->def_.services) {
    bool covered = false;
    for (const HealthCheck& c : d->checks_) {
      covered = covered || (c.kind == HealthCheck::Kind::Link && c.target == svc.interface);
    }
    if (!covered) {
      HealthCheck c;
      c.name = "lan:" + svc.interface;
      c.kind = HealthCheck::Kind::Link;
      c.target = svc.interface;
      c.rise = 1;
      c.fall = 1;
      d->checks_.push_back(c);
    }
  }
  d->health_ = CheckHealth(d->checks_, d->holdDown());

  dataplane::DataplaneSettings settings;
  settings.backend = d->options_.backend;
  settings.gap_bridging = d->def_.handoff_bridge;
  // The VIPs this node added survive a crash of the daemon; the ledger lets the next run
  // recognise them as shoal's and remove them at its teardown.
  settings.vip_ledger = d->options_.state_dir + "/vips";
  if (auto vips = dataplane::NetlinkVipAddresses::open(settings.vip_ledger); vips.ok()) {
    settings.addresses = std::shared_ptr<dataplane::VipAddresses>(std::move(vips.value()));
  }
  auto dp = dataplane::makeDataplane(d->def_, settings);
  if (!dp.ok()) {
    return dp.error();
  }
  d->dataplane_ = std::move(dp.value());
  d->lease_ = std::make_unique<dataplane::LeaseKeeper>(*d->dataplane_,
                                                       dataplane::leaseLength(d->def_.timing),
                                                       dataplane::renewSpacing(d->def_.timing));
  if (!d->dataplane_->leaseEnforced()) {
    log(LogLevel::Warning,
        "dataplane %s cannot expire its state: if shoald stalls (stopped, swapped out, starved) "
        "rather than dies, this node keeps answering buckets its peers may take over",
        d->dataplane_->name());
  }

  if (d->def_.handoff_bridge && d->dataplane_->timedBuckets() && !d->dataplane_->bridgesGaps()) {
    log(LogLevel::Warning,
        "this kernel cannot bridge hand-over gaps (nftables dup, deletes from rules): a request "
        "that arrives between a releaser's instant and its taker's goes unanswered");
  }
  if (d->dataplane_->bridgesGaps()) {
    for (const std::string& ifname : strictReversePathInterfaces(d->def_.nodes[self].addresses)) {
      d->bridge_warning_ = "heartbeat interface " + ifname +
                           " filters by reverse path (rp_filter=1): it drops the hand-over "
                           "copies from releasing peers, so requests in the gaps go "
                           "unanswered; set rp_filter to 0 or 2 there";
      log(LogLevel::Warning, "%s", d->bridge_warning_.c_str());
    }
  }

  std::random_device rd;
  const uint64_t seed = (uint64_t{rd()} << 32) ^ rd() ^ *boot;
  d->membership_ =
      std::make_unique<Membership>(d->def_, self, std::move(keys.value()), *boot, seed);

  Daemon* raw = d.get();
  auto wakeup = WakeupTimer::open(io, [raw] { raw->onTimer(); });
  if (!wakeup.ok()) {
    return wakeup.error();
  }
  d->wakeup_ = std::move(wakeup.value());
  auto transport =
      UdpTransport::open(io, d->def_, self,
                         [raw](uint32_t link, std::span<const uint8_t> bytes, const Endpoint& from,
                               UdpTransport::WallTime arrived) {
                           if (!raw->leaving_) {
                             const ClockLead lead = readClockLead();
                             const TimePoint now = std::chrono::steady_clock::now();
                             raw->handle(raw->membership_->onPacket(
                                 now, bytes, link, from, raw->arrivalTime(now, lead, arrived)));
                           }
                         });
  if (!transport.ok()) {
    return transport.error();
  }
  d->transport_ = std::move(transport.value());

  auto links = dataplane::NetlinkLinkMonitor::open(
      [raw](const dataplane::LinkEvent& e) { raw->onLinkChange(e.interface, e.up); });
  if (!links.ok()) {
    return Error{"cannot watch links: " + links.error().message};
  }
  d->links_ = std::move(links.value());
  d->links_fd_ = std::make_unique<asio::posix::stream_descriptor>(io, ::dup(d->links_->fd()));

  auto control = ControlServer::open(
      io, d->options_.socket_path, [raw](const control::Request& r) { return raw->onControl(r); });
  if (!control.ok()) {
    return control.error();
  }
  d->control_ = std::move(control.value());
  d->hooks_ = std::make_unique<HookRunner>(d->hookScripts(), kHookTimeout);
  d->drain_saver_ = std::make_unique<StateSaver>(
      d->options_.state_dir + "/drain.state", [](const std::string& message) {
        log(LogLevel::Error, "cannot save the drain state: %s", message.c_str());
      });
  return d;
}

void Daemon::start() {
  const TimePoint now = std::chrono::steady_clock::now();
  started_ = now;
  held_.clear();
  for (const Service& svc : def_.services) {
    held_.emplace_back(svc.buckets);
    last_claimant_.emplace_back(svc.buckets, -1);
    taken_from_.emplace_back(svc.buckets, -1);
  }
  // Rules in place with nothing owned: the node answers no bucket until it has settled.
  if (auto st = lease_->apply(now, desiredState(held_, timed_, bridges_)); !st.ok()) {
    log(LogLevel::Error, "dataplane: %s", st.error().message.c_str());
    apply_failed_ = true;
  }

  DrainSnapshot saved;
  const std::string drain_path = options_.state_dir + "/drain.state";
  if (auto text = readSmallFile(drain_path); text.ok()) {
    auto snap = decodeDrainSnapshot(*text, def_, drain_path);
    if (snap.ok()) {
      saved = std::move(snap.value());
    } else {
      log(LogLevel::Warning, "ignoring the saved drain state: %s", snap.error().message.c_str());
    }
  }
  log(LogLevel::Notice, "node %s of cluster %s starting (fingerprint %s, dataplane %s)",
      def_.nodes[self_].name.c_str(), def_.name.c_str(), fingerprintHex(def_).c_str(),
      dataplane_->name());
  events_.add("member", def_.nodes[self_].name + " started");

  for (std::size_t i = 0; i < checks_.size(); ++i) {
    if (checks_[i].kind == HealthCheck::Kind::Link) {
      const auto up = links_->isUp(checks_[i].target);
      health_.record(now, i, up.value_or(false),
                     up.has_value() ? (*up ? "up" : "down") : "no such interface");
    }
  }
  std::vector<HealthCheck> runner_checks = checks_;
  health_runner_ = std::make_unique<HealthRunner>(runner_checks, [this](CheckResult r) {
    asio::post(io_, [this, r = std::move(r)]() mutable { onCheckResult(std::move(r)); });
  });

  membership_->alignRounds(wallClockOffset());
  next_realign_ = now + kRealignInterval;
  handle(membership_->start(now, saved));
  publishHealth();

  links_fd_->async_wait(asio::posix::stream_descriptor::wait_read,
                        [this](const boost::system::error_code& ec) { onLinkReadable(ec); });
  waitForSignal();
  scheduleDriftCheck();
  notifySystemd("READY=1\nSTATUS=member of " + def_.name);
}

void Daemon::onLinkReadable(const boost::system::error_code& ec) {
  if (ec) {
    return;
  }
  if (auto st = links_->process(); !st.ok()) {
    log(LogLevel::Warning, "link monitor: %s", st.error().message.c_str());
  }
  links_fd_->async_wait(asio::posix::stream_descriptor::wait_read,
                        [this](auto ec2) { onLinkReadable(ec2); });
}

void Daemon::handle(Output out) {
  // A node without peers sends nothing, and nobody can take its buckets over: its lease is
  // renewed all the same, by the dataplane, or it would stop answering after one lease.
  if (!out.send.empty() || def_.nodes.size() == 1) {
    // Check the lease (renew or recover from a lapse) first, then send, nothing in between:
    // see dataplane/lease.h for why.
    keepLease(std::chrono::steady_clock::now());
    const uint64_t sent_before = transport_->stats().sent;
    for (const Datagram& d : out.send) {
      transport_->send(d);
    }
    const TimePoint sent_at = std::chrono::steady_clock::now();
    noteRenewal(sent_at, lease_->afterSend(sent_at, transport_->stats().sent > sent_before));
  }
  for (const Event& e : out.events) {
    onEvent(e);
  }
  armTimer(out.next_wakeup);
  reconcile();
  if (drain_unsaved_) {
    // After the hand-off, and on the saver's thread: saving waits for the disk (two fsyncs,
    // tens of milliseconds on a busy one), and the peers know the write anyway, so a crash
    // before the save loses nothing (a restarting node learns it from them).
    drain_unsaved_ = false;
    persistDrain();
  }
}

void Daemon::armTimer(TimePoint when) {
  const TimePoint now = std::chrono::steady_clock::now();
  if (!settled(now)) {
    // Wake when the settling grace ends even if membership has nothing to do then.
    const TimePoint grace = started_ + def_.timing.suspect_after + def_.timing.suspicion_timeout +
                            def_.timing.probe_timeout;
    if (grace > now) {  // (after a lease lapse it has long passed: packets drive the re-settling)
      when = std::min(when, grace);
    }
  }
  // Most packets leave the next wake-up where it was: re-arming the timer anyway would cancel
  // the pending wait (one more handler run) and reprogram the timerfd (one more system call)
  // per packet.
  if (when == TimePoint::max() || when == wakeup_->deadline()) {
    return;
  }
  wakeup_->arm(when);
}

void Daemon::onTimer() {
  if (leaving_) {
    return;
  }
  const TimePoint now = std::chrono::steady_clock::now();
  if (now >= next_realign_) {
    membership_->alignRounds(wallClockOffset());
    next_realign_ = now + kRealignInterval;
  }
  handle(membership_->onTick(now));
}

void Daemon::noteRenewal(TimePoint now, const dataplane::LeaseKeeper::Renewal& r) {
  using Outcome = dataplane::LeaseKeeper::Outcome;
  if (r.outcome == Outcome::Failed) {
    if (!renew_failed_) {
      log(LogLevel::Error, "dataplane lease renewal: %s", r.error.c_str());
      events_.add("lease", "renewal failed: " + r.error);
    }
    renew_failed_ = true;
    return;
  }
  if (r.outcome == Outcome::Renewed) {
    renew_failed_ = false;
    return;
  }
  if (r.outcome != Outcome::Lapsed) {
    return;
  }
  const std::string text =
      "dataplane lease lapsed: no renewal for " + std::to_string(r.silent.count()) + " ms (lease " +
      std::to_string(lease_->lease().length().count()) +
      " ms); this node answered nothing meanwhile and takes its buckets back only with fresh "
      "claims from every peer" +
      (r.error.empty() ? "" : " (releasing failed: " + r.error + ")");
  log(LogLevel::Warning, "%s", text.c_str());
  events_.add("lease", text);
  // Its view is as old as the stall: peers may have declared it dead and taken its buckets.
  // Hold nothing (reconcile() releases at the end of this handler) until every up peer has
  // been heard from since, as after a start.
  resettle_from_ = now;
  resettle_reason_ = "the lease lapse";
  backlog_read_.reset();
}

void Daemon::keepLease(TimePoint now) { noteRenewal(now, lease_->beforeSend(now)); }

bool Daemon::resettled(TimePoint now) {
  if (!resettle_from_) {
    return true;
  }
  // Packets queued while the daemon was stalled are read after it resumes and may predate
  // the peers' take-over (their claims are stale). Reading that backlog can take longer than
  // any fixed time on a loaded machine, so wait until the sockets have been seen empty: a
  // packet read after that moment reached this node after the stall, and peers heartbeat
  // every interval.
  if (!backlog_read_) {
    if (!transport_->backlogEmpty()) {
      return false;
    }
    backlog_read_ = now;
  }
  const TimePoint fresh = std::max(*backlog_read_, *resettle_from_);
  if (now <= fresh) {
    return false;
  }
  // A peer that is up but not heard directly (alive through indirect probes only) sends no
  // claims here: after a detection time it is waited for no longer, as after a start.
  const bool waited_out = now > fresh + def_.timing.suspect_after + def_.timing.suspicion_timeout +
                                    def_.timing.probe_timeout;
  const auto& members = membership_->view().members;
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (i == self_ || members[i].state == MemberState::Left) {
      continue;
    }
    if (!members[i].up()) {
      // Dead in a view as old as the stall or the partition, perhaps alive and serving: not
      // taken over before it has had the time to be heard (it then comes up and must send
      // its claims), unless it has been silent that long.
      if (now <= fresh + def_.timing.suspect_after) {
        return false;
      }
      continue;
    }
    // A heartbeat, not just any packet: only heartbeats carry the claims.
    if (members[i].claims_heard <= fresh && !waited_out) {
      return false;
    }
  }
  return true;
}

bool Daemon::settled(TimePoint now) const {
  if (resettle_from_) {
    return false;
  }
  const auto& members = membership_->view().members;
  bool all_known = true;
  for (std::size_t i = 0; i < members.size(); ++i) {
    all_known = all_known && (i == self_ || members[i].state != MemberState::Unknown);
  }
  return all_known || now >= started_ + def_.timing.suspect_after + def_.timing.suspicion_timeout +
                                 def_.timing.probe_timeout;
}

std::optional<IpAddress> Daemon::bridgeAddress(std::size_t m, bool v4) const {
  const Node& node = def_.nodes[m];
  const MemberView& peer = membership_->view().members[m];
  for (std::size_t i = 0; i < node.addresses.size(); ++i) {
    if (node.addresses[i].isV4() == v4 && i < peer.links.size() && peer.links[i].up) {
      return node.addresses[i];
    }
  }
  for (const IpAddress& a : node.addresses) {
    if (a.isV4() == v4) {
      return a;
    }
  }
  return std::nullopt;
}

Daemon::GapBridges Daemon::bridgesFor(const OwnershipDecision& d) const {
  GapBridges out;
  if (!dataplane_->bridgesGaps()) {
    return out;
  }
  // Wide enough for any gap: the margin plus the taker's bound of the clock difference,
  // the fastest recent heartbeat trip (a few hundred microseconds on a LAN).
  const int64_t window =
      std::chrono::duration_cast<std::chrono::nanoseconds>(def_.handoff_margin + kBridgeWindow)
          .count();
  const int64_t wall_now = wallNs(std::chrono::steady_clock::now());
  const auto pending = [&](std::size_t s, uint32_t b, bool release) {
    if (release) {
      return s < d.timed.releasing.size() && d.timed.releasing[s].has(b);
    }
    return s < d.timed.taking.size() && d.timed.taking[s].count(b) > 0;
  };
  // A window is kept while it may matter: not yet over (a second more, for the copies on
  // their way) and while its release or take is still on or done. A forwarded window ends
  // at once when the bucket is held again (its packets are answered here), a noted one when
  // the take was called off (the copies are for whoever takes the bucket now).
  const auto keep = [&](std::size_t s, const auto& w, bool release) {
    if (w.until_ns + 1000000000 < wall_now) {
      return false;
    }
    const bool held = s < d.hold.size() && d.hold[s].has(w.bucket);
    if (release) {
      return !held && (w.from_ns <= wall_now || pending(s, w.bucket, true));
    }
    return held || pending(s, w.bucket, false);
  };
  // One window per bucket and list: a new one replaces an old one of the same bucket.
  const auto add = [](auto& list, auto entry) {
    for (const auto& w : list) {
      if (w.bucket == entry.bucket && w.from_ns == entry.from_ns) {
        return;
      }
    }
    std::erase_if(list, [&](const auto& w) { return w.bucket == entry.bucket; });
    list.push_back(entry);
  };
  out.forwarded.resize(def_.services.size());
  out.noted.resize(def_.services.size());
  for (std::size_t s = 0; s < def_.services.size(); ++s) {
    if (s < bridges_.forwarded.size()) {
      for (const auto& w : bridges_.forwarded[s]) {
        if (keep(s, w, true)) {
          out.forwarded[s].push_back(w);
        }
      }
    }
    if (s < bridges_.noted.size()) {
      for (const auto& w : bridges_.noted[s]) {
        if (keep(s, w, false)) {
          out.noted[s].push_back(w);
        }
      }
    }
    const bool v4 = def_.services[s].vip.isV4();
    if (s < d.timed.releasing.size()) {
      const int64_t from = wallInstant(d.timed.release_at, false);
      for (uint32_t b : d.timed.releasing[s].list()) {
        const int target = s < d.targets.size() && b < d.targets[s].size() ? d.targets[s][b] : -1;
        if (target < 0 || static_cast<std::size_t>(target) == self_) {
          continue;
        }
        if (auto to = bridgeAddress(static_cast<std::size_t>(target), v4)) {
          add(out.forwarded[s], dataplane::ForwardedBucket{b, from, from + window, *to});
        }
      }
    }
    if (s < d.timed.taking.size()) {
      for (const auto& [b, at] : d.timed.taking[s]) {
        const int64_t start = wallInstant(at, true);
        // Past the instant too: only dropped packets are noted, and a take that reached the
        // kernel late drops some after it.
        add(out.noted[s],
            dataplane::TimedBucket{b, std::max<int64_t>(0, start - window), start + window});
      }
    }
    std::sort(out.forwarded[s].begin(), out.forwarded[s].end());
    std::sort(out.noted[s].begin(), out.noted[s].end());
  }
  return out;
}

dataplane::DesiredState Daemon::desiredState(const std::vector<BucketSet>& hold,
                                             const TimedHold& timed,
                                             const GapBridges& bridges) const {
  const View& view = membership_->view();
  dataplane::DesiredState desired;
  for (std::size_t s = 0; s < def_.services.size(); ++s) {
    dataplane::ServiceAssignment a;
    a.service = def_.services[s];
    a.owned = hold[s].list();
    if (s < timed.releasing.size()) {
      for (uint32_t b : timed.releasing[s].list()) {
        a.timed.push_back(dataplane::TimedBucket{b, 0, wallInstant(timed.release_at, false)});
      }
    }
    if (s < timed.taking.size()) {
      for (const auto& [b, from] : timed.taking[s]) {
        a.timed.push_back(dataplane::TimedBucket{b, wallInstant(from, true), dataplane::kForeverNs});
      }
    }
    std::sort(a.timed.begin(), a.timed.end());
    if (s < bridges.forwarded.size()) {
      a.forwarded = bridges.forwarded[s];
    }
    if (s < bridges.noted.size()) {
      a.gap_noted = bridges.noted[s];
    }
    // Reset unknown TCP flows in buckets whose previous holder is gone (its clients should
    // fail fast); not in buckets handed over by a live node, which still serves its flows.
    for (uint32_t b : a.owned) {
      const int from = s < taken_from_.size() ? taken_from_[s][b] : -1;
      if (from < 0 || static_cast<std::size_t>(from) >= view.members.size() ||
          !view.members[static_cast<std::size_t>(from)].up()) {
        a.reset_orphans.push_back(b);
      }
    }
    desired.services.push_back(std::move(a));
  }
  return desired;
}

TimePoint Daemon::arrivalTime(TimePoint now, const ClockLead& lead, WallTime arrived) {
  // The kernel stamps datagrams with the wall clock, turned into monotonic time no earlier
  // than the truth (clock_lead.h). A step of the wall clock between the stamp and now would
  // move the result by the step, so after a change of the two clocks' difference stamps are
  // not used for a while: the read time stands in (later than the arrival: a looser bound,
  // never a wrong one). Stamps older than any queue should hold are not used either. A step
  // also moves the kernel's instants of the timed buckets: they are converted again.
  if (last_lead_ && std::chrono::abs(lead.low - last_lead_->low) > kWallStepLimit) {
    stamps_distrusted_until_ = now + kStampDistrust;
    wall_instants_.clear();
    reconvert_ = true;
    log(LogLevel::Warning, "the wall clock was stepped by %lld us: converting the hand-over "
        "instants again, receive stamps unused for %lld ms",
        static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   lead.low - last_lead_->low)
                                   .count()),
        static_cast<long long>(kStampDistrust.count() / 1000000));
  }
  last_lead_ = lead;
  if (arrived == WallTime{} || now < stamps_distrusted_until_) {
    return TimePoint{};
  }
  const TimePoint at = steadyNotBefore(arrived, lead);
  return at <= now && now - at <= kStampMaxAge ? at : TimePoint{};
}

void Daemon::pruneWallInstants() {
  std::erase_if(wall_instants_, [this](const auto& entry) {
    const auto& [t, from] = entry.first;
    if (!from) {
      return t != timed_.release_at;
    }
    for (const auto& service : timed_.taking) {
      for (const auto& [b, at] : service) {
        if (at == t) {
          return false;
        }
      }
    }
    return true;
  });
}

int64_t Daemon::wallInstant(TimePoint t, bool from) const {
  // Converted once per instant: converting again at every apply would give another value
  // each time and make the dataplane rewrite the timed sets for nothing.
  const auto key = std::make_pair(t, from);
  if (auto it = wall_instants_.find(key); it != wall_instants_.end()) {
    return it->second;
  }
  const ClockLead lead = readClockLead();
  const int64_t ns = from ? wallNotBefore(t, lead) : wallNotAfter(t, lead);
  wall_instants_.emplace(key, ns);
  return ns;
}

std::vector<BucketSet> Daemon::answered() const {
  std::vector<BucketSet> out = held_;
  for (std::size_t s = 0; s < out.size() && s < timed_.releasing.size(); ++s) {
    for (uint32_t b : timed_.releasing[s].list()) {
      out[s].set(b);
    }
  }
  return out;
}

std::vector<BucketSet> Daemon::claims() const {
  std::vector<BucketSet> out = answered();
  for (std::size_t s = 0; s < out.size() && s < timed_.taking.size(); ++s) {
    for (const auto& [b, from] : timed_.taking[s]) {
      out[s].set(b);
    }
  }
  return out;
}

void Daemon::armHandOff(TimePoint when) {
  next_change_ = when;
  if (when == handoff_armed_) {
    return;
  }
  handoff_armed_ = when;
  if (when == TimePoint::max()) {
    handoff_timer_.cancel();
    return;
  }
  handoff_timer_.expires_at(when);
  handoff_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) {
      handoff_armed_ = TimePoint::max();
      reconcile();
    }
  });
}

void Daemon::reconcile() {
  if (leaving_) {
    return;
  }
  const TimePoint now = std::chrono::steady_clock::now();
  const View& view = membership_->view();
  if (resettle_from_ && resettled(now)) {
    resettle_from_.reset();
    const std::string text = "heard every peer again after " + resettle_reason_;
    log(LogLevel::Notice, "%s: taking buckets", text.c_str());
    events_.add("resettle", text);
  }
  OwnershipInput input{&def_, &view, &held_, settled(now)};
  input.now = now;
  input.quorum_window = def_.timing.suspect_after;
  input.timed = &timed_;
  // Planned moves switch at an instant where the kernel can do it (nftables).
  input.handoff_lead = dataplane_->timedBuckets() ? kHandOffLead : Duration::zero();
  input.take_margin = def_.handoff_margin;
  // Most packets repeat what was known: when nothing the decision reads has changed, the
  // decision, the dataplane and the announced claims stay as they are, until the next
  // release or take instant. A failed apply is retried regardless.
  if (!decided_inputs_.update(input) && !apply_failed_ && !reconvert_ && now < next_change_) {
    return;
  }
  for (std::size_t s = 0; s < def_.services.size(); ++s) {
    for (std::size_t m = 0; m < view.members.size(); ++m) {
      const MemberView& peer = view.members[m];
      if (m == self_ || !peer.up() || s >= peer.claims.size()) {
        continue;
      }
      for (uint32_t b : peer.claims[s].list()) {
        last_claimant_[s][b] = static_cast<int>(m);
      }
    }
  }
  OwnershipDecision d = decideOwnership(input);
  if (have_decision_ && d.quorum && !last_.quorum && !resettle_from_) {
    // Back from a minority (cut off, or alone): its view of who is dead is as old as the
    // partition, and a peer it believes dead may be serving. Take nothing until every peer
    // has been heard again or stayed silent, as after a lease lapse.
    resettle_from_ = now;
    resettle_reason_ = "regaining quorum";
    backlog_read_.reset();
    input.settled = false;
    d = decideOwnership(input);
  }
  for (std::size_t s = 0; s < def_.services.size(); ++s) {
    for (uint32_t b = 0; b < def_.services[s].buckets; ++b) {
      if (d.hold[s].has(b) && !held_[s].has(b)) {
        taken_from_[s][b] = last_claimant_[s][b];
      }
    }
  }
  GapBridges bridges = bridgesFor(d);
  const dataplane::DesiredState desired = desiredState(d.hold, d.timed, bridges);
  bool orphans_changed = false;
  for (std::size_t s = 0; s < desired.services.size(); ++s) {
    orphans_changed = orphans_changed || s >= applied_orphans_.size() ||
                      desired.services[s].reset_orphans != applied_orphans_[s];
  }
  if (have_decision_ && d.quorum != last_.quorum) {
    const std::string text = d.quorum ? "quorum regained: serving"
                                      : "quorum lost: fewer than half of the nodes are alive, "
                                        "releasing every bucket";
    log(d.quorum ? LogLevel::Notice : LogLevel::Warning, "%s", text.c_str());
    events_.add("quorum", text);
    hook({{"SHOAL_EVENT", "quorum"}, {"SHOAL_STATE", d.quorum ? "quorum" : "lost"}});
  }
  const uint64_t digest = viewDigest(view);
  armHandOff(d.next_change);
  if (d.hold != held_ || d.timed != timed_ || bridges != bridges_ || orphans_changed ||
      reconvert_) {
    reconvert_ = false;
    if (auto st = lease_->apply(now, desired); !st.ok()) {
      // The previous state stays in force; try again shortly.
      if (!apply_failed_) {
        log(LogLevel::Error, "dataplane: %s", st.error().message.c_str());
        events_.add("buckets", "dataplane apply failed: " + st.error().message);
      }
      apply_failed_ = true;
      retry_timer_.expires_after(kApplyRetry);
      retry_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) {
          reconcile();
        }
      });
      last_ = std::move(d);
      have_decision_ = true;
      announceIfViewChanged(digest);  // the view may have changed all the same
      return;
    }
    apply_failed_ = false;
    bridges_ = std::move(bridges);
    applied_orphans_.clear();
    for (const auto& a : desired.services) {
      applied_orphans_.push_back(a.reset_orphans);
    }
    if (d.hold == held_ && d.timed == timed_) {
      // Only the resets changed (a peer came back, held out by flap damping, say).
      last_ = std::move(d);
      have_decision_ = true;
      announceIfViewChanged(digest);
      return;
    }
    const std::vector<BucketSet> before = answered();
    const TimedHold timed_before = timed_;
    held_ = d.hold;
    timed_ = d.timed;
    pruneWallInstants();
    last_ = std::move(d);
    have_decision_ = true;
    reportBucketChanges(before);
    reportHandOffs(timed_before, now);
    last_digest_ = digest;
    announceClaims();
    return;
  }
  last_ = std::move(d);
  have_decision_ = true;
  announceIfViewChanged(digest);
}

void Daemon::announceIfViewChanged(uint64_t digest) {
  // Peers compare views by these digests (status: "views agree"): every change is announced.
  if (digest != last_digest_) {
    last_digest_ = digest;
    announceClaims();
  }
}

void Daemon::announceClaims() {
  // A fresh time: the time left of a release is counted from it (the apply took a while).
  handle(membership_->setOwnClaims(std::chrono::steady_clock::now(), claims(), timed_.releasing,
                                   timed_.release_at, last_digest_));
}

void Daemon::reportHandOffs(const TimedHold& before, TimePoint now) {
  const auto ms = [](Duration d) {
    char buf[32];
    std::snprintf(
        buf, sizeof buf, "%.3f",
        static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(d).count()) /
            1000.0);
    return std::string(buf);
  };
  for (std::size_t s = 0; s < def_.services.size(); ++s) {
    const Service& svc = def_.services[s];
    std::vector<uint32_t> released;
    if (s < timed_.releasing.size()) {
      for (uint32_t b : timed_.releasing[s].list()) {
        if (s >= before.releasing.size() || !before.releasing[s].has(b))
          released.push_back(b);
      }
    }
    if (!released.empty()) {
      log(LogLevel::Info, "service %s: handing buckets %s over, answered %s ms more (until %s)",
          svc.name.c_str(), cli::bucketRanges(released).c_str(),
          ms(timed_.release_at - now).c_str(), wallText(wallNs(timed_.release_at)).c_str());
    }
    if (s >= timed_.taking.size())
      continue;
    for (const auto& [b, from] : timed_.taking[s]) {
      // Loaded after its instant: the bucket went unanswered from the instant until now
      // (unless it was scheduled already and a faster copy of the announcement moved it).
      const TimePoint loaded = std::chrono::steady_clock::now();
      std::optional<TimePoint> was;
      if (s < before.taking.size()) {
        if (auto w = before.taking[s].find(b); w != before.taking[s].end())
          was = w->second;
      }
      if (was) {
        if (*was != from && *was > loaded) {
          log(LogLevel::Info, "service %s: taking bucket %u earlier, from %s", svc.name.c_str(), b,
              wallText(wallNs(std::max(from, loaded))).c_str());
        }
      } else if (loaded > from) {
        ++late_takes_;
        const std::string text = "service " + svc.name + ": took bucket " + std::to_string(b) +
                                 " " + ms(loaded - from) + " ms after its hand-over instant " +
                                 wallText(wallNs(from)) + " (unanswered meanwhile)";
        log(LogLevel::Warning, "%s", text.c_str());
        events_.add("buckets", text);
      } else {
        log(LogLevel::Info, "service %s: taking bucket %u in %s ms (from %s)", svc.name.c_str(), b,
            ms(from - loaded).c_str(), wallText(wallNs(from)).c_str());
      }
    }
  }
}

void Daemon::reportBucketChanges(const std::vector<BucketSet>& before) {
  const std::vector<BucketSet> now = answered();
  for (std::size_t s = 0; s < def_.services.size(); ++s) {
    std::vector<uint32_t> gained;
    std::vector<uint32_t> lost;
    for (uint32_t b = 0; b < def_.services[s].buckets; ++b) {
      const bool had = s < before.size() && before[s].has(b);
      if (now[s].has(b) && !had) {
        gained.push_back(b);
      } else if (!now[s].has(b) && had) {
        lost.push_back(b);
      }
    }
    const Service& svc = def_.services[s];
    for (const auto& [list, what] : {std::pair{&gained, "gained"}, std::pair{&lost, "lost"}}) {
      if (list->empty()) {
        continue;
      }
      std::string csv;
      for (uint32_t b : *list) {
        csv += (csv.empty() ? "" : ",") + std::to_string(b);
      }
      const std::string text =
          "service " + svc.name + ": " + what + " buckets " + cli::bucketRanges(*list) + " (now " +
          std::to_string(now[s].count()) + " of " + std::to_string(svc.buckets) + ")";
      log(LogLevel::Info, "%s", text.c_str());
      events_.add("buckets", text);
      hook({{"SHOAL_EVENT", std::string("bucket-") + what},
            {"SHOAL_SERVICE", svc.name},
            {"SHOAL_VIP", svc.vip.toString()},
            {"SHOAL_BUCKETS", csv}});
    }
  }
}

void Daemon::onEvent(const Event& e) {
  const View& view = membership_->view();
  const std::string node = e.node < def_.nodes.size() ? def_.nodes[e.node].name : "?";
  switch (e.kind) {
    case Event::Kind::MemberChanged: {
      const std::string text = node + " is " + toString(e.state);
      log(e.state == MemberState::Dead ? LogLevel::Warning : LogLevel::Notice, "%s", text.c_str());
      events_.add("member", text);
      hook({{"SHOAL_EVENT", "node-state"},
            {"SHOAL_NODE", node},
            {"SHOAL_STATE", toString(e.state)}});
      break;
    }
    case Event::Kind::LinkChanged: {
      const std::string text =
          "link " + std::to_string(e.link) + " to " + node + " is " + (e.up ? "up" : "down");
      log(LogLevel::Info, "%s", text.c_str());
      events_.add("link", text);
      break;
    }
    case Event::Kind::DrainChanged: {
      const DrainMode mode =
          e.node < view.members.size() ? view.members[e.node].drain.mode : DrainMode::None;
      const std::string text = node + " drain: " + toString(mode);
      log(LogLevel::Notice, "%s", text.c_str());
      events_.add("drain", text);
      hook({{"SHOAL_EVENT", "drain"}, {"SHOAL_NODE", node}, {"SHOAL_STATE", toString(mode)}});
      drain_unsaved_ = true;  // saved once the buckets have moved (end of handle())
      break;
    }
    case Event::Kind::HealthChanged: {
      const std::string status =
          e.node < view.members.size() ? toString(view.members[e.node].health.status) : "?";
      const std::string text = node + " health: " + status;
      log(LogLevel::Notice, "%s", text.c_str());
      events_.add("health", text);
      hook({{"SHOAL_EVENT", "node-state"},
            {"SHOAL_NODE", node},
            {"SHOAL_STATE", "health-" + status}});
      break;
    }
    case Event::Kind::HoldDownStarted:
    case Event::Kind::HoldDownEnded: {
      const bool started = e.kind == Event::Kind::HoldDownStarted;
      const std::string text =
          node + (started ? " is flapping: held out by flap damping" : " is no longer held out");
      log(LogLevel::Warning, "%s", text.c_str());
      events_.add("hold-down", text);
      break;
    }
    case Event::Kind::ForeignPeerSeen: {
      const std::string text = "refusing " + e.foreign.from.toString() +
                               ": it runs another cluster definition (fingerprint " +
                               std::to_string(e.foreign.fingerprint) + ")";
      log(LogLevel::Warning, "%s", text.c_str());
      events_.add("foreign", text);
      break;
    }
    case Event::Kind::Refuted: {
      const std::string text = "this node was suspected and refuted it";
      log(LogLevel::Warning, "%s", text.c_str());
      events_.add("member", text);
      break;
    }
  }
}

void Daemon::onCheckResult(CheckResult r) {
  if (r.index >= checks_.size()) {
    return;
  }
  health_.record(std::chrono::steady_clock::now(), r.index, r.passed, r.detail);
  publishHealth();
}

void Daemon::repairHeartbeatGroups() {
  for (const auto& line : transport_->repairGroups()) {
    log(LogLevel::Warning, "heartbeat transport: %s", line.c_str());
    events_.add("link", line);
  }
}

void Daemon::onLinkChange(const std::string& interface, std::optional<bool> up) {
  const TimePoint now = std::chrono::steady_clock::now();
  if (up.value_or(false)) {
    repairHeartbeatGroups();
  }
  for (std::size_t i = 0; i < checks_.size(); ++i) {
    if (checks_[i].kind == HealthCheck::Kind::Link && checks_[i].target == interface) {
      health_.record(now, i, up.value_or(false),
                     up.has_value() ? (*up ? "up" : "down") : "no such interface");
      events_.add("link", "interface " + interface + " is " +
                              (up.has_value() ? (*up ? "up" : "down") : "gone"));
    }
  }
  publishHealth();
}

void Daemon::publishHealth() {
  if (leaving_) {
    return;
  }
  const TimePoint now = std::chrono::steady_clock::now();
  shoal::NodeHealth h;
  h.status = health_.healthy(now) ? HealthStatus::Ok : HealthStatus::Failing;
  const auto failing = health_.failing();
  for (std::size_t i = 0; i < checks_.size() && i < 64; ++i) {
    for (const auto& f : failing) {
      if (f.rfind(checks_[i].name + ":", 0) == 0) {
        h.failing_checks |= uint64_t{1} << i;
      }
    }
  }
  if (!health_published_ || !(h == published_health_)) {
    health_published_ = true;
    published_health_ = h;
    if (h.status == HealthStatus::Failing) {
      std::string why;
      for (const auto& f : failing) {
        why += (why.empty() ? "" : "; ") + f;
      }
      log(LogLevel::Warning, "health checks failing, giving up buckets: %s",
          why.empty() ? "held down after a recovery" : why.c_str());
    }
    handle(membership_->setOwnHealth(now, h));
  }
  if (const auto next = health_.nextChange(now)) {
    health_timer_.expires_at(*next);
    health_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) {
        publishHealth();
      }
    });
  }
}

void Daemon::hook(std::map<std::string, std::string> env) {
  env["SHOAL_CLUSTER"] = def_.name;
  env["SHOAL_SELF"] = def_.nodes[self_].name;
  hooks_->post({std::move(env)});
}

void Daemon::persistDrain() {
  drain_saver_->save(encodeDrainSnapshot(membership_->drainSnapshot(), def_));
}

void Daemon::scheduleDriftCheck() {
  drift_timer_.expires_after(kDriftCheckInterval);
  drift_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || leaving_) {
      return;
    }
    repairHeartbeatGroups();
    auto report = dataplane_->checkAndRepair();
    if (!report.ok()) {
      log(LogLevel::Error, "dataplane check: %s", report.error().message.c_str());
    } else if (report->repaired > 0) {
      drift_repairs_ += report->repaired;
      for (const auto& line : report->details) {
        log(LogLevel::Warning, "dataplane drift repaired: %s", line.c_str());
        events_.add("drift", line);
      }
    }
    // libnftables builds a cache of a few MiB per run, and the process keeps freed heap
    // memory for the next run (nft_session.h raises glibc's trim threshold so runs stay
    // fast). Between bucket moves those pages would only sit in the daemon's RSS: give them
    // back. Costs a few system calls when there is nothing to give.
    malloc_trim(0);
    scheduleDriftCheck();
  });
}

void Daemon::waitForSignal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) {
      return;
    }
    if (signo == SIGHUP) {
      reload();
    } else if (stopping_) {
      log(LogLevel::Notice, "second stop signal: leaving without waiting for open connections");
      leave_now_ = true;
      if (lingering_) {
        completeLeave();
        return;
      }
    } else {
      gracefulLeave();
    }
    if (!leaving_) {
      waitForSignal();
    }
  });
}

void Daemon::gracefulLeave() {
  if (leaving_ || stopping_) {
    return;
  }
  stopping_ = true;
  log(LogLevel::Notice, "leaving the cluster: handing the buckets over");
  notifySystemd("STOPPING=1");
  // Out of the rebalance in every view at once: the peers become the owners of this node's
  // buckets while its claims still hold, and this node hands them over (reconcile() in
  // handle()), at an instant where the dataplane can switch on time, else at once. Then the
  // peers take them, and nothing is answered twice.
  handle(membership_->setLeaving(std::chrono::steady_clock::now()));
  finishLeave();
}

void Daemon::finishLeave() {
  if (leaving_ || lingering_) {
    return;
  }
  const TimePoint now = std::chrono::steady_clock::now();
  if (!timed_.empty() && timed_.release_at > now) {
    // Still answering what it hands over: stay a member until the instant has passed.
    leave_timer_.expires_at(timed_.release_at);
    leave_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) {
        reconcile();  // the release is over: claims without those buckets
        finishLeave();
      }
    });
    return;
  }
  // Let go of anything left, tell the peers (empty claims, then Leave): they take what is
  // left as soon as they hear it.
  std::vector<BucketSet> none;
  for (const Service& svc : def_.services) {
    none.emplace_back(svc.buckets);
  }
  const std::vector<BucketSet> before = answered();
  held_ = none;
  timed_ = TimedHold{};
  // The bridges stay: the forwarded windows of the hand-over just made still run.
  if (auto st = lease_->apply(now, desiredState(held_, timed_, bridges_)); !st.ok()) {
    log(LogLevel::Error, "dataplane: %s", st.error().message.c_str());
  }
  reportBucketChanges(before);
  Output out = membership_->setOwnClaims(now, held_, last_digest_);
  for (const Datagram& d : out.send) {
    transport_->send(d);
  }
  if (!startLinger(now)) {
    completeLeave();
  }
}

bool Daemon::startLinger(TimePoint now) {
  if (leave_now_ || def_.leave_linger <= Millis{0} || !dataplane_->keepsEstablished()) {
    return false;
  }
  if (!connections_) {
    auto opened = dataplane::openConntrackCount();
    if (!opened.ok()) {
      log(LogLevel::Warning, "leaving without waiting for open connections: %s",
          opened.error().message.c_str());
      return false;
    }
    connections_ = std::move(opened.value());
  }
  lingering_ = true;
  linger_reported_ = false;
  linger_idle_reported_ = false;
  linger_from_ = now;
  linger_until_ = now + def_.leave_linger;
  countConnections();
  return true;
}

void Daemon::countConnections() {
  // In a thread of its own: a dump walks the whole conntrack table, which on a busy host can
  // take longer than a heartbeat interval, and the node must go on sending heartbeats (a
  // node declared dead meanwhile would have its connections reset by its peers).
  if (count_thread_.joinable()) {
    count_thread_.join();
  }
  const auto cutoff = lingerIdleCutoff(def_.leave_linger);
  count_thread_ = std::thread([this, counter = connections_.get(), cutoff] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals stay with the event loop
    Result<dataplane::Connections> found = counter->count(cutoff);
    asio::post(io_, [this, found = std::move(found)] { onConnectionCount(found); });
  });
}

void Daemon::onConnectionCount(const Result<dataplane::Connections>& found) {
  if (!lingering_ || leaving_) {
    return;
  }
  const TimePoint now = std::chrono::steady_clock::now();
  const auto waited = std::chrono::duration_cast<milliseconds>(now - linger_from_).count();
  if (found.ok() && found->idle > 0 && !linger_idle_reported_) {
    linger_idle_reported_ = true;
    log(LogLevel::Notice,
        "leaving: not waiting for %zu established connections silent for over %lld s", found->idle,
        static_cast<long long>(lingerIdleCutoff(def_.leave_linger).count()));
  }
  const std::size_t* open = found.ok() ? &found->open : nullptr;
  if (!found.ok()) {
    log(LogLevel::Warning, "leaving without waiting for open connections: %s",
        found.error().message.c_str());
  } else if (*open == 0) {
    if (linger_reported_) {
      log(LogLevel::Notice, "leaving: the last open connection closed after %lld ms",
          static_cast<long long>(waited));
    }
  } else if (now >= linger_until_) {
    log(LogLevel::Warning,
        "leaving: %zu connections still open after %lld ms (leave_linger_ms), they break", *open,
        static_cast<long long>(waited));
  } else {
    if (!linger_reported_) {
      linger_reported_ = true;
      const std::string text = "leaving: buckets handed over, serving " + std::to_string(*open) +
                               " open connections for up to " +
                               std::to_string(def_.leave_linger.count()) + " ms";
      log(LogLevel::Notice, "%s", text.c_str());
      events_.add("leave", text);
      notifySystemd("STATUS=" + text);
    }
    pollLinger();
    return;
  }
  completeLeave();
}

void Daemon::pollLinger() {
  leave_timer_.expires_after(milliseconds(100));
  leave_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && !leaving_) {
      countConnections();
    }
  });
}

void Daemon::completeLeave() {
  if (leaving_) {
    return;
  }
  lingering_ = false;
  const TimePoint now = std::chrono::steady_clock::now();
  leaving_ = true;
  Output out = membership_->leave(now);
  for (const Datagram& d : out.send) {
    transport_->send(d);
  }
  if (auto st = dataplane_->teardown(); !st.ok()) {
    log(LogLevel::Error, "dataplane teardown: %s", st.error().message.c_str());
  }
  hooks_->drain(milliseconds(2000));
  drain_saver_->flush();
  if (wakeup_) {
    wakeup_->cancel();
  }
  drift_timer_.cancel();
  retry_timer_.cancel();
  handoff_timer_.cancel();
  leave_timer_.cancel();
  health_timer_.cancel();
  health_runner_.reset();
  exit_code_ = 0;
  io_.stop();
}

void Daemon::reload() {
  log(LogLevel::Notice, "reloading keys, health checks and notify hooks");
  auto loaded = loadClusterDefinition(options_.config_path);
  if (!loaded.ok()) {
    log(LogLevel::Error, "reload refused, the definition has errors:\n%s",
        joinErrors(loaded.errors).c_str());
    return;
  }
  if (fingerprintHex(*loaded.definition) != fingerprintHex(def_)) {
    const std::string text =
        "reload refused: the cluster definition changed (fingerprint " + fingerprintHex(def_) +
        " -> " + fingerprintHex(*loaded.definition) +
        "); a changed definition needs a restart of every node with the new file";
    log(LogLevel::Error, "%s", text.c_str());
    events_.add("reload", text);
    return;
  }
  auto keys = Keyring::load(resolveKeyFilePath(*loaded.definition));
  if (!keys.ok()) {
    log(LogLevel::Error, "reload refused: %s", keys.error().message.c_str());
    return;
  }
  membership_->setKeyring(std::move(keys.value()));
  if (loaded.definition->health_checks.size() != def_.health_checks.size() || [&] {
        for (std::size_t i = 0; i < def_.health_checks.size(); ++i) {
          const auto& a = def_.health_checks[i];
          const auto& b = loaded.definition->health_checks[i];
          if (a.name != b.name || a.kind != b.kind || a.target != b.target ||
              a.threshold != b.threshold || a.interval != b.interval || a.timeout != b.timeout ||
              a.rise != b.rise || a.fall != b.fall) {
            return true;
          }
        }
        return false;
      }()) {
    health_runner_.reset();
    def_.health_checks = loaded.definition->health_checks;
    def_.health_hold_down = loaded.definition->health_hold_down;
    std::vector<HealthCheck> lan;
    for (const HealthCheck& c : checks_) {
      if (c.name.rfind("lan:", 0) == 0) {
        lan.push_back(c);
      }
    }
    checks_ = def_.health_checks;
    checks_.insert(checks_.end(), lan.begin(), lan.end());
    health_ = CheckHealth(checks_, holdDown());
    const TimePoint now = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < checks_.size(); ++i) {
      if (checks_[i].kind == HealthCheck::Kind::Link) {
        const auto up = links_->isUp(checks_[i].target);
        health_.record(now, i, up.value_or(false), up.value_or(false) ? "up" : "down");
      }
    }
    health_runner_ = std::make_unique<HealthRunner>(checks_, [this](CheckResult r) {
      asio::post(io_, [this, r = std::move(r)]() mutable { onCheckResult(std::move(r)); });
    });
    publishHealth();
  } else if (loaded.definition->health_hold_down != def_.health_hold_down) {
    def_.health_hold_down = loaded.definition->health_hold_down;
    health_.setHoldDown(holdDown());
    publishHealth();
  }
  if (loaded.definition->handoff_margin != def_.handoff_margin) {
    def_.handoff_margin = loaded.definition->handoff_margin;
    log(LogLevel::Notice, "hand-over margin now %lld us",
        static_cast<long long>(def_.handoff_margin.count()));
  }
  if (loaded.definition->handoff_bridge != def_.handoff_bridge) {
    log(LogLevel::Warning,
        "handoff_bridge changed to %s: the dataplane's rules depend on it, it takes effect "
        "when shoald restarts",
        loaded.definition->handoff_bridge ? "on" : "off");
  }
  if (loaded.definition->leave_linger != def_.leave_linger) {
    def_.leave_linger = loaded.definition->leave_linger;
    log(LogLevel::Notice, "leave linger now %lld ms",
        static_cast<long long>(def_.leave_linger.count()));
  }
  if (loaded.definition->notify_hooks != def_.notify_hooks) {
    def_.notify_hooks = loaded.definition->notify_hooks;
    hooks_->setScripts(hookScripts());
  }
  events_.add("reload", "keys, health checks and notify hooks reloaded");
}

std::vector<std::string> Daemon::hookScripts() const {
  std::vector<std::string> scripts = def_.notify_hooks;
  scripts.insert(scripts.end(), options_.notify_scripts.begin(), options_.notify_scripts.end());
  return scripts;
}

control::Response Daemon::onControl(const control::Request& request) {
  control::Response response;
  const TimePoint now = std::chrono::steady_clock::now();
  if (request.has_status()) {
    *response.mutable_status() = buildStatus();
  } else if (request.has_drain()) {
    const std::string name =
        request.drain().node().empty() ? def_.nodes[self_].name : request.drain().node();
    const int index = def_.nodeIndex(name);
    if (index < 0) {
      response.set_error("unknown node '" + name + "'");
      return response;
    }
    const bool drain = request.drain().drain();
    events_.add("drain", std::string(drain ? "drain" : "undrain") + " of " + name +
                             " requested on " + def_.nodes[self_].name);
    handle(membership_->drain(now, static_cast<uint32_t>(index),
                              drain ? DrainMode::Drained : DrainMode::None));
    response.mutable_drain()->set_node(name);
    response.mutable_drain()->set_drained(drain);
  } else if (request.has_events()) {
    *response.mutable_events() = events_.recent(request.events().max());
  } else {
    response.set_error("unknown request");
  }
  return response;
}

control::Status Daemon::buildStatus() const {
  const TimePoint now = std::chrono::steady_clock::now();
  const View& view = membership_->view();
  control::Status s;
  s.set_cluster(def_.name);
  s.set_fingerprint(fingerprintHex(def_));
  s.set_self(def_.nodes[self_].name);
  s.set_dataplane(dataplane_->name());
  s.set_partition_policy(toString(def_.partition_policy));
  s.set_timing_profile(def_.timing.name);
  for (std::size_t l = 0; l < def_.nodes[self_].addresses.size(); ++l) {
    const IpAddress* group = def_.heartbeatGroup(l);
    s.add_heartbeat_links(group != nullptr ? "multicast " + group->toString() : "unicast");
  }
  s.set_quorum(last_.quorum);
  s.set_uptime_ms(static_cast<uint64_t>(msSince(now, started_)));

  const uint64_t mine = viewDigest(view);
  const std::vector<BucketSet> own = answered();
  bool agree = true;
  std::string differing;  // the peers whose last word on the view differs from this node's
  for (std::size_t i = 0; i < view.members.size(); ++i) {
    const MemberView& m = view.members[i];
    auto* n = s.add_nodes();
    n->set_name(def_.nodes[i].name);
    n->set_self(i == self_);
    n->set_state(toString(m.state));
    n->set_drain(toString(m.drain.mode));
    n->set_health(toString(m.health.status));
    n->set_held_down(m.held_down);
    n->set_incarnation(m.incarnation);
    n->set_serving(m.serving());
    n->set_leaving(m.leaving);
    if (i == self_) {
      for (const auto& f : health_.failing()) {
        n->add_failing_checks(f);
      }
      n->set_last_heard_ms(0);
    } else {
      for (std::size_t c = 0; c < def_.health_checks.size() && c < 64; ++c) {
        if ((m.health.failing_checks >> c) & 1) {
          n->add_failing_checks(def_.health_checks[c].name);
        }
      }
      int64_t last = -1;
      for (std::size_t l = 0; l < m.links.size(); ++l) {
        auto* ls = n->add_links();
        ls->set_index(static_cast<uint32_t>(l));
        if (l < def_.nodes[i].addresses.size()) {
          ls->set_address(def_.nodes[i].addresses[l].toString());
        }
        ls->set_up(m.links[l].up);
        const int64_t heard = m.links[l].heard ? msSince(now, m.links[l].last_heard) : -1;
        ls->set_last_heard_ms(heard);
        if (heard >= 0 && (last < 0 || heard < last)) {
          last = heard;
        }
      }
      n->set_last_heard_ms(last);
      if (m.up() && m.view_digest != mine) {
        agree = false;
        differing += (differing.empty() ? "" : ", ") + def_.nodes[i].name;
      }
    }
    const std::vector<BucketSet>& holds = i == self_ ? own : m.claims;
    for (std::size_t sv = 0; sv < def_.services.size(); ++sv) {
      auto* b = n->add_buckets();
      b->set_service(def_.services[sv].name);
      if (sv < holds.size() && (i == self_ || m.up())) {
        for (uint32_t bucket : holds[sv].list()) {
          b->add_buckets(bucket);
        }
      }
    }
  }
  s.set_views_agree(agree);
  for (std::size_t sv = 0; sv < def_.services.size(); ++sv) {
    const Service& svc = def_.services[sv];
    auto* out = s.add_services();
    out->set_name(svc.name);
    out->set_vip(svc.vip.toString());
    out->set_bucket_count(svc.buckets);
    out->set_hash(toString(svc.hash));
    uint32_t unowned = 0;
    for (uint32_t b = 0; b < svc.buckets; ++b) {
      std::string owner;
      for (std::size_t i = 0; i < view.members.size() && owner.empty(); ++i) {
        const std::vector<BucketSet>& holds = i == self_ ? own : view.members[i].claims;
        if ((i == self_ || view.members[i].up()) && sv < holds.size() && holds[sv].has(b)) {
          owner = def_.nodes[i].name;
        }
      }
      unowned += owner.empty() ? 1 : 0;
      out->add_owners(owner);
    }
    if (unowned > 0) {
      s.add_warnings("service " + svc.name + ": " + std::to_string(unowned) +
                     " buckets have no owner");
    }
  }
  const auto& counters = membership_->counters();
  for (std::size_t r = 0; r < kRejectionCount; ++r) {
    (*s.mutable_rejected())[toString(static_cast<Rejection>(r))] = counters.rejected.counts[r];
  }
  for (const ForeignPeer& f : membership_->foreignPeers()) {
    auto* fp = s.add_foreign_peers();
    fp->set_address(f.from.toString());
    char hex[20];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(f.fingerprint));
    fp->set_fingerprint(hex);
    fp->set_packets(f.packets);
    fp->set_last_seen_ms(msSince(now, f.last_seen));
  }
  if (!last_.quorum) {
    s.add_warnings("no quorum: this node serves nothing (policy " +
                   std::string(toString(def_.partition_policy)) + ")");
  }
  if (last_.holds_ignored) {
    s.add_warnings(
        "every node that could serve is held down by flap damping: serving with "
        "them anyway");
  }
  if (!settled(now)) {
    s.add_warnings("starting: waiting to hear every peer before taking buckets");
  }
  if (apply_failed_) {
    s.add_warnings("the dataplane refuses changes: see the log");
  }
  if (!agree) {
    s.add_warnings("nodes do not share one view yet (differing: " + differing + ")");
  }
  if (drift_repairs_ > 0) {
    s.add_warnings(std::to_string(drift_repairs_) + " dataplane drift repairs since start");
  }
  if (late_takes_ > 0) {
    s.add_warnings(std::to_string(late_takes_) +
                   " planned hand-overs reached this node after their instant (see events): "
                   "is it starved of CPU?");
  }
  auto* lease = s.mutable_lease();
  lease->set_enforced(lease_->enforced());
  lease->set_length_ms(static_cast<uint32_t>(lease_->lease().length().count()));
  lease->set_renew_every_ms(static_cast<uint32_t>(lease_->lease().spacing().count()));
  lease->set_renewals(lease_->renewals());
  lease->set_lapses(lease_->lapses());
  lease->set_rejoining(resettle_from_.has_value());
  if (!bridge_warning_.empty()) {
    s.add_warnings(bridge_warning_);
  }
  if (lease_->lapses() > 0) {
    s.add_warnings(std::to_string(lease_->lapses()) +
                   " dataplane lease lapses since start: shoald was stalled longer than the "
                   "lease and this node stopped answering meanwhile (see the log)");
  }
  if (resettle_from_) {
    s.add_warnings(
        "rejoining after a lease lapse: holding no buckets until every peer is "
        "heard from again");
  }
  if (renew_failed_) {
    s.add_warnings("the dataplane refuses lease renewals: this node will stop answering");
  }
  return s;
}

}  // namespace shoal::daemon
