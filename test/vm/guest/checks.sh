#!/bin/sh
# The checks inside the VM (Debian's 6.1 kernel, CLUSTERIP available; nftables too). Prints one
# "PASS: <property>" or "FAIL: <property>: <detail>" line per check; exits non-zero if any
# check failed. Everything runs in network namespaces of the VM.
. /shoal/lib.sh

section "harness: kernel modules, namespaces, a hand-made CLUSTERIP rule"
for m in ipt_CLUSTERIP iptable_filter veth bridge nf_tables nft_hash nft_ct nft_reject_inet nft_dup_ipv4 nft_dup_ipv6; do
  check "module $m loads" modprobe "$m"
done
check "three nodes and a client on a bridge" make_lan 3
check "CLUSTERIP target is known to iptables-legacy" \
  in_ns n1 iptables-legacy -I INPUT -d "$VIP" -i eth0 -j CLUSTERIP --new --hashmode sourceip \
    --clustermac "$CMAC" --total-nodes 3 --local-node 1 --hash-init 7
check_eq "/proc/net/ipt_CLUSTERIP/VIP reads the --local-node" "1" \
  "$(in_ns n1 cat /proc/net/ipt_CLUSTERIP/$VIP)"
in_ns n1 sh -c "echo +3 > /proc/net/ipt_CLUSTERIP/$VIP"
check_eq "writing +3 adds node 3" "1,3" "$(in_ns n1 cat /proc/net/ipt_CLUSTERIP/$VIP)"
in_ns n1 sh -c "echo -1 > /proc/net/ipt_CLUSTERIP/$VIP"
check_eq "writing -1 removes node 1" "3" "$(in_ns n1 cat /proc/net/ipt_CLUSTERIP/$VIP)"
in_ns n1 iptables-legacy -D INPUT 1
check "deleting the rule removes the /proc file" in_ns n1 sh -c "! test -e /proc/net/ipt_CLUSTERIP/$VIP"

section "flows: UDP clients answered by exactly the owner CLUSTERIP's hash names, every hash mode"
# Runs on the LAN as the harness left it (no CLUSTERIP state), before any drift or kill.
check "the client has $SOURCES flow source addresses" add_client_sources
for n in n1 n2 n3; do start_responder $n; done
usleep 300000
check "responders run on n1, n2 and n3" responders_alive
svc() { echo "name=web,vip=$VIP,dev=eth0,mac=$CMAC,hash=$1,buckets=16,seed=0x5eed,owned=$2"; }
ALL_UP=/tmp/all-up.owners DRAINED=/tmp/drained.owners
# Per hash mode: the layout with every node up; then one node drained (a different one per
# mode), its buckets moved as the rebalance says: the drained node lets go first, then the
# others take what they gain (so no bucket ever has two answering nodes).
for HASH in sourceip sourceip-sourceport sourceip-sourceport-destport; do
  case $HASH in sourceip) OUT=n3 ;; sourceip-sourceport) OUT=n1 ;; *) OUT=n2 ;; esac
  check "[$HASH] shoalctl plan names the layout with every node up" plan_layout $ALL_UP
  for n in n1 n2 n3; do
    own=$(buckets_of $n $ALL_UP)
    agent_up "[$HASH] agent $n applies the rebalance's layout ($own)" $n "$(fd_of $n)" \
      --backend clusterip --service "$(svc $HASH "$own")"
  done
  # shellcheck disable=SC2046 # owners_of prints one word per node
  flows "[$HASH] all up: each flow answered by exactly its owner" $HASH $(owners_of $ALL_UP)
  if [ $HASH = sourceip ]; then
    # The checks can tell hashes apart: nftables' jhash names other owners for these flows.
    # shellcheck disable=SC2046
    run_flows nftables $HASH $(owners_of $ALL_UP)
    case $FLOWS_SUMMARY in
      *" wrong_node=0 "* | "") fail "[$HASH] the nftables hash mispredicts CLUSTERIP flows: ${FLOWS_SUMMARY:-$FLOWS_DETAIL}" ;;
      *) pass "[$HASH] the nftables hash mispredicts CLUSTERIP flows: $FLOWS_SUMMARY" ;;
    esac
  fi
  check "[$HASH] shoalctl plan names the layout with $OUT drained" plan_layout $DRAINED --drain $OUT
  check_eq "[$HASH] the rebalance moves every bucket of a drained $OUT" "-" "$(buckets_of $OUT $DRAINED)"
  moved=""
  for n in $OUT $(for m in n1 n2 n3; do [ $m = $OUT ] || echo $m; done); do
    ans=$(agent_cmd $n "$(fd_of $n)" "set web $(buckets_of $n $DRAINED)")
    [ "${ans%% *}" = ok ] || moved="$moved $n:'$ans'"
  done
  check_eq "[$HASH] draining $OUT: the bucket moves answer ok" "" "$moved"
  # shellcheck disable=SC2046
  flows "[$HASH] $OUT drained: the answers follow the moved buckets" $HASH $(owners_of $DRAINED)
  if [ $HASH = sourceip-sourceport-destport ]; then
    kill -KILL "$(agent_pid n1)"
    wait "$(agent_pid n1)" 2>/dev/null
    exec 3>&-
    usleep 500000
    check_eq "[$HASH] kill -9 of n1's agent: the guard releases its CLUSTERIP state" absent \
      "$(proc_nodes n1)"
    flows "[$HASH] kill -9: n1 answers nothing, n3 keeps its buckets" $HASH \
      "n3=$(buckets_of n3 $DRAINED)"
  else
    stop_agent n1 3
  fi
  stop_agent n2 4
  stop_agent n3 5
