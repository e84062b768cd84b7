#!/bin/sh
# The checks inside the VM (Debian's 6.1 kernel, CLUSTERIP available). Prints one
# "PASS: <property>" or "FAIL: <property>: <detail>" line per check; exits non-zero if any
# check failed. Everything runs in network namespaces of the VM.
. /shoal/lib.sh

section "harness: kernel modules, namespaces, a hand-made CLUSTERIP rule"
for m in ipt_CLUSTERIP iptable_filter veth bridge nf_tables nft_hash; do
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

finish
