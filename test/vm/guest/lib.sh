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
