#include "membership/membership.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "core/fingerprint.h"
#include "membership/ownership.h"

namespace shoal {

namespace {

wire::MemberState toWire(MemberState s) {
  switch (s) {
    case MemberState::Alive:
      return wire::MEMBER_ALIVE;
    case MemberState::Suspect:
      return wire::MEMBER_SUSPECT;
    case MemberState::Dead:
      return wire::MEMBER_DEAD;
    case MemberState::Left:
      return wire::MEMBER_LEFT;
    case MemberState::Unknown:
      break;
  }
  return wire::MEMBER_STATE_UNSTATED;
}

MemberState fromWire(wire::MemberState s) {
  switch (s) {
    case wire::MEMBER_ALIVE:
      return MemberState::Alive;
    case wire::MEMBER_SUSPECT:
      return MemberState::Suspect;
    case wire::MEMBER_DEAD:
      return MemberState::Dead;
    case wire::MEMBER_LEFT:
      return MemberState::Left;
    default:
      return MemberState::Unknown;
  }
}

wire::DrainMode toWire(DrainMode m) {
  switch (m) {
    case DrainMode::Draining:
      return wire::DRAIN_DRAINING;
    case DrainMode::Drained:
      return wire::DRAIN_DRAINED;
    case DrainMode::None:
      break;
  }
  return wire::DRAIN_NONE;
}

DrainMode fromWire(wire::DrainMode m) {
  switch (m) {
    case wire::DRAIN_DRAINING:
      return DrainMode::Draining;
    case wire::DRAIN_DRAINED:
      return DrainMode::Drained;
    default:
      return DrainMode::None;
  }
}

wire::HealthStatus toWire(HealthStatus h) {
  switch (h) {
    case HealthStatus::Ok:
      return wire::HEALTH_OK;
    case HealthStatus::Failing:
      return wire::HEALTH_FAILING;
    case HealthStatus::Unstated:
      break;
  }
  return wire::HEALTH_UNSTATED;
}

NodeHealth fromWire(const wire::NodeHealth& h) {
  NodeHealth out;
  switch (h.status()) {
    case wire::HEALTH_OK:
      out.status = HealthStatus::Ok;
      break;
    case wire::HEALTH_FAILING:
      out.status = HealthStatus::Failing;
      break;
    default:
      out.status = HealthStatus::Unstated;
      break;
  }
  out.failing_checks = h.failing_checks();
  return out;
}

void toWire(const NodeHealth& h, wire::NodeHealth* out) {
  out->set_status(toWire(h.status));
  out->set_failing_checks(h.failing_checks);
}

DrainState fromWire(const wire::DrainState& d) {
  return DrainState{fromWire(d.mode()), d.clock(), d.writer()};
}

Event makeEvent(Event::Kind kind, uint32_t node, uint32_t link = 0,
                MemberState state = MemberState::Unknown, bool up = false) {
  Event e;
  e.kind = kind;
  e.node = node;
  e.link = link;
  e.state = state;
  e.up = up;
  return e;
}

bool isDown(MemberState s) {
  return s == MemberState::Dead || s == MemberState::Left;
}

}  // namespace

Membership::Membership(ClusterDefinition def, uint32_t self, Keyring keys, uint64_t boot_id,
                       uint64_t seed)
    : def_(std::move(def)),
      self_(self),
      links_(def_.nodes.empty() ? 0 : static_cast<uint32_t>(def_.nodes[0].addresses.size())),
      keys_(std::move(keys)),
      identity_{fingerprint64(def_), self, static_cast<uint32_t>(def_.nodes.size())},
      sealer_(identity_.cluster, self, boot_id),
      replay_(def_.nodes.size()),
      rng_(seed),
      // A bad sign is forgotten after four suspicion windows without another: long enough to
      // cover the stall or overload that caused it, short enough that detection is back to
      // full speed within a second at the default profile.
      local_health_(kMaxLocalHealth, 4 * def_.timing.suspect_after),
      self_flap_(def_.timing.flap_threshold, def_.timing.flap_window, def_.timing.flap_hold_down) {
  view_.self = self_;
  view_.members.resize(def_.nodes.size());
  for (std::size_t i = 0; i < def_.nodes.size(); ++i) {
    peers_.emplace_back(FlapDamper(def_.timing.flap_threshold, def_.timing.flap_window,
                                   def_.timing.flap_hold_down));
    if (i != self_) {
      view_.members[i].links.resize(links_);
    }
  }
  view_.members[self_].state = MemberState::Alive;
}

Duration Membership::suspectAfter() const {
  return def_.timing.suspect_after * local_health_.multiplier();
}

Duration Membership::suspicionTimeout() const {
  return def_.timing.suspicion_timeout * local_health_.multiplier();
}

Duration Membership::suspicionTimeout(uint32_t node) const {
  // Lifeguard's dynamic suspicion: from suspicion_timeout with one accuser down to half of it
  // with 1 + K, logarithmically (each further confirmation is worth less). K is
  // kSuspicionConfirmations, or the number of other members up beyond the suspect when fewer;
  // with nobody to confirm (two nodes), the shortest.
  const Duration longest = suspicionTimeout();
  const Duration shortest = longest / 2;
  const auto up = static_cast<uint32_t>(std::count_if(view_.members.begin(), view_.members.end(),
                                                      [](const MemberView& m) { return m.up(); }));
  const uint32_t k = std::min<uint32_t>(kSuspicionConfirmations, up >= 2 ? up - 2 : 0);
  const auto accusers = static_cast<uint32_t>(std::popcount(peers_[node].accusers));
  const uint32_t confirmations = accusers > 0 ? accusers - 1 : 0;
  if (k == 0 || confirmations >= k) {
    return shortest;
  }
  const double fraction = std::log(confirmations + 1.0) / std::log(k + 1.0);
  return longest - std::chrono::duration_cast<Duration>((longest - shortest) * fraction);
}

Duration Membership::probeTimeout() const {
  return def_.timing.probe_timeout * local_health_.multiplier();
}

DrainSnapshot Membership::drainSnapshot() const {
  DrainSnapshot snapshot;
  snapshot.clock = lamport_;
  for (const MemberView& m : view_.members) {
    snapshot.drains.push_back(m.drain);
  }
  return snapshot;
}

// ---- entry points -------------------------------------------------------------------------

Output Membership::start(TimePoint now, const DrainSnapshot& saved) {
  out_ = Output{};
  now_ = now;
  if (started_) {
    return finish(now);
  }
  started_ = true;
  lamport_ = saved.clock;
  for (std::size_t i = 0; i < saved.drains.size() && i < view_.members.size(); ++i) {
    view_.members[i].drain = saved.drains[i];
    lamport_ = std::max(lamport_, saved.drains[i].clock);
  }
  next_heartbeat_ = now;
  next_join_ = now;
  next_push_pull_ = now + kPushPullRounds * def_.timing.heartbeat_interval;
  tick(now);
  return finish(now);
}

Output Membership::onTick(TimePoint now) {
  out_ = Output{};
  now_ = now;
  catchUp(now);
  tick(now);
  return finish(now);
}

Output Membership::onPacket(TimePoint now, std::span<const uint8_t> bytes, uint32_t link,
                            const Endpoint& from, TimePoint arrived) {
  const std::string_view datagram(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return onPacket(now, openPacket(datagram, keys_, identity_), bytes, link, from, arrived);
}

Output Membership::onPacket(TimePoint now, const Opened& opened, std::span<const uint8_t> bytes,
                            uint32_t link, const Endpoint& from, TimePoint arrived) {
  out_ = Output{};
  now_ = now;
  arrived_ = arrived == TimePoint{} || arrived > now ? now : arrived;
  catchUp(now);
  ++counters_.packets_received;
  counters_.bytes_received += bytes.size();
  if (!opened.ok()) {
    counters_.rejected.bump(opened.reason());
    if (opened.reason() == Rejection::OtherCluster) {
      recordForeign(now, bytes, from);
    }
    return finish(now);
  }
  const wire::Envelope& env = opened.envelope();
  // The link index comes from the caller's socket, never from the packet; one outside the
  // definition or a packet claiming to come from this node is a fault, not a peer's state.
  if (link >= links_ || env.sender() == self_) {
    counters_.rejected.bump(Rejection::Malformed);
    return finish(now);
  }
  if (!isAccepted(replay_.check(env.sender(), env.boot_id(), env.sequence()))) {
    counters_.rejected.bump(Rejection::Replay);
    return finish(now);
  }
  replay_.commit(env.sender(), env.boot_id(), env.sequence());
  ++counters_.packets_accepted;
  if (started_ && !left_) {
    handleEnvelope(now, env, link);
  }
  return finish(now);
}

Output Membership::drain(TimePoint now, uint32_t node, DrainMode mode) {
  out_ = Output{};
  now_ = now;
  catchUp(now);
  if (node < view_.members.size() && !left_) {
    mergeDrain(now, node, DrainState{mode, lamport_ + 1, self_});
    broadcast_pending_ = true;
  }
  return finish(now);
}

Output Membership::setOwnHealth(TimePoint now, NodeHealth health) {
  out_ = Output{};
  now_ = now;
  catchUp(now);
  MemberView& me = view_.members[self_];
  if (!left_ && !(me.health == health)) {
    // Health is bound to the incarnation: a copy gossiped with a higher incarnation is newer.
    ++me.incarnation;
    setHealth(self_, health);
    queueGossip(self_);
    broadcast_pending_ = true;
  }
  return finish(now);
}

Output Membership::setOwnClaims(TimePoint now, std::vector<BucketSet> claims,
                                uint64_t view_digest) {
  return setOwnClaims(now, std::move(claims), {}, TimePoint{}, view_digest);
}

Output Membership::setOwnClaims(TimePoint now, std::vector<BucketSet> claims,
                                std::vector<BucketSet> releasing, TimePoint release_at,
                                uint64_t view_digest) {
  out_ = Output{};
  now_ = now;
  catchUp(now);
  MemberView& me = view_.members[self_];
  bool any_releasing = false;
  for (const BucketSet& r : releasing) {
    any_releasing = any_releasing || !r.empty();
  }
  if (!any_releasing) {
    releasing.clear();
    release_at = TimePoint{};
  }
  if (!left_ && (me.claims != claims || me.view_digest != view_digest ||
                 me.releasing != releasing || me.release_at != release_at)) {
    me.claims = std::move(claims);
    me.view_digest = view_digest;
    me.releasing = std::move(releasing);
    if (any_releasing && release_at != me.release_at) {
      ++release_serial_;  // a new instant: earlier announcements do not bound it
    }
    me.release_at = release_at;
    broadcast_pending_ = true;
  }
  return finish(now);
}

Output Membership::setLeaving(TimePoint now) {
  out_ = Output{};
  now_ = now;
  catchUp(now);
  MemberView& me = view_.members[self_];
  if (!left_ && !me.leaving) {
    me.leaving = true;
    broadcast_pending_ = true;
  }
  return finish(now);
}

Output Membership::leave(TimePoint now) {
  out_ = Output{};
  now_ = now;
  if (left_ || !started_) {
    left_ = true;
    return finish(now);
  }
  MemberView& me = view_.members[self_];
  me.state = MemberState::Left;
  out_.events.push_back(makeEvent(Event::Kind::MemberChanged, self_, 0, MemberState::Left));
  for (uint32_t n = 0; n < view_.members.size(); ++n) {
    if (n == self_) {
      continue;
    }
    for (uint32_t l = 0; l < links_; ++l) {
      wire::Envelope env;
      env.mutable_leave()->set_incarnation(me.incarnation);
      send(n, l, std::move(env));
    }
  }
  left_ = true;
  return finish(now);
}

// ---- time ---------------------------------------------------------------------------------

TimePoint Membership::nextRound(TimePoint now) const {
  const Duration interval = def_.timing.heartbeat_interval;
  if (!round_offset_) {
    const TimePoint next = next_heartbeat_ + interval;
    return next > now ? next : now + interval;
  }
  // The first grid point after `now`: (t + offset) a whole multiple of the interval.
  const Duration shifted = now.time_since_epoch() + *round_offset_;
  Duration past = shifted % interval;
  if (past < Duration::zero()) {
    past += interval;
  }
  return now - past + interval;
}

void Membership::catchUp(TimePoint now) {
  if (!started_ || left_ || scheduled_ == TimePoint::max()) {
    return;
  }
  const Duration tolerance = def_.timing.heartbeat_interval / 2;
  if (now <= scheduled_ + tolerance) {
    return;
  }
  // The process stalled (paused, swapped, starved): nothing was heard because nothing was
  // read. Count the stalled time as if it had not passed for every silence and deadline, or
  // this node would accuse everyone the moment it wakes up; and distrust itself a little.
  const Duration late = now - scheduled_;
  auto shift = [&](TimePoint& t) {
    if (t != TimePoint{}) {
      t = std::min(t + late, std::max(t, now));
    }
  };
  for (uint32_t n = 0; n < peers_.size(); ++n) {
    Peer& p = peers_[n];
    shift(p.last_heard);
    p.probe_started += late;
    p.probe_deadline += late;
    p.suspicion_deadline += late;
    p.suspected_at += late;
    for (LinkView& l : view_.members[n].links) {
      shift(l.last_heard);
    }
  }
  for (Relay& r : relays_) {
    r.deadline += late;
  }
  local_health_.worse(now);
  ++counters_.late_wakeups;
}

void Membership::tick(TimePoint now) {
  if (!started_ || left_) {
    return;
  }
  local_health_.decay(now);
  view_.local_health = local_health_.score();

  // Probes run for others: report the ones that got no answer (Lifeguard's nack), so the
  // requester learns that its path to this node works and the silence is not its own fault.
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (now < it->deadline) {
      ++it;
      continue;
    }
    wire::Envelope env;
    wire::Ack* ack = env.mutable_ack();
    ack->set_probe_id(it->requester_probe);
    ack->set_target(it->target);
    ack->set_link(it->link);
    ack->set_negative(true);
    ++counters_.nacks_sent;
    send(it->requester, it->reply_link, std::move(env));
    it = relays_.erase(it);
  }

  const Duration suspect_after = suspectAfter();
  for (uint32_t n = 0; n < view_.members.size(); ++n) {
    MemberView& m = view_.members[n];
    Peer& p = peers_[n];
    if (m.held_down && now >= m.held_until) {
      m.held_down = false;
      p.hold_ended = now;
      out_.events.push_back(makeEvent(Event::Kind::HoldDownEnded, n));
    }
    if (n == self_) {
      continue;
    }
    for (uint32_t l = 0; l < links_; ++l) {
      LinkView& link = m.links[l];
      if (link.up && now >= linkDownAt(n, l)) {
        link.up = false;
        out_.events.push_back(makeEvent(Event::Kind::LinkChanged, n, l, m.state, false));
      }
    }
    if (m.state == MemberState::Alive) {
      if (!p.probing && now >= p.last_heard + suspect_after) {
        startProbe(now, n);
      } else if (p.probing && now >= p.probe_deadline) {
        // Neither the peer nor anyone asked to reach it answered: announce the suspicion so
        // that the peer, if it is alive, hears of it and refutes.
        p.probing = false;
        if (p.nacks_expected > 0 && p.nacks_received == 0) {
          // Not even the helpers answered: the fault is probably this node's own.
          local_health_.worse(now);
        }
        setState(now, n, MemberState::Suspect, m.incarnation);
        accuse(n);
        ++counters_.suspicions;
      }
    } else if (m.state == MemberState::Suspect) {
      const bool accused = (p.accusers >> self_) & 1;
      if (p.probing && now >= p.probe_deadline) {
        // Heard of the suspicion while its own probe ran, and that probe failed too: an
        // independent accusation.
        p.probing = false;
        accuse(n);
      } else if (!p.probing && !accused && now >= p.last_heard + suspect_after) {
        // Told of a suspicion of a member this node has not heard from either: check for
        // itself, so that its word counts as a confirmation (or the member answers).
        startProbe(now, n);
      }
      if (now >= p.suspicion_deadline) {
        setState(now, n, MemberState::Dead, m.incarnation);
        ++counters_.deaths;
        broadcast_pending_ = true;
        // A backup link kept up by its longer silence limit is not up to a member declared
        // dead: everything silent for suspect_after goes down with it.
        for (uint32_t l = 0; l < links_; ++l) {
          LinkView& link = m.links[l];
          if (link.up && now >= link.last_heard + suspect_after) {
            link.up = false;
            out_.events.push_back(makeEvent(Event::Kind::LinkChanged, n, l, m.state, false));
          }
        }
      }
    }
  }

  if (now >= next_heartbeat_) {
    heartbeatRound(now, true);
    ++rounds_;
    next_heartbeat_ = nextRound(now);
  }
  if (!joined_ && now >= next_join_) {
    sendJoin();
    ++join_attempts_;
    // Three quick tries cover a lost datagram; after that the node is probably alone and
    // asks at the push-pull pace.
    next_join_ = now + (join_attempts_ < 3 ? def_.timing.heartbeat_interval
                                           : kPushPullRounds * def_.timing.heartbeat_interval);
  }
  if (now >= next_push_pull_) {
    std::vector<uint32_t> candidates;
    for (uint32_t n = 0; n < view_.members.size(); ++n) {
      if (n != self_ && view_.members[n].up()) {
        candidates.push_back(n);
      }
    }
    if (!candidates.empty() && links_ > 0) {
      const uint32_t n = candidates[rng_.below(candidates.size())];
      sendStateExchange(n, static_cast<uint32_t>(rng_.below(links_)), true);
    }
    next_push_pull_ = now + kPushPullRounds * def_.timing.heartbeat_interval;
  }
}

Output Membership::finish(TimePoint now) {
  if (broadcast_pending_ && started_ && !left_) {
    // Changes this node made itself go out at once instead of waiting for the next round.
    heartbeatRound(now, false);
  }
  broadcast_pending_ = false;
  view_.local_health = local_health_.score();
  // Present: up, or declared dead by gossip while this node still hears it (as quorum counts
  // it, membership/ownership.h).
  const uint32_t present = quorumCount(view_, now, def_.timing.suspect_after);
  if (present * 2 < view_.members.size()) {
    last_minority_at_ = now;
  }
  TimePoint next = TimePoint::max();
  if (started_ && !left_) {
    next = std::min(next, next_heartbeat_);
    next = std::min(next, next_push_pull_);
    if (!joined_) {
      next = std::min(next, next_join_);
    }
    next = std::min(next, local_health_.nextDecay());
    const Duration suspect_after = suspectAfter();
    for (uint32_t n = 0; n < view_.members.size(); ++n) {
      const MemberView& m = view_.members[n];
      const Peer& p = peers_[n];
      if (m.held_down) {
        next = std::min(next, m.held_until);
      }
      if (n == self_) {
        continue;
      }
      for (uint32_t l = 0; l < m.links.size(); ++l) {
        if (m.links[l].up) {
          next = std::min(next, linkDownAt(n, l));
        }
      }
      if (m.state == MemberState::Alive) {
        next = std::min(next, p.probing ? p.probe_deadline : p.last_heard + suspect_after);
      } else if (m.state == MemberState::Suspect) {
        next = std::min(next, p.suspicion_deadline);
        if (p.probing) {
          next = std::min(next, p.probe_deadline);
        } else if (((p.accusers >> self_) & 1) == 0) {
          next = std::min(next, p.last_heard + suspect_after);
        }
      }
    }
    for (const Relay& r : relays_) {
      next = std::min(next, r.deadline);
    }
    next = std::max(next, now);
  }
  out_.next_wakeup = next;
  scheduled_ = next;
  return std::move(out_);
}

// ---- receiving ----------------------------------------------------------------------------

void Membership::handleEnvelope(TimePoint now, const wire::Envelope& env, uint32_t link) {
  const uint32_t sender = env.sender();
  switch (env.body_case()) {
    case wire::Envelope::kHeartbeat:
      handleHeartbeat(now, env, link);
      break;
    case wire::Envelope::kAck:
      handleAck(now, sender, link, env.ack());
      break;
    case wire::Envelope::kIndirectProbe:
      handleIndirectProbe(now, sender, link, env.indirect_probe());
      break;
    case wire::Envelope::kStateExchange:
      handleStateExchange(now, sender, link, env.state_exchange());
      break;
    case wire::Envelope::kLeave: {
      heardFrom(now, sender, link);
      const MemberView& m = view_.members[sender];
      if (m.state != MemberState::Left && env.leave().incarnation() >= m.incarnation) {
        setState(now, sender, MemberState::Left, env.leave().incarnation());
      }
      break;
    }
    case wire::Envelope::BODY_NOT_SET:
      break;
  }
}

void Membership::handleHeartbeat(TimePoint now, const wire::Envelope& in, uint32_t link) {
  const uint32_t sender = in.sender();
  const wire::Heartbeat& hb = in.heartbeat();
  heardFrom(now, sender, link);
  selfReport(now, sender, hb.incarnation(), fromWire(hb.health()));
  for (const wire::MemberUpdate& u : hb.updates()) {
    applyUpdate(now, u);
  }
  // Claims and view digest only from a heartbeat newer than the one they came from. The
  // replay window accepts packets out of order (a heartbeat round goes out once per link, and
  // the links need not be equally fast), and a claim that comes back after its release was
  // heard would make the taker wait another round: a longer gap for the bucket.
  Peer& p = peers_[sender];
  MemberView& peer = view_.members[sender];
  const bool newer = in.boot_id() > p.claims_boot ||
                     (in.boot_id() == p.claims_boot && in.sequence() > p.claims_sequence);
  if (newer) {
    const bool same_boot = in.boot_id() == p.claims_boot;
    p.claims_boot = in.boot_id();
    p.claims_sequence = in.sequence();
    peer.claims.clear();
    for (std::size_t s = 0; s < def_.services.size(); ++s) {
      peer.claims.push_back(BucketSet::fromBytes(
          s < static_cast<std::size_t>(hb.claims_size()) ? hb.claims(static_cast<int>(s)) : "",
          def_.services[s].buckets));
    }
    peer.view_digest = hb.view_digest();
    p.offset.add(in.boot_id(), hb.sent_us(), arrived_);
    const TimePoint bound_before = peer.releasing.empty() ? TimePoint{} : peer.release_at;
    peer.releasing.clear();
    peer.release_at = TimePoint{};
    if (hb.releasing_size() > 0) {
      for (std::size_t s = 0; s < def_.services.size(); ++s) {
        peer.releasing.push_back(BucketSet::fromBytes(
            s < static_cast<std::size_t>(hb.releasing_size()) ? hb.releasing(static_cast<int>(s))
                                                              : "",
            def_.services[s].buckets));
      }
      // Placed on this node's clock no earlier than the sender can stop (offset_bound.h).
      peer.release_at = p.offset.stopOf(in.boot_id(), hb.sent_us(), hb.release_in_us(), arrived_);
      if (bound_before != TimePoint{} && same_boot && hb.release_serial() == p.release_serial) {
        peer.release_at = std::min(peer.release_at, bound_before);
      }
      p.release_serial = hb.release_serial();
    }
    peer.leaving = hb.leaving();
    peer.claims_known = true;
    peer.claims_heard = now;
    p.heard_me = self_ < hb.heard().size() ? static_cast<uint8_t>(hb.heard()[self_]) : 0;
    p.heard_me_at = now;
  } else {
    ++counters_.stale_claims;
  }
  if (hb.probe_id() != 0) {
    wire::Envelope env;
    wire::Ack* ack = env.mutable_ack();
    ack->set_probe_id(hb.probe_id());
    ack->set_target(self_);
    ack->set_link(link);
    ack->set_incarnation(view_.members[self_].incarnation);
    toWire(view_.members[self_].health, ack->mutable_health());
    addGossip(ack->mutable_updates());
    send(sender, link, std::move(env));
  }
  maybeCorrect(now, sender, link, hb.incarnation());
}

void Membership::handleAck(TimePoint now, uint32_t sender, uint32_t link, const wire::Ack& ack) {
  heardFrom(now, sender, link);
  for (const wire::MemberUpdate& u : ack.updates()) {
    applyUpdate(now, u);
  }
  const uint32_t target = ack.target();
  if (target == sender && !ack.negative()) {
    selfReport(now, sender, ack.incarnation(), fromWire(ack.health()));
  }
  // An answer to a probe this node runs for someone else: pass it on.
  for (auto it = relays_.begin(); it != relays_.end(); ++it) {
    if (it->probe_id == ack.probe_id() && it->target == sender && !ack.negative()) {
      wire::Envelope env;
      wire::Ack* fwd = env.mutable_ack();
      fwd->set_probe_id(it->requester_probe);
      fwd->set_target(it->target);
      fwd->set_link(it->link);
      fwd->set_incarnation(ack.incarnation());
      *fwd->mutable_health() = ack.health();
      send(it->requester, it->reply_link, std::move(env));
      relays_.erase(it);
      break;
    }
  }
  if (target == self_ || target >= peers_.size()) {
    return;
  }
  Peer& p = peers_[target];
  if (!p.probing || p.probe_id != ack.probe_id()) {
    return;
  }
  if (ack.negative()) {
    ++p.nacks_received;
    return;
  }
  p.probing = false;
  p.last_heard = std::max(p.last_heard, now);
  local_health_.better(now);
  if (target != sender) {
    selfReport(now, target, ack.incarnation(), fromWire(ack.health()));
  }
}

void Membership::handleIndirectProbe(TimePoint now, uint32_t sender, uint32_t link,
                                     const wire::IndirectProbe& probe) {
  heardFrom(now, sender, link);
  for (const wire::MemberUpdate& u : probe.updates()) {
    applyUpdate(now, u);
  }
  const uint32_t target = probe.target();
  if (target == self_ || target == sender || probe.link() >= links_ || relays_.size() >= 256) {
    return;
  }
  Relay r;
  r.requester = sender;
  r.reply_link = link;
  r.requester_probe = probe.probe_id();
  r.target = target;
  r.link = probe.link();
  r.probe_id = rng_.next() | 1;
  // Answer (with a nack) well before the requester gives up, so the nack arrives in time.
  r.deadline = now + probeTimeout() * 3 / 5;
  wire::Envelope env;
  *env.mutable_heartbeat() = ownHeartbeat(r.link, r.probe_id);
  ++counters_.probes_sent;
  send(target, r.link, std::move(env));
  relays_.push_back(r);
}

void Membership::handleStateExchange(TimePoint now, uint32_t sender, uint32_t link,
                                     const wire::StateExchange& state) {
  heardFrom(now, sender, link);
  uint64_t claimed = 0;
  bool has_own = false;
  for (const wire::MemberUpdate& u : state.members()) {
    if (u.node() == sender && u.state() == wire::MEMBER_ALIVE) {
      selfReport(now, sender, u.incarnation(), fromWire(u.health()));
      mergeDrain(now, sender, fromWire(u.drain()));
      claimed = u.incarnation();
      has_own = true;
    } else {
      applyUpdate(now, u);
    }
  }
  if (!state.reply_wanted()) {
    joined_ = true;
    if (has_own) {
      maybeCorrect(now, sender, link, claimed);
    }
    return;
  }
  sendStateExchange(sender, link, false);
}

void Membership::recordForeign(TimePoint now, std::span<const uint8_t> bytes,
                               const Endpoint& from) {
  // openPacket() verified the MAC before it compared fingerprints, so the envelope is
  // authentic; parse it again only to learn which fingerprint the peer runs.
  wire::Packet packet;
  wire::Envelope env;
  uint64_t fingerprint = 0;
  if (packet.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) &&
      env.ParseFromString(packet.envelope())) {
    fingerprint = env.cluster();
  }
  for (ForeignPeer& f : foreign_) {
    if (f.from == from && f.fingerprint == fingerprint) {
      ++f.packets;
      f.last_seen = now;
      return;
    }
  }
  if (foreign_.size() >= kMaxForeignPeers) {
    return;
  }
  foreign_.push_back(ForeignPeer{from, fingerprint, 1, now});
  Event e = makeEvent(Event::Kind::ForeignPeerSeen, 0);
  e.foreign = foreign_.back();
  out_.events.push_back(e);
}

