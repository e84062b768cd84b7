#include "dataplane/clusterip_failsafe.h"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <vector>

extern char** environ;

namespace shoal::dataplane {
namespace {

// The guard: one line "disarm" ends it quietly; end-of-file (the process died) or anything
// else runs the release script. Its own session keeps a terminal's Ctrl-C away from it.
constexpr const char* kGuardProgram =
    "read -r word; [ \"$word\" = disarm ] && exit 0; exec sh \"$0\"";

Status writeFileAtomically(const std::string& path, const std::string& text) {
  // The directory (e.g. /run/shoal) may not exist yet after a boot.
  if (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error{"cannot create " + dir + " for the fail-safe script: " +
                   std::strerror(errno)};
    }
  }
  std::string temp = path + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Error{"cannot write the fail-safe script " + temp + ": " + std::strerror(errno) +
                 " (does its directory exist?)"};
  }
  ssize_t n = ::write(fd, text.data(), text.size());
  int error = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    return Error{"cannot write the fail-safe script " + temp + ": " + std::strerror(error)};
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return Error{"cannot move " + temp + " to " + path + ": " + std::strerror(errno)};
  }
  return Ok{};
}

}  // namespace

GuardProcessFailSafe::GuardProcessFailSafe(std::string script_path)
    : script_path_(std::move(script_path)) {}

GuardProcessFailSafe::~GuardProcessFailSafe() {
  if (pipe_write_ >= 0) {
    ::close(pipe_write_);  // the guard reads end-of-file and releases
  }
  if (pid_ > 0) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

Status GuardProcessFailSafe::arm(const std::string& release_script) {
  if (Status written = writeFileAtomically(script_path_, release_script); !written) {
    return written;
  }
  if (pid_ > 0) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      return Ok{};  // the running guard picks the new script up when it fires
    }
    // The guard is gone (someone killed it): start a new one.
    pid_ = -1;
    ::close(pipe_write_);
    pipe_write_ = -1;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Error{std::string("cannot create the fail-safe pipe: ") + std::strerror(errno)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);
  std::vector<char*> argv = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                             const_cast<char*>(kGuardProgram),
                             const_cast<char*>(script_path_.c_str()), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, "sh", &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(fds[0]);
  if (rc != 0) {
    ::close(fds[1]);
    return Error{std::string("cannot start the fail-safe guard (sh): ") + std::strerror(rc)};
  }
  pid_ = pid;
  pipe_write_ = fds[1];
  return Ok{};
}

Status GuardProcessFailSafe::disarm() {
  if (pid_ <= 0) {
    return Ok{};
  }
  static constexpr char kDisarm[] = "disarm\n";
  // The guard may already be gone; a failed write is then harmless, and its SIGPIPE is
  // blocked in this thread and consumed so it cannot end the process.
  sigset_t sigpipe, previous;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, &previous);
  [[maybe_unused]] ssize_t n = ::write(pipe_write_, kDisarm, sizeof(kDisarm) - 1);
  if (!sigismember(&previous, SIGPIPE)) {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) {
      timespec zero{};
      sigtimedwait(&sigpipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }
  ::close(pipe_write_);
  pipe_write_ = -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  ::unlink(script_path_.c_str());
  return Ok{};
}

}  // namespace shoal::dataplane
