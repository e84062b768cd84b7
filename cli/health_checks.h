#pragma once
// The kinds of local health check and the thread that runs them. Each check returns passed
// or failed with a one-line detail; NodeHealth (health_state.h) turns results into the
// node's health. Link checks are not run here: the daemon answers them from netlink link
// events at once (see Daemon), so only the blocking kinds use this thread.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/cluster_definition.h"

namespace shoal::daemon {

struct CheckResult {
  std::size_t index = 0;  ///< position of the check in the definition
  bool passed = false;
  std::string detail;     ///< e.g. "exit 0", "load 9.30 > 8.00", "connect: refused"
};

/// Runs `path` with no arguments; passes on exit status 0 within `timeout`.
CheckResult runScriptCheck(const std::string& path, Millis timeout);
/// Passes while the 1-minute load average in `loadavg_file` (/proc/loadavg) is at most
/// `max_load`.
CheckResult runLoadCheck(double max_load, const std::string& loadavg_file = "/proc/loadavg");
/// Passes while the file system holding `path` has at least `min_free_percent` free.
CheckResult runDiskCheck(const std::string& path, double min_free_percent);
/// "host:port" (or "[v6]:port"): a TCP connection opens within `timeout`. "host": an ICMP
/// echo is answered within `timeout`.
CheckResult runReachCheck(const std::string& target, Millis timeout);

/// Runs every non-link check of the definition on its own interval, on one thread, and
/// reports each result through the callback (called on that thread: the daemon posts it to
/// its event loop).
class HealthRunner {
 public:
  using Callback = std::function<void(CheckResult)>;
  HealthRunner(std::vector<HealthCheck> checks, Callback callback);
  ~HealthRunner();
  HealthRunner(const HealthRunner&) = delete;
  HealthRunner& operator=(const HealthRunner&) = delete;

 private:
  void loop();

  std::vector<HealthCheck> checks_;
  Callback callback_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace shoal::daemon