// ---- state --------------------------------------------------------------------------------

void Membership::heardFrom(TimePoint now, uint32_t node, uint32_t link) {
  MemberView& m = view_.members[node];
  Peer& p = peers_[node];
  LinkView& l = m.links[link];
  l.last_heard = now;
  l.heard = true;
  if (!l.up) {
    l.up = true;
    out_.events.push_back(makeEvent(Event::Kind::LinkChanged, node, link, m.state, true));
  }
  p.last_heard = now;
  if (p.probing && m.up()) {
    p.probing = false;  // it spoke: the probe is answered
  }
}

void Membership::selfReport(TimePoint now, uint32_t node, uint64_t incarnation,
                            const NodeHealth& health) {
  const MemberView& m = view_.members[node];
  if (m.state == MemberState::Unknown || incarnation > m.incarnation) {
    setHealth(node, health);
    setState(now, node, MemberState::Alive, incarnation);
  } else if (incarnation == m.incarnation && m.state == MemberState::Alive &&
             !(m.health == health)) {
    setHealth(node, health);
    queueGossip(node);
  }
}

void Membership::applyUpdate(TimePoint now, const wire::MemberUpdate& u) {
  const uint32_t node = u.node();
  if (node >= view_.members.size()) {
    return;
  }
  if (u.has_drain()) {
    mergeDrain(now, node, fromWire(u.drain()));
  }
  const MemberState state = fromWire(u.state());
  if (state == MemberState::Unknown) {
    return;  // an update about drain only
  }
  const uint64_t inc = u.incarnation();
  if (node == self_) {
    applyAboutSelf(now, state, inc);
    adoptHoldDown(now, node, u.hold_down_ms());
    return;
  }
  const MemberView& m = view_.members[node];
  if (state == MemberState::Suspect && inc > m.incarnation) {
    peers_[node].accusers = 0;  // accusations of an older incarnation say nothing of this one
  }
  bool accept = false;
  switch (state) {
    case MemberState::Alive:
      accept = m.state == MemberState::Unknown || inc > m.incarnation;
      break;
    case MemberState::Suspect:
      accept = inc > m.incarnation || (inc == m.incarnation && m.state == MemberState::Alive) ||
               m.state == MemberState::Unknown;
      break;
    case MemberState::Dead:
      accept = inc > m.incarnation ||
               (inc == m.incarnation &&
                (m.state == MemberState::Alive || m.state == MemberState::Suspect)) ||
               m.state == MemberState::Unknown;
      break;
    case MemberState::Left:
      accept = m.state != MemberState::Left && inc >= m.incarnation;
      break;
    case MemberState::Unknown:
      break;
  }
  if (accept) {
    if (inc > m.incarnation || m.state == MemberState::Unknown) {
      setHealth(node, fromWire(u.health()));
    }
    setState(now, node, state, inc);
  }
  if (state == MemberState::Suspect && m.state == MemberState::Suspect && inc == m.incarnation) {
    mergeAccusers(node, u.accusers());
  }
  adoptHoldDown(now, node, u.hold_down_ms());
}

