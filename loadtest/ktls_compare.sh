#!/usr/bin/env bash
# Compares 1 MiB HTTPS response throughput through ringgate in three modes, same host,
# same run: userspace rustls (ktls = "off"), kernel TLS without splice
# (splice_threshold_bytes = 0), and kernel TLS + splice (the default threshold).
#
#   loadtest/ktls_compare.sh [seconds-per-run] [connections]
#
# Needs: a release build (cargo build --release), wrk, openssl, and a kernel with the tls
# module (run `ringgate doctor`: the ktls line must say "pass"). Traffic stays on
# 127.0.0.1; each wrk run is bounded by its duration. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-16}
bin=target/release/ringgate
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
"$bin" doctor | grep -q '^pass  ktls' || echo "warning: kernel TLS unavailable here; the kTLS rows will fall back to userspace" >&2

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
"$bin" origin --listen 127.0.0.1:19000 2>"$work/origin.log" &

run_mode() { # name ktls splice_threshold port
  cat >"$work/$1.toml" <<TOML
[server]
workers = 1
[http]
splice_threshold_bytes = $3
[[listener]]
addr = "127.0.0.1:$4"
[listener.tls]
ktls = "$2"
certificates = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]
[[route]]
upstream = "o"
[upstream.o]
servers = ["127.0.0.1:19000"]
TOML
  "$bin" run -c "$work/$1.toml" 2>"$work/$1.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
  local out
  out=$(wrk -t1 -c"$conns" -d"${secs}s" "https://127.0.0.1:$4/bytes/1048576")
  kill -TERM $pid; wait $pid || true
  local rps mbs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  mbs=$(awk '/Transfer\/sec/ {print $2}' <<<"$out")
  echo "| $1 | $rps | $mbs | $(grep -o 'ktls_offloaded=[0-9]*' "$work/$1.log" | tail -1) |"
}

echo "| mode | req/s (1 MiB) | transfer/s | offloaded |"
echo "|---|---|---|---|"
run_mode userspace-rustls off 0 18443
run_mode ktls auto 0 18444
run_mode ktls+splice auto 262144 18445
