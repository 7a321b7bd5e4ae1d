//! Client certificates (mTLS) against `ringgate run`: a real PKI (root → intermediate →
//! client leaves: valid, expired, not yet valid, revoked in a CRL, from another CA,
//! self-signed, serverAuth-only, too deep, with a SPIFFE URI SAN), each driven through
//! the rustls client (TLS 1.2 and 1.3) and curl; the right ones pass, each wrong one
//! fails its handshake with its alert and its `/metrics` reason. Per-SNI client CAs, a
//! CRL replaced on disk revoking without a restart, `[route.client_cert]` with
//! `verify = "optional"`, and `ringgate check` naming file, line and field.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::client::{Client, TlsOptions, Versions, req};
use common::pki::{ClientCert, ClientKind, ClientPki, KeyEncoding, KeyType, TestPki};
use common::proxy::{ProxyProcess, run_cli, toml_str};

const HOST: &str = "api.test";
const WAIT: Duration = Duration::from_secs(30);

/// `ringgate run` on `toml` (written into `dir`), with its admin address.
fn start(dir: &Path, toml: &str) -> (ProxyProcess, SocketAddr) {
    let path = dir.join("ringgate.toml");
    std::fs::write(&path, toml).expect("write config");
    let p = ProxyProcess::spawn(&path, 1);
    assert!(
        p.wait_for_output("admin on http://", 1, WAIT),
        "no admin line\n{}",
        p.output()
    );
    let out = p.output();
    let admin = out
        .lines()
        .find_map(|l| l.split("admin on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in\n{out}"));
    (p, admin)
}