void Membership::adoptHoldDown(TimePoint now, uint32_t node, uint32_t hold_down_ms) {
  MemberView& m = view_.members[node];
  if (hold_down_ms == 0 || m.held_down || !m.up()) {
    return;
  }
  // The tail of a hold-down this node has just ended itself (the sender's ended a moment
  // later) is not a new one: taking it would hold the member out again, and disagree.
  const TimePoint ended = peers_[node].hold_ended;
  if (ended != TimePoint{} && now - ended < def_.timing.flap_hold_down) {
    return;
  }
  // Another member saw deaths of this one that this node did not (it restarted since, or the
  // member is this node itself): hold it out as long as they do, never longer than a
  // hold-down.
  const Duration left =
      std::min<Duration>(std::chrono::milliseconds(hold_down_ms), def_.timing.flap_hold_down);
  m.held_down = true;
  m.held_until = now + left;
  out_.events.push_back(makeEvent(Event::Kind::HoldDownStarted, node));
}

void Membership::applyAboutSelf(TimePoint now, MemberState state, uint64_t inc) {
  MemberView& me = view_.members[self_];
  const bool accused =
      (state == MemberState::Suspect || state == MemberState::Dead || state == MemberState::Left) &&
      inc >= me.incarnation;
  if (!accused && inc <= me.incarnation) {
    return;
  }
  // Someone believes this node is suspect, dead or gone, or holds a newer incarnation of it
  // (a previous run's): raise the incarnation past it so the cluster takes this one.
  me.incarnation = inc + 1;
  if (accused) {
    ++counters_.refutations;
    out_.events.push_back(makeEvent(Event::Kind::Refuted, self_, 0, state));
    local_health_.worse(now);
    // Declared dead by a node that this one could not reach: counted against this node only
    // if it was itself in a minority lately (it was the one cut off), not when a cut-off
    // node's view of it arrives after the partition heals.
    if (state == MemberState::Dead && last_minority_at_ != TimePoint{} &&
        now - last_minority_at_ <= suspectAfter() + suspicionTimeout()) {
      self_flap_.died(now);
      const TimePoint until = self_flap_.returned(now);
      if (until != TimePoint{}) {
        me.held_down = true;
        me.held_until = until;
        out_.events.push_back(makeEvent(Event::Kind::HoldDownStarted, self_));
      }
    }
  }
  queueGossip(self_);
  broadcast_pending_ = true;
}

