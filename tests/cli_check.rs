//! `ringgate check -c FILE` with the real binary: a good config passes with a summary; each
//! kind of mistake fails with exit code 1 and a `FILE:LINE:COL: field: reason` message.
//! Every config under `examples/` must pass.

mod common;

use std::path::Path;

use common::backend::refusing_addr;
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{CliOutput, run_cli, toml_str};

/// A config dir with a good certificate pair named `server.pem` / `server.key`, and a
/// mismatched pair `mismatch.pem` / `mismatch.key`.
struct Dir {
    pki: TestPki,
}

impl Dir {
    fn new() -> Dir {
        let pki = TestPki::new();
        let good = pki.leaf(&["app.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let bad = pki.mismatched(&["app.test"], KeyType::EcdsaP256);
        copy_pair(&good, pki.dir(), "server");
        copy_pair(&bad, pki.dir(), "mismatch");
        Dir { pki }
    }

    fn path(&self) -> &Path {
        self.pki.dir()
    }

    /// Writes `text` as `name` and runs `ringgate check -c <absolute path>`.
    fn check(&self, name: &str, text: &str) -> CliOutput {
        let file = self.path().join(name);
        std::fs::write(&file, text).expect("write config");
        run_cli(&["check", "-c", &file.to_string_lossy()], self.path())
    }
}

fn copy_pair(files: &CertFiles, dir: &Path, stem: &str) {
    std::fs::copy(&files.cert, dir.join(format!("{stem}.pem"))).expect("copy cert");
    std::fs::copy(&files.key, dir.join(format!("{stem}.key"))).expect("copy key");
}

/// A valid config; `{CERT}`, `{KEY}`, `{UPSTREAM}`, `{TIMEOUT}` and `{EXTRA}` are
/// replaced by the cases below.
const TEMPLATE: &str = r#"# ringgate test config
[server]
workers = 2

[http]
max_headers = 50

[[listener]]
addr = "127.0.0.1:18443"
[listener.tls]
min_version = "1.2"
[[listener.tls.certificates]]
cert = {CERT}
key = {KEY}

[[route]]
host = "app.test"
path_prefix = "/"
upstream = {UPSTREAM}

[upstream.backend]
servers = [{SERVER}]
connect_timeout_ms = {TIMEOUT}
read_timeout_ms = 30000
{EXTRA}
"#;

fn config(cert: &str, key: &str, upstream: &str, timeout: &str, extra: &str) -> String {
    TEMPLATE
        .replace("{CERT}", &toml_str(cert))
        .replace("{KEY}", &toml_str(key))
        .replace("{UPSTREAM}", &toml_str(upstream))
        .replace("{SERVER}", &toml_str(&refusing_addr().to_string()))
        .replace("{TIMEOUT}", timeout)
        .replace("{EXTRA}", extra)
}

fn good() -> String {
    config("server.pem", "server.key", "backend", "5000", "")
}

/// 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config"))
        + 1
}

/// Checks exit code 1 and a message line `NAME:LINE:...` that names `field` (if any), has a
/// reason after it, and contains every word of `words` (case-insensitive).
fn expect_error(out: &CliOutput, name: &str, line: usize, field: Option<&str>, words: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "check of {name} must exit 1; output:\n{}",
        out.text
    );
    let place = format!("{name}:{line}:");
    let found = out.text.lines().find(|l| {
        let lower = l.to_ascii_lowercase();
        l.contains(&place)
            && field.is_none_or(|f| {
                l.split_once(&format!("{f}: "))
                    .is_some_and(|(_, reason)| reason.trim().len() >= 3)
            })
            && words
                .iter()
                .all(|w| lower.contains(&w.to_ascii_lowercase()))
    });
    assert!(
        found.is_some(),
        "expected a line with {place:?}, field {field:?} followed by a reason, and words \
         {words:?}; output:\n{}",
        out.text
    );
}

