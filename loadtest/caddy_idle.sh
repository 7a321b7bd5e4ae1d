#!/usr/bin/env bash
# Caddy's RSS per idle connection, sampled the way compare.sh's idle rows sample it and
# with the variations that could change it: when RSS is read relative to Go's GC (3, 10,
# 20, 30 s after the last connection opened, with GODEBUG=gctrace=1 logging each GC's
# live heap and goroutine stacks), GOMAXPROCS (1 as in compare.sh, or Go's default),
# how connections are opened (1 or 200 at a time), what Caddy does with the request
# (reverse_proxy to `ringgate origin`, or a static response), and what each connection
# did (TLS handshake + one request as in compare.sh, a handshake only, or bare TCP).
#
#   loadtest/caddy_idle.sh [N]        # N connections (default 4000), loopback only
#
# Needs caddy (apt-get install caddy), openssl, python3, a built `ringgate` (debug is
# fine: it is only the origin) and `ulimit -n` above N + 100. Prints one line per case:
# the RSS delta per connection at each sample, the GCs seen, and the connections Caddy
# held (ss) at the last sample.
set -euo pipefail
n=${1:-4000}
cd "$(dirname "$0")/.."
bin=${RINGGATE_BIN:-target/release/ringgate}
[ -x "$bin" ] || bin=target/debug/ringgate
for t in caddy openssl python3 ss taskset; do
  command -v "$t" >/dev/null || { echo "caddy_idle.sh: $t is needed (apt-get install ${t/ss/iproute2})" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "caddy_idle.sh: build ringgate first (cargo build)" >&2; exit 2; }
ulimit -n $((n + 1000))
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
"$bin" origin --listen 127.0.0.1:0 2>"$work/origin.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/origin.log" && break; sleep 0.1; done
oport=$(sed -nE 's/.*127\.0\.0\.1:([0-9]+).*/\1/p' "$work/origin.log" | head -1)
port=18557

# Holds N connections until stdin ends: "tls" (handshake + one request, response read),
# "handshake" (TLS handshake only) or "tcp" (no TLS at all).
hold='
import socket, ssl, sys
mode, port, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if mode != "tcp":
        s = ctx.wrap_socket(s, server_hostname="localhost")
        if mode == "tls":
            s.sendall(b"GET /bytes/12 HTTP/1.1\r\nHost: localhost\r\n\r\n"); s.recv(65536)
    conns.append(s)
print("ready", len(conns), flush=True)
sys.stdin.read()
'
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

case_() { # name handler(proxy|static) gomaxprocs(1|default) open(200|1|tcp|handshake)
  local name=$1 handler=$2 gmp=$3 open=$4 h cpid before kp last=0 line t
  if [ "$handler" = proxy ]; then
    h='{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:'$oport'"}]}'
  else
    h='{"handler":"static_response","body":"hello, world","status_code":200}'
  fi
  cat >"$work/caddy.json" <<J
{"admin":{"disabled":true,"config":{"persist":false}},"storage":{"module":"file_system","root":"$work/data"},
 "apps":{"http":{"servers":{"fe":{"listen":["127.0.0.1:$port"],"protocols":["h1"],
   "automatic_https":{"disable":true},"tls_connection_policies":[{"protocol_min":"tls1.2"}],
   "routes":[{"handle":[$h]}]}}},
  "tls":{"certificates":{"load_files":[{"certificate":"$work/cert.pem","key":"$work/key.pem"}]}}}}
J
  local env=(HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" GODEBUG=gctrace=1)
  [ "$gmp" != default ] && env+=(GOMAXPROCS="$gmp")
  taskset -c 0 env "${env[@]}" caddy run --config "$work/caddy.json" 2>"$work/caddy.log" &
  cpid=$!
  pids+=("$cpid")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 1
  before=$(rss "$cpid")
  rm -f "$work/fifo"; mkfifo "$work/fifo"; exec 7<>"$work/fifo"
  case $open in
    1 | 200) taskset -c 1 python3 loadtest/idle_conns.py --port "$port" -n "$n" --concurrency "$open" \
      --timeout 240 --hold 300 <"$work/fifo" >"$work/client.out" 2>/dev/null 7>&- & ;;
    *) taskset -c 1 python3 -c "$hold" "$open" "$port" "$n" 1 <"$work/fifo" >"$work/client.out" 7>&- & ;;
  esac
  kp=$!
  pids+=("$kp")
  for _ in $(seq 3000); do grep -q '^ready' "$work/client.out" 2>/dev/null && break; sleep 0.1; done
  line="$name: $(head -1 "$work/client.out")"
  for t in 3 10 20 30; do
    sleep $((t - last)); last=$t
    line="$line ${t}s:$(((($(rss "$cpid") - before) * 1024) / n))B"
  done
  line="$line gcs=$(grep -c '^gc ' "$work/caddy.log") held=$(ss -Htn state established "( sport = :$port )" | wc -l)"
  echo "$line; last GC: $(grep '^gc ' "$work/caddy.log" | tail -1 | grep -oE '[0-9]+->[0-9]+->[0-9]+ MB.*stacks')"
  exec 7>&-
  wait "$kp" 2>/dev/null || true
  kill "$cpid"; wait "$cpid" 2>/dev/null || true
}

echo "caddy $(caddy version | head -1), $n connections, RSS delta per connection after the last opened"
case_ "compare.sh (reverse_proxy, GOMAXPROCS=1, 200 at a time)" proxy 1 200
case_ "one at a time" proxy 1 1
case_ "GOMAXPROCS default ($(nproc))" proxy default 200
case_ "static_response" static 1 200
case_ "one request each, one at a time (plain client)" static 1 tls
case_ "TLS handshake only, no request" static 1 handshake
case_ "bare TCP, no TLS handshake" static 1 tcp
