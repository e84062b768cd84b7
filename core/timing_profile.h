#pragma once
// Named membership timing presets and the consistency rules every timing profile obeys.
// Pure functions: the loader uses them to expand `timing: default` or `timing: fast` and to
// check the overrides of the map form; the membership layer only reads TimingProfile values.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/cluster_definition.h"

namespace shoal {

/// The preset called `name` ("default" or "fast"), or nullopt for any other name. Every value
/// is commented in timing_profile.cpp with the reason for it.
std::optional<TimingProfile> timingPreset(std::string_view name);

/// The names timingPreset() accepts, in the order they are documented.
std::vector<std::string> timingPresetNames();

/// One rule a timing profile breaks. `field` is the key of the timing map that must change
/// (e.g. "suspect_after_ms"); `message` says what was expected.
struct TimingIssue {
  std::string field;
  std::string message;
};

/// Checks ranges and consistency (e.g. suspect_after at least two heartbeat intervals, a probe
/// timeout no longer than one heartbeat interval). Returns every issue found, empty if the
/// profile is usable. Both presets pass.
std::vector<TimingIssue> checkTimingProfile(const TimingProfile& timing);

}  // namespace shoal
