#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (repeatable on a noisy shared
# host, unlike req/s): one worker serving keep-alive HTTPS GETs of 12 bytes from
# `ringgate origin`, one connection, TLS 1.3 in userspace rustls.
#
#   loadtest/callgrind_cost.sh BINARY [admin] [N1 N2]
#   loadtest/callgrind_cost.sh nginx [-] [N1 N2]
#
# BINARY is a release build of ringgate (e.g. target/release/ringgate, or one built from
# another commit). `nginx` counts nginx instead (one worker, master_process off), from
# compare.sh's loadtest/nginx.conf.tmpl; CG_TEMPLATE=on makes ringgate read compare.sh's
# loadtest/ringgate.toml.tmpl, the config kept alike to it (TLS 1.3 with AES-256-GCM
# only, which the rustls load client prefers, in both), so the two counts compare one
# proxy with the other; CG_POLICIES=on then keeps both templates' @POLICIES@ lines (rate
# limit, connection limit, allow/deny, five security headers). `admin` adds `[admin]` and scrapes /metrics once per window. Two
# windows of N1 and N2 requests (default 2000 and 12000), each between
# `callgrind_control -z` and `-d` (signals are not delivered reliably to an idle process
# under valgrind, so the counts are dumped, not read at exit); each window includes one
# new connection, so (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request. Needs
# valgrind, openssl, curl; traffic stays on 127.0.0.1 (ports 18443, 19000, 19901; CG_PORT=N
# moves them to N, N+1, N+2, for runs side by side on one host).
# CG_MTLS=on adds client certificates: the listener requires one (a CA made here) and
# the load client presents it, so every request carries the X-SSL-Client-* identity
# fields; CG_MTLS=quiet is the same with `client_identity_headers` off (the fields'
# own cost is the difference).
# CG_HANDSHAKE=on makes every request a new connection with a full handshake (no
# resumption): the figure is then instructions per handshake + request (use smaller
# windows, e.g. 200 1200).
# CG_HEADERS=on adds the header policies (README "CORS and security headers"): five
# security headers on the listener, a request rule and a response rule on the route and
# a CORS table on it (the load client sends no Origin: the response step still runs,
# adding Vary); CG_HEADERS=cors is the CORS table alone.
# CG_POLICIES=on (without CG_TEMPLATE) adds the rest of the gateway policy set of
# compare.sh's RG_POLICIES=on: a per-client rate limit that admits everything (one hot
# key), a per-IP connection limit, allow/deny on the listener and the route; with
# CG_HEADERS=on too it is the full set.
# CG_RECORD_LAYER=rustls|ringgate sets the listener's `record_layer` (README "The record
# layer in userspace"): the same binary counted with each.
# CG_H2=on counts HTTP/2 instead: h2load (ALPN h2, one connection, -m 10 streams at
# once) sends the windows' requests; with CG_TEMPLATE=on or `nginx` both proxies run
# compare.sh's templates, which offer h2 and allow 10^8 requests per connection (h2load
# does not reconnect after a GOAWAY). Needs h2load (apt-get install nghttp2-client).
# CG_BROWSER=on (with CG_H2=on) makes h2load send the request fields a browser sends
# (accept, accept-language, accept-encoding, a browser user-agent, sec-ch-ua*, sec-fetch-*,
# a cookie: 12 fields beside the pseudo-headers) instead of its own two.
# CG_BYTES=N asks for N-byte responses instead of 12 (origin backend).
# CG_BACKEND=nginx serves the requests from compare.sh's nginx backend (static files)
# instead of `ringgate origin`; CG_KEEP=DIR keeps the two dumps.
set -euo pipefail
cd "$(dirname "$0")/.."
proxy=ringgate
if [ "$1" = nginx ]; then
  proxy=nginx
  bin=$(command -v nginx) || { echo "nginx is needed (apt-get install nginx-light)" >&2; exit 2; }
else
  bin=$(realpath "$1")
