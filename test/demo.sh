#!/usr/bin/env bash
# The live demo: a three-node shoal cluster in network namespaces on this machine, with the
# real nftables dataplane and a client that sends requests every 10 ms. It shows the status,
# crashes a node and measures the outage, drains another with zero lost requests, restores
# everything, and removes every namespace it made. Run as root on Debian 12:
#
#   ./test/demo.sh        (as root)
#
# Nothing outside the namespaces it creates is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

./test/setup-deps.sh
echo "== building shoal (build/release)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "${SHOAL_JOBS:-2}" --target shoald shoalctl responder prober

export SHOALD=$PWD/build/release/cli/shoald SHOALCTL=$PWD/build/release/cli/shoalctl
export RESPONDER=$PWD/build/release/test/e2e/responder PROBER=$PWD/build/release/test/prober
set +e
. test/daemon/cluster_lib.sh
trap cluster_cleanup EXIT
trap 'exit 1' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Three nodes (n1, n2, n3) on one LAN share the VIP $VIP; each answers only its buckets"
cluster_setup 3 default majority
sed -n '1,200p' "$WORK/cluster.yaml" | sed 's/^/    /'
for k in 1 2 3; do start_node "$k"; done
wait_converged 1 3 15 || cluster_fail "the cluster did not converge"
ctl 1 status

say "A client probes the VIP every 10 ms from 32 addresses; node n3 crashes (daemon killed, LAN link down)"
start_prober udp
sleep 1
crash_node 3
in_ns n3 ip link set lan0 down
wait_converged 1 2 10
sleep 1
stop_prober
echo "client saw: $R"
echo "outage of the crashed node's clients: $(result_field "$R" max_outage_ms) ms (longest run of unanswered requests), duplicate answers: $(result_field "$R" duplicates)"
ctl 1 status

say "Draining n2 for maintenance while clients open a new TCP connection every 10 ms"
start_prober tcp
sleep 1
ctl 1 drain n2
sleep 1.5
stop_prober
echo "client saw: $R"
echo "lost requests during the drain: $(result_field "$R" lost)"
ctl 1 status

say "Restoring: n3's link and daemon come back, n2 is undrained"
in_ns n3 ip link set lan0 up
start_node 3
ctl 1 undrain n2
wait_converged 1 3 15 || cluster_fail "the cluster did not converge again"
ctl 1 status
say "What happened, as node n1 recorded it"
ctl 1 events --max 25

say "Done; removing the namespaces"