/// The server side of every test: one TLS listener for [`HOST`] (and `b.test`), `/`
/// routed to `backend`, an admin listener; `client_auth` is the TOML of
/// `[listener.tls.client_auth]`, `extra` goes after the listener (routes, entries).
fn config(pki: &TestPki, backend: &Backend, tls_extra: &str, rest: &str) -> String {
    let server = pki.leaf(&[HOST, "b.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    format!(
        "[server]\nworkers = 1\npin_workers = false\ncertificate_check_interval_ms = 100\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n[listener.tls]\nktls = \"off\"\n{tls_extra}\n\
         [[listener.tls.certificates]]\ncert = {}\nkey = {}\nserver_names = [\"{HOST}\"]\n\
         {rest}\n\
         [upstream.app]\nservers = [\"{}\"]\n",
        toml_str(&server.cert.to_string_lossy()),
        toml_str(&server.key.to_string_lossy()),
        backend.addr,
    )
}

fn client_auth(ca: &Path, crl: &[&Path], verify: &str) -> String {
    let crls: Vec<String> = crl.iter().map(|p| toml_str(&p.to_string_lossy())).collect();
    format!(
        "[listener.tls.client_auth]\nca = {}\ncrl = [{}]\nverify = \"{verify}\"\ndepth = 2\n",
        toml_str(&ca.to_string_lossy()),
        crls.join(", ")
    )
}

const ROUTE: &str = "[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n";

fn opts(pki: &TestPki, name: &str, version: Versions, cert: Option<&ClientCert>) -> TlsOptions {
    let o = TlsOptions::new(pki.root_der(), name).versions(version);
    match cert {
        Some(c) => o.client_cert(c.chain.clone(), c.key_der.clone()),
        None => o,
    }
}

/// A request over a fresh connection: the status, or the error text (a refused
/// handshake shows as `received fatal alert: <Alert>`, during the handshake in TLS 1.2,
/// on the first read in TLS 1.3 where the client finishes first).
fn attempt(addr: SocketAddr, o: &TlsOptions, path: &str) -> Result<u16, String> {
    let mut c = Client::tls(addr, o).map_err(|e| e.to_string())?;
    c.send(&req::get(HOST, path)).map_err(|e| e.to_string())?;
    c.read_response(false)
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

fn expect_alert(result: Result<u16, String>, alert: &str, what: &str) {
    match result {
        Ok(status) => panic!("{what}: served ({status}), expected alert {alert}"),
        Err(e) => assert!(
            e.contains(&format!("received fatal alert: {alert}")),
            "{what}: expected alert {alert}, got: {e}"
        ),
    }
}

/// Waits until `/metrics` counts `want` rejections for `reason` (the worker counts a
/// refusal after its alert went out, so the client may see the alert first); returns
/// the count last seen.
fn rejections_reach(admin: SocketAddr, reason: &str, want: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = rejections(admin, reason);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `ringgate_tls_client_cert_rejections_total{reason}` from `/metrics`.
fn rejections(admin: SocketAddr, reason: &str) -> u64 {
    let mut c = Client::plain(admin).expect("connect admin");
    let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let key = format!("ringgate_tls_client_cert_rejections_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {key} in /metrics:\n{text}"))
}

#[test]
fn each_wrong_client_certificate_gets_its_alert_and_counter() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let other = ClientPki::new(pki.dir(), "other");
    let valid = clients.client(ClientKind::Valid, "partner-a", None);
    let revoked = clients.client(ClientKind::Valid, "partner-revoked", None);
    let crl = clients.write_crl("clients.crl.pem", &[&revoked], false);
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[&crl], "required"),
        ROUTE,
    );
    let (p, admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];

    let cases: Vec<(&str, Option<ClientCert>, &str, &str)> = vec![
        (
            "no certificate",
            None,
            "CertificateRequired",
            "no_certificate",
        ),
        (
            "expired",
            Some(clients.client(ClientKind::Expired, "old", None)),
            "CertificateExpired",
            "expired",
        ),
        (
            "not yet valid",
            Some(clients.client(ClientKind::NotYetValid, "early", None)),
            "CertificateExpired",
            "not_yet_valid",
        ),
        (
            "revoked",
            Some(revoked.clone()),
            "CertificateRevoked",
            "revoked",
        ),
        (
            "another CA",
            Some(other.client(ClientKind::Valid, "stranger", None)),
            "UnknownCA",
            "unknown_ca",
        ),
        (
            "self-signed",
            Some(clients.self_signed("myself")),
            "UnknownCA",
            "unknown_ca",
        ),
        (
            "serverAuth-only EKU",
            Some(clients.client(ClientKind::ServerAuthOnly, "server-ish", None)),
            "UnsupportedCertificate",
            "bad_usage",
        ),
        (
            "chain deeper than depth",
            Some(clients.client(ClientKind::TooDeep, "deep", None)),
            "CertificateUnknown",
            "chain_too_deep",
        ),
    ];
    for version in [Versions::Tls13Only, Versions::Tls12Only] {
        let ok = attempt(addr, &opts(&pki, HOST, version, Some(&valid)), "/bytes/1");
        assert_eq!(
            ok,
            Ok(200),
            "{version:?}: the valid certificate\n{}",
            p.output()
        );
        for (what, cert, alert, reason) in &cases {
            let before = rejections(admin, reason);
            let o = opts(&pki, HOST, version, cert.as_ref());
            expect_alert(
                attempt(addr, &o, "/bytes/1"),
                alert,
                &format!("{version:?} {what}"),
            );
            assert_eq!(
                rejections_reach(admin, reason, before + 1),
                before + 1,
                "{version:?} {what}: counted as {reason}"
            );
        }
    }
    // Refusals never reached the upstream.
    assert_eq!(backend.heads(), 2);
}

