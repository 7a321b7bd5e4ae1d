//! Error reports of [`from_toml_str`]: every mistake of a file, schema ones included, each
//! with line, column, the table and field path, and plain words.

use std::path::Path;

use super::{ConfigError, from_toml_str};

/// Every error of `text` as `LINE:COL: field: message` (the file name left out).
fn errors(text: &str) -> Vec<String> {
    match from_toml_str(text, "t.toml", Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(shown).collect(),
    }
}

fn shown(e: &ConfigError) -> String {
    e.to_string()
        .strip_prefix("t.toml:")
        .unwrap_or_default()
        .to_string()
}

/// A plain listener and a route to one upstream, all valid.
const VALID: &str = r#"
[[listener]]
addr = "127.0.0.1:0"

[[route]]
upstream = "orders"

[upstream.orders]
servers = ["127.0.0.1:9000"]
"#;

#[test]
fn a_valid_file_has_no_error() {
    assert_eq!(errors(VALID), Vec::<String>::new());
}

#[test]
fn four_mistakes_are_four_errors_in_line_order() {
    // Two schema mistakes (a typo, a wrong type) before two of meaning (a port out of
    // range, an unknown upstream): all four are reported.
    let text = r#"[server]
shutdown_timout_ms = 1000

[[listener]]
addr = "127.0.0.1:198222"

[[route]]
upstream = "ordres"

[upstream.orders]
servers = ["127.0.0.1:9000"]
keepalive = "4096"
"#;
    assert_eq!(
        errors(text),
        [
            "2:1: server.shutdown_timout_ms: unknown key; did you mean `shutdown_timeout_ms`?",
            "5:8: listener[0].addr: \"127.0.0.1:198222\": port 198222 is out of range (0-65535)",
            "8:12: route[0].upstream: unknown upstream \"ordres\" (defined: orders)",
            "12:13: upstream.orders.keepalive: expected a whole number, got the string \"4096\"",
        ]
    );
}

#[test]
fn a_wrong_type_is_named_by_path_in_plain_words() {
    let cases = [
        (
            "keepalive = \"4096\"",
            "expected a whole number, got the string \"4096\"",
        ),
        (
            "keepalive = 1.5",
            "expected a whole number, got the number 1.5",
        ),
        ("keepalive = true", "expected a whole number, got true"),
        ("keepalive = [1]", "expected a whole number, got an array"),
        ("balance = 1", "expected a string, got the number 1"),
    ];
    for (line, words) in cases {
        let text = format!("{VALID}{line}\n");
        let want = format!(
            "10:{}: upstream.orders.{}: {words}",
            line.find('=').unwrap_or(0) + 3,
            line.split(' ').next().unwrap_or_default()
        );
        assert_eq!(errors(&text), [want], "for {line:?}");
    }
    let text = format!("[server]\npin_workers = \"yes\"\n{VALID}");
    assert_eq!(
        errors(&text),
        ["2:15: server.pin_workers: expected true or false, got the string \"yes\""]
    );
    let text = format!("[http]\nforward_headers = \"x-real-ip\"\n{VALID}");
    assert_eq!(
        errors(&text),
        ["2:19: http.forward_headers: expected an array, got the string \"x-real-ip\""]
    );
}

#[test]
fn an_unknown_key_gets_the_nearest_known_key() {
    let text = format!("{VALID}conect_timeout_ms = 100\n");
    assert_eq!(
        errors(&text),
        [
            "10:1: upstream.orders.conect_timeout_ms: unknown key; did you mean `connect_timeout_ms`?"
        ]
    );
    let text = format!("{VALID}keepalive_timout = 100\n");
    assert_eq!(
        errors(&text),
        [
            "10:1: upstream.orders.keepalive_timout: unknown key; did you mean `keepalive_timeout_ms`?"
        ]
    );
    // Nothing near: the known keys instead of a guess.
    let text = format!("{VALID}colour = \"blue\"\n");
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(
            "10:1: upstream.orders.colour: unknown key (known keys here: servers, balance,"
        ) && !got[0].contains("did you mean"),
        "{got:?}"
    );
    // A table name is a key too.
    let text = format!("[servr]\nworkers = 2\n{VALID}");
    assert_eq!(
        errors(&text),
        ["1:2: servr: unknown key; did you mean `server`?"]
    );
}

