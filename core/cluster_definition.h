#pragma once
// The cluster definition: the one YAML file that every node of a cluster shares.
// These are plain values; core/config_loader.h reads and validates them, and
// core/fingerprint.h digests the parts that must be identical on all nodes.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ip_address.h"

namespace shoal {

using Millis = std::chrono::milliseconds;

/// Largest cluster shoal manages: CLUSTERIP's node numbers are limited to 16, and the
/// rebalance and the heartbeat size are designed and tested for it.
inline constexpr std::size_t kMaxNodes = 16;
/// Largest bucket count of the CLUSTERIP backend (its --total-nodes limit).
inline constexpr uint32_t kMaxClusterIpBuckets = 16;
/// Largest bucket count of the nftables backend (one set element per bucket; the limit keeps
/// rebalance and rule updates small).
inline constexpr uint32_t kMaxBuckets = 4096;

/// Which packet fields a service hashes into a bucket (the CLUSTERIP names).
enum class HashMode : uint8_t {
  SourceIp,                    ///< all connections from one client go to one node
  SourceIpSourcePort,          ///< spreads one client's connections over nodes
  SourceIpSourcePortDestPort,  ///< also separates the destination ports of one client
};

/// The kernel mechanism that enforces bucket ownership.
enum class Backend : uint8_t {
  Auto,       ///< nftables where the kernel has it, else CLUSTERIP
  Nftables,   ///< nftables jhash rules (any modern kernel)
  ClusterIp,  ///< iptables CLUSTERIP target (kernels up to 6.2)
};

/// One load-shared virtual IP.
struct Service {
  std::string name;        ///< unique within the cluster; nftables objects are named after it
  IpAddress vip;           ///< the load-shared address, IPv4 or IPv6; unique in the definition
  std::string interface;   ///< LAN interface that carries the VIP
  MacAddress cluster_mac;  ///< multicast MAC answered for the VIP (33:33:.. for IPv6)
  HashMode hash = HashMode::SourceIp;  ///< default: one client's connections stay on one node
  uint32_t buckets = 16;  ///< 1..kMaxBuckets; at most kMaxClusterIpBuckets on CLUSTERIP
  /// jhash seed. Every node must use the same one, or two nodes would answer one client: when
  /// the file gives none, the loader derives it from the cluster and service names
  /// (defaultServiceSeed() in core/config_loader.h), never from anything node-local.
  uint32_t seed = 0;
};

/// One cluster member.
struct Node {
  std::string name;
  /// Management addresses, one per heartbeat link; link i of every node forms heartbeat
  /// network i.
  std::vector<IpAddress> addresses;
  uint32_t weight = 1;  ///< share of buckets relative to the other nodes' weights
};

/// Membership timing. Every field says why it has its value in timing_profile.cpp.
struct TimingProfile {
  std::string name = "default";
  Millis heartbeat_interval{50};  ///< each node heartbeats each peer on each link this often
  Millis suspect_after{150};      ///< silence on every link before a peer is suspected
  Millis suspicion_timeout{100};  ///< suspect this long without refutation -> dead
  Millis probe_timeout{40};       ///< wait for a direct ack before probing indirectly
  uint32_t indirect_probes = 3;   ///< k members asked to probe a silent peer for us
  Millis flap_window{60000};      ///< deaths counted within this window for flap damping
  uint32_t flap_threshold = 3;    ///< deaths within flap_window that trigger a hold-down
  Millis flap_hold_down{30000};   ///< a flapping node is held out this long
};

/// A local health check. The schema is shared; what each kind does is in the daemon.
struct HealthCheck {
  enum class Kind : uint8_t { Link, Script, Load, Disk, Reach };
  std::string name;
  Kind kind = Kind::Link;
  std::string target;    ///< interface, script path, mount point or host[:port], by kind
  double threshold = 0;  ///< load average or free-disk percentage, by kind
  Millis interval{1000};
  Millis timeout{1000};
  uint32_t rise = 2;  ///< consecutive passes before a failed check counts as healthy
  uint32_t fall = 2;  ///< consecutive failures before it counts as failed
};

/// What a node does when it cannot see a majority of the configured nodes.
enum class PartitionPolicy : uint8_t {
  Majority,  ///< serve only while this node sees more than half of the configured nodes
  ServeAll,  ///< every partition serves all buckets (duplicates while partitioned)
};

/// The whole cluster definition.
struct ClusterDefinition {
  std::string source_path;  ///< file it was read from (for messages)
  std::string name;
  std::vector<Service> services;
  std::vector<Node> nodes;  ///< in file order; a node's index is its id on the wire
  TimingProfile timing;
  std::string key_file;  ///< absolute, or relative to the definition file's folder
  Backend backend = Backend::Auto;
  PartitionPolicy partition_policy = PartitionPolicy::Majority;
  std::vector<HealthCheck> health_checks;
  /// How long a node whose failed checks recovered stays drained before it serves again
  /// (against flapping health). Local policy: not part of the fingerprint, reloaded on SIGHUP.
  Millis health_hold_down{10000};
  /// How much later than the node handing a bucket over this node starts answering it at a
  /// planned hand-over (membership/ownership.h, OwnershipInput::take_margin): covers one
  /// node processing a client's packet later than another after it reached both. 250 us
  /// covers NIC interrupt moderation (adaptive rx-usecs of common NICs holds a frame up to
  /// 50-200 us) on both nodes; a bigger value risks fewer answers twice and loses more
  /// requests at each move. Local policy: not part of the fingerprint, reloaded on SIGHUP.
  std::chrono::microseconds handoff_margin{250};
  /// Bridge the gap of a planned hand-over (nftables where the kernel can: the releaser
  /// copies the gap's packets to the taker, which answers those it dropped;
  /// dataplane/dataplane.h, ForwardedBucket). Local policy: not part of the fingerprint;
  /// read at start (the dataplane's rules depend on it).
  bool handoff_bridge = true;
  /// How long a stopping node (SIGTERM) keeps serving the TCP connections it accepted after
  /// it has handed its buckets over; it leaves as soon as none is open (nftables only:
  /// CLUSTERIP answers by bucket only, a moved bucket's connections break there). 0: leave
  /// at once, which breaks them. Local policy: not part of the fingerprint, reloaded on SIGHUP.
  Millis leave_linger{5000};
  /// Scripts (absolute paths) run on every node on bucket and node changes, in order
  /// (cli/notify_hooks.h). Local policy: not part of the fingerprint, reloaded on SIGHUP.
  std::vector<std::string> notify_hooks;
  /// UDP port of the heartbeat sockets, the same on every node and link. 7400 is unassigned
  /// by IANA, above the privileged range and below the ephemeral range (32768+), so no
  /// outgoing connection of the host is ever given it by chance.
  uint16_t port = 7400;
  /// Per heartbeat link, the multicast group its heartbeats go to, or nullopt for unicast to
  /// each peer (the default). Empty when the file sets none. Only the heartbeats of a round
  /// use the group: probes, acks and claims stay unicast. Every node must agree (it is part
  /// of the fingerprint): a node that sends to a group its peers have not joined is not heard.
  std::vector<std::optional<IpAddress>> heartbeat_groups;

  /// Index of the node called `name`, or -1.
  int nodeIndex(const std::string& node_name) const;
  /// The multicast group of heartbeat link `link`, or nullptr if that link is unicast.
  const IpAddress* heartbeatGroup(std::size_t link) const {
    return link < heartbeat_groups.size() && heartbeat_groups[link] ? &*heartbeat_groups[link]
                                                                    : nullptr;
  }
};

const char* toString(HashMode mode);
const char* toString(Backend backend);
const char* toString(PartitionPolicy policy);

}  // namespace shoal