void Membership::mergeDrain(TimePoint now, uint32_t node, const DrainState& drain) {
  (void)now;
  lamport_ = std::max(lamport_, drain.clock);
  MemberView& m = view_.members[node];
  if (drain.clock == 0 || !drain.newerThan(m.drain)) {
    return;
  }
  m.drain = drain;
  queueGossip(node);
  // Persist every accepted write (the clock matters even when the mode did not change).
  out_.events.push_back(makeEvent(Event::Kind::DrainChanged, node, 0, m.state));
}

void Membership::setHealth(uint32_t node, const NodeHealth& health) {
  MemberView& m = view_.members[node];
  if (m.health == health) {
    return;
  }
  m.health = health;
  out_.events.push_back(makeEvent(Event::Kind::HealthChanged, node, 0, m.state));
}

void Membership::setState(TimePoint now, uint32_t node, MemberState state, uint64_t incarnation) {
  MemberView& m = view_.members[node];
  Peer& p = peers_[node];
  const MemberState old = m.state;
  m.incarnation = incarnation;
  m.state = state;
  queueGossip(node);
  if (old == state) {
    return;
  }
  out_.events.push_back(makeEvent(Event::Kind::MemberChanged, node, 0, state));
  switch (state) {
    case MemberState::Alive: {
      p.probing = false;
      p.last_heard = std::max(p.last_heard, now);
      if (old == MemberState::Dead || old == MemberState::Left || old == MemberState::Unknown) {
        // What it held before it went away says nothing about now: until its next heartbeat
        // its claims are unknown (membership/ownership.h takes nothing new meanwhile).
        m.claims_known = false;
        if (old == MemberState::Dead) {
          // A death this node saw from a minority says as much about this node's links as
          // about the member: not counted.
          if (p.died_at != TimePoint{} && last_minority_at_ < p.died_at) {
            p.flap.died(p.died_at);
          }
          p.died_at = TimePoint{};
          const TimePoint until = p.flap.returned(now);
          if (until != TimePoint{}) {
            m.held_down = true;
            m.held_until = until;
            out_.events.push_back(makeEvent(Event::Kind::HoldDownStarted, node));
          }
        }
        // A member that comes back may have missed drain writes, and may know some this
        // partition missed: exchange full state with it.
        if (old != MemberState::Unknown && links_ > 0) {
          sendStateExchange(node, static_cast<uint32_t>(rng_.below(links_)), true);
        }
      }
      break;
    }
    case MemberState::Suspect:
      // Learned from another member: its own window starts now (accuse() moves the start
      // back to its own probe when this node is the one that found the silence).
      p.suspected_at = now;
      p.accusers = 0;
      updateSuspicionDeadline(node);
      break;
    case MemberState::Dead:
      p.probing = false;
      // Counted by flap damping (at its return) only if this node itself stopped hearing it:
      // a death learned by gossip while it still heard the member is another node's view.
      p.died_at = now - p.last_heard >= def_.timing.suspect_after ? now : TimePoint{};
      break;
    case MemberState::Left:
    case MemberState::Unknown:
      p.probing = false;
      break;
  }
}

