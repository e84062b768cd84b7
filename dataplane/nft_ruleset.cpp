#include "dataplane/nft_ruleset.h"

#include <linux/netfilter.h>

#include <cstdio>
#include <sstream>

namespace shoal::dataplane {
namespace {

// Protocols whose first four transport bytes are the ports; kept equal to
// protocolHasPorts() in jhash.cpp so that predicted and enforced buckets agree.
constexpr const char* kPortProtocols = "{ tcp, udp, dccp, sctp, udplite }";

std::string hex(uint64_t value, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(value));
  return buf;
}

std::string macHex(const MacAddress& mac) {
  uint64_t v = 0;
  for (uint8_t b : mac.bytes) v = (v << 8) | b;
  return hex(v, 12);
}

const char* ipKeyword(const Service& s) { return s.vip.isV4() ? "ip" : "ip6"; }

std::string hashRule(const Service& s, bool with_ports) {
  std::string fields = std::string(ipKeyword(s)) + " saddr";
  if (with_ports) {
    fields += " . th sport";
    if (s.hash == HashMode::SourceIpSourcePortDestPort) fields += " . th dport";
  }
  return "meta mark set jhash " + fields + " mod " + std::to_string(s.buckets) + " seed " +
         hex(s.seed, 8) + " offset " + hex(kMarkBase, 8);
}

std::string markElements(const std::vector<uint32_t>& marks, std::optional<Millis> timeout) {
  std::string out;
  for (uint32_t m : marks) {
    if (!out.empty()) out += ", ";
    out += hex(m, 8);
    if (timeout) out += " timeout " + std::to_string(timeout->count()) + "ms";
  }
  return out;
}

// A plain hash set: adding to an interval set makes nft read the whole set first, which would
// put a dump on the hot path. Drift checks compare its elements sorted. Only the live set has
// `flags timeout`, with and without a lease, so that the structure is the same either way.
void emitSet(std::ostringstream& o, const std::string& name, const std::vector<uint32_t>& marks,
             bool timeouts, std::optional<Millis> timeout) {
  o << "  set " << name << " {\n    type mark\n" << (timeouts ? "    flags timeout\n" : "");
  if (!marks.empty()) o << "    elements = { " << markElements(marks, timeout) << " }\n";
  o << "  }\n";
}

std::vector<uint32_t> asMarks(const std::vector<uint32_t>& buckets) {
  std::vector<uint32_t> marks;
  for (uint32_t b : buckets) marks.push_back(kMarkBase + b);
  return marks;
}

// Flush + add of one set (nothing added for an empty list).
void replaceSet(std::ostringstream& o, const std::string& prefix, const std::string& name,
                const std::vector<uint32_t>& marks) {
  o << "flush set" << prefix << name << "\n";
  if (!marks.empty()) {
    o << "add element" << prefix << name << " { " << markElements(marks, std::nullopt) << " }\n";
  }
}

// What identifies one client packet to both nodes of a hand-over (ForwardedBucket): the same
// bytes on the releaser, on the taker and in the releaser's copy (which differs in its TTL).
std::string packetKey(const Service& s) {
  return s.vip.isV4() ? "ip saddr . th sport . ip id . @th,32,32"
                      : "ip6 saddr . th sport . @th,32,32";
}

std::string quoted(const std::string& name) {
  return "\"" + name + "\"";
}

void emitHashRules(std::ostringstream& o, const Service& s) {
  if (s.hash == HashMode::SourceIp) {
    o << "    " << hashRule(s, false) << "\n";
  } else {
    o << "    meta l4proto " << kPortProtocols << " " << hashRule(s, true) << "\n";
    o << "    meta l4proto != " << kPortProtocols << " " << hashRule(s, false) << "\n";
  }
}

void emitServiceChain(std::ostringstream& o, std::size_t i, const Service& s, bool timed,
                      bool bridge) {
  const std::string mark_set = "meta mark";
  o << "  chain s" << i << " {\n";
  emitHashRules(o, s);
  // The node's own traffic to its VIP, and replies to connections it opened from the VIP.
  o << "    meta iiftype loopback accept\n";
  o << "    ct direction reply accept\n";
  // Neighbour discovery for the VIP is answered by every node.
  if (!s.vip.isV4()) o << "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n";
  // The lease gate: from here on everything is what the node answers for its buckets (its
  // established connections, orphan resets, new flows), and all of it only while `live`
  // holds its element. The hash rule above made the mark's upper half kLiveMark.
  o << "    " << mark_set << " & " << hex(kMarkBaseMask, 8) << " != @" << liveSetName()
    << " drop\n";
  if (bridge) {
    // A copy of a client packet from the releaser of a hand-over (the only packets for the
    // VIP that come in on another interface): answered if this node noted and dropped the
    // same packet in the gap, once; anything else from elsewhere is not for this node.
    const std::string in_other = "    iifname != " + quoted(s.interface) + " ";
    o << in_other << packetKey(s) << " != @" << seenSetName(i) << " drop\n";
    o << in_other << "delete @" << seenSetName(i) << " { " << packetKey(s) << " } counter\n";
    o << in_other << "meta l4proto tcp ct mark set ct mark | " << hex(kAcceptedFlowBit, 8) << "\n";
    o << in_other << "accept\n";
  }
  // Connections this node accepted stay here after their bucket moves (and ICMP errors
  // about them, which conntrack marks related).
  o << "    ct state established,related ct mark & " << hex(kAcceptedFlowBit, 8)
    << " == " << hex(kAcceptedFlowBit, 8) << " accept\n";
  // With nf_conntrack_tcp_loose=0 a mid-stream packet without conntrack here is invalid: a
  // flow of another node (drop) or of a dead node whose bucket we took over (reset).
  o << "    meta l4proto tcp ct state invalid " << mark_set << " @" << resetSetName(i)
    << " reject with tcp reset\n";
  o << "    meta l4proto tcp ct state invalid drop\n";
  // Not owned, and not timed at this instant of the wall clock (a planned hand-off switching
  // at a kernel-clock instant): not ours. Owned packets never reach the interval lookup.
  o << "    " << mark_set << " != @" << ownedSetName(i);
  if (timed) {
    o << " " << mark_set << " . meta time != @" << timedSetName(i);
  }
  // With bridging, a dropped packet is noted (in a take's window) by the chain that drops it:
  // only what is dropped can be noted. A rule of its own before the drop would read the
  // clock again, and a packet at the take's instant could be noted and answered both.
  o << (bridge ? " goto s" + std::to_string(i) + "_gap\n" : std::string(" drop\n"));
  o << "    meta l4proto tcp ct state new ct mark set ct mark | " << hex(kAcceptedFlowBit, 8)
    << "\n";
  o << "  }\n";
  if (bridge) {
    o << "  chain s" << i << "_gap {\n    " << mark_set << " . meta time @" << noteSetName(i)
      << " add @" << seenSetName(i) << " { " << packetKey(s) << " }\n    drop\n  }\n";
  }
}

std::string tableHeader(const char* family, const std::string& name, bool owner) {
  return std::string("table ") + family + " " + name + " {\n" + (owner ? "  flags owner\n" : "");
}

// Creates the table if missing and deletes it: "delete" then never fails on absence.
std::string ensureDeleted(const char* family, const std::string& name, bool owner) {
  return std::string("table ") + family + " " + name + (owner ? " { flags owner; }\n" : "\n") +
         "delete table " + family + " " + name + "\n";
}

}  // namespace

