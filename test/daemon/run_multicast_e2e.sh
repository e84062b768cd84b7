#!/usr/bin/env bash
# End-to-end test of multicast heartbeats (heartbeat_multicast): real shoald daemons in
# network namespaces whose heartbeat bridges flood multicast (like switches without IGMP
# snooping), the nftables dataplane, and a client whose requests are counted.
#
#   SHOALD=... SHOALCTL=... RESPONDER=... PROBER=... run_multicast_e2e.sh
#
# Checks, with link m1 on the group 239.192.74.1 and m2 unicast: the nodes join the group and
# converge; on the wire a round leaves once to the group on m1, and on m2 (a backup link) one
# round in four once per peer (nft counters in a node's namespace); either link alone keeps
# every node alive, also after the multicast link's interface was replaced (shoald joins
# again); a crashed node's
# buckets are taken over; a node whose definition lacks the groups is refused as another
# cluster. Then with both links on groups: the cluster converges, serves every request once
# and fails over.
#
# Each check prints PASS or FAIL with its figures; the last line is "N passed, M failed".
set -u
. "$(dirname "$0")/cluster_lib.sh"
trap cluster_cleanup EXIT
trap 'exit 1' INT TERM

alive_seen_by() { ctl "$1" status --json 2>/dev/null | jq '[.nodes[] | select(.state == "alive")] | length'; }
owned_by_survivors() {  # owned_by_survivors K NAMES...: buckets node K sees owned by NAMES
  local k=$1; shift
  ctl "$k" status --json | jq --arg names "$*" \
    '[.services[0].owners[] | select(. as $o | ($names | split(" ")) | index($o))] | length'
}
# crash_test VICTIM SURVIVOR...: kills VICTIM's daemon and takes its LAN link down while the
# client probes; the survivors must answer every bucket, the outage stay under a second.
crash_test() {
  local victim=$1 first=$2
  shift
  local names
  names=$(printf 'n%s ' "$@")
  start_prober udp
  sleep 0.5
  crash_machine "$victim"
  wait_converged "$first" "$#" 10 || fail "survivors converge after n$victim's crash"
  sleep 1
  stop_prober; r=$R
  echo "node crash of n$victim: $r"
  expect "survivors answer all buckets after n$victim's crash" \
    test "$(owned_by_survivors "$first" $names)" = 16
  expect "n$victim's crash: outage under 1 s, nothing answered twice" \
    test "$(result_field "$r" max_outage_ms)" -lt 1000 -a "$(result_field "$r" duplicates)" = 0
}

# steady_test LABEL: 2 s of client requests, each answered exactly once.
steady_test() {
  start_prober udp
  sleep 2
  stop_prober; r=$R
  echo "$1, steady state: $r"
  expect "$1: every request answered once" \
    test "$(result_field "$r" lost)" = 0 -a "$(result_field "$r" duplicates)" = 0
}

CLUSTER_HEARTBEAT_MULTICAST="239.192.74.1, off" cluster_setup 3 default majority
for k in 1 2 3; do started_node "$k"; done
if wait_converged 1 3 15; then pass "three nodes with a multicast link start and converge"; else
  fail "three nodes with a multicast link start and converge"; show_logs; exit 1
fi
ctl 1 status
expect "status names the heartbeat mode of each link" \
  sh -c "'$SHOALCTL' status --socket '$WORK/n1/shoald.sock' |
         grep -q 'heartbeats: link 0 multicast 239.192.74.1, link 1 unicast'"
expect "status --json lists the heartbeat mode of each link" \
  test "$(ctl 1 status --json | jq -c '.heartbeat_links')" = '["multicast 239.192.74.1","unicast"]'
joined=0
for k in 1 2 3; do
  in_ns "n$k" ip maddr show dev m1 | grep -q 239.192.74.1 && joined=$((joined + 1))
done
expect "every node joined 239.192.74.1 on m1 ($joined of 3)" test "$joined" = 3

# What leaves n1 for the heartbeat port in 2 s, counted by nftables in n1's namespace.
cport=$(sed -n 's/^port: *//p' "$WORK/cluster.yaml"); cport=${cport:-7400}
counted() { in_ns n1 nft list counter inet shoal_e2e_count "$1" | sed -n 's/.*packets \([0-9]*\).*/\1/p'; }
in_ns n1 nft -f - <<EOF
table inet shoal_e2e_count {
  counter group_m1 {}
  counter unicast_m1 {}
  counter unicast_m2 {}
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 239.192.74.1 udp dport $cport counter name group_m1
    ip daddr 10.51.0.0/24 udp dport $cport counter name unicast_m1
    ip daddr 10.52.0.0/24 udp dport $cport counter name unicast_m2
  }
}
EOF
sleep 2
g=$(counted group_m1); u1=$(counted unicast_m1); u2=$(counted unicast_m2)
in_ns n1 nft delete table inet shoal_e2e_count
echo "n1 sent in 2 s: $g to the group on m1, $u1 unicast on m1, $u2 unicast on m2 (heartbeat every 40 ms, 2 peers)"
expect "m1: one heartbeat per round to the group (40..60 in 2 s)" test "${g:-0}" -ge 40 -a "${g:-0}" -le 60
expect "m1: heartbeats no longer go to each peer (under 10 unicast datagrams in 2 s)" test "${u1:-99}" -lt 10
# m2 is a backup link: while m1 works both ways, a round reaches each peer on it once in eight
# (50 rounds to 2 peers: 12.5, plus a probe or an ack now and then).
expect "m2, the backup link: one heartbeat per peer in eight rounds (9..25 in 2 s)" test "${u2:-0}" -ge 9 -a "${u2:-0}" -le 25

