//! `examples/gateway.toml` as written, end to end: the file is parsed with the `toml`
//! crate and only what ties it to a machine is replaced — the listen addresses (to
//! `127.0.0.1:0`), the upstream servers (to in-process origins), the certificate paths (to
//! a certificate of the test PKI for the same name) and `[server]` (two workers, no
//! pinning: tests run side by side) — every policy table is left as it is. Then a real
//! client drives each policy through it: PROXY protocol (required, the source gives the
//! client address), the listener's deny list (closed before the handshake), the
//! connection limit, the route's allow list (403, also through `trusted_proxies`), the
//! rate limits (429 with `Retry-After`, the per-key one delaying first), CORS (preflight
//! 204 without `Content-Length`, disallowed origins without CORS fields), the security
//! headers on a 200 and on the gateway's own 404 / 403 / 429 / 413, request and response
//! header rules as the upstream and the client see them, the per-route body limit with
//! both framings (413), the method-matched routes and the HTTPS redirect listener.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use common::backend::pattern;
use common::client::{Client, Response, TlsOptions, connect_from};
use common::example::as_written_with;
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::Proxy;
use common::scripted::{ScriptedBackend, Seen};

/// The host the example serves.
const HOST: &str = "api.example.test";
/// The example's CORS origin.
const APP: &str = "https://app.example.test";

/// `examples/gateway.toml` with its machine-bound values replaced (see the module doc),
/// two workers.
fn example_config(cert: &CertFiles, api: SocketAddr, replicas: SocketAddr) -> String {
    let text = as_written_with(
        "gateway.toml",
        cert,
        &[("api", api), ("replicas", replicas)],
        2,
    );
    assert_eq!(
        text.matches("[[listener]]").count(),
        2,
        "the test knows an HTTPS and a redirect listener"
    );
    text
}

/// An origin that answers every request `200` with `X-Powered-By` (which the example's
/// listener removes) and `X-Request-Id`, its body naming the origin and the path.
fn origin(name: &'static str) -> ScriptedBackend {
    ScriptedBackend::start(move |mut conn| {
        while let Some(seen) = conn.read_request() {
            let body = format!("{name} {}", seen.path);
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nX-Request-Id: r-1\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            conn.write(head.as_bytes());
            conn.write(body.as_bytes());
        }
    })
}

struct Gateway {
    proxy: Proxy,
    api: ScriptedBackend,
    replicas: ScriptedBackend,
    pki: TestPki,
}

impl Gateway {
    fn start() -> Gateway {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let api = origin("api");
        let replicas = origin("replicas");
        let text = example_config(&cert, api.addr, replicas.addr);
        let proxy = Proxy::start(&text, pki.dir());
        Gateway {
            proxy,
            api,
            replicas,
            pki,
        }
    }

    fn https(&self) -> SocketAddr {
        self.proxy.addrs()[0]
    }

    fn redirect(&self) -> SocketAddr {
        self.proxy.addrs()[1]
    }

    /// A TLS client whose connection starts with a PROXY v1 header naming `client`
    /// (the example takes PROXY protocol from 127.0.0.0/8, where the test connects from).
    fn client(&self, client: &str) -> Client {
        let sock = proxied(self.https(), client);
        let opts = TlsOptions::new(self.pki.root_der(), HOST);
        Client::tls_over(sock, &opts)
            .unwrap_or_else(|e| panic!("handshake for client {client}: {e}"))
    }

    /// The last request the `api` origin read whole.
    fn api_last(&self) -> Seen {
        self.api
            .requests()
            .pop()
            .expect("a request reached the api origin")
    }
}

/// A connection to `addr` that has sent a PROXY v1 header for `client`.
fn proxied(addr: SocketAddr, client: &str) -> TcpStream {
    let ip: IpAddr = client.parse().expect("client address");
    let family = if ip.is_ipv4() { "TCP4" } else { "TCP6" };
    let local = if ip.is_ipv4() { "127.0.0.1" } else { "::1" };
    let mut sock = connect_from("127.0.0.1".parse().expect("ip"), addr).expect("connect");
    let header = format!("PROXY {family} {client} {local} 40000 443\r\n");
    sock.write_all(header.as_bytes()).expect("PROXY header");
    sock
}

fn request(method: &str, path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n");
    for (k, v) in fields {
        s += &format!("{k}: {v}\r\n");
    }
    s += "\r\n";
    s.into_bytes()
}

