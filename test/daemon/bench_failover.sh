#!/usr/bin/env bash
# Failover benchmark: real shoald daemons in network namespaces, the nftables dataplane, and
# a client that counts what users see. Needs root. Takes about seven minutes (407 s on 2 cores); not a test.
#
#   SHOALD=... SHOALCTL=... RESPONDER=... PROBER=... bench_failover.sh
#
# Settings (environment): BENCH_RUNS (10) runs of each kind; BENCH_NODES (3) nodes in the
# failover runs; BENCH_SAMPLE_S (20) seconds of steady state per CPU/RSS measurement;
# BENCH_GRACEFUL_PROFILES ("default") profiles whose graceful leaves and drains are measured;
# BENCH_BIG_NODES (16) nodes of the large cluster whose per-node cost is measured.
#
# What it measures, per timing profile (default, fast):
#   crash      a node dies like a machine (its LAN port cut at the switch, shoald stopped and
#              killed with SIGKILL) while a client probes the VIP over UDP every 10 ms from
#              32 source addresses. Outage of a run = the longest run of unanswered probes
#              of any one source, times 10 ms (the prober's max_outage_ms). The node is then
#              revived and the cluster converges before the next run.
#   leave      SIGTERM of a node's shoald (graceful leave), once under a TCP prober (a new
#              connection per source every 10 ms: lost must be 0; slowest connection) and
#              once under a UDP prober (outage, lost).
#   drain      a maintenance cycle: `shoalctl drain` of a node, `undrain` once it owns
#              nothing, until it owns buckets again; same probers.
#   hand-overs the gap between each releaser's stop and its taker's start in those leaves
#              and drains, as the daemons log the instants (handoff_report in cluster_lib.sh);
#              a negative gap would be an overlap (answered twice).
#   margin     drains under a UDP prober with handoff_margin_us 0 and at its default: what
#              the margin costs (requests lost in the gap) and what it saves (answered twice).
#   bridge     drains under a denser UDP prober (16 sources every 2 ms) with handoff_bridge
#              off (the baseline) and on: requests lost in the hand-overs' gaps, and how many
#              the takers answered through the releasers' copies.
#   usage      VmRSS (/proc/PID/status) and CPU (utime+stime of /proc/PID/stat over a
#              measured wall interval) of every shoald in steady state, at BENCH_NODES and
#              BENCH_BIG_NODES nodes; at BENCH_BIG_NODES also with multicast heartbeats
#              (one link on a group, then both).
# Baselines: measured in the same run, the detection time (crash -> first survivor declares
# the node dead, from the daemons' event logs) and the nodes' cost at the small size against
# the large one; as fixed references quoted from measurements made earlier on this machine
# (not re-measured here), keepalived's failover and memberlist's per-node cost.
#
# Statistics: median (the mean of the two middle values for an even count) and p95 by the
# nearest-rank method: the ceil(0.95 * n)-th smallest value; with n = 10 samples that is the
# 10th, i.e. the largest.
set -u
: "${SHOALD:?set SHOALD, SHOALCTL, RESPONDER and PROBER to the built programs}"
HERE=$(cd "$(dirname "$0")" && pwd)
TIMING_SOURCE=$HERE/../../core/timing_profile.cpp
RUNS=${BENCH_RUNS:-10}
SMALL=${BENCH_NODES:-3}
BIG=${BENCH_BIG_NODES:-16}
SAMPLE_S=${BENCH_SAMPLE_S:-20}
GRACEFUL_PROFILES=${BENCH_GRACEFUL_PROFILES:-default}
PROFILES="default fast"
# The built-in hand-over margin (ClusterDefinition::handoff_margin), read from its source.
DEFAULT_MARGIN_US=$(sed -n 's/.*std::chrono::microseconds handoff_margin{\([0-9]*\)};.*/\1/p' \
  "$HERE/../../core/cluster_definition.h")

# Fixed references: measured earlier on this machine with two nodes in namespaces and the same
# kind of client (the project's field notes), not re-measured here.
KA_DEFAULT_MS=3100  # keepalived at its defaults (1 s adverts), median
KA_50_MS=160        # keepalived with 50 ms adverts: 155-165 ms, midpoint
KA_10_MS=37.5       # keepalived with 10 ms adverts: 35-40 ms, midpoint
ML_RSS_MIB=11.7     # memberlist per node, 100 ms probes
ML_CPU_PCT=0.9
# Goals.
GOAL_default=200
GOAL_fast=40
GOAL_RSS_MIB=12
GOAL_CPU_PCT=1

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
say() { echo "[$(date +%T) load $(loadavg)] $*" >&2; }

