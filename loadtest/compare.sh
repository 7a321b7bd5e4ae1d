#!/usr/bin/env bash
# Side-by-side load test: ringgate vs nginx vs HAProxy, same host, same run.
#
#   loadtest/compare.sh [--quick]
#
# One ECDSA P-256 self-signed certificate for all proxies; one shared backend (pinned to
# CPU 1); each proxy in turn pinned to CPU 0 with equivalent configs (loadtest/*.tmpl:
# 1 worker, keep-alive to the backend, no access log, X-Forwarded-For as the one
# forwarding header); load generators pinned to CPU 1. Runs alternate ringgate, nginx,
# haproxy (then ringgate workers=2, unpinned) and repeat N times, the order rotated by one
# proxy each repeat; the table shows medians.
# Then idle TLS connections are opened to each proxy in turn (and Caddy, if present) and
# RSS is sampled while they are held. The whole matrix runs once per backend × TLS mode.
# See loadtest/README.md ("Side-by-side: ringgate vs nginx vs HAProxy").
#
# Environment overrides (defaults; with --quick where different):
#   RG_REPEATS (3; 1)          alternating repeats of the load scenarios
#   RG_SECS (10; 4)            seconds per load run
#   RG_BACKEND (origin)        list of: origin (`ringgate origin`), nginx (a stock nginx
#                              serving static files); e.g. "origin nginx" runs both
#   RG_TLS (pinned)            list of: pinned (TLS 1.3 only, RG_SUITE only), defaults
#                              (each proxy's own versions and suites: TLS 1.3 and 1.2)
#   RG_IDLE_CONNS ("1000 4000 10000"; 1000)   idle connection counts
#   RG_IDLE_MODES ("sequential concurrent"; concurrent)   how the idle connections are
#                              opened: one at a time, or RG_IDLE_CONCURRENCY at a time
#   RG_IDLE_PROTOCOLS ("http1 h2"; http1 h2)   idle connections' protocol: HTTP/1.1, or
#                              HTTP/2 (ALPN h2: preface, SETTINGS, one GET, then idle)
#   RG_IDLE_CONCURRENCY (200)  handshakes in flight in the concurrent mode
#   RG_IDLE_SETTLE (3)         seconds between the last connection open and the sample
#   RG_PARTS (load idle)       which parts run: load scenarios, idle connections, or both
#   RG_CADDY (auto)            auto: install Caddy if missing and add it to the idle rows
#                              when its binary is there; off: no Caddy
#   RG_TOOLS (wrk h2load)      those present are used; ringgate-load is not a default: it
#                              raises nginx's CPU per request (loadtest/README.md)
#   RG_PROXIES (ringgate nginx haproxy)   for debugging one proxy; the table wants all
#   RG_KTLS (off)              ringgate's ktls setting
#   RG_RECORD_LAYER (ringgate) ringgate's record_layer: "ringgate" or "rustls" (README
#                              "The record layer in userspace")
#   RG_SUITE (TLS_AES_128_GCM_SHA256)     the one TLS 1.3 suite of the pinned mode
#   RG_POLICIES (off)          list of: off, on (the gateway policy set of the templates'
#                              @POLICIES@ lines: rate limit, connection limit, allow/deny,
#                              security headers, alike in ringgate and nginx; HAProxy has
#                              no such lines); e.g. "off on" measures both in one run
#   RG_NO_BUILD=1              never run cargo
# All traffic is on 127.0.0.1; every tool run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,43p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (usage: loadtest/compare.sh [--quick])" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then
  repeats=${RG_REPEATS:-1}
  secs=${RG_SECS:-4}
  idle_sizes_wanted=${RG_IDLE_CONNS:-1000}
  idle_modes=${RG_IDLE_MODES:-concurrent}
else
  repeats=${RG_REPEATS:-3}
  secs=${RG_SECS:-10}
  idle_sizes_wanted=${RG_IDLE_CONNS:-1000 4000 10000}
  idle_modes=${RG_IDLE_MODES:-sequential concurrent}
