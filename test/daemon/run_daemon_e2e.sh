#!/usr/bin/env bash
# End-to-end tests of shoald: real daemons in network namespaces, real heartbeats over UDP,
# the real nftables dataplane, and a client whose requests are counted.
#
#   SHOALD=... SHOALCTL=... RESPONDER=... PROBER=... FLOW_CLIENT=... run_daemon_e2e.sh
#
# Each check prints PASS or FAIL with its figures; the last line is "N passed, M failed".
set -u
. "$(dirname "$0")/cluster_lib.sh"
trap cluster_cleanup EXIT
trap 'exit 1' INT TERM

owned_by() { ctl 1 status --json 2>/dev/null | jq "[.services[0].owners[] | select(. == \"$1\")] | length"; }
owns_none() { [ "$(owned_by "$1")" = 0 ]; }
owns_some() { [ "$(owned_by "$1")" -gt 0 ] 2>/dev/null; }
n1_has() { ctl 1 status --json 2>/dev/null | jq -e "$1" >/dev/null; }
exited() {  # exited PID: the process has ended (gone, or a zombie not yet waited for)
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
  [ -z "$st" ] || [ "$st" = Z ]
}
events_have() { ctl 1 events 2>/dev/null | grep -q "$1"; }

CLUSTER_HEALTH_SCRIPT=1 cluster_setup 3 default majority
for k in 1 2 3; do start_node "$k"; done
if wait_converged 1 3 15; then pass "three nodes start and converge"; else
  fail "three nodes start and converge"; show_logs; exit 1
fi
ctl 1 status

# status --watch follows the cluster: a whole frame per interval until SIGINT, then exit 0.
"$SHOALCTL" status --watch --json --interval 200 --socket "$WORK/n1/shoald.sock" \
  >"$WORK/watch.json" 2>"$WORK/watch.err" &
watch_pid=$!
sleep 1.1
kill -INT "$watch_pid"
for _ in $(seq 20); do kill -0 "$watch_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$watch_pid" 2>/dev/null; then kill -9 "$watch_pid"; fi
wait "$watch_pid"; watch_rc=$?
frames=$(jq -s 'map(select((.nodes | length) == 3)) | length' "$WORK/watch.json" 2>/dev/null)
echo "status --watch: ${frames:-no} frames in 1.1 s, exit $watch_rc"
expect "status --watch --json: a whole frame every 200 ms (3 to 7 in 1.1 s)" \
  test "${frames:-0}" -ge 3 -a "${frames:-0}" -le 7
expect "status --watch: SIGINT ends it cleanly (exit 0)" test "$watch_rc" = 0

# Steady state: every request answered exactly once.
start_prober udp
sleep 2
stop_prober; r=$R
echo "steady state: $r"
expect "steady state: every request answered once" \
  test "$(result_field "$r" lost)" = 0 -a "$(result_field "$r" duplicates)" = 0

# Drain and undrain with zero lost requests and no broken established connection.
expect "before the drain: 48 connections greeted by their buckets' owners" \
  conn_start 1 10.50.1.40+16 48
start_prober tcp
sleep 1
ctl 2 drain n2 >/dev/null
expect "drained node owns no bucket" until_true 10 owns_none n2
sleep 0.5
ctl 3 undrain n2 >/dev/null
until_true 10 owns_some n2
sleep 0.5
stop_prober; r=$R
echo "drain+undrain (tcp, new connection every 10 ms per source): $r"
expect "drain and undrain lose no request" test "$(result_field "$r" lost)" = 0
expect "undrained node owns buckets again" owns_some n2
expect "drain and undrain: every established connection still answers" conn_cmd "check alive"
conn_close
# The moves were switched at kernel-clock instants, each take at or after its release.
h=$(handoff_report "$WORK"/n*/shoald.log)
echo "hand-overs of the drain and undrain: $h"
expect "drain and undrain: timed hand-overs, none started before its release" \
  test "$(result_field " $h" takes)" -gt 0 -a "$(result_field " $h" overlaps)" = 0