done
check "responders survived every check" responders_alive
remove_lan
check "a fresh LAN for the next checks" make_lan 3

section "clusterip backend through dataplane_agent: install, move, drift, teardown, kill -9"
OWN1=0:1:2:3:4:5 OWN2=6:7:8:9:10 OWN3=11:12:13:14:15
HASH=sourceip
agent_up "agent n1 applies the clusterip backend" n1 3 --backend clusterip --service "$(svc $HASH $OWN1)"
agent_up "agent n2 applies the clusterip backend" n2 4 --backend clusterip --service "$(svc $HASH $OWN2)"
agent_up "agent n3 applies the clusterip backend" n3 5 --backend clusterip --service "$(svc $HASH $OWN3)"
check_eq "n1 answers the node numbers of its buckets" "$(nodes_of $OWN1)" "$(proc_nodes n1)"
check_eq "n2 answers the node numbers of its buckets" "$(nodes_of $OWN2)" "$(proc_nodes n2)"
check_eq "n3 answers the node numbers of its buckets" "$(nodes_of $OWN3)" "$(proc_nodes n3)"
all_have_vip() { has_vip n1 && has_vip n2 && has_vip n3; }
check "the VIP is on eth0 of every node" all_have_vip
check_eq "INPUT jumps to SHOAL first" "-A INPUT -j SHOAL" \
  "$(in_ns n1 iptables-legacy-save -t filter | grep '^-A INPUT' | head -n1)"

ans=$(agent_cmd n1 3 "set web 0:1:2")
check_eq "a bucket move answers ok (n1 gives 3:4:5 away)" "ok" "${ans%% *}"
ans=$(agent_cmd n2 4 "set web 3:4:5:6:7:8:9:10")
check_eq "a bucket move answers ok (n2 takes 3:4:5)" "ok" "${ans%% *}"
check_eq "n1 /proc follows the move" "1,2,3" "$(proc_nodes n1)"
check_eq "n2 /proc follows the move" "4,5,6,7,8,9,10,11" "$(proc_nodes n2)"

in_ns n2 iptables-legacy -F
in_ns n2 iptables-legacy -X SHOAL 2>/dev/null || true
check_eq "flushing n2's rules removes its CLUSTERIP state" "absent" "$(proc_nodes n2)"
ans=$(agent_cmd n2 4 check)
case $ans in "ok repaired=0"*|error*) fail "the check repairs a flushed ruleset: $ans" ;;
  "ok repaired="*) pass "the check repairs a flushed ruleset and counts it (${ans%% |*})" ;;
  *) fail "the check repairs a flushed ruleset: $ans" ;; esac
check_eq "n2 /proc is restored after the repair" "4,5,6,7,8,9,10,11" "$(proc_nodes n2)"
in_ns n2 ip addr del "$VIP/32" dev eth0
ans=$(agent_cmd n2 4 check)
check_eq "a removed VIP is put back and counted" "ok repaired=1" "${ans%% |*}"
check "n2 has the VIP again" has_vip n2
in_ns n2 sh -c "echo +16 > /proc/net/ipt_CLUSTERIP/$VIP"
ans=$(agent_cmd n2 4 check)
check_eq "a changed responsibility is put back and counted" "ok repaired=1" "${ans%% |*}"
ans=$(agent_cmd n2 4 check)
check_eq "a clean check repairs nothing" "ok repaired=0" "$ans"