void Membership::maybeCorrect(TimePoint now, uint32_t node, uint32_t link, uint64_t claimed) {
  const MemberView& m = view_.members[node];
  Peer& p = peers_[node];
  const bool stale =
      m.incarnation > claimed ||
      (m.incarnation >= claimed && (m.state == MemberState::Suspect || isDown(m.state)));
  if (!stale || now < p.next_correction) {
    return;
  }
  // The member speaks but this node holds a newer or worse record of it: tell it, so it
  // refutes with a higher incarnation.
  p.next_correction = now + def_.timing.heartbeat_interval / 2;
  wire::Envelope env;
  wire::Heartbeat hb = ownHeartbeat(link, 0);
  if (std::none_of(hb.updates().begin(), hb.updates().end(),
                   [&](const wire::MemberUpdate& u) { return u.node() == node; })) {
    *hb.add_updates() = record(node);
  }
  *env.mutable_heartbeat() = std::move(hb);
  send(node, link, std::move(env));
}

void Membership::queueGossip(uint32_t node) {
  peers_[node].gossip_left = kGossipRounds;
}

void Membership::accuse(uint32_t node) {
  Peer& p = peers_[node];
  p.accusers |= uint64_t{1} << self_;
  p.suspected_at = std::min(p.suspected_at, p.probe_started);
  updateSuspicionDeadline(node);
  queueGossip(node);
  // At once, so that the others count this accusation while their own windows run.
  broadcast_pending_ = true;
}