# Drain and undrain under a UDP client (16 sources, a request every 2 ms each): no request is
# lost or answered twice. A request that reaches the nodes between the releaser's instant and
# the taker's is answered by the taker through the releaser's copy (the bridged count).
PROBER_SOURCES=10.50.1.1+16 PROBER_INTERVAL_MS=2 start_prober udp
sleep 0.5
for cycle in 1 2 3; do
  ctl 2 drain n2 >/dev/null
  until_true 10 owns_none n2
  sleep 0.3
  ctl 2 undrain n2 >/dev/null
  until_true 10 owns_some n2
  sleep 0.3
done
stop_prober; r=$R
bridged=$(bridged_count)
echo "3 drains and undrains (udp, 8000 requests a second): $r; bridged: $bridged"
bridging_loaded() {
  local k
  for k in 1 2 3; do in_ns "n$k" nft list table ip shoal_fwd >/dev/null || return 1; done
  ! grep -q 'cannot bridge' "$WORK"/n*/shoald.log
}
expect "drain and undrain under UDP: every node bridges the gaps (its forward table is loaded)" \
  bridging_loaded
expect "drain and undrain under UDP: no request lost, none answered twice" \
  test "$(result_field "$r" lost)" = 0 -a "$(result_field "$r" duplicates)" = 0
expect "drain and undrain under UDP: n2 owns buckets again" owns_some n2

# A failing health check drains the node by itself; it comes back after the hold-down.
start_prober tcp
touch "$WORK/unhealthy-n2"
until_true 10 owns_none n2
s=$(ctl 1 status --json)
expect "failing health check: n2 reports failing" test "$(jq -r '.nodes[1].health' <<<"$s")" = failing
expect "failing health check: n2 owns no bucket" \
  test "$(jq '[.services[0].owners[] | select(. == "n2")] | length' <<<"$s")" = 0
rm -f "$WORK/unhealthy-n2"
t_healthy=$(now_ms)
until_true 15 owns_some n2
back_ms=$(($(now_ms) - t_healthy))
echo "n2 serves again ${back_ms} ms after its check passes (definition: health_hold_down_ms 1000)"
expect "the definition's health_hold_down_ms (1 s, not the 10 s default) holds n2 out" \
  test "$back_ms" -ge 1000 -a "$back_ms" -lt 6000
sleep 0.5
s=$(ctl 1 status --json)
stop_prober; r=$R
echo "health check failing and recovering on n2 (tcp): $r"
expect "recovered health check: n2 serves again after the hold-down" \
  test "$(jq '[.services[0].owners[] | select(. == "n2")] | length' <<<"$s")" -gt 0
expect "health drain and return lose no request" test "$(result_field "$r" lost)" = 0

# Loss of heartbeat link 1 while link 2 is up: no failover.
start_prober udp
in_ns n3 ip link set m1 down
sleep 2
s=$(ctl 1 status --json)
stop_prober; r=$R
in_ns n3 ip link set m1 up
echo "link 1 of n3 down: $r"
expect "one heartbeat link down: nobody is declared dead" \
  test "$(jq '[.nodes[] | select(.state == "alive")] | length' <<<"$s")" = 3
expect "one heartbeat link down: no request lost" test "$(result_field "$r" lost)" = 0

# Daemon-only crash (kill -9, kernel alive): never answered twice; survivors take over.
wait_converged 1 3 10
start_prober udp
sleep 0.5
crash_node 3
wait_converged 1 2 10 || fail "survivors converge after n3's daemon crash"
sleep 1
stop_prober; r=$R
echo "kill -9 of n3's daemon: $r"
expect "daemon crash: no request answered twice" test "$(result_field "$r" duplicates)" = 0
expect "daemon crash: survivors answer every bucket" \
  test "$(ctl 1 status --json | jq '[.services[0].owners[] | select(. == "n1" or . == "n2")] | length')" = 16
start_node 3
wait_converged 1 3 15 || fail "n3 rejoins"

