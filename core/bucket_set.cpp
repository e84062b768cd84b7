#include "core/bucket_set.h"

#include <bit>

namespace shoal {

void BucketSet::set(uint32_t bucket, bool on) {
  if (bucket >= size_) {
    return;
  }
  const uint64_t mask = uint64_t{1} << (bucket % 64);
  if (on) {
    bits_[bucket / 64] |= mask;
  } else {
    bits_[bucket / 64] &= ~mask;
  }
}

bool BucketSet::empty() const {
  for (uint64_t w : bits_) {
    if (w != 0) {
      return false;
    }
  }
  return true;
}

uint32_t BucketSet::count() const {
  uint32_t n = 0;
  for (uint64_t w : bits_) {
    n += static_cast<uint32_t>(std::popcount(w));
  }
  return n;
}

std::vector<uint32_t> BucketSet::list() const {
  std::vector<uint32_t> out;
  for (uint32_t b = 0; b < size_; ++b) {
    if (has(b)) {
      out.push_back(b);
    }
  }
  return out;
}

std::string BucketSet::toBytes() const {
  std::string out((size_ + 7) / 8, '\0');
  for (uint32_t b = 0; b < size_; ++b) {
    if (has(b)) {
      out[b / 8] = static_cast<char>(static_cast<uint8_t>(out[b / 8]) | (1u << (b % 8)));
    }
  }
  while (!out.empty() && out.back() == '\0') {
    out.pop_back();
  }
  return out;
}

BucketSet BucketSet::fromBytes(std::string_view bytes, uint32_t buckets) {
  BucketSet s(buckets);
  const std::size_t n = std::min<std::size_t>(bytes.size(), (buckets + 7) / 8);
  for (std::size_t i = 0; i < n; ++i) {
    const auto byte = static_cast<uint8_t>(bytes[i]);
    for (uint32_t bit = 0; bit < 8; ++bit) {
      if ((byte >> bit) & 1) {
        s.set(static_cast<uint32_t>(i * 8 + bit));
      }
    }
  }
  return s;
}

}  // namespace shoal
