//! The accept phase and the real client address, with real sockets from different
//! 127.0.0.x source addresses (all of 127.0.0.0/8 is the loopback's): a listener's
//! `allow` / `deny` closes a connection before any TLS byte; a route's answers 403; PROXY
//! protocol v1 and v2 headers (TCP4, TCP6, LOCAL, UNKNOWN) give the client address the
//! upstream sees in X-Forwarded-For, and every bad header (malformed, truncated,
//! oversized, absent, late, from an untrusted source) closes the connection; and
//! `trusted_proxies` walks X-Forwarded-For like nginx's `real_ip_recursive`. Each
//! refusal is checked in `/metrics` (`ringgate_policy_rejections_total`).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

use common::HOST;
use common::backend::Backend;
use common::client::{Client, TlsOptions, connect_from};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{Proxy, toml_str};

fn ip(t: &str) -> IpAddr {
    t.parse().expect("ip")
}

/// A TOML list of strings.
fn list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

struct Setup {
    proxy: Proxy,
    backend: Backend,
    pki: TestPki,
}

/// A proxy with one listener (`listener` lines go into its table; `tls` makes it a TLS
/// listener for [`HOST`]), routes from `routes` (TOML, each with `upstream =
/// "backend"`), and the admin listener.
fn setup(listener: &str, tls: bool, routes: &str) -> Setup {
    let pki = TestPki::new();
    let cert: CertFiles = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let mut text = String::from("[server]\nworkers = 2\npin_workers = false\n\n");
    text += "[[listener]]\naddr = \"127.0.0.1:0\"\n";
    text += listener;
    text += "\n";
    if tls {
        text += "[listener.tls]\nhandshake_timeout_ms = 500\n[[listener.tls.certificates]]\n";
        text += &format!("cert = {}\n", toml_str(&cert.cert.to_string_lossy()));
        text += &format!("key = {}\n", toml_str(&cert.key.to_string_lossy()));
    }
    text += "\n";
    text += routes;
    text += &format!(
        "\n[upstream.backend]\nservers = [{}]\n\n[admin]\naddr = \"127.0.0.1:0\"\n",
        toml_str(&backend.addr.to_string())
    );
    let proxy = Proxy::start(&text, pki.dir());
    Setup {
        proxy,
        backend,
        pki,
    }
}

const ROUTE_ALL: &str = "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n";

impl Setup {
    fn tls(&self) -> TlsOptions {
        TlsOptions::new(self.pki.root_der(), HOST)
    }

    /// `ringgate_policy_rejections_total{policy,reason}` from `/metrics`.
    fn rejections(&self, policy: &str, reason: &str) -> u64 {
        let mut c = Client::plain(self.proxy.admin_addr()).expect("admin");
        let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let key =
            format!("ringgate_policy_rejections_total{{policy=\"{policy}\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /metrics:\n{text}"))
    }

    /// The X-Forwarded-For and X-Real-IP of the last request the backend saw.
    fn forwarded(&self) -> (String, String) {
        let r = self
            .backend
            .last_request()
            .expect("a request reached the backend");
        let xff = r.header_all("x-forwarded-for").join(", ");
        (xff, r.header("x-real-ip").unwrap_or("-").to_string())
    }
}

/// Sends `first` on `sock` (maybe nothing) and waits for the proxy to close it; asserts
/// that not one byte came back (no TLS alert, no HTTP answer: closed at accept).
fn expect_silent_close(mut sock: TcpStream, first: &[u8], what: &str) {
    // A write may already fail (the close raced it): the read below still decides.
    let _ = sock.write_all(first);
    let mut got = Vec::new();
    match sock.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the proxy did not close the connection: {e}"),
    }
    assert!(
        got.is_empty(),
        "{what}: closed before any byte, yet got {got:02x?}"
    );
}

/// The first bytes of a TLS ClientHello record (enough to look like one).
const HELLO_START: &[u8] = &[22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];

