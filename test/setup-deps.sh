#!/usr/bin/env bash
# Installs every build and test dependency of shoal from Debian 12's packages.
# Idempotent: when everything is present it only checks and returns (about a second).
# Must run as root (or through sudo) on a fresh machine.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config ninja-build
  libboost-dev libprotobuf-dev protobuf-compiler
  libnl-3-dev libnl-route-3-dev libyaml-cpp-dev libssl-dev doctest-dev
  libnftables-dev libnetfilter-conntrack-dev libsystemd-dev
  # running and end-to-end tests: real nftables in network namespaces
  nftables iproute2 iptables iputils-ping ncat procps jq
  # the CLUSTERIP backend is tested inside Debian's 6.1 kernel under qemu
  qemu-system-x86 busybox-static cpio kmod
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-deps: done"