# timing_ms PROFILE FIELD: a field of a preset, read from the preset's source so the figures
# printed are the ones the daemon was built with.
timing_ms() {
  local v
  v=$(awk "/^TimingProfile $1Preset\\(\\)/,/return t;/" "$TIMING_SOURCE" |
    sed -n "s/.*t\\.$2 = Millis{\\([0-9]*\\)}.*/\\1/p")
  [ -n "$v" ] || { echo "cannot read $2 of preset $1 from $TIMING_SOURCE" >&2; exit 2; }
  echo "$v"
}

# ---------------------------------------------------------------------------------------
# Phases: each runs in a process of its own with a cluster of its own, and appends sample
# lines "KIND PROFILE NODES key=value ..." to the file named by $2.

# record LINE...: one sample line.
record() { echo "$*" >>"$SAMPLES"; }

declare -A DEATHS  # node -> times (SECONDS) it was declared dead, for flap damping

# pick_victim: a node that has not died twice in the last 65 s (a third death within flap
# damping's 60 s window would hold it out of service on its return, and a node that owns
# nothing cannot fail over). Rotates through the nodes. Sets VICTIM, empty if none qualifies
# (called directly, not in $(...), so the rotation advances).
NEXT_VICTIM=1
pick_victim() {
  local i k t recent
  for ((i = 0; i < NODES; i++)); do
    k=$(((NEXT_VICTIM - 1 + i) % NODES + 1))
    recent=0
    for t in ${DEATHS[$k]:-}; do
      ((SECONDS - t < 65)) && recent=$((recent + 1))
    done
    if ((recent < 2)); then
      NEXT_VICTIM=$((k % NODES + 1))
      VICTIM=$k
      return
    fi
  done
  VICTIM=""
}

# ready NODE: the cluster converged with every node alive and none held down, as NODE sees it.
ready() {
  wait_converged "$1" "$NODES" 30 &&
    [ "$(ctl "$1" status --json | jq '[.nodes[] | select(.held_down)] | length')" = 0 ]
}

# fresh_cluster PROFILE: every daemon restarted with PROFILE; forgets the death history.
fresh_cluster() {
  restart_cluster "$1"
  DEATHS=()
  wait_converged 1 "$NODES" 60 || { echo "cluster does not converge with profile $1" >&2; exit 1; }
}

# observer_for VICTIM: the lowest-numbered other node.
observer_for() { if [ "$1" = 1 ]; then echo 2; else echo 1; fi; }

# first_event_after K SINCE REGEX: the first matching event time of node K, or nothing.
first_event_after() { event_times "$1" "$2" "$3" | head -n 1; }

crash_run() {
  local profile=$1 v obs t_kill t_dead t_gain k e
  pick_victim
  if [ -z "$VICTIM" ]; then
    fresh_cluster "$profile"
    pick_victim
  fi
  v=$VICTIM
  obs=$(observer_for "$v")
  ready "$obs" || { fresh_cluster "$profile"; ready "$obs"; } ||
    { echo "cluster not ready before a crash run" >&2; exit 1; }
  start_prober udp
  sleep 1
  # A dead machine: the LAN stops reaching the node and its daemon stops in the same instant.
  # The LAN is cut at the switch (the node's bridge port disabled), which the node cannot see:
  # taking its own link down would let the daemon notice and hand its buckets over gracefully.
  # Then SIGSTOP and SIGKILL (shell builtins, well under a millisecond after the cut).
  # Detection is timed from the SIGSTOP.
  in_ns sw bridge link set dev "lan-$v" state 0
  t_kill=$(now_ms)
  kill -STOP "${SHOALD_PID[$v]}"
  kill -9 "${SHOALD_PID[$v]}"
  wait "${SHOALD_PID[$v]}" 2>/dev/null
  unset "SHOALD_PID[$v]"
  wait_converged "$obs" $((NODES - 1)) 15 || echo "survivors did not converge within 15 s" >&2
  sleep 1
  stop_prober
  DEATHS[$v]="${DEATHS[$v]:-} $SECONDS"
  # Detection: the first survivor to declare the node dead. Hand-off: the last survivor to
  # apply the buckets it gained (the event is logged after the dataplane change).
  t_dead="" t_gain=""
  for k in $(seq 1 "$NODES"); do
    [ "$k" = "$v" ] && continue
    e=$(first_event_after "$k" "$t_kill" "^n$v is dead")
    [ -n "$e" ] && { [ -z "$t_dead" ] || ((e < t_dead)); } && t_dead=$e
    e=$(first_event_after "$k" "$t_kill" "gained buckets")
    [ -n "$e" ] && { [ -z "$t_gain" ] || ((e > t_gain)); } && t_gain=$e
  done
  record "crash $profile $NODES node=n$v outage_ms=$(result_field "$R" max_outage_ms)" \
    "lost=$(result_field "$R" lost) duplicates=$(result_field "$R" duplicates)" \
    "detect_ms=${t_dead:+$((t_dead - t_kill))}" "handoff_ms=${t_gain:+$((t_gain - t_kill))}" \
    "load1=$(cut -d' ' -f1 /proc/loadavg)"
  say "crash $profile n$v: $R detect=${t_dead:+$((t_dead - t_kill))} handoff=${t_gain:+$((t_gain - t_kill))}"
  in_ns sw bridge link set dev "lan-$v" state 3
  started_node "$v"
}

