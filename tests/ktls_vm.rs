//! Proves the VM test bed can do kernel TLS: boots a Debian kernel under qemu
//! (TCG), loads tls.ko and runs tests/vm/probe/ktls_probe.c, which attaches the
//! "tls" ULP to loopback TCP sockets and pushes data through the kernel's
//! TLS 1.2/1.3 record layer (AES-GCM-128/256, ChaCha20-Poly1305).
//!
//! A host that cannot run the VM (no qemu, busybox, cpio, gcc, Debian archive, ...) fails
//! each VM test with the package to install (`./test.sh` installs them all). The one way to
//! skip them is the explicit opt-out `RINGGATE_SKIP_VM=1` (ignored by `RINGGATE_REQUIRE_VM=1`):
//! then each VM test is reported as *ignored*, with the reason, never as passed. That is why
//! this test binary has its own harness (libtest-mimic: libtest's command line and output,
//! plus ignoring at run time). See tests/vm/README.md.

#[path = "vm/harness.rs"]
mod harness;

mod common;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The VM tests, by name (the names `cargo test --test ktls_vm NAME` filters on).
const VM_TESTS: &[(&str, fn())] = &[
    ("ktls_works_in_vm", ktls_works_in_vm),
    (
        "ktls_works_in_vm_on_the_newest_kernel",
        ktls_works_in_vm_on_the_newest_kernel,
    ),
    (
        "bed_ships_each_ciphers_modules_with_their_dependencies",
        bed_ships_each_ciphers_modules_with_their_dependencies,
    ),
    (
        "doctor_tells_no_tls_module_from_missing_ciphers_in_vm",
        doctor_tells_no_tls_module_from_missing_ciphers_in_vm,
    ),
    ("ringgate_offloads_in_vm", ringgate_offloads_in_vm),
    ("ringgate_rekeys_in_vm", ringgate_rekeys_in_vm),
    ("ringgate_record_faults_in_vm", ringgate_record_faults_in_vm),
];

/// Tests of this harness itself (no VM; never skipped).
const HARNESS_TESTS: &[(&str, fn())] = &[
    (
        "a_host_that_cannot_run_the_vm_fails_the_test",
        a_host_that_cannot_run_the_vm_fails_the_test,
    ),
    (
        "the_opt_out_reports_vm_tests_as_ignored",
        the_opt_out_reports_vm_tests_as_ignored,
    ),
];

fn main() {
    let args = Arguments::from_args();
    let opt_out = harness::vm_opted_out();
    libtest_mimic::run(&args, trials(opt_out)).exit();
}

/// Every test of this binary; with `opt_out` the VM tests end as ignored without running.
fn trials(opt_out: Option<String>) -> Vec<Trial> {
    let vm = VM_TESTS.iter().map(|&(name, test)| {
        let opt_out = opt_out.clone();
        Trial::ignorable_test(name, move || run_vm_test(opt_out, test))
    });
    let own = HARNESS_TESTS
        .iter()
        .map(|&(name, test)| Trial::test(name, move || run(test)));
    vm.chain(own).collect()
}

/// A VM test's outcome: ignored (with the reason) when opted out, else it runs.
fn run_vm_test(opt_out: Option<String>, test: fn()) -> Result<Completion, Failed> {
    match opt_out {
        Some(reason) => Ok(Completion::ignored_with(reason)),
        None => run(test).map(|()| Completion::Completed),
    }
}

/// Runs a test function; a panic is its failure, with the panic's message.
fn run(test: fn()) -> Result<(), Failed> {
    std::panic::catch_unwind(test).map_err(|e| {
        e.downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| e.downcast_ref::<&str>().copied())
            .unwrap_or("the test panicked")
            .into()
    })
}

/// A missing tool fails the VM test, naming the package: it never passes by skipping.
fn a_host_that_cannot_run_the_vm_fails_the_test() {
    let missing =
        harness::Skip("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into());
    let fails = std::panic::catch_unwind(|| -> () { missing.report() });
    let message = fails.expect_err("a host without qemu must fail the VM test");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("apt-get install qemu-system-x86") && message.contains("./test.sh"),
        "the failure names the package and ./test.sh: {message}"
    );
}

