#pragma once
// Runs a program (a health check or a notify hook) in its own process group with a time
// limit; on time-out the whole group is killed, so a script's children die with it.

#include <chrono>
#include <string>

namespace shoal::daemon {

struct ProcessResult {
  int spawn_error = 0;     ///< errno of posix_spawn; 0 when the program started
  bool timed_out = false;  ///< killed after the time limit
  int status = 0;          ///< waitpid() status when it ended by itself
};

/// Runs `path` without arguments, with environment `envp` (null-terminated), for at most
/// `timeout`. Blocks the calling thread (health checks and hooks run on threads of their own).
ProcessResult runProcess(const std::string& path, char* const envp[],
                         std::chrono::milliseconds timeout);

}  // namespace shoal::daemon
