#pragma once
// Reads and validates the cluster definition (the YAML file every node shares; see
// etc/cluster.yaml for a commented example).
//
// Validation reports every problem of a file at once, each located at file:line:column with
// the field's path (e.g. `services[0].cluster_mac`, `nodes[3].addresses[1]`) and what was
// expected, ordered by position. No input makes the loader throw or crash: malformed YAML is
// one more located error.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/cluster_definition.h"

namespace shoal {

/// One problem found in a cluster definition.
struct ConfigError {
  std::string file;     ///< the path given to the loader (or path_for_messages)
  int line = 1;         ///< 1-based
  int column = 1;       ///< 1-based
  std::string field;    ///< path of the field, e.g. "nodes[3].addresses[1]"; "" for the whole file
  std::string message;  ///< what was found and what was expected

  /// "file:line:column: field: message" (the "field: " part is left out when field is empty).
  std::string toString() const;
};

/// What the loader checks besides the file itself.
struct LoadOptions {
  /// Check that the key file exists and is safe (checkKeyFileSafety()). Turn it off to
  /// validate a definition on a machine that does not hold the cluster key.
  bool check_key_file = true;
};

/// The outcome of loading: a definition when the file is valid, otherwise every error found.
struct LoadResult {
  std::optional<ClusterDefinition> definition;  ///< set only when errors is empty
  std::vector<ConfigError> errors;              ///< ordered by line, then column

  bool ok() const { return definition.has_value() && errors.empty(); }
};

/// Largest definition file the loader reads. A real definition is a few KiB; the limit keeps a
/// wrong path (a log, a disk image) from being read into memory.
inline constexpr std::size_t kMaxDefinitionBytes = 1 << 20;

/// Most errors reported for one file; a file with more is not a definition with typos, and the
/// last error says that the list was cut.
inline constexpr std::size_t kMaxReportedErrors = 200;

/// Reads and validates the definition at `path`. A file that cannot be read is one error at
/// line 1. Never throws.
LoadResult loadClusterDefinition(const std::string& path, const LoadOptions& options = {});

/// Validates definition text. `path_for_messages` is used in errors and as
/// ClusterDefinition::source_path (so a relative key_file resolves against its folder).
/// Never throws.
LoadResult parseClusterDefinition(std::string_view yaml, const std::string& path_for_messages,
                                  const LoadOptions& options = {});

/// The key file of `def` as an absolute, lexically normalised path: key_file itself when it is
/// absolute, else key_file resolved against the folder of def.source_path (made absolute
/// against the current directory when source_path is relative).
std::string resolveKeyFilePath(const ClusterDefinition& def);

/// The jhash seed of a service whose definition gives none: the first four bytes (big-endian)
/// of SHA-256("shoal-seed", cluster name, service name). Every node derives the same seed from
/// the same file, and two services or clusters on one LAN get different seeds.
uint32_t defaultServiceSeed(std::string_view cluster_name, std::string_view service_name);

}  // namespace shoal
