//! Scripted HTTP/2 attacks over TLS (ALPN h2) with real Python tooling: each test runs
//! one attack of `tests/h2/attacks.py` (the `h2`, `hyperframe` and `hpack` packages)
//! against the real binary with small `[http2]` budgets, and checks that the attack
//! ends in GOAWAY with the expected code (or in stream resets) within the budget, that
//! a second, well-behaved connection opened during the attack is served during it and
//! after it, that `ringgate_h2_protocol_errors_total{reason}` moved, and that the
//! proxy's peak RSS (VmHWM of the child process) grew by less than [`RSS_BOUND_KIB`].
//!
//! Floods the proxy echoes (PING, SETTINGS) are bounded by the ACKs that came back;
//! floods it does not (WINDOW_UPDATE, empty DATA) carry a PING probe every
//! [`PROBE_EVERY`] frames, whose ACKs bound the flood frames let through.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::backend::Backend;
use common::child::ChildGuard;
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, ProxyProcess};
use common::{HOST, h2_errors};

/// Per-second frame budgets of the test config.
const CONTROL_BUDGET: u64 = 50;
const WINDOW_UPDATE_BUDGET: u64 = 50;
const RESET_BUDGET: u64 = 10;
const PENDING_RESET_BUDGET: u64 = 10;
const LOCAL_RESET_BUDGET: u64 = 5;
const MAX_HEADER_LIST: u64 = 8192;
const MAX_STREAMS: u64 = 8;
/// A PING probe after every this many un-echoed flood frames.
const PROBE_EVERY: u64 = 5;
/// How much the proxy's peak RSS may grow during one attack.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// The good connection's request and its answer.
const GOOD_PATH: &str = "/bytes/1000";

/// The proxy binary behind a TLS listener (plus admin) with small budgets, a backend.
struct Bed {
    pki: TestPki,
    _backend: Backend,
    proxy: ProxyProcess,
    admin: SocketAddr,
}

impl Bed {
    fn new() -> Bed {
        let pki = TestPki::new();
        let backend = Backend::start();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let text = ConfigBuilder::new()
            .tls_listener(&[&cert])
            .admin()
            .http("send_timeout_ms", 300)
            .route(None, "/", false, "backend")
            .upstream("backend", &[backend.addr], &[])
            .build();
        let text = format!(
            "{text}\n[http2]\nmax_control_frames_per_second = {CONTROL_BUDGET}\n\
             max_window_update_frames_per_second = {WINDOW_UPDATE_BUDGET}\n\
             max_reset_streams_per_second = {RESET_BUDGET}\n\
             max_pending_accept_reset_streams = {PENDING_RESET_BUDGET}\n\
             max_local_error_reset_streams = {LOCAL_RESET_BUDGET}\n\
             max_header_list_size = {MAX_HEADER_LIST}\n\
             max_concurrent_streams = {MAX_STREAMS}\n"
        );
        let path = pki.dir().join("attacks.toml");
        std::fs::write(&path, text).expect("write the config");
        let proxy = ProxyProcess::spawn(&path, 1);
        assert!(
            proxy.wait_for_output("admin on http://", 1, Duration::from_secs(30)),
            "no admin line: {}",
            proxy.output()
        );
        let out = proxy.output();
        let admin = out
            .split("admin on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("admin address in {out}"));
        Bed {
            pki,
            _backend: backend,
            proxy,
            admin,
        }
    }

    /// A field of the proxy's /proc/PID/status in KiB (VmRSS, VmHWM).
    fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.proxy.pid()))
            .expect("the proxy's /proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {text}"))
    }

    /// Runs one attack; checks the good connection and the proxy's memory. Returns the
    /// script's report.
    fn attack(&self, name: &str, args: &[&str]) -> Report {
        let rss_before = self.status_kib("VmRSS");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/h2/attacks.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(name)
            .args(["--port", &self.proxy.addrs()[0].port().to_string()])
            .args(["--host", HOST, "--path", GOOD_PATH, "--wait", "20"])
            .arg("--ca")
            .arg(self.pki.root_pem_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd, "python3");
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = child.take_stdout() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.take_stderr() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait();
        assert!(
            !err.contains("ModuleNotFoundError"),
            "a Python package is missing: pip install h2 hyperframe hpack (./test.sh \
             installs them): {err}"
        );
        assert!(
            status.success(),
            "attacks.py {name}: {status}\n{err}\n{out}"
        );
        let report = Report(out);
        eprintln!("{name}: {report}");
        assert_eq!(report.get("good_during"), "200,1000", "{name}: {report}");
        assert_eq!(report.get("good_after"), "200,1000", "{name}: {report}");
        let peak = self.status_kib("VmHWM");
        assert!(
            peak.saturating_sub(rss_before) < RSS_BOUND_KIB,
            "{name}: peak RSS {peak} KiB from {rss_before} KiB"
        );
        report
    }
}

/// The script's `key=value` lines.
struct Report(String);

impl Report {
    fn get(&self, key: &str) -> &str {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {self}"))
    }

    fn n(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {self}"))
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.trim().replace('\n', "; "))
    }
}

