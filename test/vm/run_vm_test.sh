#!/usr/bin/env bash
# Tests the CLUSTERIP backend for real inside Debian's 6.1 kernel under qemu (CLUSTERIP was
# removed in Linux 6.3, so the host kernel cannot run it), and the nftables backend on that
# same kernel, the one Debian 12 runs.
#
#   run_vm_test.sh --cache DIR --guest DIR [--bin PROGRAM]... [--timeout SECONDS]
#
#  1. fetches linux-image-6.1.0-NN-cloud-amd64 with `apt-get download` into the cache dir
#     (once; later runs reuse it) and unpacks it with dpkg -x;
#  2. builds an initramfs: busybox, iproute2's ip, iptables-legacy with its xtables
#     extensions, the programs under test (--bin) with every library ldd names (sanitizer
#     runtimes included), the guest scripts and cluster definition (guest/*.sh, *.yaml), and
#     only the kernel modules the checks need;
#  3. boots qemu with TCG (KVM does not work on the build machines), the guest runs
#     guest/checks.sh, which prints PASS/FAIL lines, the figures, and one final
#     "VM-RESULT: PASS" or "VM-RESULT: FAIL";
#  4. exits 0 only on "VM-RESULT: PASS". qemu failing to start, a kernel that does not boot,
#     a guest that hangs past the timeout: all are failures, loudly, never a skip.
# Needs: qemu-system-x86 busybox-static cpio kmod iptables iproute2 (test/setup-deps.sh).
set -euo pipefail

cache=""
guest=""
timeout_s=600
bins=()
while (($#)); do
  case $1 in
    --cache) cache=$2; shift 2 ;;
    --guest) guest=$2; shift 2 ;;
    --bin) bins+=("$2"); shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    *) echo "vm-test: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $cache && -n $guest ]] || { echo "vm-test: --cache and --guest are required" >&2; exit 2; }

fail() { echo "vm-test: FAIL: $*" >&2; exit 1; }

for tool in qemu-system-x86_64 busybox cpio depmod dpkg apt-get apt-cache iptables-legacy ip; do
  command -v "$tool" >/dev/null || fail "$tool not found; run test/setup-deps.sh"
done