# wait_owned OBSERVER NODE zero|some: until OBSERVER sees NODE own no bucket / some bucket.
wait_owned() {
  local deadline=$((SECONDS + 15)) owned
  while ((SECONDS < deadline)); do
    owned=$(ctl "$1" status --json | jq "[.services[0].owners[] | select(. == \"n$2\")] | length")
    if [ "$3" = zero ] && [ "$owned" = 0 ]; then return 0; fi
    if [ "$3" = some ] && [ -n "$owned" ] && [ "$owned" != 0 ]; then return 0; fi
    sleep 0.05
  done
  return 1
}

# graceful_run KIND MODE PROFILE [LABEL]: one leave or drain of a node under a MODE prober,
# recorded under LABEL (PROFILE).
graceful_run() {
  local kind=$1 mode=$2 profile=$3 label=${4:-$3} v obs t0 t1 owned deadline
  pick_victim
  [ -n "$VICTIM" ] || { fresh_cluster "$profile"; pick_victim; }
  v=$VICTIM
  obs=$(observer_for "$v")
  ready "$obs" || { fresh_cluster "$profile"; ready "$obs"; } ||
    { echo "cluster not ready before a $kind run" >&2; exit 1; }
  start_prober "$mode"
  sleep 1
  t0=$(now_ms)
  if [ "$kind" = leave ]; then
    stop_node "$v"
    t1=$(now_ms)
    wait_converged "$obs" $((NODES - 1)) 15 || echo "survivors did not converge after a leave" >&2
  else
    # A maintenance cycle: drain, wait until the node owns nothing, undrain, wait until it
    # owns buckets again; the client probes throughout.
    ctl "$obs" drain "n$v" >/dev/null
    wait_owned "$obs" "$v" zero || echo "n$v still owns buckets 15 s after the drain" >&2
    t1=$(now_ms)
    sleep 0.5
    ctl "$obs" undrain "n$v" >/dev/null
    wait_owned "$obs" "$v" some || echo "n$v owns nothing 15 s after the undrain" >&2
  fi
  sleep 1.5
  stop_prober
  if [ "$kind" = leave ]; then
    started_node "$v"
  fi
  if [ "$mode" = tcp ]; then
    record "$kind-tcp $label $NODES node=n$v lost=$(result_field "$R" lost)" \
      "slowest_ms=$(result_field "$R" slowest_ms) over_100ms=$(result_field "$R" over_100ms)" \
      "took_ms=$((t1 - t0)) load1=$(cut -d' ' -f1 /proc/loadavg)"
  else
    record "$kind-udp $label $NODES node=n$v outage_ms=$(result_field "$R" max_outage_ms)" \
      "lost=$(result_field "$R" lost) duplicates=$(result_field "$R" duplicates)" \
      "took_ms=$((t1 - t0)) load1=$(cut -d' ' -f1 /proc/loadavg)"
  fi
  say "$kind ($mode) $label n$v: $R took=$((t1 - t0))"
}

