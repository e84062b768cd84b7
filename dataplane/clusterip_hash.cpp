#include "dataplane/clusterip_hash.h"

namespace shoal::dataplane::clusterip {
namespace {

constexpr uint32_t kJhashInitval = 0xdeadbeef;

constexpr uint32_t rol32(uint32_t word, unsigned shift) {
  return (word << shift) | (word >> (32 - shift));
}

// A port as ipt_CLUSTERIP reads it: the two network-order bytes loaded as a little-endian
// 16-bit word (shoal targets little-endian CPUs, as the kernel's own reading is CPU order).
constexpr uint32_t wirePort(uint16_t port) {
  return static_cast<uint32_t>(((port & 0xff) << 8) | (port >> 8));
}

}  // namespace

uint32_t jhashWords(uint32_t a, uint32_t b, uint32_t c, uint32_t words, uint32_t seed) {
  const uint32_t initval = seed + kJhashInitval + (words << 2);
  a += initval;
  b += initval;
  c += initval;
  // __jhash_final
  c ^= b;
  c -= rol32(b, 14);
  a ^= c;
  a -= rol32(c, 11);
  b ^= a;
  b -= rol32(a, 25);
  c ^= b;
  c -= rol32(b, 16);
  a ^= c;
  a -= rol32(c, 4);
  b ^= a;
  b -= rol32(a, 14);
  c ^= b;
  c -= rol32(b, 24);
  return c;
}

uint32_t bucketOf(const IpAddress& source, uint16_t source_port, uint16_t dest_port, HashMode mode,
                  uint32_t buckets, uint32_t seed) {
  const uint32_t address = (uint32_t{source.bytes[0]} << 24) | (uint32_t{source.bytes[1]} << 16) |
                           (uint32_t{source.bytes[2]} << 8) | uint32_t{source.bytes[3]};
  uint32_t hash = 0;
  switch (mode) {
    case HashMode::SourceIp:
      hash = jhashWords(address, 0, 0, 1, seed);
      break;
    case HashMode::SourceIpSourcePort:
      hash = jhashWords(address, wirePort(source_port), 0, 2, seed);
      break;
    case HashMode::SourceIpSourcePortDestPort:
      hash = jhashWords(address, wirePort(source_port), wirePort(dest_port), 3, seed);
      break;
  }
  return static_cast<uint32_t>((uint64_t{hash} * buckets) >> 32);
}

}  // namespace shoal::dataplane::clusterip
