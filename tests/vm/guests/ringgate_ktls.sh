# Guest script (busybox ash): ringgate with kernel TLS, end to end, inside the VM.
# Driven by tests/ktls_vm.rs (ringgate_offloads_in_vm), which ships the release binary,
# curl, a test certificate (/etc/rg/cert.pem, key.pem, root.pem) and two configs
# (/etc/rg/auto.toml: ktls = "auto" on :8443, /etc/rg/on.toml: ktls = "on" on :8444).
# Every result is one line: "<WHAT> ... OK" or "... FAIL ..."; the host test asserts on them.

ORIGIN=http://127.0.0.1:9000
CURL_BASE="curl -sS --max-time 60 --cacert /etc/rg/root.pem --resolve ktls.test:8443:127.0.0.1"
# HTTP/1.1 for the cases below (splice and close_notify are HTTP/1.1's matters: TLS
# listeners offer h2 first); HTTP/2 over kernel TLS has its own case.
CURL="$CURL_BASE --http1.1"
CURL2="$CURL_BASE --http2"

stat_of() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat 2>/dev/null || echo 0; }
sum_of() { sha256sum | cut -d' ' -f1; }

# Waits for "listening on" in a log (readiness, bounded).
wait_listening() {
	i=0
	while [ $i -lt 200 ]; do
		grep -q "listening on" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "LISTEN_TIMEOUT $1"
	cat "$1"
	return 1
}

stop() {
	kill -TERM "$1"
	wait "$1"
	echo "STOP $2 exit=$?"
}

ringgate origin --listen 127.0.0.1:9000 >/tmp/origin.log 2>&1 &
i=0
until curl -s -o /dev/null $ORIGIN/ || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done

echo "== phase 1: tls module not loaded"
# The kernel would autoload tls.ko on the first TCP_ULP "tls" (request_module →
# /sbin/modprobe); keep it unloaded for this phase.
old_modprobe=$(cat /proc/sys/kernel/modprobe)
echo /bin/false >/proc/sys/kernel/modprobe
if grep -q '^tls ' /proc/modules; then echo "NOMODULE PRECONDITION FAIL"; fi
timeout 20 ringgate run -c /etc/rg/on.toml >/tmp/on.log 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q 'kernel TLS is unavailable' /tmp/on.log; then
	echo "NOMODULE KTLS_ON_REFUSES OK"
else
	echo "NOMODULE KTLS_ON_REFUSES FAIL rc=$rc"
	cat /tmp/on.log
