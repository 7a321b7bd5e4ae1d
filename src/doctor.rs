//! `ringgate doctor`: what this host offers the proxy, one pass/warn/fail line per check,
//! each with a hint. Runs on the main thread (it blocks on /proc reads and probes by
//! design) and never changes the host. Any fail → non-zero exit.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Config, KtlsMode};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub level: Level,
    pub name: &'static str,
    pub detail: String,
    pub hint: Option<String>,
}

fn check(level: Level, name: &'static str, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        level,
        name,
        detail: detail.into(),
        hint: hint.map(str::to_string),
    }
}

/// What the checks need to know about the intended configuration.
#[derive(Debug, Clone)]
pub struct Intent {
    pub workers: usize,
    pub max_connections_per_worker: usize,
    pub io_uring: bool,
    pub ktls: KtlsMode,
}

impl Intent {
    /// From a checked configuration (the strictest kTLS mode of any listener).
    pub fn from_config(c: &Config) -> Intent {
        let ktls = c
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref().map(|t| t.ktls))
            .fold(KtlsMode::Off, |acc, m| match (acc, m) {
                (KtlsMode::On, _) | (_, KtlsMode::On) => KtlsMode::On,
                (KtlsMode::Auto, _) | (_, KtlsMode::Auto) => KtlsMode::Auto,
                _ => KtlsMode::Off,
            });
        Intent {
            workers: c.server.workers,
            max_connections_per_worker: c.server.max_connections_per_worker,
            io_uring: c.server.io_uring,
            ktls,
        }
    }

    /// The built-in defaults (no configuration given).
    pub fn defaults() -> Intent {
        Intent {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections_per_worker: 16_384,
            io_uring: true,
            ktls: KtlsMode::Auto,
        }
    }
}

/// Runs every check.
pub fn run(intent: &Intent) -> Vec<Check> {
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let version = parse_version(&release);
    vec![
        kernel(&release, version),
        io_uring(intent),
        ktls(intent, version),
        nofile(intent),
        memlock(intent, version),
        cpus(intent),
    ]
}

