#pragma once
// The daemon's recent events (membership, links, drain, health, buckets, quorum) for
// `shoalctl events`: a bounded ring, oldest dropped first.

#include <chrono>
#include <cstddef>
#include <deque>
#include <string>

#include "proto/control.pb.h"

namespace shoal::daemon {

class EventLog {
 public:
  explicit EventLog(std::size_t capacity = 1000) : capacity_(capacity) {}

  /// Records an event stamped with the wall clock.
  void add(std::string kind, std::string text) {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    control::Event e;
    e.set_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
    e.set_kind(std::move(kind));
    e.set_text(std::move(text));
    events_.push_back(std::move(e));
    while (events_.size() > capacity_) {
      events_.pop_front();
    }
  }

  /// The newest `max` events (all when 0), oldest first.
  control::EventList recent(std::size_t max) const {
    control::EventList list;
    const std::size_t n = (max == 0 || max > events_.size()) ? events_.size() : max;
    for (std::size_t i = events_.size() - n; i < events_.size(); ++i) {
      *list.add_events() = events_[i];
    }
    return list;
  }

 private:
  std::size_t capacity_;
  std::deque<control::Event> events_;
};

}  // namespace shoal::daemon
