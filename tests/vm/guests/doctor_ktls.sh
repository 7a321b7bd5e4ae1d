# Guest script (busybox ash): `ringgate doctor` and the kTLS fallback reason on a bed with
# tls.ko but none of the AEAD crypto modules (build.sh -C none). Driven by
# tests/ktls_vm.rs (doctor_tells_no_tls_module_from_missing_ciphers_in_vm), which ships
# the release ringgate, curl, a test certificate and /etc/rg/auto.toml (ktls = "auto").

echo "KERNEL $(uname -r)"
# Keep tls.ko unloaded for the first doctor run (the kernel would autoload it).
old_modprobe=$(cat /proc/sys/kernel/modprobe)
echo /bin/false >/proc/sys/kernel/modprobe
ringgate doctor >/tmp/d0.txt 2>&1
echo "--- doctor, tls.ko not loaded"
cat /tmp/d0.txt
echo "DOCTOR0 $(grep -E '^(pass|WARN|FAIL)  ktls' /tmp/d0.txt)"
echo "$old_modprobe" >/proc/sys/kernel/modprobe

if insmod "$MODDIR/kernel/net/tls/tls.ko"; then echo "INSMOD OK"; else echo "INSMOD FAIL"; fi
ringgate doctor >/tmp/d1.txt 2>&1
echo "--- doctor, tls.ko loaded, no AEAD modules"
cat /tmp/d1.txt
echo "DOCTOR1 $(grep -E '^(pass|WARN|FAIL)  ktls' /tmp/d1.txt)"

ringgate origin --listen 127.0.0.1:9000 >/tmp/origin.log 2>&1 &
ringgate run -c /etc/rg/auto.toml >/tmp/auto.log 2>&1 &
P=$!
i=0
until grep -q "listening on" /tmp/auto.log 2>/dev/null || [ $i -ge 200 ]; do sleep 0.1; i=$((i + 1)); done
n=$(curl -sS --max-time 60 --cacert /etc/rg/root.pem --resolve ktls.test:8443:127.0.0.1 \
	https://ktls.test:8443/bytes/5000 | wc -c)
if [ "$n" = 5000 ]; then echo "SERVED OK"; else echo "SERVED FAIL got=$n"; fi
kill -TERM $P
wait $P
echo "STOP exit=$?"
echo "--- ringgate log"
cat /tmp/auto.log
if grep -q 'reason="kernel_tls_no_ciphers"' /tmp/auto.log; then echo "FALLBACK_REASON OK"; else echo "FALLBACK_REASON FAIL"; fi
exit 0
