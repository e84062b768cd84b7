#include "membership/ownership.h"

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

}  // namespace

uint32_t quorumCount(const View& view, TimePoint now, Duration window) {
  uint32_t n = 0;
  for (std::size_t i = 0; i < view.members.size(); ++i) {
    const MemberView& m = view.members[i];
    if (i == view.self) {
      ++n;
      continue;
    }
    if (m.state != MemberState::Alive) {
      continue;
    }
    n += heardWithin(m, now, window) ? 1 : 0;
  }
  return n;
}

bool hasQuorum(PartitionPolicy policy, uint32_t alive, uint32_t configured) {
  if (policy == PartitionPolicy::ServeAll) {
    return true;
  }
  return alive * 2 > configured;
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
  const auto self = static_cast<int16_t>(view.self);
  // A peer that is up but whose claims are not yet known may hold anything: take nothing new
  // until its first heartbeat says what it holds.
  bool claims_unknown = false;
  for (std::size_t m = 0; m < view.members.size(); ++m) {
    claims_unknown = claims_unknown || (m != view.self && view.members[m].up() &&
                                        !view.members[m].claims_known);
  }
  for (std::size_t s = 0; s < def.services.size(); ++s) {
    const Service& svc = def.services[s];
    d.targets.push_back(computeOwners(def, svc, d.serving_mask));
    BucketSet hold(svc.buckets);
    if (d.quorum && in.settled) {
      const std::vector<int16_t>& target = d.targets.back();
      const BucketSet* held = (in.held != nullptr && s < in.held->size()) ? &(*in.held)[s] : nullptr;
      for (uint32_t b = 0; b < svc.buckets; ++b) {
        if (target[b] != self) {
          continue;
        }
        if (held != nullptr && held->has(b)) {
          hold.set(b);
          continue;
        }
        bool claimed = false;
        for (std::size_t m = 0; m < view.members.size() && !claimed; ++m) {
          const MemberView& peer = view.members[m];
          if (m == view.self || !peer.up() || s >= peer.claims.size()) {
            continue;
          }
          claimed = peer.claims[s].has(b);
        }
        if (claimed || claims_unknown) {
          ++d.waiting;
        } else {
          hold.set(b);
        }
      }
    }
    d.hold.push_back(std::move(hold));
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
  f.claims = m.claims;
  return f;
}

bool OwnershipInputs::update(const OwnershipInput& in) {
  const View& view = *in.view;
  static const std::vector<BucketSet> kNothingHeld;
  const std::vector<BucketSet>& held = in.held != nullptr ? *in.held : kNothingHeld;
  // Compared in place first: the common case (nothing changed) allocates nothing.
  bool same = recorded_ && self_ == view.self && settled_ == in.settled && held_ == held &&
              members_.size() == view.members.size();
  for (std::size_t i = 0; same && i < view.members.size(); ++i) {
    const MemberView& m = view.members[i];
    const Member& r = members_[i];
    same = r.state == m.state && r.held_down == m.held_down && r.drain == m.drain.mode &&
           r.health == m.health.status && r.claims_known == m.claims_known &&
           r.recent == heardWithin(m, in.now, in.quorum_window) && r.claims == m.claims;
  }
  if (same) {
    return false;
  }
  recorded_ = true;
  self_ = view.self;
  settled_ = in.settled;
  held_ = held;
  members_.clear();
  for (const MemberView& m : view.members) {
    members_.push_back(factsOf(m, in.now, in.quorum_window));
  }
  return true;
}

}  // namespace shoal
