#pragma once
// Small text helpers shared by shoalctl's reports.

#include <cstdint>
#include <string>
#include <vector>

namespace shoal::cli {

/// "0-3,7,9-10" for a sorted bucket list; "-" when empty.
std::string bucketRanges(const std::vector<uint32_t>& buckets);

}  // namespace shoal::cli
