#pragma once
// The nftables rules that enforce a DesiredState, as nft script text. Pure functions: no
// kernel access, so every rule can be unit-tested and read before it is loaded.
//
// Layout (TABLE is NftRulesetOptions::table, default "shoal"):
//   table inet TABLE (flags owner: the kernel drops it when shoald's netlink socket closes)
//     set sI_owned, sI_reset   buckets of service I, as packet marks (bucket + kMarkBase);
//                   permanent: written by apply() only
//     set sI_timed  `typeof meta mark . meta time; flags interval`: buckets answered only
//                   while the kernel's wall clock (the packet's `meta time`) is inside a
//                   window, for hand-offs that switch at an instant (TimedBucket); written by
//                   netlink batch only (nft's syntax has whole seconds only)
//     set live      `flags timeout`; holds kLiveMark while the node's lease runs (with a
//                   lease, DesiredState::lease, the element expires unless the daemon renews
//                   it: see dataplane/lease.h). Every service chain drops what it would answer
//                   while the element is missing, so a stalled daemon's node stops answering
//                   on its own. The renewal rewrites this one element (liveRenewal()),
//                   whatever the number of buckets.
//     chain raw     prerouting, priority raw: packets to a VIP sent to the cluster MAC arrive
//                   as multicast; make them host packets (only possible in prerouting)
//     chain decide  prerouting, priority mangle (after defragmentation and conntrack):
//                   jump to the service's chain by destination VIP
//     chain sI      mark = jhash(fields) mod buckets + kMarkBase; the node's own traffic and
//                   replies to its own connections pass; then the lease gate (drop unless
//                   `live` holds its element); keep flows this node accepted (ct mark bit),
//                   reset orphans, drop what is neither owned nor timed at this instant
//     set sI_noted  (with gap bridging) `typeof meta mark . meta time; flags interval`: windows
//                   before a take in which the packets this node drops are noted in sI_seen
//     set sI_seen   the packets noted (source, source port, IP ID, 4 more bytes of the
//                   transport header), for kSeenTimeout; a copy of one of them from the
//                   releaser, arriving on another interface than the service's, is answered
//                   once (dataplane.h: ForwardedBucket)
//     chain lease_out  output (with NftRulesetOptions::renew_sport): each heartbeat shoald
//                   sends renews the live element for the full lease, if it is still there
//     chain nd_out  output: IPv6 neighbour solicitations/advertisements from a VIP carry the
//                   cluster MAC (link-layer option rewritten, checksum kept valid)
//   table ip TABLE_fwd, table ip6 TABLE_fwd (flags owner; with gap bridging)
//     map sI_fwd    `typeof meta mark . meta time : ip daddr; flags interval`: a released
//                   bucket's window after its release, and its taker's heartbeat address
//     chain gap     prerouting, priority mangle - 5: a client packet (TCP: a first packet
//                   only) of a bucket in its window is copied to the taker (`dup`, which
//                   these families have and inet has not); the inet table then drops it
//   table arp TABLE (flags owner)
//     chain out     ARP requests and replies from a VIP carry the cluster MAC
//   table inet TABLE_guard, table arp TABLE_guard (not owned: they outlive shoald)
//                   drop packets to a VIP that the owned table did not mark, and ARP/ND from a
//                   VIP without the cluster MAC: with shoald dead the node answers nothing and
//                   attracts no traffic, whatever the VIP address and MAC join left behind.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/ip_address.h"
#include "dataplane/dataplane.h"
#include "dataplane/nft_batch.h"

