#!/bin/sh
# /init of the ringgate test VM (copied into the initramfs by tests/vm/build.sh).
#
# Runs under busybox ash as PID 1. Mounts the pseudo file systems, brings up
# loopback, runs /guest.sh (the user-supplied scenario) with a guest-side
# timeout, prints its combined stdout+stderr between markers on the console
# and powers the VM off:
#
#   ===REPORT-BEGIN===
#   BED ... lines (tests/vm/build.sh's manifest: kernel, modules per cipher)
#   ...guest script output...
#   ===REPORT-END===
#   ===EXIT <code>===
#
# followed by the tail of dmesg between ===DMESG-BEGIN=== / ===DMESG-END===.
# tests/vm/run.sh parses exactly these markers.
#
# Kernel command line knobs (read from /proc/cmdline):
#   vm.timeout=SECONDS   guest-side limit for /guest.sh (default 240)
#   vm.shell=1           drop into an interactive shell instead of powering off
#                        (for manual debugging with run.sh -i)

# applet symlinks (/sbin/modprobe, /bin/mount, ...); cheaper here than at build time
/bin/busybox --install -s

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
export TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# the kernel started us without a usable stdio when /dev/console was missing
exec </dev/console >/dev/console 2>&1

# keep kernel chatter (except real errors) out of the report
echo 4 >/proc/sys/kernel/printk 2>/dev/null

hostname ringgate-vm
ip link set lo up

KVER=$(uname -r)
MODDIR=/lib/modules/$KVER
export KVER MODDIR
# module index for busybox modprobe (also used by the kernel's request_module
# autoloading, which execs /sbin/modprobe -> busybox)
[ -d "$MODDIR" ] && depmod -a 2>/dev/null

timeout_s=240
shell=0
read -r cmdline </proc/cmdline
for arg in $cmdline; do
	case "$arg" in
	vm.timeout=*) timeout_s=${arg#vm.timeout=} ;;
	vm.shell=1) shell=1 ;;
	esac
done

if [ -r /etc/vm/preload-modules ]; then
	while read -r mod; do
		[ -n "$mod" ] && modprobe "$mod"
	done </etc/vm/preload-modules
fi

cd /root || cd /
rc=0
# the bed manifest first (kernel package + version, crypto modules per cipher), so
# every report says what it ran on
{
	cat /etc/vm/bed.txt 2>/dev/null
	echo "BED UNAME $(uname -r)"
} >/tmp/guest.out
# On the console, so the harness can tell a boot that died before any test code ran
# (it retries those once) from a guest that failed.
echo "vm-init: starting the guest script"
timeout "$timeout_s" /bin/sh /guest.sh >>/tmp/guest.out 2>&1 </dev/null || rc=$?
[ "$rc" = 143 ] && echo "vm-init: guest script killed after ${timeout_s}s (vm.timeout)" >>/tmp/guest.out

# leading newline: the firmware leaves escape sequences on the current line
echo
echo "===REPORT-BEGIN==="
cat /tmp/guest.out
# keep the END marker on a line of its own when the output lacks a final newline
if [ -s /tmp/guest.out ] && [ "$(tail -c 1 /tmp/guest.out | wc -l)" -eq 0 ]; then echo; fi
echo "===REPORT-END==="
echo "===EXIT $rc==="
echo "===DMESG-BEGIN==="
dmesg | tail -n 40
echo "===DMESG-END==="

if [ "$shell" = 1 ]; then
	echo "vm-init: vm.shell=1, starting a shell (exit or poweroff -f to stop)"
	setsid cttyhack sh
fi
sync
poweroff -f
# poweroff -f should not return; if it does, panic=-1 + -no-reboot stop qemu
sleep 5
exit "$rc"