# smaps_figures PID: "pss_kib=P private_kib=U" from /proc/PID/smaps_rollup. RSS counts every
# shared library page in full in every process; PSS shares them out among the processes that
# map them, and private memory (USS) is what the process alone costs.
smaps_figures() {
  awk '/^Pss:/ { p = $2 } /^Private_(Clean|Dirty):/ { u += $2 }
       END { printf "pss_kib=%d private_kib=%d", p, u }' "/proc/$1/smaps_rollup"
}

# usage_sample PROFILE: RSS and CPU of every shoald over SAMPLE_S seconds of steady state.
usage_sample() {
  local profile=$1 k hz w0 w1 before after rss ticks
  hz=$(getconf CLK_TCK)
  wait_converged 1 "$NODES" 60 || { echo "no steady state to measure" >&2; exit 1; }
  sleep 3
  declare -A start
  w0=$(now_ms)
  for k in $(seq 1 "$NODES"); do start[$k]=$(proc_usage "${SHOALD_PID[$k]}"); done
  sleep "$SAMPLE_S"
  w1=$(now_ms)
  for k in $(seq 1 "$NODES"); do
    after=$(proc_usage "${SHOALD_PID[$k]}") || { echo "n$k's shoald is gone" >&2; exit 1; }
    before=${start[$k]}
    rss=${after% *}
    ticks=$((${after#* } - ${before#* }))
    record "usage $profile $NODES node=n$k rss_kib=$rss $(smaps_figures "${SHOALD_PID[$k]}")" \
      "cpu_pct=$(awk -v t="$ticks" -v hz="$hz" -v w="$((w1 - w0))" 'BEGIN { printf "%.3f", t / hz / (w / 1000) * 100 }')" \
      "wall_ms=$((w1 - w0)) load1=$(cut -d' ' -f1 /proc/loadavg)"
  done
  # The cluster must still be whole at the end, or the figures describe something else.
  wait_converged 1 "$NODES" 1 || echo "warning: cluster not converged at the end of the usage sample" >&2
  say "usage $profile at $NODES nodes measured over $((w1 - w0)) ms"
}

phase_failover() {
  local profile i
  cluster_setup "$SMALL" default majority
  for profile in $PROFILES; do
    fresh_cluster "$profile"
    say "crash runs, profile $profile, $SMALL nodes"
    for ((i = 0; i < RUNS; i++)); do crash_run "$profile"; done
    usage_sample "$profile"
    if [[ " $GRACEFUL_PROFILES " == *" $profile "* ]]; then
      for ((i = 0; i < RUNS; i++)); do
        graceful_run leave tcp "$profile"
        graceful_run leave udp "$profile"
      done
      for ((i = 0; i < RUNS; i++)); do
        graceful_run drain tcp "$profile"
        graceful_run drain udp "$profile"
      done
      # The gaps of the timed hand-overs of those leaves and drains, from the daemons' logs
      # (one clock for all namespaces: the difference of the logged instants is the gap).
      record "handoff $profile $NODES $(handoff_report "$WORK"/n*/shoald.log)"
    fi
  done
}

# The hand-over margin's trade-off, measured in the same run: drains under a UDP prober with
# handoff_margin_us 0 (the baseline) and at the built-in default, recorded as profiles
# default+mN. Without a margin the gap is only the heartbeat trip and the clock-rate
# allowance; a packet that one node processes later than another by more than that is
# answered twice.
phase_margins() {
  local m i k
  cluster_setup "$SMALL" default majority
  for m in 0 "$DEFAULT_MARGIN_US"; do
    sed -i '/^handoff_margin_us:/d' "$WORK/cluster.yaml"
    echo "handoff_margin_us: $m" >>"$WORK/cluster.yaml"
    fresh_cluster default
    for k in $(seq 1 "$NODES"); do : >"$WORK/n$k/shoald.log"; done
    say "drains at handoff_margin_us $m"
    for ((i = 0; i < RUNS; i++)); do graceful_run drain udp default "default+m$m"; done
    record "handoff default+m$m $NODES $(handoff_report "$WORK"/n*/shoald.log)"
  done
}

# The gap bridging, measured in the same run: drains with handoff_bridge off (the baseline)
# and on, recorded as profiles default+boff and default+bon, under a client dense enough that
# some requests fall into the gaps.
phase_bridge() {
  local b i
  cluster_setup "$SMALL" default majority
  export PROBER_SOURCES=10.50.1.1+16 PROBER_INTERVAL_MS=2
  for b in off on; do
    sed -i '/^handoff_bridge:/d' "$WORK/cluster.yaml"
    echo "handoff_bridge: $b" >>"$WORK/cluster.yaml"
    fresh_cluster default
    say "drains with handoff_bridge $b"
    for ((i = 0; i < RUNS; i++)); do graceful_run drain udp default "default+b$b"; done
    record "bridged default+b$b $NODES count=$(bridged_count)"
  done
}

phase_usage() {
  local profile groups label
  cluster_setup "$BIG" default majority
  for profile in $PROFILES; do
    fresh_cluster "$profile"
    usage_sample "$profile"
  done
  # Multicast heartbeats (heartbeat_multicast) at the default profile: link m1 on a group,
  # then both links; recorded as profiles default+mcast1 and default+mcast2.
  for groups in "239.192.74.1, off" "239.192.74.1, 239.192.74.2"; do
    label=default+mcast1
    [[ $groups == *off ]] || label=default+mcast2
    sed -i '/^heartbeat_multicast:/d' "$WORK/cluster.yaml"
    echo "heartbeat_multicast: [$groups]" >>"$WORK/cluster.yaml"
    fresh_cluster default
    usage_sample "$label"
  done
}

if [ "${1:-}" = --phase ]; then
  SAMPLES=$3
  . "$HERE/cluster_lib.sh"
  trap cluster_cleanup EXIT
  trap 'exit 1' INT TERM
  "phase_$2"
  exit 0
fi

# ---------------------------------------------------------------------------------------
# The whole benchmark: both phases, then the summary.

[ "$(id -u)" = 0 ] || { echo "bench_failover: must run as root (network namespaces)" >&2; exit 2; }
[ -n "$DEFAULT_MARGIN_US" ] || { echo "cannot read handoff_margin from core/cluster_definition.h" >&2; exit 2; }
for profile in $PROFILES; do
  for field in heartbeat_interval suspect_after suspicion_timeout; do
    timing_ms "$profile" "$field" >/dev/null || exit 2
  done
done
SAMPLES=$(mktemp /tmp/shoal-bench-failover.XXXXXX)
LOAD_START=$(loadavg)
T_START=$SECONDS
"$0" --phase failover "$SAMPLES" || { echo "bench_failover: failover phase failed" >&2; exit 1; }
LOAD_MID=$(loadavg)
"$0" --phase usage "$SAMPLES" || { echo "bench_failover: usage phase failed" >&2; exit 1; }
"$0" --phase margins "$SAMPLES" || { echo "bench_failover: margins phase failed" >&2; exit 1; }
"$0" --phase bridge "$SAMPLES" || { echo "bench_failover: bridge phase failed" >&2; exit 1; }
LOAD_END=$(loadavg)

# stats KIND PROFILE NODES FIELD: "n median p95 min max" of FIELD over matching samples.
stats() {
  awk -v kind="$1" -v prof="$2" -v nodes="$3" -v field="$4" '
    $1 == kind && $2 == prof && $3 == nodes {
      for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == field && kv[2] != "") v[n++] = kv[2] + 0 }
    }
    END {
      if (n == 0) { print "0 - - - -"; exit }
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      med = (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
      r = int(0.95 * n); if (r < 0.95 * n) r++
      printf "%d %g %g %g %g\n", n, med, v[r - 1], v[0], v[n - 1]
    }' "$SAMPLES"
}
total() {
  awk -v kind="$1" -v prof="$2" -v nodes="$3" -v field="$4" '
    $1 == kind && $2 == prof && $3 == nodes {
      for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == field) s += kv[2] }
    }
    END { print s + 0 }' "$SAMPLES"
}
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.2f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "-") print "n/a"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v g="$2" 'BEGIN { print (v != "-" && v + 0 <= g + 0) ? "met" : "MISSED" }'; }

