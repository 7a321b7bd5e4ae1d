# Guest script (busybox ash, run as /guest.sh by /init): proves kTLS works.
# Used by tests/ktls_vm.rs (include_str!) and for manual runs:
#   tests/vm/build.sh -g tests/vm/guests/ktls_probe.sh && tests/vm/run.sh
echo "KERNEL $(uname -r)"
echo "CPUS $(nproc)"
echo "CPU_FLAGS $(grep -o -w -E 'aes|pclmulqdq|avx2|rdrand' /proc/cpuinfo | sort -u | tr '\n' ' ')"
if insmod "$MODDIR/kernel/net/tls/tls.ko"; then echo "INSMOD tls OK"; else echo "INSMOD tls FAILED"; fi
grep -q '^tls ' /proc/modules && echo "MODULE tls LOADED"
if [ -r /proc/net/tls_stat ]; then echo "TLS_STAT PRESENT"; else echo "TLS_STAT MISSING"; fi
ktls_probe
rc=$?
echo "--- /proc/net/tls_stat after the probe"
cat /proc/net/tls_stat
echo "--- modules after the probe (crypto ones autoloaded by the kernel via /sbin/modprobe)"
cut -d' ' -f1 /proc/modules | sort | tr '\n' ' '
echo
exit $rc