fi
idle_conc=${RG_IDLE_CONCURRENCY:-200}
idle_protocols=${RG_IDLE_PROTOCOLS:-http1 h2}
idle_settle=${RG_IDLE_SETTLE:-3}
backends=${RG_BACKEND:-origin}
tls_modes=${RG_TLS:-pinned}
caddy_mode=${RG_CADDY:-auto}
parts=${RG_PARTS:-load idle}
tools_wanted=${RG_TOOLS:-wrk h2load}
ktls=${RG_KTLS:-off}
record_layer=${RG_RECORD_LAYER:-ringgate}
# One TLS 1.3 suite for all proxies in the pinned mode, so each does the same crypto
# whatever the client offers first (OpenSSL name; ringgate's is TLS13_ + the rest).
suite=${RG_SUITE:-TLS_AES_128_GCM_SHA256}
proxies=${RG_PROXIES:-ringgate nginx haproxy}
policy_modes=${RG_POLICIES:-off}

declare -A port=([ringgate]=19443 [nginx]=19444 [haproxy]=19445 [ringgate-w2]=19446 [caddy]=19447)
declare -A backend_ports=([origin]=19080 [nginx]=19081)
t_start=$(date +%s)
log() { printf '[%4ds] %s\n' "$(($(date +%s) - t_start))" "$*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

for b in $backends; do [ -n "${backend_ports[$b]:-}" ] || die "unknown backend in RG_BACKEND: $b (origin|nginx)"; done
for m in $tls_modes; do case $m in pinned | defaults) ;; *) die "unknown mode in RG_TLS: $m (pinned|defaults)" ;; esac; done
for m in $idle_modes; do case $m in sequential | concurrent) ;; *) die "unknown mode in RG_IDLE_MODES: $m (sequential|concurrent)" ;; esac; done
for m in $policy_modes; do case $m in off | on) ;; *) die "unknown mode in RG_POLICIES: $m (off|on)" ;; esac; done
for m in $policy_modes; do [ "$m" = on ] && [[ " $proxies " == *" haproxy "* ]] && die "RG_POLICIES=on: haproxy.cfg.tmpl has no policy set; use RG_PROXIES=\"ringgate nginx\""; done
for p in $proxies; do case $p in ringgate | nginx | haproxy) ;; *) die "unknown proxy in RG_PROXIES: $p (ringgate|nginx|haproxy)" ;; esac; done
for x in $idle_protocols; do case $x in http1 | h2) ;; *) die "unknown protocol in RG_IDLE_PROTOCOLS: $x (http1|h2)" ;; esac; done
for x in $parts; do case $x in load | idle) ;; *) die "unknown part in RG_PARTS: $x (load|idle)" ;; esac; done
case $caddy_mode in auto | off) ;; *) die "RG_CADDY must be auto or off, not $caddy_mode" ;; esac
[[ $idle_conc =~ ^[1-9][0-9]*$ ]] || die "RG_IDLE_CONCURRENCY must be a positive number"
[[ $idle_settle =~ ^[0-9]+$ ]] || die "RG_IDLE_SETTLE must be a number of seconds"

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v h2load >/dev/null || need_pkgs+=(nghttp2-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v ss >/dev/null || need_pkgs+=(iproute2)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing: ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
fi
# Caddy is an optional idle-memory peer: a failed install only drops its rows.
if [ "$caddy_mode" = auto ] && ! command -v caddy >/dev/null; then
  log "installing: caddy"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q caddy >/dev/null ||
    log "could not install caddy: no Caddy rows"
fi
# Debian's nginx and caddy packages may start a system server on port 80; ours never use
# their configs.
idle_proxies=$proxies
[ "$caddy_mode" = auto ] && command -v caddy >/dev/null && idle_proxies="$idle_proxies caddy"

bin=$root/target/release/ringgate
lbin=$root/target/release/ringgate-load
if [ "${RG_NO_BUILD:-0}" != 1 ]; then
  if [ ! -x "$bin" ]; then
    log "building release binaries (cargo build --release)"
    cargo build --release
  elif [ ! -x "$lbin" ]; then
    log "ringgate-load missing: trying cargo build --release --bin ringgate-load"
    cargo build --release --bin ringgate-load || log "could not build ringgate-load; continuing without it"
  fi
fi
[ -x "$bin" ] || die "missing $bin (cargo build --release)"
tools=()
for t in $tools_wanted; do
  case $t in
    ringgate-load)
      if [ -x "$lbin" ]; then tools+=(ringgate-load); else log "ringgate-load not built: its rows are skipped"; fi
      ;;
    wrk | h2load) command -v "$t" >/dev/null && tools+=("$t") ;;
    *) die "unknown tool in RG_TOOLS: $t" ;;
  esac
