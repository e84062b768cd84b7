#!/bin/sh
# Helpers for the guest checks: PASS/FAIL reporting and the test LAN.
# The LAN: bridge br0 in the VM's root namespace; namespaces n1..nN (nodes, 10.0.0.1X/16 on
# eth0) and c (the client, 10.0.0.50/16 plus the source addresses of the flows).
# Debian's static busybox prefers its own applets over PATH inside sh: call iproute2 by path.
ip() { /usr/local/sbin/ip "$@"; }
VIP=10.0.0.100
CMAC=01:00:5e:00:00:20
FAILED=0

section() { echo "== $*"; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
  desc=$1
  shift
  if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc: $(echo "$out" | tail -n 3)"; fi
}
# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}
in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }
# Programs started in the background run through nsenter, which execs (ip netns exec forks
# and would not pass signals on): their $! is their own pid.
finish() { [ "$FAILED" = 0 ]; }

# make_lan N: N nodes and a client on br0.
make_lan() {
  ip link add br0 type bridge || return 1
  ip link set br0 up
  i=1
  while [ "$i" -le "$1" ]; do
    add_host "n$i" "10.0.0.1$i" || return 1
    i=$((i + 1))
  done
  add_host c 10.0.0.50
}
add_host() {
  ip netns add "$1" && ip link add "v$1" type veth peer name eth0 netns "$1" &&
    ip link set "v$1" master br0 up && ip -n "$1" link set lo up &&
    ip -n "$1" link set eth0 up && ip -n "$1" addr add "$2/16" dev eth0
}

# --- dataplane agents (test/e2e/agent.cpp), one per node namespace ---------------------------
# start_agent NS FD ARGS...: starts the agent in NS with stdin on fd FD of this shell (a fifo)
# and waits up to 60 s for "ready". Output goes to /tmp/NS.out, errors to /tmp/NS.err.
start_agent() {
  ns=$1 fd=$2
  shift 2
  rm -f "/tmp/$ns.in" "/tmp/$ns.out"
  mkfifo "/tmp/$ns.in"
  : >"/tmp/$ns.out"
  nsenter --net="/run/netns/$ns" /shoal/dataplane_agent "$@" <"/tmp/$ns.in" >"/tmp/$ns.out" 2>"/tmp/$ns.err" &
  echo $! >"/tmp/$ns.pid"
  eval "exec $fd>/tmp/$ns.in"
  wait_line "$ns" 1 60
}
# agent_up DESCRIPTION NS FD ARGS...: start_agent as a check (in this shell: the agent's
# stdin fd must stay open here).
agent_up() {
  desc=$1
  shift
  if start_agent "$@" >/tmp/agent_up.msg 2>&1; then
    pass "$desc"
  else
    fail "$desc: $(cat /tmp/agent_up.msg)"
  fi
}
agent_pid() { cat "/tmp/$1.pid"; }
# wait_line NS N SECONDS: waits until /tmp/NS.out has at least N lines.
wait_line() {
  tries=$(($3 * 20))
  while [ "$(wc -l <"/tmp/$1.out")" -lt "$2" ]; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { echo "no answer from agent $1: $(cat "/tmp/$1.err")"; return 1; }
    usleep 50000
  done
}
# agent_cmd NS FD COMMAND: sends one command, waits for its answer and prints it.
agent_cmd() {
  before=$(wc -l <"/tmp/$1.out")
  echo "$3" >&"$2"
  wait_line "$1" $((before + 1)) 60 || return 1
  sed -n "$((before + 1))p" "/tmp/$1.out"
}
# proc_nodes NS: the CLUSTERIP node numbers NS answers for the VIP ("absent" without a file).
proc_nodes() {
  ip netns exec "$1" cat "/proc/net/ipt_CLUSTERIP/$VIP" 2>/dev/null || echo absent
}
# nodes_of BUCKETS: "0:3:5" -> "1,4,6" (bucket b is CLUSTERIP node b+1).
nodes_of() { echo "$1" | tr ':' '\n' | while read -r b; do echo $((b + 1)); done | tr '\n' ',' | sed 's/,$//'; }
has_vip() { ip -n "$1" -4 addr show dev eth0 | grep -q "inet $VIP/"; }
no_vip() { ! has_vip "$1"; }

# remove_lan: ends everything still running in the nodes' and the client's namespaces and
# removes them with the bridge, so the next section starts on a fresh LAN.
remove_lan() {
  for ns in $(ip netns list | awk '{print $1}'); do
    for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null; done
  done
  usleep 200000
  for ns in $(ip netns list | awk '{print $1}'); do ip netns del "$ns"; done
  ip link del br0 2>/dev/null
  return 0
}
# stop_agent NS FD: "quit" (teardown and exit), closes its stdin and waits for it.
stop_agent() {
  echo quit >&"$2"
  eval "exec $2>&-"
  wait "$(agent_pid "$1")" 2>/dev/null
}

