#include "core/fingerprint.h"

#include <openssl/evp.h>

#include <memory>
#include <string_view>

namespace shoal {

namespace {

// The canonical encoding: fixed-width big-endian integers, and strings and lists prefixed with
// their length, so no two different definitions encode to the same bytes. Changing it changes
// every fingerprint, so the version tag in clusterFingerprint() must change with it.
class Encoder {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      u8(static_cast<uint8_t>(v >> shift));
    }
  }
  void u64(uint64_t v) {
    u32(static_cast<uint32_t>(v >> 32));
    u32(static_cast<uint32_t>(v));
  }
  void millis(Millis m) { u64(static_cast<uint64_t>(m.count())); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  void ip(const IpAddress& a) {
    u8(static_cast<uint8_t>(a.family));
    const std::size_t n = a.isV4() ? 4 : 16;
    for (std::size_t i = 0; i < n; ++i) {
      u8(a.bytes[i]);
    }
  }
  void mac(const MacAddress& m) {
    for (uint8_t b : m.bytes) {
      u8(b);
    }
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

}  // namespace

std::array<uint8_t, 32> clusterFingerprint(const ClusterDefinition& def) {
  Encoder e;
  e.str("shoal-cluster-fingerprint-v1");
  e.str(def.name);
  e.u8(static_cast<uint8_t>(def.backend));
  e.u8(static_cast<uint8_t>(def.partition_policy));
  e.u32(def.port);
  const TimingProfile& t = def.timing;
  e.millis(t.heartbeat_interval);
  e.millis(t.suspect_after);
  e.millis(t.suspicion_timeout);
  e.millis(t.probe_timeout);
  e.u32(t.indirect_probes);
  e.millis(t.flap_window);
  e.u32(t.flap_threshold);
  e.millis(t.flap_hold_down);
  e.u64(def.services.size());
  for (const Service& s : def.services) {
    e.str(s.name);
    e.ip(s.vip);
    e.str(s.interface);
    e.mac(s.cluster_mac);
    e.u8(static_cast<uint8_t>(s.hash));
    e.u32(s.buckets);
    e.u32(s.seed);
  }
  e.u64(def.nodes.size());
  for (const Node& n : def.nodes) {
    e.str(n.name);
    e.u64(n.addresses.size());
    for (const IpAddress& a : n.addresses) {
      e.ip(a);
    }
    e.u32(n.weight);
  }
  // Only when some link uses multicast, so that unicast clusters keep the fingerprint they had
  // before the option existed (the node list above is length-prefixed: no ambiguity).
  if (!def.heartbeat_groups.empty()) {
    e.str("heartbeat-multicast");
    e.u64(def.heartbeat_groups.size());
    for (const auto& g : def.heartbeat_groups) {
      e.u8(g ? 1 : 0);
      if (g) {
        e.ip(*g);
      }
    }
  }
  std::array<uint8_t, 32> digest{};
  unsigned int len = 0;
  // SHA-256 cannot fail on in-memory input; a failure here means a broken OpenSSL.
  EVP_Digest(e.bytes().data(), e.bytes().size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

uint64_t fingerprint64(const ClusterDefinition& def) {
  const auto d = clusterFingerprint(def);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | d[static_cast<std::size_t>(i)];
  }
  return v;
}

std::string fingerprintHex(const ClusterDefinition& def) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto d = clusterFingerprint(def);
  std::string s;
  for (int i = 0; i < 8; ++i) {
    s += kHex[d[static_cast<std::size_t>(i)] >> 4];
    s += kHex[d[static_cast<std::size_t>(i)] & 0xf];
  }
  return s;
}

}  // namespace shoal