echo
echo "shoal failover benchmark: $RUNS runs per kind, $SMALL-node cluster for failover, machine: $(nproc) cores"
echo "load average (1/5/15 min): start $LOAD_START, after failover phase $LOAD_MID, end $LOAD_END; took $((SECONDS - T_START)) s"
echo "statistics: median (mean of the two middle values for an even n); p95 = nearest rank ceil(0.95 n), with n = 10 the largest sample"
for profile in $PROFILES; do
  hb=$(timing_ms "$profile" heartbeat_interval)
  sa=$(timing_ms "$profile" suspect_after)
  st=$(timing_ms "$profile" suspicion_timeout)
  # A crash that both survivors see: each accuses it, and two accusers in a three-node
  # cluster shorten the suspicion to half its timeout (Lifeguard; membership/membership.h).
  nominal=$((sa + st / 2))
  goal_var=GOAL_$profile
  goal=${!goal_var}
  if [ "$profile" = default ]; then ka=$KA_50_MS ka_name="keepalived, 50 ms adverts (155-165 ms)"; else
    ka=$KA_10_MS ka_name="keepalived, 10 ms adverts (35-40 ms)"; fi
  read -r n med p95 min max < <(stats crash "$profile" "$SMALL" outage_ms)
  read -r _ dmed dp95 dmin dmax < <(stats crash "$profile" "$SMALL" detect_ms)
  read -r _ hmed hp95 _ _ < <(stats crash "$profile" "$SMALL" handoff_ms)
  read -r _ lmed _ _ lmax < <(stats crash "$profile" "$SMALL" lost)
  read -r _ ldmed _ _ _ < <(stats crash "$profile" "$SMALL" load1)
  echo
  echo "== crash failover, profile $profile (heartbeat ${hb} ms; suspect_after ${sa} + suspicion_timeout ${st} / 2 = ${nominal} ms nominal detection after the last heartbeat), $n runs, median 1-min load $ldmed"
  echo "  client outage (longest unanswered run of one source, 10 ms probes): median $med ms, p95 $p95 ms (min $min, max $max); goal <= $goal ms: $(verdict "$med" "$goal")"
  echo "  detection measured (crash -> first survivor declares it dead): median $dmed ms, p95 $dp95 ms (min $dmin, max $dmax)"
  echo "  hand-off applied (crash -> last survivor's bucket change applied): median $hmed ms, p95 $hp95 ms"
  echo "  requests lost per run: median $lmed, max $lmax; answered twice over all runs: $(total crash "$profile" "$SMALL" duplicates)"
  echo "  ratio, same-run baseline: outage / measured detection $(ratio "$med" "$dmed"); outage / nominal detection (${nominal} ms) $(ratio "$med" "$nominal")"
  echo "  ratio, fixed reference (earlier measurement, not this run): outage / $ka_name $(ratio "$med" "$ka"); outage / keepalived at defaults (3.1 s) $(ratio "$med" "$KA_DEFAULT_MS")"
  if [[ " $GRACEFUL_PROFILES " == *" $profile "* ]]; then
    for kind in leave drain; do
      read -r tn _ _ _ tlmax < <(stats "$kind-tcp" "$profile" "$SMALL" lost)
      read -r _ smed sp95 _ smax < <(stats "$kind-tcp" "$profile" "$SMALL" slowest_ms)
      read -r un umed up95 _ umax < <(stats "$kind-udp" "$profile" "$SMALL" outage_ms)
      read -r _ ulmed _ _ ulmax < <(stats "$kind-udp" "$profile" "$SMALL" lost)
      read -r _ kmed _ _ _ < <(stats "$kind-tcp" "$profile" "$SMALL" took_ms)
      echo "== $kind, profile $profile: $tn runs under a TCP prober, $un under a UDP prober"
      echo "  TCP: lost $(total "$kind-tcp" "$profile" "$SMALL" lost) over all runs (goal 0: $(verdict "$tlmax" 0)); slowest connection per run median $smed ms, p95 $sp95 ms, max $smax ms"
      echo "  UDP: outage median $umed ms, p95 $up95 ms, max $umax ms; lost per run median $ulmed, max $ulmax; answered twice $(total "$kind-udp" "$profile" "$SMALL" duplicates)"
      if [ "$kind" = leave ]; then what="SIGTERM to shoald's exit"; else what="drain command to the node owning nothing"; fi
      echo "  the $kind itself ($what): median $kmed ms"
    done
    h=$(awk -v p="$profile" '$1 == "handoff" && $2 == p { $1 = $2 = $3 = ""; print; exit }' "$SAMPLES")
    echo "== timed hand-overs of those leaves and drains (take instant - release instant, from the logs): $h"
  fi