namespace shoal::dataplane {

/// Marks carry the bucket plus this base, so the guard can tell "decided by shoal" from 0.
inline constexpr uint32_t kMarkBase = 0x53480000;
/// The part of a mark that equals kMarkBase when shoal decided the packet.
inline constexpr uint32_t kMarkBaseMask = 0xffff0000;
/// Conntrack mark bit: this node accepted the connection (kept across bucket moves).
inline constexpr uint32_t kAcceptedFlowBit = 0x80000000;
/// The element of the live set while the lease runs. After the hash rule every packet's
/// `meta mark & kMarkBaseMask` equals it, so `meta mark & kMarkBaseMask != @live drop` drops
/// every packet exactly while the element is missing.
inline constexpr uint32_t kLiveMark = kMarkBase;

/// Knobs of the generated rules.
struct NftRulesetOptions {
  std::string table = "shoal";  ///< name of the tables (the guard tables add "_guard")
  /// Declare the tables `flags owner` (removed by the kernel when the creating netlink socket
  /// closes). Off only for one-shot `nft` processes, whose socket closes at once.
  bool owner_tables = true;
  /// Nonzero: every heartbeat this node sends renews the lease in the kernel (chain
  /// lease_out: UDP from this source port, from sockets of `renew_uid`, writes the live
  /// element with a timeout of `renew_lease`), so the daemon needs no netlink transaction per
  /// round (see dataplane/lease.h). Only with a lease (DesiredState::lease).
  uint16_t renew_sport = 0;
  uint32_t renew_uid = 0;
  Millis renew_lease{0};
  /// The timed sets and their lookup (sI_timed): off where the kernel lacks them
  /// (KernelFacts::nftables_timed); then no bucket can be timed.
  bool timed_sets = true;
  /// Bridge the gaps of timed hand-offs (ForwardedBucket): the sets sI_noted and sI_seen,
  /// the rules that use them, and the TABLE_fwd tables. Only with timed_sets.
  bool gap_bridging = true;
};

/// How long a packet noted in a gap waits for the releaser's copy of it, and how many can
/// wait at once (more are not noted: their copies go unanswered, as without bridging).
inline constexpr Millis kSeenTimeout{50};
inline constexpr uint32_t kSeenSetSize = 65535;

/// Name of the owned-bucket set of service `index` ("s0_owned").
std::string ownedSetName(std::size_t index);
/// Name of the reset-orphans set of service `index` ("s0_reset").
std::string resetSetName(std::size_t index);
/// Name of the set that holds kLiveMark while the lease runs ("live").
std::string liveSetName();
/// Name of the timed-bucket set of service `index` ("s0_timed").
std::string timedSetName(std::size_t index);

/// The full script: (re)creates the tables from scratch in one transaction, whether or not
/// they exist. With `desired.lease`, the live element expires after it; a lease of zero (one
/// that has run out) leaves the live set empty, so the node answers nothing until renewed.
/// Without a lease the live element is permanent. Bucket sets never expire.
/// `interface_macs` gives the hardware address of each IPv6 service's interface
/// (the link-layer option the kernel writes, which the rewrite must recognise); IPv4-only
/// states may pass an empty map. Errors: an IPv6 service whose interface has no entry.
Result<std::string> fullScript(const DesiredState& desired,
                               const std::map<std::string, MacAddress>& interface_macs,
                               const NftRulesetOptions& options);

/// A script that only replaces the bucket sets of service `index` (flush + add in one
/// transaction). Valid only while the tables were built by fullScript for the same services.
std::string setUpdateScript(std::size_t index, const ServiceAssignment& assignment,
                            const NftRulesetOptions& options);

/// The same replacement as setUpdateScript, as set contents for setContentsBatch()
/// (nft_batch.h): the owned and the reset set of service `index`, as marks.
std::vector<SetContents> bucketSetContents(std::size_t index, const ServiceAssignment& assignment);

/// Name of the set of windows in which service `index`'s dropped packets are noted.
std::string noteSetName(std::size_t index);
/// Name of the set of packets noted for service `index`.
std::string seenSetName(std::size_t index);
/// Name of the map of service `index`'s forwarded buckets (in the TABLE_fwd tables).
std::string forwardMapName(std::size_t index);
/// Name of the tables that copy released buckets' packets to their takers ("shoal_fwd").
std::string forwardTableName(const NftRulesetOptions& options);

/// The gap bridging of service `index` (ServiceAssignment::gap_noted and ::forwarded) as the
/// contents of its noted set and of its forward map (in its family's TABLE_fwd table), for
/// setContentsBatch().
std::vector<TimedSetContents> gapBridgeContents(std::size_t index,
                                                const ServiceAssignment& assignment,
                                                const NftRulesetOptions& options);

/// The timed buckets of service `index` as the contents of its timed set, for
/// setContentsBatch(): one element per bucket, its mark and window.
TimedSetContents timedSetContents(std::size_t index, const ServiceAssignment& assignment);

/// The lease renewal: the live set's element replaced by itself with a fresh timeout, one
/// prebuilt netlink transaction (nft_batch.h). Valid while the tables were built by
/// fullScript with a lease.
ElementRenewal liveRenewal(const NftRulesetOptions& options);

/// A script that deletes every table fullScript creates, existing or not.
std::string teardownScript(const NftRulesetOptions& options);

/// Commands listing every table fullScript creates, one per table, in a fixed order.
std::vector<std::string> listCommands(const NftRulesetOptions& options);

/// The 16-bit word to write into the reserved field (bytes 6-7) of an ICMPv6 neighbour
/// solicitation/advertisement whose link-layer option changes from `from` to `to`, so that the
/// ICMPv6 checksum stays valid: nft 1.0.6 does not fix checksums after raw payload writes, and
/// receivers must ignore the reserved field (RFC 4861 4.3, 4.4).
uint16_t checksumCompensation(const MacAddress& from, const MacAddress& to);

}  // namespace shoal::dataplane