/// curl, the other real client (OpenSSL), TLS 1.3 and 1.2: `--cert`/`--key` with a
/// valid chain is served; every wrong certificate of the PKI, and none, fails its
/// handshake with its alert (as curl -v prints it: "TLS alert, certificate expired")
/// and its counter.
#[test]
fn curl_with_each_client_certificate() {
    let version = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
    assert!(version.status.success(), "curl --version failed");
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let other = ClientPki::new(pki.dir(), "other");
    let valid = clients.client(
        ClientKind::Valid,
        "partner-a",
        Some("spiffe://example.org/ns/orders/sa/api"),
    );
    let revoked = clients.client(ClientKind::Valid, "partner-revoked", None);
    let crl = clients.write_crl("clients.crl.pem", &[&revoked], false);
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[&crl], "required"),
        ROUTE,
    );
    let (p, admin) = start(pki.dir(), &toml);
    let port = p.addrs()[0].port();
    let curl = |cert: Option<&ClientCert>, tls12: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sSv", "--http1.1", "--max-time", "30", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--cacert"])
            .arg(pki.root_pem_path())
            .arg("--resolve")
            .arg(format!("{HOST}:{port}:127.0.0.1"));
        if tls12 {
            cmd.args(["--tlsv1.2", "--tls-max", "1.2"]);
        }
        if let Some(c) = cert {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        let out = cmd
            .arg(format!("https://{HOST}:{port}/bytes/3"))
            .output()
            .expect("run curl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: Vec<(&str, Option<ClientCert>, &str, &str)> = vec![
        (
            "no certificate",
            None,
            "certificate required",
            "no_certificate",
        ),
        (
            "expired",
            Some(clients.client(ClientKind::Expired, "old", None)),
            "certificate expired",
            "expired",
        ),
        (
            "not yet valid",
            Some(clients.client(ClientKind::NotYetValid, "early", None)),
            "certificate expired",
            "not_yet_valid",
        ),
        (
            "revoked",
            Some(revoked.clone()),
            "certificate revoked",
            "revoked",
        ),
        (
            "another CA",
            Some(other.client(ClientKind::Valid, "stranger", None)),
            "unknown ca",
            "unknown_ca",
        ),
        (
            "self-signed",
            Some(clients.self_signed("myself")),
            "unknown ca",
            "unknown_ca",
        ),
        (
            "serverAuth-only EKU",
            Some(clients.client(ClientKind::ServerAuthOnly, "server-ish", None)),
            "unsupported certificate",
            "bad_usage",
        ),
        (
            "chain deeper than depth",
            Some(clients.client(ClientKind::TooDeep, "deep", None)),
            "certificate unknown",
            "chain_too_deep",
        ),
    ];
    for tls12 in [false, true] {
        let (code, status, err) = curl(Some(&valid), tls12);
        assert_eq!(
            (code, status.as_str()),
            (Some(0), "200"),
            "tls12={tls12}: {err}"
        );
        for (what, cert, alert, reason) in &cases {
            let before = rejections(admin, reason);
            let (code, status, err) = curl(cert.as_ref(), tls12);
            assert_ne!(code, Some(0), "tls12={tls12} {what}: served ({status})");
            assert!(
                err.to_lowercase().contains(alert),
                "tls12={tls12} {what}: curl should report the alert {alert:?}, said: {err}"
            );
            assert_eq!(
                rejections_reach(admin, reason, before + 1),
                before + 1,
                "tls12={tls12} {what}: counted as {reason}"
            );
        }
    }
    assert_eq!(backend.heads(), 2, "refusals never reached the upstream");
}

/// Two names on one address, each with its own client CA: a certificate valid for one
/// is refused on the other; the configuration is chosen from the ClientHello's SNI.
#[test]
fn each_sni_name_has_its_own_client_ca() {
    let pki = TestPki::new();
    let a = ClientPki::new(pki.dir(), "tenant-a");
    let b = ClientPki::new(pki.dir(), "tenant-b");
    let a_cert = a.client(ClientKind::Valid, "client-of-a", None);
    let b_cert = b.client(ClientKind::Valid, "client-of-b", None);
    let b_server = pki.leaf(&["b.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let entry_b = format!(
        "[[listener.tls.certificates]]\ncert = {}\nkey = {}\nserver_names = [\"b.test\"]\n\
         client_auth = {{ ca = {}, verify = \"required\" }}\n{ROUTE}",
        toml_str(&b_server.cert.to_string_lossy()),
        toml_str(&b_server.key.to_string_lossy()),
        toml_str(&b.ca.to_string_lossy()),
    );
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&a.ca, &[], "required"),
        &entry_b,
    );
    let (p, _admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];
    for version in [Versions::Tls13Only, Versions::Tls12Only] {
        let on = |name: &str, cert: &ClientCert| {
            attempt(addr, &opts(&pki, name, version, Some(cert)), "/bytes/1")
        };
        assert_eq!(on(HOST, &a_cert), Ok(200), "{version:?}");
        assert_eq!(on("b.test", &b_cert), Ok(200), "{version:?}");
        expect_alert(on(HOST, &b_cert), "UnknownCA", "b's client on a");
        expect_alert(on("b.test", &a_cert), "UnknownCA", "a's client on b");
    }
}

