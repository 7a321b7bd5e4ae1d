#!/usr/bin/env bash
# Full mTLS handshakes per second and proxy CPU per handshake, ringgate against nginx in
# the same run (issue 21): both with one worker on CPU 0, requiring a client certificate
# from the same CA and checking the same CRL (REVOKED entries, default 1000), serving
# one small GET per connection from `ringgate origin`. The client is `openssl s_time
# -new` (full handshakes, TLS 1.3, ECDSA P-256 everywhere), CLIENTS processes on CPU 1.
#
#   loadtest/mtls_handshakes.sh [SECONDS] [CLIENTS]      (defaults 10 and 2)
#
# Prints, per proxy: handshakes (connections s_time completed), handshakes/s, and the
# proxy's CPU (user + system, all its processes) per handshake from /proc; then the
# ratios. The CPU per handshake is the figure to compare: with one client core the
# client may bound the rate (its share of CPU 1 is printed too). Needs openssl, nginx,
# a release build (cargo build --release); traffic stays on 127.0.0.1 (18443, 18444,
# 19000).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
clients=${2:-2}
revoked=${REVOKED:-1000}
bin=${RINGGATE:-target/release/ringgate}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx)" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@" 2>/dev/null; }
ec -x509 -days 2 -subj "/CN=server CA" -keyout ca.key -out ca.pem
ec -subj /CN=localhost -keyout server.key -out server.csr
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.pem 2>/dev/null
# The client CA and its CRL: openssl ca's database with $revoked entries, then one CRL.
cat >clients.cnf <<'CNF'
[ca]
default_ca = c
[c]
database = index.txt
certificate = clients-ca.pem
private_key = clients-ca.key
default_md = sha256
default_crl_days = 2
crlnumber = crlnumber
CNF
ec -x509 -days 2 -subj "/O=Example/CN=clients CA" -keyout clients-ca.key -out clients-ca.pem \
  -addext keyUsage=critical,keyCertSign,cRLSign
ec -subj "/O=Example/CN=load client" -keyout client.key -out client.csr
printf 'extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/load/sa/client\n' >client.ext
openssl x509 -req -in client.csr -CA clients-ca.pem -CAkey clients-ca.key -set_serial 1 \
  -days 2 -extfile client.ext -out client.pem 2>/dev/null
echo 1000 >crlnumber
now=$(date -u +%y%m%d%H%M%SZ)
for i in $(seq 2 $((revoked + 1))); do
  printf 'R\t301231235959Z\t%s\t%06X\tunknown\t/CN=revoked %d\n' "$now" $((0x10000 + i)) "$i"
done >index.txt
openssl ca -config clients.cnf -gencrl -out clients.crl.pem 2>/dev/null
echo "CRL: $(openssl crl -in clients.crl.pem -noout -text | grep -c 'Serial Number') revoked serials"

cd - >/dev/null
taskset -c 1 "$bin" origin --listen 127.0.0.1:19000 2>"$work/origin.log" &
cat >"$work/rg.toml" <<TOML
[server]
workers = 1
pin_workers = false
[[listener]]
addr = "127.0.0.1:18443"
[listener.tls]
ktls = "off"
certificates = [{ cert = "$work/server.pem", key = "$work/server.key" }]
[listener.tls.client_auth]
ca = "$work/clients-ca.pem"
crl = ["$work/clients.crl.pem"]
verify = "required"
depth = 2
[[route]]
path_prefix = "/"
upstream = "origin"
[upstream.origin]
servers = ["127.0.0.1:19000"]
TOML
mkdir -p "$work/nginx-tmp"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
worker_cpu_affinity 01;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp;
    proxy_temp_path $work/nginx-tmp;
    fastcgi_temp_path $work/nginx-tmp;
    uwsgi_temp_path $work/nginx-tmp;
    scgi_temp_path $work/nginx-tmp;
    upstream origin { server 127.0.0.1:19000; keepalive 64; }
    server {
        listen 127.0.0.1:18444 ssl backlog=4096;
        ssl_certificate $work/server.pem;
        ssl_certificate_key $work/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client on;
        ssl_client_certificate $work/clients-ca.pem;
        ssl_crl $work/clients.crl.pem;
        ssl_verify_depth 1;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-SSL-Client-Verify \$ssl_client_verify;
            proxy_set_header X-SSL-Client-DN \$ssl_client_s_dn;
        }
    }
}
NGINX
taskset -c 0 "$bin" run -c "$work/rg.toml" >"$work/rg.log" 2>&1 &
rg_pid=$!
taskset -c 0 nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" 2>"$work/nginx.log" &
for _ in $(seq 100); do
  grep -q "listening on" "$work/rg.log" && [ -f "$work/nginx.pid" ] && break
  sleep 0.1