fi
admin=${2:-}
n1=${3:-2000}
n2=${4:-12000}
port=${CG_PORT:-18443}
origin_port=${CG_PORT:+$((CG_PORT + 1))}
origin_port=${origin_port:-19000}
admin_port=${CG_PORT:+$((CG_PORT + 2))}
admin_port=${admin_port:-19901}
load=target/release/ringgate-load
[ -x "$load" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
case "${CG_BACKEND:-origin}" in
  origin) target/release/ringgate origin --listen 127.0.0.1:$origin_port 2>"$work/origin.log" & ;;
  nginx)
    # compare.sh's nginx backend (static files, nginx's usual 8 response header fields)
    command -v nginx >/dev/null || { echo "CG_BACKEND=nginx needs nginx" >&2; exit 2; }
    mkdir -p "$work/www/bytes"
    head -c 12 /dev/zero | tr '\0' x >"$work/www/bytes/12"
    sed -e "s|@WORK@|$work|g" -e "s|@NOFILE@|4096|g" -e "s|@MAXCONN@|1024|g" \
      -e "s|@BACKEND_PORT@|$origin_port|g" loadtest/backend-nginx.conf.tmpl >"$work/backend-nginx.conf"
    nginx -c "$work/backend-nginx.conf" -e "$work/backend-nginx-error.log" 2>"$work/origin.log" &
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$origin_port/bytes/12 >/dev/null && break; sleep 0.1; done
    ;;
  *) echo "CG_BACKEND: origin or nginx" >&2; exit 2 ;;
esac
cat >"$work/rg.toml" <<TOML
[server]
workers = 1
pin_workers = false
[[listener]]
addr = "127.0.0.1:$port"
[listener.tls]
certificates = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]
[[route]]
path_prefix = "/"
upstream = "origin"
[upstream.origin]
servers = ["127.0.0.1:$origin_port"]
TOML
# compare.sh's templates, alike for ringgate and nginx (see the header).
render() { # template output
  local pol=(-e '/# @POLICIES@$/d')
  [ "${CG_POLICIES:-}" = on ] && pol=(-e 's/ *# @POLICIES@$//')
  sed "${pol[@]}" -e '/# @DEFAULTS@$/d' -e 's/ *# @PINNED@$//' -e "s|@WORK@|$work|g" \
    -e "s|@CERT@|$work/cert.pem|g" -e "s|@KEY@|$work/key.pem|g" -e "s|@ORIGIN_PORT@|$origin_port|g" \
    -e 's|@WORKERS@|1|g' -e 's|@PIN_WORKERS@|false|g' -e "s|@PORT@|$port|g" -e 's|@KTLS@|off|g' -e 's|@RECORD_LAYER@|ringgate|g' \
    -e 's|@NOFILE@|4096|g' -e 's|@MAXCONN@|1024|g' -e 's|@SUITE@|TLS_AES_256_GCM_SHA384|g' \
    -e 's|@RUSTLS_SUITE@|TLS13_AES_256_GCM_SHA384|g' "$1" >"$2"
}
if [ "$proxy" = nginx ]; then
  [ -z "${CG_MTLS:-}${CG_HEADERS:-}" ] || { echo "nginx: CG_MTLS and CG_HEADERS are ringgate's" >&2; exit 2; }
  render loadtest/nginx.conf.tmpl "$work/nginx.conf"
  sed -i -e 's/^master_process on;/master_process off;/' "$work/nginx.conf"
elif [ "${CG_TEMPLATE:-}" = on ]; then
  [ -z "${CG_MTLS:-}${CG_HEADERS:-}" ] || { echo "CG_TEMPLATE: CG_MTLS and CG_HEADERS need the default config" >&2; exit 2; }
  render loadtest/ringgate.toml.tmpl "$work/rg.toml"
fi
if [ "${CG_H2:-}" = on ] && [ "$proxy" = ringgate ] && [ "${CG_TEMPLATE:-}" != on ]; then
  printf '[http2]\nmax_requests_per_connection = 100000000\n' >>"$work/rg.toml"
fi
if [ -n "${CG_RECORD_LAYER:-}" ] && [ "$proxy" = ringgate ]; then
  if grep -q '^record_layer = ' "$work/rg.toml"; then
    sed -i "s/^record_layer = .*/record_layer = \"$CG_RECORD_LAYER\"/" "$work/rg.toml"
  else
    sed -i "/^\[listener.tls\]\$/a record_layer = \"$CG_RECORD_LAYER\"" "$work/rg.toml"
  fi
fi
if [ "$admin" = admin ]; then
  printf '[admin]\naddr = "127.0.0.1:%s"\n' "$admin_port" >>"$work/rg.toml"
