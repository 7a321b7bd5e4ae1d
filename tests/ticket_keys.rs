//! Session-ticket keys a fleet shares (`[listener.tls] session_ticket_keys`): two
//! `ringgate run` processes given the same key file resume each other's sessions (TLS 1.2
//! and 1.3, `openssl s_client -sess_out` / `-sess_in` and the rustls client); a rotation by
//! file change keeps old tickets working and issues new ones under the new key (told
//! apart by processes holding only one of the keys); `ringgate check` refuses bad key
//! files with file, line and field. Needs `openssl` (./test.sh installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, HandshakeKind};

use common::HOST;
use common::backend::Backend;
use common::client::{client_config, request_with};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{CertEntry, ConfigBuilder, ProxyProcess, run_cli, toml_str};

/// Longest wait for a reload the test caused.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// Writes `path` whole in one step (write + rename), as a deploy tool would.
fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// `len` bytes of key file whose 16-byte name starts with `tag` (distinct keys, distinct
/// names; the rest is random, as `openssl rand` makes it).
fn key_bytes(tag: u8, len: usize) -> Vec<u8> {
    let mut key = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut key).expect("random bytes");
    key[0] = tag;
    key
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// The config of one host: a TLS listener for [`HOST`] with `keys` (paths), one worker.
fn host_config(cert: &CertFiles, backend: &Backend, keys: &[&Path], poll_ms: &str) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| toml_str(&k.to_string_lossy()))
        .collect();
    let keys = format!("[{}]", keys.join(", "));
    ConfigBuilder::new()
        .server("workers", "1")
        .server("certificate_check_interval_ms", poll_ms)
        .tls_listener_with(
            &[CertEntry::from(cert)],
            &[("ktls", "\"off\""), ("session_ticket_keys", &keys)],
        )
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build()
}

/// Starts a `ringgate run` process with `config` written to `dir/name.toml`.
fn start(dir: &Path, name: &str, config: &str, options: &[&str]) -> ProxyProcess {
    let path = dir.join(format!("{name}.toml"));
    replace_file(&path, config.as_bytes());
    ProxyProcess::spawn_with(&path, 1, options)
}

/// TLS version flags of `openssl s_client`.
const TLS12: &str = "-tls1_2";
const TLS13: &str = "-tls1_3";