#[test]
fn an_unknown_key_is_reported_in_every_table() {
    // Each raw struct must deny unknown keys (the schema check relies on serde's list
    // of a struct's fields): one stray key per table, each reported with its path.
    let text = r#"[server]
stray = 1
[http]
stray = 1
[[listener]]
addr = "127.0.0.1:0"
stray = 1
[listener.tls]
stray = 1
[[listener.tls.certificates]]
cert = "missing.pem"
key = "missing.key"
stray = 1
[[route]]
upstream = "orders"
stray = 1
[upstream.orders]
servers = ["127.0.0.1:9000"]
stray = 1
[admin]
addr = "127.0.0.1:0"
stray = 1
"#;
    let got = errors(text);
    for field in [
        "server",
        "http",
        "listener[0]",
        "listener[0].tls",
        "listener[0].tls.certificates[0]",
        "route[0]",
        "upstream.orders",
        "admin",
    ] {
        let want = format!("{field}.stray: unknown key");
        assert!(
            got.iter().any(|e| e.contains(&want)),
            "{want:?} in {got:#?}"
        );
    }
}

#[test]
fn paths_name_nested_tables_and_elements_of_arrays_of_tables() {
    let text = r#"[[listener]]
addr = "127.0.0.1:0"

[[route]]
path_prefix = "/a"
upstream = "orders"

[[route]]
path_prefix = "/b"
upstream = "orders"

[[route]]
path_prefix = "/c"
upstream = 5

[upstream.orders]
servers = ["127.0.0.1:9000", 8080]
"#;
    assert_eq!(
        errors(text),
        [
            "14:12: route[2].upstream: expected a string, got the number 5",
            "17:30: upstream.orders.servers[1]: expected a string, got the number 8080",
        ]
    );
    let text = r#"[[listener]]
addr = "127.0.0.1:0"
[listener.tls]
[[listener.tls.certificates]]
cert = "a.pem"
key = "a.key"
[[listener.tls.certificates]]
cert = "b.pem"
kee = "b.key"
"#;
    let got = errors(text);
    assert!(
        got.contains(
            &"9:1: listener[0].tls.certificates[1].kee: unknown key; did you mean `key`?"
                .to_string()
        ),
        "{got:#?}"
    );
    // The typo is one mistake: `key` is not reported missing on top of it.
    assert!(
        !got.iter().any(|e| e.contains("certificates[1].key")),
        "{got:#?}"
    );
}

#[test]
fn a_missing_required_key_is_reported_at_its_table() {
    let text =
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[[route]]\npath_prefix = \"/\"\n\n[admin]\n";
    assert_eq!(
        errors(text),
        [
            "4:1: route[0].upstream: required key is missing",
            "7:1: admin.addr: required key is missing",
        ]
    );
    // Of the wrong type, it is reported once, as a wrong type.
    let text = format!("{VALID}[admin]\naddr = 9901\n");
    assert_eq!(
        errors(&text),
        ["11:8: admin.addr: expected a string, got the number 9901"]
    );
}

#[test]
fn a_table_taken_out_for_its_type_is_not_reported_again() {
    let text = r#"[[listener]]
addr = "127.0.0.1:0"
[[route]]
upstream = "orders"
[upstream]
orders = "127.0.0.1:9000"
"#;
    assert_eq!(
        errors(text),
        ["6:10: upstream.orders: expected a table, got the string \"127.0.0.1:9000\""]
    );
}

#[test]
fn addresses_say_which_part_is_wrong() {
    let listener = |addr: &str| {
        let text = format!("[[listener]]\naddr = \"{addr}\"\n");
        errors(&text)
    };
    assert_eq!(
        listener("127.0.0.1:198222"),
        ["2:8: listener[0].addr: \"127.0.0.1:198222\": port 198222 is out of range (0-65535)"]
    );
    let one = |addr: &str| listener(addr).concat();
    assert!(one("[::1]:70000").contains("port 70000 is out of range (0-65535)"));
    assert!(one("127.0.0.1:99999999999999999999").contains("is out of range (0-65535)"));
    assert!(one("127.0.0.1:https").contains("port \"https\" is not a number"));
    assert!(one("127.0.0.1").contains("no port"));
    assert!(one("[::1]").contains("no port"));
    assert!(one("::1:443").contains("written in brackets"));
    assert!(
        one("2001:db8:0:0:0:0:0:1:443").contains("needs brackets: \"[2001:db8:0:0:0:0:0:1]:443\"")
    );
    assert!(one("localhost:443").contains("\"localhost\" is not an IP address"));
    assert_eq!(listener("[::1]:443"), Vec::<String>::new());

    let text = format!("{VALID}[admin]\naddr = \"127.0.0.1:65536\"\n");
    assert_eq!(
        errors(&text),
        ["11:8: admin.addr: \"127.0.0.1:65536\": port 65536 is out of range (0-65535)"]
    );
    let text = VALID.replace("127.0.0.1:9000", "127.0.0.1:198222");
    assert_eq!(
        errors(&text),
        [
            "9:12: upstream.orders.servers[0]: \"127.0.0.1:198222\": port 198222 is out of range (0-65535)"
        ]
    );
}