done
[ "${#tools[@]}" -gt 0 ] || die "no load tool available"

# 10,000 idle connections need ~10k fds in the client and in the proxy (+ backend).
# Raising the hard limit needs CAP_SYS_RESOURCE (absent in some containers): then the
# soft limit goes up to the hard one. Each process (client, proxy) has its own limit.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
idle_sizes=()
idle_max=0
for n in $idle_sizes_wanted; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "RG_IDLE_CONNS: not a positive number: $n"
  if [ "$n" -gt $((nofile - 2000)) ]; then
    log "ulimit -n is only $nofile: idle test of $n lowered to $((nofile - 2000)) connections"
    n=$((nofile - 2000))
  fi
  [[ " ${idle_sizes[*]} " == *" $n "* ]] || idle_sizes+=("$n")
  [ "$n" -gt "$idle_max" ] && idle_max=$n
done
maxconn=$((idle_max + 2000)) # connection caps: nginx worker_connections, HAProxy maxconn
clk_tck=$(getconf CLK_TCK)

# ---------------------------------------------------------------- workspace
stamp=$(date +%Y%m%d-%H%M%S)
resdir=$root/loadtest/results
mkdir -p "$resdir/$stamp"
raw=$resdir/$stamp                    # raw tool outputs
results=$resdir/$stamp.jsonl          # one JSON line per run
work=$(mktemp -d /tmp/ringgate-compare.XXXXXX)
chmod 755 "$work"                     # nginx workers run as nobody
pids=()                               # every process this script started, by id
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/combined.pem" # HAProxy wants one file

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- backends
# /bytes/N as static files for the nginx backend (`ringgate origin` makes them itself)
mkdir -p "$work/www/bytes"
for n in 12 1024 65536 1048576; do head -c "$n" /dev/zero | tr '\0' x >"$work/www/bytes/$n"; done
chmod -R a+rX "$work/www"