done
ng_master=$(cat "$work/nginx.pid")

# CPU ticks (user + system) of a process and its threads / of the nginx master + workers.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
nginx_ticks() {
  local t=0
  for p in "$ng_master" $(pgrep -P "$ng_master"); do t=$((t + $(ticks "$p"))); done
  echo "$t"
}
cpu1_busy() { awk '/^cpu1 /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
hz=$(getconf CLK_TCK)

run() { # name port ticks-function
  local name=$1 port=$2 tf=$3
  # Each must accept a client certificate (and refuse none) before it is measured.
  curl -sf --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client.key" \
    --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/bytes/12" >/dev/null ||
    { echo "$name: a request with the client certificate failed" >&2; exit 1; }
  if curl -sf --cacert "$work/ca.pem" --resolve "localhost:$port:127.0.0.1" \
    "https://localhost:$port/bytes/12" >/dev/null 2>&1; then
    echo "$name: served a client without a certificate" >&2
    exit 1
  fi
  local t0 c0 n=0 t1 c1
  t0=$($tf)
  c0=$(cpu1_busy)
  for i in $(seq "$clients"); do
    taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new -time "$secs" \
      -cert "$work/client.pem" -key "$work/client.key" -CAfile "$work/ca.pem" \
      -www /bytes/12 >"$work/stime.$name.$i" 2>&1 &
  done
  wait $(jobs -p | tail -n "$clients")
  t1=$($tf)
  c1=$(cpu1_busy)
  for i in $(seq "$clients"); do
    local k
    k=$(awk '/connections in [0-9]+ real seconds/{print $1}' "$work/stime.$name.$i" | tail -1)
    [ -n "$k" ] || { echo "$name: s_time printed no count:" >&2; cat "$work/stime.$name.$i" >&2; exit 1; }
    n=$((n + k))
  done
  local cpu_ms=$(( (t1 - t0) * 1000 / hz ))
  local c1busy
  c1busy=$(echo "$c0 $c1" | awk '{printf "%.0f", 100 * ($3 - $1) / ($4 - $2)}')
  printf '%-8s handshakes=%d per_s=%.0f proxy_cpu_ms=%d proxy_us_per_handshake=%.0f client_core_busy=%s%%\n' \
    "$name" "$n" "$(echo "$n $secs" | awk '{print $1 / $2}')" "$cpu_ms" \
    "$(echo "$cpu_ms $n" | awk '{print 1000 * $1 / $2}')" "$c1busy"
}
rg_ticks() { ticks "$rg_pid"; }
echo "mTLS full handshakes, ${secs}s, $clients openssl s_time clients on CPU 1, proxies on CPU 0"
run ringgate 18443 rg_ticks | tee "$work/r1"
run nginx 18444 nginx_ticks | tee "$work/r2"
awk -F'[ =]+' '{for (i = 1; i < NF; i++) v[NR, $i] = $(i + 1)}
  END {printf "ratio ringgate/nginx: handshakes/s %.2f, CPU per handshake %.2f\n",
    v[1, "per_s"] / v[2, "per_s"], v[1, "proxy_us_per_handshake"] / v[2, "proxy_us_per_handshake"]}' \
  "$work/r1" "$work/r2"
