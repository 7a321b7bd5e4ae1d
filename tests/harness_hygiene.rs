//! Rules every test under tests/ keeps, checked on the sources (no proxy runs here):
//! a child process is started only through a guard that kills and reaps it on every path
//! (`tests/common/child.rs`, or `ProxyProcess` in `tests/common/proxy.rs`), and no test
//! prints "skipped" and passes: a missing tool fails the test with its install hint, and
//! the one opt-out (`RINGGATE_SKIP_VM=1`) is reported as ignored by tests/ktls_vm.rs.

use std::path::{Path, PathBuf};

/// Files allowed to call `Command::spawn`: the guards themselves.
const GUARDS: &[&str] = &["tests/common/child.rs", "tests/common/proxy.rs"];

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read tests/").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// (path relative to the crate, line number, line) for every line of tests/**/*.rs.
fn lines() -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_sources(&root.join("tests"), &mut files);
    files.sort();
    assert!(files.len() > 10, "found the test sources: {files:?}");
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            out.push((rel.clone(), i + 1, line.to_string()));
        }
    }
    out
}

#[test]
fn every_child_process_is_started_through_a_guard() {
    // `.spawn()` without arguments is `Command::spawn` (a thread's spawn takes a closure).
    let spawn = [".spawn", "()"].concat();
    let unguarded: Vec<String> = lines()
        .into_iter()
        .filter(|(file, _, line)| {
            !GUARDS.contains(&file.as_str())
                && !line.trim_start().starts_with("//")
                && line.contains(&spawn)
        })
        .map(|(file, n, line)| format!("{file}:{n}: {}", line.trim()))
        .collect();
    assert!(
        unguarded.is_empty(),
        "start child processes with common::child::ChildGuard::spawn (killed and reaped when \
         dropped, also when the test panics), not Command::spawn:\n{}",
        unguarded.join("\n")
    );
}

#[test]
fn no_test_passes_by_printing_skipped() {
    let printing = ["println!(", "writeln!(", "print!(", "write!("];
    let skips: Vec<String> = lines()
        .into_iter()
        .filter(|(_, _, line)| {
            let lower = line.to_lowercase();
            printing.iter().any(|p| line.contains(p)) && lower.contains("skip")
        })
        .map(|(file, n, line)| format!("{file}:{n}: {}", line.trim()))
        .collect();
    assert!(
        skips.is_empty(),
        "a test whose tool is missing fails with the install hint; the only skip is \
         RINGGATE_SKIP_VM=1, reported as ignored (tests/ktls_vm.rs):\n{}",
        skips.join("\n")
    );
}