#[test]
fn a_syntax_error_is_reported_with_its_place() {
    let text = format!("{VALID}keepalive = = 4\n");
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("10:"), "{got:?}");
}

#[test]
fn a_flood_of_schema_errors_stops_at_fifty() {
    let mut text = VALID.to_string();
    for i in 0..60 {
        text += &format!("[upstream.u{i}]\nservers = [\"127.0.0.1:9000\"]\nkeepalive_timout = 5\n");
    }
    let got = errors(&text);
    assert_eq!(got.len(), 51, "{got:#?}");
    assert!(
        got[..50]
            .iter()
            .all(|e| e.contains("keepalive_timout: unknown key")),
        "{got:#?}"
    );
    let lines: Vec<usize> = got[..50]
        .iter()
        .filter_map(|e| e.split(':').next()?.parse().ok())
        .collect();
    assert!(
        lines.len() == 50 && lines.is_sorted(),
        "in line order: {got:#?}"
    );
    assert!(got[50].contains("stopped after 50 errors"), "{got:#?}");
}

/// `h2c` and `[http2]` on a plain listener are accepted with their values; `alpn`
/// there is a mistake (it is a TLS listener's key), and so are bad `[http2]` values.
#[test]
fn http2_keys_are_checked() {
    let text = VALID.replace(
        "addr = \"127.0.0.1:0\"\n",
        "addr = \"127.0.0.1:0\"\nh2c = true\n",
    ) + "[http2]\nmax_concurrent_streams = 7\nidle_timeout_ms = 1500\n";
    let config = from_toml_str(&text, "t.toml", Path::new(".")).unwrap();
    assert!(config.listeners[0].h2c);
    assert_eq!(config.http2.max_concurrent_streams, 7);
    assert_eq!(
        config.http2.idle_timeout,
        std::time::Duration::from_millis(1500)
    );
    // Defaults follow [http].
    assert_eq!(
        config.http2.max_header_list_size as usize,
        config.http.max_header_bytes
    );

    let text = VALID.replace(
        "addr = \"127.0.0.1:0\"\n",
        "addr = \"127.0.0.1:0\"\nalpn = [\"h2\"]\n",
    ) + "[http2]\nmax_concurrent_streams = 0\n";
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("listener[0].alpn: alpn is for TLS listeners"),
        "{e:?}"
    );
    assert!(e[1].contains("http2.max_concurrent_streams"), "{e:?}");
}

#[test]
fn upstream_tls_mistakes_name_their_field() {
    let ca = std::env::temp_dir().join(format!("rg-upstream-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let with_tls = |protocol: &str, tls: &str| {
        VALID.replace(
            "servers = [\"127.0.0.1:9000\"]\n",
            &format!("servers = [\"127.0.0.1:9000\"]\n{protocol}\n[upstream.orders.tls]\n{tls}\n"),
        )
    };
    // TLS is spoken to HTTP/2 upstreams only.
    let e = errors(&with_tls("", "server_name = \"orders.internal\""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(
            "upstream.orders.tls: TLS to upstreams is spoken with protocol = \"h2\" only"
        ),
        "{e:?}"
    );
    // A CA file without a certificate, named by path.
    let e = errors(&with_tls(
        "protocol = \"h2\"",
        &format!("ca = {:?}", ca.display().to_string()),
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("upstream.orders.tls.ca:"), "{e:?}");
    assert!(e[0].contains("no certificate in file"), "{e:?}");
    assert!(e[0].contains(&ca.display().to_string()), "{e:?}");
    // A missing file.
    let e = errors(&with_tls(
        "protocol = \"h2\"",
        "ca = \"/nonexistent/ca.pem\"",
    ));
    assert!(
        e.len() == 1 && e[0].contains("/nonexistent/ca.pem: cannot read"),
        "{e:?}"
    );
    // A server_name that is no name.
    let e = errors(&with_tls(
        "protocol = \"h2\"",
        "server_name = \"not a name!\"",
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("upstream.orders.tls.server_name")),
        "{e:?}"
    );
    let _ = std::fs::remove_file(&ca);
}
