// Bucket sets and their wire form.

#include "core/bucket_set.h"

#include <doctest/doctest.h>

using shoal::BucketSet;

TEST_CASE("bucket set holds exactly what was set, within its size") {
  BucketSet s(70);
  CHECK(s.empty());
  s.set(0);
  s.set(63);
  s.set(64);
  s.set(69);
  s.set(70);  // out of range: ignored
  CHECK(s.count() == 4);
  CHECK(s.list() == std::vector<uint32_t>{0, 63, 64, 69});
  CHECK_FALSE(s.has(70));
  s.set(63, false);
  CHECK_FALSE(s.has(63));
  CHECK(s.count() == 3);
}

TEST_CASE("bucket set wire form round-trips and is compact") {
  BucketSet s(256);
  CHECK(s.toBytes().empty());
  s.set(3);
  s.set(9);
  const auto bytes = s.toBytes();
  CHECK(bytes.size() == 2);
  CHECK(BucketSet::fromBytes(bytes, 256) == s);
  for (uint32_t b = 0; b < 256; b += 7) {
    s.set(b);
  }
  CHECK(BucketSet::fromBytes(s.toBytes(), 256) == s);
}

TEST_CASE("bucket set ignores wire bits beyond the service's buckets") {
  const std::string all(4, '\xff');
  const auto s = BucketSet::fromBytes(all, 10);
  CHECK(s.count() == 10);
  CHECK(BucketSet::fromBytes("", 10).empty());
}