kill -TERM "$(agent_pid n3)"
wait "$(agent_pid n3)" 2>/dev/null
check_eq "SIGTERM: the agent tears down (no CLUSTERIP state)" "absent" "$(proc_nodes n3)"
check_eq "SIGTERM: no shoal rules left" "" "$(in_ns n3 iptables-legacy-save -t filter | grep SHOAL)"
check "SIGTERM: the VIP is removed" no_vip n3

kill -KILL "$(agent_pid n1)"
wait "$(agent_pid n1)" 2>/dev/null
usleep 500000
check_eq "kill -9: the guard releases the CLUSTERIP state" "absent" "$(proc_nodes n1)"
check_eq "kill -9: the guard leaves a DROP for the VIP" "-A SHOAL -d $VIP/32 -j DROP" \
  "$(in_ns n1 iptables-legacy-save -t filter | grep '^-A SHOAL')"
check "kill -9: the guard removes the VIP" no_vip n1
agent_up "a restarted agent takes over" n1 3 --backend clusterip --service "$(svc $HASH 0:1:2)"
check_eq "the restarted agent's responsibility is in force" "1,2,3" "$(proc_nodes n1)"
check_eq "the restarted agent removed the guard's DROP" "" \
  "$(in_ns n1 iptables-legacy-save -t filter | grep -- '-j DROP')"

# The packet path after all of that, responders on every node: n1 (restarted) answers 0:1:2,
# n2 (repaired twice) 3..10, n3 (torn down) nothing, so 11..15 stay unanswered.
check "the fresh LAN's client has $SOURCES flow source addresses" add_client_sources
for n in n1 n2 n3; do start_responder $n; done
usleep 300000
flows "after drift repair, teardown, kill -9 and restart: each flow answered by exactly its owner" \
  $HASH n1=0:1:2 n2=3:4:5:6:7:8:9:10