fi
ringgate run -c /etc/rg/auto.toml >/tmp/auto0.log 2>&1 &
P=$!
wait_listening /tmp/auto0.log
got=$($CURL https://ktls.test:8443/bytes/300000 | sum_of)
want=$(curl -s $ORIGIN/bytes/300000 | sum_of)
if [ "$got" = "$want" ]; then echo "NOMODULE AUTO_FALLBACK_SERVES OK"; else echo "NOMODULE AUTO_FALLBACK_SERVES FAIL"; fi
stop $P nomodule
if grep -q 'kernel_tls_unavailable' /tmp/auto0.log; then echo "NOMODULE FALLBACK_LOGGED OK"; else echo "NOMODULE FALLBACK_LOGGED FAIL"; cat /tmp/auto0.log; fi

echo "$old_modprobe" >/proc/sys/kernel/modprobe
echo "== phase 2: tls module loaded"
if insmod "$MODDIR/kernel/net/tls/tls.ko"; then echo "INSMOD OK"; else echo "INSMOD FAIL"; fi
ringgate run -c /etc/rg/auto.toml >/tmp/auto.log 2>&1 &
P=$!
wait_listening /tmp/auto.log

total=0
for spec in \
	"tls12-aes128 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256" \
	"tls12-aes256 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES256-GCM-SHA384" \
	"tls12-chacha20 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-CHACHA20-POLY1305" \
	"tls13-aes128 --tlsv1.3 --tls-max 1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256" \
	"tls13-aes256 --tlsv1.3 --tls-max 1.3 --tls13-ciphers TLS_AES_256_GCM_SHA384" \
	"tls13-chacha20 --tlsv1.3 --tls-max 1.3 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256"; do
	set -- $spec
	name=$1
	shift
	opts="$*"
	tx0=$(stat_of TlsTxSw)
	rx0=$(stat_of TlsRxSw)
	conns=0
	# 1 MiB and 3 MB are above splice_threshold_bytes (256 KiB): spliced into the kTLS socket.
	for size in 0 1 16384 100000 1048576 3000000; do
		got=$($CURL $opts https://ktls.test:8443/bytes/$size | sum_of)
		want=$(curl -s $ORIGIN/bytes/$size | sum_of)
		conns=$((conns + 1))
		if [ "$got" = "$want" ]; then echo "CASE $name GET $size OK"; else echo "CASE $name GET $size FAIL"; fi
		head -c $size /dev/urandom >/tmp/up
		want=$(sum_of </tmp/up)
		got=$($CURL $opts -H 'Content-Type: application/octet-stream' --data-binary @/tmp/up https://ktls.test:8443/echo | sum_of)
		conns=$((conns + 1))
		if [ "$got" = "$want" ]; then echo "CASE $name POST $size OK"; else echo "CASE $name POST $size FAIL"; fi
	done
	# Chunked upload, re-framed by the proxy.
	head -c 200000 /dev/urandom >/tmp/up
	want=$(sum_of </tmp/up)
	got=$($CURL $opts -H 'Transfer-Encoding: chunked' --data-binary @/tmp/up https://ktls.test:8443/echo | sum_of)
	conns=$((conns + 1))
	if [ "$got" = "$want" ]; then echo "CASE $name CHUNKED OK"; else echo "CASE $name CHUNKED FAIL"; fi
	tx=$(($(stat_of TlsTxSw) - tx0))
	rx=$(($(stat_of TlsRxSw) - rx0))
	if [ "$tx" = "$conns" ] && [ "$rx" = "$conns" ]; then
		echo "CASE $name TLS_STAT OK tx=$tx rx=$rx conns=$conns"
	else
		echo "CASE $name TLS_STAT FAIL tx=$tx rx=$rx conns=$conns"
	fi
	total=$((total + conns))
done

# HTTP/2 over kernel TLS: three streams on one connection, one of them 1 MiB (never
# spliced: frames add bytes around the body).
got=$($CURL2 https://ktls.test:8443/bytes/1048576 https://ktls.test:8443/bytes/2000 https://ktls.test:8443/bytes/3000 | wc -c)
total=$((total + 1))
if [ "$got" = "1053576" ]; then echo "H2_OVER_KTLS OK"; else echo "H2_OVER_KTLS FAIL got=$got"; fi

# Several requests on one kept-alive kTLS connection.
got=$($CURL https://ktls.test:8443/bytes/1000 https://ktls.test:8443/bytes/2000 https://ktls.test:8443/bytes/3000 | wc -c)
total=$((total + 1))
if [ "$got" = "6000" ]; then echo "KEEPALIVE OK"; else echo "KEEPALIVE FAIL got=$got"; fi

# Early client close in the middle of a large spliced body: the proxy must shrug it off.
$CURL https://ktls.test:8443/bytes/50000000 2>/dev/null | head -c 1000 >/dev/null
total=$((total + 1))
got=$($CURL https://ktls.test:8443/bytes/5000 | wc -c)
total=$((total + 1))
if [ "$got" = "5000" ] && kill -0 $P; then echo "EARLY_CLOSE OK"; else echo "EARLY_CLOSE FAIL got=$got"; fi

# A TLS 1.3 KeyUpdate from the client: this kernel (< 6.14) cannot re-key, so the proxy
# answers the request before it, then closes cleanly and counts it.
(
	printf 'GET /bytes/10 HTTP/1.1\r\nHost: ktls.test\r\n\r\n'
	sleep 2
	echo k
	sleep 3
) | timeout 20 openssl s_client -connect 127.0.0.1:8443 -servername ktls.test \
	-CAfile /etc/rg/root.pem -tls1_3 >/tmp/ku.out 2>&1
total=$((total + 1))
if grep -q 'HTTP/1.1 200' /tmp/ku.out && grep -q 'KEYUPDATE' /tmp/ku.out; then
	echo "KEYUPDATE_SENT OK"
else
	echo "KEYUPDATE_SENT FAIL"
	cat /tmp/ku.out
fi
got=$($CURL https://ktls.test:8443/bytes/5000 | wc -c)
total=$((total + 1))
if [ "$got" = "5000" ] && kill -0 $P; then echo "AFTER_KEYUPDATE_SERVING OK"; else echo "AFTER_KEYUPDATE_SERVING FAIL"; fi

errors=$(stat_of TlsDecryptError)
if [ "${errors:-0}" = "0" ]; then echo "DECRYPT_ERRORS OK"; else echo "DECRYPT_ERRORS FAIL $errors"; fi

stop $P ktls
echo "TOTAL_CONNECTIONS $total"
grep -o 'ktls_offloaded=[0-9]*' /tmp/auto.log | tail -1
grep -o 'ktls_close_notify_received=[0-9]*' /tmp/auto.log | tail -1
grep -o 'ktls_keyupdate_closes=[0-9]*' /tmp/auto.log | tail -1
grep -o 'spliced_bodies=[0-9]*' /tmp/auto.log
if grep -q 'panicked' /tmp/auto.log; then echo "PANIC FAIL"; cat /tmp/auto.log; else echo "NO_PANIC OK"; fi
echo "--- /proc/net/tls_stat"
cat /proc/net/tls_stat
exit 0