/// `RINGGATE_SKIP_VM=1` ends a VM test as ignored with the reason, without running it
/// (never as passed); without it the test runs and its failure is a failure.
fn the_opt_out_reports_vm_tests_as_ignored() {
    fn must_not_run() {
        panic!("an opted-out VM test ran");
    }
    let reason = "RINGGATE_SKIP_VM=1 (explicit opt-out)".to_string();
    match run_vm_test(Some(reason.clone()), must_not_run) {
        Ok(Completion::Ignored { reason: Some(r) }) => assert_eq!(r, reason),
        Ok(Completion::Ignored { reason: None }) => panic!("ignored without a reason"),
        Ok(Completion::Completed) => panic!("an opted-out VM test counted as passed"),
        Err(e) => panic!("an opted-out VM test failed: {e:?}"),
    }
    assert!(
        run_vm_test(None, must_not_run).is_err(),
        "without the opt-out the test runs"
    );
    assert!(matches!(
        run_vm_test(None, || ()),
        Ok(Completion::Completed)
    ));
}

/// A host program the VM ships, found in /usr/bin or /bin, or the skip saying how to get it.
fn host_tool(name: &str, package: &str) -> Result<std::path::PathBuf, harness::Skip> {
    ["/usr/bin", "/bin"]
        .into_iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| harness::Skip(format!("{name} not found (apt-get install {package})")))
}

/// The ringgate config both scenarios run in the VM: `ktls` mode on `port`, the test
/// certificate under /etc/rg, the built-in origin on :9000 as the upstream.
fn ringgate_config(port: u16, ktls: &str) -> String {
    format!(
        r#"[server]
workers = 2
shutdown_timeout_ms = 5000
[http]
splice_threshold_bytes = 262144
[[listener]]
addr = "127.0.0.1:{port}"
[listener.tls]
ktls = "{ktls}"
certificates = [{{ cert = "/etc/rg/cert.pem", key = "/etc/rg/key.pem" }}]
[[route]]
upstream = "origin"
[upstream.origin]
servers = ["127.0.0.1:9000"]
"#
    )
}

/// A PKI with a `ktls.test` leaf, and the (host, guest) pairs that ship its certificate,
/// key and root as /etc/rg/{cert,key,root}.pem.
fn vm_certificate() -> (common::pki::TestPki, Vec<(std::path::PathBuf, String)>) {
    let pki = common::pki::TestPki::new();
    let cert = pki.leaf(
        &["ktls.test"],
        common::pki::KeyType::EcdsaP256,
        common::pki::KeyEncoding::Pkcs8,
    );
    let files = vec![
        (cert.cert.clone(), "/etc/rg/cert.pem".into()),
        (cert.key.clone(), "/etc/rg/key.pem".into()),
        (pki.root_pem_path().to_path_buf(), "/etc/rg/root.pem".into()),
    ];
    (pki, files)
}

/// The guest script; also usable by hand (see tests/vm/README.md).
const PROBE_SCRIPT: &str = include_str!("vm/guests/ktls_probe.sh");

