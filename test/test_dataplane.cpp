#include <doctest/doctest.h>

#include "dataplane/jhash.h"

TEST_CASE("jhash matches lookup3's published test vectors") {
  const char* s = "Four score and seven years ago";
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(s), 30);
  CHECK(shoal::dataplane::jhash(bytes, 0) == 0x17770551u);
  CHECK(shoal::dataplane::jhash(bytes, 1) == 0xcd628161u);
}