fn get(host_path: &str) -> Vec<u8> {
    format!("GET {host_path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes()
}

#[test]
fn listener_allow_deny_closes_before_the_handshake() {
    let s = setup(
        &format!(
            "allow = {}\ndeny = {}\n",
            list(&["127.0.0.0/8", "127.0.0.6"]),
            list(&["127.0.0.2/32", "127.0.0.4/30"])
        ),
        true,
        ROUTE_ALL,
    );
    let addr = s.proxy.addr();
    for allowed in ["127.0.0.1", "127.0.0.3", "127.0.0.6"] {
        let sock = connect_from(ip(allowed), addr).expect("connect");
        let mut c = Client::tls_over(sock, &s.tls()).expect("handshake");
        let r = c.roundtrip(&get("/headers"));
        assert_eq!(r.status, 200, "{allowed} is allowed");
        assert_eq!(s.forwarded().0, allowed);
    }
    for denied in ["127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.7"] {
        let sock = connect_from(ip(denied), addr).expect("connect");
        expect_silent_close(sock, HELLO_START, denied);
    }
    assert_eq!(s.rejections("ip", "denied"), 4);
}

#[test]
fn listener_deny_only_allows_everyone_else() {
    let s = setup(
        &format!("deny = {}\n", list(&["127.0.0.9"])),
        false,
        ROUTE_ALL,
    );
    let sock = connect_from(ip("127.0.0.9"), s.proxy.addr()).expect("connect");
    expect_silent_close(sock, &get("/headers"), "127.0.0.9");
    let sock = connect_from(ip("127.0.0.8"), s.proxy.addr()).expect("connect");
    assert_eq!(
        Client::plain_over(sock).roundtrip(&get("/headers")).status,
        200
    );
    assert_eq!(s.rejections("ip", "denied"), 1);
}

#[test]
fn route_allow_deny_answers_403() {
    let routes = format!(
        "{ROUTE_ALL}\n[[route]]\npath_prefix = \"/status/200\"\nupstream = \"backend\"\n\
         allow = {}\n\n[[route]]\npath_prefix = \"/status/201\"\nupstream = \"backend\"\ndeny = {}\n",
        list(&["127.0.0.1/32", "::1"]),
        list(&["127.0.0.3"])
    );
    let s = setup("", false, &routes);
    let addr = s.proxy.addr();
    let status = |from: &str, path: &str| {
        let sock = connect_from(ip(from), addr).expect("connect");
        Client::plain_over(sock).roundtrip(&get(path)).status
    };
    assert_eq!(status("127.0.0.1", "/status/200"), 200);
    assert_eq!(status("127.0.0.2", "/status/200"), 403);
    assert_eq!(status("127.0.0.2", "/status/201"), 201);
    assert_eq!(status("127.0.0.3", "/status/201"), 403);
    // Another route is not concerned.
    assert_eq!(status("127.0.0.3", "/headers"), 200);
    assert_eq!(
        s.backend.served(),
        3,
        "refused requests never reach the upstream"
    );
    assert_eq!(s.rejections("ip", "denied"), 2);
}

fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(command);
    h.push(family);
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut p = src.to_vec();
    p.extend_from_slice(&[127, 0, 0, 1]);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    v2(0x21, 0x11, &p)
}

fn v2_tcp6(src: &str) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().expect("v6");
    let mut p = src.octets().to_vec();
    p.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    p.extend_from_slice(&4711u16.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    // A TLV the proxy skips (PP2_TYPE_NOOP).
    p.extend_from_slice(&[0x04, 0, 3, 1, 2, 3]);
    v2(0x21, 0x21, &p)
}

/// A TLS request after `header`, the header and the ClientHello in one write (so the
/// proxy finds TLS bytes right behind the header in the same read).
fn tls_after_header(s: &Setup, from: &str, header: &[u8]) -> String {
    let sock = connect_from(ip(from), s.proxy.addr()).expect("connect");
    let config = Arc::new(s.tls().client_config().expect("client config"));
    let name = rustls::pki_types::ServerName::try_from(HOST).expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut first = header.to_vec();
    conn.write_tls(&mut first).expect("client hello");
    let mut sock = sock;
    sock.write_all(&first).expect("header and hello");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("handshake after the PROXY header");
    }
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(&get("/headers")).expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).expect("response");
        assert_eq!(n, 1, "closed in the response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn proxy_listener(from: &[&str], extra: &str) -> String {
    format!(
        "proxy_protocol = true\nproxy_protocol_from = {}\n{extra}",
        list(from)
    )
}

