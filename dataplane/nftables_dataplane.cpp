#include "dataplane/nftables_dataplane.h"

#include <linux/netfilter.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "dataplane/lease.h"

namespace shoal::dataplane {
namespace {

// A lease with at least this much left must have its element in the kernel: the kernel's
// timer slack and a millisecond of rounding below it.
constexpr Millis kLiveCheckMargin = kKernelTimerSlack + Millis{1};

bool sortedUniqueBelow(const std::vector<uint32_t>& v, uint32_t limit) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] >= limit || (i > 0 && v[i] <= v[i - 1]))
      return false;
  }
  return true;
}

// Everything about a service except its bucket sets.
bool sameService(const Service& a, const Service& b) {
  return a.name == b.name && a.vip == b.vip && a.interface == b.interface &&
         a.cluster_mac == b.cluster_mac && a.hash == b.hash && a.buckets == b.buckets &&
         a.seed == b.seed;
}

bool sameStructure(const DesiredState& a, const DesiredState& b) {
  // Switching a lease on or off rewrites the live element (with or without a timeout).
  if (a.lease.has_value() != b.lease.has_value())
    return false;
  if (a.services.size() != b.services.size())
    return false;
  for (std::size_t i = 0; i < a.services.size(); ++i) {
    if (!sameService(a.services[i].service, b.services[i].service))
      return false;
  }
  return true;
}

std::string describe(const Service& s) {
  return "service '" + s.name + "'";
}

// The listed live set against what was written: equal, or with a lease also empty (the
// element expired; the renewal brings it back).
bool liveMatches(const std::vector<uint32_t>& listed, bool leased) {
  return listed == std::vector<uint32_t>{kLiveMark} || (leased && listed.empty());
}

}  // namespace

Status validateDesiredState(const DesiredState& desired, uint32_t max_buckets) {
  if (desired.lease && desired.lease->count() < 1) {
    return Error{"lease is " + std::to_string(desired.lease->count()) +
                 " ms, expected at least 1 ms (a lease that has run out is not applied)"};
  }
  std::set<IpAddress> vips;
  for (const auto& a : desired.services) {
    const Service& s = a.service;
    if (s.buckets < 1 || s.buckets > max_buckets) {
      return Error{describe(s) + ": buckets is " + std::to_string(s.buckets) + ", expected 1.." +
                   std::to_string(max_buckets)};
    }
    if (!sortedUniqueBelow(a.owned, s.buckets)) {
      return Error{describe(s) + ": owned buckets must be sorted, unique and below " +
                   std::to_string(s.buckets)};
    }
    if (!sortedUniqueBelow(a.reset_orphans, s.buckets) ||
        !std::includes(a.owned.begin(), a.owned.end(), a.reset_orphans.begin(),
                       a.reset_orphans.end())) {
      return Error{describe(s) + ": reset_orphans must be sorted, unique and owned buckets"};
    }
    for (std::size_t i = 0; i < a.timed.size(); ++i) {
      const TimedBucket& t = a.timed[i];
      if (t.bucket >= s.buckets || (i > 0 && t.bucket <= a.timed[i - 1].bucket) ||
          std::binary_search(a.owned.begin(), a.owned.end(), t.bucket)) {
        return Error{describe(s) + ": timed buckets must be sorted, unique, below " +
                     std::to_string(s.buckets) + " and not owned"};
      }
      if (t.from_ns < 0 || t.from_ns >= t.until_ns) {
        return Error{describe(s) + ": timed bucket " + std::to_string(t.bucket) +
                     " has an empty or negative window"};
      }
    }
    const auto windowsOk = [&](const auto& list) {
      for (std::size_t i = 0; i < list.size(); ++i) {
        const auto& t = list[i];
        if (t.bucket >= s.buckets || t.from_ns < 0 || t.from_ns >= t.until_ns)
          return false;
        // Sorted; one bucket's windows must not overlap (an interval set refuses that).
        if (i > 0 && (t.bucket < list[i - 1].bucket ||
                      (t.bucket == list[i - 1].bucket && t.from_ns < list[i - 1].until_ns)))
          return false;
      }
      return true;
    };
    if (!windowsOk(a.gap_noted) || !windowsOk(a.forwarded)) {
      return Error{describe(s) + ": bridged hand-off windows must be sorted, non-empty, below " +
                   std::to_string(s.buckets) + " buckets and not overlap"};
    }
    for (const ForwardedBucket& f : a.forwarded) {
      if (f.to.isV4() != s.vip.isV4() || f.to.isUnusableAsVip()) {
        return Error{describe(s) + ": bucket " + std::to_string(f.bucket) +
                     " forwarded to an address of another family, or an unusable one (" +
                     f.to.toString() + ")"};
      }
    }
    if (s.vip.isUnusableAsVip()) {
      return Error{describe(s) + ": " + s.vip.toString() + " cannot be a VIP"};
    }
    if (!s.cluster_mac.isMulticast() || s.cluster_mac.isBroadcast()) {
      return Error{describe(s) + ": cluster MAC " + s.cluster_mac.toString() +
                   " must be a multicast address (first byte odd), not broadcast"};
    }
    if (s.interface.empty())
      return Error{describe(s) + ": no interface given"};
    if (!vips.insert(s.vip).second) {
      return Error{describe(s) + ": VIP " + s.vip.toString() + " is used by two services"};
    }
  }
  return Ok{};
}