# Stalled daemon (SIGSTOP for about a second, kernel alive): its lease runs out before the
# survivors can declare it dead and take its buckets, so nothing is answered twice; after
# SIGCONT it counts the lapse, waits for fresh claims from its peers and serves again.
wait_converged 1 3 10
start_prober udp
sleep 0.5
kill -STOP "${SHOALD_PID[3]}"
sleep 1.2
during=$(ctl 1 status --json)
kill -CONT "${SHOALD_PID[3]}"
wait_converged 1 3 15 || fail "n3 rejoins after SIGCONT"
sleep 1
stop_prober; r=$R
echo "n3's daemon stopped for 1.2 s: $r"
expect "stalled daemon: no request answered twice" test "$(result_field "$r" duplicates)" = 0
expect "stalled daemon: survivors answered every bucket while it was stopped" \
  test "$(jq '[.services[0].owners[] | select(. == "n1" or . == "n2")] | length' <<<"$during")" = 16
expect "stalled daemon: its lease lapse is counted in its status" \
  test "$(ctl 3 status --json | jq '.lease.lapses | tonumber')" -ge 1
expect "stalled daemon: it serves again after SIGCONT" until_true 10 owns_some n3
expect "stalled daemon: the lapse is in its events" until_true 5 sh -c \
  "'$SHOALCTL' events --socket '$WORK/n3/shoald.sock' | grep -q 'lease lapsed'"

# Node crash: daemon killed and its LAN link down.
start_prober udp
sleep 0.5
crash_node 2
in_ns n2 ip link set lan0 down
wait_converged 1 2 10 || fail "survivors converge after n2's crash"
sleep 1
stop_prober; r=$R
echo "node crash of n2: $r"
expect "node crash: survivors answer all buckets afterwards" \
  test "$(ctl 1 status --json | jq '[.services[0].owners[] | select(. == "n1" or . == "n3")] | length')" = 16
expect "node crash: outage under 1 s" test "$(result_field "$r" max_outage_ms)" -lt 1000
# The survivors keep sending heartbeats to n2's address: their rounds sit on the wall clock's
# 40 ms grid (default profile), so they arrive just past it, not spread over the interval.
cport=$(sed -n 's/^port: *//p' "$WORK/cluster.yaml"); cport=${cport:-7400}
r=$(in_ns n2 "$PROBER" listen --bind 10.51.0.2 --port "$cport" --duration-ms 2000 --grid-ms 40)
echo "heartbeats to the crashed n2's address: $r"
expect "survivors' heartbeat rounds are aligned: over 50 heartbeats in 2 s" \
  test "$(result_field "$r" datagrams)" -gt 50
expect "survivors' heartbeat rounds are aligned: median arrival within 5 ms past the grid" \
  awk -v m="$(sed -n 's/.* median_phase_ms=\([0-9.]*\).*/\1/p' <<<"$r")" \
  'BEGIN { exit !(m != "" && m >= 0 && m <= 5) }'
in_ns n2 ip link set lan0 up
start_node 2
wait_converged 1 3 15 || fail "n2 rejoins"

# Graceful leave (SIGTERM): no lost request, and no broken established connection: n1 hands
# its buckets over, serves the connections it accepted until they close, then exits.
expect "before the leave: 48 connections greeted by their buckets' owners" \
  conn_start 1 10.50.1.40+16 48
start_prober tcp
sleep 1
leaver=${SHOALD_PID[1]}
kill -TERM "$leaver"
sleep 1.5
stop_prober; r=$R
echo "graceful leave of n1 (tcp): $r"
expect "graceful leave loses no request" test "$(result_field "$r" lost)" = 0
expect "graceful leave: n1 still serves its open connections after the hand-over" \
  grep -q "leaving: buckets handed over, serving [1-9][0-9]* open connections" "$WORK/n1/shoald.log"
expect "graceful leave: n2's status shows n1 up and leaving meanwhile" \
  test "$(ctl 2 status --json | jq '.nodes[0] | .leaving and .state == "alive"')" = true
expect "graceful leave: every established connection still answers" conn_cmd "check alive"
conn_close
t_close=$(now_ms)
until_true 3 exited "$leaver"
echo "n1's shoald exited $(($(now_ms) - t_close)) ms after its last connections closed"
expect "graceful leave: n1 exits once its connections are closed (within 3 s, linger 5 s)" \
  eval "exited $leaver && grep -q 'the last open connection closed' '$WORK/n1/shoald.log'"