#[test]
fn proxy_protocol_gives_the_client_address_on_tls() {
    let s = setup(&proxy_listener(&["127.0.0.1/32"], ""), true, ROUTE_ALL);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "v1 TCP4",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 443\r\n".to_vec(),
            "203.0.113.7",
        ),
        (
            "v1 TCP6",
            b"PROXY TCP6 2001:db8::7 ::1 4711 443\r\n".to_vec(),
            "2001:db8::7",
        ),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
        ("v2 TCP4", v2_tcp4([198, 51, 100, 9], 5000), "198.51.100.9"),
        ("v2 TCP6", v2_tcp6("2001:db8::9"), "2001:db8::9"),
        // LOCAL: the balancer's own connection; the real peer stays the client.
        ("v2 LOCAL", v2(0x20, 0x00, &[]), "127.0.0.1"),
    ];
    for (what, header, client) in &cases {
        let head = tls_after_header(&s, "127.0.0.1", header);
        assert!(head.starts_with("HTTP/1.1 200"), "{what}: {head}");
        assert_eq!(
            s.forwarded(),
            (client.to_string(), client.to_string()),
            "{what}: the upstream sees the PROXY source"
        );
    }
    // The header in its own write, the handshake after it (the usual client path).
    let mut sock = connect_from(ip("127.0.0.1"), s.proxy.addr()).expect("connect");
    sock.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 443\r\n")
        .expect("header");
    let mut c = Client::tls_over(sock, &s.tls()).expect("handshake");
    assert_eq!(c.roundtrip(&get("/headers")).status, 200);
    assert_eq!(s.forwarded().0, "192.0.2.1");
}

#[test]
fn proxy_protocol_on_plain_with_the_request_in_the_same_write() {
    let s = setup(&proxy_listener(&["127.0.0.0/8"], ""), false, ROUTE_ALL);
    let mut first = b"PROXY TCP4 203.0.113.50 127.0.0.1 4711 80\r\n".to_vec();
    first.extend_from_slice(&get("/headers"));
    let mut sock = connect_from(ip("127.0.0.4"), s.proxy.addr()).expect("connect");
    sock.write_all(&first).expect("header and request");
    let mut c = Client::plain_over(sock);
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    let r = s.backend.last_request().expect("request");
    assert_eq!(r.header("x-forwarded-for"), Some("203.0.113.50"));
    assert!(
        r.header("forwarded")
            .is_some_and(|f| f.contains("for=203.0.113.50")),
        "Forwarded names the PROXY source: {:?}",
        r.header("forwarded")
    );
}

