#include "dataplane/clusterip_system.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>

extern char** environ;

namespace shoal::dataplane {
namespace {

std::string errnoText(int error) { return std::strerror(error); }

// A pipe whose ends close themselves; both ends are close-on-exec so no other child
// inherits them (the spawned program gets its copies through dup2 file actions).
struct Pipe {
  int read_end = -1;
  int write_end = -1;
  Pipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) == 0) {
      read_end = fds[0];
      write_end = fds[1];
    }
  }
  ~Pipe() {
    closeRead();
    closeWrite();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  bool ok() const { return read_end >= 0; }
  void closeRead() {
    if (read_end >= 0) {
      close(read_end);
      read_end = -1;
    }
  }
  void closeWrite() {
    if (write_end >= 0) {
      close(write_end);
      write_end = -1;
    }
  }
};

}  // namespace

Result<CommandOutput> SubprocessRunner::run(const std::vector<std::string>& argv,
                                            std::string_view input) {
  if (argv.empty()) {
    return Error{"internal: empty command"};
  }
  Pipe in, out, err;
  if (!in.ok() || !out.ok() || !err.ok()) {
    return Error{"cannot create pipes to run " + argv[0] + ": " + errnoText(errno)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read_end, 0);
  posix_spawn_file_actions_adddup2(&actions, out.write_end, 1);
  posix_spawn_file_actions_adddup2(&actions, err.write_end, 2);
  std::vector<char*> args;
  for (const std::string& arg : argv) {
    args.push_back(const_cast<char*>(arg.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return Error{"cannot run " + argv[0] + ": " + errnoText(rc) +
                 " (is it installed and in PATH?)"};
  }
  in.closeRead();
  out.closeWrite();
  err.closeWrite();

  // A program that exits without reading its stdin must not kill this process with SIGPIPE:
  // block it in this thread while writing and consume it afterwards.
  fcntl(in.write_end, F_SETFL, O_NONBLOCK);
  sigset_t sigpipe, previous;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, &previous);
  CommandOutput result;
  std::size_t written = 0;
  if (input.empty()) {
    in.closeWrite();
  }
  while (out.read_end >= 0 || err.read_end >= 0) {
    std::array<pollfd, 3> fds{};
    nfds_t count = 0;
    auto add = [&](int fd, short events) {
      if (fd >= 0) {
        fds[count++] = pollfd{fd, events, 0};
      }
    };
    add(in.write_end, POLLOUT);
    add(out.read_end, POLLIN);
    add(err.read_end, POLLIN);
    if (poll(fds.data(), count, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) {
        continue;
      }
      if (fds[i].fd == in.write_end) {
        ssize_t n = ::write(in.write_end, input.data() + written, input.size() - written);
        if (n > 0) {
          written += static_cast<std::size_t>(n);
        }
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
          in.closeWrite();
        }
        continue;
      }
      std::array<char, 4096> buffer;
      ssize_t n = ::read(fds[i].fd, buffer.data(), buffer.size());
      bool is_out = fds[i].fd == out.read_end;
      if (n > 0) {
        (is_out ? result.out : result.err).append(buffer.data(), static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        is_out ? out.closeRead() : err.closeRead();
      }
    }
  }
  in.closeWrite();
  if (!sigismember(&previous, SIGPIPE)) {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) {
      timespec zero{};
      sigtimedwait(&sigpipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return Error{"cannot wait for " + argv[0] + ": " + errnoText(errno)};
    }
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

ProcResponsibilityFiles::ProcResponsibilityFiles(std::string directory)
    : directory_(std::move(directory)) {}

Result<std::string> ProcResponsibilityFiles::read(const IpAddress& vip) {
  std::string path = directory_ + "/" + vip.toString();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error{"cannot open " + path + ": " + errnoText(errno)};
  }
  std::string text;
  std::array<char, 256> buffer;
  while (true) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int error = errno;
      close(fd);
      return Error{"cannot read " + path + ": " + errnoText(error)};
    }
    if (n == 0) {
      break;
    }
    text.append(buffer.data(), static_cast<std::size_t>(n));
  }
  close(fd);
  return text;
}

Status ProcResponsibilityFiles::write(const IpAddress& vip, std::string_view command) {
  std::string path = directory_ + "/" + vip.toString();
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error{"cannot open " + path + " for writing: " + errnoText(errno)};
  }
  ssize_t n = ::write(fd, command.data(), command.size());
  int error = errno;
  close(fd);
  if (n != static_cast<ssize_t>(command.size())) {
    return Error{"writing '" + std::string(command) + "' to " + path + " failed: " +
                 (n < 0 ? errnoText(error) : std::string("short write"))};
  }
  return Ok{};
}

}  // namespace shoal::dataplane
