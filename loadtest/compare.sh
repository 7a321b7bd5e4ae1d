#!/usr/bin/env bash
# Side-by-side load test: ringgate vs nginx vs HAProxy, same host, same run.
#
#   loadtest/compare.sh [--quick]
#
# One ECDSA P-256 self-signed certificate for all three proxies; one shared backend
# (`ringgate origin`, pinned to CPU 1); each proxy in turn pinned to CPU 0 with
# equivalent configs (loadtest/*.tmpl: TLS 1.3 only, 1 worker, keep-alive to the backend,
# no access log); load generators pinned to CPU 1. Runs alternate ringgate, nginx,
# haproxy (then ringgate workers=2, unpinned) and repeat N times; the table shows medians.
# See loadtest/README.md ("Side-by-side: ringgate vs nginx vs HAProxy").
#
# Environment overrides: RG_REPEATS (3; 1 with --quick), RG_SECS (10; 4 with --quick),
# RG_IDLE_CONNS (10000), RG_TOOLS (ringgate-load wrk h2load: those present are used),
# RG_NO_BUILD=1 (never run cargo), RG_KTLS (off), RG_PROXIES (ringgate nginx haproxy),
# RG_SUITE (TLS_AES_128_GCM_SHA256: the one TLS 1.3 cipher suite all three proxies allow).
# All traffic is on 127.0.0.1; every tool run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (usage: loadtest/compare.sh [--quick])" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then
  repeats=${RG_REPEATS:-1}
  secs=${RG_SECS:-4}
else
  repeats=${RG_REPEATS:-3}
  secs=${RG_SECS:-10}
fi
idle_n=${RG_IDLE_CONNS:-10000}
tools_wanted=${RG_TOOLS:-ringgate-load wrk h2load}
ktls=${RG_KTLS:-off}
# One TLS 1.3 suite for all three proxies, so each does the same crypto whatever the
# client offers first (OpenSSL name; ringgate's is TLS13_ + the rest).
suite=${RG_SUITE:-TLS_AES_128_GCM_SHA256}
proxies=${RG_PROXIES:-ringgate nginx haproxy} # for debugging one proxy; the table wants all

origin_port=19080
declare -A port=([ringgate]=19443 [nginx]=19444 [haproxy]=19445 [ringgate-w2]=19446)
t_start=$(date +%s)
log() { printf '[%4ds] %s\n' "$(($(date +%s) - t_start))" "$*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

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
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing: ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
fi
# Debian's nginx package starts a system nginx on port 80; ours never uses its config.

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
if [ "$nofile" -lt $((idle_n + 2000)) ]; then
  log "ulimit -n is only $nofile: idle test lowered to $((nofile - 2000)) connections"
  idle_n=$((nofile - 2000))
fi
maxconn=$((idle_n + 2000)) # proxy connection caps: nginx worker_connections, HAProxy maxconn
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

taskset -c 1 "$bin" origin --listen "127.0.0.1:$origin_port" 2>"$work/origin.log" &
pids+=($!)
wait_port "$origin_port" 10 || die "origin did not start: $(cat "$work/origin.log")"

# ---------------------------------------------------------------- proxies
render() { # template out workers pin_workers port
  sed -e "s|@WORK@|$work|g" -e "s|@CERT@|$work/cert.pem|g" -e "s|@KEY@|$work/key.pem|g" \
    -e "s|@PEM@|$work/combined.pem|g" -e "s|@ORIGIN_PORT@|$origin_port|g" \
    -e "s|@WORKERS@|$3|g" -e "s|@PIN_WORKERS@|$4|g" -e "s|@PORT@|$5|g" \
    -e "s|@KTLS@|$ktls|g" -e "s|@NOFILE@|$nofile|g" -e "s|@MAXCONN@|$maxconn|g" \
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
cpu_ticks() { # utime+stime (fields 14, 15) summed over the proxy's processes
  local p sum=0 t
  for p in $(proxy_procs); do
    t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null) || t=0
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
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

tls_check() { # name: show what was negotiated, and that TLS 1.2 is refused
  local p=${port[$1]} s12 info
  info=$(timeout 5 openssl s_client -connect "127.0.0.1:$p" -servername localhost </dev/null 2>/dev/null |
    awk '/^(New|Server Temp Key)/' | paste -sd ' ' -) || true
  if timeout 5 openssl s_client -tls1_2 -connect "127.0.0.1:$p" </dev/null >/dev/null 2>&1; then
    s12="TLS 1.2 ACCEPTED (config not equivalent!)"
  else
    s12="TLS 1.2 refused"
  fi
  log "$1: $info; $s12"
}

# ---------------------------------------------------------------- one measured run
run_load() { # proxy tool scenario path connections mode(keepalive|handshake) repeat
  local proxy=$1 tool=$2 scen=$3 path=$4 conns=$5 mode=$6 rep=$7
  local url="https://127.0.0.1:${port[$proxy]}$path"
  local tag out before after bound=$((secs + 30))
  tag=$(echo "$proxy-$tool-$scen-r$rep" | tr -c 'A-Za-z0-9_.\n-' _)
  out=$raw/$tag.txt
  before=$(cpu_ticks)
  case $tool in
    wrk)
      local hdr=()
      [ "$mode" = handshake ] && hdr=(-H 'Connection: close')
      taskset -c 1 timeout "$bound" wrk -t1 -c"$conns" -d"${secs}s" --latency "${hdr[@]}" \
        "$url" >"$out" 2>&1 || log "wrk exited non-zero ($tag)"
      ;;
    h2load)
      taskset -c 1 timeout "$bound" h2load --h1 -t1 -c"$conns" -D "$secs" \
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
  after=$(cpu_ticks)
  python3 loadtest/report.py record --results "$results" --tool "$tool" --out "$out" \
    --h2log "$raw/$tag.h2log" --json "$raw/$tag.json" --proxy "$proxy" --scenario "$scen" \
    --repeat "$rep" --connections "$conns" --secs "$secs" --cpu-ticks-before "$before" \
    --cpu-ticks-after "$after" --clk-tck "$clk_tck" || log "could not parse $out"
  rm -f "$raw/$tag.h2log" # per-request log: large, already reduced to percentiles
}

