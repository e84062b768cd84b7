#include "test/sim/sim_cluster.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "membership/drain_snapshot.h"

namespace shoal::sim {

namespace {

int64_t threadCpuNanos() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

uint64_t mix(uint64_t a, uint64_t b) {
  Rng r(a ^ (b * 0x9e3779b97f4a7c15ULL));
  return r.next();
}

}  // namespace

// A datagram in flight. One sent to all peers is opened (verified and parsed) once, by its
// first receiver, and the result handed to every other: openPacket() is a pure function of the
// bytes, the keyring (every simulated node has the same) and the receiver's identity, which a
// datagram addressed to all peers does not depend on. Each core still runs every check of its
// own after that (replay window, sender, state).
struct SimCluster::SimDatagram {
  std::string bytes;
  bool to_all = false;
  mutable std::optional<Opened> opened;
};

struct SimCluster::Item {
  enum class Kind : uint8_t { Deliver, Wake, Resume, Start };
  TimePoint at{};
  uint64_t sequence = 0;
  Kind kind = Kind::Wake;
  uint32_t node = 0;
  uint32_t link = 0;
  uint32_t from = 0;
  uint64_t generation = 0;
  // Shared by every copy of a datagram sent to all peers.
  std::shared_ptr<const SimDatagram> datagram;
};

struct SimCluster::Node {
  std::unique_ptr<Membership> core;
  bool running = false;
  bool paused = false;
  std::vector<Item> inbox;  // datagrams read when a paused node resumes
  uint64_t generation = 0;  // invalidates wake-ups of an earlier schedule or run
  TimePoint scheduled_wake = TimePoint::max();
  uint64_t boots = 0;
  std::string state_file;  // the drain state the node last persisted
  NodeStats stats;
};

ClusterDefinition makeDefinition(std::size_t nodes, std::size_t links, const TimingProfile& t) {
  ClusterDefinition def;
  def.name = "sim";
  def.timing = t;
  for (std::size_t i = 0; i < nodes; ++i) {
    Node n;
    n.name = "n" + std::to_string(i);
    for (std::size_t l = 0; l < links; ++l) {
      IpAddress a;
      a.family = IpAddress::Family::V4;
      a.bytes[0] = 10;
      a.bytes[1] = static_cast<uint8_t>(l);
      a.bytes[2] = static_cast<uint8_t>((i + 1) >> 8);
      a.bytes[3] = static_cast<uint8_t>(i + 1);
      n.addresses.push_back(a);
    }
    def.nodes.push_back(n);
  }
  return def;
}

Keyring simKeyring() {
  std::array<uint8_t, kKeySize> secret{};
  for (std::size_t i = 0; i < secret.size(); ++i) {
    secret[i] = static_cast<uint8_t>(i * 7 + 1);
  }
  std::vector<Key> keys;
  keys.emplace_back(1, secret);
  return std::move(Keyring::fromKeys(std::move(keys), 1)).value();
}

SimCluster::SimCluster(ClusterDefinition def, uint64_t seed)
    : def_(std::move(def)), keys_(simKeyring()), rng_(seed), seed_(seed) {
  const std::size_t n = def_.nodes.size();
  const std::size_t links = n == 0 ? 0 : def_.nodes[0].addresses.size();
  nodes_.resize(n);
  link_defaults_.resize(links);
  paths_.resize(n * n * links);
  record_.resize(n, nullptr);
}

SimCluster::~SimCluster() = default;

LinkConditions& SimCluster::path(uint32_t from, uint32_t to, uint32_t link) {
  const std::size_t n = nodes_.size();
  return paths_[(static_cast<std::size_t>(from) * n + to) * link_defaults_.size() + link];
}

void SimCluster::setLink(uint32_t link, const LinkConditions& conditions) {
  link_defaults_.at(link) = conditions;
  for (uint32_t a = 0; a < nodes_.size(); ++a) {
    for (uint32_t b = 0; b < nodes_.size(); ++b) {
      path(a, b, link) = conditions;
    }
  }
}

void SimCluster::setPath(uint32_t a, uint32_t b, uint32_t link, const LinkConditions& conditions) {
  path(a, b, link) = conditions;
  path(b, a, link) = conditions;
}

void SimCluster::setDirection(uint32_t from, uint32_t to, uint32_t link,
                              const LinkConditions& conditions) {
  path(from, to, link) = conditions;
}

void SimCluster::partition(const std::vector<uint32_t>& side, std::optional<uint32_t> link) {
  std::vector<bool> in(nodes_.size(), false);
  for (uint32_t s : side) {
    in.at(s) = true;
  }
  for (uint32_t a = 0; a < nodes_.size(); ++a) {
    for (uint32_t b = 0; b < nodes_.size(); ++b) {
      if (in[a] == in[b]) {
        continue;
      }
      for (uint32_t l = 0; l < link_defaults_.size(); ++l) {
        if (!link || *link == l) {
          path(a, b, l).down = true;
        }
      }
    }
  }
}

void SimCluster::heal() {
  for (uint32_t l = 0; l < link_defaults_.size(); ++l) {
    setLink(l, link_defaults_[l]);
  }
}

void SimCluster::push(Item item) {
  item.sequence = ++sequence_;
  queue_.push_back(std::move(item));
  std::push_heap(queue_.begin(), queue_.end(), [](const Item& a, const Item& b) {
    return a.at != b.at ? a.at > b.at : a.sequence > b.sequence;
  });
}

template <typename F>
void SimCluster::call(uint32_t node, F&& f) {
  Node& n = nodes_[node];
  if (!measure_cpu_) {
    apply(node, f(*n.core));
    return;
  }
  const int64_t before = threadCpuNanos();
  Output out = f(*n.core);
  n.stats.cpu_ns += threadCpuNanos() - before;
  apply(node, std::move(out));
}

void SimCluster::apply(uint32_t node, Output out) {
  Node& n = nodes_[node];
  for (Datagram& d : out.send) {
    uint64_t copies = 0;
    for (uint32_t to = 0; to < nodes_.size(); ++to) {
      copies += to != node && d.reaches(to) ? 1 : 0;
    }
    n.stats.packets_sent += copies;
    n.stats.bytes_sent += copies * d.bytes.size();
    if (record_[node] != nullptr) {
      record_[node]->push_back(d);
    }
    auto datagram = std::make_shared<SimDatagram>();
    datagram->bytes = std::move(d.bytes);
    datagram->to_all = d.node == kAllPeers;
    if (d.node != kAllPeers) {
      transmit(node, d.node, d.link, datagram);
      continue;
    }
    for (uint32_t to = 0; to < nodes_.size(); ++to) {
      if (to != node && d.reaches(to)) {
        transmit(node, to, d.link, datagram);
      }
    }
  }
  bool view_changed = false;
  bool persist = false;
  for (const Event& e : out.events) {
    trace(now_.time_since_epoch().count());
    trace((static_cast<uint64_t>(node) << 40) | (static_cast<uint64_t>(e.kind) << 32) |
          (static_cast<uint64_t>(e.node) << 8) | static_cast<uint64_t>(e.state));
    if (observer_) {
      observer_(Observed{now_, node, e});
    }
    switch (e.kind) {
      case Event::Kind::DrainChanged:
        persist = true;
        view_changed = true;
        break;
      case Event::Kind::MemberChanged:
      case Event::Kind::HealthChanged:
      case Event::Kind::HoldDownStarted:
      case Event::Kind::HoldDownEnded:
        view_changed = true;
        break;
      default:
        break;
    }
  }
  if (persist) {
    n.state_file = encodeDrainSnapshot(n.core->drainSnapshot(), def_);
  }
  if (out.next_wakeup != n.scheduled_wake) {
    n.scheduled_wake = out.next_wakeup;
    ++n.generation;
    if (out.next_wakeup != TimePoint::max()) {
      Item wake;
      wake.at = std::max(out.next_wakeup, now_);
      wake.kind = Item::Kind::Wake;
      wake.node = node;
      wake.generation = n.generation;
      push(std::move(wake));
    }
  }
  if (view_changed) {
    checkAgreement();
  }
}

void SimCluster::transmit(uint32_t from, uint32_t to, uint32_t link,
                          const std::shared_ptr<const SimDatagram>& datagram) {
  if (to >= nodes_.size() || link >= link_defaults_.size()) {
    throw std::logic_error("core addressed a datagram to a node or link that does not exist");
  }
  const LinkConditions& c = path(from, to, link);
  if (c.down) {
    return;
  }
  const int copies = (c.duplicate > 0 && rng_.unit() < c.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    if (c.loss > 0 && rng_.unit() < c.loss) {
      continue;
    }
    Duration delay = c.delay;
    if (c.jitter > Duration::zero()) {
      delay +=
          Duration(static_cast<Duration::rep>(rng_.unit() * static_cast<double>(c.jitter.count())));
    }
    if (c.reorder > 0 && rng_.unit() < c.reorder) {
      delay += c.reorder_delay;
    }
    Item item;
    item.at = now_ + delay;
    item.kind = Item::Kind::Deliver;
    item.node = to;
    item.link = link;
    item.from = from;
    item.datagram = datagram;
    push(std::move(item));
  }
}

void SimCluster::deliver(uint32_t node, uint32_t link, uint32_t from,
                         const SimDatagram& datagram) {
  Node& n = nodes_[node];
  if (!n.running) {
    return;
  }
  ++n.stats.packets_received;
  const std::string& bytes = datagram.bytes;
  trace(now_.time_since_epoch().count());
  trace((static_cast<uint64_t>(node) << 40) | (static_cast<uint64_t>(link) << 32) | from);
  // The last bytes of a sealed datagram are its MAC: a digest of its content.
  uint64_t tail = bytes.size();
  std::memcpy(&tail, bytes.data() + bytes.size() - std::min<std::size_t>(8, bytes.size()),
              std::min<std::size_t>(8, bytes.size()));
  trace(tail ^ bytes.size());
  const Endpoint source{def_.nodes[from].addresses[link], def_.port};
  const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()),
                                      bytes.size());
  call(node, [&](Membership& m) {
    if (!datagram.to_all) {
      return m.onPacket(now_, span, link, source);
    }
    if (!datagram.opened) {
      datagram.opened = openPacket(bytes, keys_, m.wireIdentity());
    }
    return m.onPacket(now_, *datagram.opened, span, link, source);
  });
}

