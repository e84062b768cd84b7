#pragma once
// Safety checks on the cluster key file, shared by the definition's validation and the
// keyring loader.

#include <string>

#include "core/result.h"

namespace shoal {

/// Checks that `path` names a regular file that only its owner can read or write (no group
/// or other permission bits) and that is owned by root or by the effective user. A key that
/// others can read lets them forge heartbeats and take the cluster's buckets. Returns an error
/// that says what is wrong and how to fix it (e.g. "chmod 600 PATH").
Status checkKeyFileSafety(const std::string& path);

}  // namespace shoal