std::string withoutElements(const std::string& listing) {
  std::string out;
  std::size_t pos = 0;
  const std::string key = "elements = {";
  for (;;) {
    const std::size_t at = listing.find(key, pos);
    if (at == std::string::npos)
      break;
    const std::size_t close = listing.find('}', at);
    if (close == std::string::npos)
      break;
    // Drop the whole line: an empty set prints no elements line at all.
    std::size_t line_start = at;
    while (line_start > pos &&
           (listing[line_start - 1] == '\t' || listing[line_start - 1] == ' ')) {
      --line_start;
    }
    out.append(listing, pos, line_start - pos);
    pos = close + 1;
    if (pos < listing.size() && listing[pos] == '\n')
      ++pos;
  }
  out.append(listing, pos, std::string::npos);
  // Counters count packets: their figures are state, not structure.
  const std::string counter = "counter packets ";
  for (std::size_t at = out.find(counter); at != std::string::npos;
       at = out.find(counter, at + 1)) {
    std::size_t end = out.find(" bytes ", at);
    if (end == std::string::npos)
      break;
    end += 7;
    while (end < out.size() && std::isdigit(static_cast<unsigned char>(out[end])))
      ++end;
    out.replace(at, end - at, "counter");
  }
  return out;
}

namespace {

// What is between the braces of `elements = { ... }` of set `set_name` in a listing: empty
// for a set without elements, nullopt if the set is not listed.
std::optional<std::string> elementsOf(const std::string& listing, const std::string& set_name) {
  const std::size_t at = listing.find("set " + set_name + " {");
  if (at == std::string::npos)
    return std::nullopt;
  const std::size_t end = listing.find("\n\t}", at);  // the set block's closing brace
  const std::size_t el = listing.find("elements = {", at);
  if (el == std::string::npos || (end != std::string::npos && el > end))
    return std::string();
  const std::size_t close = listing.find('}', el);
  return listing.substr(el + 12, close - el - 12);
}

}  // namespace