fi
client_args=()
case "${CG_MTLS:-}" in
  "") ;;
  on|quiet)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/O=Example, Inc./CN=load clients CA" \
      -keyout "$work/clients-ca.key" -out "$work/clients-ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/C=DE/O=Example/CN=load client" \
      -keyout "$work/client.key" -out "$work/client.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/load/sa/client,DNS:client.example\n' \
      >"$work/client.ext"
    openssl x509 -req -in "$work/client.csr" -CA "$work/clients-ca.pem" \
      -CAkey "$work/clients-ca.key" -CAcreateserial -days 2 -extfile "$work/client.ext" \
      -out "$work/client.pem" 2>/dev/null
    printf '[listener.tls.client_auth]\nca = "%s"\nverify = "required"\n' "$work/clients-ca.pem" \
      >"$work/mtls.toml"
    if [ "$CG_MTLS" = quiet ]; then
      printf '[listener.tls.client_identity_headers]\nenabled = false\n' >>"$work/mtls.toml"
    fi
    # Insert before [[route]] so the tables belong to the listener.
    awk -v f="$work/mtls.toml" '/^\[\[route\]\]/ { while ((getline l < f) > 0) print l } { print }' \
      "$work/rg.toml" >"$work/rg2.toml" && mv "$work/rg2.toml" "$work/rg.toml"
    client_args=(--cert "$work/client.pem" --key "$work/client.key")
    ;;
  *) echo "CG_MTLS: on or quiet" >&2; exit 2 ;;
esac
case "${CG_HEADERS:-}" in
  "") ;;
  on|cors)
    if [ "$CG_HEADERS" = on ]; then
      cat >"$work/listener-headers.toml" <<'TOML'
[listener.security_headers]
hsts = "max-age=31536000; includeSubDomains"
content_type_options = "nosniff"
frame_options = "DENY"
content_security_policy = "default-src 'self'"
referrer_policy = "strict-origin-when-cross-origin"
TOML
      # Before [[route]], so the table belongs to the listener.
      awk -v f="$work/listener-headers.toml" '/^\[\[route\]\]/ { while ((getline l < f) > 0) print l } { print }' \
        "$work/rg.toml" >"$work/rg2.toml" && mv "$work/rg2.toml" "$work/rg.toml"
      cat >"$work/route-headers.toml" <<'TOML'
[[route.request_headers]]
action = "set"
name = "X-Api-Version"
value = "2"
[[route.response_headers]]
action = "remove"
name = "X-Powered-By"
TOML
    else
      : >"$work/route-headers.toml"
    fi
    cat >>"$work/route-headers.toml" <<'TOML'
[route.cors]
allow_origins = ["https://app.example.com", "https://*.example.net"]
allow_credentials = true
TOML
    # Before [upstream.origin], so the tables belong to the route.
    awk -v f="$work/route-headers.toml" '/^\[upstream\.origin\]/ { while ((getline l < f) > 0) print l } { print }' \
      "$work/rg.toml" >"$work/rg2.toml" && mv "$work/rg2.toml" "$work/rg.toml"
    ;;
  *) echo "CG_HEADERS: on or cors" >&2; exit 2 ;;
esac
case "$proxy/${CG_TEMPLATE:-}/${CG_POLICIES:-}" in
  */*/) ;;
  nginx/*/on | ringgate/on/on) ;; # in the template
  ringgate//on)
    # Listener keys right after its addr, route keys right after its upstream (before any
    # sub-table CG_HEADERS added), the rate-limit table at the end.
    awk '{ print }
      /^addr = / { print "max_connections_per_ip = 60000"; print "allow = [\"127.0.0.0/8\"]"; print "deny = [\"0.0.0.0/0\", \"::/0\"]" }
      /^upstream = "origin"/ { print "rate_limit = [\"per_client\"]"; print "allow = [\"127.0.0.0/8\"]"; print "deny = [\"0.0.0.0/0\", \"::/0\"]" }' \
      "$work/rg.toml" >"$work/rg2.toml" && mv "$work/rg2.toml" "$work/rg.toml"
    printf '[rate_limit.per_client]\nkey = "client_ip"\nrate = "1000000r/s"\nburst = 65535\nnodelay = true\n' >>"$work/rg.toml"
    ;;
  *) echo "CG_POLICIES: on" >&2; exit 2 ;;