/// One request with `openssl s_client` (the session read from `sess_in`, the last
/// session ticket received written to `sess_out`); whether the handshake resumed.
fn s_client(proxy: &ProxyProcess, version: &str, sess_in: Option<&Path>, sess_out: &Path) -> bool {
    let addr = proxy.addrs()[0];
    let _ = std::fs::remove_file(sess_out);
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        HOST,
    ])
    .args([version, "-ign_eof"])
    .arg("-sess_out")
    .arg(sess_out);
    if let Some(s) = sess_in {
        cmd.arg("-sess_in").arg(s);
    }
    // The server closes after answering, so s_client (with -ign_eof) reads everything,
    // the TLS 1.3 session tickets included, before it exits.
    let request = sess_out.with_extension("request");
    let head = format!("GET /bytes/5 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    std::fs::write(&request, head).expect("write the request");
    let stdin = std::fs::File::open(&request).expect("open the request");
    let out = cmd.stdin(Stdio::from(stdin)).output().unwrap_or_else(|e| {
        panic!("openssl s_client: {e} (apt-get install openssl; ./test.sh installs it)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("HTTP/1.1 200"),
        "s_client {version} got no response:\n{text}\n{}",
        proxy.output()
    );
    let reused = match (text.contains("\nReused, "), text.contains("\nNew, ")) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("s_client {version}: neither new nor reused?\n{text}"),
    };
    // A full handshake always ends with a ticket (a TLS 1.2 resumption may not).
    assert!(
        reused || sess_out.exists(),
        "s_client {version} wrote no session:\n{text}"
    );
    reused
}

/// A fresh rustls client (TLS 1.2 or 1.3) with an empty session store.
fn rustls_clients(pki: &TestPki) -> [(&'static str, Arc<ClientConfig>); 2] {
    [
        ("TLS 1.2", client_config(pki, &rustls::version::TLS12)),
        ("TLS 1.3", client_config(pki, &rustls::version::TLS13)),
    ]
}

struct Host {
    pki: TestPki,
    cert: CertFiles,
    backend: Backend,
}

impl Host {
    fn new() -> Host {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        Host {
            pki,
            cert,
            backend: Backend::start(),
        }
    }

    fn dir(&self) -> &Path {
        self.pki.dir()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }
}

#[test]
fn a_ticket_issued_by_one_host_resumes_on_another_sharing_the_key_file() {
    let h = Host::new();
    let shared = h.file("fleet.key");
    let shared_key = key_bytes(0xa1, 80);
    replace_file(&shared, &shared_key);
    let other = h.file("other.key");
    replace_file(&other, &key_bytes(0xb2, 48));
    let config = |key: &Path| host_config(&h.cert, &h.backend, &[key], "0");
    let a = start(h.dir(), "a", &config(&shared), &["--log", "debug"]);
    let b = start(h.dir(), "b", &config(&shared), &[]);
    let stranger = start(h.dir(), "stranger", &config(&other), &[]);

    for version in [TLS12, TLS13] {
        let from_a = h.file(&format!("a{version}.sess"));
        assert!(!s_client(&a, version, None, &from_a), "first handshake");
        assert!(
            s_client(&b, version, Some(&from_a), &h.file("b.sess")),
            "{version}: a ticket from host a resumes on host b\n{}",
            b.output()
        );
        assert!(
            !s_client(&stranger, version, Some(&from_a), &h.file("s.sess")),
            "{version}: a host with another key cannot read it"
        );
        // The stranger's own (48-byte key) tickets resume on it.
        let from_stranger = h.file(&format!("s{version}.sess"));
        assert!(!s_client(&stranger, version, None, &from_stranger));
        assert!(s_client(
            &stranger,
            version,
            Some(&from_stranger),
            &h.file("s2.sess")
        ));
    }

    for (name, client) in rustls_clients(&h.pki) {
        assert_eq!(request_with(&client, a.addrs()[0]), HandshakeKind::Full);
        assert_eq!(
            request_with(&client, b.addrs()[0]),
            HandshakeKind::Resumed,
            "rustls {name}: a's ticket resumes on b"
        );
    }

    // The key material never reaches a log line, even at debug.
    let logged = a.output();
    for part in [&shared_key[16..48], &shared_key[48..80]] {
        assert!(
            !logged.contains(&hex(part)),
            "key material logged:\n{logged}"
        );
    }
    assert!(logged.contains("listening on"), "{logged}");
}

#[test]
fn a_rotation_by_file_change_keeps_old_tickets_and_issues_new_ones_under_the_new_key() {
    let h = Host::new();
    let (current, previous) = (h.file("current.key"), h.file("previous.key"));
    // The outgoing key is a 48-byte one, the incoming an 80-byte one.
    let (k0, k1, k2) = (
        key_bytes(0x10, 80),
        key_bytes(0x11, 48),
        key_bytes(0x12, 80),
    );
    replace_file(&current, &k1);
    replace_file(&previous, &k0);
    let (only_new, only_old) = (h.file("only-new.key"), h.file("only-old.key"));
    replace_file(&only_new, &k2);
    replace_file(&only_old, &k1);
    let a = start(
        h.dir(),
        "a",
        &host_config(&h.cert, &h.backend, &[&current, &previous], "100"),
        &[],
    );
    let with_new = start(
        h.dir(),
        "with-new",
        &host_config(&h.cert, &h.backend, &[&only_new], "0"),
        &[],
    );
    let with_old = start(
        h.dir(),
        "with-old",
        &host_config(&h.cert, &h.backend, &[&only_old], "0"),
        &[],
    );

    // Tickets under k1, before the rotation.
    let old_ticket = |v: &str| h.file(&format!("old{v}.sess"));
    for version in [TLS12, TLS13] {
        assert!(!s_client(&a, version, None, &old_ticket(version)));
    }
    let clients = rustls_clients(&h.pki);
    for (_, client) in &clients {
        assert_eq!(request_with(client, a.addrs()[0]), HandshakeKind::Full);
    }

    // Rotate: k1 becomes the second (decrypt-only) key first, then k2 the first. Each
    // step is a valid key set, whichever of them the file poll sees.
    replace_file(&previous, &k1);
    replace_file(&current, &k2);
    let shown = current.display().to_string();
    assert!(
        a.wait_for_output(&shown, 1, RELOAD_WAIT),
        "the change of {shown} was not noticed\n{}",
        a.output()
    );
    let noticed = a
        .output()
        .matches("certificate files changed on disk")
        .count();
    assert!(
        a.wait_for_output("configuration reloaded", noticed, RELOAD_WAIT),
        "no reload\n{}",
        a.output()
    );

    for version in [TLS12, TLS13] {
        assert!(
            s_client(&a, version, Some(&old_ticket(version)), &h.file("x.sess")),
            "{version}: a ticket from before the rotation still resumes\n{}",
            a.output()
        );
        let new_ticket = h.file(&format!("new{version}.sess"));
        assert!(!s_client(&a, version, None, &new_ticket));
        assert!(
            s_client(&with_new, version, Some(&new_ticket), &h.file("y.sess")),
            "{version}: a new ticket is under the new key"
        );
        assert!(
            !s_client(&with_old, version, Some(&new_ticket), &h.file("z.sess")),
            "{version}: a new ticket is not under the old key"
        );
    }
    for (name, client) in &clients {
        assert_eq!(
            request_with(client, a.addrs()[0]),
            HandshakeKind::Resumed,
            "rustls {name}: a session from before the rotation resumes"
        );
    }

    // A broken key file: said with the file, and the keys in use stay.
    replace_file(&previous, b"not a key");
    assert!(
        a.wait_for_output("reload failed", 1, RELOAD_WAIT),
        "no failed reload\n{}",
        a.output()
    );
    let said = format!(
        "{}: 9 bytes: a session-ticket key file holds",
        previous.display()
    );
    assert!(
        a.output().contains(&said),
        "{said:?} not in\n{}",
        a.output()
    );
    assert!(
        s_client(&a, TLS12, Some(&old_ticket(TLS12)), &h.file("w.sess")),
        "the old key still decrypts after a failed reload\n{}",
        a.output()
    );
}

/// `ringgate check` output for a listener with `keys` (TOML array text) in `dir`.
fn check(h: &Host, keys: &str, extra: &str) -> (bool, String, String) {
    let text = ConfigBuilder::new()
        .tls_listener_with(
            &[CertEntry::from(&h.cert)],
            &[("session_tickets", extra), ("session_ticket_keys", keys)],
        )
        .route(None, "/", false, "backend")
        .upstream("backend", &[h.backend.addr], &[])
        .build();
    let path = h.file("check.toml");
    replace_file(&path, text.as_bytes());
    let out = run_cli(&["check", "-c", &path.to_string_lossy()], h.dir());
    (out.status.success(), out.text, text)
}

/// 1-based line of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

#[test]
fn check_refuses_missing_unreadable_and_wrong_length_key_files() {
    let h = Host::new();
    let good = h.file("good.key");
    replace_file(&good, &key_bytes(1, 80));
    let short = h.file("short.key");
    replace_file(&short, &key_bytes(2, 64));
    let folder = h.file("a-folder.key");
    std::fs::create_dir(&folder).unwrap();
    let missing = h.file("missing.key");
    let list = |paths: &[&Path]| {
        let quoted: Vec<String> = paths
            .iter()
            .map(|p| toml_str(&p.to_string_lossy()))
            .collect();
        format!("[\n  {}\n]", quoted.join(",\n  "))
    };

    let (ok, out, _) = check(&h, &list(&[&good]), "true");
    assert!(ok, "{out}");

    let (ok, out, text) = check(&h, &list(&[&good, &missing, &short, &folder]), "true");
    assert!(!ok, "{out}");
    let config = h.file("check.toml").display().to_string();
    let cases = [
        (&missing, 1, "cannot read"),
        (
            &short,
            2,
            "64 bytes: a session-ticket key file holds exactly 80 bytes (or 48)",
        ),
        (&folder, 3, "cannot read"),
    ];
    for (path, k, words) in cases {
        let line = line_of(&text, &path.to_string_lossy());
        let expected = format!(
            "{config}:{line}:3: listener[0].tls.session_ticket_keys[{k}]: {}: {words}",
            path.display()
        );
        assert!(
            out.lines().any(|l| l.contains(&expected)),
            "{expected:?} not in\n{out}"
        );
    }
    assert!(!out.contains("good.key"), "{out}");

    let (ok, out, text) = check(&h, "[]", "true");
    assert!(!ok);
    let line = line_of(&text, "session_ticket_keys");
    assert!(
        out.contains(&format!(
            "{config}:{line}:23: listener[0].tls.session_ticket_keys: empty list"
        )),
        "{out}"
    );
    let (ok, out, _) = check(&h, &list(&[&good]), "false");
    assert!(!ok);
    assert!(out.contains("session_tickets = false"), "{out}");
}
