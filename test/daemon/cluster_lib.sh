# Shared by the daemon end-to-end tests, the failover benchmark and the demo: a cluster of
# shoald nodes in network namespaces. Source it, then call cluster_setup.
#
# Topology (everything inside namespaces this file creates, named ${P}...; nothing on the
# host is touched):
#   ${P}sw    three bridges: lan (the VIP's LAN), m1 and m2 (two heartbeat links)
#   ${P}nK    node K: lan0 10.50.0.K/16, m1 10.51.0.K/24, m2 10.52.0.K/24; runs shoald and a
#             responder on the service port
#   ${P}c     the client: lan0 10.50.0.250/16 plus source addresses 10.50.1.1.. for probes
# The VIP is 10.50.0.100 with cluster MAC 01:00:5e:32:00:64, 16 buckets, hash sourceip.
#
# Needs: root, ip, nft, jq, and the programs named by SHOALD, SHOALCTL, RESPONDER, PROBER.

: "${SHOALD:?set SHOALD, SHOALCTL, RESPONDER and PROBER to the built programs}"
: "${SHOALCTL:?}" "${RESPONDER:?}" "${PROBER:?}"
P="shoal-$$-"
WORK=$(mktemp -d /tmp/shoal-cluster.XXXXXX)
VIP=10.50.0.100
PORT=8080
CL_PIDS=()
declare -A SHOALD_PID

cluster_fail() { echo "FAIL: $*" >&2; exit 1; }

