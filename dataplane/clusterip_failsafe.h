#pragma once
// The CLUSTERIP backend's fail-safe for a process that dies without tearing down.
//
// CLUSTERIP rules live in the kernel, not in a socket of the process: after a crash they
// stay, and the dead node keeps answering its buckets while its peers take them over
// (duplicate answers). The dataplane tears down on every exit path its owner catches; for
// the ones nobody can catch (kill -9, a crash, the OOM killer) it arms a guard process:
//
//   the guard is a small shell started in its own session that blocks reading one line from
//   a pipe whose only write end is held (close-on-exec) by the dataplane's process. A clean
//   teardown writes "disarm" and the guard exits. When the process dies by any means, the
//   kernel closes the write end, the guard reads end-of-file and runs the release script
//   (empty shoal's chain down to DROP rules for the VIPs, which also releases the multicast
//   MAC, and remove the VIPs the dataplane added), so the dead node answers nothing.
//
// What it cannot cover: the guard itself being killed too (e.g. SIGKILL to the whole
// cgroup or process group, a kernel hang, power loss of course does not matter), and a
// forked-but-not-exec'd child of the process still holding the pipe. Then the rules stay
// until the next start of the daemon, whose first apply takes them over, or until an
// operator runs the teardown.

#include <string>
#include <sys/types.h>

#include "core/result.h"

namespace shoal::dataplane {

/// Runs a release script if the process dies while armed.
class FailSafe {
 public:
  virtual ~FailSafe() = default;
  /// Arms (or re-arms with a new script) the guard. `release_script` is POSIX shell text.
  virtual Status arm(const std::string& release_script) = 0;
  /// Stops the guard without running the script. Harmless when not armed.
  virtual Status disarm() = 0;
};

/// The guard-process fail-safe described above.
class GuardProcessFailSafe final : public FailSafe {
 public:
  /// `script_path` is where the release script is kept (rewritten atomically on each arm);
  /// its directory must exist and be writable, e.g. /run/shoal.
  explicit GuardProcessFailSafe(std::string script_path);
  /// Does not disarm: dropping the object without disarm() runs the release script.
  ~GuardProcessFailSafe() override;
  GuardProcessFailSafe(const GuardProcessFailSafe&) = delete;
  GuardProcessFailSafe& operator=(const GuardProcessFailSafe&) = delete;

  Status arm(const std::string& release_script) override;
  Status disarm() override;
  /// The guard's process id while armed, else -1 (for tests and status output).
  pid_t guardPid() const { return pid_; }

 private:
  std::string script_path_;
  int pipe_write_ = -1;
  pid_t pid_ = -1;
};

}  // namespace shoal::dataplane
