#!/usr/bin/env bash
# The test command (README "Two commands"): on a Debian machine with Rust, installs the
# Debian packages the tests use when they are missing, then runs the whole suite with the
# kTLS VM tests required (RINGGATE_REQUIRE_VM=1). CI (.ci/run) runs exactly this.
#
#   ./test.sh                 every test
#   ./test.sh --test metrics  arguments go to `cargo test --locked --no-fail-fast`
#
# Installing needs root (or password-less sudo); without it, or when apt-get fails, this
# prints which packages are missing and why, and exits 1. Ends with one line
# "test.sh: N passed, N failed, N skipped" (skipped = tests reported ignored); any failed
# or skipped test makes the exit status non-zero.
set -euo pipefail
cd "$(dirname "$0")"

# Debian package -> what needs it. Only the tests' own needs: Rust and its C toolchain
# (cc for aws-lc-sys and mimalloc) are assumed, as README says.
declare -A why=(
	[curl]="tests/tls.rs, tests/upstream_faults.rs, tests/http2.rs (a real client, HTTP/2 through nghttp2); the kTLS VM guests' client"
	[openssl]="tests/logging.rs, tests/ticket_keys.rs (openssl s_client); the kTLS VM guests (KeyUpdate)"
	[ca-certificates]="curl and openssl trust store"
	[util-linux]="tests/accept_backoff.rs (prlimit)"
	[qemu-system-x86]="tests/ktls_vm.rs: boots a Debian kernel with kTLS under qemu (TCG)"
	[busybox-static]="tests/ktls_vm.rs: the VM's userland"
	[cpio]="tests/ktls_vm.rs: packs the VM's initramfs"
	[kmod]="tests/ktls_vm.rs: depmod reads the kernel's module dependencies"
	[xz-utils]="tests/ktls_vm.rs: unpacks Debian 13's .ko.xz modules"
	[zstd]="tests/ktls_vm.rs: unpacks zstd-compressed kernel modules"
	[gcc]="tests/ktls_vm.rs: builds the kTLS probe (gcc -static)"
	[libc6-dev]="tests/ktls_vm.rs: the static libc for the kTLS probe"
	[binutils]="tests/ktls_vm.rs: strip (the record-fault client shipped into the VM)"
	[debian-archive-keyring]="tests/ktls_vm.rs: verifies the trixie-backports kernel packages"
	[nginx]="tests/rate_limit.rs: the same request burst against nginx's limit_req (admitted counts equal)"
	[python3]="tests/websocket.rs, tests/grpc_upstream.rs, tests/http2*.rs: Python peers (websockets, kosoku, grpcio, h2)"
	[python3-pip]="installs the PyPI packages below for the python3 on PATH"
)
packages=(curl openssl ca-certificates util-linux qemu-system-x86 busybox-static cpio kmod
	xz-utils zstd gcc libc6-dev binutils debian-archive-keyring nginx python3 python3-pip)

explain() {
	for p in "$@"; do echo "  $p: ${why[$p]}" >&2; done
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
	echo "test.sh: not a Debian system (no dpkg-query/apt-get); install these packages' equivalents:" >&2
	explain "${packages[@]}"
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		as_root=()
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		as_root=(sudo -n)
	else
		echo "test.sh: these Debian packages are missing and installing them needs root:" >&2
		explain "${missing[@]}"
		echo "run as root, or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "test.sh: installing ${missing[*]}" >&2
	if ! "${as_root[@]}" apt-get update -qq ||
		! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
		echo "test.sh: apt-get could not install the packages the tests need:" >&2
		explain "${missing[@]}"
		exit 1
	fi
fi

# PyPI packages for the python3 on PATH (which may not be Debian's: Debian's python3-*
# packages would not reach a pyenv or venv python): `websockets` 13 or later (its asyncio
# API; Debian's python3-websockets is 10.4) and `kosoku` (Autobahn's cases, PyPI only) for
# tests/websocket.rs; `grpcio` for tests/grpc_upstream.rs (tests/grpc/echo_server.py);
# `h2` (with `hyperframe`) as an HTTP/2 client that can send any frame (RFC 8441, attacks).
if ! python3 -c 'import sys, websockets, kosoku, grpc, h2, hyperframe
sys.exit(int(websockets.__version__.split(".")[0]) < 13)' 2>/dev/null; then
	echo "test.sh: installing the Python packages websockets>=13, kosoku, grpcio, h2" >&2
	pip=(python3 -m pip install -q 'websockets>=13' kosoku grpcio h2)
	# Debian's own python3 refuses pip outside a virtual environment (PEP 668) unless told.
	if ! "${pip[@]}" 2>/dev/null && ! "${pip[@]}" --break-system-packages; then
		echo "test.sh: pip could not install websockets>=13, kosoku, grpcio and h2 (tests/websocket.rs, tests/grpc_upstream.rs, tests/http2*.rs need them)" >&2
		exit 1
	fi
fi

if ! command -v cargo >/dev/null; then
	echo "test.sh: cargo not found: install Rust first (https://rustup.rs)" >&2
	exit 1
fi

# The HTTP/2 conformance suite (tests/http2_conformance.rs) is a crates.io tool, not a
# Debian package.
if ! command -v httpwg >/dev/null; then
	echo "test.sh: installing httpwg-cli (cargo install, for tests/http2_conformance.rs)" >&2
	if ! cargo install httpwg-cli --locked --quiet; then
		echo "test.sh: cargo install httpwg-cli failed: tests/http2_conformance.rs needs it" >&2
		exit 1
	fi
fi

# The kTLS VM tests must run: a host that cannot run them fails them (RINGGATE_SKIP_VM,
# the developers' opt-out, does not apply here).
export RINGGATE_REQUIRE_VM=1
unset RINGGATE_SKIP_VM

mkdir -p target
log=target/test.sh.log
rc=0
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log" || rc=$?

# Totals over each test binary's own closing "test result:" line (the last one after its
# "Running"/"Doc-tests" header: a VM test prints the result lines of the test binary it
# ran inside the guest before that); skipped = ignored.
read -r passed failed skipped < <(awk '
	function add(line,   n, w, i) {
		n = split(line, w, " ")
		for (i = 2; i <= n; i++) {
			if (w[i] ~ /^passed;?$/) p += w[i - 1]
			if (w[i] ~ /^failed;?$/) f += w[i - 1]
			if (w[i] ~ /^ignored;?$/) s += w[i - 1]
		}
	}
	/^ *(Running|Doc-tests) / { if (last != "") add(last); last = "" }
	/^test result: / { last = $0 }
	END { if (last != "") add(last); print p + 0, f + 0, s + 0 }' "$log")
if [ "$skipped" -gt 0 ]; then
	echo "test.sh: skipped (reported ignored) — the suite must run whole:" >&2
	grep -E '^test .* \.\.\. ignored' "$log" >&2 || true
	[ "$rc" != 0 ] || rc=1
fi
if [ "$passed" -eq 0 ] && [ "$rc" = 0 ]; then
	echo "test.sh: no test ran" >&2
	rc=1
fi
echo "test.sh: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