# The tests' checks: each prints PASS or FAIL with what it checked and is counted.
PASSED=0
FAILED=0
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
expect() {  # expect "what" CONDITION...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
show_logs() {  # show_logs [LINES]: the last LINES (15) lines of every node's shoald log
  local k
  for k in $(seq 1 "$NODES"); do
    echo "--- n$k shoald log (last ${1:-15} lines)"
    tail -n "${1:-15}" "$WORK/n$k/shoald.log"
  done
}
until_true() {  # until_true SECONDS COMMAND...: polls every 0.1 s; 1 on time-out
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

cluster_cleanup() {
  # SHOAL_KEEP_LOGS=DIR keeps the daemons' logs for a post-mortem.
  if [ -n "${SHOAL_KEEP_LOGS:-}" ]; then
    mkdir -p "$SHOAL_KEEP_LOGS" && cp -r "$WORK"/. "$SHOAL_KEEP_LOGS"/ 2>/dev/null
  fi
  local pid
  for pid in "${SHOALD_PID[@]}" "${CL_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${SHOALD_PID[@]}" "${CL_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${P}"); do
    # Anything still running in a namespace of this run (started by it) goes with it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}

in_ns() { local ns=$1; shift; ip netns exec "${P}$ns" "$@"; }

# cluster_setup N [PROFILE] [POLICY]: namespaces, links, definition and key for N nodes.
cluster_setup() {
  local n=$1 profile=${2:-default} policy=${3:-majority}
  [ "$(id -u)" = 0 ] || cluster_fail "must run as root (network namespaces, nftables)"
  local tool
  for tool in ip nft jq; do
    command -v "$tool" >/dev/null || cluster_fail "$tool not found (test/setup-deps.sh installs it)"
  done
  for tool in "$SHOALD" "$SHOALCTL" "$RESPONDER" "$PROBER"; do
    [ -x "$tool" ] || cluster_fail "$tool not built"
  done
  NODES=$n
  ip netns add "${P}sw" || cluster_fail "cannot create network namespaces"
  in_ns sw ip link set lo up
  # The bridges stand in for switches, which do not run the firewall on the frames they
  # forward. With br_netfilter loaded (by a container runtime, say) a bridge would pass every
  # frame through netfilter, and on veths that work is charged to the sending daemon's CPU.
  # The setting is per network namespace: only this namespace's bridges are affected.
  local f
  for f in bridge-nf-call-iptables bridge-nf-call-ip6tables bridge-nf-call-arptables; do
    if in_ns sw test -e "/proc/sys/net/bridge/$f"; then
      in_ns sw sh -c "echo 0 > /proc/sys/net/bridge/$f"
    fi
  done
  local br
  for br in lan m1 m2; do
    in_ns sw ip link add "$br" type bridge mcast_snooping 0
    in_ns sw ip link set "$br" up
  done
  local k
  for k in $(seq 1 "$n"); do
    ip netns add "${P}n$k" || cluster_fail "cannot create namespace ${P}n$k"
  done
  ip netns add "${P}c" || cluster_fail "cannot create namespace ${P}c"
  for k in $(seq 1 "$n"); do
    local ns="n$k"
    in_ns "$ns" ip link set lo up
    for br in lan m1 m2; do
      in_ns sw ip link add "$br-$k" type veth peer name "${br/lan/lan0}" netns "${P}$ns"
      in_ns sw ip link set "$br-$k" master "$br" up
      in_ns "$ns" ip link set "${br/lan/lan0}" up
    done
    in_ns "$ns" ip addr add "10.50.0.$k/16" dev lan0
    in_ns "$ns" ip addr add "10.51.0.$k/24" dev m1
    in_ns "$ns" ip addr add "10.52.0.$k/24" dev m2
  done
  in_ns c ip link set lo up
  in_ns sw ip link add lan-c type veth peer name lan0 netns "${P}c"
  in_ns sw ip link set lan-c master lan up
  in_ns c ip link set lan0 up
  in_ns c ip addr add 10.50.0.250/16 dev lan0
  for k in $(seq 1 64); do
    in_ns c ip addr add "10.50.1.$k/16" dev lan0
  done

  "$SHOALCTL" keygen "$WORK/cluster.key" >/dev/null || cluster_fail "keygen"
  {
    echo "cluster: shoal-test"
    echo "key_file: cluster.key"
    echo "dataplane: nftables"
    echo "partition_policy: $policy"
    echo "timing: $profile"
    echo "services:"
    echo "  - name: web"
    echo "    vip: $VIP"
    echo "    interface: lan0"
    echo "    cluster_mac: 01:00:5e:32:00:64"
    echo "    hash: sourceip"
    echo "    buckets: 16"
    echo "    seed: 0x5eed"
    echo "nodes:"
    for k in $(seq 1 "$n"); do
      echo "  - name: n$k"
      echo "    addresses: [10.51.0.$k, 10.52.0.$k]"
    done
    # CLUSTER_HEARTBEAT_MULTICAST="239.192.74.1, off" sends the heartbeats of link m1 to that
    # group (the bridges flood multicast: mcast_snooping is off).
    if [ -n "${CLUSTER_HEARTBEAT_MULTICAST:-}" ]; then
      echo "heartbeat_multicast: [$CLUSTER_HEARTBEAT_MULTICAST]"
    fi
    # With CLUSTER_HEALTH_SCRIPT=1: a script health check that fails on node K while
    # $WORK/unhealthy-nK exists (the script finds its node from its network namespace), and
    # a hold-down of 1 s after it passes again.
    if [ "${CLUSTER_HEALTH_SCRIPT:-0}" = 1 ]; then
      echo "health_checks:"
      echo "  - name: app"
      echo "    kind: script"
      echo "    target: $WORK/check-app.sh"
      echo "    interval_ms: 100"
      echo "    timeout_ms: 100"
      echo "    rise: 2"
      echo "    fall: 2"
      echo "health_hold_down_ms: 1000"
    fi
  } >"$WORK/cluster.yaml"
  printf '#!/bin/sh\nns=$(ip netns identify $$)\n[ ! -e "%s/unhealthy-${ns#%s}" ]\n' \
    "$WORK" "$P" >"$WORK/check-app.sh"
  chmod 755 "$WORK/check-app.sh"
  "$SHOALCTL" validate "$WORK/cluster.yaml" >/dev/null || cluster_fail "generated definition invalid"
  for k in $(seq 1 "$n"); do
    mkdir -p "$WORK/n$k"
    # `ip netns exec` execs the program, so $! is the program itself (killable by PID).
    ip netns exec "${P}n$k" "$RESPONDER" --name "n$k" --ports "$PORT" >"$WORK/n$k/responder.log" 2>&1 &
    CL_PIDS+=($!)
  done
}

# start_node K [extra shoald args]: starts shoald on node K in the background, with the
# definition $CONFIG (default: the cluster's).
start_node() {
  local k=$1; shift
  ip netns exec "${P}n$k" "$SHOALD" --config "${CONFIG:-$WORK/cluster.yaml}" --node "n$k" \
    --socket "$WORK/n$k/shoald.sock" --state-dir "$WORK/n$k" "$@" \
    >>"$WORK/n$k/shoald.log" 2>&1 &
  SHOALD_PID[$k]=$!
}

crash_node() { kill -9 "${SHOALD_PID[$1]}" 2>/dev/null; wait "${SHOALD_PID[$1]}" 2>/dev/null; unset "SHOALD_PID[$1]"; }
stop_node() { kill -TERM "${SHOALD_PID[$1]}" 2>/dev/null; wait "${SHOALD_PID[$1]}" 2>/dev/null; unset "SHOALD_PID[$1]"; }

ctl() {  # ctl K ARGS...: shoalctl against node K's daemon
  local k=$1; shift
  "$SHOALCTL" "$@" --socket "$WORK/n$k/shoald.sock"
}

# wait_converged K ALIVE [SECONDS]: node K sees ALIVE alive nodes, views agree, and every
# bucket of every service has an owner. Prints nothing; returns 1 on time-out.
wait_converged() {
  local k=$1 alive=$2 limit=${3:-10}
  local deadline=$((SECONDS + limit)) s
  while ((SECONDS < deadline)); do
    s=$(ctl "$k" status --json 2>/dev/null) || { sleep 0.1; continue; }
    if [ "$(jq '[.nodes[] | select(.state == "alive")] | length' <<<"$s")" = "$alive" ] &&
       [ "$(jq '.views_agree' <<<"$s")" = true ] &&
       [ "$(jq '[.services[].owners[] | select(. == "")] | length' <<<"$s")" = 0 ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# start_prober MODE [DURATION_MS]: a client probing the VIP every 10 ms from 32 sources.
# PROBER_SOURCES and PROBER_INTERVAL_MS override the client's 32 sources every 10 ms.
start_prober() {
  local mode=$1 duration=${2:-0}
  ip netns exec "${P}c" "$PROBER" "$mode" --vip "$VIP" --port "$PORT" \
    --sources "${PROBER_SOURCES:-10.50.1.1+32}" --interval-ms "${PROBER_INTERVAL_MS:-10}" \
    --duration-ms "$duration" >"$WORK/prober.out" 2>&1 &
  PROBER_PID=$!
  CL_PIDS+=($PROBER_PID)
}
stop_prober() {  # stops it and sets R to its RESULT line (call it directly, not in $(...))
  kill -TERM "$PROBER_PID" 2>/dev/null
  wait "$PROBER_PID" 2>/dev/null
  R=$(grep '^RESULT' "$WORK/prober.out")
}
result_field() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"; }
# bridged_count: requests the nodes answered through a releaser's copy since their tables
# were built (the counter of the taker's rule, nft_ruleset.cpp), summed over the nodes.
bridged_count() {
  local k n sum=0
  for k in $(seq 1 "$NODES"); do
    n=$(in_ns "n$k" nft list chain inet shoal s0 2>/dev/null |
      sed -n 's/.*delete @s0_seen.* counter packets \([0-9]*\).*/\1/p')
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

# ---- Helpers for the failover benchmark and the 16-node test (added later; the functions
# ---- above keep their behaviour).

# now_ms: wall-clock time in ms since the epoch, without forking (the daemons' event times
# are in the same clock).
now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:-3}"; }

# crash_machine K: node K dies like a machine: shoald stops at once (SIGSTOP, so it neither
# notices its link go down nor loses its nftables table while the link is still up), its
# LAN link goes down, then shoald is killed with SIGKILL.
crash_machine() {
  kill -STOP "${SHOALD_PID[$1]}" 2>/dev/null
  in_ns "n$1" ip link set lan0 down
  crash_node "$1"
}
# started_node K [extra shoald args]: start_node, then waits (up to 5 s) until the background
# process has become shoald. Until then it is a copy of this shell, with its traps: a signal
# sent to it in that instant (a stop right after a start) would run this shell's EXIT trap
# there and clean up the whole cluster.
started_node() {
  start_node "$@"
  local pid=${SHOALD_PID[$1]} i
  for ((i = 0; i < 500; i++)); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = shoald ] && return 0
    [ -e "/proc/$pid" ] || return 1
    sleep 0.01
  done
  return 1
}

# revive_machine K [extra shoald args]: the LAN link back up and shoald started again.
revive_machine() { local k=$1; shift; in_ns "n$k" ip link set lan0 up; started_node "$k" "$@"; }

# restart_cluster [PROFILE]: stops every running shoald gracefully, optionally switches the
# definition's timing profile, and starts shoald on all NODES nodes again. Daemons keep
# nothing but their state directory across it, so membership history (flap damping) is gone.
restart_cluster() {
  local profile=${1:-} k
  for k in "${!SHOALD_PID[@]}"; do stop_node "$k"; done
  if [ -n "$profile" ]; then
    sed -i "s/^timing: .*/timing: $profile/" "$WORK/cluster.yaml"
  fi
  for k in $(seq 1 "$NODES"); do started_node "$k"; done
}

# proc_usage PID: prints "RSS_KIB CPU_TICKS" for a process: VmRSS from /proc/PID/status and
# utime+stime (clock ticks, see `getconf CLK_TCK`) from /proc/PID/stat.
proc_usage() {
  local rss ticks
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  # Fields after the command name, which is in parentheses and may contain spaces.
  ticks=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}') || return 1
  [ -n "$rss" ] && [ -n "$ticks" ] || return 1
  echo "$rss $ticks"
}

# start_prober_from MODE COUNT [DURATION_MS]: like start_prober, from COUNT (1..64) sources.
start_prober_from() {
  local mode=$1 count=$2 duration=${3:-0}
  ip netns exec "${P}c" "$PROBER" "$mode" --vip "$VIP" --port "$PORT" \
    --sources "10.50.1.1+$count" --interval-ms 10 --duration-ms "$duration" \
    >"$WORK/prober.out" 2>&1 &
  PROBER_PID=$!
  CL_PIDS+=($PROBER_PID)
}

# event_times K SINCE_MS REGEX: the unix_ms times of node K's recent events whose text
# matches REGEX (jq syntax) and that happened at or after SINCE_MS, one a line, oldest first.
event_times() {
  ctl "$1" events --json 2>/dev/null |
    jq -r --argjson since "$2" --arg re "$3" \
      '.events[] | select((.unix_ms | tonumber) >= $since and (.text | test($re))) | .unix_ms'
}

# who_answers I: the name of the node that answers a TCP connection to the VIP from the
# client's I-th source address (10.50.1.I), or nothing within a second.
who_answers() {
  in_ns c timeout 1 ncat --recv-only -s "10.50.1.$1" "$VIP" "$PORT" </dev/null 2>/dev/null | head -n 1
}

# handoff_report LOG...: pairs the timed hand-overs the daemons logged (a releaser's
# "handing buckets B over ... (until T)" with the taker's "taking bucket b ... (from T')",
# "taking bucket b earlier, from T'" or "took bucket b ... instant T'"; the namespaces share
# one clock, so T' - T is the real gap) and prints "takes=N overlaps=O late=L min_us=..
# median_us=.. max_us=..". An overlap is a take that starts before its releaser stopped.
handoff_report() {
  awk '
    function us(t,   p) { split(t, p, ":"); return ((p[1] * 60 + p[2]) * 60 + p[3]) * 1e6 }
    /handing buckets .* over, answered .*\(until / {
      match($0, /buckets [0-9,-]+ over/); list = substr($0, RSTART + 8, RLENGTH - 13)
      match($0, /until [0-9:.]+\)/); t = us(substr($0, RSTART + 6, RLENGTH - 7))
      n = split(list, parts, ",")
      for (i = 1; i <= n; i++) {
        if (split(parts[i], ab, "-") == 2) { for (b = ab[1]; b <= ab[2]; b++) rel[b, ++nr[b]] = t }
        else rel[parts[i], ++nr[parts[i]]] = t
      }
    }
    /taking bucket [0-9]+ (in .*\(from|earlier, from) / || /took bucket [0-9]+ .* instant / {
      match($0, /bucket [0-9]+/); b = substr($0, RSTART + 7, RLENGTH - 7)
      match($0, /(from|instant) [0-9:.]+/); s = substr($0, RSTART, RLENGTH); sub(/^[a-z]+ /, "", s)
      take[++nt] = b; at[nt] = us(s); if ($0 ~ /took bucket/) lateflag[nt] = 1
    }
    END {
      for (k = 1; k <= nt; k++) {
        b = take[k]; best = -1
        for (i = 1; i <= nr[b]; i++) {
          d = at[k] - rel[b, i]; if (d < 0) d = -d
          if (d < 1e6 && (best < 0 || d < bestd)) { best = i; bestd = d }
        }
        if (best < 0) continue
        key = b SUBSEP best
        if (!(key in start) || at[k] < start[key]) start[key] = at[k]
        if (lateflag[k]) late++
      }
      n = 0
      for (key in start) { split(key, kb, SUBSEP); g[++n] = start[key] - rel[kb[1], kb[2]] }
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (g[j] < g[i]) { x = g[i]; g[i] = g[j]; g[j] = x }
      over = 0; for (i = 1; i <= n; i++) if (g[i] < 0) over++
      printf "takes=%d overlaps=%d late=%d min_us=%d median_us=%d max_us=%d\n", n, over, late + 0,
        n ? g[1] : 0, n ? g[int((n + 1) / 2)] : 0, n ? g[n] : 0
    }' "$@"
}

# conn_start K SOURCES FLOWS: FLOWS TCP connections to the VIP from SOURCES (FIRST+COUNT),
# each checked to be greeted by its bucket's owner as node K's status names it, then held
# open by a client (FLOW_CLIENT, test/e2e/flow_client.cpp) that takes commands through
# conn_cmd. Returns once the client reported its connects: 0 if all were as predicted.
conn_start() {
  : "${FLOW_CLIENT:?set FLOW_CLIENT to the built flow_client}"
  local k=$1 sources=$2 flows=$3 owners=()
  mapfile -t owners < <(ctl "$k" status --json | jq -r '.services[0].owners | to_entries |
    group_by(.value) | map("--owner\n\(.[0].value)=" + (map(.key | tostring) | join(":"))) | .[]')
  rm -f "$WORK/conn.in"
  mkfifo "$WORK/conn.in"
  ip netns exec "${P}c" "$FLOW_CLIENT" tcp --vip "$VIP" --ports "$PORT" --sources "$sources" \
    --flows "$flows" --service "hash=sourceip,buckets=16,seed=0x5eed" "${owners[@]}" \
    --timeout-ms 2000 <"$WORK/conn.in" >"$WORK/conn.out" 2>&1 &
  CONN_PID=$!
  CL_PIDS+=($CONN_PID)
  exec {CONN_FD}>"$WORK/conn.in"
  local i
  for ((i = 0; i < 300; i++)); do grep -q 'tcp-connect' "$WORK/conn.out" && break; sleep 0.02; done
  grep 'tcp-connect' "$WORK/conn.out"
  grep -q 'tcp-connect.*PASS' "$WORK/conn.out"
}
# conn_cmd COMMAND: sends it to the connection client, prints its answer, 0 on PASS.
conn_cmd() {
  local before i
  before=$(grep -c . "$WORK/conn.out")
  echo "$1" >&"$CONN_FD"
  for ((i = 0; i < 300; i++)); do
    tail -n +"$((before + 1))" "$WORK/conn.out" | grep -q 'PASS\|FAIL' && break
    sleep 0.02
  done
  tail -n +"$((before + 1))" "$WORK/conn.out"
  tail -n +"$((before + 1))" "$WORK/conn.out" | grep -q PASS
}
# conn_close: ends the client, which closes its connections.
conn_close() {
  exec {CONN_FD}>&-
  wait "$CONN_PID" 2>/dev/null
}
