#!/usr/bin/env bash
# Where the heap of an idle TLS keep-alive connection goes: heaptrack on ringgate (built
# with the system allocator, so every allocation is seen) while N connections are open,
# each after one request, and held. Connections are opened one at a time, so the heap's
# peak is N idle connections plus one handshake in flight; the peak consumers divided by
# N are the bytes each idle connection keeps, by call site.
#
#   loadtest/heap_profile.sh [N]        (default 2000; RG_H2=1: HTTP/2 connections, ALPN h2)
#
# Builds target-heap/release/ringgate (`--features system-allocator`) when missing; needs
# heaptrack, openssl, python3 and target/release/ringgate (for `ringgate origin`).
# Traffic stays on 127.0.0.1 (ports 17443, 17080). Output: the heaptrack file and a
# summary in loadtest/results/heap-<stamp>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
command -v heaptrack >/dev/null || { echo "heaptrack is needed (apt-get install heaptrack)" >&2; exit 2; }
[ -x target/release/ringgate ] || cargo build --release --bin ringgate
bin=target-heap/release/ringgate
[ -x "$bin" ] || cargo build --release --bin ringgate --features system-allocator --target-dir target-heap

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((n + 100)) ] || { echo "ulimit -n $(ulimit -n) is too low for $n connections" >&2; exit 2; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/rg.toml" <<TOML
[server]
workers = 1
pin_workers = false
[http]
keepalive_timeout_ms = 300000
[[listener]]
addr = "127.0.0.1:17443"
[listener.tls]
ktls = "off"
certificates = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]
[[route]]
upstream = "origin"
[upstream.origin]
servers = ["127.0.0.1:17080"]
TOML
target/release/ringgate origin --listen 127.0.0.1:17080 2>"$work/origin.log" &
pids+=($!)
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p loadtest/results
out=loadtest/results/heap-$stamp
heaptrack -o "$out" "$bin" run -c "$work/rg.toml" >"$work/heaptrack.log" 2>&1 &
hpid=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/17443) 2>/dev/null && break; sleep 0.2; done
# idle_conns.py holds its connections until stdin gets a line: a fifo kept open.
mkfifo "$work/hold"
timeout 300 python3 loadtest/idle_conns.py --port 17443 -n "$n" --concurrency 1 --timeout 240 ${RG_H2:+--h2} \
  --hold 240 <"$work/hold" >"$work/idle.out" 2>"$work/idle.err" &
pids+=($!)
exec 4>"$work/hold"
for _ in $(seq 1 300); do grep -q '^ready' "$work/idle.out" 2>/dev/null && break; sleep 1; done
held=$(ss -Htn state established '( sport = :17443 )' | wc -l)
echo "$(cat "$work/idle.out"); established at the proxy: $held" | tee "$out.txt"
rg=$(pgrep -f "^$bin run -c $work/rg.toml" | head -1)
kill -TERM "$rg"
wait "$hpid" || true
exec 4>&-
file=$(ls "$out".*st 2>/dev/null | head -1 || true)
[ -n "$file" ] || file=$(ls "$out"* | grep -v '\.txt$' | head -1)
{
  echo "heaptrack file: $file; $n idle TLS connections held at the peak"
  heaptrack_print -f "$file" --print-peaks --peak-limit 30 --print-allocators 0 \
    --print-temporary 0 --print-leaks 0 2>/dev/null | sed -n '/PEAK MEMORY CONSUMERS/,$p'
} | tee -a "$out.txt"
