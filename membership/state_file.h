#pragma once
// Small files that must survive a crash whole or not at all (the drain state): written to a
// temporary file in the same folder, synced, renamed over the old one and the folder synced.
// The only file IO of the membership layer; the core itself never touches a file.

#include <string>

#include "core/result.h"

namespace shoal {

/// Replaces the file at `path` with `contents` atomically: a reader (or a node restarting after
/// a power cut) sees either the old or the new contents. The file gets mode 0644. Errors name
/// the path and the failing step with strerror().
Status writeFileAtomically(const std::string& path, const std::string& contents);

/// The contents of the file at `path`. A missing file is an error whose message starts with
/// "missing:" so callers can treat a first start (no state yet) apart from a real failure.
Result<std::string> readSmallFile(const std::string& path);

}  // namespace shoal
