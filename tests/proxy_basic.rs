//! End-to-end request/response bodies through the proxy over TLS: every request and
//! response framing, SHA-256 checked in both directions, HEAD and body-less statuses,
//! `Expect: 100-continue`, pipelining, and the plain-HTTP listener.

mod common;

use common::backend::{Backend, pattern};
use common::client::{Client, Response, TlsOptions, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::{Fixture, HOST, sha256_hex};

const SIZES: [usize; 4] = [0, 1, 64 * 1024, 16 * 1024 * 1024];

fn assert_body(what: &str, resp: &Response, expected: &[u8]) {
    assert_eq!(resp.status, 200, "{what}: status\n{}", resp.describe());
    assert_eq!(
        resp.body.len(),
        expected.len(),
        "{what}: body length\n{}",
        resp.describe()
    );
    assert_eq!(
        sha256_hex(&resp.body),
        sha256_hex(expected),
        "{what}: body SHA-256 differs"
    );
}

#[test]
fn get_response_bodies_with_content_length() {
    let f = Fixture::new();
    let mut c = f.client();
    for n in SIZES {
        let resp = c.roundtrip(&req::get(HOST, &format!("/bytes/{n}")));
        assert_body(&format!("GET /bytes/{n}"), &resp, &pattern(n as u64, n));
    }
}

#[test]
fn get_response_bodies_chunked() {
    let f = Fixture::new();
    let mut c = f.client();
    for n in SIZES {
        let resp = c.roundtrip(&req::get(HOST, &format!("/bytes/{n}?chunked")));
        assert_body(
            &format!("GET /bytes/{n}?chunked"),
            &resp,
            &pattern(n as u64, n),
        );
    }
}

#[test]
fn get_response_bodies_close_delimited() {
    let f = Fixture::new();
    for n in SIZES {
        // The origin closes after each such response, so the proxy may too: fresh client.
        let mut c = f.client();
        let resp = c.roundtrip(&req::get(HOST, &format!("/bytes/{n}?close")));
        assert_body(
            &format!("GET /bytes/{n}?close"),
            &resp,
            &pattern(n as u64, n),
        );
    }
    // The proxy is still healthy afterwards.
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/10"));
    assert_body(
        "GET /bytes/10 after close-delimited",
        &resp,
        &pattern(10, 10),
    );
}

fn check_echo(what: &str, resp: &Response, body: &[u8]) {
    assert_body(what, resp, body);
    assert_eq!(
        resp.header("x-body-sha256"),
        Some(sha256_hex(body).as_str()),
        "{what}: the backend received a different body than the client sent"
    );
}

#[test]
fn post_request_bodies_with_content_length() {
    let f = Fixture::new();
    let mut c = f.client();
    for n in SIZES {
        let body = pattern(1000 + n as u64, n);
        let resp = c.roundtrip(&req::post(HOST, "/echo", &body));
        check_echo(&format!("POST /echo with {n} bytes"), &resp, &body);
    }
}

#[test]
fn post_request_bodies_chunked() {
    let f = Fixture::new();
    let mut c = f.client();
    for n in SIZES {
        for chunk in [1usize, 8191, 65_536] {
            // One-byte chunks for 16 MiB would only measure the test's own encoder.
            if chunk == 1 && n > 64 * 1024 {
                continue;
            }
            let body = pattern(2000 + n as u64, n);
            let resp = c.roundtrip(&req::post_chunked(HOST, "/echo", &body, chunk));
            check_echo(
                &format!("chunked POST /echo with {n} bytes in {chunk}-byte chunks"),
                &resp,
                &body,
            );
        }
    }
}

#[test]
fn get_with_empty_and_one_byte_bodies_keeps_connection_usable() {
    let f = Fixture::new();
    let mut c = f.client();
    for i in 0..3u64 {
        let resp = c.roundtrip(&req::get(HOST, "/bytes/0"));
        assert_body("GET /bytes/0", &resp, b"");
        let resp = c.roundtrip(&req::get(HOST, "/bytes/1?chunked"));
        assert_body("GET /bytes/1?chunked", &resp, &pattern(1, 1));
        let body = pattern(i, 1);
        let resp = c.roundtrip(&req::post(HOST, "/echo", &body));
        check_echo("POST /echo 1 byte", &resp, &body);
    }
}

#[test]
fn head_and_bodiless_statuses_carry_no_body() {
    let f = Fixture::new();
    let mut c = f.client();
    let resp = c.roundtrip(&req::head(HOST, "/bytes/1000"));
    assert_eq!(resp.status, 200, "HEAD /bytes/1000\n{}", resp.describe());
    if let Some(cl) = resp.header("content-length") {
        assert_eq!(cl, "1000", "HEAD keeps the origin's Content-Length");
    }
    let resp = c.roundtrip(&req::head(HOST, "/bytes/1000?chunked"));
    assert_eq!(resp.status, 200, "HEAD chunked\n{}", resp.describe());
    for code in [204u16, 304] {
        let resp = c.roundtrip(&req::get(HOST, &format!("/status/{code}")));
        assert_eq!(resp.status, code, "GET /status/{code}\n{}", resp.describe());
        assert!(resp.body.is_empty());
        assert!(
            resp.header("transfer-encoding").is_none(),
            "{code} must not be chunked\n{}",
            resp.describe()
        );
    }
    // Any stray body byte from the responses above would corrupt this one.
    let resp = c.roundtrip(&req::get(HOST, "/bytes/4096"));
    assert_body("GET after HEAD/204/304", &resp, &pattern(4096, 4096));
    let resp = c.roundtrip(&req::get(HOST, "/status/404"));
    assert_eq!(resp.status, 404, "{}", resp.describe());
    assert_eq!(
        resp.header("x-backend"),
        Some("backend"),
        "origin statuses pass through"
    );
}

#[test]
fn expect_100_continue_gets_interim_response_before_body() {
    let f = Fixture::new();
    let mut c = f.client();
    let body = pattern(100, 5000);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send(head.as_bytes()).expect("send head");
    let interim = c
        .read_response(false)
        .expect("an interim response before the body is sent");
    assert_eq!(
        interim.status,
        100,
        "expected 100 Continue before sending the body\n{}",
        interim.describe()
    );
    c.send(&body).expect("send body");
    let mut resp = c.read_response(false).expect("final response");
    // An origin's own 100 may be relayed after the proxy's; 1xx may repeat.
    while resp.status == 100 {
        resp = c.read_response(false).expect("final response");
    }
    check_echo("POST /echo after 100-continue", &resp, &body);
    // Still usable.
    let resp = c.roundtrip(&req::get(HOST, "/bytes/3"));
    assert_body("GET after 100-continue", &resp, &pattern(3, 3));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let f = Fixture::new();
    let mut c = f.client();
    let echo_a = pattern(11, 3000);
    let echo_b = pattern(12, 70_000);
    let mut all = Vec::new();
    all.extend(req::get(HOST, "/bytes/100"));
    all.extend(req::post(HOST, "/echo", &echo_a));
    all.extend(req::get(HOST, "/bytes/5000?chunked"));
    all.extend(req::post_chunked(HOST, "/echo", &echo_b, 4000));
    all.extend(req::head(HOST, "/bytes/7"));
    all.extend(req::get(HOST, "/status/204"));
    all.extend(req::get(HOST, "/bytes/3"));
    c.send(&all).expect("send pipelined requests");

    let r = c.read_response(false).expect("response 1");
    assert_body("pipelined #1 GET /bytes/100", &r, &pattern(100, 100));
    let r = c.read_response(false).expect("response 2");
    check_echo("pipelined #2 POST /echo", &r, &echo_a);
    let r = c.read_response(false).expect("response 3");
    assert_body(
        "pipelined #3 GET /bytes/5000?chunked",
        &r,
        &pattern(5000, 5000),
    );
    let r = c.read_response(false).expect("response 4");
    check_echo("pipelined #4 chunked POST /echo", &r, &echo_b);
    let r = c.read_response(true).expect("response 5");
    assert_eq!(r.status, 200, "pipelined #5 HEAD\n{}", r.describe());
    let r = c.read_response(false).expect("response 6");
    assert_eq!(r.status, 204, "pipelined #6 /status/204\n{}", r.describe());
    let r = c.read_response(false).expect("response 7");
    assert_body("pipelined #7 GET /bytes/3", &r, &pattern(3, 3));
    assert_eq!(f.backend.served(), 7, "the origin served each request once");
}

#[test]
fn plain_http_listener_proxies_too() {
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .plain_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let proxy = Proxy::start(&config.build(), dir.path());
    let mut c = Client::plain(proxy.addr()).expect("connect to plain listener");
    let body = pattern(5, 100_000);
    let resp = c.roundtrip(&req::post(HOST, "/echo", &body));
    check_echo("plain POST /echo", &resp, &body);
    let resp = c.roundtrip(&req::get(HOST, "/bytes/70000?chunked"));
    assert_body("plain GET chunked", &resp, &pattern(70_000, 70_000));
    let seen = backend.last_request().expect("backend saw the request");
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("http"),
        "a plain listener forwards X-Forwarded-Proto: http"
    );
}

#[test]
fn tls_and_plain_listeners_both_on_port_zero() {
    // Port 0 means "any free port": two such listeners are not duplicates.
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .plain_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let proxy = Proxy::start(&config.build(), pki.dir());
    assert_eq!(proxy.addrs().len(), 2, "one address per [[listener]]");
    assert_ne!(proxy.addrs()[0], proxy.addrs()[1]);
    let tls = TlsOptions::new(pki.root_der(), HOST);
    let mut c = Client::tls(proxy.addrs()[0], &tls).expect("connect to TLS listener");
    let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_body("GET over TLS", &resp, &pattern(10, 10));
    let mut c = Client::plain(proxy.addrs()[1]).expect("connect to plain listener");
    let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_body("GET over plain HTTP", &resp, &pattern(10, 10));
}
