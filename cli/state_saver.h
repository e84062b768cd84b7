#pragma once
// Saves a small state file off the event loop: the write is atomic and durable (two fsyncs,
// see membership/state_file.h), which can take tens of milliseconds on a busy disk, and the
// heartbeats and bucket hand-offs of the event loop must not wait for it. Only the latest
// contents matter: a save queued while another runs replaces any older one still waiting.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/result.h"

namespace shoal::daemon {

class StateSaver {
 public:
  /// Writes go to `path`. `on_error` is called on the saver's thread with the message of a
  /// failed write (the next save tries again).
  StateSaver(std::string path, std::function<void(const std::string&)> on_error);
  /// Finishes the save in progress and the one waiting, then stops.
  ~StateSaver();
  StateSaver(const StateSaver&) = delete;
  StateSaver& operator=(const StateSaver&) = delete;

  /// Queues `contents` to be written; never blocks on the disk. The thread starts with the
  /// first save.
  void save(std::string contents);
  /// Waits until every queued save is written (shutdown, tests).
  void flush();

 private:
  void worker();

  std::string path_;
  std::function<void(const std::string&)> on_error_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::string> pending_;
  bool writing_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace shoal::daemon