/// With configurations chosen by SNI, rustls must not see the ClientHello before it is
/// whole: a hello split into records written one by one still gets its name's client CA.
#[test]
fn a_fragmented_client_hello_still_selects_by_sni() {
    let pki = TestPki::new();
    let a = ClientPki::new(pki.dir(), "tenant-a");
    let b = ClientPki::new(pki.dir(), "tenant-b");
    let a_cert = a.client(ClientKind::Valid, "client-of-a", None);
    let b_cert = b.client(ClientKind::Valid, "client-of-b", None);
    let b_server = pki.leaf(&["b.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let entry_b = format!(
        "[[listener.tls.certificates]]\ncert = {}\nkey = {}\nserver_names = [\"b.test\"]\n\
         client_auth = {{ ca = {} }}\n{ROUTE}",
        toml_str(&b_server.cert.to_string_lossy()),
        toml_str(&b_server.key.to_string_lossy()),
        toml_str(&b.ca.to_string_lossy()),
    );
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&a.ca, &[], "required"),
        &entry_b,
    );
    let (p, _admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];
    for pieces in [2, 7] {
        let o = opts(&pki, "b.test", Versions::Tls13Only, Some(&b_cert));
        assert_eq!(
            fragmented_hello(addr, &o, "b.test", pieces),
            Ok(200),
            "{pieces} records"
        );
        let o = opts(&pki, "b.test", Versions::Tls13Only, Some(&a_cert));
        expect_alert(
            fragmented_hello(addr, &o, "b.test", pieces),
            "UnknownCA",
            &format!("a's client on b, hello in {pieces} records"),
        );
    }
}

/// A GET whose ClientHello goes out as `pieces` handshake records, each written on its
/// own (header and body apart): the status, or the error text.
fn fragmented_hello(
    addr: SocketAddr,
    o: &TlsOptions,
    name: &str,
    pieces: usize,
) -> Result<u16, String> {
    use std::io::{Read, Write};
    let config = std::sync::Arc::new(o.client_config().map_err(|e| e.to_string())?);
    let server =
        rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(config, server).map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).map_err(|e| e.to_string())?;
    assert_eq!(hello[0], 22, "a handshake record");
    assert_eq!(
        u16::from_be_bytes([hello[3], hello[4]]) as usize,
        hello.len() - 5,
        "the ClientHello is one record"
    );
    let mut sock = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    let payload = &hello[5..];
    for chunk in payload.chunks(payload.len().div_ceil(pieces)) {
        let len = (chunk.len() as u16).to_be_bytes();
        sock.write_all(&[22, 3, 1, len[0], len[1]])
            .map_err(|e| e.to_string())?;
        sock.write_all(chunk).map_err(|e| e.to_string())?;
    }
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let get = format!("GET /bytes/1 HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(get.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no response: {text:?}"))
}

/// A CRL replaced on disk revokes a certificate accepted a moment before, without a
/// restart, while a connection opened before keeps being served.
#[test]
fn a_crl_written_to_disk_revokes_without_a_restart() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let cert = clients.client(ClientKind::Valid, "partner-a", None);
    let crl = clients.write_crl("clients.crl.pem", &[], false);
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[&crl], "required"),
        ROUTE,
    );
    let (p, admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];
    let o = opts(&pki, HOST, Versions::Tls13Only, Some(&cert));
    let mut open = Client::tls(addr, &o).expect("connect");
    assert_eq!(open.roundtrip(&req::get(HOST, "/bytes/1")).status, 200);
    assert_eq!(attempt(addr, &o, "/bytes/1"), Ok(200));

    // A broken CRL: the old one stays, the file and the reason are said.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n",
    )
    .expect("break CRL");
    assert!(
        p.wait_for_output("reload failed", 1, WAIT),
        "{}",
        p.output()
    );
    assert!(
        p.output().contains(&crl.display().to_string()),
        "the broken file is named\n{}",
        p.output()
    );
    assert_eq!(
        attempt(addr, &o, "/bytes/1"),
        Ok(200),
        "the old CRL still in force"
    );

    clients.write_crl("clients.crl.pem", &[&cert], false);
    assert!(
        p.wait_for_output("configuration reloaded", 1, WAIT),
        "{}",
        p.output()
    );
    expect_alert(
        attempt(addr, &o, "/bytes/1"),
        "CertificateRevoked",
        "after the new CRL",
    );
    assert_eq!(rejections_reach(admin, "revoked", 1), 1);
    // The connection opened before is still served.
    assert_eq!(open.roundtrip(&req::get(HOST, "/bytes/2")).status, 200);
}