backend_pid=0
backend_port=0
start_backend() { # origin|nginx
  backend_port=${backend_ports[$1]}
  case $1 in
    origin)
      taskset -c 1 "$bin" origin --listen "127.0.0.1:$backend_port" 2>"$work/origin.log" &
      ;;
    nginx)
      sed -e "s|@WORK@|$work|g" -e "s|@NOFILE@|$nofile|g" -e "s|@MAXCONN@|$maxconn|g" \
        -e "s|@BACKEND_PORT@|$backend_port|g" loadtest/backend-nginx.conf.tmpl >"$work/backend-nginx.conf"
      taskset -c 1 nginx -c "$work/backend-nginx.conf" -e "$work/backend-nginx-error.log" \
        2>"$work/origin.log" &
      ;;
  esac
  backend_pid=$!
  pids+=("$backend_pid")
  wait_port "$backend_port" 10 || die "backend $1 did not start: $(cat "$work/origin.log")"
  local code
  code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
    "http://127.0.0.1:$backend_port/bytes/1024") || true
  [ "$code" = "200 1024" ] || die "backend $1: GET /bytes/1024 gave '$code'"
}
stop_backend() {
  kill -TERM "$backend_pid" 2>/dev/null || true
  wait "$backend_pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- proxies
tls=pinned # the TLS mode of the current pass
pol=off    # the policy mode of the current pass
tls_label() { # the TLS column of the results: the mode, and the policy set when on
  if [ "$pol" = on ]; then echo "$tls+policies"; else echo "$tls"; fi
}
render() { # template out workers pin_workers port
  # "# @PINNED@" lines are kept (tag removed) in the pinned mode and dropped in the
  # defaults mode; "# @DEFAULTS@" lines the other way round
  local keep=PINNED drop=DEFAULTS caddy_min=tls1.3
  [ "$tls" = defaults ] && keep=DEFAULTS drop=PINNED caddy_min=tls1.2
  local pol_sed=("-e" "/# @POLICIES@\$/d")
  [ "$pol" = on ] && pol_sed=("-e" "s/ *# @POLICIES@\$//")
  sed "${pol_sed[@]}" -e "/# @$drop@\$/d" -e "s/ *# @$keep@\$//" -e "s|@WORK@|$work|g" -e "s|@CERT@|$work/cert.pem|g" -e "s|@KEY@|$work/key.pem|g" \
    -e "s|@PEM@|$work/combined.pem|g" -e "s|@ORIGIN_PORT@|$backend_port|g" \
    -e "s|@WORKERS@|$3|g" -e "s|@PIN_WORKERS@|$4|g" -e "s|@PORT@|$5|g" \
    -e "s|@KTLS@|$ktls|g" -e "s|@RECORD_LAYER@|$record_layer|g" -e "s|@NOFILE@|$nofile|g" -e "s|@MAXCONN@|$maxconn|g" \
    -e "s|@CADDY_TLS_MIN@|$caddy_min|g" \
    -e "s|@SUITE@|$suite|g" -e "s|@RUSTLS_SUITE@|TLS13_${suite#TLS_}|g" "$1" >"$2"
}

proxy_pid=0
start_proxy() { # name
  local name=$1 p=${port[$1]} cfg
  case $name in
    ringgate)
      cfg=$work/ringgate.toml
      render loadtest/ringgate.toml.tmpl "$cfg" 1 true "$p"
      taskset -c 0 "$bin" run -c "$cfg" 2>"$work/$name.log" &
      ;;
    ringgate-w2) # the scaling row: 2 workers, not pinned by taskset nor by ringgate
      cfg=$work/ringgate-w2.toml
      render loadtest/ringgate.toml.tmpl "$cfg" 2 false "$p"
      "$bin" run -c "$cfg" 2>"$work/$name.log" &
      ;;
    nginx)
      cfg=$work/nginx.conf
      render loadtest/nginx.conf.tmpl "$cfg" 1 true "$p"
      taskset -c 0 nginx -c "$cfg" -e "$work/nginx-error.log" 2>"$work/$name.log" &
      ;;
    haproxy)
      cfg=$work/haproxy.cfg
      render loadtest/haproxy.cfg.tmpl "$cfg" 1 true "$p"
      taskset -c 0 haproxy -db -f "$cfg" 2>"$work/$name.log" &
      ;;
    caddy) # one Go process; GOMAXPROCS=1 as the others' one worker; its state under $work
      cfg=$work/caddy.json
      render loadtest/caddy.json.tmpl "$cfg" 1 true "$p"
      taskset -c 0 env GOMAXPROCS=1 HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" \
        caddy run --config "$cfg" 2>"$work/$name.log" &
      ;;
  esac
  proxy_pid=$!
  pids+=("$proxy_pid")
  local i
  for ((i = 0; i < 150; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.1
  done
  wait_port "$p" 1 || die "$name did not start: $(tail -5 "$work/$name.log")"
  local code
  code=$(curl -sk --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
    "https://127.0.0.1:$p/bytes/1024") || true
  [ "$code" = "200 1024" ] || die "$name: GET /bytes/1024 gave '$code'"
}

# The proxy's processes: nginx = master + its worker(s); ringgate and HAProxy = one
# process (threads are counted in the process's own /proc/PID/stat).
proxy_procs() {
  echo "$proxy_pid"
  ps -o pid= --ppid "$proxy_pid" 2>/dev/null || true
}
cpu_split() { # "utime stime" (fields 14, 15), each summed over the proxy's processes
  local p us=0 ss=0 u s
  for p in $(proxy_procs); do
    read -r u s < <(awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$p/stat" 2>/dev/null) || true
    us=$((us + ${u:-0})) ss=$((ss + ${s:-0}))
    u='' s=''
  done
  echo "$us $ss"
}
core_ticks() { # "busy total" ticks of CPU $1 from /proc/stat: everything that ran on the
  # core (the processes, their interrupts and softirqs, which /proc/PID/stat may not count)
  awk -v c="cpu$1" '$1 == c {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat
}
rss_kb() { # VmRSS summed over the proxy's processes
  local p sum=0 r
  for p in $(proxy_procs); do
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || r=0
    sum=$((sum + ${r:-0}))
  done
  echo "$sum"
}
stop_proxy() {
  kill -TERM "$proxy_pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
}

tls_check() { # name: show what was negotiated, and whether TLS 1.2 is served as the mode says
  local p=${port[$1]} s12 info
  info=$(timeout 5 openssl s_client -connect "127.0.0.1:$p" -servername localhost </dev/null 2>/dev/null |
    awk '/^(New|Server Temp Key)/' | paste -sd ' ' -) || true
  if timeout 5 openssl s_client -tls1_2 -connect "127.0.0.1:$p" </dev/null >/dev/null 2>&1; then
    s12="TLS 1.2 accepted"
    [ "$tls" = pinned ] && s12="TLS 1.2 ACCEPTED (config not equivalent!)"
  else
    s12="TLS 1.2 refused"
    [ "$tls" = defaults ] && s12="TLS 1.2 REFUSED (not the proxy's defaults?)"
  fi
  log "$1 ($tls): $info; $s12"
}

# ---------------------------------------------------------------- one measured run
run_load() { # proxy tool scenario path connections mode(keepalive|handshake) repeat
  local proxy=$1 tool=$2 scen=$3 path=$4 conns=$5 mode=$6 rep=$7
  local url="https://127.0.0.1:${port[$proxy]}$path"
  local tag out before after bound=$((secs + 30)) c0 c1 c0_after c1_after
  tag=$(echo "$backend-$(tls_label)-$proxy-$tool-$scen-r$rep" | tr -c 'A-Za-z0-9_.\n-' _)
  out=$raw/$tag.txt
  c0=$(core_ticks 0) c1=$(core_ticks 1)
  before=$(cpu_split)
  case $tool in
    wrk)
      local hdr=()
      [ "$mode" = handshake ] && hdr=(-H 'Connection: close')
      taskset -c 1 timeout "$bound" wrk -t1 -c"$conns" -d"${secs}s" --latency "${hdr[@]}" \
        "$url" >"$out" 2>&1 || log "wrk exited non-zero ($tag)"
      ;;
    h2load)
      # HTTP/1.1 rows: --h1; the HTTP/2 rows (mode h2): ALPN h2, 10 streams per connection
      local proto=(--h1)
      [ "$mode" = h2 ] && proto=(-m10)
      taskset -c 1 timeout "$bound" h2load "${proto[@]}" -t1 -c"$conns" -D "$secs" \
        --log-file "$raw/$tag.h2log" "$url" >"$out" 2>&1 || log "h2load exited non-zero ($tag)"
      ;;
    ringgate-load)
      local extra=()
      [ "$mode" = handshake ] && extra=(--handshake --no-resume)
      taskset -c 1 timeout "$bound" "$lbin" --url "$url" --connections "$conns" --threads 1 \
        --duration-secs "$secs" -q --insecure "${extra[@]}" --label "$proxy" \
        --json "$raw/$tag.json" >"$out" 2>&1 || log "ringgate-load exited non-zero ($tag)"
      [ -s "$raw/$tag.json" ] || { log "no JSON from ringgate-load ($tag)"; return 0; }
      ;;
  esac
  after=$(cpu_split)
  c0_after=$(core_ticks 0) c1_after=$(core_ticks 1)
  python3 loadtest/report.py record --results "$results" --tool "$tool" --out "$out" \
    --h2log "$raw/$tag.h2log" --json "$raw/$tag.json" --proxy "$proxy" --scenario "$scen" \
    --backend "$backend" --tls "$(tls_label)" \
    --repeat "$rep" --connections "$conns" --secs "$secs" --cpu-ticks-before "$before" \
    --cpu-ticks-after "$after" --clk-tck "$clk_tck" \
    --proxy-core "$c0 $c0_after" --client-core "$c1 $c1_after" || log "could not parse $out"
  rm -f "$raw/$tag.h2log" # per-request log: large, already reduced to percentiles
}