wait "$leaver" 2>/dev/null
unset "SHOALD_PID[1]"
h=$(handoff_report "$WORK"/n*/shoald.log)
echo "hand-overs so far: $h"
expect "graceful leave: n1 handed its buckets over at an instant" \
  awk '/leaving the cluster/ { f = 1 } f && /handing buckets .* over/ { h = 1 } END { exit !h }' \
  "$WORK/n1/shoald.log"
expect "every timed hand-over so far started at or after its release" \
  test "$(result_field " $h" overlaps)" = 0
start_node 1
wait_converged 2 3 15 || fail "n1 rejoins"

# A stop does not wait for established connections that have been silent for long (a client
# that vanished leaves its conntrack entry for days): n1's entries are made to look an hour
# silent by raising its namespace's established timeout by an hour after their last packet.
expect "before the idle leave: 48 connections greeted by their buckets' owners" \
  conn_start 1 10.50.1.40+16 48
est=/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established
est_before=$(in_ns n1 cat "$est")
in_ns n1 sh -c "echo $((est_before + 3600)) > $est"
leaver=${SHOALD_PID[1]}
t_term=$(now_ms)
kill -TERM "$leaver"
until_true 4 exited "$leaver"
t_exit=$(($(now_ms) - t_term))
in_ns n1 sh -c "echo $est_before > $est"
echo "n1's shoald exited ${t_exit} ms after SIGTERM with only long-silent connections"
expect "idle leave: n1 exits without waiting out its linger (within 3 s, linger 5 s)" \
  eval "exited $leaver && test $t_exit -lt 3000"
expect "idle leave: n1 says which connections it did not wait for" \
  grep -q "not waiting for [1-9][0-9]* established connections silent for over 60 s" \
  "$WORK/n1/shoald.log"
conn_close
wait "$leaver" 2>/dev/null
unset "SHOALD_PID[1]"
start_node 1
wait_converged 2 3 15 || fail "n1 rejoins after the idle leave"

# All heartbeat links lost while the LAN is up: the majority policy stops every isolated
# node from serving (no duplicate answers; nobody has a majority of 3).
start_prober udp
for k in 1 2 3; do in_ns "n$k" ip link set m1 down; in_ns "n$k" ip link set m2 down; done
sleep 2
s=$(ctl 1 status --json)
stop_prober; r=$R
for k in 1 2 3; do in_ns "n$k" ip link set m1 up; in_ns "n$k" ip link set m2 up; done
echo "all heartbeat links down: $r"
expect "split brain, majority policy: no request answered twice" test "$(result_field "$r" duplicates)" = 0
expect "split brain, majority policy: status shows no quorum" test "$(jq '.quorum' <<<"$s")" = false
wait_converged 1 3 20 || fail "cluster heals after the partition"
s=$(ctl 1 status --json)
expect "after the partition heals every bucket is owned exactly once" \
  test "$(jq '[.nodes[].buckets[0].buckets | length] | add' <<<"$s")" = 16

# A node with the wrong key is refused: its packets are counted as rejected, it is not
# admitted, and alone it has no quorum, so it answers nothing.
stop_node 3
wait_converged 1 2 10 || fail "n3 leaves"
"$SHOALCTL" keygen "$WORK/other.key" >/dev/null
sed 's/^key_file: .*/key_file: other.key/' "$WORK/cluster.yaml" >"$WORK/wrong-key.yaml"
start_prober udp
CONFIG=$WORK/wrong-key.yaml start_node 3
until_true 15 n1_has '.rejected.bad_mac | tonumber > 0'
sleep 1
s=$(ctl 1 status --json)
stop_prober; r=$R
echo "n3 with a wrong key: $r"
echo "n1 sees: n3 $(jq -r '.nodes[2].state' <<<"$s"), rejected $(jq -c '.rejected' <<<"$s")"
expect "wrong key: packets rejected as bad_mac" test "$(jq '.rejected.bad_mac | tonumber' <<<"$s")" -gt 0
expect "wrong key: node not admitted" test "$(jq -r '.nodes[2].state' <<<"$s")" != alive
expect "wrong key: no request answered twice or lost" \
  test "$(result_field "$r" duplicates)" = 0 -a "$(result_field "$r" lost)" = 0
ctl 1 status | grep -q "rejected packets: bad_mac" && pass "wrong key: status warns about rejected packets" ||
  fail "wrong key: status warns about rejected packets"
