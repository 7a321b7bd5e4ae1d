//! "Modules depend downwards only", checked: the layers written in `src/lib.rs` (the
//! block after `## Layers`) and the file order written in `src/transport/mod.rs` (the
//! block after `Files depend downwards only`) against every `crate::` (and, inside
//! `transport`, `super::`) path in the source, test code left out. A module may name
//! only modules on lines below its own; every module of the crate must be on a line.
//!
//! A plain text scan, no parser: a path in a string literal counts as a use (rename it
//! or move the code); grouped imports of a folder's re-exports (`super::{A, B}`) are
//! not resolved to the file that defines them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The lines of the fenced block that follows the first doc line containing `marker`:
/// each line's names before `|`, top line first.
fn layers(doc: &str, marker: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = doc
        .lines()
        .map(|l| l.trim_start().trim_start_matches("//!").trim())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` in the module doc"));
    let fence = start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with("```"))
            .unwrap_or_else(|| panic!("no block after `{marker}`"));
    let mut out = Vec::new();
    for l in &lines[fence + 1..] {
        if l.starts_with("```") {
            return out;
        }
        let names = l.split('|').next().unwrap_or("");
        let names: Vec<String> = names.split_whitespace().map(str::to_string).collect();
        if !names.is_empty() {
            out.push(names);
        }
    }
    panic!("the block after `{marker}` is not closed");
}

fn rank(layers: &[Vec<String>]) -> HashMap<String, usize> {
    let mut r = HashMap::new();
    for (i, line) in layers.iter().enumerate() {
        for name in line {
            assert!(
                r.insert(name.clone(), i).is_none(),
                "{name} is listed twice"
            );
        }
    }
    r
}

/// Every `.rs` file under `dir`, test-only files left out.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if name != "tests" && !name.ends_with("_tests") {
                out.push(p);
            }
        }
    }
}

/// The lines of `text` outside comments and `#[cfg(test)]` items, with their numbers.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if t.starts_with("#[cfg(test)]") {
            // Skip the item: a `mod … {` to its closing brace, anything else one line.
            i += 1;
            while i < lines.len() && lines[i].trim().starts_with("#[") {
                i += 1;
            }
            if i < lines.len() && lines[i].trim_end().ends_with('{') {
                let mut depth = 0i32;
                while i < lines.len() {
                    depth += lines[i].matches('{').count() as i32;
                    depth -= lines[i].matches('}').count() as i32;
                    i += 1;
                    if depth <= 0 {
                        break;
                    }
                }
            } else {
                i += 1;
            }
            continue;
        }
        if !t.starts_with("//") {
            out.push((i + 1, lines[i].split("//").next().unwrap_or("")));
        }
        i += 1;
    }
    out
}

/// The lower-case path segments after each occurrence of `prefix` in `line`
/// (`crate::a::b::C` → `["a", "b"]`); grouped imports (`prefix{`) are skipped.
fn paths<'a>(line: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segs: Vec<&str> = rest[..end]
            .split("::")
            .take_while(|s| !s.is_empty() && s.starts_with(|c: char| c.is_ascii_lowercase()))
            .collect();
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

#[test]
fn modules_depend_downwards_only() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib, "## Layers");
    let rank = rank(&layers);
    // Every module declared in lib.rs has its line.
    for l in lib.lines() {
        if let Some(m) = l
            .trim()
            .strip_prefix("pub mod ")
            .or(l.trim().strip_prefix("mod "))
        {
            let m = m.trim_end_matches(';');
            assert!(
                rank.contains_key(m),
                "module `{m}` is not on a line of `## Layers` in src/lib.rs: add it where its \
                 imports put it"
            );
        }
    }
    // The node a file or a path belongs to: `a::b` when the layers list it, else `a`.
    let node = |segs: &[&str]| -> Option<String> {
        if segs.len() >= 2 {
            let two = format!("{}::{}", segs[0], segs[1]);
            if rank.contains_key(&two) {
                return Some(two);
            }
        }
        rank.contains_key(segs[0]).then(|| segs[0].to_string())
    };
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut wrong = Vec::new();
    for f in &all {
        let rel = f.strip_prefix(src()).expect("under src");
        let mut segs: Vec<&str> = rel.iter().filter_map(|s| s.to_str()).collect();
        let last = segs.len() - 1;
        segs[last] = segs[last].trim_end_matches(".rs");
        if segs[last] == "mod" {
            segs.pop();
        }
        if segs == ["lib"] || segs == ["main"] {
            continue;
        }
        let Some(from) = node(&segs) else {
            panic!("{}: not in a module the layers list", rel.display());
        };
        let text = std::fs::read_to_string(f).expect("source file");
        for (n, line) in code_lines(&text) {
            // `super::x` from a file directly in a folder is the folder's `x`.
            let mut targets: Vec<Vec<&str>> = paths(line, "crate::");
            if segs.len() == 2 {
                for p in paths(line, "super::") {
                    targets.push([&[segs[0]][..], &p[..]].concat());
                }
            }
            for t in targets {
                let Some(to) = node(&t) else { continue };
                if to != from && rank[&to] <= rank[&from] {
                    wrong.push(format!(
                        "{}:{n}: {from} → {to}: {}",
                        rel.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that go up or sideways in `## Layers` (src/lib.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn transport_files_depend_downwards_only() {
    let dir = src().join("transport");
    let doc = std::fs::read_to_string(dir.join("mod.rs")).expect("src/transport/mod.rs");
    let order = layers(&doc, "Files depend downwards only");
    let rank = rank(&order);
    let mut all = Vec::new();
    files(&dir, &mut all);
    let mut wrong = Vec::new();
    for f in &all {
        let rel = f.strip_prefix(&dir).expect("under src/transport");
        let segs: Vec<&str> = rel.iter().filter_map(|s| s.to_str()).collect();
        let from = segs[0].trim_end_matches(".rs");
        if from == "mod" {
            continue;
        }
        assert!(
            rank.contains_key(from),
            "src/transport/{}: `{from}` is not in the file order of src/transport/mod.rs",
            rel.display()
        );
        // In a file directly under transport/ (or a folder's mod.rs) `super` is transport.
        let super_is_transport = segs.len() == 1 || segs[1] == "mod.rs";
        let text = std::fs::read_to_string(f).expect("source file");
        for (n, line) in code_lines(&text) {
            let mut targets: Vec<&str> = paths(line, "crate::transport::")
                .into_iter()
                .filter(|p| p.len() >= 2 || line.contains(&format!("transport::{}::", p[0])))
                .map(|p| p[0])
                .collect();
            if super_is_transport {
                targets.extend(paths(line, "super::").into_iter().map(|p| p[0]));
            }
            for to in targets {
                if to != from && rank.get(to).is_some_and(|&r| r <= rank[from]) {
                    wrong.push(format!(
                        "src/transport/{}:{n}: {from} → {to}: {}",
                        rel.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "transport files that import up or sideways (src/transport/mod.rs):\n{}",
        wrong.join("\n")
    );
}
