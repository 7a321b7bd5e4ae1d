//! Sysctl tuning profiles (tuning/*.conf) against the running kernel: which keys are
//! fine, which a profile would write and to what — the rules tuning/apply.sh follows, for
//! `ringgate doctor --profile`. Reads only (a `/proc/sys`-like folder); never writes.
//!
//! A profile raises minimums: a running value already beyond the profile's is kept
//! (tcp_rmem's max 33554432 against a profile's 16777216; tcp_tw_reuse 2 against 1).
//! Numbers compare field by field. A few keys are caps, ranges, bitmasks or choices
//! ([`mode`]). `exact` sets every key to the profile value.

use std::fmt::Write as _;
use std::path::Path;

/// How a profile value relates to a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Numbers, field by field: raised, never lowered.
    Min,
    /// A cap or an off switch: lowered, never raised.
    Max,
    /// `LOW HIGH`: only widened.
    Range,
    /// A bitmask: the profile's bits are added.
    Bits,
    /// Names (bbr, fq) and values that are a choice.
    Exact,
}

/// The mode of `key` with profile value `value` (tuning/apply.sh's `key_mode`).
pub fn mode(key: &str, value: &str) -> Mode {
    match key {
        "net.ipv4.tcp_fin_timeout"
        | "net.ipv4.tcp_slow_start_after_idle"
        | "net.ipv4.tcp_notsent_lowat"
        | "kernel.io_uring_disabled" => Mode::Max,
        "net.ipv4.ip_local_port_range" => Mode::Range,
        "net.ipv4.tcp_fastopen" => Mode::Bits,
        "net.core.busy_poll" | "net.core.busy_read" => Mode::Exact,
        _ if numbers(value).is_some() => Mode::Min,
        _ => Mode::Exact,
    }
}

fn numbers(v: &str) -> Option<Vec<u128>> {
    v.split_whitespace().map(|f| f.parse().ok()).collect()
}

/// The value to leave for running `cur` and profile `want` (whitespace folded).
pub fn target(cur: &str, want: &str, mode: Mode) -> String {
    let (Some(c), Some(w)) = (numbers(cur), numbers(want)) else {
        return want.to_string();
    };
    if mode == Mode::Exact || c.len() != w.len() {
        return want.to_string();
    }
    let out: Vec<String> = c
        .iter()
        .zip(&w)
        .enumerate()
        .map(|(i, (&c, &w))| match mode {
            Mode::Min => c.max(w),
            Mode::Max => c.min(w),
            Mode::Range if i == 0 => c.min(w),
            Mode::Range => c.max(w),
            Mode::Bits => c | w,
            Mode::Exact => w,
        })
        .map(|v| v.to_string())
        .collect();
    out.join(" ")
}

/// What a profile does to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ok,
    Keep,
    Raise,
    Lower,
    Set,
    Absent,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Ok => "ok",
            Action::Keep => "keep",
            Action::Raise => "raise",
            Action::Lower => "lower",
            Action::Set => "set",
            Action::Absent => "absent",
        }
    }

    pub fn writes(self) -> bool {
        matches!(self, Action::Raise | Action::Lower | Action::Set)
    }
}

/// One key of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    /// `None`: the kernel has no such key (or it cannot be read).
    pub running: Option<String>,
    pub profile: String,
    pub action: Action,
    /// What would be written (the profile value unless a field is kept).
    pub target: String,
}

/// Compares profile `pairs` with the values `read` returns (whitespace folded).
pub fn compare(
    pairs: &[(String, String)],
    read: impl Fn(&str) -> Option<String>,
    exact: bool,
) -> Vec<Row> {
    pairs
        .iter()
        .map(|(key, want)| {
            let running = read(key).map(|v| fold(&v));
            let (action, target) = match &running {
                None => (Action::Absent, want.clone()),
                Some(cur) if cur == want => (Action::Ok, want.clone()),
                Some(cur) => {
                    let t = if exact {
                        want.clone()
                    } else {
                        target(cur, want, mode(key, want))
                    };
                    let action = match (cur.parse::<u128>(), t.parse::<u128>()) {
                        _ if t == *cur => Action::Keep,
                        (Ok(c), Ok(t)) if c < t => Action::Raise,
                        (Ok(_), Ok(_)) => Action::Lower,
                        _ => Action::Set,
                    };
                    (action, t)
                }
            };
            Row {
                key: key.clone(),
                running,
                profile: want.clone(),
                action,
                target,
            }
        })
        .collect()
}

/// Reads `key` under a `/proc/sys`-like `root`.
pub fn read_under(root: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(root.join(key.replace('.', "/"))).ok()
}

/// The table tuning/apply.sh prints: KEY, RUNNING, PROFILE, ACTION (`-> VALUE` when what
/// would be written is not the profile value).
pub fn table(rows: &[Row]) -> String {
    let running = |r: &Row| r.running.clone().unwrap_or_else(|| "-".into());
    let kw = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(3);
    let rw = rows
        .iter()
        .map(|r| running(r).len())
        .max()
        .unwrap_or(0)
        .max(7);
    let pw = rows
        .iter()
        .map(|r| r.profile.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:kw$}  {:rw$}  {:pw$}  ACTION",
        "KEY", "RUNNING", "PROFILE"
    );
    for r in rows {
        let mut action = r.action.name().to_string();
        if r.action.writes() && r.target != r.profile {
            let _ = write!(action, " -> {}", r.target);
        }
        let _ = writeln!(
            out,
            "{:kw$}  {:rw$}  {:pw$}  {action}",
            r.key,
            running(r),
            r.profile
        );
    }
    out
}

fn fold(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_raises_minimums_and_keeps_larger_values() {
        let pairs: Vec<(String, String)> = [
            ("net.ipv4.tcp_rmem", "4096 131072 16777216"),
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.core.somaxconn", "65535"),
            ("net.ipv4.tcp_fin_timeout", "15"),
            ("net.ipv4.ip_local_port_range", "10240 65535"),
            ("net.ipv4.tcp_fastopen", "3"),
            ("net.core.default_qdisc", "fq"),
            ("fs.file-max", "9223372036854775807"),
            ("vm.max_map_count", "262144"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let running = |k: &str| {
            Some(
                match k {
                    "net.ipv4.tcp_rmem" => "4096\t87380\t33554432",
                    "net.ipv4.tcp_tw_reuse" => "2",
                    "net.core.somaxconn" => "4096",
                    "net.ipv4.tcp_fin_timeout" => "60",
                    "net.ipv4.ip_local_port_range" => "1024\t60999",
                    "net.ipv4.tcp_fastopen" => "1024",
                    "net.core.default_qdisc" => "pfifo_fast",
                    "fs.file-max" => "9223372036854775807",
                    _ => return None,
                }
                .to_string(),
            )
        };
        let rows = compare(&pairs, running, false);
        let summary: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.action.name(), r.target.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("set", "4096 131072 33554432"),
                ("keep", "2"),
                ("raise", "65535"),
                ("lower", "15"),
                ("set", "1024 65535"),
                ("raise", "1027"),
                ("set", "fq"),
                ("ok", "9223372036854775807"),
                ("absent", "262144"),
            ]
        );
        let exact = compare(&pairs, running, true);
        assert_eq!(exact[0].target, "4096 131072 16777216");
        assert_eq!(exact[1].action, Action::Lower);
        let t = table(&rows);
        assert!(t.starts_with("KEY "), "{t}");
        assert!(t.contains("set -> 4096 131072 33554432\n"), "{t}");
    }
}