# name|path|connections|mode
scenarios=(
  "12 B keep-alive|/bytes/12|50|keepalive"
  "1 KiB keep-alive|/bytes/1024|50|keepalive"
  "64 KiB keep-alive|/bytes/65536|50|keepalive"
  "1 MiB keep-alive|/bytes/1048576|16|keepalive"
  "new TLS 1.3 handshakes|/bytes/12|50|handshake"
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
      # h2load cannot open one connection per request for a fixed duration
      [ "$mode" = handshake ] && [ "$tool" = h2load ] && continue
      run_load "$proxy" "$tool" "$name" "$path" "$conns" "$mode" "$rep"
    done
  done
  stop_proxy
}

measure_idle() { # proxy
  local proxy=$1 before after line open failed cpid i
  start_proxy "$proxy"
  sleep 1
  before=$(rss_kb)
  local out=$raw/$proxy-idle.txt
  taskset -c 1 python3 loadtest/idle_conns.py --port "${port[$proxy]}" -n "$idle_n" \
    --timeout 120 --hold 180 >"$out" 2>"$raw/$proxy-idle.err" </dev/null &
  cpid=$!
  pids+=("$cpid")
  for ((i = 0; i < 1500; i++)); do # bounded: 150 s
    grep -q '^ready' "$out" 2>/dev/null && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 3 # let the proxy settle (freed handshake buffers; allocators purge on a timer)
  after=$(rss_kb)
  line=$(grep '^ready' "$out" || echo "ready open=0 failed=$idle_n")
  open=$(sed -E 's/.*open=([0-9]+).*/\1/' <<<"$line")
  failed=$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line")
  kill -TERM "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true
  python3 loadtest/report.py idle --results "$results" --proxy "$proxy" --conns "$idle_n" \
    --open "$open" --failed "$failed" --rss-before-kb "$before" --rss-after-kb "$after"
  stop_proxy
}

log "tools: ${tools[*]}; $repeats repeat(s) of ${secs}s runs; results: $results"
for ((rep = 1; rep <= repeats; rep++)); do
  for proxy in $proxies ringgate-w2; do
    log "repeat $rep/$repeats: $proxy"
    measure_proxy "$proxy" "$rep"
  done
done
for proxy in $proxies; do
  log "idle TLS connections: $proxy ($idle_n)"
  measure_idle "$proxy"
done

# one percentile plot per scenario (last repeat), if ringgate-load is there
if [[ " ${tools[*]} " == *" ringgate-load "* ]]; then
  for s in "${scenarios[@]}"; do
    IFS='|' read -r name _ _ _ <<<"$s"
    t=$(echo "$name-r$repeats" | tr -c 'A-Za-z0-9_.\n-' _)
    jsons=()
    for proxy in ringgate nginx haproxy; do
      f=$raw/$(echo "$proxy-ringgate-load-" | tr -c 'A-Za-z0-9_.\n-' _)$t.json
      [ -s "$f" ] && jsons+=("$f")
    done
    [ "${#jsons[@]}" -gt 0 ] &&
      { timeout 60 "$lbin" --plot "$raw/$t.svg" "${jsons[@]}" >/dev/null 2>&1 || log "plot failed: $t"; }
  done
fi

{
  echo "## ringgate vs nginx vs HAProxy ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, ${secs}s runs)"
  echo
  echo "Proxies pinned to CPU 0, origin + load generator pinned to CPU 1; TLS 1.3 $suite, ECDSA P-256."
  echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), kTLS $ktls."
  echo
  python3 loadtest/report.py table "$results"
  echo
  echo "Total time: $(($(date +%s) - t_start)) s. Raw: ${results#"$root"/}, ${raw#"$root"/}/"
} | tee "$resdir/$stamp.md"