#[test]
fn good_config_passes_with_a_summary() {
    let d = Dir::new();
    let out = d.check("good.toml", &good());
    assert_eq!(out.status.code(), Some(0), "output:\n{}", out.text);
    let lower = out.text.to_ascii_lowercase();
    assert!(lower.contains("ok"), "a summary saying ok:\n{}", out.text);
    assert!(
        out.text.contains("127.0.0.1:18443") && out.text.contains("backend"),
        "the summary names the listener and the upstream:\n{}",
        out.text
    );
}

#[test]
fn unreadable_certificate_file() {
    let d = Dir::new();
    let text = config("missing.pem", "server.key", "backend", "5000", "");
    let out = d.check("bad-cert.toml", &text);
    expect_error(
        &out,
        "bad-cert.toml",
        line_of(&text, "missing.pem"),
        Some("listener[0].tls.certificates[0].cert"),
        &["missing.pem"],
    );
}

#[test]
fn key_not_matching_certificate() {
    let d = Dir::new();
    let text = config("mismatch.pem", "mismatch.key", "backend", "5000", "");
    let out = d.check("bad-key.toml", &text);
    expect_error(
        &out,
        "bad-key.toml",
        line_of(&text, "mismatch.key"),
        Some("listener[0].tls.certificates[0].key"),
        &["match"],
    );
}

#[test]
fn unknown_upstream_in_route() {
    let d = Dir::new();
    let text = config("server.pem", "server.key", "nope", "5000", "");
    let out = d.check("bad-route.toml", &text);
    expect_error(
        &out,
        "bad-route.toml",
        line_of(&text, "\"nope\""),
        Some("route[0].upstream"),
        &["nope", "backend"],
    );
}

#[test]
fn duplicate_listener_address() {
    let d = Dir::new();
    let mut text = good();
    text += "\n[[listener]]\naddr = \"127.0.0.1:18080\"\n";
    text += "\n[[listener]]\naddr = \"127.0.0.1:18080\"  # again\n";
    let out = d.check("dup-listener.toml", &text);
    expect_error(
        &out,
        "dup-listener.toml",
        line_of(&text, "# again"),
        Some("listener[2].addr"),
        &["duplicate", "127.0.0.1:18080"],
    );
}

#[test]
fn unknown_upstream_protocol() {
    let d = Dir::new();
    let text = config(
        "server.pem",
        "server.key",
        "backend",
        "5000",
        "protocol = \"h3\"  # not a wire ringgate speaks",
    );
    let out = d.check("protocol.toml", &text);
    expect_error(
        &out,
        "protocol.toml",
        line_of(&text, "protocol = "),
        Some("upstream.backend.protocol"),
        &["unknown protocol", "h3", "http1", "h2"],
    );
    // The two it speaks pass.
    for p in ["http1", "h2"] {
        let ok = config(
            "server.pem",
            "server.key",
            "backend",
            "5000",
            &format!("protocol = \"{p}\""),
        );
        let out = d.check("protocol-ok.toml", &ok);
        assert_eq!(out.status.code(), Some(0), "protocol {p}: {}", out.text);
    }
}

#[test]
fn zero_duration() {
    let d = Dir::new();
    let text = config("server.pem", "server.key", "backend", "0", "");
    let out = d.check("zero-timeout.toml", &text);
    expect_error(
        &out,
        "zero-timeout.toml",
        line_of(&text, "connect_timeout_ms"),
        Some("upstream.backend.connect_timeout_ms"),
        &[],
    );
}

#[test]
fn unknown_forwarding_header() {
    let d = Dir::new();
    let text = good().replace(
        "max_headers = 50\n",
        "max_headers = 50\nforward_headers = [\"x-forwarded-for\",\n  \"x-forwarded-host\"]\n",
    );
    let out = d.check("bad-forward.toml", &text);
    expect_error(
        &out,
        "bad-forward.toml",
        line_of(&text, "x-forwarded-host"),
        Some("http.forward_headers"),
        &["x-forwarded-host", "x-real-ip"],
    );
}

