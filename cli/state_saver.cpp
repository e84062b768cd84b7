#include "cli/state_saver.h"

#include "membership/state_file.h"

namespace shoal::daemon {

StateSaver::StateSaver(std::string path, std::function<void(const std::string&)> on_error)
    : path_(std::move(path)), on_error_(std::move(on_error)) {}

StateSaver::~StateSaver() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void StateSaver::save(std::string contents) {
  {
    std::lock_guard lock(mu_);
    pending_ = std::move(contents);
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { worker(); });
    }
  }
  cv_.notify_all();
}

void StateSaver::flush() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !pending_ && !writing_; });
}

void StateSaver::worker() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return pending_.has_value() || stop_; });
    if (!pending_) {
      return;  // stopping with nothing left to write
    }
    const std::string contents = std::move(*pending_);
    pending_.reset();
    writing_ = true;
    lock.unlock();
    const Status st = writeFileAtomically(path_, contents);
    if (!st.ok() && on_error_) {
      on_error_(st.error().message);
    }
    lock.lock();
    writing_ = false;
    cv_.notify_all();
  }
}

}  // namespace shoal::daemon
