//! Reusable harness for tests that need a kernel with kTLS (CONFIG_TLS).
//!
//! Boots a Debian kernel + busybox initramfs under `qemu-system-x86_64 -accel
//! tcg` via `tests/vm/build.sh` and `tests/vm/run.sh` and hands back what the
//! guest script printed. See `tests/vm/README.md`.
//!
//! A VM test is a function listed in `VM_TESTS` of tests/ktls_vm.rs (whose own harness
//! reports the `RINGGATE_SKIP_VM=1` opt-out as ignored):
//!
//! ```ignore
//! fn my_vm_test() {
//!     let ringgate = std::path::Path::new(env!("CARGO_BIN_EXE_ringgate"));
//!     let report = match harness::run_vm(&[ringgate], "modprobe tls && ringgate --help") {
//!         Ok(r) => r,
//!         Err(cannot) => cannot.report(), // fails the test with the package to install
//!     };
//!     report.assert_exit_ok();
//! }
//! ```
//!
//! Inside the guest, every extra binary is on PATH as `/usr/local/bin/<name>`,
//! `ktls_probe` is always there, `$KVER`/`$MODDIR` name the kernel and its
//! module dir, and `modprobe tls` / `insmod $MODDIR/kernel/net/tls/tls.ko`
//! load kTLS (crypto modules are autoloaded on demand). Only `lo` is up.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Env var: `1` skips the VM tests, the one documented opt-out; each is then reported as
/// ignored (tests/ktls_vm.rs), never as passed.
pub const SKIP_ENV: &str = "RINGGATE_SKIP_VM";

/// Env var: `1` overrides [`SKIP_ENV`]: the VM tests must run (./test.sh and CI set it).
pub const REQUIRE_ENV: &str = "RINGGATE_REQUIRE_VM";

/// Why this host cannot run the VM (no qemu, no busybox, no Debian archive, ...): the
/// test fails with it ([`Skip::report`]).
#[derive(Debug, Clone)]
pub struct Skip(pub String);

impl Skip {
    /// Fails the test: what is missing, the package to install, ./test.sh (which installs
    /// every package the tests use) and the opt-out. A VM test never passes by skipping.
    pub fn report(self) -> ! {
        panic!(
            "the kTLS VM test cannot run on this host: {}\n\
             ./test.sh installs every package the tests use (as root); to skip the VM tests \
             on purpose set {SKIP_ENV}=1 (they are then reported as ignored)",
            self.0
        );
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reason the VM tests are skipped, when `RINGGATE_SKIP_VM=1` and not
/// `RINGGATE_REQUIRE_VM=1`.
pub fn vm_opted_out() -> Option<String> {
    let set = |var| std::env::var(var).is_ok_and(|v| v == "1");
    (set(SKIP_ENV) && !set(REQUIRE_ENV)).then(|| format!("{SKIP_ENV}=1 (explicit opt-out)"))
}

/// What the guest script produced.
#[derive(Debug, Clone)]
pub struct VmReport {
    /// Exit status of the guest script (143 when vm.timeout killed it).
    pub exit_code: i32,
    /// Combined stdout+stderr of the guest script, after the bed manifest's `BED` lines.
    pub report: String,
    /// The bed manifest (tests/vm/build.sh): kernel packages and release, and the
    /// crypto modules resolved per kTLS cipher.
    pub bed: String,
    /// Tail of the guest's dmesg after the script ran.
    pub dmesg: String,
    /// Full serial console of the run.
    pub console_log: PathBuf,
    /// Directory with vmlinuz, initrd.gz, console.log, report.txt, ...
    pub run_dir: PathBuf,
    pub build_time: Duration,
    pub boot_time: Duration,
}

impl VmReport {
    pub fn contains(&self, needle: &str) -> bool {
        self.report.contains(needle)
    }

    /// True when some line of the report equals `line` (trailing blanks ignored).
    pub fn has_line(&self, line: &str) -> bool {
        self.report.lines().any(|l| l.trim_end() == line)
    }

    /// The rest of the first line starting with `prefix`.
    pub fn value_after(&self, prefix: &str) -> Option<&str> {
        self.report
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    }

    /// The number after `prefix` on the first line starting with it.
    pub fn number_after(&self, prefix: &str) -> Option<u64> {
        self.value_after(prefix).and_then(|v| v.parse().ok())
    }

    /// True when some line of the report starts with `prefix`.
    pub fn has_line_starting(&self, prefix: &str) -> bool {
        self.report.lines().any(|l| l.starts_with(prefix))
    }

    pub fn assert_exit_ok(&self) {
        assert_eq!(
            self.exit_code,
            0,
            "guest script failed with exit code {}\n{}",
            self.exit_code,
            self.describe()
        );
    }

    /// Report + dmesg, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "----- guest report (the BED lines: kernel and crypto modules of the bed) -----\n{}\n----- guest dmesg (tail) -----\n{}\n----- console: {} -----",
            self.report.trim_end(),
            self.dmesg.trim_end(),
            self.console_log.display()
        )
    }
}

