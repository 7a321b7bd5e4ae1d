# Guest script (busybox ash): TLS 1.3 KeyUpdate on kernel TLS, on a kernel that can
# re-key (>= 6.14: a second TLS_RX/TLS_TX installs the next key). Driven by
# tests/ktls_vm.rs (ringgate_rekeys_in_vm), which boots Debian's trixie-backports kernel
# and ships the release ringgate and ringgate-load, openssl, a test certificate and
# /etc/rg/auto.toml (ktls = "auto" on :8443). One result per line: "... OK" / "... FAIL".

ORIGIN=http://127.0.0.1:9000
stat_of() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat 2>/dev/null || echo 0; }
json_of() { sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$1" | head -n 1; }

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

echo "KERNEL $(uname -r)"
if insmod "$MODDIR/kernel/net/tls/tls.ko"; then echo "INSMOD OK"; else echo "INSMOD FAIL"; fi
ringgate origin --listen 127.0.0.1:9000 >/tmp/origin.log 2>&1 &
ringgate run -c /etc/rg/auto.toml >/tmp/auto.log 2>&1 &
P=$!
wait_listening /tmp/auto.log

total=0
keyupdates=0
# Per cipher: 2 connections × 100 requests, a KeyUpdate(update_requested) before every
# 10th; 20000-byte bodies (several records), then 1 MiB bodies (spliced into the kTLS
# socket, above splice_threshold_bytes) with a KeyUpdate before every 2nd request.
for cipher in TLS13_AES_128_GCM_SHA256 TLS13_AES_256_GCM_SHA384 TLS13_CHACHA20_POLY1305_SHA256; do
	for spec in "20000 10 200" "1048576 2 20"; do
		set -- $spec
		rx0=$(stat_of TlsRxRekeyOk)
		tx0=$(stat_of TlsTxRekeyOk)
		ringgate-load -q --url https://127.0.0.1:8443/bytes/$1 -c 2 --requests $3 \
			--key-update-every $2 --tls-version 1.3 --cipher $cipher --insecure \
			--duration-secs 120 --json /tmp/k.json >/tmp/k.out 2>&1
		req=$(json_of /tmp/k.json requests)
		err=$(json_of /tmp/k.json errors)
		ku=$(json_of /tmp/k.json key_updates)
		rx=$(($(stat_of TlsRxRekeyOk) - rx0))
		tx=$(($(stat_of TlsTxRekeyOk) - tx0))
		total=$((total + 2))
		keyupdates=$((keyupdates + ${ku:-0}))
		if [ "${err:-1}" = 0 ] && [ "${req:-0}" -ge "$3" ] && [ "${ku:-0}" -gt 0 ] &&
			[ "$rx" = "$ku" ] && [ "$tx" = "$ku" ]; then
			echo "REKEY $cipher $1 OK requests=$req key_updates=$ku rx_rekey=$rx tx_rekey=$tx"
		else
			echo "REKEY $cipher $1 FAIL requests=$req errors=$err key_updates=$ku rx_rekey=$rx tx_rekey=$tx"
			cat /tmp/k.out
		fi
	done
done

# A real OpenSSL client on one connection: request, KeyUpdate without asking for ours
# (k), request, KeyUpdate asking for ours (K), request. All three answered.
(
	printf 'GET /bytes/10 HTTP/1.1\r\nHost: ktls.test\r\n\r\n'
	sleep 2
	echo k
	sleep 1
	printf 'GET /bytes/11 HTTP/1.1\r\nHost: ktls.test\r\n\r\n'
	sleep 2
	echo K
	sleep 1
	printf 'GET /bytes/12 HTTP/1.1\r\nHost: ktls.test\r\n\r\n'
	sleep 2
) | timeout 30 openssl s_client -connect 127.0.0.1:8443 -servername ktls.test \
	-CAfile /etc/rg/root.pem -tls1_3 >/tmp/ku.out 2>&1
total=$((total + 1))
keyupdates=$((keyupdates + 2))
n=$(grep -c 'HTTP/1.1 200' /tmp/ku.out)
if [ "$n" = 3 ]; then echo "OPENSSL_KEYUPDATES OK"; else echo "OPENSSL_KEYUPDATES FAIL answered=$n"; cat /tmp/ku.out; fi

errors=$(($(stat_of TlsDecryptError) + $(stat_of TlsRxRekeyError) + $(stat_of TlsTxRekeyError)))
if [ "$errors" = 0 ]; then echo "KERNEL_ERRORS OK"; else echo "KERNEL_ERRORS FAIL $errors"; fi

kill -TERM $P
wait $P
echo "STOP exit=$?"
echo "TOTAL_CONNECTIONS $total"
echo "TOTAL_KEYUPDATES $keyupdates"
grep -o 'ktls_offloaded=[0-9]*' /tmp/auto.log | tail -1
grep -o 'ktls_rekeys=[0-9]*' /tmp/auto.log | tail -1
grep -o 'ktls_keyupdate_closes=[0-9]*' /tmp/auto.log | tail -1
if grep -q 'panicked' /tmp/auto.log; then echo "PANIC FAIL"; cat /tmp/auto.log; else echo "NO_PANIC OK"; fi
echo "--- /proc/net/tls_stat"
cat /proc/net/tls_stat
exit 0