#[test]
fn unknown_path_and_forwarding_actions() {
    let d = Dir::new();
    let text = good().replace(
        "max_headers = 50\n",
        "max_headers = 50\nmerge_slashes = false\nescaped_slashes = \"unescape\"\n\
         malformed_forwarding_headers = \"ignore\"\n",
    );
    let out = d.check("bad-actions.toml", &text);
    expect_error(
        &out,
        "bad-actions.toml",
        line_of(&text, "escaped_slashes"),
        Some("http.escaped_slashes"),
        &["unescape", "reject", "keep", "decode"],
    );
    expect_error(
        &out,
        "bad-actions.toml",
        line_of(&text, "malformed_forwarding_headers"),
        Some("http.malformed_forwarding_headers"),
        &["ignore", "drop", "reject"],
    );
    let text = good().replace(
        "max_headers = 50\n",
        "max_headers = 50\nmerge_slashes = false\nescaped_slashes = \"keep\"\n\
         malformed_forwarding_headers = \"reject\"\n",
    );
    let out = d.check("good-actions.toml", &text);
    assert_eq!(out.status.code(), Some(0), "output:\n{}", out.text);
}

#[test]
fn negative_duration() {
    let d = Dir::new();
    let text = config("server.pem", "server.key", "backend", "-5", "");
    let out = d.check("negative-timeout.toml", &text);
    expect_error(
        &out,
        "negative-timeout.toml",
        line_of(&text, "connect_timeout_ms"),
        Some("upstream.backend.connect_timeout_ms"),
        &["-5"],
    );
}

#[test]
fn unknown_key_is_an_error_with_the_nearest_known_key() {
    let d = Dir::new();
    let text = config(
        "server.pem",
        "server.key",
        "backend",
        "5000",
        "conect_timeout_ms = 100",
    );
    let out = d.check("typo.toml", &text);
    expect_error(
        &out,
        "typo.toml",
        line_of(&text, "conect_timeout_ms"),
        Some("upstream.backend.conect_timeout_ms"),
        &["unknown key", "did you mean `connect_timeout_ms`?"],
    );
}