# name|path|connections|mode
scenarios=(
  "12 B keep-alive|/bytes/12|50|keepalive"
  "1 KiB keep-alive|/bytes/1024|50|keepalive"
  "64 KiB keep-alive|/bytes/65536|50|keepalive"
  "1 MiB keep-alive|/bytes/1048576|16|keepalive"
  "new TLS 1.3 handshakes|/bytes/12|50|handshake"
  "HTTP/2 12 B (-c32 -m10)|/bytes/12|32|h2"
  "HTTP/2 64 KiB (-c32 -m10)|/bytes/65536|32|h2"
)

measure_proxy() { # proxy repeat
  local proxy=$1 rep=$2 s name path conns mode tool
  start_proxy "$proxy"
  [ "$rep" = 1 ] && tls_check "$proxy"
  # warm-up (not recorded): fills the backend keep-alive pool, faults in buffers
  taskset -c 1 timeout 10 wrk -t1 -c50 -d1s "https://127.0.0.1:${port[$proxy]}/bytes/1024" >/dev/null 2>&1 || true
  for s in "${scenarios[@]}"; do
    IFS='|' read -r name path conns mode <<<"$s"
    # the workers=2 row only repeats the small-response and handshake scenarios
    if [ "$proxy" = ringgate-w2 ] && [ "$name" != "12 B keep-alive" ] && [ "$mode" != handshake ]; then
      continue
    fi
    for tool in "${tools[@]}"; do
      # h2load cannot open one connection per request for a fixed duration; the HTTP/2
      # rows are h2load's alone
      [ "$mode" = handshake ] && [ "$tool" = h2load ] && continue
      [ "$mode" = h2 ] && [ "$tool" != h2load ] && continue
      run_load "$proxy" "$tool" "$name" "$path" "$conns" "$mode" "$rep"
    done
  done
  stop_proxy
}

