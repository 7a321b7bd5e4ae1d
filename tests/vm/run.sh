#!/usr/bin/env bash
# Boot the VM built by tests/vm/build.sh and report what its guest script said.
#
# Usage: tests/vm/run.sh [options]
#
#   -d DIR       dir with vmlinuz + initrd.gz from build.sh
#                (default: $VM_CACHE/out or <repo>/target/vm-cache/out)
#   -o DIR       where to write console.log, report.txt, dmesg.txt, status
#                (default: the -d dir)
#   -t SECONDS   overall wall-clock limit for qemu (default: $VM_TIMEOUT or 300);
#                the guest script gets this minus 30 s (vm.timeout=) so a hung
#                script still produces a report
#   -m MB        guest memory (default 1024)
#   -s N         guest CPUs (default 2)
#   -a ARGS      extra kernel command line arguments
#   -i           interactive: console on this terminal, shell after the script
#                (Ctrl-A X quits qemu); no report parsing
#   -v           also stream the console to stderr while it runs
#   -h           help
#
# Prints the guest report on stdout and exits with the guest script's exit
# code. Boot failure or timeout: exit 125 with the last 50 console lines on
# stderr. qemu-system-x86_64 missing: exit 77 ("SKIP:" message).
# Machine-readable results in the -o dir: report.txt, console.log, dmesg.txt
# and status, one line: "exit <code>" | "timeout" | "boot-failed".

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

die() { echo "vm-run: ERROR: $*" >&2; exit 2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

BUILD_DIR=${VM_CACHE:-$REPO_DIR/target/vm-cache}/out
RUN_DIR=
TIMEOUT=${VM_TIMEOUT:-300}
# A boot that has not started the guest script by then is stuck (watchdog below).
BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-240}
MEM=1024
SMP=2
APPEND_EXTRA=
INTERACTIVE=0
VERBOSE=${VM_VERBOSE:-0}

while getopts ":d:o:t:m:s:a:ivh" opt; do
	case "$opt" in
	d) BUILD_DIR=$OPTARG ;;
	o) RUN_DIR=$OPTARG ;;
	t) TIMEOUT=$OPTARG ;;
	m) MEM=$OPTARG ;;
	s) SMP=$OPTARG ;;
	a) APPEND_EXTRA=$OPTARG ;;
	i) INTERACTIVE=1 ;;
	v) VERBOSE=1 ;;
	h) usage; exit 0 ;;
	:) die "option -$OPTARG needs an argument" ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected arguments: $*"
case "$TIMEOUT" in '' | *[!0-9]*) die "-t wants whole seconds, got '$TIMEOUT'" ;; esac

QEMU=$(command -v qemu-system-x86_64 || true)
if [ -z "$QEMU" ]; then
	echo "vm-run: SKIP: qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2
	exit 77
fi
for f in vmlinuz initrd.gz; do
	[ -f "$BUILD_DIR/$f" ] || die "$BUILD_DIR/$f missing (run tests/vm/build.sh first)"
done
RUN_DIR=${RUN_DIR:-$BUILD_DIR}
mkdir -p "$RUN_DIR"

guest_timeout=$((TIMEOUT > 60 ? TIMEOUT - 30 : TIMEOUT * 2 / 3))
append="console=ttyS0 quiet panic=-1 random.trust_cpu=on vm.timeout=$guest_timeout"
[ "$INTERACTIVE" = 0 ] || append="$append vm.shell=1"
[ -z "$APPEND_EXTRA" ] || append="$append $APPEND_EXTRA"

# TCG only: nested KVM does not boot guests on these hosts. -nic none: the
# guest gets loopback only. -no-reboot + panic=-1: a kernel panic or a dying
# /init ends qemu instead of rebooting forever.
qemu_cmd=("$QEMU" -accel tcg -cpu max -m "$MEM" -smp "$SMP" -nographic -no-reboot -nic none
	-kernel "$BUILD_DIR/vmlinuz" -initrd "$BUILD_DIR/initrd.gz" -append "$append")

if [ "$INTERACTIVE" = 1 ]; then
	exec "${qemu_cmd[@]}"
fi

LOG=$RUN_DIR/console.log
REPORT=$RUN_DIR/report.txt
STATUS=$RUN_DIR/status
rm -f "$LOG" "$REPORT" "$STATUS" "$RUN_DIR/dmesg.txt" "$RUN_DIR/boot-stuck"

t0=$(date +%s.%N)
rc=0
if [ "$VERBOSE" = 1 ]; then
	timeout -k 10 "$TIMEOUT" "${qemu_cmd[@]}" </dev/null 2>&1 | tee "$LOG" >&2 || rc=${PIPESTATUS[0]}
else
	timeout -k 10 "$TIMEOUT" "${qemu_cmd[@]}" </dev/null >"$LOG" 2>&1 &
	qpid=$!
	# Boot watchdog: a kernel that has not started the guest script within
	# $BOOT_TIMEOUT s (a TCG boot takes ~10 s, a loaded host a few times that) is stuck
	# (seen with 7.3 under TCG: a hang after "Booting from ROM", an oops in the
	# scheduler); stop it, so the harness can boot again instead of waiting out -t.
	(
		waited=0
		while kill -0 "$qpid" 2>/dev/null; do
			grep -q 'vm-init: starting the guest script' "$LOG" 2>/dev/null && exit 0
			if [ "$waited" -ge "$BOOT_TIMEOUT" ]; then
				: >"$RUN_DIR/boot-stuck"
				kill "$qpid" 2>/dev/null
				exit 0
			fi
			sleep 1
			waited=$((waited + 1))
		done
	) &
	wpid=$!
	wait "$qpid" || rc=$?
	kill "$wpid" 2>/dev/null || true
	wait "$wpid" 2>/dev/null || true
fi
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# the serial console turns \n into \r\n
tr -d '\r' <"$LOG" >"$LOG.tmp" && mv "$LOG.tmp" "$LOG"

fail() {
	echo "$1" >"$STATUS"
	{
		echo "vm-run: $2 (after ${secs}s, qemu exit $rc); last 50 console lines of $LOG:"
		tail -n 50 "$LOG" | sed 's/^/  | /'
	} >&2
	exit 125
}

if ! grep -q '^===REPORT-END===$' "$LOG"; then
	if [ -e "$RUN_DIR/boot-stuck" ]; then
		fail boot-failed "the guest script had not started after ${BOOT_TIMEOUT}s of boot"
	fi
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		fail timeout "VM timed out after ${TIMEOUT}s without a complete report"
	fi
	fail boot-failed "VM stopped without a complete report"
fi

# markers: the BEGIN one may follow firmware escape codes on the same line
sed -n '/===REPORT-BEGIN===$/,/^===REPORT-END===$/{/===REPORT-BEGIN===$/d;/^===REPORT-END===$/d;p}' "$LOG" >"$REPORT"
sed -n '/^===DMESG-BEGIN===$/,/^===DMESG-END===$/{/^===DMESG-BEGIN===$/d;/^===DMESG-END===$/d;p}' "$LOG" >"$RUN_DIR/dmesg.txt"
guest_rc=$(sed -n 's/^===EXIT \([0-9]\{1,\}\)===$/\1/p' "$LOG" | tail -n 1)
[ -n "$guest_rc" ] || fail boot-failed "report found but no ===EXIT <code>=== marker"
echo "exit $guest_rc" >"$STATUS"

cat "$REPORT"
echo "vm-run: guest script exited $guest_rc; VM ran ${secs}s (console: $LOG)" >&2
exit "$guest_rc"
