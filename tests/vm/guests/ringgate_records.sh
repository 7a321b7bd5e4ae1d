# Guest script (busybox ash): TLS record faults against ringgate with kernel TLS. Driven
# by tests/ktls_vm.rs (ringgate_record_faults_in_vm), which ships the release ringgate,
# its own test binary as /usr/local/bin/ringgate-records (run here in guest mode: it is
# the raw-TLS client, with the record sequences of tests/common/records.rs), a test
# certificate and /etc/rg/on.toml (ktls = "on" on :8444). One result per line.

stat_of() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat 2>/dev/null || echo 0; }

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
RINGGATE_LOG=info,ringgate=debug ringgate run -c /etc/rg/on.toml >/tmp/on.log 2>&1 &
P=$!
wait_listening /tmp/on.log

decrypt0=$(stat_of TlsDecryptError)
RINGGATE_RECORDS_TARGET=127.0.0.1:8444 ringgate-records --exact ringgate_record_faults_in_vm \
	--nocapture --test-threads 1 >/tmp/records.out 2>&1
rc=$?
echo "RECORDS exit=$rc"
cat /tmp/records.out
# What ringgate said about the connections (debug level), when a check failed.
if [ $rc -ne 0 ]; then grep -E 'refused|failed|error' /tmp/on.log | tail -40; fi
echo "DECRYPT_ERRORS $(($(stat_of TlsDecryptError) - decrypt0))"

kill -TERM $P
wait $P
echo "STOP exit=$?"
grep -o 'ktls_offloaded=[0-9]*' /tmp/on.log | tail -1
grep -o 'ktls_rekeys=[0-9]*' /tmp/on.log | tail -1
grep -o 'ktls_keyupdate_closes=[0-9]*' /tmp/on.log | tail -1
if grep -q 'panicked' /tmp/on.log; then echo "PANIC FAIL"; cat /tmp/on.log; else echo "NO_PANIC OK"; fi
if grep -q ' WARN ' /tmp/on.log; then echo "WARNINGS:"; grep ' WARN ' /tmp/on.log | head -20; fi
echo "--- /proc/net/tls_stat"
cat /proc/net/tls_stat
exit 0
