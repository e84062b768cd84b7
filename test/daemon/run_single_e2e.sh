#!/usr/bin/env bash
# End-to-end test of a one-node cluster: a real shoald in a network namespace with the
# nftables dataplane, and a client whose requests are counted. A node without peers sends no
# heartbeat, so nothing renews its dataplane lease on the way out: shoald must renew it
# itself, or the node stops answering one lease (116 ms) after it starts.
#
#   SHOALD=... SHOALCTL=... RESPONDER=... PROBER=... run_single_e2e.sh
#
# Each check prints PASS or FAIL with its figures; the last line is "N passed, M failed".
set -u
. "$(dirname "$0")/cluster_lib.sh"
trap cluster_cleanup EXIT
trap 'exit 1' INT TERM

cluster_setup 1 default majority
restart_cluster default
if wait_converged 1 1 15; then pass "one node starts and owns every bucket"; else
  fail "one node starts and owns every bucket"; show_logs
fi
sleep 1
renewals() { ctl 1 status --json | jq '.lease.renewals | tonumber'; }
before=$(renewals)
start_prober udp 3000
sleep 3.5
stop_prober
after=$(renewals)
echo "one node, 3 s of requests: $R; lease renewals $before -> $after"
expect "one node answers every request for 3 s (one lease is 116 ms)" \
  test "$(result_field "$R" lost)" = 0 -a "$(result_field "$R" answered)" -gt 0
expect "one node: its lease is renewed every round without peers (over 50 in 3.5 s)" \
  test $((after - before)) -gt 50
expect "one node: no lease lapse" test "$(ctl 1 status --json | jq '.lease.lapses | tonumber')" = 0

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] || show_logs
[ "$FAILED" = 0 ]