void SimCluster::resume(uint32_t node) {
  Node& n = nodes_[node];
  if (!n.running || !n.paused) {
    return;
  }
  n.paused = false;
  std::vector<Item> inbox = std::move(n.inbox);
  n.inbox.clear();
  for (Item& item : inbox) {
    if (!n.running) {
      break;
    }
    deliver(node, item.link, item.from, *item.datagram);
  }
  if (n.running) {
    call(node, [&](Membership& m) { return m.onTick(now_); });
  }
  checkAgreement();
}

void SimCluster::alignRounds(Duration clock_error) {
  round_offsets_.assign(nodes_.size(), std::nullopt);
  for (auto& offset : round_offsets_) {
    offset = Duration(static_cast<Duration::rep>(
        rng_.below(static_cast<uint64_t>(clock_error.count()) + 1)));
  }
}

void SimCluster::startAll() {
  const auto interval = std::chrono::duration_cast<Duration>(def_.timing.heartbeat_interval);
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    Item item;
    item.at =
        now_ +
        Duration(static_cast<Duration::rep>(rng_.below(static_cast<uint64_t>(interval.count()))));
    item.kind = Item::Kind::Start;
    item.node = i;
    push(std::move(item));
  }
}

void SimCluster::start(uint32_t node) {
  Node& n = nodes_.at(node);
  ++n.boots;
  ++n.generation;
  n.scheduled_wake = TimePoint::max();
  n.paused = false;
  n.inbox.clear();
  n.core =
      std::make_unique<Membership>(def_, node, keys_, n.boots, mix(seed_, node * 1000 + n.boots));
  if (node < round_offsets_.size() && round_offsets_[node]) {
    n.core->alignRounds(*round_offsets_[node]);
  }
  n.running = true;
  DrainSnapshot saved;
  if (!n.state_file.empty()) {
    auto decoded = decodeDrainSnapshot(n.state_file, def_, "sim-state-" + std::to_string(node));
    if (!decoded.ok()) {
      throw std::logic_error(decoded.error().message);
    }
    saved = decoded.value();
  }
  call(node, [&](Membership& m) { return m.start(now_, saved); });
  checkAgreement();
}

