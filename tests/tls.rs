//! TLS termination: certificate selection by SNI (and the default without it), RSA and
//! ECDSA keys in every PEM encoding, TLS 1.2 and 1.3, ALPN, refusal of TLS 1.1 and of
//! plain HTTP on the TLS port, and an interop check with curl.

mod common;

use std::process::Command;

use common::backend::{Backend, pattern};
use common::client::{Client, TlsOptions, Versions, raw_exchange, req};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{CertEntry, ConfigBuilder, Proxy};
use common::{Fixture, HOST, sha256_hex};

struct Tls {
    proxy: Proxy,
    pki: TestPki,
    _backend: Backend,
}

impl Tls {
    /// A proxy whose TLS listener serves `certs` (built from `pki`) with `tls` settings.
    fn start(pki: TestPki, certs: &[CertEntry], tls: &[(&str, &str)]) -> Tls {
        let backend = Backend::start();
        let config = ConfigBuilder::new()
            .tls_listener_with(certs, tls)
            .route(None, "/", false, "backend")
            .upstream("backend", &[backend.addr], &[]);
        let proxy = Proxy::start(&config.build(), pki.dir());
        Tls {
            proxy,
            pki,
            _backend: backend,
        }
    }

    fn opts(&self, name: &str) -> TlsOptions {
        TlsOptions::new(self.pki.root_der(), name)
    }

    fn connect(&self, opts: &TlsOptions) -> Client {
        Client::tls(self.proxy.addr(), opts)
            .unwrap_or_else(|e| panic!("TLS connect with {opts:?}: {e}"))
    }

    /// Connects with `opts`, checks the served leaf is `expected`, and proxies a request.
    fn expect_cert(&self, opts: &TlsOptions, expected: &CertFiles, what: &str) {
        let mut c = self.connect(opts);
        let info = c.tls.clone().expect("TLS info");
        assert!(
            info.peer_leaf == expected.leaf_der,
            "{what}: the proxy served the wrong certificate (expected {})",
            expected.cert.display()
        );
        let resp = c.roundtrip(&req::get("x.test", "/bytes/64"));
        assert_eq!(resp.status, 200, "{what}\n{}", resp.describe());
        assert_eq!(resp.body, pattern(64, 64), "{what}");
    }
}

fn entry(files: &CertFiles, default: bool) -> CertEntry {
    CertEntry {
        files: files.clone(),
        server_names: None,
        default,
    }
}

const KTLS_OFF: (&str, &str) = ("ktls", "\"off\"");

