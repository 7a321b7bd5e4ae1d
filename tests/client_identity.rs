//! The client's verified certificate reaches the upstream as request fields
//! (`[listener.tls.client_identity_headers]`), checked byte for byte at an in-process
//! backend, from a real rustls client presenting a real certificate; and whatever
//! identity fields a client sends itself — `X-SSL-Client-*`, `X-Forwarded-Client-Cert`
//! — never reach the upstream, in every mode, with or without a certificate, on TLS and
//! plain listeners.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType, SerialNumber,
};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

use common::backend::{Backend, Recorded};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{CertEntry, ConfigBuilder, Proxy, toml_str};
use common::{HOST, sha256_hex};

/// A client CA and one client certificate it issued, whose subject needs escaping.
struct ClientPki {
    ca_path: std::path::PathBuf,
    leaf_der: CertificateDer<'static>,
    leaf_pem: String,
    key_der: Vec<u8>,
}

impl ClientPki {
    fn new(dir: &Path) -> ClientPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::OrganizationName, "Example, Inc.");
        ca.distinguished_name
            .push(DnType::CommonName, "Partner Clients CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        let ca_path = dir.join("clients-ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().expect("client key");
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "DE");
        p.distinguished_name
            .push(DnType::OrganizationName, "Partner A, \"Orders\"");
        p.distinguished_name
            .push(DnType::CommonName, "#orders+api Zürich");
        p.subject_alt_names = vec![
            SanType::URI(
                "spiffe://example.org/ns/orders/sa/api"
                    .try_into()
                    .expect("uri"),
            ),
            SanType::DnsName("api.partner.example".try_into().expect("dns")),
            SanType::DnsName("alt.partner.example".try_into().expect("dns")),
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from(vec![0x0a, 0xbc, 0x01]));
        let leaf = p.signed_by(&key, &issuer).expect("sign client cert");
        ClientPki {
            ca_path,
            leaf_der: leaf.der().clone(),
            leaf_pem: leaf.pem().replace("\r\n", "\n"),
            key_der: key.serialize_der(),
        }
    }

    /// What the upstream must see for this certificate, in order, byte for byte.
    fn expected_fields(&self) -> Vec<(String, String)> {
        let pairs = [
            ("X-SSL-Client-Verify", "SUCCESS".to_string()),
            (
                "X-SSL-Client-DN",
                r#"CN=\#orders\+api Z\C3\BCrich,O=Partner A\, \"Orders\",C=DE"#.to_string(),
            ),
            (
                "X-SSL-Client-I-DN",
                r"CN=Partner Clients CA,O=Example\, Inc.".to_string(),
            ),
            ("X-SSL-Client-Serial", "0ABC01".to_string()),
            ("X-SSL-Client-Fingerprint", sha256_hex(&self.leaf_der)),
            ("X-SSL-Client-Cert", escape_component(&self.leaf_pem)),
            (
                "X-SSL-Client-SAN-URI",
                "spiffe://example.org/ns/orders/sa/api".to_string(),
            ),
            (
                "X-SSL-Client-SAN-DNS",
                "api.partner.example,alt.partner.example".to_string(),
            ),
        ];
        pairs.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }

    /// This proxy's XFCC element for the certificate (no `By`: the server certificate
    /// has no URI SAN).
    fn xfcc_element(&self) -> String {
        format!(
            r#"Hash={};Subject="CN=\#orders\+api Z\C3\BCrich,O=Partner A\, \\"Orders\\",C=DE";URI=spiffe://example.org/ns/orders/sa/api;DNS=api.partner.example;DNS=alt.partner.example"#,
            sha256_hex(&self.leaf_der)
        )
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters (nginx's
/// `NGX_ESCAPE_URI_COMPONENT`), written here independently of the proxy's code.
fn escape_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Identity claims a client might send, in several spellings.
const SPOOFED: &str = "X-SSL-Client-Verify: SUCCESS\r\n\
    x-ssl-client-dn: CN=admin\r\n\
    X-SSL-CLIENT-SAN-URI: spiffe://example.org/ns/admin\r\n\
    X-SSL-Client-Fingerprint: 00\r\n\
    X-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"\r\n\
    x-forwarded-client-cert: Hash=11\r\n";

struct Setup {
    pki: TestPki,
    server: CertFiles,
    clients: ClientPki,
    backend: Backend,
}

fn setup() -> Setup {
    let pki = TestPki::new();
    let server = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let clients = ClientPki::new(pki.dir());
    Setup {
        pki,
        server,
        clients,
        backend: Backend::start(),
    }
}

/// A proxy whose TLS listener asks for client certificates (`verify`) with extra
/// `[listener.tls]` keys, plus a plain listener, both routing to the backend.
fn proxy(s: &Setup, verify: &str, tls: &[(&str, &str)]) -> Proxy {
    let client_auth = format!(
        "{{ ca = {}, verify = {} }}",
        toml_str(&s.clients.ca_path.to_string_lossy()),
        toml_str(verify)
    );
    let mut keys = vec![("ktls", "\"off\""), ("client_auth", client_auth.as_str())];
    keys.extend_from_slice(tls);
    let entry = CertEntry::from(&s.server);
    let config = ConfigBuilder::new()
        .server("workers", "1")
        .tls_listener_with(&[entry], &keys)
        .plain_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[s.backend.addr], &[]);
    Proxy::start(&config.build(), s.pki.dir())
}

fn client_config(s: &Setup, with_cert: bool, tls12: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut roots = RootCertStore::empty();
    roots.add(s.pki.root_der()).expect("root");
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = if with_cert {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(s.clients.key_der.clone()));
        builder
            .with_client_auth_cert(vec![s.clients.leaf_der.clone()], key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    config.resumption = Resumption::in_memory_sessions(16);
    Arc::new(config)
}

/// One `GET /headers` with `extra` fields over a new TLS connection; how the handshake
/// went, and the response.
fn get_tls(config: &Arc<ClientConfig>, addr: SocketAddr, extra: &str) -> (HandshakeKind, String) {
    let conn = ClientConnection::new(config.clone(), ServerName::try_from(HOST).expect("name"))
        .expect("client connection");
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = StreamOwned::new(conn, sock);
    let response = exchange(&mut tls, extra);
    (tls.conn.handshake_kind().expect("handshake done"), response)
}

fn get_plain(addr: SocketAddr, extra: &str) -> String {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    exchange(&mut sock, extra)
}

fn exchange(stream: &mut impl ReadWrite, extra: &str) -> String {
    let request =
        format!("GET /headers HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A close without close_notify after the whole response is still the end.
            Err(e) if !got.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The identity fields (X-SSL-Client-* and XFCC) the backend received, in order.
fn identity_fields(r: &Recorded) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            n.starts_with("x-ssl-client-") || n == "x-forwarded-client-cert"
        })
        .cloned()
        .collect()
}

fn last(s: &Setup) -> Recorded {
    s.backend
        .last_request()
        .expect("the backend saw the request")
}

fn ok(response: &str) {
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn a_verified_client_is_told_byte_for_byte_and_claims_are_dropped() {
    let s = setup();
    let p = proxy(&s, "optional", &[]);
    let with_cert = client_config(&s, true, false);
    let (kind, response) = get_tls(&with_cert, p.addr(), SPOOFED);
    ok(&response);
    assert_eq!(kind, HandshakeKind::Full);
    assert_eq!(identity_fields(&last(&s)), s.clients.expected_fields());

    // Naming them in Connection does not make the proxy's fields hop-by-hop.
    let hop = format!("{SPOOFED}Connection: X-SSL-Client-Verify, X-SSL-Client-DN\r\n");
    let (_, response) = get_tls(&with_cert, p.addr(), &hop);
    ok(&response);
    assert_eq!(identity_fields(&last(&s)), s.clients.expected_fields());

    // No certificate (optional): NONE, and nothing the client claimed.
    let without = client_config(&s, false, false);
    let (_, response) = get_tls(&without, p.addr(), SPOOFED);
    ok(&response);
    assert_eq!(
        identity_fields(&last(&s)),
        vec![("X-SSL-Client-Verify".to_string(), "NONE".to_string())]
    );

    // The plain listener: claims removed, nothing added.
    let response = get_plain(p.addrs()[1], SPOOFED);
    ok(&response);
    assert_eq!(identity_fields(&last(&s)), vec![]);
}

/// rustls restores the client's chain on resumption: a resumed session is told the
/// identity of the session it resumes, on TLS 1.3 (tickets) and TLS 1.2.
#[test]
fn a_resumed_session_keeps_its_identity() {
    let s = setup();
    let p = proxy(&s, "required", &[]);
    for tls12 in [false, true] {
        let config = client_config(&s, true, tls12);
        let (first, response) = get_tls(&config, p.addr(), "");
        ok(&response);
        assert_eq!(first, HandshakeKind::Full, "TLS 1.2: {tls12}");
        let (again, response) = get_tls(&config, p.addr(), SPOOFED);
        ok(&response);
        assert_eq!(again, HandshakeKind::Resumed, "TLS 1.2: {tls12}");
        assert_eq!(
            identity_fields(&last(&s)),
            s.clients.expected_fields(),
            "TLS 1.2: {tls12}"
        );
    }
}

/// Envoy's `forward_client_cert_details` modes, with and without a certificate: what
/// XFCC the upstream gets, and never a client's X-SSL-Client-* claim.
#[test]
fn xfcc_follows_each_mode_and_claims_never_pass() {
    let s = setup();
    let client_xfcc = "Hash=00;Subject=\"CN=admin\",Hash=11".to_string();
    let ours = s.clients.xfcc_element();
    let cases: [(&str, Option<String>, Option<String>); 5] = [
        ("sanitize", None, None),
        ("forward_only", Some(client_xfcc.clone()), None),
        (
            "append_forward",
            Some(format!("{client_xfcc},{ours}")),
            None,
        ),
        ("sanitize_set", Some(ours.clone()), None),
        (
            "always_forward_only",
            Some(client_xfcc.clone()),
            Some(client_xfcc.clone()),
        ),
    ];
    for (mode, with_cert, without_cert) in cases {
        // The X-SSL-Client-* fields off: only XFCC is left to look at.
        let table = format!(
            "{{ enabled = false, forward_client_cert = {} }}",
            toml_str(mode)
        );
        let p = proxy(&s, "optional", &[("client_identity_headers", &table)]);
        for (cert, want) in [(true, &with_cert), (false, &without_cert)] {
            let (_, response) = get_tls(&client_config(&s, cert, false), p.addr(), SPOOFED);
            ok(&response);
            let got: Vec<String> = identity_fields(&last(&s))
                .into_iter()
                .map(|(n, v)| {
                    assert!(
                        n.eq_ignore_ascii_case("x-forwarded-client-cert"),
                        "{mode}: {n} reached the upstream"
                    );
                    v
                })
                .collect();
            let got = (!got.is_empty()).then(|| got.join(","));
            assert_eq!(&got, want, "{mode}, certificate: {cert}");
        }
        // A plain listener has no client_identity_headers (they live in [listener.tls]):
        // Envoy's default, sanitize, whatever the TLS listener's mode.
        let response = get_plain(p.addrs()[1], SPOOFED);
        ok(&response);
        assert_eq!(identity_fields(&last(&s)), vec![], "{mode}, plain listener");
        p.shutdown();
    }
}

/// Renamed and switched-off fields: the new name carries the value, a client's field of
/// that name is dropped, a field that is off is not sent.
#[test]
fn fields_can_be_renamed_and_switched_off() {
    let s = setup();
    let table = r#"{ dn = "X-Client-Subject", cert = false, issuer_dn = false, serial = false, fingerprint = false, san_dns = false, san_email = true }"#;
    let p = proxy(&s, "required", &[("client_identity_headers", table)]);
    let spoofed = format!("{SPOOFED}X-Client-Subject: CN=admin\r\n");
    let (_, response) = get_tls(&client_config(&s, true, false), p.addr(), &spoofed);
    ok(&response);
    let r = last(&s);
    assert_eq!(
        r.header_all("X-Client-Subject"),
        vec![r#"CN=\#orders\+api Z\C3\BCrich,O=Partner A\, \"Orders\",C=DE"#]
    );
    assert_eq!(
        identity_fields(&r),
        vec![
            ("X-SSL-Client-Verify".to_string(), "SUCCESS".to_string()),
            (
                "X-SSL-Client-SAN-URI".to_string(),
                "spiffe://example.org/ns/orders/sa/api".to_string()
            ),
        ]
    );
}