stop_node 3

# A node with a different cluster definition (same key) is refused and shown with its address.
sed 's/^timing: .*/timing: fast/' "$WORK/cluster.yaml" >"$WORK/other-def.yaml"
CONFIG=$WORK/other-def.yaml start_node 3
until_true 15 n1_has '.foreign_peers | length > 0'
s=$(ctl 1 status --json)
echo "n1 sees foreign peers: $(jq -c '.foreign_peers' <<<"$s")"
expect "different definition: peer refused and shown with its address" \
  test "$(jq '[.foreign_peers[].address | select(startswith("10.51.0.3") or startswith("10.52.0.3"))] | length' <<<"$s")" -gt 0
expect "different definition: node not admitted" test "$(jq -r '.nodes[2].state' <<<"$s")" != alive
ctl 1 status | grep -q "runs another cluster definition" && pass "different definition: status warns" ||
  fail "different definition: status warns"
stop_node 3
start_node 3
wait_converged 1 3 15 && pass "n3 rejoins with the right definition" || fail "n3 rejoins with the right definition"

# SIGHUP reloads keys; a changed cluster definition is refused with a message.
"$SHOALCTL" keygen --add "$WORK/cluster.key" >/dev/null
kill -HUP "${SHOALD_PID[1]}"
expect "SIGHUP reloads the keys" until_true 10 events_have "keys, health checks and notify hooks reloaded"
cp "$WORK/cluster.yaml" "$WORK/cluster.yaml.orig"
sed -i 's/^timing: .*/timing: fast/' "$WORK/cluster.yaml"
kill -HUP "${SHOALD_PID[1]}"
expect "SIGHUP refuses a changed cluster definition" \
  until_true 10 grep -q "reload refused: the cluster definition changed" "$WORK/n1/shoald.log"
cp "$WORK/cluster.yaml.orig" "$WORK/cluster.yaml"
wait_converged 1 3 5 && pass "cluster unaffected by the reloads" || fail "cluster unaffected by the reloads"

# Repeated partitions of one node: n3 loses both heartbeat links three times. Each time it
# sees both others die, from a minority, and they see it die, from a majority: flap damping
# holds out n3 alone (not every node), and no heal answers a request twice (n3 comes back
# with a view as old as the partition and takes nothing until it has heard everyone).
state_of() { ctl 1 status --json 2>/dev/null | jq -r ".nodes[$1].state"; }
dups=0
for i in 1 2 3; do
  in_ns n3 ip link set m1 down; in_ns n3 ip link set m2 down
  until_true 5 eval '[ "$(state_of 2)" = dead ]' || fail "partition $i: n1 sees n3 dead"
  start_prober udp
  sleep 0.3
  in_ns n3 ip link set m1 up; in_ns n3 ip link set m2 up
  until_true 10 eval '[ "$(state_of 2)" = alive ]' || fail "heal $i: n1 sees n3 alive"
  sleep 1
  stop_prober
  echo "heal $i of n3's partition: $R"
  d=$(result_field "$R" duplicates)
  dups=$((dups + ${d:-1}))  # no result from the prober counts as a failure
done
s=$(ctl 1 status --json)
echo "after three partitions of n3: $(jq -c '[.nodes[] | {name, held_down, serving}]' <<<"$s")"
expect "repeated partitions of n3: no heal answers a request twice" test "$dups" = 0
expect "repeated partitions of n3: n3 is held out by flap damping" \
  test "$(jq '.nodes[2].held_down' <<<"$s")" = true
expect "repeated partitions of n3: n1 and n2 are not held out and own every bucket" \
  test "$(jq '[.nodes[0].held_down, .nodes[1].held_down] == [false, false] and
    ([.services[0].owners[] | select(. == "n1" or . == "n2")] | length) == 16' <<<"$s")" = true
expect "repeated partitions of n3: the nodes share one view again" \
  until_true 5 eval '[ "$(ctl 1 status --json | jq .views_agree)" = true ]'

echo "$PASSED passed, $FAILED failed"
# On a failure the whole logs (a few hundred lines each): a post-mortem needs the moments before it.
[ "$FAILED" = 0 ] || show_logs 1000
[ "$FAILED" = 0 ]
