#include "cli/text_format.h"

namespace shoal::cli {

std::string bucketRanges(const std::vector<uint32_t>& buckets) {
  std::string out;
  for (std::size_t i = 0; i < buckets.size();) {
    std::size_t j = i;
    while (j + 1 < buckets.size() && buckets[j + 1] == buckets[j] + 1) {
      ++j;
    }
    out += (out.empty() ? "" : ",") + std::to_string(buckets[i]);
    if (j > i) {
      out += '-' + std::to_string(buckets[j]);
    }
    i = j + 1;
  }
  return out.empty() ? "-" : out;
}

}  // namespace shoal::cli