/// The error lines of a `ringgate check` run on `name` (`name:LINE:COL: …`), in order.
fn error_lines<'o>(out: &'o CliOutput, name: &str) -> Vec<&'o str> {
    let prefix = format!("{name}:");
    out.text
        .lines()
        .filter_map(|l| l.find(&prefix).map(|at| &l[at..]))
        .filter(|l| l[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

#[test]
fn four_mistakes_are_four_errors_even_when_the_first_is_a_schema_error() {
    // Issue 20 item 5: a typo and a wrong type (schema) before a port out of range and
    // an unknown upstream (meaning). All four, in line order, nothing else.
    let d = Dir::new();
    let text = good()
        .replace("workers = 2\n", "workers = 2\nshutdown_timout_ms = 1000\n")
        .replace("127.0.0.1:18443", "127.0.0.1:198222")
        .replace("upstream = \"backend\"", "upstream = \"backedn\"")
        .replace("read_timeout_ms = 30000", "keepalive = \"4096\"");
    let out = d.check("four.toml", &text);
    assert_eq!(out.status.code(), Some(1), "{}", out.text);
    let at = |needle: &str| format!("four.toml:{}:", line_of(&text, needle));
    let want = [
        (
            at("shutdown_timout_ms"),
            "server.shutdown_timout_ms: unknown key; did you mean `shutdown_timeout_ms`?",
        ),
        (
            at("198222"),
            "listener[0].addr: \"127.0.0.1:198222\": port 198222 is out of range (0-65535)",
        ),
        (
            at("backedn"),
            "route[0].upstream: unknown upstream \"backedn\" (defined: backend)",
        ),
        (
            at("keepalive"),
            "upstream.backend.keepalive: expected a whole number, got the string \"4096\"",
        ),
    ];
    let got = error_lines(&out, "four.toml");
    assert_eq!(got.len(), want.len(), "four errors, no more:\n{}", out.text);
    for (line, (place, words)) in got.iter().zip(&want) {
        assert!(
            line.starts_with(place.as_str()) && line.ends_with(words),
            "expected {place}…{words}, got {line}\nall output:\n{}",
            out.text
        );
    }
}

#[test]
fn wrong_type_is_named_by_path_in_plain_words() {
    let d = Dir::new();
    let text = config("server.pem", "server.key", "backend", "\"5s\"", "");
    let out = d.check("type.toml", &text);
    expect_error(
        &out,
        "type.toml",
        line_of(&text, "connect_timeout_ms"),
        Some("upstream.backend.connect_timeout_ms"),
        &["expected a whole number, got the string \"5s\""],
    );
    assert!(
        !out.text.contains("invalid type") && !out.text.contains("i64"),
        "plain words, not serde's:\n{}",
        out.text
    );
}

#[test]
fn mistakes_in_nested_tables_and_arrays_of_tables_name_their_element() {
    let d = Dir::new();
    let text = config(
        "server.pem",
        "server.key",
        "backend",
        "5000",
        "\n[[route]]\npath_prefix = \"/b/\"\nupstream = \"backend\"\n\
         \n[[route]]\npath_prefix = \"/c/\"\nupstream = 5  # third\n",
    )
    .replace(
        "key = \"server.key\"",
        "key = \"server.key\"\nserver_name = [\"app.test\"]",
    );
    let out = d.check("nested.toml", &text);
    expect_error(
        &out,
        "nested.toml",
        line_of(&text, "# third"),
        Some("route[2].upstream"),
        &["expected a string, got the number 5"],
    );
    expect_error(
        &out,
        "nested.toml",
        line_of(&text, "server_name ="),
        Some("listener[0].tls.certificates[0].server_name"),
        &["did you mean `server_names`?"],
    );
}

#[test]
fn port_out_of_range_is_said_so() {
    let d = Dir::new();
    let text = good().replace("127.0.0.1:18443", "127.0.0.1:198222");
    let out = d.check("port.toml", &text);
    expect_error(
        &out,
        "port.toml",
        line_of(&text, "198222"),
        Some("listener[0].addr"),
        &["\"127.0.0.1:198222\": port 198222 is out of range (0-65535)"],
    );
}

#[test]
fn toml_syntax_error() {
    let d = Dir::new();
    let text = good().replace("max_headers = 50", "max_headers = = 50");
    let out = d.check("syntax.toml", &text);
    expect_error(
        &out,
        "syntax.toml",
        line_of(&text, "max_headers = = 50"),
        None,
        &[],
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let d = Dir::new();
    let text = config("missing.pem", "server.key", "nope", "-5", "");
    let out = d.check("many.toml", &text);
    expect_error(
        &out,
        "many.toml",
        line_of(&text, "missing.pem"),
        Some("listener[0].tls.certificates[0].cert"),
        &[],
    );
    expect_error(
        &out,
        "many.toml",
        line_of(&text, "\"nope\""),
        Some("route[0].upstream"),
        &["nope"],
    );
    expect_error(
        &out,
        "many.toml",
        line_of(&text, "connect_timeout_ms"),
        Some("upstream.backend.connect_timeout_ms"),
        &["-5"],
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let d = Dir::new();
    let out = run_cli(&["check", "-c", "does-not-exist.toml"], d.path());
    assert_eq!(out.status.code(), Some(1), "output:\n{}", out.text);
    assert!(
        out.text.contains("does-not-exist.toml"),
        "the message names the file:\n{}",
        out.text
    );
}

#[test]
fn every_example_config_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut examples: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => panic!("no examples/ directory: {e}"),
    };
    assert!(!examples.is_empty(), "examples/ holds no .toml file");
    examples.sort();
    for path in examples {
        let out = run_cli(&["check", "-c", &path.to_string_lossy()], &dir);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} must pass `ringgate check`; output:\n{}",
            path.display(),
            out.text
        );
    }
}