done
echo
echo "== per-node cost of shoald in steady state (VmRSS; utime+stime over >= ${SAMPLE_S} s of wall time)"
for profile in $PROFILES; do
  for nodes in "$SMALL" "$BIG"; do
    read -r n rmed _ _ rmax < <(stats usage "$profile" "$nodes" rss_kib)
    read -r _ pmed _ _ _ < <(stats usage "$profile" "$nodes" pss_kib)
    read -r _ umed _ _ _ < <(stats usage "$profile" "$nodes" private_kib)
    read -r _ cmed _ _ cmax < <(stats usage "$profile" "$nodes" cpu_pct)
    read -r _ lmed _ _ _ < <(stats usage "$profile" "$nodes" load1)
    rmed_mib=$(mib "$rmed")
    rmax_mib=$(mib "$rmax")
    echo "  $profile, $nodes nodes ($n measured, load $lmed): RSS median $rmed_mib MiB, max $rmax_mib MiB (goal <= $GOAL_RSS_MIB: $(verdict "$(awk -v k="$rmax" 'BEGIN { print k / 1024 }')" "$GOAL_RSS_MIB")); CPU median $cmed %, max $cmax % of one core (goal <= $GOAL_CPU_PCT: $(verdict "$cmax" "$GOAL_CPU_PCT"))"
    echo "    of the RSS: PSS median $(mib "$pmed") MiB, private (USS) median $(mib "$umed") MiB; the rest is shared library pages counted in full"
    echo "    ratio, fixed reference memberlist (11.7 MiB, 0.9 % at 100 ms probes): RSS $(ratio "$rmed_mib" "$ML_RSS_MIB"), CPU $(ratio "$cmed" "$ML_CPU_PCT")"
  done
  read -r _ c_small _ _ _ < <(stats usage "$profile" "$SMALL" cpu_pct)
  read -r _ c_big _ _ _ < <(stats usage "$profile" "$BIG" cpu_pct)
  read -r _ r_small _ _ _ < <(stats usage "$profile" "$SMALL" rss_kib)
  read -r _ r_big _ _ _ < <(stats usage "$profile" "$BIG" rss_kib)
  echo "    ratio, same-run baseline ($BIG nodes / $SMALL nodes): RSS $(ratio "$r_big" "$r_small"), CPU $(ratio "$c_big" "$c_small")"