/// Formats the report; the second value is the exit status to use.
pub fn render(checks: &[Check]) -> (String, i32) {
    let mut out = String::new();
    for c in checks {
        let tag = match c.level {
            Level::Pass => "pass",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {:<9} {}", c.name, c.detail);
        if let Some(h) = &c.hint {
            let _ = writeln!(out, "      {:<9} hint: {h}", "");
        }
    }
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Pass);
    let _ = writeln!(
        out,
        "{}",
        match worst {
            Level::Pass => "all checks passed",
            Level::Warn => "usable, with warnings",
            Level::Fail => "at least one check failed",
        }
    );
    (out, i32::from(worst == Level::Fail))
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `6.1.0-28-amd64` → (6, 1).
pub fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel(release: &str, v: Option<(u32, u32)>) -> Check {
    match v {
        Some(v) if v >= (5, 10) => check(
            Level::Pass,
            "kernel",
            format!("{release} (io_uring needs ≥ 5.10; kTLS re-key needs ≥ 6.14)"),
            None,
        ),
        Some(_) => check(
            Level::Warn,
            "kernel",
            format!("{release} is older than 5.10"),
            Some("workers will use the epoll fallback; upgrade for io_uring"),
        ),
        None => check(
            Level::Warn,
            "kernel",
            format!("cannot read the version ({release})"),
            None,
        ),
    }
}

fn io_uring(intent: &Intent) -> Check {
    if !intent.io_uring {
        return check(
            Level::Pass,
            "io_uring",
            "off in the configuration: workers use epoll",
            None,
        );
    }
    let disabled = read_trimmed("/proc/sys/kernel/io_uring_disabled").unwrap_or_else(|| "0".into());
    if disabled == "2" {
        return check(
            Level::Warn,
            "io_uring",
            "disabled by kernel.io_uring_disabled = 2: workers fall back to epoll",
            Some("sysctl -w kernel.io_uring_disabled=0"),
        );
    }
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build() {
        Ok(_) => check(
            Level::Pass,
            "io_uring",
            format!("available (kernel.io_uring_disabled = {disabled})"),
            None,
        ),
        Err(e) => check(
            Level::Warn,
            "io_uring",
            format!("cannot create a ring ({e}): workers fall back to epoll"),
            Some("a seccomp profile (e.g. Docker's default) or RLIMIT_MEMLOCK may block it"),
        ),
    }
}

fn ktls(intent: &Intent, v: Option<(u32, u32)>) -> Check {
    ktls_check(crate::transport::ktls::support(), intent.ktls, v)
}

/// The kTLS line: "no tls ULP" (TCP_ULP refused), "ULP attaches but every cipher is
/// refused" (TLS_TX fails: AEAD modules missing) and "some ciphers refused" are three
/// different problems with three different fixes.
fn ktls_check(
    support: &crate::transport::ktls::Support,
    mode: KtlsMode,
    v: Option<(u32, u32)>,
) -> Check {
    use crate::transport::ktls::Support;
    let rekey = if v.is_some_and(|v| v >= (6, 14)) {
        "; TLS 1.3 re-key supported"
    } else {
        "; a client KeyUpdate closes the connection (re-key needs ≥ 6.14)"
    };
    let what = support.describe();
    if mode == KtlsMode::Off {
        let detail = if support.is_available() {
            format!("available ({what}) but off in the configuration")
        } else {
            "off in the configuration".to_string()
        };
        return check(Level::Pass, "ktls", detail, None);
    }
    let unusable = if mode == KtlsMode::On {
        (Level::Fail, "ktls = \"on\" will refuse to start")
    } else {
        (Level::Warn, "connections stay in userspace rustls")
    };
    match support {
        Support::Ready { refused, .. } if refused.is_empty() => check(
            Level::Pass,
            "ktls",
            format!("TCP_ULP \"tls\" works: {what}{rekey}"),
            None,
        ),
        Support::Ready { .. } => check(
            Level::Warn,
            "ktls",
            format!(
                "TCP_ULP \"tls\" works: {what} — connections with a refused cipher stay in userspace rustls{rekey}"
            ),
            Some(
                "the kernel could not set up those ciphers: load their crypto modules \
                 (e.g. modprobe chacha20poly1305) or see dmesg",
            ),
        ),
        Support::NoCiphers(_) => check(
            unusable.0,
            "ktls",
            format!("unusable: {what} — {}", unusable.1),
            Some(
                "the tls module is loaded but the kernel's AEAD modules are not there \
                 (gcm, ghash, ctr, chacha20poly1305, chacha, poly1305 and their dependencies): \
                 install the kernel's full module package, or see dmesg",
            ),
        ),
        Support::NoUlp(_) | Support::ProbeFailed(_) => check(
            unusable.0,
            "ktls",
            format!("unavailable: {what} — {}", unusable.1),
            Some(if mode == KtlsMode::On {
                "modprobe tls (CONFIG_TLS=m), or set ktls = \"auto\""
            } else {
                "modprobe tls; on kernels built without CONFIG_TLS there is no kernel TLS"
            }),
        ),
    }
}

/// Soft limit from /proc/self/limits (`None` = unlimited), by row name.
fn limit(row: &str) -> Option<Option<u64>> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with(row))?;
    let soft = line[row.len()..].split_whitespace().next()?;
    Some(if soft == "unlimited" {
        None
    } else {
        soft.parse().ok()
    })
}

fn nofile(intent: &Intent) -> Check {
    // A client socket and (at most) an upstream socket per connection, plus listeners,
    // rings and pipes.
    let need = (intent.workers * intent.max_connections_per_worker * 2 + 256) as u64;
    match limit("Max open files") {
        Some(None) => check(Level::Pass, "nofile", "unlimited", None),
        Some(Some(n)) if n >= need => check(
            Level::Pass,
            "nofile",
            format!(
                "{n} ≥ {need} ({} workers × {} connections × 2)",
                intent.workers, intent.max_connections_per_worker
            ),
            None,
        ),
        Some(Some(n)) => check(
            Level::Warn,
            "nofile",
            format!(
                "{n} < {need} needed for {} workers × {} connections × 2: accepts will back off (EMFILE)",
                intent.workers, intent.max_connections_per_worker
            ),
            Some("raise LimitNOFILE= (systemd) or ulimit -n, or lower max_connections_per_worker"),
        ),
        None => check(Level::Warn, "nofile", "cannot read /proc/self/limits", None),
    }
}