fd_count() { # open fds summed over the proxy's processes
  local p sum=0 c
  for p in $(proxy_procs); do
    c=$(ls "/proc/$p/fd" 2>/dev/null | wc -l) || c=0
    sum=$((sum + c))
  done
  echo "$sum"
}

declare -A tls_checked=()
# Opens N idle TLS connections (one request each) to a fresh proxy, holds them while RSS,
# fds and the proxy's established connections are sampled, then releases them.
measure_idle() { # proxy connections mode(sequential|concurrent) protocol(http1|h2)
  local proxy=$1 n=$2 mode=$3 proto=${4:-http1} p=${port[$1]} conc=$idle_conc open_bound=240 hold=$((idle_settle + 300))
  local tag out before after fds_before fds_after held line open failed cpid i h2flag=
  [ "$mode" = sequential ] && conc=1
  [ "$proto" = h2 ] && h2flag=--h2
  tag=$(echo "$backend-$tls-$proxy-idle-$proto-$n-$mode" | tr -c 'A-Za-z0-9_.\n-' _)
  out=$raw/$tag.txt
  start_proxy "$proxy"
  # Caddy has no load rows, so its TLS settings are shown at its first idle start
  if [ "$proxy" = caddy ] && [ -z "${tls_checked[$backend-$tls]:-}" ]; then
    tls_check caddy
    tls_checked[$backend-$tls]=1
  fi
  sleep 1
  before=$(rss_kb)
  fds_before=$(fd_count)
  # idle_conns.py holds its connections until its stdin reaches EOF. Its stdin is a fifo
  # that this shell keeps open (read-write, so neither side blocks) on fd 7 until after
  # the sample; the client itself must not inherit fd 7, or EOF would never come.
  rm -f "$work/idle.fifo"
  mkfifo "$work/idle.fifo"
  exec 7<>"$work/idle.fifo"
  taskset -c 1 timeout $((open_bound + hold + 30)) python3 loadtest/idle_conns.py --port "$p" \
    -n "$n" --concurrency "$conc" --timeout "$open_bound" --hold "$hold" $h2flag \
    <"$work/idle.fifo" >"$out" 2>"$raw/$tag.err" 7>&- &
  cpid=$!
  pids+=("$cpid")
  for ((i = 0; i < (open_bound + 30) * 10; i++)); do # bounded: the client's own bound + 30 s
    grep -q '^ready' "$out" 2>/dev/null && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  # let the proxy settle (freed handshake buffers; allocators purge on a timer). Past the
  # proxies' keep-alive timeout (75 s) they close the connections: the row goes invalid.
  sleep "$idle_settle"
  after=$(rss_kb)
  fds_after=$(fd_count)
  # connections the proxy really holds now: established, local port = its listener
  held=$(ss -Htn state established "( sport = :$p )" | wc -l)
  kill -0 "$cpid" 2>/dev/null || log "idle_conns.py was gone before the sample ($tag)"
  exec 7>&- # EOF on the client's stdin: it closes its connections and exits
  for ((i = 0; i < 300; i++)); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true
  line=$(grep '^ready' "$out" || echo "ready open=0 failed=$n")
  open=$(sed -E 's/.*open=([0-9]+).*/\1/' <<<"$line")
  failed=$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line")
  python3 loadtest/report.py idle --results "$results" --proxy "$proxy" --backend "$backend" \
    --tls "$tls" --mode "$mode" --protocol "$proto" --concurrency "$conc" --conns "$n" --open "$open" \
    --failed "$failed" --held "$held" --fds-before "$fds_before" --fds-after "$fds_after" \
    --rss-before-kb "$before" --rss-after-kb "$after"
  stop_proxy
}