/// `crl_expired`: a CRL past its next update refuses (fail closed) or is used.
#[test]
fn an_expired_crl_refuses_unless_told_to_ignore_it() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let cert = clients.client(ClientKind::Valid, "partner-a", None);
    let crl = clients.write_crl("old.crl.pem", &[], true);
    for (policy, refused) in [("refuse", true), ("ignore", false)] {
        let backend = Backend::start();
        let auth = client_auth(&clients.ca, &[&crl], "required")
            + &format!("crl_expired = \"{policy}\"\n");
        let (p, admin) = start(pki.dir(), &config(&pki, &backend, &auth, ROUTE));
        let o = opts(&pki, HOST, Versions::Tls13Only, Some(&cert));
        let got = attempt(p.addrs()[0], &o, "/bytes/1");
        if refused {
            expect_alert(got, "UnknownCA", "expired CRL, refuse");
            assert_eq!(rejections_reach(admin, "crl_expired", 1), 1);
        } else {
            assert_eq!(got, Ok(200), "expired CRL, ignore");
        }
    }
}

/// `verify = "optional"`: a client without a certificate is served, but a route with
/// `[route.client_cert]` answers it 403; `allow` matches a SPIFFE URI prefix or the
/// subject DN; an invalid certificate is still refused in the handshake (nginx's
/// `optional`).
#[test]
fn optional_client_certificates_and_route_requirements() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let orders = clients.client(
        ClientKind::Valid,
        "orders-api",
        Some("spiffe://example.org/ns/orders/sa/api"),
    );
    let partner = clients.client(ClientKind::Valid, "partner-a", None);
    let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
         [[route]]\npath_prefix = \"/secure\"\nstrip_prefix = true\nupstream = \"app\"\n\
         [route.client_cert]\nrequired = true\n\
         [[route]]\npath_prefix = \"/orders\"\nstrip_prefix = true\nupstream = \"app\"\n\
         [route.client_cert]\nrequired = true\n\
         allow = [\"spiffe://example.org/ns/orders/*\", \"CN=partner-a,O=Example\"]\n\
         [[route]]\npath_prefix = \"/billing\"\nstrip_prefix = true\nupstream = \"app\"\n\
         [route.client_cert]\nallow = [\"spiffe://example.org/ns/billing/*\"]\n";
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[], "optional"),
        routes,
    );
    let (p, admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];
    let anonymous = opts(&pki, HOST, Versions::Tls13Only, None);
    let with = |c: &ClientCert| opts(&pki, HOST, Versions::Tls13Only, Some(c));
    assert_eq!(attempt(addr, &anonymous, "/bytes/1"), Ok(200));
    assert_eq!(attempt(addr, &anonymous, "/secure/bytes/1"), Ok(403));
    assert_eq!(attempt(addr, &anonymous, "/orders/bytes/1"), Ok(403));
    assert_eq!(attempt(addr, &with(&partner), "/secure/bytes/1"), Ok(200));
    assert_eq!(attempt(addr, &with(&orders), "/orders/bytes/1"), Ok(200));
    assert_eq!(
        attempt(addr, &with(&partner), "/orders/bytes/1"),
        Ok(200),
        "by DN"
    );
    assert_eq!(attempt(addr, &with(&orders), "/billing/bytes/1"), Ok(403));
    // A certificate that fails verification does not refuse the connection under
    // optional: it goes on unverified, the upstream is told why, and a route that
    // requires a certificate answers 403. Each failure is counted by its reason.
    let expired = clients.client(ClientKind::Expired, "old", None);
    let stranger = ClientPki::new(pki.dir(), "other").client(ClientKind::Valid, "stranger", None);
    for (cert, reason, text) in [
        (&expired, "expired", "certificate has expired"),
        (
            &stranger,
            "unknown_ca",
            "unable to get local issuer certificate",
        ),
    ] {
        let before = rejections(admin, reason);
        assert_eq!(attempt(addr, &with(cert), "/bytes/1"), Ok(200), "{reason}");
        let seen = backend.last_request().expect("recorded");
        assert_eq!(
            seen.header("x-ssl-client-verify"),
            Some(format!("FAILED:{text}").as_str()),
            "{reason}"
        );
        assert_eq!(
            seen.header("x-ssl-client-dn"),
            None,
            "no identity for {reason}"
        );
        assert_eq!(
            attempt(addr, &with(cert), "/secure/bytes/1"),
            Ok(403),
            "{reason}"
        );
        assert_eq!(rejections_reach(admin, reason, before + 2), before + 2);
    }
    // The 403s never reached the upstream.
    assert_eq!(backend.heads(), 6);
}