#[test]
fn sni_selects_the_certificate_and_first_is_default() {
    let pki = TestPki::new();
    let a = pki.leaf(&["a.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let b = pki.leaf(&["b.test"], KeyType::Rsa2048, KeyEncoding::Pkcs1);
    let t = Tls::start(pki, &[entry(&a, false), entry(&b, false)], &[KTLS_OFF]);
    t.expect_cert(&t.opts("a.test"), &a, "SNI a.test");
    t.expect_cert(&t.opts("b.test"), &b, "SNI b.test");
    t.expect_cert(&t.opts("a.test").no_sni(), &a, "no SNI → first certificate");
    t.expect_cert(
        &t.opts("unknown.test").accept_any_cert(),
        &a,
        "unknown SNI → first certificate",
    );
}

#[test]
fn explicit_default_certificate_serves_missing_and_unknown_sni() {
    let pki = TestPki::new();
    let a = pki.leaf(&["a.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let b = pki.leaf(&["b.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let t = Tls::start(pki, &[entry(&a, false), entry(&b, true)], &[KTLS_OFF]);
    t.expect_cert(&t.opts("a.test"), &a, "SNI a.test");
    t.expect_cert(&t.opts("b.test").no_sni(), &b, "no SNI → default = true");
    t.expect_cert(
        &t.opts("zzz.test").accept_any_cert(),
        &b,
        "unknown SNI → default = true",
    );
}

#[test]
fn explicit_server_names_override_the_certificate_sans() {
    let pki = TestPki::new();
    let a = pki.leaf(&["a.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let b = pki.leaf(
        &["b.test", "alias.test"],
        KeyType::EcdsaP256,
        KeyEncoding::Pkcs8,
    );
    let b_entry = CertEntry {
        files: b.clone(),
        server_names: Some(vec!["alias.test".into()]),
        default: false,
    };
    let t = Tls::start(pki, &[entry(&a, false), b_entry], &[KTLS_OFF]);
    t.expect_cert(&t.opts("alias.test"), &b, "SNI alias.test (listed)");
    t.expect_cert(
        &t.opts("b.test").accept_any_cert(),
        &a,
        "SNI b.test is in the SAN but not in server_names → default",
    );
}

#[test]
fn every_key_type_and_encoding_loads_and_serves() {
    let pki = TestPki::new();
    let kinds = [
        ("ec-pkcs8.test", KeyType::EcdsaP256, KeyEncoding::Pkcs8),
        ("ec-sec1.test", KeyType::EcdsaP256, KeyEncoding::Sec1),
        ("rsa-pkcs8.test", KeyType::Rsa2048, KeyEncoding::Pkcs8),
        ("rsa-pkcs1.test", KeyType::Rsa2048, KeyEncoding::Pkcs1),
    ];
    let certs: Vec<(&str, CertFiles)> = kinds
        .iter()
        .map(|(name, kt, enc)| (*name, pki.leaf(&[name], *kt, *enc)))
        .collect();
    let entries: Vec<CertEntry> = certs.iter().map(|(_, c)| entry(c, false)).collect();
    let t = Tls::start(pki, &entries, &[KTLS_OFF]);
    for (name, cert) in &certs {
        for v in [Versions::Tls12Only, Versions::Tls13Only] {
            t.expect_cert(
                &t.opts(name).versions(v),
                cert,
                &format!("{name} over {v:?}"),
            );
        }
    }
}

#[test]
fn self_signed_certificate_is_served_and_untrusted_by_the_test_root() {
    let pki = TestPki::new();
    let ss = pki.self_signed(&["self.test"], KeyType::EcdsaP256);
    let t = Tls::start(pki, &[entry(&ss, false)], &[KTLS_OFF]);
    t.expect_cert(
        &t.opts("self.test").accept_any_cert(),
        &ss,
        "self-signed certificate",
    );
    let verified = Client::tls(t.proxy.addr(), &t.opts("self.test"));
    assert!(
        verified.is_err(),
        "a client trusting only the test root must reject the self-signed certificate"
    );
}

#[test]
fn tls12_and_tls13_both_negotiate() {
    let pki = TestPki::new();
    let ec = pki.leaf(&["ec.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let rsa = pki.leaf(&["rsa.test"], KeyType::Rsa2048, KeyEncoding::Pkcs8);
    let t = Tls::start(pki, &[entry(&ec, false), entry(&rsa, false)], &[KTLS_OFF]);
    for name in ["ec.test", "rsa.test"] {
        for (v, want) in [
            (Versions::Tls12Only, rustls::ProtocolVersion::TLSv1_2),
            (Versions::Tls13Only, rustls::ProtocolVersion::TLSv1_3),
            (Versions::Both, rustls::ProtocolVersion::TLSv1_3),
        ] {
            let mut c = t.connect(&t.opts(name).versions(v));
            let got = c.tls.as_ref().expect("TLS info").version;
            assert_eq!(got, want, "{name} with {v:?}");
            let body = pattern(9, 300_000);
            let resp = c.roundtrip(&req::post(name, "/echo", &body));
            assert_eq!(resp.status, 200, "{name} {v:?}\n{}", resp.describe());
            assert_eq!(sha256_hex(&resp.body), sha256_hex(&body), "{name} {v:?}");
        }
    }
}

#[test]
fn min_version_13_refuses_tls12_clients() {
    let pki = TestPki::new();
    let a = pki.leaf(&["a.test"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let t = Tls::start(
        pki,
        &[entry(&a, false)],
        &[("min_version", "\"1.3\""), KTLS_OFF],
    );
    let refused = Client::tls(
        t.proxy.addr(),
        &t.opts("a.test").versions(Versions::Tls12Only),
    );
    assert!(
        refused.is_err(),
        "a TLS 1.2-only client must be refused when min_version = \"1.3\""
    );
    t.expect_cert(
        &t.opts("a.test").versions(Versions::Tls13Only),
        &a,
        "TLS 1.3",
    );
}

/// The default `alpn = ["h2", "http/1.1"]`: a client offering both gets h2 (served by
/// the HTTP/2 session, tests/http2.rs), one offering HTTP/1.1 alone gets it.
#[test]
fn alpn_prefers_h2_and_negotiates_http11() {
    let f = Fixture::new();
    for (offer, want) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], &b"h2"[..]),
        (&[b"http/1.1"], b"http/1.1"),
    ] {
        let mut c = Client::tls(f.addr(), &f.tls_options().alpn(offer)).expect("connect");
        let alpn = c.tls.as_ref().expect("TLS info").alpn.clone();
        assert_eq!(alpn.as_deref(), Some(want), "ALPN offer {offer:?}");
        if want == b"http/1.1" {
            let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
            assert_eq!(resp.status, 200, "{}", resp.describe());
        }
    }
    let c = Client::tls(f.addr(), &f.tls_options()).expect("connect without ALPN");
    assert_eq!(c.tls.as_ref().expect("TLS info").alpn, None);
}

/// A hand-made pre-1.3 ClientHello with `version` as legacy_version and no
/// supported_versions extension, offering CBC suites (TLS 1.0/1.1 era) and GCM suites (so
/// the same bytes with 0x0303 are an acceptable TLS 1.2 hello: the control case).
fn client_hello(version: u16, sni: &str) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
    }
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u16).to_be_bytes().to_vec();
        v.extend(body);
        v
    }
    let mut exts = Vec::new();
    let mut name = vec![0x00];
    name.extend(with_len16(sni.as_bytes()));
    ext(&mut exts, 0x0000, &with_len16(&name)); // server_name
    ext(&mut exts, 0x000a, &with_len16(&[0x00, 0x1d, 0x00, 0x17])); // groups: x25519, P-256
    ext(&mut exts, 0x000b, &[0x01, 0x00]); // ec_point_formats: uncompressed
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext(
        &mut exts,
        0x000d,
        &with_len16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]),
    );
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(&mut exts, 0xff01, &[0x00]); // renegotiation_info (empty)

    let mut body = version.to_be_bytes().to_vec();
    body.extend(pattern(42, 32)); // random
    body.push(0x00); // empty session id
    let suites: [u16; 8] = [
        0xc02b, 0xc02f, // ECDHE_{ECDSA,RSA}_WITH_AES_128_GCM_SHA256
        0xc009, 0xc013, // ECDHE_{ECDSA,RSA}_WITH_AES_128_CBC_SHA
        0xc00a, 0xc014, // ECDHE_{ECDSA,RSA}_WITH_AES_256_CBC_SHA
        0x002f, 0x0035, // RSA_WITH_AES_{128,256}_CBC_SHA
    ];
    let suite_bytes: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    body.extend(with_len16(&suite_bytes));
    body.extend([0x01, 0x00]); // compression: null only
    body.extend(with_len16(&exts));

    let mut hs = vec![0x01]; // ClientHello
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&hs));
    record
}