/// Everything `run_vm_with` can be told. `VmConfig::new(script)` gives the
/// defaults used by `run_vm`.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Name of the run dir under `<cache>/runs/` (wiped before the run).
    pub name: String,
    /// Host executables, copied with their shared libraries.
    pub extra_binaries: Vec<PathBuf>,
    /// (host path, absolute guest path) plain files: certs, configs, ...
    pub extra_files: Vec<(PathBuf, String)>,
    /// Additional kernel modules to ship (their dependencies come along).
    pub extra_modules: Vec<String>,
    /// Modules /init modprobes before the guest script starts.
    pub preload_modules: Vec<String>,
    /// Body of /guest.sh (busybox ash).
    pub guest_script: String,
    /// Wall-clock limit for the boot; the script itself gets 30 s less.
    pub timeout: Duration,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Boot a kernel from this Debian suite (build.sh -s), e.g. "trixie-backports" for
    /// one that can re-key kTLS; `None`: the host's own linux-image-amd64.
    pub kernel_suite: Option<String>,
    /// kTLS ciphers whose crypto modules to ship (build.sh -C): `None` all, `Some("none")`
    /// only tls.ko.
    pub ciphers: Option<String>,
}

impl VmConfig {
    pub fn new(guest_script: &str) -> Self {
        Self {
            name: "default".into(),
            extra_binaries: Vec::new(),
            extra_files: Vec::new(),
            extra_modules: Vec::new(),
            preload_modules: Vec::new(),
            guest_script: guest_script.into(),
            timeout: Duration::from_secs(300),
            memory_mb: 1024,
            cpus: 2,
            kernel_suite: None,
            ciphers: None,
        }
    }
}

/// Build an initramfs with `extra_binaries` and `guest_script`, boot it and
/// return the report. `Err(Skip)` when this host cannot run the VM (the caller fails
/// with [`Skip::report`]); any other problem (build error, boot failure, timeout) panics.
pub fn run_vm(extra_binaries: &[&Path], guest_script: &str) -> Result<VmReport, Skip> {
    let mut cfg = VmConfig::new(guest_script);
    cfg.extra_binaries = extra_binaries.iter().map(|p| p.to_path_buf()).collect();
    run_vm_with(&cfg)
}

