//! Proves the VM test bed can do kernel TLS: boots a Debian kernel under qemu
//! (TCG), loads tls.ko and runs tests/vm/probe/ktls_probe.c, which attaches the
//! "tls" ULP to loopback TCP sockets and pushes data through the kernel's
//! TLS 1.2/1.3 record layer (AES-GCM-128/256, ChaCha20-Poly1305).
//!
//! Skips (prints `ktls VM test skipped: <why>`) when the host cannot run the
//! VM, unless RINGGATE_REQUIRE_VM=1. See tests/vm/README.md.

#[path = "vm/harness.rs"]
mod harness;

/// The guest script; also usable by hand (see tests/vm/README.md).
const PROBE_SCRIPT: &str = include_str!("vm/guests/ktls_probe.sh");

#[test]
fn ktls_works_in_vm() {
    let report = match harness::run_vm(&[], PROBE_SCRIPT) {
        Ok(r) => r,
        Err(skip) => return skip.report(),
    };
    eprintln!(
        "VM build {:.1?}, boot+run {:.1?}\n{}",
        report.build_time,
        report.boot_time,
        report.describe()
    );
    let ctx = report.describe();

    assert!(
        report.value_after("KERNEL ").is_some(),
        "no kernel version\n{ctx}"
    );
    assert!(
        report.has_line("INSMOD tls OK"),
        "insmod tls.ko failed\n{ctx}"
    );
    assert!(
        report.has_line("MODULE tls LOADED"),
        "tls not in /proc/modules\n{ctx}"
    );
    assert!(
        report.has_line("TLS_STAT PRESENT"),
        "/proc/net/tls_stat missing\n{ctx}"
    );
    assert!(
        report.has_line("TCP_ULP OK"),
        "setsockopt(TCP_ULP, \"tls\") failed\n{ctx}"
    );
    assert!(
        report.has_line("TLS_TX OK"),
        "setsockopt(SOL_TLS, TLS_TX) failed\n{ctx}"
    );
    for case in [
        "tls12-aes-gcm-128",
        "tls12-aes-gcm-256",
        "tls12-chacha20-poly1305",
        "tls13-aes-gcm-128",
        "tls13-aes-gcm-256",
        "tls13-chacha20-poly1305",
    ] {
        let line =
            format!("CASE {case} TCP_ULP=OK TLS_TX=OK WIRE=OK TLS_RX=OK ROUNDTRIP=OK SENDFILE=OK");
        assert!(report.has_line(&line), "kTLS case {case} failed\n{ctx}");
    }
    // the kernel, not the probe, did the record layer work
    let tx_sw: u64 = report
        .value_after("TlsTxSw")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(tx_sw > 0, "TlsTxSw counter did not move\n{ctx}");
    report.assert_exit_ok();
}
