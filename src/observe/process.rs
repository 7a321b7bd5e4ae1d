//! The `process_*` metrics every Prometheus client library exports (the names and units
//! of client_golang's process collector): CPU time, start time, resident and virtual
//! memory, open and maximum file descriptors. Read from `/proc/self` (and `/proc/stat`
//! for the boot time) at scrape time, on the admin thread — never on a worker. A value
//! that cannot be read (no procfs) is left out of the scrape rather than reported as 0.

use super::{MetricType, Registry};

/// The unit of the times in `/proc/<pid>/stat`: USER_HZ, a kernel ABI constant (100 on
/// x86, arm and every other architecture ringgate builds for), not the kernel's CONFIG_HZ.
const USER_HZ: f64 = 100.0;

/// Registers the `process_*` families on `registry`.
pub fn register(registry: &Registry) {
    let one = |v: Option<f64>| v.map(|v| (Vec::new(), v)).into_iter().collect();
    registry.family_fn(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::Counter,
        move || one(read_stat().map(|s| s.cpu_seconds())),
    );
    registry.family_fn(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge,
        move || {
            let boot = read("/proc/stat").and_then(|t| boot_time(&t));
            one(read_stat().zip(boot).map(|(s, b)| s.start_time(b)))
        },
    );
    registry.family_fn(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::Gauge,
        move || one(read("/proc/self/status").and_then(|t| status_kib(&t, "VmRSS:"))),
    );
    registry.family_fn(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::Gauge,
        move || one(read("/proc/self/status").and_then(|t| status_kib(&t, "VmSize:"))),
    );
    registry.family_fn(
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::Gauge,
        move || {
            one(std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64))
        },
    );
    registry.family_fn(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::Gauge,
        move || one(read("/proc/self/limits").and_then(|t| max_open_files(&t))),
    );
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The fields of `/proc/self/stat` these metrics use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// utime + stime, in USER_HZ ticks.
    pub cpu_ticks: u64,
    /// Start after boot, in USER_HZ ticks.
    pub start_ticks: u64,
}

impl Stat {
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / USER_HZ
    }

    /// Unix time of the start, given the boot time (`btime` of /proc/stat).
    pub fn start_time(&self, boot_unix: f64) -> f64 {
        boot_unix + self.start_ticks as f64 / USER_HZ
    }
}

fn read_stat() -> Option<Stat> {
    parse_stat(&read("/proc/self/stat")?)
}

/// Parses `/proc/<pid>/stat` (proc(5)): fields after the command name, which is in
/// parentheses and may itself hold spaces or parentheses (hence the last `)`).
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: num(14)? + num(15)?,
        start_ticks: num(22)?,
    })
}

/// `btime` (boot time, Unix seconds) of `/proc/stat`.
pub fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// A `Key:   N kB` line of `/proc/self/status`, in bytes.
pub fn status_kib(text: &str, key: &str) -> Option<f64> {
    let v = text.lines().find_map(|l| l.strip_prefix(key))?;
    let kib: f64 = v.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

/// The soft `Max open files` limit of `/proc/self/limits` ("unlimited" → none).
pub fn max_open_files(text: &str) -> Option<f64> {
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    v.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        // A command name with a space and a parenthesis, as `comm` allows.
        let stat = "4242 (ring gate) w) S 1 4242 4242 0 -1 4194560 1528 0 0 0 \
                    250 130 0 0 20 0 3 0 98765 1056768000 5120 18446744073709551615";
        let s = parse_stat(stat).expect("stat parses");
        assert_eq!(
            s,
            Stat {
                cpu_ticks: 380,
                start_ticks: 98765
            }
        );
        assert_eq!(s.cpu_seconds(), 3.8);
        assert_eq!(s.start_time(1_700_000_000.0), 1_700_000_987.65);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000.0)
        );
        let status = "Name:\tringgate\nVmSize:\t  1032000 kB\nVmRSS:\t    20480 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(20480.0 * 1024.0));
        assert_eq!(status_kib(status, "VmSize:"), Some(1032000.0 * 1024.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files\n"),
            None
        );
    }

    #[test]
    fn this_process_reports_every_family() {
        let r = Registry::new(1, 1);
        let text = r.render();
        for name in [
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name} in:\n{text}");
        }
    }
}
