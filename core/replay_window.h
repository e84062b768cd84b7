#pragma once
// Replay protection for authenticated packets: per sender, the latest boot id and a sliding
// window of the sequence numbers already seen (the IPsec anti-replay bitmap, RFC 4303 3.4.3).
//
// IO-free and clock-free. The caller runs check() only on packets whose MAC verified
// (openPacket() in core/wire_codec.h) and commit() only once it accepts the packet, so
// nothing an unauthenticated or rejected packet carries changes the window.

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace shoal {

/// Sequence numbers tracked per sender. A sender's counter advances for every packet it
/// seals: one per link for each heartbeat round (sent to all peers) plus every probe, ack and
/// state exchange; with the fast profile's 6 ms heartbeats on two links that is some 340 a
/// second, so 4,096 tolerates seconds of reordering, far more than a heartbeat is worth
/// waiting for. Older packets are rejected as replays. Costs 512 bytes per sender.
inline constexpr uint64_t kReplayWindow = 4096;

/// The outcome of a replay check.
enum class ReplayVerdict : uint8_t {
  Fresh,    ///< not seen yet, same boot: accept
  NewBoot,  ///< first packet of a newer boot (the sender restarted, or first contact): accept
  Seen,     ///< this boot and sequence were already accepted: replay
  TooOld,   ///< more than kReplayWindow behind the newest sequence of this boot: replay
  OldBoot,  ///< from a boot older than the newest seen: replay
};

/// True for Fresh and NewBoot.
bool isAccepted(ReplayVerdict verdict);
/// Stable snake_case name ("fresh", "new_boot", "seen", "too_old", "old_boot").
const char* toString(ReplayVerdict verdict);

/// The replay state for one sender.
class ReplayWindow {
 public:
  /// Whether a packet with `boot_id` and `sequence` would be accepted. Changes nothing.
  ReplayVerdict check(uint64_t boot_id, uint64_t sequence) const;
  /// Records the packet as seen. Call only after check() accepted it and the packet was
  /// processed; a newer boot resets the window, an older one is ignored.
  void commit(uint64_t boot_id, uint64_t sequence);

  /// Latest boot id seen; 0 before the first commit.
  uint64_t bootId() const { return boot_id_; }
  /// Largest sequence seen in that boot; 0 before the first commit.
  uint64_t highest() const { return highest_; }

 private:
  bool isSet(uint64_t sequence) const;

  uint64_t boot_id_ = 0;
  uint64_t highest_ = 0;
  bool any_ = false;
  /// Ring of kReplayWindow bits; bit (s % kReplayWindow) covers sequence s for
  /// highest_ - kReplayWindow < s <= highest_.
  std::array<uint64_t, kReplayWindow / 64> bits_{};
};

/// Replay windows for every sender of a cluster, indexed by node index.
class ReplayGuard {
 public:
  /// Tracks senders 0..senders-1 (the cluster's node count).
  explicit ReplayGuard(std::size_t senders);

  /// ReplayWindow::check for `sender`. A sender outside 0..senders()-1 (which openPacket()
  /// never lets through) is reported as OldBoot.
  ReplayVerdict check(uint32_t sender, uint64_t boot_id, uint64_t sequence) const;
  /// ReplayWindow::commit for `sender`; ignored for an out-of-range sender.
  void commit(uint32_t sender, uint64_t boot_id, uint64_t sequence);
  /// The window of `sender` (must be in range).
  const ReplayWindow& window(uint32_t sender) const { return windows_[sender]; }
  std::size_t senders() const { return windows_.size(); }

 private:
  std::vector<ReplayWindow> windows_;
};

/// The boot id for a daemon starting now: max(realtime_us, previous + 1), where `previous`
/// is the boot id of the last run (0 if none) and `realtime_us` the wall clock in
/// microseconds since the Unix epoch. Boot ids must grow across restarts or peers reject the
/// new run's packets as an old boot's until their windows for it are reset; the wall clock
/// alone can step back, so the daemon persists each boot id it uses (in its state folder)
/// and passes it as `previous` next time. Saturates at UINT64_MAX.
uint64_t newBootId(uint64_t previous, uint64_t realtime_us);

}  // namespace shoal