/// `ringgate check` names file, line and field for each client-auth mistake.
#[test]
fn check_rejects_bad_client_auth_settings() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let server = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let not_a_crl = pki.dir().join("not-a-crl.pem");
    std::fs::copy(&clients.ca, &not_a_crl).expect("copy");
    let unreadable = pki.dir().join("unreadable-dir.pem");
    std::fs::create_dir(&unreadable).expect("mkdir");
    let toml = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[listener.tls]\n\
         [listener.tls.client_auth]\n\
         ca = \"missing-ca.pem\"\n\
         crl = [{}, \"missing.crl\", \"unreadable-dir.pem\"]\n\
         verify = \"sometimes\"\n\
         crl_expired = \"maybe\"\n\
         [[listener.tls.certificates]]\ncert = {}\nkey = {}\n\
         client_auth = {{ ca = \"not-a-crl.pem\", crl = [\"not-a-crl.pem\"] }}\n\
         [[route]]\nupstream = \"app\"\n[route.client_cert]\nallow = [\"a*b\"]\n\
         [upstream.app]\nservers = [\"127.0.0.1:9\"]\n",
        toml_str(&not_a_crl.to_string_lossy()),
        toml_str(&server.cert.to_string_lossy()),
        toml_str(&server.key.to_string_lossy()),
    );
    let path = pki.dir().join("bad.toml");
    std::fs::write(&path, &toml).expect("write");
    let out = run_cli(&["check", "-c", path.to_str().unwrap()], pki.dir());
    assert_eq!(out.status.code(), Some(1), "{}", out.text);
    let file = path.display().to_string();
    for (line, field, words) in [
        (
            5,
            "listener[0].tls.client_auth.ca",
            "missing-ca.pem: cannot read",
        ),
        (
            6,
            "listener[0].tls.client_auth.crl[0]",
            "not-a-crl.pem: not a CRL",
        ),
        (
            6,
            "listener[0].tls.client_auth.crl[1]",
            "missing.crl: cannot read",
        ),
        (
            6,
            "listener[0].tls.client_auth.crl[2]",
            "unreadable-dir.pem: cannot read",
        ),
        (7, "listener[0].tls.client_auth.verify", "\"sometimes\""),
        (8, "listener[0].tls.client_auth.crl_expired", "\"maybe\""),
        (
            12,
            "listener[0].tls.certificates[0].client_auth.crl[0]",
            "not-a-crl.pem",
        ),
        (16, "route[0].client_cert.allow[0]", "trailing `*`"),
    ] {
        let want = format!(": {field}: ");
        let found = out.text.lines().any(|l| {
            l.starts_with(&format!("{file}:{line}:")) && l.contains(&want) && l.contains(words)
        });
        assert!(
            found,
            "no {file}:{line}: {field} … {words} in\n{}",
            out.text
        );
    }
}

