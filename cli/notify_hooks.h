#pragma once
// Notify hooks: admin scripts run when this node gains or loses buckets and when a node's
// state changes, with the facts in environment variables (what keepalived's notify scripts
// do). Scripts run one at a time, in event order, on a worker thread, each with a time
// limit, so a slow script never stalls the heartbeats.
//
// Environment of every run:
//   SHOAL_EVENT     bucket-gained | bucket-lost | node-state | drain | quorum
//   SHOAL_CLUSTER   cluster name            SHOAL_SELF   this node's name
//   SHOAL_NODE      the node concerned      SHOAL_STATE  its new state (alive, dead, drained,
//                                                        none, lost, ...)
//   SHOAL_SERVICE, SHOAL_VIP, SHOAL_BUCKETS (comma-separated) for bucket events.
// The script's exit status is logged when not zero; its output goes to shoald's stderr.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace shoal::daemon {

/// One hook run: the variables to set (names without the SHOAL_ prefix are not allowed).
struct HookEvent {
  std::map<std::string, std::string> env;
};

class HookRunner {
 public:
  /// `scripts`: absolute paths run for every event, in order. `timeout`: a script still
  /// running after it is killed (SIGKILL to its process group).
  HookRunner(std::vector<std::string> scripts, std::chrono::milliseconds timeout);
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  /// Replaces the scripts (a reload); events queued from now on run the new ones.
  void setScripts(std::vector<std::string> scripts);
  /// Queues an event; never blocks. Past kMaxQueued waiting events, the event is dropped and
  /// counted.
  void post(HookEvent event);
  /// Waits until the queue is empty and no script runs (used at shutdown and in tests), at
  /// most `limit`.
  void drain(std::chrono::milliseconds limit);

  uint64_t dropped() const;
  uint64_t failed() const;

  static constexpr std::size_t kMaxQueued = 256;

 private:
  void worker();
  void runOne(const std::string& script, const HookEvent& event);

  std::vector<std::string> scripts_;
  std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<HookEvent> queue_;
  bool busy_ = false;
  bool stop_ = false;
  uint64_t dropped_ = 0;
  uint64_t failed_ = 0;
  std::thread thread_;
};

}  // namespace shoal::daemon