#[test]
fn cipher_suites_are_checked_by_name_and_against_the_versions() {
    let d = Dir::new();
    let with = |min: &str, list: &str| {
        good().replace(
            "min_version = \"1.2\"",
            &format!("min_version = \"{min}\"\ncipher_suites = {list}"),
        )
    };
    let good_list = with(
        "1.2",
        r#"["TLS13_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]"#,
    );
    let out = d.check("suites-good.toml", &good_list);
    assert_eq!(out.status.code(), Some(0), "{}", out.text);

    let text = with(
        "1.2",
        r#"["TLS13_AES_128_GCM_SHA256", "TLS_RSA_WITH_RC4_128_SHA"]"#,
    );
    let out = d.check("suites-unknown.toml", &text);
    expect_error(
        &out,
        "suites-unknown.toml",
        line_of(&text, "cipher_suites"),
        Some("listener[0].tls.cipher_suites[1]"),
        &[
            "unknown cipher suite",
            "TLS_RSA_WITH_RC4_128_SHA",
            "TLS13_AES_256_GCM_SHA384",
        ],
    );

    let text = with(
        "1.2",
        r#"["TLS13_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"]"#,
    );
    let out = d.check("suites-twice.toml", &text);
    expect_error(
        &out,
        "suites-twice.toml",
        line_of(&text, "cipher_suites"),
        Some("listener[0].tls.cipher_suites[1]"),
        &["twice"],
    );

    let text = with("1.3", r#"["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]"#);
    let out = d.check("suites-no13.toml", &text);
    expect_error(
        &out,
        "suites-no13.toml",
        line_of(&text, "cipher_suites"),
        Some("listener[0].tls.cipher_suites"),
        &["no suite for TLS 1.3"],
    );

    let text = with("1.2", "[]");
    let out = d.check("suites-empty.toml", &text);
    expect_error(
        &out,
        "suites-empty.toml",
        line_of(&text, "cipher_suites"),
        Some("listener[0].tls.cipher_suites"),
        &["empty"],
    );
}

/// `good()` with `extra` appended (after the last table).
fn with_extra(extra: &str) -> String {
    config("server.pem", "server.key", "backend", "5000", extra)
}

#[test]
fn malformed_rate_limits_are_refused_with_file_line_and_field() {
    let d = Dir::new();
    let limit = |body: &str| format!("[rate_limit.rl]\nkey = \"client_ip\"\n{body}\n");
    let cases: [(&str, String, &str, &str, &[&str]); 6] = [
        (
            "rate.toml",
            limit("rate = \"10r/x\""),
            "10r/x",
            "rate_limit.rl.rate",
            &["10r/x", "r/s"],
        ),
        (
            "burst.toml",
            limit("rate = \"10r/s\"\nburst = -1"),
            "burst = -1",
            "rate_limit.rl.burst",
            &["-1", "range"],
        ),
        (
            "nodelay.toml",
            limit("rate = \"10r/s\"\nburst = 20\nnodelay = true\ndelay = 8"),
            "nodelay = true",
            "rate_limit.rl.nodelay",
            &["nodelay", "delay"],
        ),
        (
            "unknown.toml",
            limit("rate = \"10r/s\"")
                + "\n[[route]]\nhost = \"other.test\"\nupstream = \"backend\"\n\
                   rate_limit = [\"nope\"]\n",
            "\"nope\"",
            "route[1].rate_limit[0]",
            &["unknown rate limit", "nope", "rl"],
        ),
        (
            "jwt.toml",
            "[rate_limit.rl]\nkey = \"jwt:sub\"\nrate = \"10r/s\"\n".to_string(),
            "jwt:sub",
            "rate_limit.rl.key",
            &["arrives with authentication"],
        ),
        (
            "conns.toml",
            "[[listener]]\naddr = \"127.0.0.1:18081\"\nmax_connections_per_ip = 0\n".to_string(),
            "max_connections_per_ip",
            "listener[1].max_connections_per_ip",
            &["0", "range"],
        ),
    ];
    for (name, extra, needle, field, words) in cases {
        let text = with_extra(&extra);
        let out = d.check(name, &text);
        expect_error(&out, name, line_of(&text, needle), Some(field), words);
    }
    // And the issue's example passes.
    let text = with_extra(
        "[rate_limit.per_client]\nkey = \"client_ip\"\nrate = \"10r/s\"\nburst = 20\n\
         nodelay = true\nstatus = 429\nmax_keys = 1000000\n\n[[route]]\nhost = \"other.test\"\n\
         path_prefix = \"/v1/\"\nupstream = \"backend\"\nrate_limit = [\"per_client\"]\n",
    );
    let out = d.check("good-limits.toml", &text);
    assert_eq!(out.status.code(), Some(0), "output:\n{}", out.text);
}

/// `good()` with `lines` added to the `[[listener]]` table.
fn with_listener_lines(lines: &str) -> String {
    let addr = "addr = \"127.0.0.1:18443\"\n";
    good().replacen(addr, &format!("{addr}{lines}"), 1)
}

#[test]
fn bad_cidr_in_a_listener_allow_list() {
    let d = Dir::new();
    let text = with_listener_lines("allow = [\"10.0.0.0/8\", \"10.0.0.300/8\"]\n");
    let out = d.check("bad-cidr.toml", &text);
    expect_error(
        &out,
        "bad-cidr.toml",
        line_of(&text, "10.0.0.300/8"),
        Some("listener[0].allow[1]"),
        &["10.0.0.300/8", "cidr"],
    );
}

#[test]
fn cidr_with_host_bits_on_a_route_and_a_conflict() {
    let d = Dir::new();
    let route = "upstream = \"backend\"\n";
    let text = good().replacen(
        route,
        &format!(
            "{route}allow = [\"10.0.0.0/8\"]\ndeny = [\"10.1.2.3/16\", \"10.0.0.0/8\"] # both\n"
        ),
        1,
    );
    let out = d.check("bad-route-cidr.toml", &text);
    expect_error(
        &out,
        "bad-route-cidr.toml",
        line_of(&text, "# both"),
        Some("route[0].deny[0]"),
        &["10.1.2.3/16", "10.1.0.0/16"],
    );
    let text = good().replacen(
        route,
        &format!("{route}allow = [\"10.0.0.0/8\"]\ndeny = [\"10.0.0.0/8\"] # both\n"),
        1,
    );
    let out = d.check("conflict.toml", &text);
    expect_error(
        &out,
        "conflict.toml",
        line_of(&text, "# both"),
        Some("route[0].deny[0]"),
        &["10.0.0.0/8", "both allow and deny"],
    );
}

#[test]
fn proxy_protocol_needs_its_sources() {
    let d = Dir::new();
    let text = with_listener_lines("proxy_protocol = true\n");
    let out = d.check("pp.toml", &text);
    expect_error(
        &out,
        "pp.toml",
        line_of(&text, "proxy_protocol = true"),
        Some("listener[0].proxy_protocol_from"),
        &["proxy_protocol_from", "required", "0.0.0.0/0"],
    );
    let text =
        with_listener_lines("proxy_protocol = true\nproxy_protocol_from = [\"::/0\", \"x\"]\n");
    let out = d.check("pp-bad.toml", &text);
    expect_error(
        &out,
        "pp-bad.toml",
        line_of(&text, "proxy_protocol_from"),
        Some("listener[0].proxy_protocol_from[1]"),
        &["\"x\""],
    );
    let text = with_listener_lines("trusted_proxies = [\"2001:db8::/129\"]\n");
    let out = d.check("tp.toml", &text);
    expect_error(
        &out,
        "tp.toml",
        line_of(&text, "trusted_proxies"),
        Some("listener[0].trusted_proxies[0]"),
        &["2001:db8::/129"],
    );
}

/// Route conditions: each bad method, header name and matcher is one error naming its
/// line and field, and the good routes around them pass.
#[test]
fn bad_route_methods_and_headers_are_each_an_error() {
    let d = Dir::new();
    let extra = r#"
[[route]]
host = "app.test"
path_prefix = "/a/"
methods = ["GET", "get", "GE T", "CONNECT", "GET"]
upstream = "backend"

[[route]]
host = "app.test"
path_prefix = "/b/"
upstream = "backend"
[[route.headers]]
name = "x api"
exact = "2"
[[route.headers]]
name = "x-both"
exact = "2"
prefix = "2"
[[route.headers]]
name = "x-none"
[[route.headers]]
exact = "nameless"
[[route.headers]]
name = "x-space"
exact = " 2"
[[route.headers]]
name = "x-empty"
prefix = ""
[[route.headers]]
name = "Host"
present = true

[[route]]
host = "app.test"
path_prefix = "/c/"
methods = []
upstream = "backend"

[[route]]
host = "app.test"
path_prefix = "/d/"
methods = ["GET", "HEAD"]
headers = [{ name = "X-Version", prefix = "2." }, { name = "x-debug", present = false }]
upstream = "backend"

[[route]]
host = "app.test"
path_prefix = "/d/"
methods = ["HEAD", "GET"]
headers = [{ name = "x-debug", present = false }, { name = "x-version", prefix = "2." }]
upstream = "backend"
"#;
    let text = config("server.pem", "server.key", "backend", "5000", extra);
    let out = d.check("conditions.toml", &text);
    let name = "conditions.toml";
    let nth = |needle: &str, n: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(n)
            .unwrap_or_else(|| panic!("{needle:?} #{n} not in config"))
            .0
            + 1
    };
    let methods = line_of(&text, "\"get\"");
    expect_error(
        &out,
        name,
        methods,
        Some("route[1].methods[1]"),
        &["case-sensitive", "\"GET\""],
    );
    expect_error(
        &out,
        name,
        methods,
        Some("route[1].methods[2]"),
        &["not an HTTP method"],
    );
    expect_error(
        &out,
        name,
        methods,
        Some("route[1].methods[3]"),
        &["CONNECT", "never"],
    );
    expect_error(
        &out,
        name,
        methods,
        Some("route[1].methods[4]"),
        &["listed twice"],
    );
    let at = |needle| line_of(&text, needle);
    expect_error(
        &out,
        name,
        at("\"x api\""),
        Some("route[2].headers[0].name"),
        &["not a header field name"],
    );
    expect_error(
        &out,
        name,
        nth("[[route.headers]]", 1),
        Some("route[2].headers[1]"),
        &["only one of"],
    );
    expect_error(
        &out,
        name,
        nth("[[route.headers]]", 2),
        Some("route[2].headers[2]"),
        &["needs one of", "present"],
    );
    expect_error(
        &out,
        name,
        nth("[[route.headers]]", 3),
        Some("route[2].headers[3].name"),
        &["required"],
    );
    expect_error(
        &out,
        name,
        at("\" 2\""),
        Some("route[2].headers[4].exact"),
        &["whitespace", "never matches"],
    );
    expect_error(
        &out,
        name,
        at("prefix = \"\""),
        Some("route[2].headers[5].prefix"),
        &["present = true"],
    );
    expect_error(
        &out,
        name,
        at("\"Host\""),
        Some("route[2].headers[6].name"),
        &["`host`"],
    );
    expect_error(
        &out,
        name,
        at("methods = []"),
        Some("route[3].methods"),
        &["empty"],
    );
    expect_error(
        &out,
        name,
        nth("path_prefix = \"/d/\"", 1),
        Some("route[5]"),
        &["same host, path_prefix, methods and headers as route[4]"],
    );
    let got = error_lines(&out, name);
    assert_eq!(got.len(), 13, "thirteen errors, no more:\n{}", out.text);
}

