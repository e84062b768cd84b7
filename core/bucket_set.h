#pragma once
// A set of bucket numbers of one service, as a bitmap. Used for the buckets a node holds
// (carried in its heartbeats so peers can take over a released bucket at once) and for the
// buckets the dataplane must answer.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shoal {

class BucketSet {
 public:
  BucketSet() = default;
  /// An empty set for a service with `buckets` buckets.
  explicit BucketSet(uint32_t buckets) : size_(buckets), bits_((buckets + 63) / 64, 0) {}

  uint32_t size() const { return size_; }
  bool has(uint32_t bucket) const {
    return bucket < size_ && ((bits_[bucket / 64] >> (bucket % 64)) & 1) != 0;
  }
  void set(uint32_t bucket, bool on = true);
  bool empty() const;
  uint32_t count() const;
  /// The members in increasing order.
  std::vector<uint32_t> list() const;

  /// Wire form: little-endian bitmap, bucket b is bit b%8 of byte b/8, trailing zero bytes
  /// dropped (an empty set is an empty string).
  std::string toBytes() const;
  /// Reads the wire form for a service with `buckets` buckets; bits beyond it are ignored.
  static BucketSet fromBytes(std::string_view bytes, uint32_t buckets);

  bool operator==(const BucketSet& other) const = default;

 private:
  uint32_t size_ = 0;
  std::vector<uint64_t> bits_;
};

}  // namespace shoal