plot_pass() { # one percentile plot per scenario (last repeat of this pass), by ringgate-load
  [[ " ${tools[*]} " == *" ringgate-load "* ]] || return 0
  local s name t f proxy jsons
  for s in "${scenarios[@]}"; do
    IFS='|' read -r name _ _ _ <<<"$s"
    jsons=()
    for proxy in ringgate nginx haproxy; do
      f=$raw/$(echo "$backend-$tls-$proxy-ringgate-load-$name-r$repeats" | tr -c 'A-Za-z0-9_.\n-' _).json
      [ -s "$f" ] && jsons+=("$f")
    done
    t=$(echo "$backend-$tls-$name-r$repeats" | tr -c 'A-Za-z0-9_.\n-' _)
    if [ "${#jsons[@]}" -gt 0 ]; then
      timeout 60 "$lbin" --plot "$raw/$t.svg" "${jsons[@]}" >/dev/null 2>&1 || log "plot failed: $t"
    fi
  done
  return 0
}

log "tools: ${tools[*]}; $repeats repeat(s) of ${secs}s runs; backends: $backends; TLS: $tls_modes"
log "idle: ${idle_sizes[*]} connections, $idle_modes, on $idle_proxies; results: $results"
for backend in $backends; do
  start_backend "$backend"
  for tls in $tls_modes; do
   for pol in $policy_modes; do
    if [[ " $parts " == *" load "* ]]; then
      for ((rep = 1; rep <= repeats; rep++)); do
        # the order rotates with each repeat (ringgate nginx haproxy, then nginx haproxy
        # ringgate, ...), so no proxy always runs first after the backend or the last
        # one's heavy runs; the workers=2 row stays last
        read -ra order <<<"$proxies"
        rotated=()
        for ((i = 0; i < ${#order[@]}; i++)); do
          rotated+=("${order[(i + rep - 1) % ${#order[@]}]}")
        done
        for proxy in "${rotated[@]}" ringgate-w2; do
          log "backend $backend, TLS $tls, policies $pol, repeat $rep/$repeats: $proxy"
          measure_proxy "$proxy" "$rep"
        done
      done
      plot_pass
    fi
   done
    pol=off # idle rows: without the policy set
    [[ " $parts " == *" idle "* ]] || continue
    for n in "${idle_sizes[@]}"; do
      for mode in $idle_modes; do
        for proto in $idle_protocols; do
          for proxy in $idle_proxies; do
            [ "$proto" = h2 ] && [ "$proxy" = caddy ] && continue # no h2 template checked
            log "backend $backend, TLS $tls: idle TLS connections: $proxy ($proto, $n, $mode)"
            measure_idle "$proxy" "$n" "$mode" "$proto"
          done
        done
      done
    done
  done
  stop_backend
done

{
  echo "## ringgate vs nginx vs HAProxy ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, ${secs}s runs)"
  echo
  echo "Proxies pinned to CPU 0, backend + load generator pinned to CPU 1; ECDSA P-256. TLS pinned ="
  echo "TLS 1.3 $suite only; TLS defaults = each proxy's own versions and suites (1.3 and 1.2)."
  echo "Backends: origin = \`ringgate origin\`; nginx = nginx serving static files (its usual 8 header fields)."
  caddy_v=
  [[ " $idle_proxies " == *" caddy "* ]] && caddy_v=", Caddy $(caddy version 2>/dev/null | awk '{print $1}')"
  echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}')$caddy_v, kTLS $ktls."
  echo
  python3 loadtest/report.py table "$results"
  echo
  echo "Total time: $(($(date +%s) - t_start)) s. Raw: ${results#"$root"/}, ${raw#"$root"/}/"
} | tee "$resdir/$stamp.md"
