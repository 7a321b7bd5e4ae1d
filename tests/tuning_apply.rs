//! tuning/apply.sh against a fake /proc/sys (`--root`): a profile raises minimums and
//! never lowers a larger running value unless `--exact` (tcp_rmem's max 33554432 stays
//! against edge-latency's 16777216, tcp_tw_reuse 2 stays 2), `--install` persists what
//! the run left, and `ringgate doctor --profile` prints the same table.

use std::path::Path;
use std::process::{Command, Output};

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/apply.sh")
}

fn apply(root: &Path, args: &[&str], sysctl_d: &Path) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new("bash")
        .arg(script())
        .args(args)
        .arg("--root")
        .arg(root)
        .env("SYSCTL_D_DIR", sysctl_d)
        .output()
        .expect("bash runs tuning/apply.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.code().unwrap_or(-1), text)
}

fn set(root: &Path, key: &str, value: &str) {
    let path = root.join(key.replace('.', "/"));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, format!("{value}\n")).expect("write key");
}

fn get(root: &Path, key: &str) -> String {
    std::fs::read_to_string(root.join(key.replace('.', "/")))
        .expect("read key")
        .trim()
        .to_string()
}

/// Every key of edge-latency with a running value; a few beyond the profile.
fn fake_proc_sys(root: &Path) {
    let text = ringgate::doctor::PROFILES
        .iter()
        .find(|(n, _)| *n == "edge-latency")
        .expect("edge-latency ships")
        .1;
    for (key, _) in ringgate::doctor::parse_profile(text) {
        set(root, &key, "0");
    }
    set(root, "net.ipv4.tcp_rmem", "4096\t87380\t33554432");
    set(root, "net.ipv4.tcp_wmem", "4096\t16384\t4194304");
    set(root, "net.ipv4.tcp_tw_reuse", "2");
    set(root, "net.core.somaxconn", "4096");
    set(root, "net.ipv4.tcp_fin_timeout", "60");
    set(root, "net.ipv4.ip_local_port_range", "32768\t60999");
    set(root, "net.core.default_qdisc", "pfifo_fast");
    set(root, "net.ipv4.tcp_congestion_control", "cubic");
    set(root, "fs.file-max", "9223372036854775807");
    // Not on this "kernel".
    std::fs::remove_file(root.join("kernel/io_uring_disabled")).expect("rm");
}

/// The table rows: from the KEY header to the blank line after them.
fn table(text: &str) -> String {
    let start = text
        .find("KEY ")
        .unwrap_or_else(|| panic!("no table:\n{text}"));
    let rest = &text[start..];
    rest[..rest.find("\n\n").map_or(rest.len(), |i| i + 1)].to_string()
}

#[test]
fn a_profile_never_lowers_a_larger_running_value_unless_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("sys");
    let sysctl_d = dir.path().join("sysctl.d");
    fake_proc_sys(&root);

    let (code, dry) = apply(&root, &["edge-latency"], &sysctl_d);
    assert_eq!(code, 3, "dry run: something to write\n{dry}");
    let row = |key: &str| -> String {
        dry.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no row for {key}:\n{dry}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("net.ipv4.tcp_rmem").ends_with("set -> 4096 131072 33554432"),
        "{dry}"
    );
    assert!(row("net.ipv4.tcp_tw_reuse").ends_with(" keep"), "{dry}");
    assert!(row("net.core.somaxconn").ends_with(" raise"), "{dry}");
    assert!(row("net.ipv4.tcp_fin_timeout").ends_with(" lower"), "{dry}");
    assert!(
        row("kernel.io_uring_disabled").ends_with(" absent"),
        "{dry}"
    );

    // `ringgate doctor --profile` prints the same table for the same host.
    let (check, doctor) = ringgate::doctor::profile_at("edge-latency", &root);
    assert_eq!(doctor, table(&dry), "doctor and apply.sh agree");
    assert!(check.detail.contains("2 kept"), "{check:?}");

    let (code, out) = apply(&root, &["edge-latency", "--apply", "--install"], &sysctl_d);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&root, "net.ipv4.tcp_rmem"), "4096 131072 33554432");
    assert_eq!(get(&root, "net.ipv4.tcp_wmem"), "4096 16384 16777216");
    assert_eq!(get(&root, "net.ipv4.tcp_tw_reuse"), "2");
    assert_eq!(get(&root, "net.core.somaxconn"), "65535");
    assert_eq!(get(&root, "net.ipv4.tcp_fin_timeout"), "15");
    assert_eq!(get(&root, "net.ipv4.ip_local_port_range"), "10240 65535");
    assert_eq!(get(&root, "fs.file-max"), "9223372036854775807");
    // What boots apply is what this run left, kept values included.
    let installed = std::fs::read_to_string(sysctl_d.join("90-ringgate-edge-latency.conf"))
        .expect("installed profile");
    assert!(
        installed.contains("\nnet.ipv4.tcp_tw_reuse = 2\n"),
        "{installed}"
    );
    assert!(
        installed.contains("\nnet.ipv4.tcp_rmem = 4096 131072 33554432\n"),
        "{installed}"
    );
    let (code, again) = apply(&root, &["edge-latency"], &sysctl_d);
    assert_eq!(code, 0, "nothing left to write\n{again}");

    let (code, out) = apply(&root, &["edge-latency", "--apply", "--exact"], &sysctl_d);
    assert_eq!(code, 0, "{out}");
    assert_eq!(get(&root, "net.ipv4.tcp_rmem"), "4096 131072 16777216");
    assert_eq!(get(&root, "net.ipv4.tcp_tw_reuse"), "1");
}
