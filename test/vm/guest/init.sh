#!/bin/busybox sh
# PID 1 of the test VM: mounts the basics, runs the checks, prints the verdict, powers off.
/bin/busybox --install -s
export PATH=/shoal:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/netns /var/run
echo "VM: kernel $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
if sh /shoal/checks.sh; then
  echo "VM-RESULT: PASS"
else
  echo "VM-RESULT: FAIL"
fi
sync
poweroff -f
