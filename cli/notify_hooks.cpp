#include "cli/notify_hooks.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cli/log.h"

extern char** environ;

namespace shoal::daemon {

HookRunner::HookRunner(std::vector<std::string> scripts, std::chrono::milliseconds timeout)
    : scripts_(std::move(scripts)), timeout_(timeout) {
  if (!scripts_.empty()) {
    thread_ = std::thread([this] { worker(); });
  }
}

HookRunner::~HookRunner() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void HookRunner::post(HookEvent event) {
  if (scripts_.empty()) {
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(event));
  }
  cv_.notify_all();
}

void HookRunner::drain(std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, limit, [this] { return queue_.empty() && !busy_; });
}

uint64_t HookRunner::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

uint64_t HookRunner::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

void HookRunner::worker() {
  for (;;) {
    HookEvent event;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) {
        return;
      }
      event = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    for (const std::string& script : scripts_) {
      runOne(script, event);
    }
    {
      std::lock_guard lock(mu_);
      busy_ = false;
    }
    cv_.notify_all();
  }
}

void HookRunner::runOne(const std::string& script, const HookEvent& event) {
  // The daemon's environment plus the event's variables.
  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "SHOAL_", 6) != 0) {
      env_strings.emplace_back(*e);
    }
  }
  for (const auto& [name, value] : event.env) {
    env_strings.push_back(name + "=" + value);
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::string path = script;
  char* argv[] = {path.data(), nullptr};

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group, so a timeout kills the script's children too; default signals.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), nullptr, &attr, argv, envp.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    log(LogLevel::Warning, "notify hook %s cannot run: %s", script.c_str(), std::strerror(rc));
    std::lock_guard lock(mu_);
    ++failed_;
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      break;
    }
    if (done < 0 && errno != EINTR) {
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      log(LogLevel::Warning, "notify hook %s killed after %lld ms", script.c_str(),
          static_cast<long long>(timeout_.count()));
      std::lock_guard lock(mu_);
      ++failed_;
      return;
    }
    ::usleep(5000);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    log(LogLevel::Warning, "notify hook %s failed (status %d)", script.c_str(),
        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    std::lock_guard lock(mu_);
    ++failed_;
  }
}

}  // namespace shoal::daemon
