#pragma once
// Sealing and opening shoal's signed packets (proto/shoal.proto): the envelope is signed
// with HMAC-SHA256 over its exact bytes and verified, in constant time, before anything in
// it is parsed or trusted.
//
// IO-free: callers hand in bytes and get bytes or a verdict back. Rejections are counted
// by reason (RejectionCounters), never logged one by one.
//
// Receiving a packet:
//   Opened opened = openPacket(bytes, keyring, identity);
//   if (!opened.ok()) { counters.bump(opened.reason()); return; }
//   const wire::Envelope& env = opened.envelope();
//   if (!isAccepted(guard.check(env.sender(), env.boot_id(), env.sequence()))) {
//     counters.bump(Rejection::Replay); return;
//   }
//   ... process ...; guard.commit(env.sender(), env.boot_id(), env.sequence());

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core/keyring.h"
#include "proto/shoal.pb.h"

namespace shoal {

/// The wire format version this build seals and accepts.
inline constexpr uint32_t kWireVersion = 1;
/// Largest datagram payload shoal sends: fits a 1,500-byte Ethernet MTU with IPv6 and UDP
/// headers and some room for tunnels. Senders keep piggybacked updates within it.
inline constexpr std::size_t kMaxPacketSize = 1400;
/// Length of a packet MAC (HMAC-SHA256).
inline constexpr std::size_t kMacSize = 32;

/// Why a received packet was dropped. Every value is counted by the receiving layer.
enum class Rejection : uint8_t {
  Malformed,           ///< not a canonical Packet, an envelope that does not parse or has no
                       ///< body, or a node index outside the cluster
  UnknownKey,          ///< signed with a key id this node does not have installed
  BadMac,              ///< the MAC does not match: corrupted, forged or a different key
  Replay,              ///< already seen, too old, from an older boot, or addressed to
                       ///< another node
  OtherCluster,        ///< authentic but from a node with a different cluster definition
  UnsupportedVersion,  ///< a wire format version this build does not speak
};
/// Number of Rejection values (size of a counter array).
inline constexpr std::size_t kRejectionCount = 6;

/// Stable snake_case name for status output: "malformed", "unknown_key", "bad_mac",
/// "replay", "other_cluster", "unsupported_version".
const char* toString(Rejection reason);

/// Rejected packets per reason, bumped by the receiving layer.
struct RejectionCounters {
  std::array<uint64_t, kRejectionCount> counts{};

  void bump(Rejection reason) { ++counts[static_cast<std::size_t>(reason)]; }
  uint64_t operator[](Rejection reason) const { return counts[static_cast<std::size_t>(reason)]; }
  /// Sum over all reasons.
  uint64_t total() const;
};

/// Who this node is on the wire, as the receiver checks incoming packets against it.
struct WireIdentity {
  uint64_t cluster = 0;     ///< fingerprint64() of this node's cluster definition
  uint32_t self = 0;        ///< this node's index in the definition's node list
  uint32_t node_count = 0;  ///< number of nodes in the definition
};

/// The MAC of a packet: HMAC-SHA256(key, "shoal/wire/packet-mac" || be32(version) ||
/// be32(key.id()) || envelope_bytes). Used by sealing; public for tests and tools that build
/// packets by hand. Should OpenSSL fail, returns all zeros, which openPacket() never accepts.
std::array<uint8_t, kMacSize> packetMac(const Key& key, uint32_t version,
                                        std::string_view envelope_bytes);

/// Seals a complete envelope (header fields and body already set) with `key`: serializes it,
/// signs it and returns the datagram payload. Most callers use PacketSealer instead.
std::string sealEnvelope(const Key& key, const wire::Envelope& envelope);

/// Seals outgoing packets of one boot of this node: fills in the envelope header (cluster,
/// sender, receiver, boot id, next sequence number) and signs with the keyring's primary.
class PacketSealer {
 public:
  /// `cluster` is fingerprint64() of the definition, `self` this node's index, `boot_id`
  /// this run's newBootId(). Sequence numbers start at 1.
  PacketSealer(uint64_t cluster, uint32_t self, uint64_t boot_id);

  /// Returns the datagram payload for `envelope` (its body set by the caller; header fields
  /// are overwritten) addressed to node `receiver`. Uses one sequence number. The keyring is
  /// passed on every call so a reloaded keyring takes effect at once. The result may exceed
  /// kMaxPacketSize if the caller put too much in the body; callers check .size().
  std::string seal(const Keyring& keys, uint32_t receiver, wire::Envelope envelope);

  /// Like seal(), but addressed to every node (Envelope.to_all): one datagram the caller
  /// sends unchanged to each peer. Only for a Heartbeat with probe_id 0; openPacket()
  /// rejects anything else sealed this way as malformed.
  std::string sealToAll(const Keyring& keys, wire::Envelope envelope);

  /// Sequence number the next seal() will use.
  uint64_t nextSequence() const { return next_sequence_; }
  uint64_t bootId() const { return boot_id_; }

 private:
  std::string sealHeader(const Keyring& keys, wire::Envelope envelope);

  uint64_t cluster_;
  uint32_t self_;
  uint64_t boot_id_;
  uint64_t next_sequence_ = 1;
};

/// The outcome of openPacket(): an authenticated envelope or the reason it was rejected.
class Opened {
 public:
  static Opened accept(wire::Envelope envelope, uint32_t key_id);
  static Opened reject(Rejection reason);
  /// A rejection of an authentic envelope (OtherCluster): keeps it for the report.
  static Opened reject(Rejection reason, wire::Envelope authentic);

  bool ok() const { return ok_; }
  /// Why the packet was rejected; meaningful only when !ok().
  Rejection reason() const { return reason_; }
  /// The verified envelope when ok(). Also set, MAC verified, for an OtherCluster rejection so
  /// the caller can report the peer's fingerprint (cluster()) and claimed node index
  /// (sender()); empty for every other rejection.
  const wire::Envelope& envelope() const& { return envelope_; }
  wire::Envelope&& envelope() && { return std::move(envelope_); }
  /// Id of the key that verified it (for per-key statistics during rotation).
  uint32_t keyId() const { return key_id_; }

 private:
  bool ok_ = false;
  Rejection reason_ = Rejection::Malformed;
  uint32_t key_id_ = 0;
  wire::Envelope envelope_;
};

/// Verifies and parses one received datagram. Checks, in this order, each failing with the
/// reason given: the outer Packet parses and is canonically encoded with a nonzero version
/// (Malformed); version == kWireVersion (UnsupportedVersion); key id installed in `keys`
/// (UnknownKey); MAC matches, compared with CRYPTO_memcmp (BadMac); the envelope parses and
/// has a body (Malformed); its cluster equals identity.cluster (OtherCluster); the sender and
/// every node index in the body (update nodes, drain writers, probe targets) are below
/// identity.node_count (Malformed); the receiver is identity.self (Replay), unless the
/// envelope is addressed to all nodes, which only a Heartbeat with probe_id 0 may be
/// (Malformed otherwise). Nothing is parsed from the envelope before its MAC verified. Replay of
/// sequence numbers is the caller's next step (ReplayGuard). Never throws; any input is safe.
Opened openPacket(std::string_view datagram, const Keyring& keys, const WireIdentity& identity);

}  // namespace shoal