fn all<'r>(r: &'r Response, name: &str) -> Vec<&'r str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn header_of<'s>(seen: &'s Seen, name: &str) -> Vec<&'s str> {
    seen.headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn cors_fields(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect()
}

/// The HTTPS listener's `[listener.security_headers]` (each once) and its response rule
/// (`X-Powered-By` removed).
fn assert_security(r: &Response, what: &str) {
    let expected = [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
    ];
    for (name, value) in expected {
        assert_eq!(all(r, name), [value], "{what}: {name}\n{}", r.describe());
    }
    assert!(
        all(r, "x-powered-by").is_empty(),
        "{what}\n{}",
        r.describe()
    );
}

/// Waits for the proxy to close `sock` after `first`, without sending a byte back.
fn expect_silent_close(mut sock: TcpStream, first: &[u8], what: &str) {
    let _ = sock.write_all(first);
    let mut got = Vec::new();
    match sock.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the proxy did not close the connection: {e}"),
    }
    assert!(
        got.is_empty(),
        "{what}: closed at accept, yet got {got:02x?}"
    );
}

/// The first bytes of a TLS ClientHello record (enough to look like one).
const HELLO_START: &[u8] = &[22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];

#[test]
fn the_example_proxies_with_header_rules_cors_and_security_headers() {
    let g = Gateway::start();
    let mut c = g.client("203.0.113.10");
    let r = c.roundtrip(&request(
        "GET",
        "/v1/items",
        &[
            ("Origin", APP),
            ("X-Api-Version", "7"),
            ("X-Debug", "secret"),
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body, b"api /v1/items");
    assert_security(&r, "a 200 from the upstream");
    // The route's response rule and its CORS fields for an allowed origin.
    assert_eq!(all(&r, "cache-control"), ["no-store"], "{}", r.describe());
    assert_eq!(all(&r, "x-request-id"), ["r-1"]);
    assert_eq!(
        cors_fields(&r),
        [
            format!("Access-Control-Allow-Origin: {APP}"),
            "Access-Control-Expose-Headers: X-Request-Id".to_string(),
        ],
        "{}",
        r.describe()
    );
    assert_eq!(all(&r, "vary"), ["Origin"]);
    // The upstream saw the request rules and the PROXY source as the client.
    let seen = g.api_last();
    assert_eq!(header_of(&seen, "x-api-version"), ["1"], "{seen:?}");
    assert!(header_of(&seen, "x-debug").is_empty(), "{seen:?}");
    assert_eq!(header_of(&seen, "x-forwarded-for"), ["203.0.113.10"]);
    assert_eq!(header_of(&seen, "x-real-ip"), ["203.0.113.10"]);

    // A wildcard origin is allowed; any other origin gets no CORS field.
    let r = c.roundtrip(&request(
        "GET",
        "/v1/items",
        &[("Origin", "https://web.example.test")],
    ));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://web.example.test")
    );
    let r = c.roundtrip(&request(
        "GET",
        "/v1/items",
        &[("Origin", "https://evil.test")],
    ));
    assert_eq!(r.status, 200);
    assert!(cors_fields(&r).is_empty(), "{}", r.describe());
    assert_security(&r, "a disallowed origin's 200");

    // The gateway's own 404 carries the security headers too (nginx's `always`).
    let r = c.roundtrip(&request("GET", "/nowhere", &[]));
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_security(&r, "the gateway's 404");

    // Reads to the replicas, writes to the primary (method-matched routes).
    let r = c.roundtrip(&request("GET", "/v2/users", &[]));
    assert_eq!(r.body, b"replicas /v2/users", "{}", r.describe());
    let r = c.roundtrip(&request("DELETE", "/v2/users", &[]));
    assert_eq!(r.body, b"api /v2/users", "{}", r.describe());
    assert_eq!(g.replicas.count("GET", "/v2/users"), 1);
}

#[test]
fn the_example_answers_cors_preflights_itself() {
    let g = Gateway::start();
    let mut c = g.client("203.0.113.11");
    let preflight = |origin: &str| {
        request(
            "OPTIONS",
            "/v1/items",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
        )
    };
    let r = c.roundtrip(&preflight(APP));
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_eq!(
        cors_fields(&r),
        [
            format!("Access-Control-Allow-Origin: {APP}"),
            "Access-Control-Allow-Methods: GET, HEAD, POST".to_string(),
            "Access-Control-Allow-Headers: Content-Type, Authorization, X-Api-Key".to_string(),
            "Access-Control-Max-Age: 600".to_string(),
        ],
        "{}",
        r.describe()
    );
    assert_eq!(r.header("content-length"), None, "{}", r.describe());
    assert!(r.body.is_empty());
    assert_security(&r, "a preflight");
    let r = c.roundtrip(&preflight("https://app.example.test.evil.net"));
    assert_eq!(r.status, 204, "{}", r.describe());
    assert!(cors_fields(&r).is_empty(), "{}", r.describe());
    assert_eq!(all(&r, "vary"), ["Origin"]);
    assert!(
        g.api.requests().is_empty(),
        "a preflight reached the upstream"
    );
}

#[test]
fn the_example_takes_proxy_protocol_only_and_denies_at_accept() {
    let g = Gateway::start();
    // No PROXY header: a ClientHello straight away is closed without a byte.
    let sock = connect_from("127.0.0.1".parse().expect("ip"), g.https()).expect("connect");
    expect_silent_close(sock, HELLO_START, "no PROXY header");
    // A PROXY source in the listener's deny list: closed before the handshake.
    let sock = proxied(g.https(), "192.0.2.7");
    expect_silent_close(sock, HELLO_START, "a denied client");
    // An IPv6 client through the header is served, under its own address.
    let mut c = g.client("2001:db8::5");
    let r = c.roundtrip(&request("GET", "/v1/six", &[]));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(header_of(&g.api_last(), "x-forwarded-for"), ["2001:db8::5"]);
    assert_eq!(
        g.api.requests().len(),
        1,
        "only the IPv6 client got through"
    );
}

#[test]
fn the_example_keeps_admin_to_its_networks() {
    let g = Gateway::start();
    let get = request("GET", "/admin/stats", &[]);
    // From outside the allow list: 403, with the security headers.
    let r = g.client("203.0.113.20").roundtrip(&get);
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_security(&r, "the route's 403");
    assert!(g.api.requests().is_empty());
    // From the office network: through.
    let r = g.client("10.20.3.4").roundtrip(&get);
    assert_eq!(r.status, 200, "{}", r.describe());
    // A trusted proxy (127.0.0.0/8 through the PROXY header) names the client in
    // X-Forwarded-For, and the allow list judges that client.
    let with_xff = |xff: &str| request("GET", "/admin/stats", &[("X-Forwarded-For", xff)]);
    let r = g.client("127.0.0.9").roundtrip(&with_xff("203.0.113.1"));
    assert_eq!(r.status, 403, "{}", r.describe());
    let r = g.client("127.0.0.9").roundtrip(&with_xff("10.20.9.9"));
    assert_eq!(r.status, 200, "{}", r.describe());
    // From an untrusted client the field is only a claim.
    let r = g.client("203.0.113.21").roundtrip(&with_xff("10.20.9.9"));
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_eq!(g.api.requests().len(), 2);
}

/// Counts of a batch of answers.
#[derive(Debug, Default)]
struct Answers {
    ok: usize,
    limited: usize,
}

impl Answers {
    fn count(&mut self, r: &Response) {
        match r.status {
            200 => self.ok += 1,
            429 => {
                self.limited += 1;
                let secs = r.header("retry-after").and_then(|v| v.parse::<u64>().ok());
                assert!(secs.is_some_and(|s| s >= 1), "{}", r.describe());
                assert_security(r, "a 429");
            }
            other => panic!("unexpected {other}:\n{}", r.describe()),
        }
    }
}

#[test]
fn the_example_rate_limits_per_client_and_per_key() {
    let g = Gateway::start();
    // per_client (10r/s, burst 20, nodelay): 40 requests at once from one client; 21
    // pass at once (more only if a tenth of a second passes), the rest get 429.
    let mut c = g.client("198.51.100.50");
    c.send(&request("GET", "/v1/r", &[]).repeat(40))
        .expect("pipelined requests");
    let mut a = Answers::default();
    for _ in 0..40 {
        a.count(&c.read_response(false).expect("a response"));
    }
    assert!(a.ok >= 21 && a.limited >= 1, "{a:?}");
    assert_eq!(
        g.api.requests().len(),
        a.ok,
        "only admitted requests go upstream"
    );
    // per_key (600r/m, burst 10, delay 5), keyed by X-Api-Key: one key from 20 client
    // addresses (so per_client never refuses); 11 are admitted (5 of them late), more
    // only as time passes, the rest refused.
    let keyed = request("GET", "/v1/k", &[("X-Api-Key", "team-a")]);
    let mut clients: Vec<Client> = (0..20)
        .map(|i| g.client(&format!("198.51.100.{}", 100 + i)))
        .collect();
    for c in &mut clients {
        c.send(&keyed).expect("send");
    }
    let mut a = Answers::default();
    for c in &mut clients {
        a.count(&c.read_response(false).expect("a response"));
    }
    assert!(a.ok >= 11 && a.limited >= 1, "{a:?}");
    // Another key has its own budget.
    let r =
        g.client("198.51.100.99")
            .roundtrip(&request("GET", "/v1/k", &[("X-Api-Key", "team-b")]));
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[test]
fn the_example_limits_v1_bodies_to_one_mebibyte_with_both_framings() {
    const LIMIT: usize = 1024 * 1024;
    let g = Gateway::start();
    let post = |body_fields: &str| {
        format!("POST /v1/upload HTTP/1.1\r\nHost: {HOST}\r\n{body_fields}\r\n")
    };
    let chunked = |body: &[u8]| {
        let mut r = post("Transfer-Encoding: chunked\r\n").into_bytes();
        for piece in body.chunks(64 * 1024) {
            r.extend(format!("{:x}\r\n", piece.len()).into_bytes());
            r.extend_from_slice(piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    // At the limit: through, with both framings.
    let at = pattern(3, LIMIT);
    let mut cl = post(&format!("Content-Length: {LIMIT}\r\n")).into_bytes();
    cl.extend_from_slice(&at);
    for (what, req) in [("Content-Length", cl), ("chunked", chunked(&at))] {
        let r = g.client("198.51.100.60").roundtrip(&req);
        assert_eq!(r.status, 200, "{what} at the limit: {}", r.describe());
    }
    assert_eq!(g.api.requests().len(), 2);
    // Content-Length over it: 413 from the head alone, nothing sent upstream.
    let mut c = g.client("198.51.100.61");
    c.send(post(&format!("Content-Length: {}\r\n", LIMIT + 1)).as_bytes())
        .expect("head");
    let r = c.read_response(false).expect("413");
    assert_eq!(r.status, 413, "{}", r.describe());
    assert!(r.connection_close(), "{}", r.describe());
    assert_security(&r, "a 413 from Content-Length");
    // Chunked over it: 413 while streaming.
    let mut c = g.client("198.51.100.62");
    // The proxy may answer and close before the whole body is written.
    let _ = c.send(&chunked(&pattern(4, LIMIT + 4096)));
    let r = c.read_response(false).expect("413");
    assert_eq!(r.status, 413, "{}", r.describe());
    assert_security(&r, "a 413 while streaming");
    assert_eq!(
        g.api.requests().len(),
        2,
        "no over-limit body reached the upstream whole"
    );
}

#[test]
fn the_example_limits_connections_per_client() {
    let g = Gateway::start();
    let client = "198.51.100.70";
    // max_connections_per_ip = 100: a hundred held connections, each known to be
    // accepted (a response came back; /nowhere: no rate limit on it).
    let mut held: Vec<Client> = (0..100)
        .map(|i| {
            let mut c = g.client(client);
            let r = c.roundtrip(&request("GET", "/nowhere", &[]));
            assert_eq!(r.status, 404, "connection {i}: {}", r.describe());
            c
        })
        .collect();
    // The 101st is closed after its PROXY header, before the handshake.
    expect_silent_close(proxied(g.https(), client), HELLO_START, "the 101st");
    // Another client is not affected.
    let r = g
        .client("198.51.100.71")
        .roundtrip(&request("GET", "/nowhere", &[]));
    assert_eq!(r.status, 404);
    // Once one closes, the client may connect again (counted out when the proxy's
    // connection task ends: retried until it has).
    drop(held.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sock = proxied(g.https(), client);
        let opts = TlsOptions::new(g.pki.root_der(), HOST);
        if let Ok(mut c) = Client::tls_over(sock, &opts) {
            let _ = c.send(&request("GET", "/nowhere", &[]));
            if let Ok(r) = c.read_response(false) {
                assert_eq!(r.status, 404);
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client never got its slot back"
        );
    }
}

#[test]
fn the_examples_plain_listener_redirects_to_https() {
    let g = Gateway::start();
    let get = |host: &str| format!("GET /v1/items?page=2 HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let r = Client::plain(g.redirect())
        .expect("connect")
        .roundtrip(get(HOST).as_bytes());
    assert_eq!(r.status, 308, "{}", r.describe());
    assert_eq!(
        r.header("location"),
        Some("https://api.example.test:8443/v1/items?page=2")
    );
    // Never an open redirect to a name the gateway does not serve.
    let r = Client::plain(g.redirect())
        .expect("connect")
        .roundtrip(get("evil.test").as_bytes());
    assert_eq!(r.status, 421, "{}", r.describe());
    assert_eq!(r.header("location"), None);
    assert!(g.api.requests().is_empty());
}