void SimCluster::crash(uint32_t node) {
  Node& n = nodes_.at(node);
  n.running = false;
  n.paused = false;
  n.inbox.clear();
  n.core.reset();
  ++n.generation;
  n.scheduled_wake = TimePoint::max();
  checkAgreement();
}

void SimCluster::pause(uint32_t node, Duration duration) {
  Node& n = nodes_.at(node);
  if (!n.running) {
    return;
  }
  n.paused = true;
  Item item;
  item.at = now_ + duration;
  item.kind = Item::Kind::Resume;
  item.node = node;
  push(std::move(item));
  checkAgreement();
}

void SimCluster::drain(uint32_t at, uint32_t target, DrainMode mode) {
  if (running(at)) {
    call(at, [&](Membership& m) { return m.drain(now_, target, mode); });
  }
}

void SimCluster::setHealth(uint32_t node, NodeHealth health) {
  if (running(node)) {
    call(node, [&](Membership& m) { return m.setOwnHealth(now_, health); });
  }
}

void SimCluster::leave(uint32_t node) {
  if (running(node)) {
    call(node, [&](Membership& m) { return m.leave(now_); });
  }
}

void SimCluster::inject(uint32_t node, uint32_t link, const std::string& bytes,
                        const Endpoint& from) {
  if (running(node)) {
    call(node, [&](Membership& m) {
      return m.onPacket(
          now_,
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
          link, from);
    });
  }
}