fn memlock(intent: &Intent, v: Option<(u32, u32)>) -> Check {
    // Before 5.12 io_uring rings were charged to RLIMIT_MEMLOCK; ~256 KiB per worker ring.
    let need = intent.workers as u64 * 256 * 1024;
    let charged = v.is_some_and(|v| v < (5, 12));
    match limit("Max locked memory") {
        Some(None) => check(Level::Pass, "memlock", "unlimited", None),
        Some(Some(n)) if !charged => check(
            Level::Pass,
            "memlock",
            format!("{n} bytes (kernel ≥ 5.12 does not charge io_uring rings to it)"),
            None,
        ),
        Some(Some(n)) if n >= need => check(
            Level::Pass,
            "memlock",
            format!("{n} ≥ {need} bytes for the rings"),
            None,
        ),
        Some(Some(n)) => check(
            Level::Warn,
            "memlock",
            format!("{n} < {need} bytes: io_uring rings may fail to map on this kernel"),
            Some("raise LimitMEMLOCK= (systemd) or ulimit -l"),
        ),
        None => check(
            Level::Warn,
            "memlock",
            "cannot read /proc/self/limits",
            None,
        ),
    }
}

fn cpus(intent: &Intent) -> Check {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        return check(
            Level::Warn,
            "cpus",
            "cannot read the CPU set: workers will not be pinned",
            None,
        );
    }
    let pinned = std::thread::spawn({
        let cores = cores.clone();
        move || cores.iter().all(|&c| core_affinity::set_for_current(c))
    })
    .join()
    .unwrap_or(false);
    let detail = format!(
        "{} usable core(s), {} worker(s)",
        cores.len(),
        intent.workers
    );
    match (pinned, intent.workers > cores.len()) {
        (false, _) => check(
            Level::Warn,
            "cpus",
            format!("{detail}; pinning to a core failed"),
            Some("check the cgroup cpuset / taskset of the service"),
        ),
        (true, true) => check(
            Level::Warn,
            "cpus",
            format!("{detail}: more workers than cores share cores"),
            Some("workers = \"auto\" runs one per core"),
        ),
        (true, false) => check(
            Level::Pass,
            "cpus",
            format!("{detail}; pinning works"),
            None,
        ),
    }
}

/// The sysctl profiles shipped in tuning/, built into the binary.
pub const PROFILES: [(&str, &str); 2] = [
    (
        "edge-throughput",
        include_str!("../tuning/edge-throughput.conf"),
    ),
    ("edge-latency", include_str!("../tuning/edge-latency.conf")),
];

/// `key = value` pairs of a profile (comments and blank lines skipped, whitespace in
/// values folded), the same rules tuning/apply.sh follows.
pub fn parse_profile(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), fold(v)))
        .collect()
}

