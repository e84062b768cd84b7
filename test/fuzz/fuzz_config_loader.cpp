// libFuzzer target for the cluster definition loader: every input must give either a
// definition or at least one located error, and must not throw or crash. Built only with
// clang (see CMakeLists.txt here); run with the corpus as seeds, e.g.
//   ./fuzz_config_loader -max_total_time=600 corpus/ ../etc ../test/configs/good
//   ../test/configs/bad
// (the first folder collects new inputs; the others are read as seeds).

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  shoal::LoadOptions options;
  options.check_key_file = false;  // no file system access: keeps runs reproducible
  const shoal::LoadResult r = shoal::parseClusterDefinition(text, "fuzz.yaml", options);
  if (r.definition.has_value() == !r.errors.empty()) {
    std::abort();
  }
  for (const auto& e : r.errors) {
    if (e.line < 1 || e.column < 1 || e.message.empty()) {
      std::abort();
    }
  }
  return 0;
}