std::optional<std::vector<uint32_t>> setElements(const std::string& listing,
                                                 const std::string& set_name) {
  const std::optional<std::string> elements = elementsOf(listing, set_name);
  if (!elements)
    return std::nullopt;
  const std::string& body = *elements;
  std::vector<uint32_t> out;
  // Elements are comma-separated; each is a value or an "a-b" range, possibly followed by
  // "timeout 150ms expires 120ms" when the set has timeouts.
  std::size_t p = 0;
  while (p < body.size()) {
    std::size_t comma = body.find(',', p);
    if (comma == std::string::npos)
      comma = body.size();
    std::size_t q = p;
    while (q < comma && std::isspace(static_cast<unsigned char>(body[q])))
      ++q;
    if (q < comma) {
      std::size_t used = 0;
      const std::string item = body.substr(q, comma - q);
      const unsigned long first = std::stoul(item, &used, 0);
      unsigned long last = first;
      if (used < item.size() && item[used] == '-')
        last = std::stoul(item.substr(used + 1), nullptr, 0);
      for (unsigned long v = first; v <= last; ++v)
        out.push_back(static_cast<uint32_t>(v));
    }
    p = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::vector<uint32_t>> timedSetMarks(const std::string& listing,
                                                   const std::string& set_name) {
  const std::optional<std::string> elements = elementsOf(listing, set_name);
  if (!elements)
    return std::nullopt;
  const std::string& body = *elements;
  std::vector<uint32_t> out;
  // Each element starts with its mark, then " . " and the window (quoted dates).
  std::size_t p = 0;
  while ((p = body.find("0x", p)) != std::string::npos) {
    std::size_t used = 0;
    const unsigned long mark = std::stoul(body.substr(p), &used, 16);
    if (body.compare(p + used, 3, " . ") == 0)
      out.push_back(static_cast<uint32_t>(mark));
    p += used;
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::unique_ptr<NftablesDataplane>> NftablesDataplane::open(NftablesOptions options) {
  auto session = LibNftablesSession::open();
  if (!session)
    return session.error();
  auto vips = NetlinkVipAddresses::open(options.vip_ledger);
  if (!vips)
    return vips.error();
  auto macs = PacketSocketMemberships::open();
  if (!macs)
    return macs.error();
  return std::make_unique<NftablesDataplane>(std::move(session).value(), std::move(vips).value(),
                                             std::move(macs).value(), std::move(options));
}

NftablesDataplane::NftablesDataplane(std::unique_ptr<NftSession> session,
                                     std::unique_ptr<VipAddresses> vips,
                                     std::unique_ptr<MacMemberships> macs, NftablesOptions options)
    : session_(std::move(session)),
      vips_(std::move(vips)),
      macs_(std::move(macs)),
      options_(std::move(options)),
      live_renewal_(liveRenewal(options_.ruleset)) {}

Status NftablesDataplane::rebuild(const DesiredState& desired) {
  std::map<std::string, MacAddress> interface_macs;
  for (const auto& a : desired.services) {
    if (a.service.vip.isV4() || interface_macs.count(a.service.interface))
      continue;
    auto mac = macs_->hardwareAddress(a.service.interface);
    if (!mac)
      return Error{describe(a.service) + ": " + mac.error().message};
    interface_macs[a.service.interface] = *mac;
  }
  auto script = fullScript(desired, interface_macs, options_.ruleset);
  if (!script)
    return script.error();
  auto done = runCommit(*script);
  if (!done)
    return done.error();
  ++full_rebuilds_;
  if (desired.lease)
    lease_expiry_ = options_.clock() + *desired.lease;
  // The script loads the timed sets empty (its syntax has whole seconds only): their
  // elements follow in a transaction of their own. Until it commits the node answers less,
  // never more, than `desired`; if it fails, the kernel holds `desired` without them (and
  // the next apply sends them).
  std::vector<TimedSetContents> timed;
  for (std::size_t i = 0; i < desired.services.size(); ++i) {
    const ServiceAssignment& a = desired.services[i];
    if (!a.timed.empty())
      timed.push_back(timedSetContents(i, a));
    if (bridgesGaps() && (!a.gap_noted.empty() || !a.forwarded.empty())) {
      for (TimedSetContents& c : gapBridgeContents(i, a, options_.ruleset))
        timed.push_back(std::move(c));
    }
  }
  Status timed_sent = Ok{};
  if (!timed.empty())
    timed_sent = sendSets({}, timed);
  applied_ = desired;
  if (!timed_sent) {
    for (auto& a : applied_->services) {
      a.timed.clear();
      a.gap_noted.clear();
      a.forwarded.clear();
    }
  }
  auto listings = listTables();
  if (!listings)
    return Error{"rules loaded but cannot be listed: " + listings.error().message};
  structure_.clear();
  for (const auto& l : *listings)
    structure_.push_back(withoutElements(l));
  return timed_sent;
}

Status NftablesDataplane::apply(const DesiredState& desired) {
  if (Status valid = validateDesiredState(desired, kMaxBuckets); !valid)
    return valid;
  if (!options_.ruleset.timed_sets) {
    for (const auto& a : desired.services) {
      if (!a.timed.empty())
        return Error{describe(a.service) +
                     ": timed buckets need sets of meta time intervals, which this kernel "
                     "lacks (Linux 5.6 or later)"};
    }
  }
  if (applied_ && sameStructure(*applied_, desired)) {
    // The hot path: only bucket sets change, one small transaction, sent as a prebuilt
    // netlink batch (nft_batch.h) on the context's socket: no parser, no ruleset cache.
    std::vector<SetContents> sets;
    std::vector<TimedSetContents> timed;
    for (std::size_t i = 0; i < desired.services.size(); ++i) {
      const auto& now = applied_->services[i];
      const auto& next = desired.services[i];
      if (now.owned != next.owned || now.reset_orphans != next.reset_orphans) {
        for (SetContents& c : bucketSetContents(i, next)) sets.push_back(std::move(c));
      }
      if (now.timed != next.timed) {
        timed.push_back(timedSetContents(i, next));
      }
      if (bridgesGaps() && (now.gap_noted != next.gap_noted || now.forwarded != next.forwarded)) {
        for (TimedSetContents& c : gapBridgeContents(i, next, options_.ruleset))
          timed.push_back(std::move(c));
      }
    }
    if (sets.empty() && timed.empty()) {
      applied_ = desired;
      return Ok{};
    }
    // The live element is not touched: an apply never extends the lease.
    if (sets.empty() || timed.empty()) {
      if (Status st = sendSets(sets, timed); !st)
        return st;
    } else if (Status st = sendInSteps(desired, timed); !st) {
      return st;
    }
    ++set_updates_;
    applied_ = desired;
    return Ok{};
  }
  const std::optional<DesiredState> previous = applied_;
  if (Status st = rebuild(desired); !st)
    return st;
  if (previous) {
    if (Status st = releaseUnused(*previous, desired); !st)
      return st;
  }
  auto linked = ensureLinkLayer(desired);
  if (!linked)
    return linked.error();
  auto loose = ensureTcpLoose();
  if (!loose)
    return loose.error();
  return Ok{};
}

Status NftablesDataplane::sendInSteps(const DesiredState& desired,
                                      const std::vector<TimedSetContents>& timed) {
  // One transaction is not atomic across set types: the kernel switches the hash sets'
  // elements at the generation flip and an interval (pipapo) set's contents only after it
  // has walked the transaction, so a bucket moved from the owned set to the timed set in one
  // transaction is in neither for a moment and its packets are dropped (measured: 116 drops
  // over 300 such transactions under a flood). Hence three: the owned sets grow to what
  // either state owns, the interval sets change, the owned sets shrink to the new state. At
  // each step every bucket either state answers is answered by one set or the other.
  std::vector<SetContents> grown;
  for (std::size_t i = 0; i < desired.services.size(); ++i) {
    const auto& now = applied_->services[i];
    const auto& next = desired.services[i];
    if (std::includes(now.owned.begin(), now.owned.end(), next.owned.begin(), next.owned.end()))
      continue;
    ServiceAssignment both = now;
    both.owned.clear();
    std::set_union(now.owned.begin(), now.owned.end(), next.owned.begin(), next.owned.end(),
                   std::back_inserter(both.owned));
    for (SetContents& c : bucketSetContents(i, both))
      grown.push_back(std::move(c));
  }
  // On an error the previous state is put back (best effort), as apply() promises.
  std::vector<SetContents> old_sets;
  std::vector<TimedSetContents> old_timed;
  for (std::size_t i = 0; i < applied_->services.size(); ++i) {
    const ServiceAssignment& a = applied_->services[i];
    for (SetContents& c : bucketSetContents(i, a))
      old_sets.push_back(std::move(c));
    old_timed.push_back(timedSetContents(i, a));
    if (bridgesGaps()) {
      for (TimedSetContents& c : gapBridgeContents(i, a, options_.ruleset))
        old_timed.push_back(std::move(c));
    }
  }
  if (!grown.empty()) {
    if (Status st = sendSets(grown, {}); !st)
      return st;
  }
  if (Status st = sendSets({}, timed); !st) {
    (void)sendSets(old_sets, {});
    return st;
  }
  std::vector<SetContents> final_sets;
  for (std::size_t i = 0; i < desired.services.size(); ++i) {
    for (SetContents& c : bucketSetContents(i, desired.services[i]))
      final_sets.push_back(std::move(c));
  }
  if (Status st = sendSets(final_sets, {}); !st) {
    (void)sendSets({}, old_timed);
    (void)sendSets(old_sets, {});
    return st;
  }
  return Ok{};
}

Status NftablesDataplane::sendSets(const std::vector<SetContents>& sets,
                                   const std::vector<TimedSetContents>& timed) {
  const NftBatch batch =
      setContentsBatch(NFPROTO_INET, options_.ruleset.table, sets, timed, next_seq_);
  next_seq_ = batch.last_acked_seq + 2;  // past the batch end
  const Status sent = session_->send(batch);
  noteCommit(sent.ok());
  if (!sent)
    return Error{"bucket sets: " + sent.error().message};
  return Ok{};
}

Result<std::vector<std::string>> NftablesDataplane::ensureLinkLayer(const DesiredState& desired) {
  std::vector<std::string> done;
  for (const auto& a : desired.services) {
    const Service& s = a.service;
    auto joined = macs_->present(s.interface, s.cluster_mac);
    if (!joined)
      return joined.error();
    if (Status st = macs_->join(s.interface, s.cluster_mac); !st) {
      return Error{describe(s) + ": " + st.error().message};
    }
    if (!*joined)
      done.push_back("joined cluster MAC " + s.cluster_mac.toString() + " on " + s.interface);
    auto added = vips_->ensure(s.interface, s.vip);
    if (!added)
      return Error{describe(s) + ": " + added.error().message};
    if (*added)
      done.push_back("added VIP " + s.vip.toString() + " on " + s.interface);
  }
  return done;
}

Status NftablesDataplane::releaseUnused(const DesiredState& previous, const DesiredState& next) {
  std::set<std::pair<std::string, IpAddress>> keep_vips;
  std::set<std::pair<std::string, MacAddress>> keep_macs;
  for (const auto& a : next.services) {
    keep_vips.insert({a.service.interface, a.service.vip});
    keep_macs.insert({a.service.interface, a.service.cluster_mac});
  }
  for (const auto& a : previous.services) {
    const Service& s = a.service;
    if (!keep_vips.count({s.interface, s.vip})) {
      if (Status st = vips_->remove(s.interface, s.vip); !st)
        return st;
    }
    if (!keep_macs.count({s.interface, s.cluster_mac})) {
      if (Status st = macs_->leave(s.interface, s.cluster_mac); !st)
        return st;
    }
  }
  return Ok{};
}

Result<std::vector<std::string>> NftablesDataplane::ensureTcpLoose() {
  if (!options_.set_tcp_loose)
    return std::vector<std::string>{};
  std::string value;
  {
    std::ifstream in(options_.tcp_loose_path);
    in >> value;
  }
  if (value == "0")
    return std::vector<std::string>{};
  std::ofstream out(options_.tcp_loose_path);
  out << "0\n";
  out.close();
  if (!out) {
    const std::string warning =
        "cannot set " + options_.tcp_loose_path + " to 0 (" + std::strerror(errno) +
        "): after a bucket move, mid-stream packets of established TCP connections count as "
        "new and may be answered by two nodes";
    if (std::find(warnings_.begin(), warnings_.end(), warning) == warnings_.end()) {
      warnings_.push_back(warning);
    }
    return std::vector<std::string>{};
  }
  return std::vector<std::string>{"set " + options_.tcp_loose_path + " to 0 (was '" + value + "')"};
}

Result<std::string> NftablesDataplane::runCommit(const std::string& script) {
  auto done = session_->run(script);
  noteCommit(done.ok());
  return done;
}

void NftablesDataplane::noteCommit(bool committed) {
  // Each commit moves the kernel's ruleset generation by one. While the tables are known
  // intact, count this node's own commits into the generation a check expects: if the kernel
  // is there at the next check, nobody else committed since, and nothing needs listing. A
  // commit that failed changed nothing. (A successful run that committed nothing, or a
  // commit whose answer was lost, leaves the count off by one: the check lists once more.)
  if (committed && intact_generation_) {
    *intact_generation_ += 1;
  }
}

Result<std::vector<std::string>> NftablesDataplane::listTables() {
  std::vector<std::string> out;
  for (const auto& command : listCommands(options_.ruleset)) {
    auto listed = session_->run(command);
    if (!listed)
      return Error{command + ": " + listed.error().message};
    out.push_back(*listed);
  }
  return out;
}

Result<DriftReport> NftablesDataplane::checkAndRepair() {
  DriftReport report;
  if (!applied_)
    return report;
  const DesiredState desired = *applied_;
  const bool leased = desired.lease.has_value();
  bool rebuild_needed = false;
  // Listing the tables makes libnftables build its whole cache (most of a check's cost). When
  // nobody committed anything since the last check found the rules intact, they still are.
  const std::optional<uint32_t> generation = session_->generation();
  const bool rules_unchanged = generation.has_value() && generation == intact_generation_;
  const auto commands =
      rules_unchanged ? std::vector<std::string>{} : listCommands(options_.ruleset);
  for (std::size_t t = 0; t < commands.size(); ++t) {
    auto listed = session_->run(commands[t]);
    if (!listed) {
      report.details.push_back("missing: " + commands[t].substr(std::strlen("list ")));
      rebuild_needed = true;
      continue;
    }
    if (t < structure_.size() && withoutElements(*listed) != structure_[t]) {
      report.details.push_back("rules changed: " + commands[t].substr(std::strlen("list ")));
      rebuild_needed = true;
    }
    if (t == 0) {
      for (std::size_t i = 0; i < desired.services.size(); ++i) {
        const auto& a = desired.services[i];
        auto owned = setElements(*listed, ownedSetName(i));
        auto reset = setElements(*listed, resetSetName(i));
        std::vector<uint32_t> want_owned, want_reset;
        for (uint32_t b : a.owned)
          want_owned.push_back(kMarkBase + b);
        for (uint32_t b : a.reset_orphans)
          want_reset.push_back(kMarkBase + b);
        auto timed = options_.ruleset.timed_sets ? timedSetMarks(*listed, timedSetName(i))
                                                 : std::make_optional(std::vector<uint32_t>{});
        std::vector<uint32_t> want_timed;
        for (const TimedBucket& tb : a.timed)
          want_timed.push_back(kMarkBase + tb.bucket);
        if (!owned || !reset || !timed || *owned != want_owned || *reset != want_reset ||
            *timed != want_timed) {
          report.details.push_back("bucket sets changed: " + describe(a.service));
          rebuild_needed = true;
        }
      }
      auto live = setElements(*listed, liveSetName());
      if (!live || !liveMatches(*live, leased)) {
        report.details.push_back("live set changed");
        rebuild_needed = true;
      }
    }
  }
  // Renewed by the heartbeats, the lease changes no generation: check on its own that the
  // rule does renew it. If the element is gone while the lease should run (the rule never
  // matches: another uid, a changed rule), renew by netlink from now on.
  if (renewsOnSend() && !rebuild_needed) {
    const auto left = std::chrono::floor<Millis>(lease_expiry_ - options_.clock());
    if (left > kLiveCheckMargin) {
      auto listed = session_->run("list set inet " + options_.ruleset.table + " " + liveSetName());
      auto live = listed ? setElements(*listed, liveSetName()) : std::nullopt;
      if (live && live->empty()) {
        send_renewal_off_ = true;
        report.details.push_back(
            "restored: the lease element, which the heartbeats did not renew (renewing by "
            "netlink from now on)");
        if (Status st = renew(left); !st)
          return Error{"repair failed: " + st.error().message};
      }
    }
  }
  // Read before the listing: a commit made after it changes the generation, so the next
  // check lists again. A rebuild is a commit of its own, checked the same way next time.
  intact_generation_ = rebuild_needed ? std::nullopt : generation;
  if (rebuild_needed) {
    DesiredState again = desired;
    if (leased) {
      // What is left of the lease, rounded down; zero once it has run out.
      const auto left = std::chrono::floor<Millis>(lease_expiry_ - options_.clock());
      again.lease = std::max(left, Millis{0});
    }
    Status st = rebuild(again);
    // The intent stays what the caller applied; the kernel holds what is left of its lease.
    applied_ = desired;
    if (!st)
      return Error{"repair failed: " + st.error().message};
  }
  auto linked = ensureLinkLayer(desired);
  if (!linked)
    return Error{"repair failed: " + linked.error().message};
  for (auto& line : *linked)
    report.details.push_back("restored: " + line);
  auto loose = ensureTcpLoose();
  if (!loose)
    return loose.error();
  for (auto& line : *loose)
    report.details.push_back("restored: " + line);
  report.repaired = static_cast<uint32_t>(report.details.size());
  repairs_total_ += report.repaired;
  return report;
}

Status NftablesDataplane::renew(Millis lease) {
  if (lease.count() < 1)
    return Error{"lease renewal of " + std::to_string(lease.count()) +
                 " ms: expected at least 1 ms"};
  if (!applied_)
    return Ok{};
  if (!applied_->lease) {
    return Error{"renewal of a state applied without a lease: apply one with a lease first"};
  }
  const NftBatch& batch = live_renewal_.prepare(lease, next_seq_);
  next_seq_ += ElementRenewal::kMessages;
  const Status sent = session_->send(batch);
  noteCommit(sent.ok());  // a renewal is a commit of ours too
  if (!sent)
    return Error{"lease renewal: " + sent.error().message};
  applied_->lease = lease;
  lease_expiry_ = options_.clock() + lease;
  return Ok{};
}

bool NftablesDataplane::renewsOnSend() const {
  return options_.ruleset.renew_sport != 0 && !send_renewal_off_ && applied_ &&
         applied_->lease.has_value();
}

void NftablesDataplane::renewedBySend(Millis lease) {
  if (!renewsOnSend())
    return;
  applied_->lease = lease;
  lease_expiry_ = options_.clock() + lease;
}

Status NftablesDataplane::teardown() {
  // VIPs first, so nothing attracts traffic while the rules go away.
  std::string first_error;
  if (applied_) {
    for (const auto& a : applied_->services) {
      if (Status st = vips_->remove(a.service.interface, a.service.vip);
          !st && first_error.empty()) {
        first_error = st.error().message;
      }
      if (Status st = macs_->leave(a.service.interface, a.service.cluster_mac);
          !st && first_error.empty()) {
        first_error = st.error().message;
      }
    }
  }
  auto done = runCommit(teardownScript(options_.ruleset));
  if (!done && first_error.empty())
    first_error = done.error().message;
  applied_.reset();
  structure_.clear();
  if (!first_error.empty())
    return Error{"teardown incomplete: " + first_error};
  return Ok{};
}

}  // namespace shoal::dataplane