void Membership::mergeAccusers(uint32_t node, uint64_t accusers) {
  Peer& p = peers_[node];
  const uint64_t valid =
      view_.members.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << view_.members.size()) - 1;
  const uint64_t added = accusers & valid & ~p.accusers & ~(uint64_t{1} << node);
  if (added == 0) {
    return;
  }
  p.accusers |= added;
  updateSuspicionDeadline(node);
  queueGossip(node);
}

void Membership::updateSuspicionDeadline(uint32_t node) {
  Peer& p = peers_[node];
  p.suspicion_deadline = p.suspected_at + suspicionTimeout(node);
}

// ---- sending ------------------------------------------------------------------------------

void Membership::startProbe(TimePoint now, uint32_t node) {
  Peer& p = peers_[node];
  p.probing = true;
  p.probe_id = rng_.next() | 1;
  p.probe_started = now;
  p.probe_deadline = now + probeTimeout();
  p.nacks_expected = 0;
  p.nacks_received = 0;
  for (uint32_t l = 0; l < links_; ++l) {
    wire::Envelope env;
    *env.mutable_heartbeat() = ownHeartbeat(l, p.probe_id);
    ++counters_.probes_sent;
    send(node, l, std::move(env));
  }
  // Ask k other members at once rather than after the direct probe timed out: detection must
  // fit in suspect_after + suspicion_timeout, and a probe only runs after a whole
  // suspect_after of silence, which is rare.
  std::vector<uint32_t> helpers;
  for (uint32_t n = 0; n < view_.members.size(); ++n) {
    if (n != self_ && n != node && view_.members[n].state == MemberState::Alive) {
      helpers.push_back(n);
    }
  }
  const std::size_t k = std::min<std::size_t>(def_.timing.indirect_probes, helpers.size());
  for (std::size_t i = 0; i < k; ++i) {
    std::swap(helpers[i], helpers[i + rng_.below(helpers.size() - i)]);
    for (uint32_t l = 0; l < links_; ++l) {
      wire::Envelope env;
      wire::IndirectProbe* ip = env.mutable_indirect_probe();
      ip->set_probe_id(p.probe_id);
      ip->set_target(node);
      ip->set_link(l);
      addGossip(ip->mutable_updates());
      ++counters_.indirect_probes_sent;
      ++p.nacks_expected;
      send(helpers[i], l, std::move(env));
    }
  }
}