# --- real flows: responders on the nodes, flow_client (test/e2e) in the client -------------
PORTS=7000,7001,7002,7003
SOURCES=60    # client source addresses 10.0.1.1 .. 10.0.1.60
FLOWS=240     # 60 sources x 4 destination ports, each with its own ephemeral source port
# add_client_sources: the flows' source addresses on the client's eth0.
add_client_sources() {
  k=1
  while [ "$k" -le "$SOURCES" ]; do
    echo "address add 10.0.1.$k/16 dev eth0"
    k=$((k + 1))
  done | ip -n c -batch -
}
# start_responder NS: the UDP/TCP responder answering with the node's name.
start_responder() {
  nsenter --net="/run/netns/$1" /shoal/responder --name "$1" --ports "$PORTS" \
    >"/tmp/resp-$1.log" 2>&1 &
  echo $! >"/tmp/resp-$1.pid"
}
# responders_alive: every node's responder still runs.
responders_alive() {
  for n in n1 n2 n3; do kill -0 "$(cat "/tmp/resp-$n.pid")" || return 1; done
}
# run_flows KIND HASH OWNER...: FLOWS UDP flows from the client to VIP, owners predicted
# with KIND's hash (clusterip or nftables); OWNER is NODE=0:1:2 ("NODE=-": none); buckets no
# OWNER lists must stay unanswered. Sets FLOWS_RC (flow_client's exit status), FLOWS_SUMMARY
# (its figures: flows, ok, unanswered, duplicated, wrong_node, answers by node) and
# FLOWS_DETAIL (the first flows that went wrong).
run_flows() {
  kind=$1 hash=$2
  shift 2
  owners=""
  for o in "$@"; do owners="$owners --owner $o"; done
  # shellcheck disable=SC2086 # owners is a list of words
  out=$(in_ns c /shoal/flow_client udp --vip "$VIP" --ports "$PORTS" \
    --sources "10.0.1.1+$SOURCES" --flows "$FLOWS" --hash-kind "$kind" \
    --service "hash=$hash,buckets=16,seed=0x5eed" --timeout-ms 2500 $owners 2>&1)
  FLOWS_RC=$?
  FLOWS_SUMMARY=$(echo "$out" | grep '^udp flows=' | sed 's/ PASS$//; s/ FAIL$//')
  FLOWS_DETAIL=$(echo "$out" | grep -v '^udp flows=' | head -n 10)
}
# flows_by KIND DESCRIPTION HASH OWNER...: passes when every flow is answered by exactly the
# owner KIND's hash (clusterip or nftables) names, and unowned buckets by nobody, printing the
# figures. flows and nft_flows name the kind.
flows_by() {
  kind=$1 desc=$2
  shift 2
  run_flows "$kind" "$@"
  if [ "$FLOWS_RC" = 0 ] && [ -n "$FLOWS_SUMMARY" ]; then
    pass "$desc: $FLOWS_SUMMARY"
  else
    fail "$desc: ${FLOWS_SUMMARY:-flow_client failed (exit $FLOWS_RC)}
$FLOWS_DETAIL"
  fi
}
flows() { flows_by clusterip "$@"; }
nft_flows() { flows_by nftables "$@"; }

# --- the layout the rebalance names: `shoalctl plan` on the VM's cluster definition --------
# plan_layout FILE [--drain NODE | --down NODE]: writes FILE, one line per bucket in bucket
# order holding the owner's name (null: nobody).
plan_layout() {
  file=$1
  shift
  /shoal/shoalctl plan /shoal/cluster.yaml --json "$@" >/tmp/plan.json || return 1
  sed 's/^.*"buckets":\[\([^]]*\)\].*$/\1/' /tmp/plan.json | tr ',' '\n' | tr -d '"' >"$file"
  [ "$(wc -l <"$file")" = 16 ] || { echo "no 16-bucket layout in: $(cat /tmp/plan.json)"; return 1; }
}
# buckets_of NODE FILE: NODE's buckets in a plan_layout FILE as "0:3:6" ("-" for none).
buckets_of() {
  awk -v n="$1" '$0 == n { printf "%s%d", (c++ ? ":" : ""), NR - 1 } END { if (!c) printf "-" }' "$2"
}
# owners_of FILE: "n1=0:3 n2=1:4 n3=-", the --owner words for run_flows.
owners_of() { for n in n1 n2 n3; do printf '%s=%s ' $n "$(buckets_of $n "$1")"; done; }
# fd_of NODE: the fd of this shell that feeds NODE's agent (n1 3, n2 4, n3 5).
fd_of() { echo $((${1#n} + 2)); }