/// Resumption keeps the identity: a session resumed with a client certificate keeps its
/// chain (rustls restores it), so a route requirement holds on the resumed connection.
#[test]
fn a_resumed_session_keeps_its_client_certificate() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let partner = clients.client(ClientKind::Valid, "partner-a", None);
    let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
         [route.client_cert]\nrequired = true\nallow = [\"CN=partner-a,O=Example\"]\n";
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[], "optional"),
        routes,
    );
    let (p, _admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];
    for version in [Versions::Tls13Only, Versions::Tls12Only] {
        let o = opts(&pki, HOST, version, Some(&partner));
        let config = std::sync::Arc::new(o.client_config().expect("client config"));
        let deadline = Instant::now() + WAIT;
        let mut kinds = Vec::new();
        while !kinds.contains(&rustls::HandshakeKind::Resumed) && Instant::now() < deadline {
            let (kind, status) = request_with_config(&config, addr);
            assert_eq!(status, 200, "{version:?} {kind:?}");
            kinds.push(kind);
        }
        assert!(
            kinds.contains(&rustls::HandshakeKind::Resumed),
            "{version:?}: never resumed: {kinds:?}"
        );
    }
}

/// rustls does not ask the verifier again on resumption: a ticket issued before a reload
/// made client certificates required must not let a client in without one.
#[test]
fn a_session_from_before_certificates_were_required_does_not_resume_in() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let backend = Backend::start();
    let (p, admin) = start(pki.dir(), &config(&pki, &backend, "", ROUTE));
    let addr = p.addrs()[0];
    let o = opts(&pki, HOST, Versions::Tls13Only, None);
    let config_ = std::sync::Arc::new(o.client_config().expect("client config"));
    assert_eq!(try_request(&config_, addr).1, Some(200));
    let required = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[], "required"),
        ROUTE,
    );
    std::fs::write(pki.dir().join("ringgate.toml"), required).expect("write config");
    p.signal("HUP");
    assert!(
        p.wait_for_output("configuration reloaded", 1, WAIT),
        "{}",
        p.output()
    );
    let (kind, status) = try_request(&config_, addr);
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "the old ticket resumed (the case under test)"
    );
    assert_eq!(
        status, None,
        "a resumed connection without a certificate was served"
    );
    assert_eq!(rejections_reach(admin, "no_certificate", 1), 1);
}

/// A resumed session is checked again against the CAs and CRLs in force: a certificate
/// revoked after its session was made does not resume in (rustls does not ask the
/// verifier on resumption; ringgate does), for TLS 1.3 tickets and TLS 1.2 sessions.
#[test]
fn a_certificate_revoked_after_its_session_does_not_resume_in() {
    let pki = TestPki::new();
    let clients = ClientPki::new(pki.dir(), "main");
    let partner = clients.client(ClientKind::Valid, "partner-a", None);
    let crl = clients.write_crl("clients.crl.pem", &[], false);
    let backend = Backend::start();
    let toml = config(
        &pki,
        &backend,
        &client_auth(&clients.ca, &[&crl], "required"),
        ROUTE,
    );
    let (p, admin) = start(pki.dir(), &toml);
    let addr = p.addrs()[0];
    let configs: Vec<_> = [Versions::Tls13Only, Versions::Tls12Only]
        .into_iter()
        .map(|v| {
            let o = opts(&pki, HOST, v, Some(&partner));
            std::sync::Arc::new(o.client_config().expect("client config"))
        })
        .collect();
    for c in &configs {
        // Until the client holds a session (a TLS 1.3 ticket arrives after the first
        // response), then one resumption to show it resumes before the revocation.
        let deadline = Instant::now() + WAIT;
        loop {
            let (kind, status) = request_with_config(c, addr);
            assert_eq!(status, 200);
            if kind == rustls::HandshakeKind::Resumed {
                break;
            }
            assert!(Instant::now() < deadline, "never resumed");
        }
    }
    clients.write_crl("clients.crl.pem", &[&partner], false);
    assert!(
        p.wait_for_output("configuration reloaded", 1, WAIT),
        "{}",
        p.output()
    );
    for (i, c) in configs.iter().enumerate() {
        let (kind, status) = try_request(c, addr);
        assert_eq!(
            kind,
            Some(rustls::HandshakeKind::Resumed),
            "config {i}: the case under test"
        );
        assert_eq!(status, None, "config {i}: a revoked certificate resumed in");
    }
    assert_eq!(rejections_reach(admin, "revoked", 2), 2);
}

