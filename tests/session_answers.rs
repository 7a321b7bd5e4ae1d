//! The HTTP/1 session's own answers — to heads it refuses before any exchange: 400
//! (malformed), 405 (CONNECT), 408 (head too slow), 414 (request line), 431 (head) —
//! carry the listener's security headers and response header rules like every other
//! answer (nginx's `add_header … always`), HSTS only over TLS.

mod common;

use common::HOST;
use common::backend::Backend;
use common::client::{Client, Response, TlsOptions};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, toml_str};

/// Security headers and one response rule, for both listeners.
const HEADERS: &str = "[listener.security_headers]\n\
    hsts = \"max-age=600\"\n\
    content_type_options = \"nosniff\"\n\
    frame_options = \"DENY\"\n\
    [[listener.response_headers]]\naction = \"add\"\nname = \"X-Edge\"\nvalue = \"1\"\n";

struct Setup {
    proxy: Proxy,
    pki: TestPki,
    _backend: Backend,
}

/// A TLS listener (first) and a plain one, both with [`HEADERS`]; small head limits and
/// a short `client_header_timeout_ms`.
fn setup() -> Setup {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let mut text = ConfigBuilder::new()
        .http("client_header_timeout_ms", 500)
        .http("max_request_line_bytes", 1024)
        .http("max_header_bytes", 4096)
        .tls_listener(&[&cert])
        .build();
    text += HEADERS;
    text += "\n[[listener]]\naddr = \"127.0.0.1:0\"\n";
    text += HEADERS;
    text += &format!(
        "\n[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n\
         \n[upstream.backend]\nservers = [{}]\n",
        toml_str(&backend.addr.to_string())
    );
    let proxy = Proxy::start(&text, pki.dir());
    Setup {
        proxy,
        pki,
        _backend: backend,
    }
}

fn assert_listener_fields(r: &Response, https: bool, what: &str) {
    let hsts = if https { Some("max-age=600") } else { None };
    assert_eq!(
        r.header("strict-transport-security"),
        hsts,
        "{what}\n{}",
        r.describe()
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("x-edge", "1"),
    ] {
        let all: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(all, [value], "{what}: {name}\n{}", r.describe());
    }
}

/// Sends `bytes` on a fresh connection and reads the one answer.
fn answer(mut c: Client, bytes: &[u8], what: &str) -> Response {
    c.send(bytes).expect("send");
    c.read_response(false)
        .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
}

#[test]
fn the_sessions_own_answers_carry_the_listeners_headers() {
    let s = setup();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", "a".repeat(2000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "malformed",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Field: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "CONNECT",
            format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n").into_bytes(),
            405,
        ),
        ("slow head", b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec(), 408),
        ("long request line", long_line.into_bytes(), 414),
        ("large head", big_head.into_bytes(), 431),
    ];
    let plain = s.proxy.addrs()[1];
    for (what, bytes, status) in &cases {
        let r = answer(Client::plain(plain).expect("connect"), bytes, what);
        assert_eq!(r.status, *status, "{what}\n{}", r.describe());
        assert_listener_fields(&r, false, what);
    }
    // Over TLS, with HSTS.
    let opts = TlsOptions::new(s.pki.root_der(), HOST);
    for (what, bytes, status) in &cases {
        let c = Client::tls(s.proxy.addr(), &opts).expect("connect over TLS");
        let r = answer(c, bytes, what);
        assert_eq!(r.status, *status, "{what} over TLS\n{}", r.describe());
        assert_listener_fields(&r, true, what);
    }
}