void SimCluster::runUntil(TimePoint until) {
  const auto later = [](const Item& a, const Item& b) {
    return a.at != b.at ? a.at > b.at : a.sequence > b.sequence;
  };
  while (!queue_.empty() && queue_.front().at <= until) {
    std::pop_heap(queue_.begin(), queue_.end(), later);
    Item item = std::move(queue_.back());
    queue_.pop_back();
    now_ = std::max(now_, item.at);
    Node& n = nodes_[item.node];
    switch (item.kind) {
      case Item::Kind::Deliver:
        if (n.running && n.paused) {
          n.inbox.push_back(std::move(item));
        } else {
          deliver(item.node, item.link, item.from, *item.datagram);
        }
        break;
      case Item::Kind::Wake:
        if (n.running && !n.paused && item.generation == n.generation) {
          n.scheduled_wake = TimePoint::max();
          call(item.node, [&](Membership& m) { return m.onTick(now_); });
        }
        break;
      case Item::Kind::Resume:
        resume(item.node);
        break;
      case Item::Kind::Start:
        start(item.node);
        break;
    }
  }
  now_ = std::max(now_, until);
}

std::size_t SimCluster::size() const {
  return nodes_.size();
}

bool SimCluster::running(uint32_t node) const {
  return nodes_.at(node).running;
}

bool SimCluster::paused(uint32_t node) const {
  return nodes_.at(node).paused;
}

const Membership& SimCluster::core(uint32_t node) const {
  if (!nodes_.at(node).running) {
    throw std::logic_error("node " + std::to_string(node) + " is not running");
  }
  return *nodes_[node].core;
}

const NodeStats& SimCluster::stats(uint32_t node) const {
  return nodes_.at(node).stats;
}

void SimCluster::resetStats() {
  for (Node& n : nodes_) {
    n.stats = NodeStats{};
  }
}

uint64_t SimCluster::viewDigest(uint32_t node) const {
  // FNV-1a over what the rebalance acts on: who is up, drained, healthy and held down.
  uint64_t h = 0xcbf29ce484222325ULL;
  auto add = [&](uint64_t v) {
    h ^= v;
    h *= 0x100000001b3ULL;
  };
  for (const MemberView& m : core(node).view().members) {
    add(m.up() ? 1 : 0);
    add(static_cast<uint64_t>(m.drain.mode));
    add(m.health.status == HealthStatus::Failing ? 1 : 0);
    add(m.held_down ? 1 : 0);
  }
  return h;
}

bool SimCluster::agreed() const {
  std::optional<uint64_t> first;
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i].running || nodes_[i].paused) {
      continue;
    }
    const uint64_t d = viewDigest(i);
    if (!first) {
      first = d;
    } else if (*first != d) {
      return false;
    }
  }
  return true;
}

void SimCluster::checkAgreement() {
  const bool ok = agreed();
  if (!ok && !diverged_since_) {
    diverged_since_ = now_;
  } else if (ok && diverged_since_) {
    episodes_.push_back(now_ - *diverged_since_);
    diverged_since_.reset();
  }
}

}  // namespace shoal::sim