/// A route after one with the same host and prefix and no conditions is never chosen;
/// with conditions on the first, the second is its fallback and passes.
#[test]
fn a_route_shadowed_by_an_unconditional_one_is_an_error() {
    let d = Dir::new();
    let extra = r#"
[[route]]
host = "app.test"
path_prefix = "/"
methods = ["GET"]
upstream = "backend"
"#;
    let text = config("server.pem", "server.key", "backend", "5000", extra);
    let out = d.check("shadowed.toml", &text);
    expect_error(
        &out,
        "shadowed.toml",
        line_of(&text, "methods = [\"GET\"]") - 1,
        Some("route[1]"),
        &["route[0]", "no methods or headers", "never match"],
    );
    let fallback = good().replace(
        "path_prefix = \"/\"\nupstream",
        "path_prefix = \"/\"\nmethods = [\"GET\"]\nupstream",
    ) + "\n[[route]]\nhost = \"app.test\"\nupstream = \"backend\"\n";
    let out = d.check("fallback.toml", &fallback);
    assert_eq!(out.status.code(), Some(0), "{}", out.text);
    assert!(
        out.text.contains("route app.test/ GET -> backend"),
        "{}",
        out.text
    );
}

/// Issue 23 (WebSocket): `upgrade`, `websocket_origins` and `tunnel_idle_timeout_ms` on a
/// route and `[http] tunnel_idle_timeout_ms` / `max_tunnels`, each mistake named by file,
/// line and field; a route using them all passes.
#[test]
fn bad_upgrade_settings_are_refused_with_file_line_and_field() {
    let d = Dir::new();
    let route =
        |lines: &str| format!("[[route]]\nhost = \"ws.test\"\nupstream = \"backend\"\n{lines}\n");
    let http = |lines: &str| good().replacen("[http]\n", &format!("[http]\n{lines}\n"), 1);
    let cases: [(&str, String, &str, &str, &[&str]); 10] = [
        (
            "token.toml",
            with_extra(&route("upgrade = [\"web socket\"]")),
            "web socket",
            "route[1].upgrade[0]",
            &["not a protocol name"],
        ),
        (
            "h2c.toml",
            with_extra(&route("upgrade = [\"websocket\", \"h2c\"]")),
            "h2c",
            "route[1].upgrade[1]",
            &["h2c", "cannot be tunnelled"],
        ),
        (
            "twice.toml",
            with_extra(&route("upgrade = [\"websocket\", \"WebSocket\"]")),
            "WebSocket\"]",
            "route[1].upgrade[1]",
            &["listed twice"],
        ),
        (
            "origin.toml",
            with_extra(&route("websocket_origins = [\"https://app.example.com/\"]")),
            "websocket_origins",
            "route[1].websocket_origins[0]",
            &["path"],
        ),
        (
            "star.toml",
            with_extra(&route("websocket_origins = [\"*\"]")),
            "websocket_origins",
            "route[1].websocket_origins[0]",
            &["leave websocket_origins out"],
        ),
        (
            "empty-origins.toml",
            with_extra(&route("websocket_origins = []")),
            "websocket_origins",
            "route[1].websocket_origins",
            &["empty list"],
        ),
        (
            "no-websocket.toml",
            with_extra(&route(
                "upgrade = [\"x-test\"]\nwebsocket_origins = [\"https://app.example.com\"]",
            )),
            "websocket_origins",
            "route[1].websocket_origins",
            &["no \"websocket\""],
        ),
        (
            "route-idle.toml",
            with_extra(&route("tunnel_idle_timeout_ms = 0")),
            "tunnel_idle_timeout_ms",
            "route[1].tunnel_idle_timeout_ms",
            &["0"],
        ),
        (
            "http-idle.toml",
            http("tunnel_idle_timeout_ms = -5"),
            "tunnel_idle_timeout_ms",
            "http.tunnel_idle_timeout_ms",
            &["-5"],
        ),
        (
            "max-tunnels.toml",
            http("max_tunnels = 0"),
            "max_tunnels",
            "http.max_tunnels",
            &["0", "range"],
        ),
    ];
    for (name, text, needle, field, words) in cases {
        let out = d.check(name, &text);
        expect_error(&out, name, line_of(&text, needle), Some(field), words);
    }
    let text = with_extra(&route(
        "upgrade = [\"websocket\", \"x-test\"]\n\
         websocket_origins = [\"https://app.example.com\", \"https://*.example.net\"]\n\
         tunnel_idle_timeout_ms = 600000",
    ))
    .replacen(
        "[http]\n",
        "[http]\ntunnel_idle_timeout_ms = 3600000\nmax_tunnels = 20000\n",
        1,
    );
    let out = d.check("good-upgrade.toml", &text);
    assert_eq!(out.status.code(), Some(0), "output:\n{}", out.text);
}
