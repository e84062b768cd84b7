#include "core/wire_codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <numeric>
#include <optional>
#include <utility>

namespace shoal {

namespace {

// Domain separation: these keys sign nothing else, but should a future message type share
// them, its MACs cannot be confused with packet MACs.
constexpr std::string_view kMacLabel = "shoal/wire/packet-mac";

// No datagram is larger (UDP's limit); refusing bigger input keeps the int casts the protobuf
// API needs safe.
constexpr std::size_t kMaxDatagram = 65535;

void appendBigEndian32(std::string& out, uint32_t value) {
  out += static_cast<char>(value >> 24);
  out += static_cast<char>(value >> 16);
  out += static_cast<char>(value >> 8);
  out += static_cast<char>(value);
}

bool nodeInRange(uint32_t node, const WireIdentity& identity) {
  return node < identity.node_count;
}

bool updatesInRange(const google::protobuf::RepeatedPtrField<wire::MemberUpdate>& updates,
                    const WireIdentity& identity) {
  for (const wire::MemberUpdate& update : updates) {
    if (!nodeInRange(update.node(), identity)) {
      return false;
    }
    // A drain never written has writer 0, which is in range for any cluster.
    if (!nodeInRange(update.drain().writer(), identity)) {
      return false;
    }
  }
  return true;
}

// Every node index the envelope names must exist, so the membership layer can index its
// tables with them without checking again.
bool indicesInRange(const wire::Envelope& envelope, const WireIdentity& identity) {
  if (!nodeInRange(envelope.sender(), identity)) {
    return false;
  }
  switch (envelope.body_case()) {
    case wire::Envelope::kHeartbeat:
      return updatesInRange(envelope.heartbeat().updates(), identity);
    case wire::Envelope::kAck:
      return nodeInRange(envelope.ack().target(), identity) &&
             updatesInRange(envelope.ack().updates(), identity);
    case wire::Envelope::kIndirectProbe:
      return nodeInRange(envelope.indirect_probe().target(), identity) &&
             updatesInRange(envelope.indirect_probe().updates(), identity);
    case wire::Envelope::kStateExchange:
      return updatesInRange(envelope.state_exchange().members(), identity);
    case wire::Envelope::kLeave:
      return true;
    case wire::Envelope::BODY_NOT_SET:
      return false;
  }
  return false;
}

}  // namespace

const char* toString(Rejection reason) {
  switch (reason) {
    case Rejection::Malformed:
      return "malformed";
    case Rejection::UnknownKey:
      return "unknown_key";
    case Rejection::BadMac:
      return "bad_mac";
    case Rejection::Replay:
      return "replay";
    case Rejection::OtherCluster:
      return "other_cluster";
    case Rejection::UnsupportedVersion:
      return "unsupported_version";
  }
  return "unknown";
}

uint64_t RejectionCounters::total() const {
  return std::accumulate(counts.begin(), counts.end(), uint64_t{0});
}

namespace {

// HMAC over the label, version, key id and envelope; nullopt if OpenSSL fails (it does not
// for SHA-256 short of memory exhaustion, but a failure must never yield a usable MAC).
std::optional<std::array<uint8_t, kMacSize>> computeMac(const Key& key, uint32_t version,
                                                        std::string_view envelope_bytes) {
  std::string input;
  input.reserve(kMacLabel.size() + 8 + envelope_bytes.size());
  input += kMacLabel;
  appendBigEndian32(input, version);
  appendBigEndian32(input, key.id());
  input += envelope_bytes;
  std::array<uint8_t, kMacSize> mac{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), key.secret().data(), static_cast<int>(key.secret().size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac.data(),
           &length) == nullptr ||
      length != kMacSize) {
    return std::nullopt;
  }
  return mac;
}

}  // namespace

std::array<uint8_t, kMacSize> packetMac(const Key& key, uint32_t version,
                                        std::string_view envelope_bytes) {
  // All zeros on failure: receivers never accept it (openPacket computes its own MAC and
  // rejects when that fails).
  return computeMac(key, version, envelope_bytes).value_or(std::array<uint8_t, kMacSize>{});
}

std::string sealEnvelope(const Key& key, const wire::Envelope& envelope) {
  wire::Packet packet;
  packet.set_version(kWireVersion);
  packet.set_key_id(key.id());
  packet.set_envelope(envelope.SerializeAsString());
  const auto mac = packetMac(key, kWireVersion, packet.envelope());
  packet.set_mac(mac.data(), mac.size());
  return packet.SerializeAsString();
}

PacketSealer::PacketSealer(uint64_t cluster, uint32_t self, uint64_t boot_id)
    : cluster_(cluster), self_(self), boot_id_(boot_id) {}

std::string PacketSealer::seal(const Keyring& keys, uint32_t receiver, wire::Envelope envelope) {
  envelope.set_cluster(cluster_);
  envelope.set_sender(self_);
  envelope.set_receiver(receiver);
  envelope.set_boot_id(boot_id_);
  envelope.set_sequence(next_sequence_++);
  return sealEnvelope(keys.primary(), envelope);
}

Opened Opened::accept(wire::Envelope envelope, uint32_t key_id) {
  Opened opened;
  opened.ok_ = true;
  opened.key_id_ = key_id;
  opened.envelope_ = std::move(envelope);
  return opened;
}

Opened Opened::reject(Rejection reason) {
  Opened opened;
  opened.reason_ = reason;
  return opened;
}

Opened Opened::reject(Rejection reason, wire::Envelope authentic) {
  Opened opened;
  opened.reason_ = reason;
  opened.envelope_ = std::move(authentic);
  return opened;
}

Opened openPacket(std::string_view datagram, const Keyring& keys, const WireIdentity& identity) {
  if (datagram.size() > kMaxDatagram) {
    return Opened::reject(Rejection::Malformed);
  }
  wire::Packet packet;
  if (!packet.ParseFromArray(datagram.data(), static_cast<int>(datagram.size()))) {
    return Opened::reject(Rejection::Malformed);
  }
  // Only the canonical encoding is accepted, so the unauthenticated outer layer has exactly
  // one form: no unknown or repeated fields, no padded varints, no trailing bytes.
  if (packet.version() == 0 || !packet.GetReflection()->GetUnknownFields(packet).empty() ||
      packet.SerializeAsString() != datagram) {
    return Opened::reject(Rejection::Malformed);
  }
  if (packet.version() != kWireVersion) {
    return Opened::reject(Rejection::UnsupportedVersion);
  }
  const Key* key = keys.find(packet.key_id());
  if (key == nullptr) {
    return Opened::reject(Rejection::UnknownKey);
  }
  const auto expected = computeMac(*key, packet.version(), packet.envelope());
  if (!expected || packet.mac().size() != kMacSize ||
      CRYPTO_memcmp(expected->data(), packet.mac().data(), kMacSize) != 0) {
    return Opened::reject(Rejection::BadMac);
  }
  // Authentic from here on: parse the very bytes the MAC covered.
  wire::Envelope envelope;
  if (!envelope.ParseFromString(packet.envelope()) ||
      envelope.body_case() == wire::Envelope::BODY_NOT_SET) {
    return Opened::reject(Rejection::Malformed);
  }
  if (envelope.cluster() != identity.cluster) {
    return Opened::reject(Rejection::OtherCluster, std::move(envelope));
  }
  if (!indicesInRange(envelope, identity)) {
    return Opened::reject(Rejection::Malformed);
  }
  if (envelope.receiver() != identity.self) {
    return Opened::reject(Rejection::Replay);
  }
  return Opened::accept(std::move(envelope), key->id());
}

}  // namespace shoal
