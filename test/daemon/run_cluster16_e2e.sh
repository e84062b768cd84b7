#!/usr/bin/env bash
# End-to-end test of a full-size cluster: 16 shoald nodes (the most a definition allows) in
# network namespaces, the nftables dataplane, and a client whose requests are counted.
#
#   SHOALD=... SHOALCTL=... RESPONDER=... PROBER=... run_cluster16_e2e.sh
#
# Checks: the 16 nodes start and converge (every node sees 16 alive, views agree, every bucket
# owned by exactly one node, and all nodes agree on who); a client's requests are each
# answered exactly once; after one node crashes (daemon killed and LAN link down) the 15
# survivors converge, own every bucket exactly once among themselves, and answer every
# request once again, with no request ever answered twice; the survivors then leave cleanly
# on SIGTERM. Takes well under a minute on an idle machine.
#
# Each check prints PASS or FAIL with its figures; the last line is "N passed, M failed".
set -u
. "$(dirname "$0")/cluster_lib.sh"
trap cluster_cleanup EXIT
trap 'exit 1' INT TERM

N=16

# cluster_agrees ALIVE NODES...: every listed node sees ALIVE alive members, says the views
# agree, owns each of the 16 buckets exactly once across the members' own claims, and every
# listed node reports the same owner list. Prints what disagrees; returns 1 if anything does.
cluster_agrees() {
  local alive=$1; shift
  local k line first="" bad=0
  for k in "$@"; do
    # One jq per node: on a busy machine the checks themselves must stay cheap.
    line=$(ctl "$k" status --json 2>/dev/null | jq -r --argjson alive "$alive" '
      [.nodes[] | select(.state == "alive")] as $up
      | ([$up[] | .buckets[0].buckets[]] | sort) as $claimed
      | [ (if ($up | length) != $alive then "sees \([$up[].name] | join(",")) alive" else empty end),
          (if .views_agree != true then "views do not agree" else empty end),
          (if $claimed != [range(16)] then "alive nodes claim \($claimed), not each of 0..15 once"
           else empty end),
          (if ([.nodes[] | select(.state != "alive") | .buckets[0].buckets[]?] | length) != 0
           then "a node that is not alive holds buckets" else empty end) ] as $issues
      | if ($issues | length) == 0 then "ok \(.services[0].owners | tojson)"
        else "bad \($issues | join("; "))" end')
    case $line in
      "ok "*)
        if [ -z "$first" ]; then
          first=${line#ok }
        elif [ "${line#ok }" != "$first" ]; then
          echo "n$k: owners ${line#ok } differ from $first"; bad=1
        fi ;;
      "bad "*) echo "n$k: ${line#bad }"; bad=1 ;;
      *) echo "n$k: no status"; bad=1 ;;
    esac
  done
  return "$bad"
}

# wait_agrees SECONDS ALIVE NODES...: cluster_agrees until it holds or time runs out.
wait_agrees() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  while ((SECONDS < deadline)); do
    cluster_agrees "$@" >/dev/null && return 0
    sleep 0.3
  done
  cluster_agrees "$@"
}

started=$SECONDS
cluster_setup "$N" default majority
echo "namespaces ready after $((SECONDS - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for k in $(seq 1 "$N"); do start_node "$k"; done
all=$(seq 1 "$N")
if wait_agrees 30 "$N" $all; then
  pass "16 nodes start and converge: all alive, views agree, every bucket owned exactly once"
else
  fail "16 nodes start and converge"; show_logs 8; exit 1
fi
echo "converged after $((SECONDS - started)) s"
ctl 1 status | head -n 3
s=$(ctl 1 status --json)
expect "every node owns at least one bucket" \
  test "$(jq '[.nodes[] | select((.buckets[0].buckets | length) == 0)] | length' <<<"$s")" = 0

# Steady state: from 32 source addresses, every request answered exactly once.
start_prober_from udp 32
sleep 3
stop_prober; r=$R
echo "steady state, 16 nodes: $r"
expect "steady state: requests were sent" test "$(result_field "$r" requests)" -gt 0
expect "steady state: every request answered exactly once" \
  test "$(result_field "$r" lost)" = 0 -a "$(result_field "$r" duplicates)" = 0

# One node dies like a machine while the client keeps probing: the one that answers the
# client's first source, so the client is bound to see the failure.
victim=$(who_answers 1)
VICTIM=${victim#n}
if ! [[ "$VICTIM" =~ ^[0-9]+$ ]] || ((VICTIM < 1 || VICTIM > N)); then
  fail "the client's first source is answered by a node (got '$victim')"; exit 1
fi
victim_buckets=$(jq -c ".nodes[$((VICTIM - 1))].buckets[0].buckets" <<<"$s")
start_prober_from udp 32
sleep 0.5
crash_machine "$VICTIM"
survivors=$(seq 1 "$N" | grep -vx "$VICTIM")
if wait_agrees 15 $((N - 1)) $survivors; then
  pass "after n$VICTIM crashes the 15 survivors converge and own every bucket exactly once"
else
  fail "after n$VICTIM crashes the 15 survivors converge and own every bucket exactly once"
fi
sleep 1
stop_prober; r=$R
echo "crash of n$VICTIM (held $victim_buckets): $r"
expect "crash: the client saw the failure (requests lost)" test "$(result_field "$r" lost)" -gt 0
expect "crash: no request answered twice" test "$(result_field "$r" duplicates)" = 0
expect "crash: outage under 1 s" test "$(result_field "$r" max_outage_ms)" -lt 1000
observer=$(head -n 1 <<<"$survivors")
s=$(ctl "$observer" status --json)
expect "crash: n$VICTIM is no longer alive for the survivors" \
  test "$(jq -r ".nodes[$((VICTIM - 1))].state" <<<"$s")" != alive
expect "crash: the survivors took over n$VICTIM's buckets" \
  test "$(jq -c "[.services[0].owners[$victim_buckets[]] | select(. == \"n$VICTIM\" or . == \"\")] | length" <<<"$s")" = 0

# After the hand-off the survivors answer every request exactly once.
start_prober_from udp 32
sleep 3
stop_prober; r=$R
echo "after the crash, 15 nodes: $r"
expect "after the crash: every request answered exactly once" \
  test "$(result_field "$r" requests)" -gt 0 -a "$(result_field "$r" lost)" = 0 -a \
  "$(result_field "$r" duplicates)" = 0

# Every survivor leaves on SIGTERM with exit status 0 and, in a sanitizer build, without a
# report (those are written to the daemons' logs, which the cleanup removes).
for k in $survivors; do kill -TERM "${SHOALD_PID[$k]}"; done
bad_exits=""
for k in $survivors; do
  wait "${SHOALD_PID[$k]}"
  status=$?
  unset "SHOALD_PID[$k]"
  [ "$status" = 0 ] || bad_exits+=" n$k:$status"
done
expect "the 15 survivors exit with status 0 on SIGTERM (non-zero:${bad_exits:- none})" test -z "$bad_exits"
reports=$(grep -l "Sanitizer\|runtime error:" "$WORK"/n*/shoald.log 2>/dev/null)
expect "no sanitizer report in any daemon's log${reports:+ ($reports)}" test -z "$reports"

echo "took $((SECONDS - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] || show_logs 8
[ "$FAILED" = 0 ]
