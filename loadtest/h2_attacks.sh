#!/usr/bin/env bash
# HTTP/2 attacks against the release binary with the default [http2] settings (issue 23):
# each attack of tests/h2/attacks.py (Python h2/hyperframe over TLS, ALPN h2) against a
# fresh ringgate (2 workers, userspace TLS, `ringgate origin` behind it), one attack per
# proxy run, so that the peak RSS is the attack's.
#
#   loadtest/h2_attacks.sh [ATTACK...]        (default: all nine)
#
# Prints one table row per attack: flood frames sent (streams for rapid_reset and
# hpack_bomb), the outcome (GOAWAY code, or the streams reset), what got through (PING /
# SETTINGS ACKs, probe ACKs, responses), whether a second connection was served during
# and after the attack, the `ringgate_h2_protocol_errors_total` reasons that moved, the
# proxy's CPU seconds (utime + stime from /proc/PID/stat, whole run) and its peak RSS
# (VmHWM). Bounded: each flood sends at most FRAMES frames (default 200000; the default
# budgets are 200 control and 10,000 WINDOW_UPDATE frames a second), rapid_reset and
# hpack_bomb at most STREAMS streams (default 5000), and zero_window waits out the
# default send_timeout_ms (60 s). Needs python3 with h2 (./test.sh installs it), openssl,
# a release build (cargo build --release); traffic stays on 127.0.0.1 (18453, 18454,
# 19083).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RINGGATE:-target/release/ringgate}
frames=${FRAMES:-200000}
streams=${STREAMS:-5000}
port=18453 admin=18454 oport=19083
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
python3 -c 'import h2, hyperframe, hpack' 2>/dev/null ||
  { echo "python3 h2 is needed: pip install h2 (./test.sh installs it)" >&2; exit 2; }
attacks=("$@")
[ ${#attacks[@]} -gt 0 ] ||
  attacks=(rapid_reset continuation ping settings priority empty_data window_update hpack_bomb zero_window)

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=app.test -addext subjectAltName=DNS:app.test \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/ringgate.toml" <<EOF
# Defaults everywhere ([http2] not written), two workers, userspace TLS.
[server]
workers = 2
pin_workers = false

[[listener]]
addr = "127.0.0.1:$port"
[listener.tls]
ktls = "off"
certificates = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]

[[route]]
upstream = "origin"

[upstream.origin]
servers = ["127.0.0.1:$oport"]

[admin]
addr = "127.0.0.1:$admin"
EOF
"$bin" origin --listen "127.0.0.1:$oport" 2>"$work/origin.log" &

wait_port() { # port
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
wait_port "$oport" || { echo "origin did not start: $(cat "$work/origin.log")" >&2; exit 1; }

errors() { # the non-zero ringgate_h2_protocol_errors_total reasons, "reason=N,..."
  python3 - "$admin" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
out = []
for line in text.splitlines():
    if line.startswith("ringgate_h2_protocol_errors_total{"):
        reason = line.split('"')[1]
        n = int(float(line.rsplit(" ", 1)[1]))
        if n:
            out.append(f"{reason}={n}")
print(",".join(out) or "-")
PY
}

field() { sed -n "s/^$1=//p" "$2"; }
tck=$(getconf CLK_TCK)
printf '| attack | sent | outcome | got through | good conn during / after | counters | proxy CPU s | peak RSS MiB |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for attack in "${attacks[@]}"; do
  "$bin" run -c "$work/ringgate.toml" >"$work/ringgate.log" 2>&1 &
  pid=$!
  wait_port "$port" || { echo "ringgate did not start: $(cat "$work/ringgate.log")" >&2; exit 1; }
  args=(--frames "$frames")
  case $attack in
    rapid_reset | hpack_bomb) args=(--frames "$streams") ;;
    window_update) args+=(--probe-every 0) ;; # probes would meet the control budget first
    zero_window) args=(--streams 16 --wait 90) ;;
  esac
  read -r ut0 st0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  timeout 600 python3 tests/h2/attacks.py "$attack" --port "$port" --host app.test \
    --insecure --slow-path /bytes/100000 --path /bytes/1000 "${args[@]}" \
    >"$work/$attack.out" 2>"$work/$attack.err" || echo "$attack: attacks.py failed: $(tail -3 "$work/$attack.err")" >&2
  read -r ut1 st1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  counters=$(errors)
  f=$work/$attack.out
  [ -n "${RG_ATTACK_RAW:-}" ] && cat "$f" >&2
  case $(field outcome "$f") in
    goaway) outcome="GOAWAY $(field goaway "$f") (last stream $(field last_stream_id "$f"))" ;;
    resets) outcome="$(field resets "$f") streams reset ($(field reset_codes "$f"))" ;;
    *) outcome="$(field outcome "$f")" ;;
  esac
  through="acks: PING $(field ping_acks "$f"), SETTINGS $(field settings_acks "$f"), probes $(field probe_acks "$f"); responses $(field responses "$f"); DATA $(field data_bytes "$f") B"
  cpu=$(awk -v a=$((ut1 + st1 - ut0 - st0)) -v t="$tck" 'BEGIN {printf "%.2f", a / t}')
  printf '| %s | %s | %s | %s | %s / %s | %s | %s | %s |\n' "$attack" "$(field frames_sent "$f")" \
    "$outcome" "$through" "$(field good_during "$f")" "$(field good_after "$f")" "$counters" \
    "$cpu" "$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