section "nftables backend on 6.1: flows by the owner, a bucket move, a timed hand-off, the lease, kill -9"
# Debian 12 runs this kernel, and there nftables is the backend most nodes get: the rules,
# the netlink batches for bucket moves and lease renewals, and the owner and guard tables,
# on 6.1 itself. Each agent holds a lease of 600 ms and renews it every 200 ms.
remove_lan
check "a fresh LAN for the nftables checks" make_lan 3
check "the client has $SOURCES flow source addresses" add_client_sources
for n in n1 n2 n3; do start_responder $n; done
NOWN1=0:1:2:3:4:5 NOWN2=6:7:8:9:10 NOWN3=11:12:13:14:15
for HASH in sourceip sourceip-sourceport; do
  agent_up "[$HASH] agent n1 applies the nftables backend with a lease" n1 3 --backend nftables \
    --lease-ms 600 --service "$(svc $HASH $NOWN1)"
  agent_up "[$HASH] agent n2 applies the nftables backend with a lease" n2 4 --backend nftables \
    --lease-ms 600 --service "$(svc $HASH $NOWN2)"
  agent_up "[$HASH] agent n3 applies the nftables backend with a lease" n3 5 --backend nftables \
    --lease-ms 600 --service "$(svc $HASH $NOWN3)"
  usleep 300000
  nft_flows "[$HASH] nftables: each flow answered by exactly its owner" $HASH \
    n1=$NOWN1 n2=$NOWN2 n3=$NOWN3
  if [ $HASH = sourceip ]; then
    # The other side of the CLUSTERIP check: CLUSTERIP's hash names other owners here.
    # shellcheck disable=SC2046
    run_flows clusterip $HASH n1=$NOWN1 n2=$NOWN2 n3=$NOWN3
    case $FLOWS_SUMMARY in
      *" wrong_node=0 "* | "") fail "[$HASH] CLUSTERIP's hash mispredicts nftables flows: ${FLOWS_SUMMARY:-$FLOWS_DETAIL}" ;;
      *) pass "[$HASH] CLUSTERIP's hash mispredicts nftables flows: $FLOWS_SUMMARY" ;;
    esac
  fi
  ans=$(agent_cmd n1 3 "set web 0:1:2")
  check_eq "[$HASH] a bucket move answers ok (n1 gives 3:4:5 away)" "ok" "${ans%% *}"
  ans=$(agent_cmd n2 4 "set web 3:4:5:6:7:8:9:10")
  check_eq "[$HASH] a bucket move answers ok (n2 takes 3:4:5)" "ok" "${ans%% *}"
  nft_flows "[$HASH] after the move: the answers follow the buckets" $HASH \
    n1=0:1:2 n2=3:4:5:6:7:8:9:10 n3=$NOWN3
  if [ $HASH = sourceip ]; then
    # A hand-off at an instant of the kernel's clock (timed buckets, `meta time` against an
    # interval set): n2 answers 3:4:5 until 6 s from now, n1 from then on.
    ans=$(agent_cmd n2 4 "timed web 3:4:5 - 6000")
    check_eq "[$HASH] timed: n2's window is loaded" "ok" "${ans%% *}"
    ans=$(agent_cmd n1 3 "timed web 3:4:5 6000 -")
    check_eq "[$HASH] timed: n1's window is loaded" "ok" "${ans%% *}"
    t0=$(cut -d. -f1 /proc/uptime)
    nft_flows "[$HASH] timed: before the instant, n2 answers 3:4:5" $HASH \
      n1=0:1:2 n2=3:4:5:6:7:8:9:10 n3=$NOWN3
    t1=$(cut -d. -f1 /proc/uptime)
    check "[$HASH] timed: that check ended before the instant ($((t1 - t0)) s)" [ $((t1 - t0)) -le 4 ]
    while [ $(($(cut -d. -f1 /proc/uptime) - t0)) -lt 8 ]; do usleep 200000; done
    nft_flows "[$HASH] timed: after the instant, n1 answers 3:4:5" $HASH \
      n1=0:1:2:3:4:5 n2=6:7:8:9:10 n3=$NOWN3
    ans=$(agent_cmd n1 3 "set web 0:1:2")
    check_eq "[$HASH] timed: back to plain sets on n1" "ok" "${ans%% *}"
    ans=$(agent_cmd n2 4 "set web 3:4:5:6:7:8:9:10")
    check_eq "[$HASH] timed: back to plain sets on n2" "ok" "${ans%% *}"
  fi
  # A stopped agent renews nothing: its node stops answering once the lease runs out, the
  # others keep their buckets; resumed, it renews and answers again.
  kill -STOP "$(agent_pid n1)"
  usleep 1000000
  nft_flows "[$HASH] n1's agent stopped past its lease: n1 answers nothing, n2 and n3 do" \
    $HASH n2=3:4:5:6:7:8:9:10 n3=$NOWN3
  kill -CONT "$(agent_pid n1)"
  usleep 600000
  nft_flows "[$HASH] n1's agent resumed: it renews and answers its buckets again" $HASH \
    n1=0:1:2 n2=3:4:5:6:7:8:9:10 n3=$NOWN3
  if [ $HASH = sourceip-sourceport ]; then
    # kill -9: the owned table goes with the agent's netlink socket, the guard table stays
    # and keeps the node from answering anything.
    kill -KILL "$(agent_pid n1)"
    wait "$(agent_pid n1)" 2>/dev/null
    exec 3>&-
    usleep 300000
    nft_flows "[$HASH] kill -9 of n1's agent: n1 answers nothing, n2 and n3 keep theirs" \
      $HASH n2=3:4:5:6:7:8:9:10 n3=$NOWN3
  else
    stop_agent n1 3
  fi
  stop_agent n2 4
  stop_agent n3 5
done
check "responders survived the nftables checks" responders_alive

section "benchmark: apply (a bucket move through /proc) until the kernel enforces it"
# On the CLUSTERIP LAN again.
remove_lan
check "a fresh LAN for the benchmark" make_lan 3
agent_up "agent n1 applies the clusterip backend for the benchmark" n1 3 --backend clusterip \
  --service "$(svc sourceip 0:1)"
# Each move alternates bucket 2 between n1 and nobody; the agent times dp->apply(), which
# returns only after reading the new set back from /proc (what the packet path consults).
: >/tmp/bench.us
i=0
while [ $i -lt 41 ]; do
  if [ $((i % 2)) = 0 ]; then owned=0:1; else owned=0:1:2; fi
  ans=$(agent_cmd n1 3 "set web $owned")
  case $ans in "ok applied in "*) echo "$ans" | awk '{print $4}' >>/tmp/bench.us ;; esac
  i=$((i + 1))
done
n=$(wc -l </tmp/bench.us)
median=$(sort -n /tmp/bench.us | sed -n "$(((n + 1) / 2))p")
check_eq "41 timed moves answered ok" 41 "$n"
check_eq "the last move is in force" "1,2" "$(proc_nodes n1)"
echo "FIGURE: clusterip apply-to-enforced median ${median} us over ${n} bucket moves (TCG VM)"

finish