fn fold(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Compares the running kernel with profile `name` (see [`crate::profile`]): one check
/// summing it up, and the table tuning/apply.sh prints (empty for an unknown profile).
pub fn profile(name: &str) -> (Check, String) {
    profile_at(name, Path::new("/proc/sys"))
}

/// [`profile`] against a `/proc/sys`-like folder `root`.
pub fn profile_at(name: &str, root: &Path) -> (Check, String) {
    use crate::profile::{Action, compare, read_under, table};
    let Some((_, text)) = PROFILES.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
        let c = check(
            Level::Fail,
            "profile",
            format!("unknown profile {name:?} (known: {})", known.join(", ")),
            None,
        );
        return (c, String::new());
    };
    let rows = compare(&parse_profile(text), |k| read_under(root, k), false);
    let count = |a: Action| rows.iter().filter(|r| r.action == a).count();
    let writes = rows.iter().filter(|r| r.action.writes()).count();
    let detail = format!(
        "{name}: {} keys: {} ok, {} kept (already beyond the profile), {writes} to write, {} absent",
        rows.len(),
        count(Action::Ok),
        count(Action::Keep),
        count(Action::Absent),
    );
    let c = if writes == 0 {
        check(Level::Pass, "profile", detail, None)
    } else {
        let hint = format!("sudo tuning/apply.sh {name} --apply writes them (the table below)");
        check(Level::Warn, "profile", detail, Some(&hint))
    };
    (c, table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse_and_differ_where_goals_differ() {
        let t = parse_profile(PROFILES[0].1);
        let l = parse_profile(PROFILES[1].1);
        assert!(t.len() >= 20 && l.len() >= 20, "{} {}", t.len(), l.len());
        let get = |p: &[(String, String)], k: &str| {
            p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&t, "net.core.somaxconn"), Some("65535".into()));
        assert_ne!(
            get(&t, "net.ipv4.tcp_notsent_lowat"),
            get(&l, "net.ipv4.tcp_notsent_lowat")
        );
        assert_eq!(
            get(&t, "net.ipv4.tcp_rmem"),
            Some("4096 131072 67108864".into()),
            "whitespace folded"
        );
    }

    #[test]
    fn profile_check_names_deviations_or_passes() {
        let (c, table) = profile("edge-throughput");
        assert!(
            c.level == Level::Pass || (c.level == Level::Warn && c.detail.contains("to write")),
            "{c:?}"
        );
        assert!(table.starts_with("KEY "), "{table}");
        assert_eq!(table.lines().count(), 1 + 25, "a row per key:\n{table}");
        assert_eq!(profile("nope").0.level, Level::Fail);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(parse_version("5.10.0"), Some((5, 10)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn report_has_every_check_and_fails_only_on_fail() {
        let checks = run(&Intent::defaults());
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["kernel", "io_uring", "ktls", "nofile", "memlock", "cpus"]
        );
        let (text, code) = render(&checks);
        assert_eq!(
            code,
            i32::from(checks.iter().any(|c| c.level == Level::Fail))
        );
        assert!(text.lines().count() > checks.len(), "{text}");
    }

    #[test]
    fn ktls_wording_tells_no_ulp_from_no_ciphers_from_some_refused() {
        use crate::transport::ktls::{CASES, Support};
        let enoent = "No such file or directory (os error 2)".to_string();
        let no_ulp = ktls_check(
            &Support::NoUlp("the kernel refuses TCP_ULP \"tls\" (no tls module)".into()),
            KtlsMode::Auto,
            Some((6, 1)),
        );
        assert_eq!(no_ulp.level, Level::Warn);
        assert!(no_ulp.detail.contains("refuses TCP_ULP"), "{no_ulp:?}");

        let none = Support::NoCiphers(CASES.iter().map(|c| (*c, enoent.clone())).collect());
        let c = ktls_check(&none, KtlsMode::Auto, Some((6, 1)));
        assert_eq!(c.level, Level::Warn);
        assert!(
            c.detail.contains("TCP_ULP \"tls\" attaches")
                && c.detail.contains("refuses every cipher")
                && c.detail.contains("gcm(aes)")
                && c.detail.contains("rfc7539(chacha20,poly1305)")
                && !c.detail.contains("no tls module"),
            "{c:?}"
        );
        assert!(
            c.hint.as_deref().is_some_and(|h| h.contains("AEAD")),
            "{c:?}"
        );
        assert_eq!(ktls_check(&none, KtlsMode::On, None).level, Level::Fail);

        let chacha_refused = Support::Ready {
            offered: CASES
                .iter()
                .copied()
                .filter(|c| c.aead != crate::transport::ktls::Aead::Chacha20Poly1305)
                .collect(),
            refused: CASES
                .iter()
                .filter(|c| c.aead == crate::transport::ktls::Aead::Chacha20Poly1305)
                .map(|c| (*c, enoent.clone()))
                .collect(),
        };
        let c = ktls_check(&chacha_refused, KtlsMode::Auto, Some((7, 3)));
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(
            c.detail.contains(
                "refused by the kernel: TLS1.2 CHACHA20-POLY1305, TLS1.3 CHACHA20-POLY1305 \
                 (rfc7539(chacha20,poly1305): No such file or directory (os error 2))"
            ),
            "{c:?}"
        );
        assert!(chacha_refused.offers(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        assert!(!chacha_refused.offers(rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256));
    }

    #[test]
    fn ktls_on_without_kernel_support_is_a_failure() {
        let mut intent = Intent::defaults();
        intent.ktls = KtlsMode::On;
        let c = ktls(&intent, Some((6, 1)));
        if crate::transport::ktls::support().is_available() {
            assert_eq!(c.level, Level::Pass);
        } else {
            assert_eq!(c.level, Level::Fail);
            assert!(c.hint.is_some());
        }
    }
}