/// One GET on a fresh connection made from `config` (its session cache shared).
fn request_with_config(
    config: &std::sync::Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> (rustls::HandshakeKind, u16) {
    let (kind, status) = try_request(config, addr);
    (kind.expect("handshake done"), status.expect("a response"))
}

/// One GET on a fresh connection made from `config`: how the handshake went (if it
/// completed) and the status (if a response came).
fn try_request(
    config: &std::sync::Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> (Option<rustls::HandshakeKind>, Option<u16>) {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from(HOST).expect("name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("connection");
    let sock = std::net::TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /bytes/1 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    (tls.conn.handshake_kind(), status)
}

/// `examples/mtls.toml` works as its comments say: `examples/mtls-pki.sh` makes a fresh
/// demo PKI with openssl, and curl with the client certificate it prints reaches the
/// SPIFFE-restricted route; without one only `/public/` is served (403 elsewhere), and
/// so is the revoked client (`verify = "optional"`: it is let in unverified). Only the listen and upstream addresses are
/// changed (port 0, an in-process backend).
#[test]
fn the_mtls_example_runs_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs/mtls");
    let out = Command::new("sh")
        .arg(root.join("examples/mtls-pki.sh"))
        .arg(&certs)
        .output()
        .expect("run sh examples/mtls-pki.sh (needs openssl: apt-get install openssl)");
    assert!(
        out.status.success(),
        "mtls-pki.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains("curl --cacert"),
        "no curl command: {printed}"
    );

    let backend = Backend::start();
    let example =
        std::fs::read_to_string(root.join("examples/mtls.toml")).expect("read examples/mtls.toml");
    assert!(example.contains("addr = \"127.0.0.1:8443\"") && example.contains("127.0.0.1:9000"));
    let toml = example
        .replace("addr = \"127.0.0.1:8443\"", "addr = \"127.0.0.1:0\"")
        .replace("127.0.0.1:9000", &backend.addr.to_string());
    let path = dir.path().join("mtls.toml");
    std::fs::write(&path, toml).expect("write config");
    let p = ProxyProcess::spawn(&path, 1);
    let port = p.addrs()[0].port();

    let curl = |path: &str, cert: Option<&str>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--http1.1", "--max-time", "30", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--cacert"])
            .arg(certs.join("ca.pem"))
            .arg("--resolve")
            .arg(format!("localhost:{port}:127.0.0.1"));
        if let Some(name) = cert {
            cmd.arg("--cert")
                .arg(certs.join(format!("{name}.pem")))
                .arg("--key")
                .arg(certs.join(format!("{name}.key")));
        }
        let out = cmd
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The test backend answers 404 for a path it has no page for: the upstream's answer.
    let (code, status, err) = curl("/orders/1", Some("client"));
    assert_eq!((code, status.as_str()), (Some(0), "404"), "curl: {err}");
    let seen = backend
        .last_request()
        .expect("the upstream saw the request");
    assert_eq!(seen.target, "/orders/1");
    assert_eq!(seen.header("x-ssl-client-verify"), Some("SUCCESS"));
    assert_eq!(
        seen.header("x-ssl-client-dn"),
        Some("CN=partner-a,O=Example")
    );
    let heads = backend.heads();
    let (_, status, err) = curl("/public/1", None);
    assert_eq!(status, "404", "no certificate on /public/: {err}");
    assert_eq!(backend.heads(), heads + 1, "/public/ reached the upstream");
    let (_, status, err) = curl("/private", None);
    assert_eq!(status, "403", "no certificate on /: {err}");
    assert_eq!(
        backend.heads(),
        heads + 1,
        "the 403 never reached the upstream"
    );
    // optional: the revoked client is let in unverified; only /public/ serves it.
    let (_, status, err) = curl("/public/1", Some("revoked"));
    assert_eq!(status, "404", "revoked client on /public/: {err}");
    let seen = backend
        .last_request()
        .expect("the upstream saw the request");
    assert_eq!(
        seen.header("x-ssl-client-verify"),
        Some("FAILED:certificate revoked")
    );
    let (_, status, err) = curl("/orders/1", Some("revoked"));
    assert_eq!(status, "403", "revoked client on /orders/: {err}");
    drop(p);
}