#[test]
fn bad_proxy_headers_are_closed_and_counted() {
    let s = setup(&proxy_listener(&["127.0.0.1/32"], ""), true, ROUTE_ALL);
    let addr = s.proxy.addr();
    let mut oversized_v1 = b"PROXY TCP4 ".to_vec();
    oversized_v1.resize(120, b'1');
    oversized_v1.extend_from_slice(b"\r\n");
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("no header: a ClientHello", HELLO_START.to_vec()),
        ("plain HTTP", get("/headers")),
        (
            "v1 bad address",
            b"PROXY TCP4 203.0.113.300 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("v1 bare LF", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec()),
        ("v1 oversized", oversized_v1),
        ("v2 UDP", v2(0x21, 0x12, &[0; 12])),
        ("v2 bad version", v2(0x31, 0x11, &[0; 12])),
        ("v2 oversized", v2(0x21, 0x11, &vec![0; 4000])),
    ];
    for (what, bytes) in &malformed {
        let sock = connect_from(ip("127.0.0.1"), addr).expect("connect");
        expect_silent_close(sock, bytes, what);
    }
    // Truncated: the peer half-closes in the middle of the header.
    let truncated: [&[u8]; 2] = [b"PROXY TCP4 203.0.113.7", &v2_tcp4([1, 2, 3, 4], 1)[..20]];
    for part in truncated {
        let mut sock = connect_from(ip("127.0.0.1"), addr).expect("connect");
        sock.write_all(part).expect("part");
        sock.shutdown(std::net::Shutdown::Write)
            .expect("half close");
        expect_silent_close(sock, &[], "truncated");
    }
    assert_eq!(
        s.rejections("proxy_protocol", "malformed"),
        malformed.len() as u64 + 2
    );
    // Late: part of a header, then silence past the handshake timeout (500 ms).
    let sock = connect_from(ip("127.0.0.1"), addr).expect("connect");
    expect_silent_close(sock, b"PROXY TCP4 ", "late");
    assert_eq!(s.rejections("proxy_protocol", "timeout"), 1);
    // A valid header from a source not in proxy_protocol_from.
    for from in ["127.0.0.2", "127.0.0.3"] {
        let sock = connect_from(ip(from), addr).expect("connect");
        expect_silent_close(sock, b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 443\r\n", from);
    }
    assert_eq!(s.rejections("proxy_protocol", "untrusted_source"), 2);
    assert_eq!(s.backend.served(), 0);
}

#[test]
fn listener_ip_list_applies_to_the_proxy_source() {
    let s = setup(
        &proxy_listener(
            &["127.0.0.1"],
            &format!("deny = {}\n", list(&["203.0.113.0/24"])),
        ),
        true,
        ROUTE_ALL,
    );
    let sock = connect_from(ip("127.0.0.1"), s.proxy.addr()).expect("connect");
    let mut hdr = b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 443\r\n".to_vec();
    hdr.extend_from_slice(HELLO_START);
    expect_silent_close(sock, &hdr, "denied PROXY source");
    assert_eq!(s.rejections("ip", "denied"), 1);
    let head = tls_after_header(&s, "127.0.0.1", &v2_tcp4([198, 51, 100, 1], 9));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[test]
fn trusted_proxies_walk_x_forwarded_for() {
    let routes = format!(
        "{ROUTE_ALL}\n[[route]]\npath_prefix = \"/status/202\"\nupstream = \"backend\"\nallow = {}\n",
        list(&["198.51.100.0/24"])
    );
    let s = setup(
        &format!("trusted_proxies = {}\n", list(&["127.0.0.1", "10.0.0.0/8"])),
        false,
        &routes,
    );
    let request = |from: &str, path: &str, xff: &str| {
        let sock = connect_from(ip(from), s.proxy.addr()).expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {xff}\r\n\r\n");
        Client::plain_over(sock).roundtrip(req.as_bytes()).status
    };
    // From a trusted peer: trusted hops skipped from the right; the spoofed left part is
    // never reached. The proxy's own X-Forwarded-For appends the real address, as
    // nginx's $proxy_add_x_forwarded_for does after real_ip.
    assert_eq!(
        request("127.0.0.1", "/headers", "6.6.6.6, 198.51.100.9, 10.1.2.3"),
        200
    );
    assert_eq!(
        s.forwarded(),
        (
            "6.6.6.6, 198.51.100.9, 10.1.2.3, 198.51.100.9".to_string(),
            "198.51.100.9".to_string()
        )
    );
    assert_eq!(request("127.0.0.1", "/status/202", "198.51.100.9"), 202);
    // From an untrusted peer the field is only a claim: the peer is the client.
    assert_eq!(request("127.0.0.2", "/headers", "198.51.100.9"), 200);
    assert_eq!(
        s.forwarded(),
        (
            "198.51.100.9, 127.0.0.2".to_string(),
            "127.0.0.2".to_string()
        )
    );
    assert_eq!(request("127.0.0.2", "/status/202", "198.51.100.9"), 403);
    assert_eq!(s.rejections("ip", "denied"), 1);
}
