#include "core/timing_profile.h"

#include <string>

namespace shoal {

namespace {

// Flap damping is the same in every preset: it guards against a node that keeps dying and
// coming back (a bad cable, a crash loop), which is a matter of minutes, not of how fast a
// death is detected.
void setFlapDamping(TimingProfile& t) {
  // Three deaths in one minute is not bad luck any more: a healthy node dies far less often,
  // and a crash-looping service restarts within seconds.
  t.flap_window = Millis{60000};
  t.flap_threshold = 3;
  // Half a minute out is long enough for clients to settle on the other nodes and short enough
  // that a node that has really recovered does not stay idle for long.
  t.flap_hold_down = Millis{30000};
}

TimingProfile defaultPreset() {
  TimingProfile t;
  t.name = "default";
  // 40 ms: 25 small datagrams a second per peer and link is nothing on a LAN. A crash that the
  // other members all see is declared about 170 ms after the last heartbeat (120 + 100 / 2,
  // see suspicion_timeout), so clients wait well under TCP's first retransmission timeout (1 s)
  // and mostly see a retransmit, not a reset.
  t.heartbeat_interval = Millis{40};
  // Three missed heartbeats on every link: one or two lost datagrams never raise suspicion.
  t.suspect_after = Millis{120};
  // A suspect has this long to refute when a single member accuses it; every member that
  // accuses it independently shortens it (Lifeguard), to half once three agree, so a crash
  // costs 120 + 50 ms. 50 ms after the probe began still lets a node that stalled for three
  // heartbeat intervals, at the worst moment, refute in time (120 + 40 < 170), and one node's
  // lossy path to a peer keeps the full 100 ms.
  t.suspicion_timeout = Millis{100};
  // A LAN round trip is well under a millisecond; 30 ms leaves room for a busy peer's
  // scheduler, fits inside one heartbeat interval (probes never pile up) and leaves 20 ms of
  // the shortest suspicion for the other members' accusations to arrive.
  t.probe_timeout = Millis{30};
  // k = 3 other members asked to probe: enough that one lossy path between two nodes does not
  // make them suspect each other (SWIM's usual choice), small enough to stay cheap at 16 nodes.
  t.indirect_probes = 3;
  setFlapDamping(t);
  return t;
}

TimingProfile fastPreset() {
  TimingProfile t;
  t.name = "fast";
  // 6 ms: for dedicated, quiet heartbeat links; a crash is declared about 27 ms after the last
  // heartbeat (18 + 18 / 2), at 167 datagrams a second per peer and link.
  t.heartbeat_interval = Millis{6};
  // Three missed heartbeats, as in the default preset.
  t.suspect_after = Millis{18};
  // As in the default preset: the full time with a single accuser, half with three, which
  // still lets a node that stalled for three intervals at the worst moment refute in time
  // (18 + 6 < 27).
  t.suspicion_timeout = Millis{18};
  // Within one heartbeat interval, leaving 4 ms for the peer to be scheduled and 4 ms of the
  // shortest suspicion for the other members' accusations to arrive.
  t.probe_timeout = Millis{5};
  // Same reasoning as the default preset.
  t.indirect_probes = 3;
  setFlapDamping(t);
  return t;
}

// Ranges: below 5 ms a heartbeat is within the scheduling jitter of an ordinary kernel and
// produces false suspicions; above ten minutes a silence is not "detected" in any useful sense.
constexpr long kMinHeartbeatMs = 5;
constexpr long kMaxHeartbeatMs = 10000;
constexpr long kMaxDetectionMs = 600000;
constexpr long kMaxFlapMs = 86400000;  // one day
constexpr uint32_t kMaxFlapThreshold = 1000;

void add(std::vector<TimingIssue>& issues, const char* field, std::string message) {
  issues.push_back(TimingIssue{field, std::move(message)});
}

std::string ms(Millis m) {
  return std::to_string(m.count()) + " ms";
}

}  // namespace

std::optional<TimingProfile> timingPreset(std::string_view name) {
  if (name == "default") {
    return defaultPreset();
  }
  if (name == "fast") {
    return fastPreset();
  }
  return std::nullopt;
}

std::vector<std::string> timingPresetNames() {
  return {"default", "fast"};
}

std::vector<TimingIssue> checkTimingProfile(const TimingProfile& t) {
  std::vector<TimingIssue> issues;
  const long hb = t.heartbeat_interval.count();
  if (hb < kMinHeartbeatMs || hb > kMaxHeartbeatMs) {
    add(issues, "heartbeat_interval_ms",
        "expected " + std::to_string(kMinHeartbeatMs) + ".." + std::to_string(kMaxHeartbeatMs) +
            " ms, got " + ms(t.heartbeat_interval));
  }
  // A single lost datagram must never make a node suspect: at least two intervals of silence.
  if (t.suspect_after.count() < 2 * hb || t.suspect_after.count() > kMaxDetectionMs) {
    add(issues, "suspect_after_ms",
        "expected at least 2 heartbeat intervals (" + std::to_string(2 * hb) + " ms) and at most " +
            std::to_string(kMaxDetectionMs) + " ms, got " + ms(t.suspect_after));
  }
  // A suspect refutes with its next heartbeat, so it needs at least one interval to do so.
  if (t.suspicion_timeout.count() < hb || t.suspicion_timeout.count() > kMaxDetectionMs) {
    add(issues, "suspicion_timeout_ms",
        "expected at least one heartbeat interval (" + std::to_string(hb) + " ms) and at most " +
            std::to_string(kMaxDetectionMs) + " ms, got " + ms(t.suspicion_timeout));
  }
  // A probe that outlives the heartbeat interval overlaps the next round's probe.
  if (t.probe_timeout.count() < 1 || t.probe_timeout.count() > hb) {
    add(issues, "probe_timeout_ms",
        "expected 1 ms up to the heartbeat interval (" + std::to_string(hb) + " ms), got " +
            ms(t.probe_timeout));
  }
  // Indirect probes go to other members: at most all nodes but the prober and the silent peer.
  if (t.indirect_probes > kMaxNodes - 2) {
    add(issues, "indirect_probes",
        "expected 0.." + std::to_string(kMaxNodes - 2) + " (other members asked to probe), got " +
            std::to_string(t.indirect_probes));
  }
  if (t.flap_window.count() < 1000 || t.flap_window.count() > kMaxFlapMs) {
    add(issues, "flap_window_ms",
        "expected 1000.." + std::to_string(kMaxFlapMs) + " ms, got " + ms(t.flap_window));
  }
  if (t.flap_threshold < 1 || t.flap_threshold > kMaxFlapThreshold) {
    add(issues, "flap_threshold",
        "expected 1.." + std::to_string(kMaxFlapThreshold) + " deaths, got " +
            std::to_string(t.flap_threshold));
  }
  if (t.flap_hold_down.count() < 0 || t.flap_hold_down.count() > kMaxFlapMs) {
    add(issues, "flap_hold_down_ms",
        "expected 0.." + std::to_string(kMaxFlapMs) + " ms, got " + ms(t.flap_hold_down));
  }
  return issues;
}

}  // namespace shoal