/// Sends `hello` and returns the first record the server answers with (or nothing), without
/// waiting for the server to close.
fn first_record(addr: std::net::SocketAddr, hello: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(common::client::READ_TIMEOUT))
        .expect("read timeout");
    s.write_all(hello).expect("send ClientHello");
    let mut got = Vec::new();
    let mut buf = [0u8; 5];
    match s.read(&mut buf) {
        Ok(n) => got.extend(&buf[..n]),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "no answer at all to a ClientHello"
        ),
    }
    got
}

#[test]
fn tls11_client_hello_is_refused() {
    let f = Fixture::new();
    // Control: the same hand-made hello as TLS 1.2 gets a handshake record back, so the
    // refusal below is about the version, not a malformed hello.
    let got = first_record(f.addr(), &client_hello(0x0303, HOST));
    assert!(
        got.starts_with(&[0x16, 0x03, 0x03]),
        "control: a TLS 1.2 ClientHello should get a ServerHello, got {got:02x?}"
    );
    let got = raw_exchange(f.addr(), &client_hello(0x0302, HOST))
        .unwrap_or_else(|e| panic!("TLS 1.1 ClientHello: {e}"));
    assert!(
        got.is_empty() || got[0] == 0x15,
        "a TLS 1.1 ClientHello must get an alert or a close, not a handshake: {:02x?}",
        &got[..got.len().min(40)]
    );
    let got = raw_exchange(f.addr(), &client_hello(0x0301, HOST))
        .unwrap_or_else(|e| panic!("TLS 1.0 ClientHello: {e}"));
    assert!(
        got.is_empty() || got[0] == 0x15,
        "a TLS 1.0 ClientHello must get an alert or a close: {:02x?}",
        &got[..got.len().min(40)]
    );
    // The listener is unaffected.
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/1"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn plain_http_on_the_tls_port_is_rejected_without_hanging() {
    let f = Fixture::new();
    let request = format!("GET /bytes/1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let got = raw_exchange(f.addr(), request.as_bytes())
        .unwrap_or_else(|e| panic!("plain HTTP sent to the TLS port: {e}"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty()
            || got[0] == 0x15
            || (text.starts_with("HTTP/1.") && text.split(' ').nth(1) == Some("400")),
        "plain HTTP on the TLS port: expected a 400, an alert or a close, got {text:?}"
    );
    assert_eq!(f.backend.heads(), 0, "nothing reaches the origin");
}

#[test]
fn curl_interoperates() {
    let version = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let f = Fixture::new();
    let dir = f.pki.dir();
    let body = pattern(77, 200_000);
    let body_path = dir.join("curl-body.bin");
    let out_path = dir.join("curl-out.bin");
    let headers_path = dir.join("curl-headers.txt");
    std::fs::write(&body_path, &body).expect("write curl body");
    let port = f.addr().port();
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "30", "--cacert"])
        .arg(f.pki.root_pem_path())
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .arg("--data-binary")
        .arg(format!("@{}", body_path.display()))
        .arg("-D")
        .arg(&headers_path)
        .arg("-o")
        .arg(&out_path)
        .arg(format!("https://{HOST}:{port}/echo"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed ({}): {}\n{version}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = std::fs::read_to_string(&headers_path).expect("read curl headers");
    assert!(headers.starts_with("HTTP/1.1 200"), "curl got:\n{headers}");
    let sha = sha256_hex(&body);
    assert!(
        headers
            .lines()
            .any(|l| l.to_ascii_lowercase() == format!("x-body-sha256: {sha}")),
        "the origin received a different body from curl:\n{headers}"
    );
    let got = std::fs::read(&out_path).expect("read curl output");
    assert_eq!(sha256_hex(&got), sha, "curl received a different body");
}

/// `ktls = "on"` refuses to start where the kernel cannot do TLS, naming the reason;
/// where it can, the proxy starts and serves.
#[test]
fn ktls_on_refuses_to_start_without_kernel_tls() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let toml = ConfigBuilder::new()
        .tls_listener_with(&[CertEntry::from(&cert)], &[("ktls", "\"on\"")])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    let config = ringgate::config::from_toml_str(&toml, "test.toml", pki.dir()).unwrap();
    let available = ringgate::transport::ktls::support().is_available();
    match ringgate::server::Server::start(config) {
        Ok(handle) => {
            assert!(
                available,
                "started with ktls = \"on\" although kTLS is unavailable"
            );
            handle.shutdown();
        }
        Err(e) => {
            assert!(!available, "refused although kTLS is available: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains("ktls = \"on\"") && msg.contains("kernel TLS is unavailable"),
                "{msg}"
            );
        }
    }
}

