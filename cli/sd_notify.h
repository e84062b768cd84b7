#pragma once
// The systemd readiness protocol (sd_notify(3)) without libsystemd: one datagram with
// "READY=1", "STOPPING=1" or "STATUS=..." to the unix socket named by $NOTIFY_SOCKET.
// Does nothing when the variable is unset (not started by systemd with Type=notify).

#include <string>

namespace shoal::daemon {

/// Sends `state` (e.g. "READY=1\nSTATUS=serving 5 buckets"); returns false if the socket is
/// set but the send failed.
bool notifySystemd(const std::string& state);

}  // namespace shoal::daemon
