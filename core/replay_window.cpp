#include "core/replay_window.h"

#include <algorithm>
#include <limits>

namespace shoal {

namespace {

constexpr std::size_t wordOf(uint64_t sequence) {
  return (sequence % kReplayWindow) / 64;
}
constexpr uint64_t maskOf(uint64_t sequence) {
  return uint64_t{1} << (sequence % 64);
}

}  // namespace

bool isAccepted(ReplayVerdict verdict) {
  return verdict == ReplayVerdict::Fresh || verdict == ReplayVerdict::NewBoot;
}

const char* toString(ReplayVerdict verdict) {
  switch (verdict) {
    case ReplayVerdict::Fresh:
      return "fresh";
    case ReplayVerdict::NewBoot:
      return "new_boot";
    case ReplayVerdict::Seen:
      return "seen";
    case ReplayVerdict::TooOld:
      return "too_old";
    case ReplayVerdict::OldBoot:
      return "old_boot";
  }
  return "unknown";
}

bool ReplayWindow::isSet(uint64_t sequence) const {
  return (bits_[wordOf(sequence)] & maskOf(sequence)) != 0;
}

ReplayVerdict ReplayWindow::check(uint64_t boot_id, uint64_t sequence) const {
  if (!any_ || boot_id > boot_id_) {
    return ReplayVerdict::NewBoot;
  }
  if (boot_id < boot_id_) {
    return ReplayVerdict::OldBoot;
  }
  if (sequence > highest_) {
    return ReplayVerdict::Fresh;
  }
  // Written as a difference so sequences near UINT64_MAX cannot overflow.
  if (highest_ - sequence >= kReplayWindow) {
    return ReplayVerdict::TooOld;
  }
  return isSet(sequence) ? ReplayVerdict::Seen : ReplayVerdict::Fresh;
}

void ReplayWindow::commit(uint64_t boot_id, uint64_t sequence) {
  if (any_ && boot_id < boot_id_) {
    return;
  }
  if (!any_ || boot_id > boot_id_) {
    // The sender restarted: its new boot starts a new sequence space.
    any_ = true;
    boot_id_ = boot_id;
    highest_ = sequence;
    bits_.fill(0);
  } else if (sequence > highest_) {
    // Slide the window: the slots that now cover highest_+1..sequence held sequences that
    // fell out of the window, so clear them before marking.
    const uint64_t advance = sequence - highest_;
    if (advance >= kReplayWindow) {
      bits_.fill(0);
    } else {
      for (uint64_t s = highest_ + 1; s != sequence + 1; ++s) {
        if (s % 64 == 0 && sequence - s >= 63) {
          bits_[wordOf(s)] = 0;  // a whole word at once
          s += 63;
        } else {
          bits_[wordOf(s)] &= ~maskOf(s);
        }
      }
    }
    highest_ = sequence;
  } else if (highest_ - sequence >= kReplayWindow) {
    return;  // outside the window: nothing to record
  }
  bits_[wordOf(sequence)] |= maskOf(sequence);
}

ReplayGuard::ReplayGuard(std::size_t senders) : windows_(senders) {}

ReplayVerdict ReplayGuard::check(uint32_t sender, uint64_t boot_id, uint64_t sequence) const {
  if (sender >= windows_.size()) {
    return ReplayVerdict::OldBoot;
  }
  return windows_[sender].check(boot_id, sequence);
}

void ReplayGuard::commit(uint32_t sender, uint64_t boot_id, uint64_t sequence) {
  if (sender < windows_.size()) {
    windows_[sender].commit(boot_id, sequence);
  }
}

uint64_t newBootId(uint64_t previous, uint64_t realtime_us) {
  const uint64_t next = previous == std::numeric_limits<uint64_t>::max() ? previous : previous + 1;
  return std::max(realtime_us, next);
}

}  // namespace shoal