#[test]
fn cipher_suites_limit_the_choice_and_the_server_order_wins() {
    use rustls::CipherSuite as S;
    let pki = TestPki::new();
    let ec = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let suites = r#"["TLS13_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]"#;
    let t = Tls::start(
        pki,
        &[entry(&ec, false)],
        &[KTLS_OFF, ("cipher_suites", suites)],
    );
    // The client prefers AES-256; the server's list puts AES-128 first.
    let opts = t
        .opts(HOST)
        .suites(&[S::TLS13_AES_256_GCM_SHA384, S::TLS13_AES_128_GCM_SHA256]);
    let mut c = t.connect(&opts);
    assert_eq!(
        c.tls.as_ref().and_then(|i| i.suite),
        Some(S::TLS13_AES_128_GCM_SHA256)
    );
    let resp = c.roundtrip(&req::get(HOST, "/bytes/64"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    // A TLS 1.2 suite from the list works; one outside it does not.
    let opts = t
        .opts(HOST)
        .versions(Versions::Tls12Only)
        .suites(&[S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]);
    let c = t.connect(&opts);
    assert_eq!(
        c.tls.as_ref().and_then(|i| i.suite),
        Some(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
    );
    let opts = t.opts(HOST).suites(&[S::TLS13_CHACHA20_POLY1305_SHA256]);
    let err = Client::tls(t.proxy.addr(), &opts)
        .err()
        .expect("a suite outside cipher_suites must not be negotiated");
    assert!(
        err.to_string().contains("HandshakeFailure") || err.to_string().contains("handshake"),
        "{err}"
    );
}