std::string ownedSetName(std::size_t index) { return "s" + std::to_string(index) + "_owned"; }
std::string resetSetName(std::size_t index) { return "s" + std::to_string(index) + "_reset"; }
std::string liveSetName() { return "live"; }
std::string noteSetName(std::size_t index) {
  return "s" + std::to_string(index) + "_noted";
}
std::string seenSetName(std::size_t index) {
  return "s" + std::to_string(index) + "_seen";
}
std::string forwardMapName(std::size_t index) {
  return "s" + std::to_string(index) + "_fwd";
}
std::string forwardTableName(const NftRulesetOptions& options) {
  return options.table + "_fwd";
}
std::string timedSetName(std::size_t index) {
  return "s" + std::to_string(index) + "_timed";
}

uint16_t checksumCompensation(const MacAddress& from, const MacAddress& to) {
  // Ones' complement arithmetic: the reserved word must add back what the MAC change removed:
  // C = sum(old words) - sum(new words) = sum(old) + sum(~new), folded to 16 bits.
  uint32_t sum = 0;
  for (int w = 0; w < 3; ++w) {
    const uint32_t old_word = (static_cast<uint32_t>(from.bytes[2 * w]) << 8) | from.bytes[2 * w + 1];
    const uint32_t new_word = (static_cast<uint32_t>(to.bytes[2 * w]) << 8) | to.bytes[2 * w + 1];
    sum += old_word + (~new_word & 0xffff);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

Result<std::string> fullScript(const DesiredState& desired,
                               const std::map<std::string, MacAddress>& interface_macs,
                               const NftRulesetOptions& options) {
  const std::string& t = options.table;
  const std::string guard = t + "_guard";
  const bool own = options.owner_tables;
  std::ostringstream o;
  o << ensureDeleted("inet", t, own) << ensureDeleted("arp", t, own)
    << ensureDeleted("inet", guard, false) << ensureDeleted("arp", guard, false);

  const auto& services = desired.services;
  const bool bridge = options.timed_sets && options.gap_bridging;
  if (bridge) {
    o << ensureDeleted("ip", forwardTableName(options), own)
      << ensureDeleted("ip6", forwardTableName(options), own);
  }
  // --- the owned inet table ---
  o << tableHeader("inet", t, own);
  for (std::size_t i = 0; i < services.size(); ++i) {
    emitSet(o, ownedSetName(i), asMarks(services[i].owned), false, std::nullopt);
    emitSet(o, resetSetName(i), asMarks(services[i].reset_orphans), false, std::nullopt);
    if (options.timed_sets) {
      // Loaded empty: nft's syntax has no sub-second times, so the elements follow as a
      // netlink batch (timedSetContents()).
      o << "  set " << timedSetName(i)
        << " {\n    typeof meta mark . meta time\n    flags interval\n  }\n";
    }
    if (bridge) {
      o << "  set " << noteSetName(i)
        << " {\n    typeof meta mark . meta time\n    flags interval\n  }\n";
      o << "  set " << seenSetName(i) << " {\n    typeof " << packetKey(services[i].service)
        << "\n    size " << kSeenSetSize << "\n    flags dynamic,timeout\n    timeout "
        << kSeenTimeout.count() << "ms\n  }\n";
    }
  }
  const bool ran_out = desired.lease && desired.lease->count() <= 0;
  emitSet(o, liveSetName(), ran_out ? std::vector<uint32_t>{} : std::vector{kLiveMark}, true,
          desired.lease);
  o << "  chain raw {\n    type filter hook prerouting priority raw; policy accept;\n";
  for (const auto& a : services) {
    o << "    " << ipKeyword(a.service) << " daddr " << a.service.vip.toString()
      << " meta pkttype multicast meta pkttype set host\n";
  }
  o << "  }\n";
  o << "  chain decide {\n    type filter hook prerouting priority mangle; policy accept;\n";
  for (std::size_t i = 0; i < services.size(); ++i) {
    const Service& s = services[i].service;
    o << "    " << ipKeyword(s) << " daddr " << s.vip.toString() << " jump s" << i << "\n";
  }
  o << "  }\n";
  for (std::size_t i = 0; i < services.size(); ++i) {
    emitServiceChain(o, i, services[i].service, options.timed_sets, bridge);
  }
  if (options.renew_sport != 0 && desired.lease) {
    // The heartbeat itself renews: the element's expiry is always the last heartbeat's send
    // time plus the lease, exactly the bound of dataplane/lease.h. Only an element that is
    // still there is renewed (the lookup: the packet's mark with every bit cleared and
    // kLiveMark set, i.e. kLiveMark, without touching the mark): a lease that ran out stays
    // out until the daemon has released its buckets and renews by netlink.
    o << "  chain lease_out {\n    type filter hook output priority filter; policy accept;\n"
      << "    udp sport " << options.renew_sport << " meta skuid " << options.renew_uid
      << " meta mark & 0x00000000 | " << hex(kLiveMark, 8) << " @" << liveSetName()
      << " update @" << liveSetName() << " { " << hex(kLiveMark, 8) << " timeout "
      << std::max<long>(options.renew_lease.count(), 1) << "ms }\n  }\n";
  }
  o << "  chain nd_out {\n    type filter hook output priority filter; policy accept;\n";
  for (const auto& a : services) {
    const Service& s = a.service;
    if (s.vip.isV4()) continue;
    auto mac = interface_macs.find(s.interface);
    if (mac == interface_macs.end()) {
      return Error{"service '" + s.name + "': no hardware address known for interface '" +
                   s.interface + "' (needed to rewrite neighbour discovery for an IPv6 VIP)"};
    }
    const std::string from = macHex(mac->second).substr(2);
    const std::string fix = hex(checksumCompensation(mac->second, s.cluster_mac), 4);
    // Link-layer option at ICMPv6 byte 24: type (1 source, 2 target), length 1, MAC.
    o << "    ip6 saddr " << s.vip.toString()
      << " icmpv6 type nd-neighbor-solicit @th,192,64 0x0101" << from << " @th,208,48 set "
      << macHex(s.cluster_mac) << " @th,48,16 set " << fix << "\n";
    o << "    ip6 saddr " << s.vip.toString()
      << " icmpv6 type nd-neighbor-advert @th,192,64 0x0201" << from << " @th,208,48 set "
      << macHex(s.cluster_mac) << " @th,48,16 set " << fix << "\n";
  }
  o << "  }\n}\n";

  // --- the owned ip and ip6 tables that copy a released bucket's packets to its taker ---
  // (nftables has `dup` in these families only). Before the inet table decides (priority
  // mangle - 5, after conntrack): the packets of the gap that the inet table drops, since the
  // release started at the window's beginning.
  if (bridge) {
    for (const char* family : {"ip", "ip6"}) {
      const bool v4 = std::string(family) == "ip";
      o << tableHeader(family, forwardTableName(options), own);
      for (std::size_t i = 0; i < services.size(); ++i) {
        if (services[i].service.vip.isV4() != v4)
          continue;
        o << "  map " << forwardMapName(i) << " {\n    typeof meta mark . meta time : " << family
          << " daddr\n    flags interval\n  }\n";
      }
      o << "  chain gap {\n    type filter hook prerouting priority mangle - 5; policy accept;\n";
      for (std::size_t i = 0; i < services.size(); ++i) {
        const Service& s = services[i].service;
        if (s.vip.isV4() != v4)
          continue;
        o << "    " << family << " daddr " << s.vip.toString() << " jump s" << i << "\n";
      }
      o << "  }\n";
      for (std::size_t i = 0; i < services.size(); ++i) {
        const Service& s = services[i].service;
        if (s.vip.isV4() != v4)
          continue;
        // Client packets only, from the service's interface (never a copy), and of TCP only
        // a connection's first: this node keeps serving the connections it accepted.
        o << "  chain s" << i << " {\n    iifname != " << quoted(s.interface) << " return\n"
          << "    ct direction reply return\n    meta l4proto tcp ct state != new return\n";
        emitHashRules(o, s);
        o << "    dup to meta mark . meta time map @" << forwardMapName(i) << "\n  }\n";
      }
      o << "}\n";
    }
  }

  // --- the owned arp table ---
  o << tableHeader("arp", t, own);
  o << "  chain out {\n    type filter hook output priority filter; policy accept;\n";
  for (const auto& a : services) {
    if (!a.service.vip.isV4()) continue;
    o << "    arp saddr ip " << a.service.vip.toString() << " arp saddr ether set "
      << a.service.cluster_mac.toString() << "\n";
  }
  o << "  }\n}\n";

  // --- the guard tables (outlive shoald) ---
  o << tableHeader("inet", guard, false);
  o << "  chain in {\n    type filter hook prerouting priority -140; policy accept;\n";
  for (const auto& a : services) {
    o << "    " << ipKeyword(a.service) << " daddr " << a.service.vip.toString()
      << " meta mark & " << hex(kMarkBaseMask, 8) << " != " << hex(kMarkBase, 8) << " drop\n";
  }
  o << "  }\n";
  o << "  chain out {\n    type filter hook output priority 10; policy accept;\n";
  for (const auto& a : services) {
    if (a.service.vip.isV4()) continue;
    o << "    ip6 saddr " << a.service.vip.toString()
      << " icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } @th,208,48 != "
      << macHex(a.service.cluster_mac) << " drop\n";
  }
  o << "  }\n}\n";
  o << tableHeader("arp", guard, false);
  o << "  chain out {\n    type filter hook output priority 10; policy accept;\n";
  for (const auto& a : services) {
    if (!a.service.vip.isV4()) continue;
    o << "    arp saddr ip " << a.service.vip.toString() << " arp saddr ether != "
      << a.service.cluster_mac.toString() << " drop\n";
  }
  o << "  }\n}\n";
  return o.str();
}

std::string setUpdateScript(std::size_t index, const ServiceAssignment& assignment,
                            const NftRulesetOptions& options) {
  std::ostringstream o;
  const std::string prefix = " inet " + options.table + " ";
  replaceSet(o, prefix, ownedSetName(index), asMarks(assignment.owned));
  replaceSet(o, prefix, resetSetName(index), asMarks(assignment.reset_orphans));
  return o.str();
}

std::vector<SetContents> bucketSetContents(std::size_t index, const ServiceAssignment& assignment) {
  return {SetContents{ownedSetName(index), asMarks(assignment.owned)},
          SetContents{resetSetName(index), asMarks(assignment.reset_orphans)}};
}

TimedSetContents timedSetContents(std::size_t index, const ServiceAssignment& assignment) {
  TimedSetContents out{timedSetName(index), {}, {}, 0};
  for (const TimedBucket& t : assignment.timed) {
    out.elements.push_back(TimedElement{kMarkBase + t.bucket, t.from_ns, t.until_ns, {}});
  }
  return out;
}

std::vector<TimedSetContents> gapBridgeContents(std::size_t index,
                                                const ServiceAssignment& assignment,
                                                const NftRulesetOptions& options) {
  TimedSetContents noted{noteSetName(index), {}, {}, 0};
  for (const TimedBucket& t : assignment.gap_noted) {
    noted.elements.push_back(TimedElement{kMarkBase + t.bucket, t.from_ns, t.until_ns, {}});
  }
  const bool v4 = assignment.service.vip.isV4();
  TimedSetContents forwarded{forwardMapName(index),
                             {},
                             forwardTableName(options),
                             static_cast<uint8_t>(v4 ? NFPROTO_IPV4 : NFPROTO_IPV6)};
  for (const ForwardedBucket& f : assignment.forwarded) {
    const auto& bytes = f.to.bytes;
    forwarded.elements.push_back(
        TimedElement{kMarkBase + f.bucket, f.from_ns, f.until_ns,
                     std::vector<uint8_t>(bytes.begin(), bytes.begin() + (v4 ? 4 : 16))});
  }
  return {std::move(noted), std::move(forwarded)};
}

ElementRenewal liveRenewal(const NftRulesetOptions& options) {
  return ElementRenewal(NFPROTO_INET, options.table, liveSetName(), kLiveMark);
}

std::string teardownScript(const NftRulesetOptions& options) {
  const std::string guard = options.table + "_guard";
  return ensureDeleted("ip", forwardTableName(options), options.owner_tables) +
         ensureDeleted("ip6", forwardTableName(options), options.owner_tables) +
         ensureDeleted("inet", options.table, options.owner_tables) +
         ensureDeleted("arp", options.table, options.owner_tables) +
         ensureDeleted("inet", guard, false) + ensureDeleted("arp", guard, false);
}

std::vector<std::string> listCommands(const NftRulesetOptions& options) {
  const std::string guard = options.table + "_guard";
  std::vector<std::string> out = {"list table inet " + options.table,
                                  "list table arp " + options.table, "list table inet " + guard,
                                  "list table arp " + guard};
  if (options.timed_sets && options.gap_bridging) {
    out.push_back("list table ip " + forwardTableName(options));
    out.push_back("list table ip6 " + forwardTableName(options));
  }
  return out;
}

}  // namespace shoal::dataplane
