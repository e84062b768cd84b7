#!/usr/bin/env bash
# End-to-end test of the nftables dataplane with real packets: three nodes and a client in
# network namespaces on a bridge (itself inside a namespace), all created here with a
# per-run prefix and removed on exit, also on failure. Nothing outside those namespaces is
# touched. Needs root, nft and ip; fails (never skips) without them.
#
#   run_e2e.sh BIN_DIR SHOALCTL  (BIN_DIR holds dataplane_agent, responder and flow_client;
#                                 the bucket layouts come from `SHOALCTL plan`, i.e. the rebalance)
#
# For each hash mode, with an IPv4 and an IPv6 service at once:
#   - 240 UDP flows (60 source addresses x 4 destination ports, ephemeral source ports), each
#     answered by exactly the node that owns its bucket (owner predicted with shoal's jhash);
#   - 200 TCP connections greeted by their owner; a drain-style move of buckets; all 200
#     still echo; new flows follow the moved buckets (UDP and TCP);
# then once: drift (ruleset flushed, VIP removed) repaired by a check; SIGSTOP of a node's
# agent: once its lease has run out that node answers nothing, neither new UDP flows nor its
# established TCP connections, while its bucket sets stay loaded; it answers again after
# SIGCONT; kill -9 of a node's agent: that node answers nothing; takeover of its buckets with
# resets: its clients' TCP connections are reset promptly, everyone else's survive.
set -u
BIN=${1:?usage: run_e2e.sh BIN_DIR SHOALCTL}
SHOALCTL=${2:?usage: run_e2e.sh BIN_DIR SHOALCTL}
fail() { echo "E2E FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (network namespaces, nftables)"
command -v ip >/dev/null || fail "iproute2 'ip' not found"
command -v nft >/dev/null || fail "'nft' not found (apt-get install nftables)"
for b in dataplane_agent responder flow_client; do
  [ -x "$BIN/$b" ] || fail "$BIN/$b not built"
done

P="shoal-$$-"
WORK=$(mktemp -d /tmp/shoal-e2e.XXXXXX)
NODES="n1 n2 n3"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.2
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  # Anything still running inside this run's namespaces was started by this run.
  for ns in n1 n2 n3 c lan; do
    for pid in $(ip netns pids "${P}$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  for ns in lan n1 n2 n3 c; do ip netns del "${P}$ns" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "${P}$ns" "$@"; }

V4=10.77.0.100
V6=fd77::100
MAC4=01:00:5e:4d:00:64
MAC6=33:33:00:4d:01:00
BUCKETS=12
SEED=0x5eed
PORTS=7000,7001,7002,7003
FAILURES=0
check() {  # check "what" command...: runs it, prints its output, counts a failure
  local what=$1; shift
  local out
  out=$("$@" 2>&1); local rc=$?
  echo "$out" | sed "s/^/[$what] /"
  if [ $rc -ne 0 ]; then echo "E2E CHECK FAILED: $what"; FAILURES=$((FAILURES + 1)); fi
}

# ---- network: bridge br0 in ${P}lan, one veth per node/client ----
ip netns add "${P}lan" || fail "cannot create network namespaces"
in_ns lan ip link set lo up
in_ns lan ip link add br0 type bridge mcast_snooping 0
in_ns lan ip link set br0 up
i=0
for ns in n1 n2 n3 c; do
  i=$((i + 1))
  ip netns add "${P}$ns"
  in_ns lan ip link add "v$ns" type veth peer name eth0 netns "${P}$ns"
  in_ns lan ip link set "v$ns" master br0 up
  in_ns "$ns" ip link set lo up
  in_ns "$ns" ip link set eth0 up
  in_ns "$ns" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
done
for n in 1 2 3; do
  in_ns "n$n" ip addr add "10.77.0.$n/16" dev eth0
  in_ns "n$n" ip addr add "fd77::$n/64" dev eth0 nodad
done
in_ns c ip addr add 10.77.0.200/16 dev eth0
in_ns c ip addr add fd77::200/64 dev eth0 nodad
for k in $(seq 1 60); do
  in_ns c ip addr add "10.77.1.$k/16" dev eth0
  in_ns c ip addr add "fd77::1:$(printf %x "$k")/64" dev eth0 nodad
done

for n in $NODES; do
  ip netns exec "${P}$n" "$BIN/responder" --name "$n" --ports "$PORTS" >"$WORK/resp-$n.log" 2>&1 &
  PIDS+=($!)
done

# ---- agents: stdin from a FIFO, answers in a log ----
# Every agent leases its buckets and renews them while it runs (dataplane/lease.h): every
# check below is made with renewals going on, and a stopped agent's node goes silent.
LEASE_MS=300
RENEW_MS=50
declare -A AGENT_PID AGENT_FD
start_agent() {  # start_agent NODE HASH OWNED
  local n=$1 hash=$2 owned=$3
  rm -f "$WORK/$n.in"; mkfifo "$WORK/$n.in"
  : >"$WORK/$n.out"
  # Started with `ip netns exec` directly (it execs, no fork): $! is the agent itself.
  ip netns exec "${P}$n" "$BIN/dataplane_agent" --lease-ms "$LEASE_MS" --renew-ms "$RENEW_MS" \
    --service "name=v4,vip=$V4,dev=eth0,mac=$MAC4,hash=$hash,buckets=$BUCKETS,seed=$SEED,owned=$owned" \
    --service "name=v6,vip=$V6,dev=eth0,mac=$MAC6,hash=$hash,buckets=$BUCKETS,seed=$SEED,owned=$owned" \
    <"$WORK/$n.in" >"$WORK/$n.out" 2>"$WORK/$n.err" &
  AGENT_PID[$n]=$!
  PIDS+=($!)
  local fd
  exec {fd}>"$WORK/$n.in"
  AGENT_FD[$n]=$fd
  for _ in $(seq 1 100); do
    grep -q '^ready' "$WORK/$n.out" && return 0
    kill -0 "${AGENT_PID[$n]}" 2>/dev/null || break
    sleep 0.05
  done
  cat "$WORK/$n.err"
  fail "agent on $n did not start"
}
agent_cmd() {  # agent_cmd NODE COMMAND...: sends, waits for the answer, prints it
  local n=$1; shift
  local before
  before=$(wc -l <"$WORK/$n.out")
  echo "$*" >&"${AGENT_FD[$n]}"
  for _ in $(seq 1 200); do
    if [ "$(wc -l <"$WORK/$n.out")" -gt "$before" ]; then
      tail -n +"$((before + 1))" "$WORK/$n.out" | head -1
      return 0
    fi
    sleep 0.02
  done
  echo "error: no answer from agent on $n"
  return 1
}
stop_agent() {  # stop_agent NODE: quit -> teardown and exit (later children share the FIFO)
  local n=$1
  local fd=${AGENT_FD[$n]}
  echo quit >&"$fd"
  exec {fd}>&-
  wait "${AGENT_PID[$n]}" 2>/dev/null
}

udp_flows() {  # udp_flows VIP SOURCES HASH OWNERS...
  local vip=$1 sources=$2 hash=$3; shift 3
  local owners=()
  for o in "$@"; do owners+=(--owner "$o"); done
  in_ns c "$BIN/flow_client" udp --vip "$vip" --ports "$PORTS" --sources "$sources" --flows 240 \
    --service "hash=$hash,buckets=$BUCKETS,seed=$SEED" "${owners[@]}" --timeout-ms 1500
}

# 200 TCP connections held open by a client that takes commands from a FIFO (tcp_cmd);
# returns once the client has reported its connects.
start_tcp_client() {  # start_tcp_client VIP SOURCES HASH TIMEOUT_MS OWNERS...
  local vip=$1 sources=$2 hash=$3 timeout=$4; shift 4
  local owners=()
  for o in "$@"; do owners+=(--owner "$o"); done
  rm -f "$WORK/tcp.in"; mkfifo "$WORK/tcp.in"
  ip netns exec "${P}c" "$BIN/flow_client" tcp --vip "$vip" --ports "$PORTS" --sources "$sources" \
    --flows 200 --service "hash=$hash,buckets=$BUCKETS,seed=$SEED" "${owners[@]}" \
    --timeout-ms "$timeout" <"$WORK/tcp.in" >"$WORK/tcp.out" 2>&1 &
  tcp_pid=$!; PIDS+=($tcp_pid)
  exec {tcp_fd}>"$WORK/tcp.in"
  for _ in $(seq 1 300); do grep -q 'tcp-connect' "$WORK/tcp.out" && break; sleep 0.02; done
}
tcp_cmd() {  # tcp_cmd [COMMAND]: sends it to the TCP client, prints its answer, true on PASS
  local before; before=$(grep -c . "$WORK/tcp.out")
  [ -n "${1:-}" ] && echo "$1" >&"$tcp_fd"
  for _ in $(seq 1 300); do
    if grep -q 'PASS\|FAIL' <(tail -n +"$((before + 1))" "$WORK/tcp.out"); then break; fi
    sleep 0.02
  done
  tail -n +"$((before + 1))" "$WORK/tcp.out"
  tail -n +"$((before + 1))" "$WORK/tcp.out" | grep -q PASS
}

# Owners: the layouts the rebalance names (`shoalctl plan`) for three nodes, BUCKETS buckets
# and SEED: all up, n1 drained (a drain-style move between live nodes), n1 down (take-over).
cat >"$WORK/plan.yaml" <<PLAN
cluster: e2e
key_file: cluster.key
services:
  - name: web
    vip: $V4
    interface: eth0
    cluster_mac: $MAC4
    buckets: $BUCKETS
    seed: $SEED
nodes:
  - {name: n1, addresses: [10.77.0.1]}
  - {name: n2, addresses: [10.77.0.2]}
  - {name: n3, addresses: [10.77.0.3]}
PLAN
layout() {  # layout NODE [plan options]: NODE's buckets as "0:3:6" ("-" for none)
  local node=$1; shift
  local list
  list=$("$SHOALCTL" plan "$WORK/plan.yaml" --json "$@" |
    jq -r --arg n "$node" '[.buckets | to_entries[] | select(.value == $n) | .key] | map(tostring) | join(":")') ||
    fail "shoalctl plan failed"
  echo "${list:--}"
}
common() {  # common A B: buckets in both colon lists
  local out=() b
  for b in ${1//:/ }; do [[ ":$2:" == *":$b:"* ]] && out+=("$b"); done
  local IFS=:; echo "${out[*]:--}"
}
minus() {  # minus A B: buckets of colon list A not in B
  local out=() b
  for b in ${1//:/ }; do [[ ":$2:" == *":$b:"* ]] || out+=("$b"); done
  local IFS=:; echo "${out[*]:--}"
}
command -v jq >/dev/null || fail "jq not found (test/setup-deps.sh installs it)"
OWN1=$(layout n1); OWN2=$(layout n2); OWN3=$(layout n3)
MOVED1=$(layout n1 --drain n1); MOVED2=$(layout n2 --drain n1); MOVED3=$(layout n3 --drain n1)
DOWN2=$(layout n2 --down n1); DOWN3=$(layout n3 --down n1)
echo "layouts from the rebalance: all up n1=$OWN1 n2=$OWN2 n3=$OWN3;" \
  "n1 drained n2=$MOVED2 n3=$MOVED3; n1 down n2=$DOWN2 n3=$DOWN3"
[ "$OWN1" != - ] && [ "$MOVED1" = - ] || fail "unexpected layouts from shoalctl plan"

for hash in sourceip sourceip-sourceport sourceip-sourceport-destport; do
  echo "=== hash mode $hash ==="
  start_agent n1 "$hash" "$OWN1"
  start_agent n2 "$hash" "$OWN2"
  start_agent n3 "$hash" "$OWN3"
  for fam in 4 6; do
    if [ $fam = 4 ]; then vip=$V4; src=10.77.1.1+60; else vip=$V6; src=fd77::1:1+60; fi
    check "$hash v$fam udp before move" udp_flows "$vip" "$src" "$hash" \
      "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"
    start_tcp_client "$vip" "$src" "$hash" 3000 "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"
    check "$hash v$fam tcp connect" bash -c "cat '$WORK/tcp.out'; grep -q 'tcp-connect.*PASS' '$WORK/tcp.out'"
    check "$hash v$fam tcp alive before move" tcp_cmd "check alive"
    # Drain-style move between live nodes: n1 keeps its established connections.
    agent_cmd n2 set "v$fam" "$MOVED2"
    agent_cmd n3 set "v$fam" "$MOVED3"
    agent_cmd n1 set "v$fam" "$MOVED1"
    check "$hash v$fam tcp alive after move" tcp_cmd "check alive"
    check "$hash v$fam udp after move" udp_flows "$vip" "$src" "$hash" \
      "n1=$MOVED1" "n2=$MOVED2" "n3=$MOVED3"
    check "$hash v$fam new tcp after move" in_ns c "$BIN/flow_client" tcp --vip "$vip" \
      --ports "$PORTS" --sources "$src" --flows 200 --service "hash=$hash,buckets=$BUCKETS,seed=$SEED" \
      --owner "n1=$MOVED1" --owner "n2=$MOVED2" --owner "n3=$MOVED3" --timeout-ms 3000
    exec {tcp_fd}>&-
    wait "$tcp_pid" 2>/dev/null
    agent_cmd n1 set "v$fam" "$OWN1"
    agent_cmd n2 set "v$fam" "$OWN2"
    agent_cmd n3 set "v$fam" "$OWN3"
  done
  if [ "$hash" != sourceip-sourceport-destport ]; then
    for n in $NODES; do stop_agent "$n"; done
  fi
done

hash=sourceip-sourceport-destport
echo "=== drift: flushed ruleset, removed VIP ==="
in_ns n1 nft flush ruleset
in_ns n1 ip addr del "$V4/32" dev eth0
answer=$(agent_cmd n1 check); echo "[drift] n1: $answer"
case "$answer" in "ok repaired=0"*|error*) echo "E2E CHECK FAILED: drift not repaired"; FAILURES=$((FAILURES + 1));; esac
check "drift v4 udp after repair" udp_flows "$V4" 10.77.1.1+60 "$hash" "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"
answer=$(agent_cmd n1 check); echo "[drift] n1 second check: $answer"
case "$answer" in "ok repaired=0"*) ;; *) echo "E2E CHECK FAILED: repeated check found drift"; FAILURES=$((FAILURES + 1));; esac

echo "=== a hand-off at an instant of the kernel's clock (timed buckets) ==="
# n1 answers its buckets until 3 s from now, n2 and n3 the ones they gain from the same
# instant on: before it the old owners answer every flow, after it the new ones.
agent_cmd n1 timed v4 "$OWN1" - 3000
agent_cmd n2 timed v4 "$(minus "$MOVED2" "$OWN2")" 3000 -
agent_cmd n3 timed v4 "$(minus "$MOVED3" "$OWN3")" 3000 -
t0=$SECONDS
check "timed: before the instant, the old owners" \
  udp_flows "$V4" 10.77.1.1+60 "$hash" "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"
((SECONDS - t0 < 3)) || { echo "E2E CHECK FAILED: timed: the check before the instant took too long"; FAILURES=$((FAILURES + 1)); }
sleep 3.3
check "timed: after the instant, the new owners" \
  udp_flows "$V4" 10.77.1.1+60 "$hash" "n2=$MOVED2" "n3=$MOVED3"
check "timed: the windows in the kernel" bash -c \
  "ip netns exec ${P}n1 nft list set inet shoal s0_timed | grep -q '0x534800.* \\. \"'"
for n in $NODES; do agent_cmd "$n" set v4 "$(eval echo \$OWN${n#n})"; done
check "timed: back to the first layout" \
  udp_flows "$V4" 10.77.1.1+60 "$hash" "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"

echo "=== dead-man switch: n1's agent stopped (SIGSTOP), then continued ==="
# Established connections too: 200 of them, opened before the stop.
start_tcp_client "$V4" 10.77.1.1+60 "$hash" 1500 "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"
check "stop: tcp connect" bash -c "cat '$WORK/tcp.out'; grep -q 'tcp-connect.*PASS' '$WORK/tcp.out'"
check "stop: tcp alive before the stop" tcp_cmd "check alive"
kill -STOP "${AGENT_PID[n1]}"
# The last renewal was at most RENEW_MS before the stop: silent one lease later.
sleep "0.$((LEASE_MS + 50))"
check "stopped agent: n1 silent within its lease, others by owner" \
  udp_flows "$V4" 10.77.1.1+60 "$hash" "n2=$OWN2" "n3=$OWN3"
check "stopped agent: n1's established connections get no answer, others echo" \
  tcp_cmd "check silent-from n1"
check "stopped agent: its tables are still loaded (only the lease ran out)" \
  bash -c "ip netns exec ${P}n1 nft list table inet shoal >/dev/null"
check "stopped agent: its bucket sets are still there (only the live element expired)" \
  bash -c "ip netns exec ${P}n1 nft list set inet shoal s0_owned | grep -q elements"
exec {tcp_fd}>&-
wait "$tcp_pid" 2>/dev/null
kill -CONT "${AGENT_PID[n1]}"
sleep "0.$((RENEW_MS * 3))"
check "continued agent: n1 answers its buckets again" \
  udp_flows "$V4" 10.77.1.1+60 "$hash" "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"

echo "=== fail-safe: kill -9 of n1's agent, then takeover with resets ==="
start_tcp_client "$V4" 10.77.1.1+60 "$hash" 3000 "n1=$OWN1" "n2=$OWN2" "n3=$OWN3"
check "failsafe tcp connect" bash -c "cat '$WORK/tcp.out'; grep -q 'tcp-connect.*PASS' '$WORK/tcp.out'"
kill -9 "${AGENT_PID[n1]}"
wait "${AGENT_PID[n1]}" 2>/dev/null
sleep 0.2
check "failsafe: n1 tables gone" bash -c "! ip netns exec ${P}n1 nft list table inet shoal 2>/dev/null"
for fam in 4 6; do
  if [ $fam = 4 ]; then vip=$V4; src=10.77.1.1+60; else vip=$V6; src=fd77::1:1+60; fi
  check "failsafe v$fam udp: n1 silent, others by owner" udp_flows "$vip" "$src" "$hash" \
    "n2=$OWN2" "n3=$OWN3"
done
# Takeover: n2 and n3 take the layout without n1; n1 is dead, so connections in its old
# buckets get resets (only there: the others' established connections stay).
agent_cmd n2 set v4 "$DOWN2" "$(common "$DOWN2" "$OWN1")"
agent_cmd n3 set v4 "$DOWN3" "$(common "$DOWN3" "$OWN1")"
check "takeover: n1's connections reset, others alive" tcp_cmd "check reset-from n1"
check "takeover v4 udp" udp_flows "$V4" 10.77.1.1+60 "$hash" "n2=$DOWN2" "n3=$DOWN3"
exec {tcp_fd}>&-

echo "=== done: $FAILURES failed checks ==="
[ "$FAILURES" = 0 ] || exit 1
echo "E2E PASS"
