#include "dataplane/jhash.h"

#include <bit>

namespace shoal::dataplane {
namespace {

constexpr uint32_t kInitVal = 0xdeadbeef;  // JHASH_INITVAL

uint32_t readLittle32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// lookup3's mix(): reversibly stirs three words after each full 12-byte block.
void mix(uint32_t& a, uint32_t& b, uint32_t& c) {
  a -= c; a ^= std::rotl(c, 4);  c += b;
  b -= a; b ^= std::rotl(a, 6);  a += c;
  c -= b; c ^= std::rotl(b, 8);  b += a;
  a -= c; a ^= std::rotl(c, 16); c += b;
  b -= a; b ^= std::rotl(a, 19); a += c;
  c -= b; c ^= std::rotl(b, 4);  b += a;
}

// lookup3's final(): avalanches the last block into c.
void finalMix(uint32_t& a, uint32_t& b, uint32_t& c) {
  c ^= b; c -= std::rotl(b, 14);
  a ^= c; a -= std::rotl(c, 11);
  b ^= a; b -= std::rotl(a, 25);
  c ^= b; c -= std::rotl(b, 16);
  a ^= c; a -= std::rotl(c, 4);
  b ^= a; b -= std::rotl(a, 14);
  c ^= b; c -= std::rotl(b, 24);
}

void appendPort(std::vector<uint8_t>& out, uint16_t port) {
  // Network byte order as on the wire, then the register's two zero pad bytes.
  out.push_back(static_cast<uint8_t>(port >> 8));
  out.push_back(static_cast<uint8_t>(port & 0xff));
  out.push_back(0);
  out.push_back(0);
}

}  // namespace

uint32_t jhash(std::span<const uint8_t> bytes, uint32_t seed) {
  auto length = static_cast<uint32_t>(bytes.size());
  uint32_t a = kInitVal + length + seed;
  uint32_t b = a;
  uint32_t c = a;
  const uint8_t* k = bytes.data();
  while (length > 12) {
    a += readLittle32(k);
    b += readLittle32(k + 4);
    c += readLittle32(k + 8);
    mix(a, b, c);
    length -= 12;
    k += 12;
  }
  if (length == 0) return c;  // nothing left: the kernel skips the final mix
  // The 1..12 tail bytes are added into a, b, c little-endian; missing bytes count as zero.
  uint32_t tail[3] = {0, 0, 0};
  for (uint32_t i = 0; i < length; ++i) tail[i / 4] |= static_cast<uint32_t>(k[i]) << (8 * (i % 4));
  a += tail[0];
  b += tail[1];
  c += tail[2];
  finalMix(a, b, c);
  return c;
}

uint32_t reciprocalScale(uint32_t hash, uint32_t modulus) {
  return static_cast<uint32_t>((static_cast<uint64_t>(hash) * modulus) >> 32);
}

bool protocolHasPorts(uint8_t ip_protocol) {
  switch (ip_protocol) {
    case 6:    // TCP
    case 17:   // UDP
    case 33:   // DCCP
    case 132:  // SCTP
    case 136:  // UDP-Lite
      return true;
    default:
      return false;
  }
}

std::vector<uint8_t> hashInput(const FlowKey& flow, HashMode mode) {
  std::vector<uint8_t> out;
  const std::size_t address_length = flow.source.isV4() ? 4 : 16;
  out.insert(out.end(), flow.source.bytes.begin(), flow.source.bytes.begin() + address_length);
  if (mode == HashMode::SourceIp || !protocolHasPorts(flow.protocol)) return out;
  appendPort(out, flow.source_port);
  if (mode == HashMode::SourceIpSourcePortDestPort) appendPort(out, flow.dest_port);
  return out;
}

uint32_t bucketOf(const FlowKey& flow, HashMode mode, uint32_t buckets, uint32_t seed) {
  const std::vector<uint8_t> bytes = hashInput(flow, mode);
  return reciprocalScale(jhash(bytes, seed), buckets);
}

}  // namespace shoal::dataplane