/// One VM at a time per test binary: TCG is CPU-bound and hosts have 2 cores.
static VM_LOCK: Mutex<()> = Mutex::new(());

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$VM_CACHE`, else `<repo>/target/vm-cache` (kernel .deb, extracted kernel,
/// run dirs).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target").join("vm-cache"))
}

/// Whether a host tool is on PATH.
pub fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(name);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt as _;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

pub fn run_vm_with(cfg: &VmConfig) -> Result<VmReport, Skip> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err(Skip("the VM harness needs an x86_64 Linux host".into()));
    }
    for (tool, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("dpkg-deb", "dpkg"),
        ("gcc", "gcc"),
    ] {
        if !have_tool(tool) {
            return Err(Skip(format!("{tool} not found (apt-get install {pkg})")));
        }
    }
    if !have_tool("apt-get") && !cache_dir().join("debs").is_dir() {
        return Err(Skip(
            "apt-get not found and no cached kernel package in <cache>/debs".into(),
        ));
    }

    let _guard = VM_LOCK.lock().unwrap_or_else(|e| e.into_inner());

    let vm_dir = manifest_dir().join("tests").join("vm");
    let run_dir = cache_dir().join("runs").join(&cfg.name);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).expect("create VM run dir");
    let guest = run_dir.join("guest.sh");
    std::fs::write(&guest, &cfg.guest_script).expect("write guest script");

    // ---- build
    let mut build = Command::new("bash");
    build
        .arg(vm_dir.join("build.sh"))
        .arg("-c")
        .arg(cache_dir())
        .arg("-o")
        .arg(&run_dir)
        .arg("-g")
        .arg(&guest);
    for bin in &cfg.extra_binaries {
        build.arg("-x").arg(bin);
    }
    for (src, dst) in &cfg.extra_files {
        let mut spec = src.as_os_str().to_os_string();
        spec.push(":");
        spec.push(dst);
        build.arg("-f").arg(spec);
    }
    for m in &cfg.extra_modules {
        build.arg("-m").arg(m);
    }
    for m in &cfg.preload_modules {
        build.arg("-p").arg(m);
    }
    if let Some(suite) = &cfg.kernel_suite {
        build.arg("-s").arg(suite);
    }
    if let Some(ciphers) = &cfg.ciphers {
        build.arg("-C").arg(ciphers);
    }
    let t = Instant::now();
    let out = output_of(&mut build, "tests/vm/build.sh");
    let build_time = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(77) => return Err(Skip(skip_reason(&stderr, "tests/vm/build.sh"))),
        code => panic!("tests/vm/build.sh failed ({code:?}):\n{stderr}"),
    }

    // ---- boot
    let mut run = Command::new("bash");
    run.arg(vm_dir.join("run.sh"))
        .arg("-d")
        .arg(&run_dir)
        .arg("-t")
        .arg(cfg.timeout.as_secs().max(30).to_string())
        .arg("-m")
        .arg(cfg.memory_mb.to_string())
        .arg("-s")
        .arg(cfg.cpus.to_string());
    let t = Instant::now();
    let mut out = output_of(&mut run, "tests/vm/run.sh");
    // A kernel that crashes or hangs while booting under software emulation (seen with
    // 7.3 and -smp 2: an oops in the scheduler before init ran, a hang after "Booting
    // from ROM"; run.sh's boot watchdog stops a hang) has not run a line of ours: boot
    // once more. A guest that started and then failed or timed out is a result.
    let status_of = |dir: &Path| std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let started = |dir: &Path| {
        std::fs::read_to_string(dir.join("console.log"))
            .is_ok_and(|log| log.contains("vm-init: starting the guest script"))
    };
    let status = status_of(&run_dir);
    if matches!(status.trim(), "boot-failed" | "timeout") && !started(&run_dir) {
        eprintln!(
            "VM {}: the kernel did not reach the guest script; booting once more:\n{}",
            cfg.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out = output_of(&mut run, "tests/vm/run.sh");
    }
    let boot_time = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) && !run_dir.join("status").exists() {
        return Err(Skip(skip_reason(&stderr, "tests/vm/run.sh")));
    }
    let status = std::fs::read_to_string(run_dir.join("status")).unwrap_or_default();
    let exit_code = match status.trim().strip_prefix("exit ") {
        Some(code) => code.parse().expect("status file: exit code"),
        None => panic!(
            "VM did not produce a report (status: {:?}):\n{stderr}",
            status.trim()
        ),
    };
    Ok(VmReport {
        exit_code,
        report: std::fs::read_to_string(run_dir.join("report.txt")).unwrap_or_default(),
        bed: std::fs::read_to_string(run_dir.join("bed.txt")).unwrap_or_default(),
        dmesg: std::fs::read_to_string(run_dir.join("dmesg.txt")).unwrap_or_default(),
        console_log: run_dir.join("console.log"),
        run_dir,
        build_time,
        boot_time,
    })
}

/// The bed manifest for a kernel (`build.sh -R`, no VM booted): `BED ...` lines naming the
/// kernel packages and release, the providers of each kTLS cipher's crypto algorithms,
/// the shipped modules, and `BED CACHE <dir>` with the extracted module tree.
pub fn resolve_bed(suite: Option<&str>) -> Result<String, Skip> {
    for (tool, pkg) in [("dpkg-deb", "dpkg"), ("gcc", "gcc")] {
        if !have_tool(tool) {
            return Err(Skip(format!("{tool} not found (apt-get install {pkg})")));
        }
    }
    let _guard = VM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut build = Command::new("bash");
    build
        .arg(manifest_dir().join("tests/vm/build.sh"))
        .arg("-R")
        .arg("-c")
        .arg(cache_dir());
    if let Some(suite) = suite {
        build.arg("-s").arg(suite);
    }
    let out = output_of(&mut build, "tests/vm/build.sh -R");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(77) => Err(Skip(skip_reason(&stderr, "tests/vm/build.sh"))),
        code => panic!("tests/vm/build.sh -R failed ({code:?}):\n{stderr}"),
    }
}

fn output_of(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn skip_reason(stderr: &str, what: &str) -> String {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.split_once("SKIP: ").map(|(_, why)| why.to_string()))
        .unwrap_or_else(|| format!("{what} exited 77: {}", stderr.trim()))
}

/// Build `cargo build --release --bin <name>` and return the binary's path,
/// for scenarios that want the optimised binary rather than the test-profile
/// one from `env!("CARGO_BIN_EXE_<name>")`.
pub fn release_binary(name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(manifest_dir())
        .args(["build", "--release", "--bin", name])
        .status()
        .expect("run cargo build --release");
    assert!(
        status.success(),
        "cargo build --release --bin {name} failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"));
    let target = if target.is_relative() {
        manifest_dir().join(target)
    } else {
        target
    };
    target.join("release").join(name)
}