/// The kTLS probe on one kernel: every TLS 1.2/1.3 × AES-GCM-128/256 ×
/// ChaCha20-Poly1305 case is set up, carried and read back by the kernel.
fn probe_every_cipher(suite: Option<&str>, name: &str) {
    let mut cfg = harness::VmConfig::new(PROBE_SCRIPT);
    cfg.name = name.into();
    cfg.kernel_suite = suite.map(str::to_string);
    let report = match harness::run_vm_with(&cfg) {
        Ok(r) => r,
        Err(cannot) => cannot.report(),
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
        report.has_line_starting("BED KERNEL_PACKAGES "),
        "the report names the kernel package it ran\n{ctx}"
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
    for (case, cipher) in [
        ("tls12-aes-gcm-128", "AES-GCM"),
        ("tls12-aes-gcm-256", "AES-GCM"),
        ("tls12-chacha20-poly1305", "CHACHA20-POLY1305"),
        ("tls13-aes-gcm-128", "AES-GCM"),
        ("tls13-aes-gcm-256", "AES-GCM"),
        ("tls13-chacha20-poly1305", "CHACHA20-POLY1305"),
    ] {
        let line =
            format!("CASE {case} TCP_ULP=OK TLS_TX=OK WIRE=OK TLS_RX=OK ROUNDTRIP=OK SENDFILE=OK");
        let bed: Vec<&str> = report
            .bed
            .lines()
            .filter(|l| l.contains(&format!(" {cipher} ")))
            .collect();
        assert!(
            report.has_line(&line),
            "kTLS case {case} failed; the bed resolved {cipher} as:\n{}\n{ctx}",
            bed.join("\n")
        );
    }
    // the kernel, not the probe, did the record layer work
    let tx_sw: u64 = report
        .value_after("TlsTxSw")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(tx_sw > 0, "TlsTxSw counter did not move\n{ctx}");
    report.assert_exit_ok();
}

fn ktls_works_in_vm() {
    probe_every_cipher(None, "probe");
}

/// The newest kernel Debian ships (trixie-backports' cloud kernel, 7.3 today): crypto
/// modules were renamed and moved into the kernel image and lib/crypto since 6.1, so this
/// is where a bed built from a list of names breaks (ChaCha20 fell back on 7.3).
fn ktls_works_in_vm_on_the_newest_kernel() {
    probe_every_cipher(Some("trixie-backports"), "probe-newest");
}

/// The bed's module set comes from each kernel's own data: every kTLS cipher has a
/// provider, the kernel and package are named, and every shipped module's `depends=`
/// (read here from the module file itself, independently of build.sh) is shipped too or
/// built into the kernel — a bed missing one loads nothing for that cipher.
fn bed_ships_each_ciphers_modules_with_their_dependencies() {
    for suite in [None, Some("trixie-backports")] {
        let bed = match harness::resolve_bed(suite) {
            Ok(b) => b,
            Err(cannot) => cannot.report(),
        };
        eprintln!("{bed}");
        let field = |key: &str| {
            bed.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {key:?} in the manifest\n{bed}"))
                .to_string()
        };
        let release = field("BED KERNEL_RELEASE ");
        assert!(!field("BED KERNEL_PACKAGES ").is_empty(), "{bed}");
        for (cipher, alg) in [
            ("AES-GCM", "gcm(aes)"),
            ("AES-CCM", "ccm(aes)"),
            ("CHACHA20-POLY1305", "rfc7539(chacha20,poly1305)"),
        ] {
            assert!(
                bed.lines()
                    .any(|l| l == format!("BED CIPHER {cipher} {alg} OK")),
                "{release}: {cipher}\n{bed}"
            );
        }
        let dir = std::path::PathBuf::from(field("BED CACHE "))
            .join("lib/modules")
            .join(&release);
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        let mut modules = Vec::new();
        collect_modules(&dir, &mut modules);
        let name_of = |p: &std::path::Path| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.trim_end_matches(".ko").replace('-', "_")
        };
        let shipped: Vec<String> = modules.iter().map(|p| name_of(p)).collect();
        assert!(
            shipped.iter().any(|m| m == "tls"),
            "{release}: tls.ko\n{bed}"
        );
        for path in &modules {
            let data = std::fs::read(path).unwrap();
            for dep in modinfo(&data, "depends")
                .split(',')
                .filter(|d| !d.is_empty())
            {
                let dep = dep.replace('-', "_");
                let is_builtin = builtin
                    .lines()
                    .any(|l| name_of(std::path::Path::new(l)) == dep);
                assert!(
                    shipped.contains(&dep) || is_builtin,
                    "{release}: {} depends on {dep}, which the bed does not ship\n{bed}",
                    path.display()
                );
            }
        }
    }
}