work=$(mktemp -d /tmp/shoal-vm.XXXXXX)
qemu_pid=""
cleanup() {
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    sleep 1
    kill -9 "$qemu_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. the kernel -------------------------------------------------------------------------
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)
guest=$(cd "$guest" && pwd -P)
deb=$(ls "$cache"/linux-image-6.1.0-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z $deb ]]; then
  # The newest 6.1 cloud kernel the configured Debian archive offers.
  pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' |
        awk '{print $1}' | sort -V | tail -n1)
  [[ -n $pkg ]] || fail "no linux-image-6.1.0-NN-cloud-amd64 in the apt sources (apt-get update?)"
  echo "vm-test: downloading $pkg into $cache"
  (cd "$cache" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' ) ||
    fail "apt-get download $pkg failed"
  deb=$(ls "$cache"/linux-image-6.1.0-*-cloud-amd64_*.deb | sort -V | tail -n1)
fi
kdir="$cache/$(basename "$deb" .deb)"
if [[ ! -f $kdir/.unpacked ]]; then
  rm -rf "$kdir"
  dpkg -x "$deb" "$kdir"
  touch "$kdir/.unpacked"
fi
release=$(ls "$kdir/lib/modules" | head -n1)
vmlinuz="$kdir/boot/vmlinuz-$release"
[[ -f $vmlinuz ]] || fail "no kernel image in $deb"
grep -q '^CONFIG_IP_NF_TARGET_CLUSTERIP=m' "$kdir/boot/config-$release" ||
  fail "kernel $release was built without CLUSTERIP"
echo "vm-test: kernel $release"

# --- 2. the initramfs ----------------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/sbin,lib,lib64,proc,sys,dev,run,tmp,etc,var/run,shoal}

copy_with_libs() {  # copies a program and every library it needs, keeping their paths
  local program=$1 dest=$2
  install -D -m 0755 "$program" "$root$dest"
  ldd "$program" 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' |
    while read -r lib; do
      [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
}

cp /bin/busybox "$root/bin/busybox"
copy_with_libs "$(readlink -f "$(command -v ip)")" /usr/local/sbin/ip
copy_with_libs /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-legacy-multi
for name in iptables-legacy iptables-legacy-save iptables-legacy-restore; do
  ln -s xtables-legacy-multi "$root/usr/sbin/$name"
done
xt=/usr/lib/x86_64-linux-gnu/xtables
mkdir -p "$root$xt"
for ext in libipt_CLUSTERIP libxt_standard libipt_DROP libxt_DROP libxt_mark libxt_MARK \
           libxt_conntrack libxt_tcp libxt_udp libipt_icmp libxt_comment; do
  [[ -f $xt/$ext.so ]] && cp "$xt/$ext.so" "$root$xt/"
done
for lib in $(ldd "$xt/libipt_CLUSTERIP.so" | awk '/=> \//{print $3}'); do
  [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
for program in "${bins[@]}"; do
  [[ -x $program ]] || fail "program under test $program is missing (build it first)"
  copy_with_libs "$program" "/shoal/$(basename "$program")"
done
cp "$guest"/*.sh "$guest"/*.yaml "$root/shoal/"
install -m 0755 "$guest/init.sh" "$root/init"

# Only the modules the checks need, with their dependencies.
modules=(ipt_CLUSTERIP iptable_filter veth bridge nf_tables nft_hash nft_ct nft_reject_inet nft_dup_ipv4 nft_dup_ipv6 af_packet)
depmod -b "$kdir" "$release"
mapfile -t kos < <(for m in "${modules[@]}"; do
  modprobe --show-depends -d "$kdir" -S "$release" "$m" 2>/dev/null || true
done | awk '$1 == "insmod" {print $2}' | sort -u)
((${#kos[@]} > 0)) || fail "no modules found in $kdir"
for ko in "${kos[@]}"; do
  rel=${ko#"$kdir"}
  install -D -m 0644 "$ko" "$root$rel"
done
cp "$kdir/lib/modules/$release"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$release/"
depmod -b "$root" "$release"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$work/initrd.gz"
echo "vm-test: initramfs $(du -h "$work/initrd.gz" | cut -f1), ${#kos[@]} modules, ${#bins[@]} programs"

# --- 3. boot -------------------------------------------------------------------------------
log="$work/console.log"
start=$(date +%s)
qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1024 -display none -monitor none \
  -serial "file:$log" -no-reboot -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 loglevel=3" </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!

shown=0
show_new_lines() {
  [[ -f $log ]] || return 0
  local total
  total=$(wc -l <"$log")
  if ((total > shown)); then
    sed -n "$((shown + 1)),${total}p" "$log" | tr -d '\r'
    shown=$total
  fi
}
while kill -0 "$qemu_pid" 2>/dev/null; do
  show_new_lines
  if (($(date +%s) - start > timeout_s)); then
    show_new_lines
    fail "the VM did not finish within ${timeout_s} s (qemu pid $qemu_pid killed)"
  fi
  sleep 1
done
rc=0
wait "$qemu_pid" || rc=$?
qemu_pid=""
show_new_lines
elapsed=$(($(date +%s) - start))

# --- 4. verdict ----------------------------------------------------------------------------
if ((rc != 0)); then
  cat "$work/qemu.out" >&2
  fail "qemu exited with status $rc"
fi
[[ -s $log ]] || fail "the VM printed nothing (did the kernel boot?): $(cat "$work/qemu.out")"
result=$(tr -d '\r' <"$log" | grep -a '^VM-RESULT: ' | tail -n1 || true)
passes=$(tr -d '\r' <"$log" | grep -ac '^PASS: ' || true)
fails=$(tr -d '\r' <"$log" | grep -ac '^FAIL: ' || true)
echo "vm-test: boot, checks and power-off took ${elapsed} s; ${passes} passed, ${fails} failed"
[[ -n $result ]] || fail "the guest never reported a result (kernel panic or init crash?)"
[[ $result == "VM-RESULT: PASS" && $fails == 0 && $passes -gt 0 ]] || fail "$result"
echo "vm-test: PASS"