void Membership::heartbeatRound(TimePoint now, bool scheduled) {
  wire::Envelope env;
  wire::Heartbeat* base = env.mutable_heartbeat();
  *base = ownHeartbeat(0, 0);
  // The same words for every peer: signed once per link and sent to all of them, except the
  // peers a backup link need not reach in this round.
  const uint32_t peers = static_cast<uint32_t>(view_.members.size()) - 1;
  const bool full_round = !scheduled || rounds_ % kBackupRoundDivisor == 0;
  for (uint32_t l = 0; l < links_ && peers > 0; ++l) {
    uint64_t skip = 0;
    if (!full_round && l > 0) {
      for (uint32_t n = 0; n < view_.members.size(); ++n) {
        if (n != self_ && lowerLinkConfirmed(now, n, l)) {
          skip |= uint64_t{1} << n;
        }
      }
    }
    const auto skipped = static_cast<uint32_t>(std::popcount(skip));
    counters_.backup_heartbeats_skipped += skipped;
    if (skipped == peers) {
      continue;
    }
    base->set_link(l);
    std::string bytes = sealer_.sealToAll(keys_, env);
    counters_.heartbeats_sent += peers - skipped;
    counters_.packets_sent += peers - skipped;
    counters_.bytes_sent += (peers - skipped) * bytes.size();
    out_.send.push_back(Datagram{l, kAllPeers, std::move(bytes), skip});
  }
  for (const wire::MemberUpdate& u : base->updates()) {
    Peer& p = peers_[u.node()];
    if (p.gossip_left > 0) {
      --p.gossip_left;
    }
  }
}

bool Membership::lowerLinkConfirmed(TimePoint now, uint32_t node, uint32_t link) const {
  // 1.5 intervals: a heartbeat every interval, plus half of one for a late wake-up on either
  // side. One lost heartbeat on the lower link puts one round back on the backup link.
  const Duration fresh = def_.timing.heartbeat_interval * 3 / 2;
  const Peer& p = peers_[node];
  if (p.heard_me_at == TimePoint{} || now - p.heard_me_at > fresh) {
    return false;  // no word from the peer lately on how it hears this node
  }
  const MemberView& m = view_.members[node];
  for (uint32_t l = 0; l < link && l < 8 && l < m.links.size(); ++l) {
    const LinkView& lv = m.links[l];
    if (((p.heard_me >> l) & 1) != 0 && lv.heard && now - lv.last_heard <= fresh) {
      return true;
    }
  }
  return false;
}