fn collect_modules(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect_modules(&p, out);
        } else if p.extension().is_some_and(|e| e == "ko") {
            out.push(p);
        }
    }
}

/// A `key=value` string from a module's .modinfo section (NUL-separated strings; the
/// bed's modules are uncompressed).
fn modinfo(data: &[u8], key: &str) -> String {
    let needle = format!("{key}=");
    data.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(needle.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// `ringgate doctor` and the worker's fallback reason tell "no tls ULP" from "the ULP
/// attaches but every cipher is refused": a 6.1 bed with tls.ko and none of the AEAD
/// modules (build.sh -C none). Before tls.ko is loaded doctor says the ULP is refused;
/// after, that the ULP attaches and which ciphers TLS_TX refused; a connection in
/// `ktls = "auto"` falls back with reason kernel_tls_no_ciphers and is served.
fn doctor_tells_no_tls_module_from_missing_ciphers_in_vm() {
    const GUEST: &str = include_str!("vm/guests/doctor_ktls.sh");
    if !harness::have_tool("qemu-system-x86_64") {
        harness::Skip("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into())
            .report();
    }
    let curl = match host_tool("curl", "curl") {
        Ok(c) => c,
        Err(cannot) => cannot.report(),
    };
    let ringgate = harness::release_binary("ringgate");
    let (pki, mut files) = vm_certificate();
    let auto = pki.dir().join("auto.toml");
    std::fs::write(&auto, ringgate_config(8443, "auto")).unwrap();
    files.push((auto, "/etc/rg/auto.toml".into()));
    let mut cfg = harness::VmConfig::new(GUEST);
    cfg.name = "doctor-no-ciphers".into();
    cfg.ciphers = Some("none".into());
    cfg.extra_binaries = vec![ringgate, curl];
    cfg.extra_files = files;
    let report = match harness::run_vm_with(&cfg) {
        Ok(r) => r,
        Err(cannot) => cannot.report(),
    };
    let ctx = report.describe();
    eprintln!("{ctx}");
    assert!(
        report.has_line("BED CIPHERS none") && report.has_line("BED MODULES tls"),
        "the bed ships tls.ko only\n{ctx}"
    );
    let before = report.value_after("DOCTOR0 ").unwrap_or_default();
    assert!(
        before.contains("refuses TCP_ULP \"tls\""),
        "without tls.ko: the ULP is refused\n{ctx}"
    );
    assert!(report.has_line("INSMOD OK"), "{ctx}");
    let after = report.value_after("DOCTOR1 ").unwrap_or_default();
    assert!(
        after.contains("TCP_ULP \"tls\" attaches, but the kernel refuses every cipher")
            && after.contains("gcm(aes)")
            && after.contains("rfc7539(chacha20,poly1305)")
            && !after.contains("no tls module"),
        "with tls.ko and no AEAD modules: the ULP works, the ciphers do not\n{ctx}"
    );
    for line in ["SERVED OK", "FALLBACK_REASON OK", "STOP exit=0"] {
        assert!(report.has_line(line), "missing {line:?}\n{ctx}");
    }
    report.assert_exit_ok();
}

/// The real thing: the release `ringgate` binary inside the VM, its built-in origin, and
/// curl as the client, over loopback. For TLS 1.2 and 1.3 × AES-128-GCM, AES-256-GCM and
/// CHACHA20-POLY1305: bodies of 0 B to 3 MB both ways (1 MiB and up spliced into the kTLS
/// socket), SHA-256 equal; /proc/net/tls_stat TlsTxSw and TlsRxSw rise by exactly the
/// number of connections; keep-alive, an early client close mid-body, a client KeyUpdate
/// (closed cleanly and counted: the 6.1 kernel cannot re-key); and, before tls.ko
/// is loaded, `ktls = "auto"` falls back while `ktls = "on"` refuses to start.
fn ringgate_offloads_in_vm() {
    const GUEST: &str = include_str!("vm/guests/ringgate_ktls.sh");
    // Checked before the (slow) release build, so a host without qemu skips quickly.
    if !harness::have_tool("qemu-system-x86_64") {
        harness::Skip("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into())
            .report();
    }
    let (curl, openssl) = match (host_tool("curl", "curl"), host_tool("openssl", "openssl")) {
        (Ok(c), Ok(o)) => (c, o),
        (Err(cannot), _) | (_, Err(cannot)) => cannot.report(),
    };
    let ringgate = harness::release_binary("ringgate");
    let (pki, mut files) = vm_certificate();
    let dir = pki.dir();
    std::fs::write(dir.join("auto.toml"), ringgate_config(8443, "auto")).unwrap();
    std::fs::write(dir.join("on.toml"), ringgate_config(8444, "on")).unwrap();
    files.push((dir.join("auto.toml"), "/etc/rg/auto.toml".into()));
    files.push((dir.join("on.toml"), "/etc/rg/on.toml".into()));
    let mut cfg = harness::VmConfig::new(GUEST);
    cfg.name = "ringgate-ktls".into();
    cfg.extra_binaries = vec![ringgate, curl, openssl];
    cfg.extra_files = files;
    cfg.timeout = std::time::Duration::from_secs(900);
    let report = match harness::run_vm_with(&cfg) {
        Ok(r) => r,
        Err(cannot) => cannot.report(),
    };
    let ctx = report.describe();
    eprintln!(
        "VM build {:.1?}, boot+run {:.1?}\n{}",
        report.build_time, report.boot_time, report.report
    );
    for line in [
        "NOMODULE KTLS_ON_REFUSES OK",
        "NOMODULE AUTO_FALLBACK_SERVES OK",
        "NOMODULE FALLBACK_LOGGED OK",
        "INSMOD OK",
        "KEEPALIVE OK",
        "EARLY_CLOSE OK",
        "KEYUPDATE_SENT OK",
        "AFTER_KEYUPDATE_SERVING OK",
        "ktls_keyupdate_closes=1",
        "DECRYPT_ERRORS OK",
        "NO_PANIC OK",
        "STOP ktls exit=0",
    ] {
        assert!(report.has_line(line), "missing {line:?}\n{ctx}");
    }
    let cases = [
        "tls12-aes128",
        "tls12-aes256",
        "tls12-chacha20",
        "tls13-aes128",
        "tls13-aes256",
        "tls13-chacha20",
    ];
    for case in cases {
        for size in [0, 1, 16384, 100000, 1048576, 3000000] {
            for method in ["GET", "POST"] {
                let line = format!("CASE {case} {method} {size} OK");
                assert!(report.has_line(&line), "missing {line:?}\n{ctx}");
            }
        }
        assert!(
            report.has_line(&format!("CASE {case} CHUNKED OK")),
            "{case} chunked\n{ctx}"
        );
        assert!(
            report.has_line_starting(&format!("CASE {case} TLS_STAT OK")),
            "{case}: TlsTxSw/TlsRxSw did not rise by the number of connections\n{ctx}"
        );
    }
    assert!(
        report.has_line("H2_OVER_KTLS OK"),
        "HTTP/2 over kernel TLS\n{ctx}"
    );
    assert!(!report.contains("FAIL"), "a check failed\n{ctx}");
    // Every connection after the module was loaded went through the kernel.
    let total = report.number_after("TOTAL_CONNECTIONS").expect("total");
    let offloaded = report
        .number_after("ktls_offloaded=")
        .unwrap_or_else(|| panic!("no ktls_offloaded count\n{ctx}"));
    assert_eq!(offloaded, total, "connections offloaded vs made\n{ctx}");
    let close_notify = report
        .number_after("ktls_close_notify_received=")
        .unwrap_or(0);
    assert!(
        close_notify > 0,
        "no close_notify was read through the control-record path\n{ctx}"
    );
    let spliced: u64 = report
        .report
        .lines()
        .filter_map(|l| l.strip_prefix("spliced_bodies="))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum();
    // Every large GET response is spliced (2 sizes x 6 cases). The POST echoes may take
    // the copying path: the demo origin answers while the request body is still flowing
    // (full duplex), and splice needs the whole upstream socket, so a response is
    // spliced only once its request was sent whole.
    assert!(
        spliced >= 12,
        "large bodies were not spliced ({spliced})\n{ctx}"
    );
    report.assert_exit_ok();
}

/// TLS 1.3 KeyUpdate with the record layer in the kernel, on a kernel that can re-key
/// (Debian trixie-backports, >= 6.14; the 6.1 kernel above closes instead): for each TLS
/// 1.3 cipher, ringgate-load sends a KeyUpdate(update_requested) before every 10th
/// request (20 kB bodies) and before every 2nd request (1 MiB bodies, spliced), and
/// OpenSSL sends `k` and `K` between requests on one connection. Every request must be
/// answered, the kernel's TlsRxRekeyOk/TlsTxRekeyOk must rise by exactly the number of
/// KeyUpdates, no connection may fall back to a close, and nothing may be decrypted wrong.
fn ringgate_rekeys_in_vm() {
    const GUEST: &str = include_str!("vm/guests/ringgate_rekey.sh");
    if !harness::have_tool("qemu-system-x86_64") {
        harness::Skip("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into())
            .report();
    }
    let openssl = match host_tool("openssl", "openssl") {
        Ok(p) => p,
        Err(cannot) => cannot.report(),
    };
    let ringgate = harness::release_binary("ringgate");
    let load = harness::release_binary("ringgate-load");
    let (pki, mut files) = vm_certificate();
    let auto = pki.dir().join("auto.toml");
    std::fs::write(&auto, ringgate_config(8443, "auto")).unwrap();
    files.push((auto, "/etc/rg/auto.toml".into()));
    let mut cfg = harness::VmConfig::new(GUEST);
    cfg.name = "ringgate-rekey".into();
    cfg.kernel_suite = Some("trixie-backports".into());
    cfg.extra_binaries = vec![ringgate, load, openssl];
    cfg.extra_files = files;
    cfg.timeout = std::time::Duration::from_secs(900);
    let report = match harness::run_vm_with(&cfg) {
        Ok(r) => r,
        Err(cannot) => cannot.report(),
    };
    let ctx = report.describe();
    eprintln!(
        "VM build {:.1?}, boot+run {:.1?}\n{}",
        report.build_time, report.boot_time, report.report
    );
    let kernel = report.value_after("KERNEL ").unwrap_or_default();
    let (major, minor) = kernel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|v| v.parse::<u32>().ok())
        .fold((None, None), |(a, b), v| match (a, b) {
            (None, _) => (Some(v), None),
            (Some(a), None) => (Some(a), Some(v)),
            done => done,
        });
    assert!(
        (major.unwrap_or(0), minor.unwrap_or(0)) >= (6, 14),
        "the re-key test needs a kernel >= 6.14, booted {kernel:?}\n{ctx}"
    );
    for cipher in [
        "TLS13_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ] {
        for size in ["20000", "1048576"] {
            assert!(
                report.has_line_starting(&format!("REKEY {cipher} {size} OK")),
                "{cipher} {size}: re-key under load\n{ctx}"
            );
        }
    }
    for line in [
        "INSMOD OK",
        "OPENSSL_KEYUPDATES OK",
        "KERNEL_ERRORS OK",
        "STOP exit=0",
        "ktls_keyupdate_closes=0",
        "NO_PANIC OK",
    ] {
        assert!(report.has_line(line), "missing {line:?}\n{ctx}");
    }
    assert!(!report.contains("FAIL"), "a check failed\n{ctx}");
    let count = |key: &str| -> u64 {
        report
            .number_after(key)
            .unwrap_or_else(|| panic!("no {key} in the report\n{ctx}"))
    };
    assert_eq!(
        count("ktls_offloaded="),
        count("TOTAL_CONNECTIONS "),
        "every connection went through the kernel\n{ctx}"
    );
    assert_eq!(
        count("ktls_rekeys="),
        count("TOTAL_KEYUPDATES "),
        "every KeyUpdate re-keyed the kernel\n{ctx}"
    );
    report.assert_exit_ok();
}

/// Names the server the test binary attacks when it runs inside the VM (guest mode).
const RECORDS_TARGET_ENV: &str = "RINGGATE_RECORDS_TARGET";

/// TLS record faults against kernel TLS: the record sequences of tests/common/records.rs
/// (the same the userspace tests in tests/tls_records.rs send), for every suite, against
/// `ringgate run` with `ktls = "on"` — on the 6.1 kernel, which cannot re-key, and on
/// trixie-backports' (>= 6.14), which can. This test binary is the client: the host half
/// boots each VM with a stripped copy of itself, and the guest runs it again with
/// RINGGATE_RECORDS_TARGET set, where the same test function sends the sequences.
/// Each suite's connections must all have been offloaded (TlsRxSw in the guest), or all
/// fall back (reported, and allowed only for ChaCha20 on the newer kernel, whose module
/// list the bed does not resolve yet); no panic, no warning in ringgate's log.
fn ringgate_record_faults_in_vm() {
    if let Ok(addr) = std::env::var(RECORDS_TARGET_ENV) {
        return guest::record_faults(&addr);
    }
    const GUEST: &str = include_str!("vm/guests/ringgate_records.sh");
    if !harness::have_tool("qemu-system-x86_64") {
        harness::Skip("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into())
            .report();
    }
    let strip = match host_tool("strip", "binutils") {
        Ok(p) => p,
        Err(cannot) => cannot.report(),
    };
    let ringgate = harness::release_binary("ringgate");
    let (pki, mut files) = vm_certificate();
    let dir = pki.dir();
    std::fs::write(dir.join("on.toml"), ringgate_config(8444, "on")).unwrap();
    files.push((dir.join("on.toml"), "/etc/rg/on.toml".into()));
    // Ourselves, without debug info (the initramfs holds every byte of it).
    let me = std::env::current_exe().expect("test binary path");
    let client = dir.join("ringgate-records");
    let st = std::process::Command::new(&strip)
        .arg("-o")
        .arg(&client)
        .arg(&me)
        .status()
        .expect("run strip");
    assert!(st.success(), "strip {} failed", me.display());
    for (name, suite) in [("6.1", None), ("7.3", Some("trixie-backports"))] {
        let mut cfg = harness::VmConfig::new(GUEST);
        cfg.name = format!("ringgate-records-{name}");
        cfg.kernel_suite = suite.map(String::from);
        cfg.extra_binaries = vec![ringgate.clone(), client.clone()];
        cfg.extra_files = files.clone();
        cfg.timeout = std::time::Duration::from_secs(900);
        let report = match harness::run_vm_with(&cfg) {
            Ok(r) => r,
            Err(cannot) => cannot.report(),
        };
        let ctx = report.describe();
        eprintln!(
            "VM ({name}) build {:.1?}, boot+run {:.1?}\n{}",
            report.build_time, report.boot_time, report.report
        );
        for line in [
            "INSMOD OK",
            "RECORDS exit=0",
            "BYSTANDER OK",
            "STOP exit=0",
            "NO_PANIC OK",
        ] {
            assert!(report.has_line(line), "{name}: missing {line:?}\n{ctx}");
        }
        assert!(!report.contains("FAIL"), "{name}: a check failed\n{ctx}");
        assert!(
            !report.contains("WARNINGS:"),
            "{name}: ringgate warned\n{ctx}"
        );
        for suite in common::records::SUITES {
            let s = common::records::suite_name(suite);
            let fallback_ok = suite_is_chacha(s) && name == "7.3";
            assert!(
                report.has_line_starting(&format!("SUITE {s} OFFLOADED"))
                    || (fallback_ok && report.has_line_starting(&format!("SUITE {s} FALLBACK"))),
                "{name}: {s} was not tested on kernel TLS\n{ctx}"
            );
        }
        assert!(
            report.number_after("DECRYPT_ERRORS ").unwrap_or(0) > 0,
            "{name}: the kernel decrypted every record (TlsDecryptError did not move)\n{ctx}"
        );
        let rekeys = report.number_after("ktls_rekeys=").unwrap_or(0);
        let closes = report.number_after("ktls_keyupdate_closes=").unwrap_or(0);
        if name == "6.1" {
            assert_eq!(rekeys, 0, "6.1 cannot re-key\n{ctx}");
            assert!(closes > 0, "6.1: no KeyUpdate close counted\n{ctx}");
        } else {
            assert!(rekeys >= 32, "7.3: the KeyUpdates did not re-key\n{ctx}");
            assert_eq!(closes, 0, "7.3: a KeyUpdate closed a connection\n{ctx}");
        }
        report.assert_exit_ok();
    }
}

fn suite_is_chacha(name: &str) -> bool {
    name.ends_with("chacha20")
}

/// The client half, inside the VM.
mod guest {
    use super::common::record_cases::{Layer, handshake_cases, post_handshake_cases};
    use super::common::records::{RawSession, SUITES, Target, get, suite_name};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn tls_stat(key: &str) -> u64 {
        std::fs::read_to_string("/proc/net/tls_stat")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                (k == key).then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0)
    }

    /// Linux >= 6.14 installs a second TLS_RX/TLS_TX key.
    fn kernel_rekeys() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse::<u32>().ok());
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 14)
    }

    pub fn record_faults(addr: &str) {
        let target = Target {
            addr: addr.parse().expect("RINGGATE_RECORDS_TARGET is host:port"),
            root: CertificateDer::from_pem_file("/etc/rg/root.pem").expect("/etc/rg/root.pem"),
            host: "ktls.test".into(),
            read_timeout: std::time::Duration::from_secs(20),
        };
        let layer = Layer::Kernel {
            rekeys: kernel_rekeys(),
        };
        println!("LAYER {layer:?}");
        let mut failed = 0;
        let mut bystander = RawSession::connect(&target, SUITES[0]).expect("bystander");
        for suite in SUITES {
            let name = suite_name(suite);
            let before = tls_stat("TlsRxSw");
            let mut lines = Vec::new();
            let mut conns = 0;
            for case in post_handshake_cases().iter().filter(|c| c.applies(suite)) {
                conns += 1;
                lines.push(match case.run(&target, suite, layer) {
                    Ok(()) => format!("CASE {name} {} OK", case.name),
                    Err(e) => format!("CASE {name} {} FAIL {e}", case.name),
                });
            }
            let offloaded = tls_stat("TlsRxSw") - before;
            if offloaded == 0 {
                // Served by rustls in userspace: these are not kernel results.
                println!("SUITE {name} FALLBACK (no connection offloaded)");
                continue;
            }
            if offloaded < conns {
                println!("SUITE {name} FAIL offloaded {offloaded} of {conns}");
                failed += 1;
            } else {
                println!("SUITE {name} OFFLOADED {offloaded} of {conns}");
            }
            for l in lines {
                failed += usize::from(l.contains(" FAIL "));
                println!("{l}");
            }
        }
        // The exact-record handshake reader (kTLS may follow): same answers as userspace.
        for case in handshake_cases() {
            for tls13 in [true, false] {
                match case.run(&target, tls13) {
                    Ok(()) => println!("HANDSHAKE {} tls13={tls13} OK", case.name),
                    Err(e) => {
                        failed += 1;
                        println!("HANDSHAKE {} tls13={tls13} FAIL {e}", case.name);
                    }
                }
            }
        }
        match bystander
            .send_data(&get("ktls.test", "/bytes/10"))
            .map_err(|e| e.to_string())
            .and_then(|()| bystander.response())
        {
            Ok(r) if r.starts_with(b"HTTP/1.1 200") => println!("BYSTANDER OK"),
            other => {
                failed += 1;
                println!("BYSTANDER FAIL {other:?}");
            }
        }
        assert_eq!(failed, 0, "{failed} record checks failed");
    }
}