/// PING flood: GOAWAY ENHANCE_YOUR_CALM with at most the budget's PINGs answered.
#[test]
fn ping_flood() {
    let bed = Bed::new();
    let r = bed.attack("ping", &["--frames", "5000"]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert!(r.n("ping_acks") <= CONTROL_BUDGET, "{r}");
    assert_eq!(h2_errors(bed.admin, "control_frame_flood"), 1);
}

/// SETTINGS flood: GOAWAY ENHANCE_YOUR_CALM with at most the budget's SETTINGS
/// acknowledged (the preface's SETTINGS included).
#[test]
fn settings_flood() {
    let bed = Bed::new();
    let r = bed.attack("settings", &["--frames", "5000"]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert!(r.n("settings_acks") <= CONTROL_BUDGET, "{r}");
    assert_eq!(h2_errors(bed.admin, "control_frame_flood"), 1);
}

/// PRIORITY flood (for an idle stream): GOAWAY ENHANCE_YOUR_CALM, nothing echoed.
#[test]
fn priority_flood() {
    let bed = Bed::new();
    let r = bed.attack("priority", &["--frames", "5000"]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert_eq!(h2_errors(bed.admin, "control_frame_flood"), 1);
}

/// WINDOW_UPDATE flood: GOAWAY ENHANCE_YOUR_CALM; the probes answered show at most the
/// budget's frames got through.
#[test]
fn window_update_flood() {
    let bed = Bed::new();
    let every = PROBE_EVERY.to_string();
    let r = bed.attack(
        "window_update",
        &["--frames", "5000", "--probe-every", &every],
    );
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert!(
        r.n("probe_acks") * PROBE_EVERY <= WINDOW_UPDATE_BUDGET,
        "{r}"
    );
    assert_eq!(h2_errors(bed.admin, "window_update_flood"), 1);
}

/// Empty DATA flood on an open stream: GOAWAY ENHANCE_YOUR_CALM; empty DATA and the
/// probes share the control budget.
#[test]
fn empty_data_flood() {
    let bed = Bed::new();
    let every = PROBE_EVERY.to_string();
    let r = bed.attack("empty_data", &["--frames", "5000", "--probe-every", &every]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert!(
        r.n("probe_acks") * (PROBE_EVERY + 1) <= CONTROL_BUDGET,
        "{r}"
    );
    assert_eq!(h2_errors(bed.admin, "control_frame_flood"), 1);
}

/// Rapid reset (HEADERS + RST_STREAM, stream after stream): GOAWAY ENHANCE_YOUR_CALM,
/// from our reset budget (`reset_flood`) or h2's pending-accept one (`h2_budget`); the
/// streams the proxy took (the GOAWAY's last stream id) stay within both budgets and the
/// concurrency limit.
#[test]
fn rapid_reset() {
    let bed = Bed::new();
    let r = bed.attack("rapid_reset", &["--frames", "5000"]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    let streams = r.n("last_stream_id").div_ceil(2);
    assert!(
        streams <= RESET_BUDGET + PENDING_RESET_BUDGET + MAX_STREAMS,
        "{streams} streams taken: {r}"
    );
    assert_eq!(
        h2_errors(bed.admin, "reset_flood") + h2_errors(bed.admin, "h2_budget"),
        1
    );
}

/// CONTINUATION flood (a header block that never ends): GOAWAY ENHANCE_YOUR_CALM from
/// h2's CONTINUATION budget (`h2_budget`), long before the flood's end.
#[test]
fn continuation_flood() {
    let bed = Bed::new();
    let r = bed.attack("continuation", &["--frames", "5000"]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert!(r.n("frames_sent") < 5000, "{r}");
    assert_eq!(h2_errors(bed.admin, "h2_budget"), 1);
}

/// HPACK bomb: one 4 KB field in the dynamic table, then a block of 16,000 references
/// to it (64 MB once decoded): the first such block ends the connection with GOAWAY
/// ENHANCE_YOUR_CALM (h2's header-list abuse limit, `h2_budget`), without decoding it
/// into memory.
#[test]
fn hpack_bomb() {
    let bed = Bed::new();
    let r = bed.attack("hpack_bomb", &["--frames", "100"]);
    assert_eq!(r.get("goaway"), "ENHANCE_YOUR_CALM", "{r}");
    assert_eq!(r.n("frames_sent"), 1, "{r}");
    assert_eq!(h2_errors(bed.admin, "h2_budget"), 1);
}

/// Zero-window hold: every stream the client never opens a window for is reset (CANCEL)
/// after `send_timeout_ms`, no DATA sent, each counted as `zero_window`; the upstream's
/// 64 MiB bodies do not land in the proxy's memory.
#[test]
fn zero_window_hold() {
    let bed = Bed::new();
    let r = bed.attack("zero_window", &["--streams", "4"]);
    assert_eq!(r.get("outcome"), "resets", "{r}");
    assert_eq!(r.n("resets"), 4, "{r}");
    assert_eq!(r.get("reset_codes"), "CANCEL", "{r}");
    assert_eq!(r.n("data_bytes"), 0, "{r}");
    assert_eq!(h2_errors(bed.admin, "zero_window"), 4);
}