TimePoint Membership::linkDownAt(uint32_t node, uint32_t link) const {
  const std::vector<LinkView>& links = view_.members[node].links;
  const Duration silence = suspectAfter();
  const TimePoint last = links[link].last_heard;
  if (link == 0) {
    return last + silence;
  }
  // The peer sends every round on this link again once it has not heard this node on a lower
  // link for 1.5 intervals (lowerLinkConfirmed()), at its next round: within 2.5 intervals of
  // the last packet that arrived here on a lower link, for a cut of both directions.
  TimePoint lower{};
  for (uint32_t l = 0; l < link; ++l) {
    if (links[l].heard) {
      lower = std::max(lower, links[l].last_heard);
    }
  }
  const Duration interval = def_.timing.heartbeat_interval;
  const TimePoint reduced_rate_ends = lower == TimePoint{} ? lower : lower + silence + 2 * interval;
  // At the reduced rate the same number of heartbeats may be lost as at the full rate: the
  // silence limit stretched by the divisor.
  return std::min(last + kBackupRoundDivisor * silence, std::max(last + silence, reduced_rate_ends));
}

void Membership::sendStateExchange(uint32_t node, uint32_t link, bool reply_wanted) {
  // Split so that each packet stays under kMaxPacketSize even at 64 nodes.
  const uint32_t count = static_cast<uint32_t>(view_.members.size());
  for (uint32_t first = 0; first < count; first += kMaxUpdatesPerPacket) {
    wire::Envelope env;
    wire::StateExchange* se = env.mutable_state_exchange();
    se->set_reply_wanted(reply_wanted);
    const uint32_t last = std::min<uint32_t>(count, first + kMaxUpdatesPerPacket);
    for (uint32_t n = first; n < last; ++n) {
      *se->add_members() = record(n);
    }
    ++counters_.state_exchanges_sent;
    send(node, link, std::move(env));
  }
}

void Membership::sendJoin() {
  for (uint32_t n = 0; n < view_.members.size(); ++n) {
    if (n == self_) {
      continue;
    }
    for (uint32_t l = 0; l < links_; ++l) {
      sendStateExchange(n, l, true);
    }
  }
}

wire::MemberUpdate Membership::record(uint32_t node) const {
  const MemberView& m = view_.members[node];
  wire::MemberUpdate u;
  u.set_node(node);
  u.set_incarnation(m.incarnation);
  u.set_state(toWire(m.state));
  if (m.drain.clock != 0) {
    wire::DrainState* d = u.mutable_drain();
    d->set_mode(toWire(m.drain.mode));
    d->set_clock(m.drain.clock);
    d->set_writer(m.drain.writer);
  }
  if (m.health.status != HealthStatus::Unstated || m.health.failing_checks != 0) {
    toWire(m.health, u.mutable_health());
  }
  if (m.state == MemberState::Suspect) {
    u.set_accusers(peers_[node].accusers);
  }
  if (m.held_down && m.held_until > now_) {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(m.held_until - now_).count();
    u.set_hold_down_ms(static_cast<uint32_t>(std::min<int64_t>(ms, UINT32_MAX)));
  }
  return u;
}

void Membership::addGossip(google::protobuf::RepeatedPtrField<wire::MemberUpdate>* updates) const {
  // The freshest changes first (most rounds left), so that a burst larger than one packet
  // sends every change at least once before repeating any.
  std::vector<uint32_t> pending;
  for (uint32_t n = 0; n < peers_.size(); ++n) {
    if (peers_[n].gossip_left > 0) {
      pending.push_back(n);
    }
  }
  std::stable_sort(pending.begin(), pending.end(), [&](uint32_t a, uint32_t b) {
    return peers_[a].gossip_left > peers_[b].gossip_left;
  });
  if (pending.size() > kMaxUpdatesPerPacket) {
    pending.resize(kMaxUpdatesPerPacket);
  }
  for (uint32_t n : pending) {
    *updates->Add() = record(n);
  }
}

wire::Heartbeat Membership::ownHeartbeat(uint32_t link, uint64_t probe_id) const {
  wire::Heartbeat hb;
  hb.set_link(link);
  hb.set_probe_id(probe_id);
  const MemberView& me = view_.members[self_];
  hb.set_incarnation(me.incarnation);
  if (me.health.status != HealthStatus::Unstated || me.health.failing_checks != 0) {
    toWire(me.health, hb.mutable_health());
  }
  addGossip(hb.mutable_updates());
  for (const BucketSet& c : me.claims) {
    hb.add_claims(c.toBytes());
  }
  hb.set_view_digest(me.view_digest);
  if (!me.releasing.empty()) {
    for (const BucketSet& r : me.releasing) {
      hb.add_releasing(r.toBytes());
    }
    // Rounded up from the sealing time as sent (rounded down): a peer must never start
    // before this node stops.
    const auto sealed = std::chrono::floor<std::chrono::microseconds>(now_.time_since_epoch());
    const auto left =
        std::chrono::ceil<std::chrono::microseconds>(me.release_at - TimePoint(sealed));
    hb.set_release_in_us(static_cast<uint32_t>(
        std::clamp<int64_t>(left.count(), 0, std::numeric_limits<uint32_t>::max())));
    hb.set_release_serial(release_serial_);
  }
  hb.set_leaving(me.leaving);
  hb.set_sent_us(static_cast<uint64_t>(
      std::chrono::floor<std::chrono::microseconds>(now_.time_since_epoch()).count()));
  if (links_ > 1) {
    // How this node hears each peer: the peers decide from it whether their backup links may
    // run at the reduced rate (see heartbeatRound()).
    const Duration fresh = def_.timing.heartbeat_interval * 3 / 2;
    std::string heard(view_.members.size(), '\0');
    for (uint32_t n = 0; n < view_.members.size(); ++n) {
      const std::vector<LinkView>& links = view_.members[n].links;
      uint8_t bits = 0;
      for (uint32_t l = 0; l < links.size() && l < 8; ++l) {
        if (links[l].heard && now_ - links[l].last_heard <= fresh) {
          bits = static_cast<uint8_t>(bits | (1U << l));
        }
      }
      heard[n] = static_cast<char>(bits);
    }
    while (!heard.empty() && heard.back() == '\0') {
      heard.pop_back();
    }
    hb.set_heard(std::move(heard));
  }
  return hb;
}

void Membership::send(uint32_t node, uint32_t link, wire::Envelope envelope) {
  std::string bytes = sealer_.seal(keys_, node, std::move(envelope));
  ++counters_.packets_sent;
  counters_.bytes_sent += bytes.size();
  out_.send.push_back(Datagram{link, node, std::move(bytes)});
}

}  // namespace shoal
