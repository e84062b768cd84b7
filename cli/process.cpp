#include "cli/process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace shoal::daemon {

ProcessResult runProcess(const std::string& path, char* const envp[],
                         std::chrono::milliseconds timeout) {
  std::string p = path;
  char* argv[] = {p.data(), nullptr};
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group (so a time-out kills the script's children too) and default signal mask.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  ProcessResult r;
  r.spawn_error = posix_spawn(&pid, p.c_str(), nullptr, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  if (r.spawn_error != 0) {
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const pid_t done = ::waitpid(pid, &r.status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) {
      return r;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &r.status, 0);
      r.timed_out = true;
      return r;
    }
    ::usleep(2000);
  }
}

}  // namespace shoal::daemon