esac
if [ "$proxy" = nginx ]; then
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" -c "$work/nginx.conf" \
    -e "$work/nginx-error.log" >"$work/rg.log" 2>&1 &
  vpid=$!
  for _ in $(seq 600); do curl -sk -o /dev/null https://127.0.0.1:$port/bytes/12 && break; sleep 0.1; done
else
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" run -c "$work/rg.toml" \
    >"$work/rg.log" 2>&1 &
  vpid=$!
  for _ in $(seq 600); do grep -q "listening on" "$work/rg.log" && break; sleep 0.1; done
fi
if [ "${CG_HANDSHAKE:-}" = on ]; then client_args+=(--handshake --no-resume); fi
size=${CG_BYTES:-12}
[[ $size =~ ^[0-9]+$ ]] || { echo "CG_BYTES: a response size in bytes" >&2; exit 2; }
[ "$size" = 12 ] || [ "${CG_BACKEND:-origin}" = origin ] || { echo "CG_BYTES: with the origin backend only" >&2; exit 2; }
get() { "$load" --url https://127.0.0.1:$port/bytes/$size --insecure -c 1 --requests "$1" \
  --duration-secs 600 -q --label callgrind "${client_args[@]}" >/dev/null; }
if [ "${CG_H2:-}" = on ]; then
  command -v h2load >/dev/null || { echo "CG_H2=on needs h2load (apt-get install nghttp2-client)" >&2; exit 2; }
  [ -z "${CG_MTLS:-}${CG_HANDSHAKE:-}" ] || { echo "CG_H2: not with CG_MTLS or CG_HANDSHAKE" >&2; exit 2; }
  browser=()
  if [ "${CG_BROWSER:-}" = on ]; then
    browser=(-H 'accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
      -H 'accept-language: en-GB,en;q=0.9' -H 'accept-encoding: gzip, deflate, br, zstd'
      -H 'user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
      -H 'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"' -H 'sec-ch-ua-mobile: ?0'
      -H 'sec-ch-ua-platform: "Linux"' -H 'sec-fetch-dest: document' -H 'sec-fetch-mode: navigate'
      -H 'sec-fetch-site: none' -H 'upgrade-insecure-requests: 1'
      -H 'cookie: session=4f1c2a9e7b3d; theme=dark')
  fi
  get() {
    local out
    out=$(h2load -n "$1" -c 1 -m 10 "${browser[@]}" https://127.0.0.1:$port/bytes/$size 2>&1)
    grep -q "requests: $1 total, $1 started, $1 done, $1 succeeded" <<<"$out" ||
      { echo "h2load did not complete $1 requests:" >&2; echo "$out" >&2; exit 1; }
    grep -q "Application protocol: h2" <<<"$out" || { echo "h2load did not speak h2" >&2; exit 1; }
  }
fi
get 500 # warm: pools, allocator, session cache
for n in "$n1" "$n2"; do
  callgrind_control -z "$vpid" >/dev/null 2>&1
  get "$n"
  if [ "$admin" = admin ]; then curl -sf http://127.0.0.1:$admin_port/metrics >/dev/null; fi
  callgrind_control -d "$vpid" >/dev/null 2>&1
done
kill -9 "$vpid"
wait "$vpid" 2>/dev/null || true
# CG_KEEP=DIR keeps the two dumps (cg.1, cg.2) for callgrind_annotate.
if [ -n "${CG_KEEP:-}" ]; then mkdir -p "$CG_KEEP" && cp "$work"/cg.1 "$work"/cg.2 "$CG_KEEP"/; fi
ir() { grep -E '^(summary|totals):' "$work/cg.$1" | head -1 | awk '{print $2}'; }
a=$(ir 1)
b=$(ir 2)
echo "$(basename "$bin")${CG_TEMPLATE:+ template=$CG_TEMPLATE} ${admin:-no-admin}${CG_MTLS:+ mtls=$CG_MTLS}${CG_HANDSHAKE:+ handshake=$CG_HANDSHAKE}${CG_HEADERS:+ headers=$CG_HEADERS}${CG_POLICIES:+ policies=$CG_POLICIES}${CG_H2:+ h2=$CG_H2}${CG_BROWSER:+ browser=$CG_BROWSER}${CG_BYTES:+ bytes=$CG_BYTES}: Ir($n1)=$a Ir($n2)=$b per request=$(((b - a) / (n2 - n1)))"