steady_test "one link multicast"

# Either link alone carries the heartbeats: no failover while the other is down.
for down in m1 m2; do
  start_prober udp
  in_ns n3 ip link set "$down" down
  sleep 2
  seen=$(alive_seen_by 1)
  stop_prober; r=$R
  in_ns n3 ip link set "$down" up
  echo "$down of n3 down: n1 sees $seen alive; $r"
  expect "$down of n3 down: nobody is declared dead" test "$seen" = 3
  expect "$down of n3 down: no request lost" test "$(result_field "$r" lost)" = 0
  wait_converged 1 3 10 || fail "cluster settles after $down of n3 is back"
done

# n3's multicast interface replaced (deleted and created again, as a network reconfiguration
# does): the kernel drops the group with the old interface, and a new one starts without it.
# shoald joins again on the new one, and the multicast link alone keeps n3 alive.
in_ns n3 ip link del m1
in_ns sw ip link add m1-3 type veth peer name m1 netns "${P}n3"
in_ns sw ip link set m1-3 master m1 up
in_ns n3 ip addr add 10.51.0.3/24 dev m1
in_ns n3 ip link set m1 up
t0=$(now_ms)
if until_true 5 sh -c "ip netns exec '${P}n3' ip maddr show dev m1 | grep -q 239.192.74.1"; then
  pass "replaced m1 of n3: shoald joined 239.192.74.1 again on it ($(($(now_ms) - t0)) ms)"
else
  fail "replaced m1 of n3: shoald joined 239.192.74.1 again on it"
fi
expect "replaced m1 of n3: the rejoin is in its events" until_true 5 sh -c \
  "'$SHOALCTL' events --socket '$WORK/n3/shoald.sock' | grep -q 'joined multicast group 239.192.74.1 again'"
start_prober udp
in_ns n3 ip link set m2 down
sleep 2
seen=$(alive_seen_by 1)
stop_prober; r=$R
in_ns n3 ip link set m2 up
echo "replaced m1 of n3, its m2 down: n1 sees $seen alive; $r"
expect "replaced m1 of n3, m2 down: nobody is declared dead" test "$seen" = 3
expect "replaced m1 of n3, m2 down: no request lost" test "$(result_field "$r" lost)" = 0
wait_converged 1 3 10 || fail "cluster settles after m2 of n3 is back"

crash_test 2 1 3
revive_machine 2
wait_converged 1 3 15 || fail "n2 rejoins"

# A node whose definition sends unicast on m1 runs another cluster definition: refused.
stop_node 3
wait_converged 1 2 10 || fail "n3 leaves"
grep -v '^heartbeat_multicast:' "$WORK/cluster.yaml" >"$WORK/unicast.yaml"
CONFIG=$WORK/unicast.yaml started_node 3
until_true 15 sh -c "'$SHOALCTL' status --json --socket '$WORK/n1/shoald.sock' | jq -e '.foreign_peers | length > 0' >/dev/null"
s=$(ctl 1 status --json)
echo "n1 sees foreign peers: $(jq -c '.foreign_peers' <<<"$s")"
expect "a node without the group is refused as another cluster definition" \
  test "$(jq '[.foreign_peers[].address | select(startswith("10.51.0.3") or startswith("10.52.0.3"))] | length' <<<"$s")" -gt 0
expect "a node without the group is not admitted" test "$(jq -r '.nodes[2].state' <<<"$s")" != alive
stop_node 3

# Both links on groups.
for k in "${!SHOALD_PID[@]}"; do stop_node "$k"; done
sed -i 's/^heartbeat_multicast: .*/heartbeat_multicast: [239.192.74.1, 239.192.74.2]/' "$WORK/cluster.yaml"
for k in 1 2 3; do started_node "$k"; done
if wait_converged 1 3 15; then pass "both links multicast: three nodes converge"; else
  fail "both links multicast: three nodes converge"; show_logs
fi
steady_test "both links multicast"
crash_test 3 1 2

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] || show_logs
[ "$FAILED" = 0 ]
