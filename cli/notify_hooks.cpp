#include "cli/notify_hooks.h"

#include <sys/wait.h>

#include <cstring>

#include "cli/log.h"
#include "cli/process.h"

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

void HookRunner::setScripts(std::vector<std::string> scripts) {
  std::lock_guard lock(mu_);
  scripts_ = std::move(scripts);
  if (!scripts_.empty() && !thread_.joinable()) {
    thread_ = std::thread([this] { worker(); });
  }
}

void HookRunner::post(HookEvent event) {
  {
    std::lock_guard lock(mu_);
    if (scripts_.empty()) {
      return;
    }
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
    std::vector<std::string> scripts;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) {
        return;
      }
      event = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      scripts = scripts_;
    }
    for (const std::string& script : scripts) {
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
  const ProcessResult r = runProcess(script, envp.data(), timeout_);
  if (r.spawn_error != 0) {
    log(LogLevel::Warning, "notify hook %s cannot run: %s", script.c_str(),
        std::strerror(r.spawn_error));
    std::lock_guard lock(mu_);
    ++failed_;
    return;
  }
  if (r.timed_out) {
    log(LogLevel::Warning, "notify hook %s killed after %lld ms", script.c_str(),
        static_cast<long long>(timeout_.count()));
    std::lock_guard lock(mu_);
    ++failed_;
    return;
  }
  const int status = r.status;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    log(LogLevel::Warning, "notify hook %s failed (status %d)", script.c_str(),
        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    std::lock_guard lock(mu_);
    ++failed_;
  }
}

}  // namespace shoal::daemon