done
echo "== multicast heartbeats (heartbeat_multicast), default profile, $BIG nodes; baseline: unicast, same run"
read -r _ c_uni _ _ _ < <(stats usage default "$BIG" cpu_pct)
for label in mcast1 mcast2; do
  read -r n cmed _ _ cmax < <(stats usage "default+$label" "$BIG" cpu_pct)
  if [ "$label" = mcast1 ]; then what="link 0 on a group, link 1 unicast"; else what="both links on groups"; fi
  echo "  $what ($n measured): CPU median $cmed %, max $cmax % of one core (goal <= $GOAL_CPU_PCT: $(verdict "$cmax" "$GOAL_CPU_PCT")); ratio to unicast $(ratio "$cmed" "$c_uni")"
done
echo "== hand-over margin (handoff_margin_us): $SMALL-node drains (drain, undrain) under a UDP prober; baseline: margin 0, same run"
for m in 0 "$DEFAULT_MARGIN_US"; do
  read -r n lmed _ _ lmax < <(stats drain-udp "default+m$m" "$SMALL" lost)
  h=$(awk -v p="default+m$m" '$1 == "handoff" && $2 == p { $1 = $2 = $3 = ""; print; exit }' "$SAMPLES")
  echo "  margin $m us ($n runs): lost $(total drain-udp "default+m$m" "$SMALL" lost) over all runs (per run median $lmed, max $lmax); answered twice $(total drain-udp "default+m$m" "$SMALL" duplicates); gaps:$h"
done
echo "== gap bridging (handoff_bridge): $SMALL-node drains (drain, undrain) under a UDP prober of 16 sources every 2 ms; baseline: off, same run"
for b in off on; do
  read -r n lmed _ _ lmax < <(stats drain-udp "default+b$b" "$SMALL" lost)
  read -r _ bridged _ _ _ < <(stats bridged "default+b$b" "$SMALL" count)
  echo "  bridge $b ($n runs): lost $(total drain-udp "default+b$b" "$SMALL" lost) over all runs (per run median $lmed, max $lmax); answered twice $(total drain-udp "default+b$b" "$SMALL" duplicates); answered through a copy: $bridged"
done
echo
echo "raw samples: $SAMPLES"
