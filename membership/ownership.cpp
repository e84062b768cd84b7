#include "membership/ownership.h"

#include <algorithm>
#include <optional>

#include "core/rebalance.h"

namespace shoal {

uint64_t viewDigest(const View& view) {
  // FNV-1a over one byte of state per member; not cryptographic, only a comparison.
  uint64_t h = 1469598103934665603ull;
  const auto mix = [&h](uint8_t byte) {
    h ^= byte;
    h *= 1099511628211ull;
  };
  for (const MemberView& m : view.members) {
    mix(static_cast<uint8_t>(m.state == MemberState::Alive ? 1 : m.up() ? 2 : 0));
    mix(static_cast<uint8_t>(m.serving() ? 1 : 0));
    mix(static_cast<uint8_t>(m.drain.mode));
  }
  return h;
}

namespace {

// Heard on some link within `window` before `now` (always, when `window` is 0).
bool heardWithin(const MemberView& m, TimePoint now, Duration window) {
  bool recent = window == Duration::zero();
  for (const LinkView& l : m.links) {
    recent = recent || (l.heard && now - l.last_heard <= window);
  }
  return recent;
}

// Declared dead by gossip from a node that could not reach it, while this node hears it
// directly (a partition heals): it is there, and may be serving what it claims.
bool deadButHeard(const MemberView& m, TimePoint now, Duration window) {
  return m.state == MemberState::Dead && window > Duration::zero() && heardWithin(m, now, window);
}

}  // namespace

uint32_t quorumCount(const View& view, TimePoint now, Duration window) {
  uint32_t n = 0;
  for (std::size_t i = 0; i < view.members.size(); ++i) {
    const MemberView& m = view.members[i];
    if (i == view.self) {
      ++n;
      continue;
    }
    if (m.state == MemberState::Alive) {
      n += heardWithin(m, now, window) ? 1 : 0;
    } else if (deadButHeard(m, now, window)) {
      ++n;
    }
  }
  return n;
}

bool hasQuorum(PartitionPolicy policy, uint32_t alive, uint32_t configured) {
  if (policy == PartitionPolicy::ServeAll) {
    return true;
  }
  return alive * 2 > configured;
}

bool TimedHold::empty() const {
  for (const BucketSet& r : releasing) {
    if (!r.empty()) {
      return false;
    }
  }
  for (const auto& t : taking) {
    if (!t.empty()) {
      return false;
    }
  }
  return true;
}

OwnershipDecision decideOwnership(const OwnershipInput& in) {
  const ClusterDefinition& def = *in.def;
  const View& view = *in.view;
  OwnershipDecision d;
  const auto configured = static_cast<uint32_t>(def.nodes.size());
  d.quorum = hasQuorum(def.partition_policy, quorumCount(view, in.now, in.quorum_window),
                       configured);
  for (std::size_t i = 0; i < view.members.size() && i < 32; ++i) {
    if (view.members[i].serving()) {
      d.serving_mask |= 1u << i;
    }
  }
  // Flap damping keeps clients from being moved back and forth; it is never worth serving
  // nothing. When every node that could serve is held down (repeated partitions make each
  // side see the others die), they serve as if none were.
  if (d.serving_mask == 0) {
    for (std::size_t i = 0; i < view.members.size() && i < 32; ++i) {
      if (view.members[i].servingUnlessHeld()) {
        d.serving_mask |= 1u << i;
      }
    }
    d.holds_ignored = d.serving_mask != 0;
  }
  const auto self = static_cast<int16_t>(view.self);
  // A peer that is up but whose claims are not yet known may hold anything: take nothing new
  // until its first heartbeat says what it holds.
  bool claims_unknown = false;
  for (std::size_t m = 0; m < view.members.size(); ++m) {
    claims_unknown = claims_unknown || (m != view.self && view.members[m].up() &&
                                        !view.members[m].claims_known);
  }
  // Whose claims count: the peers that are up, and those declared dead that this node still
  // hears (their claims hold until they have been silent for the quorum window).
  std::vector<char> claims_hold(view.members.size(), 0);
  for (std::size_t m = 0; m < view.members.size(); ++m) {
    const MemberView& peer = view.members[m];
    claims_hold[m] = m != view.self && (peer.up() || deadButHeard(peer, in.now, in.quorum_window));
  }
  static const TimedHold kNothingTimed;
  const TimedHold& was = in.timed != nullptr ? *in.timed : kNothingTimed;
  const bool timed = in.handoff_lead > Duration::zero();
  // A release still running: it ends when announced, and new releases join it.
  bool release_running = false;
  if (was.release_at > in.now) {
    for (const BucketSet& r : was.releasing) {
      release_running = release_running || !r.empty();
    }
  }
  const TimePoint release_at = release_running ? was.release_at : in.now + in.handoff_lead;
  // Joining a release that ends very soon would leave the taker too little time to load its
  // side: such releases wait for the next instant, the bucket held meanwhile.
  const bool defer_releases = release_running && was.release_at - in.now < in.handoff_lead / 2;
  bool any_releasing = false;
  for (std::size_t s = 0; s < def.services.size(); ++s) {
    const Service& svc = def.services[s];
    d.targets.push_back(computeOwners(def, svc, d.serving_mask));
    BucketSet hold(svc.buckets);
    BucketSet releasing(svc.buckets);
    std::map<uint32_t, TimePoint> taking;
    if (d.quorum && in.settled) {
      const std::vector<int16_t>& target = d.targets.back();
      const BucketSet* held = (in.held != nullptr && s < in.held->size()) ? &(*in.held)[s] : nullptr;
      const BucketSet* was_releasing =
          release_running && s < was.releasing.size() ? &was.releasing[s] : nullptr;
      const std::map<uint32_t, TimePoint>* was_taking =
          s < was.taking.size() ? &was.taking[s] : nullptr;
      for (uint32_t b = 0; b < svc.buckets; ++b) {
        const bool mine = target[b] == self;
        if (was_releasing != nullptr && was_releasing->has(b)) {
          releasing.set(b);  // announced: answered until the instant, even if ours again
          continue;
        }
        std::optional<TimePoint> pending;
        if (was_taking != nullptr) {
          if (auto t = was_taking->find(b); t != was_taking->end()) {
            pending = t->second;
          }
        }
        // A take whose instant has come is answered like any held bucket.
        if ((held != nullptr && held->has(b)) || (pending && *pending <= in.now)) {
          if (mine) {
            hold.set(b);
          } else if (timed && target[b] >= 0 &&
                     view.members[static_cast<std::size_t>(target[b])].up()) {
            // A planned move: hand it over at the instant (or at the next one).
            (defer_releases ? hold : releasing).set(b);
          }
          continue;  // (otherwise let go at once)
        }
        if (!mine) {
          continue;  // (a take scheduled before it stopped being ours: cancelled)
        }
        // Nobody claims it: take it now. Every claimer hands it over: take it from the latest
        // of their stops on (an earlier bound of the same stops, if one came, moves a
        // scheduled take earlier: every bound is safe).
        bool claimed = false;
        bool all_releasing = true;
        bool lower_claims = false;  // a lower-numbered node claims it, not handing it over
        TimePoint from{};
        for (std::size_t m = 0; m < view.members.size(); ++m) {
          const MemberView& peer = view.members[m];
          if (claims_hold[m] == 0 || s >= peer.claims.size() || !peer.claims[s].has(b)) {
            continue;
          }
          claimed = true;
          if (peer.releases(s, b)) {
            from = std::max(from, peer.release_at);
          } else {
            all_releasing = false;
            lower_claims = lower_claims || m < view.self;
          }
        }
        // Two nodes whose views differ may both have scheduled it: the higher-numbered one
        // gives way (a scheduled take is not answered yet: cancelling it is always safe).
        std::optional<TimePoint> start = lower_claims ? std::nullopt : pending;
        if (!claims_unknown && (!claimed || (timed && all_releasing))) {
          const TimePoint bound = claimed ? from + kTakeMargin + in.take_margin : in.now;
          start = start ? std::min(*start, bound) : bound;
        }
        if (!start) {
          ++d.waiting;
        } else if (*start <= in.now) {
          hold.set(b);
        } else {
          taking.emplace(b, *start);
        }
      }
    }
    for (const auto& [b, at] : taking) {
      d.next_change = std::min(d.next_change, at);
    }
    any_releasing = any_releasing || !releasing.empty();
    d.hold.push_back(std::move(hold));
    d.timed.releasing.push_back(std::move(releasing));
    d.timed.taking.push_back(std::move(taking));
  }
  if (any_releasing) {
    d.timed.release_at = release_at;
    d.next_change = std::min(d.next_change, release_at);
  }
  if (defer_releases) {
    d.next_change = std::min(d.next_change, was.release_at);  // the deferred ones, then
  }
  return d;
}

OwnershipInputs::Member OwnershipInputs::factsOf(const MemberView& m, TimePoint now,
                                                 Duration window) {
  Member f;
  f.state = m.state;
  f.held_down = m.held_down;
  f.drain = m.drain.mode;
  f.health = m.health.status;
  f.claims_known = m.claims_known;
  f.recent = heardWithin(m, now, window);
  f.leaving = m.leaving;
  f.claims = m.claims;
  f.releasing = m.releasing;
  f.release_at = m.release_at;
  return f;
}

bool OwnershipInputs::update(const OwnershipInput& in) {
  const View& view = *in.view;
  static const std::vector<BucketSet> kNothingHeld;
  const std::vector<BucketSet>& held = in.held != nullptr ? *in.held : kNothingHeld;
  // Compared in place first: the common case (nothing changed) allocates nothing.
  static const TimedHold kNothingTimed;
  const TimedHold& timed = in.timed != nullptr ? *in.timed : kNothingTimed;
  bool same = recorded_ && self_ == view.self && settled_ == in.settled && held_ == held &&
              timed_ == timed && handoff_lead_ == in.handoff_lead &&
              members_.size() == view.members.size();
  for (std::size_t i = 0; same && i < view.members.size(); ++i) {
    const MemberView& m = view.members[i];
    const Member& r = members_[i];
    same = r.state == m.state && r.held_down == m.held_down && r.drain == m.drain.mode &&
           r.health == m.health.status && r.claims_known == m.claims_known &&
           r.recent == heardWithin(m, in.now, in.quorum_window) && r.leaving == m.leaving &&
           r.claims == m.claims && r.releasing == m.releasing && r.release_at == m.release_at;
  }
  if (same) {
    return false;
  }
  recorded_ = true;
  self_ = view.self;
  settled_ = in.settled;
  held_ = held;
  timed_ = timed;
  handoff_lead_ = in.handoff_lead;
  members_.clear();
  for (const MemberView& m : view.members) {
    members_.push_back(factsOf(m, in.now, in.quorum_window));
  }
  return true;
}

}  // namespace shoal
