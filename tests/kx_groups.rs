//! Key-exchange groups: the hybrid post-quantum X25519MLKEM768 is negotiated when the
//! client offers it first, X25519 when the client leads with that (rustls follows the
//! client's order among the groups the server allows); TLS 1.3 resumptions (PSK with DHE)
//! exchange a key too, TLS 1.2 resumptions none. The negotiated group is in `TlsInfo`
//! (the per-connection debug line) and counted in `/metrics` by group. `kx_groups` pins a
//! listener's groups: a client without one of them fails with handshake_failure, a client
//! whose key share misses the group gets a HelloRetryRequest, and OpenSSL's `s_client
//! -groups` gets the pinned group (Debian 12's OpenSSL 3.0 has no ML-KEM: X25519 and P-256
//! there). `ringgate check` names an unknown, repeated or unusable group with file, line
//! and field.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};
use rustls::pki_types::ServerName;
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, HandshakeKind, NamedGroup, ProtocolVersion,
    RootCertStore,
};

use common::HOST;
use common::backend::Backend;
use common::client::{READ_TIMEOUT, req};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{CliOutput, ConfigBuilder, Proxy, ProxyProcess, run_cli, toml_str};

const KTLS_OFF: (&str, &str) = ("ktls", "\"off\"");

/// A rustls client offering `groups` in this order (it sends a key share for the first,
/// and for X25519MLKEM768 first also one for X25519), with `version` only; connections
/// made with the same config share its session store, so the second one resumes.
fn client(
    pki: &TestPki,
    groups: &[&'static dyn SupportedKxGroup],
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups.to_vec();
    let mut roots = RootCertStore::empty();
    roots.add(pki.root_der()).expect("test root");
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// What the client saw of one handshake.
#[derive(Debug, PartialEq)]
struct Seen {
    kind: HandshakeKind,
    version: ProtocolVersion,
    group: Option<NamedGroup>,
}

/// Handshakes with `addr` and proxies one `GET /bytes/5` (so TLS 1.3 tickets arrive
/// before the next connection); a TLS failure is returned as the client's error.
fn connect(config: &Arc<ClientConfig>, addr: SocketAddr) -> Result<Seen, rustls::Error> {
    let name = ServerName::try_from(HOST).expect("server name");
    let mut conn = ClientConnection::new(config.clone(), name).expect("client connection");
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            let tls = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned();
            return Err(tls.unwrap_or_else(|| panic!("handshake I/O failed: {e}")));
        }
    }
    let seen = Seen {
        kind: conn.handshake_kind().expect("handshake kind"),
        version: conn.protocol_version().expect("version"),
        group: conn.negotiated_key_exchange_group().map(|g| g.name()),
    };
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(&req::get(HOST, "/bytes/5")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |got: &[u8]| {
        got.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|end| got.len() >= end + 4 + 5)
    };
    while !complete(&got) {
        let n = tls.read(&mut buf).expect("read response");
        assert!(n > 0, "closed before the whole response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    Ok(seen)
}

fn full(version: ProtocolVersion, group: NamedGroup) -> Seen {
    Seen {
        kind: HandshakeKind::Full,
        version,
        group: Some(group),
    }
}

/// A proxy (in this process) with one TLS listener per entry of `listeners` (extra
/// `[listener.tls]` settings each), and the admin listener.
struct Setup {
    pki: TestPki,
    proxy: Proxy,
    _backend: Backend,
}

impl Setup {
    fn start(listeners: &[&[(&str, &str)]]) -> Setup {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let backend = Backend::start();
        let mut config = ConfigBuilder::new().admin();
        for tls in listeners {
            config = config.tls_listener_with(&[(&cert).into()], tls);
        }
        let config =
            config
                .route(None, "/", false, "backend")
                .upstream("backend", &[backend.addr], &[]);
        let proxy = Proxy::start(&config.build(), pki.dir());
        Setup {
            pki,
            proxy,
            _backend: backend,
        }
    }

    /// `name{label="value"}` from `/metrics` (0 when absent).
    fn metric(&self, name: &str, label: &str, value: &str) -> u64 {
        let mut s = TcpStream::connect(self.proxy.admin_addr()).expect("admin connect");
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read /metrics");
        let series = format!("{name}{{{label}=\"{value}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().expect("a counter value"))
    }

    /// Failed handshakes by reason, once `want` of them are counted (the server counts
    /// after it sent the alert, so a client may see the alert first) or 10 s passed.
    fn failures(&self, reason: &str, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.metric("ringgate_tls_handshakes_total", "outcome", reason);
            if n >= want || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn by_group(&self, group: &str) -> u64 {
        self.metric("ringgate_tls_handshakes_by_group_total", "group", group)
    }
}

#[test]
fn the_clients_first_group_wins_and_is_counted() {
    let s = Setup::start(&[&[KTLS_OFF]]);
    let addr = s.proxy.addr();
    let v13 = ProtocolVersion::TLSv1_3;
    let v12 = ProtocolVersion::TLSv1_2;
    let tls13 = &rustls::version::TLS13;

    // Hybrid post-quantum first (as Chrome and Firefox send it): hybrid, no retry.
    let pq_first = client(&s.pki, &[X25519MLKEM768, X25519], tls13);
    assert_eq!(
        connect(&pq_first, addr),
        Ok(full(v13, NamedGroup::X25519MLKEM768))
    );
    // A TLS 1.3 resumption is PSK with DHE: a fresh key exchange, in the same group.
    let resumed = connect(&pq_first, addr).expect("resumption");
    assert_eq!(resumed.kind, HandshakeKind::Resumed);
    assert_eq!(resumed.group, Some(NamedGroup::X25519MLKEM768));

    // X25519 first: X25519, although the server also offers the hybrid.
    let x_first = client(&s.pki, &[X25519, X25519MLKEM768], tls13);
    assert_eq!(connect(&x_first, addr), Ok(full(v13, NamedGroup::X25519)));

    // TLS 1.2: ECDHE over the client's first classic curve; its resumption exchanges none.
    let tls12 = client(&s.pki, &[SECP256R1, X25519], &rustls::version::TLS12);
    assert_eq!(connect(&tls12, addr), Ok(full(v12, NamedGroup::secp256r1)));
    let resumed = connect(&tls12, addr).expect("TLS 1.2 resumption");
    assert_eq!(
        (resumed.kind, resumed.group),
        (HandshakeKind::Resumed, None)
    );

    assert_eq!(s.by_group("X25519MLKEM768"), 2);
    assert_eq!(s.by_group("X25519"), 1);
    assert_eq!(s.by_group("secp256r1"), 1);
    assert_eq!(s.by_group("none"), 1);
    assert_eq!(s.by_group("secp384r1"), 0);
    assert_eq!(s.by_group("other"), 0);
}

#[test]
fn pinned_groups_restrict_what_clients_get() {
    // Listener 0 allows X25519 only; listener 1 the hybrid only (TLS 1.3 only: the
    // hybrid has no TLS 1.2 form, and `ringgate check` says so); listener 2 secp256r1,
    // then X25519.
    let s = Setup::start(&[
        &[KTLS_OFF, ("kx_groups", r#"["X25519"]"#)],
        &[
            KTLS_OFF,
            ("kx_groups", r#"["X25519MLKEM768"]"#),
            ("min_version", r#""1.3""#),
        ],
        &[KTLS_OFF, ("kx_groups", r#"["secp256r1", "X25519"]"#)],
    ]);
    let (x_only, pq_only) = (s.proxy.addrs()[0], s.proxy.addrs()[1]);
    let v13 = ProtocolVersion::TLSv1_3;
    let tls13 = &rustls::version::TLS13;
    let refused = Err(rustls::Error::AlertReceived(
        AlertDescription::HandshakeFailure,
    ));

    // No group in common: handshake_failure, counted as peer_incompatible.
    let pq = client(&s.pki, &[X25519MLKEM768], tls13);
    assert_eq!(connect(&pq, x_only), refused);
    let x = client(&s.pki, &[X25519], tls13);
    assert_eq!(connect(&x, pq_only), refused);
    assert_eq!(s.failures("peer_incompatible", 2), 2);

    // A client offering both, hybrid first, also sent an X25519 key share: the
    // X25519-only listener takes it at once.
    let both = client(&s.pki, &[X25519MLKEM768, X25519], tls13);
    assert_eq!(connect(&both, x_only), Ok(full(v13, NamedGroup::X25519)));
    // X25519 first (a key share for X25519 only): the hybrid-only listener asks for a
    // hybrid share with a HelloRetryRequest, and gets it.
    let x_first = client(&s.pki, &[X25519, X25519MLKEM768], tls13);
    assert_eq!(
        connect(&x_first, pq_only),
        Ok(Seen {
            kind: HandshakeKind::FullWithHelloRetryRequest,
            version: v13,
            group: Some(NamedGroup::X25519MLKEM768),
        })
    );
    // The order written does not rank the groups: the client's order picks among them.
    let x_then_p256 = client(&s.pki, &[X25519, SECP256R1], tls13);
    assert_eq!(
        connect(&x_then_p256, s.proxy.addrs()[2]),
        Ok(full(v13, NamedGroup::X25519))
    );
    assert_eq!(s.by_group("X25519"), 2);
    assert_eq!(s.by_group("X25519MLKEM768"), 1);
}

#[test]
fn tls_info_records_the_group_for_the_connection() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .server("workers", "1")
        .tls_listener_with(&[(&cert).into()], &[KTLS_OFF])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let path = pki.dir().join("ringgate.toml");
    std::fs::write(&path, config.build()).expect("write config");
    let proxy = ProxyProcess::spawn_with(&path, 1, &["--log", "info,ringgate=debug"]);
    let addr = proxy.addrs()[0];
    let tls13 = &rustls::version::TLS13;
    let tls12 = &rustls::version::TLS12;
    connect(&client(&pki, &[X25519MLKEM768, X25519], tls13), addr).expect("hybrid");
    connect(&client(&pki, &[X25519, X25519MLKEM768], tls13), addr).expect("x25519");
    let resuming = client(&pki, &[SECP256R1], tls12);
    connect(&resuming, addr).expect("TLS 1.2");
    connect(&resuming, addr).expect("TLS 1.2 resumption");
    assert!(
        proxy.wait_for_output("tls handshake done", 4, Duration::from_secs(10)),
        "{}",
        proxy.output()
    );
    let output = proxy.output();
    let groups: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("tls handshake done"))
        .map(|l| {
            let at = l
                .find("kx_group=")
                .unwrap_or_else(|| panic!("no kx_group in {l}"));
            l[at..].split_whitespace().next().unwrap_or_default()
        })
        .collect();
    assert_eq!(
        groups,
        [
            "kx_group=\"X25519MLKEM768\"",
            "kx_group=\"X25519\"",
            "kx_group=\"secp256r1\"",
            "kx_group=\"-\""
        ],
        "{output}"
    );
}

/// `openssl s_client -groups GROUPS` against `addr` (TLS 1.3 or 1.2): the server's
/// `Server Temp Key` line, or the whole output when the handshake failed.
fn openssl_temp_key(addr: SocketAddr, groups: &str, tls12: bool) -> Result<String, String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-brief", "-servername", HOST, "-groups", groups])
        .arg("-connect")
        .arg(addr.to_string())
        .arg(if tls12 { "-tls1_2" } else { "-tls1_3" })
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .expect("openssl must be installed: apt-get install openssl (./test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Server Temp Key: "))
        .map(str::to_string)
        .ok_or(text)
}

#[test]
fn openssl_gets_the_pinned_group() {
    let s = Setup::start(&[&[KTLS_OFF], &[KTLS_OFF, ("kx_groups", r#"["P-256"]"#)]]);
    let (open, pinned) = (s.proxy.addrs()[0], s.proxy.addrs()[1]);
    for tls12 in [false, true] {
        let what = if tls12 { "TLS 1.2" } else { "TLS 1.3" };
        let key = openssl_temp_key(open, "X25519:P-256", tls12).unwrap_or_else(|e| panic!("{e}"));
        assert!(key.starts_with("X25519"), "{what}, default groups: {key}");
        let key = openssl_temp_key(pinned, "X25519:P-256", tls12).unwrap_or_else(|e| panic!("{e}"));
        assert!(key.contains("prime256v1"), "{what}, pinned to P-256: {key}");
        let failed = openssl_temp_key(pinned, "X25519", tls12);
        assert!(
            failed
                .as_ref()
                .is_err_and(|out| out.contains("handshake failure")),
            "{what}, X25519 against a P-256-only listener must fail: {failed:?}"
        );
    }
    assert_eq!(s.by_group("X25519"), 2);
    assert_eq!(s.by_group("secp256r1"), 2);
    assert_eq!(s.failures("peer_incompatible", 2), 2);
}

/// `ringgate check` of a TLS listener serving `cert`, with `tls` lines added to
/// `[listener.tls]` (line 4 on), written as `name` in `pki`'s folder.
fn check(pki: &TestPki, cert: &CertFiles, name: &str, tls: &str) -> CliOutput {
    let text = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[listener.tls]\n{tls}\n\
         [[listener.tls.certificates]]\ncert = {}\nkey = {}\n\n\
         [[route]]\nupstream = \"b\"\n\n[upstream.b]\nservers = [\"127.0.0.1:9\"]\n",
        toml_str(&cert.cert.to_string_lossy()),
        toml_str(&cert.key.to_string_lossy()),
    );
    let file = pki.dir().join(name);
    std::fs::write(&file, &text).expect("write config");
    run_cli(&["check", "-c", &file.to_string_lossy()], pki.dir())
}

/// Exit 1 and a line `NAME:LINE:COL: FIELD: reason` holding every one of `words`.
fn expect_error(out: &CliOutput, name: &str, line: usize, field: &str, words: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{name}: {}", out.text);
    let found = out.text.lines().any(|l| {
        l.contains(&format!("{name}:{line}:"))
            && l.contains(&format!(" {field}: "))
            && words.iter().all(|w| l.contains(w))
    });
    assert!(
        found,
        "{name}: want line {line}, field {field}, words {words:?}:\n{}",
        out.text
    );
}

#[test]
fn check_names_bad_groups_with_file_line_and_field() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let check = |name: &str, tls: &str| check(&pki, &cert, name, tls);
    let out = check(
        "good.toml",
        "kx_groups = [\"X25519MLKEM768\", \"x25519\", \"prime256v1\"]",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.text);
    let out = check(
        "pq13.toml",
        "min_version = \"1.3\"\nkx_groups = [\"X25519MLKEM768\"]",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.text);

    let field = "listener[0].tls.kx_groups";
    let out = check("unknown.toml", "kx_groups = [\"X25519\", \"X448\"]");
    let words = [
        "unknown key-exchange group \"X448\"",
        "X25519MLKEM768, ",
        "secp384r1",
    ];
    expect_error(&out, "unknown.toml", 4, &format!("{field}[1]"), &words);
    let out = check("twice.toml", "kx_groups = [\"X25519\", \"x25519\"]");
    expect_error(
        &out,
        "twice.toml",
        4,
        &format!("{field}[1]"),
        &["listed twice"],
    );
    let out = check("empty.toml", "kx_groups = []");
    expect_error(&out, "empty.toml", 4, field, &["empty list"]);
    let out = check("pq12.toml", "kx_groups = [\"X25519MLKEM768\"]");
    expect_error(&out, "pq12.toml", 4, field, &["TLS 1.2", "min_version"]);
    let out = check("type.toml", "kx_groups = \"X25519\"");
    expect_error(&out, "type.toml", 4, field, &[]);
}
