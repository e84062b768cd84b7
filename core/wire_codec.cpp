#include "core/wire_codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

namespace shoal {

namespace {

// Domain separation: these keys sign nothing else, but should a future message type share
// them, its MACs cannot be confused with packet MACs.
constexpr std::string_view kMacLabel = "shoal/wire/packet-mac";

// No datagram is larger (UDP's limit); refusing bigger input keeps the int casts the protobuf
// API needs safe.
constexpr std::size_t kMaxDatagram = 65535;

void putBigEndian32(uint8_t* out, uint32_t value) {
  out[0] = static_cast<uint8_t>(value >> 24);
  out[1] = static_cast<uint8_t>(value >> 16);
  out[2] = static_cast<uint8_t>(value >> 8);
  out[3] = static_cast<uint8_t>(value);
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

// True if serializing `packet` gives back exactly `datagram` (no padded varints, no repeated
// or reordered fields, no trailing bytes). Serializes into a stack buffer: this runs for
// every datagram received, so it reuses one buffer per thread instead of allocating.
bool isCanonical(const wire::Packet& packet, std::string_view datagram) {
  const std::size_t size = packet.ByteSizeLong();
  if (size != datagram.size() || size > kMaxDatagram) {
    return false;
  }
  thread_local std::vector<uint8_t> buffer;
  buffer.resize(size);
  const uint8_t* end = packet.SerializeWithCachedSizesToArray(buffer.data());
  return static_cast<std::size_t>(end - buffer.data()) == size &&
         std::equal(static_cast<const uint8_t*>(buffer.data()), end,
                    reinterpret_cast<const uint8_t*>(datagram.data()));
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
// HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states computed once and
// copied per packet: OpenSSL's one-shot HMAC() fetches the algorithm and schedules the key on
// every call, which dominated the cost of a heartbeat. The states of the last few keys used
// on this thread are kept, found by Key::serial(); they are freed (and so wiped) when
// replaced and when the thread ends.
class HmacStates {
 public:
  ~HmacStates() {
    for (Entry& e : entries_) {
      clear(e);
    }
    EVP_MD_CTX_free(scratch_);
  }

  // A context to compute one MAC in, reused for every packet of this thread (allocating one
  // per packet was a measurable part of a heartbeat's cost); nullptr if OpenSSL fails.
  EVP_MD_CTX* scratch() {
    if (scratch_ == nullptr) {
      scratch_ = EVP_MD_CTX_new();
    }
    return scratch_;
  }

  // Inner and outer states for `key`, or nullptr if OpenSSL fails.
  const std::pair<EVP_MD_CTX*, EVP_MD_CTX*>* forKey(const Key& key) {
    for (Entry& e : entries_) {
      if (e.states.first != nullptr && e.serial == key.serial()) {
        return &e.states;
      }
    }
    Entry& e = entries_[next_++ % entries_.size()];
    clear(e);
    const EVP_MD* sha256 = EVP_sha256();
    std::array<uint8_t, 64> pad{};  // SHA-256 block; the 32-byte key is zero-padded
    e.states = {EVP_MD_CTX_new(), EVP_MD_CTX_new()};
    bool ok = e.states.first != nullptr && e.states.second != nullptr;
    for (int outer = 0; outer < 2 && ok; ++outer) {
      for (std::size_t i = 0; i < pad.size(); ++i) {
        const uint8_t k = i < kKeySize ? key.secret()[i] : 0;
        pad[i] = static_cast<uint8_t>(k ^ (outer ? 0x5c : 0x36));
      }
      EVP_MD_CTX* ctx = outer ? e.states.second : e.states.first;
      ok = EVP_DigestInit_ex(ctx, sha256, nullptr) == 1 &&
           EVP_DigestUpdate(ctx, pad.data(), pad.size()) == 1;
    }
    OPENSSL_cleanse(pad.data(), pad.size());
    if (!ok) {
      clear(e);
      return nullptr;
    }
    e.serial = key.serial();
    return &e.states;
  }

 private:
  struct Entry {
    uint64_t serial = 0;  // Key::serial() of the key the states were made from
    std::pair<EVP_MD_CTX*, EVP_MD_CTX*> states{nullptr, nullptr};
  };
  static void clear(Entry& e) {
    EVP_MD_CTX_free(e.states.first);  // frees (and cleanses) the hash states
    EVP_MD_CTX_free(e.states.second);
    e.states = {nullptr, nullptr};
    e.serial = 0;
  }
  std::array<Entry, 4> entries_{};  // a rotation has at most a few keys in use at once
  std::size_t next_ = 0;
  EVP_MD_CTX* scratch_ = nullptr;
};

// HMAC over the label, version, key id and envelope; nullopt if OpenSSL fails (it does not
// for SHA-256 short of memory exhaustion, but a failure must never yield a usable MAC).
std::optional<std::array<uint8_t, kMacSize>> computeMac(const Key& key, uint32_t version,
                                                        std::string_view envelope_bytes) {
  thread_local HmacStates cache;
  const auto* states = cache.forKey(key);
  if (states == nullptr) {
    return std::nullopt;
  }
  std::array<uint8_t, kMacLabel.size() + 8> header{};
  std::copy(kMacLabel.begin(), kMacLabel.end(), header.begin());
  putBigEndian32(header.data() + kMacLabel.size(), version);
  putBigEndian32(header.data() + kMacLabel.size() + 4, key.id());
  std::array<uint8_t, kMacSize> inner{};
  std::array<uint8_t, kMacSize> mac{};
  unsigned int inner_len = 0;
  unsigned int mac_len = 0;
  EVP_MD_CTX* ctx = cache.scratch();
  const bool ok = ctx != nullptr && EVP_MD_CTX_copy_ex(ctx, states->first) == 1 &&
                  EVP_DigestUpdate(ctx, header.data(), header.size()) == 1 &&
                  EVP_DigestUpdate(ctx, envelope_bytes.data(), envelope_bytes.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, inner.data(), &inner_len) == 1 && inner_len == kMacSize &&
                  EVP_MD_CTX_copy_ex(ctx, states->second) == 1 &&
                  EVP_DigestUpdate(ctx, inner.data(), inner.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, mac.data(), &mac_len) == 1 && mac_len == kMacSize;
  if (!ok) {
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
  envelope.set_receiver(receiver);
  envelope.set_to_all(false);
  return sealHeader(keys, std::move(envelope));
}

std::string PacketSealer::sealToAll(const Keyring& keys, wire::Envelope envelope) {
  envelope.set_receiver(0);
  envelope.set_to_all(true);
  return sealHeader(keys, std::move(envelope));
}

std::string PacketSealer::sealHeader(const Keyring& keys, wire::Envelope envelope) {
  envelope.set_cluster(cluster_);
  envelope.set_sender(self_);
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
      !isCanonical(packet, datagram)) {
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
  if (envelope.to_all()) {
    // Only a heartbeat that wants no answer says the same to every node; a probe, an ack or
    // a state exchange is meant for one receiver and must not be accepted by the others.
    if (envelope.body_case() != wire::Envelope::kHeartbeat ||
        envelope.heartbeat().probe_id() != 0) {
      return Opened::reject(Rejection::Malformed);
    }
  } else if (envelope.receiver() != identity.self) {
    return Opened::reject(Rejection::Replay);
  }
  return Opened::accept(std::move(envelope), key->id());
}

}  // namespace shoal
