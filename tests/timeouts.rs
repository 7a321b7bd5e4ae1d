//! Client-side timeouts: a slowloris head, a stalled body, an idle keep-alive connection, a
//! client that stops reading its response and a silent TLS handshake are all cut off,
//! while other clients keep being served. Nothing
//! here measures time: each test only asserts the connection's closed state (the client's
//! read timeout, far above the configured limits, is just a guard against hangs).

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::backend::{Backend, pattern};
use common::client::{Client, ReadEvent, raw_exchange, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::{Fixture, HOST};

/// The proxy's configured limit for each test.
const LIMIT_MS: u64 = 1000;

/// What arrived before a close must be nothing or a 408.
fn assert_nothing_or_408(what: &str, bytes: &[u8]) {
    assert!(
        bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 408"),
        "{what}: before closing, the proxy may only send a 408; got {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
}

#[test]
fn slowloris_head_is_cut_off_while_others_are_served() {
    let f = Fixture::with(|c| c.http("client_header_timeout_ms", LIMIT_MS));
    let (addr, opts) = (f.addr(), f.tls_options());
    let (started_tx, started_rx) = mpsc::channel();
    let slow = thread::spawn(move || -> Result<(usize, Vec<u8>), String> {
        let mut c = Client::tls(addr, &opts).map_err(|e| format!("connect: {e}"))?;
        // The pacing of the attack itself: at most one byte per 200 ms.
        c.set_read_timeout(Duration::from_millis(200))
            .map_err(|e| e.to_string())?;
        let head = format!(
            "GET /bytes/1 HTTP/1.1\r\nHost: {HOST}\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(200)
        );
        for (i, b) in head.bytes().enumerate() {
            if c.send(&[b]).is_err() {
                return Ok((i, c.expect_closed().unwrap_or_default()));
            }
            if i == 2 {
                let _ = started_tx.send(());
            }
            match c.poll() {
                ReadEvent::Silent => {}
                ReadEvent::Data => {
                    c.set_read_timeout(Duration::from_secs(10))
                        .map_err(|e| e.to_string())?;
                    return c.expect_closed().map(|bytes| (i, bytes));
                }
                ReadEvent::Closed => return Ok((i, c.buffered().to_vec())),
            }
        }
        Err(format!(
            "the whole {}-byte head went through at one byte per 200 ms without the \
             connection being cut off (client_header_timeout_ms = {LIMIT_MS})",
            head.len()
        ))
    });

    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow client started sending");
    // Meanwhile another client is served normally.
    let mut other = f.client();
    for i in 0..3u64 {
        let body = pattern(i, 20_000);
        let resp = other.roundtrip(&req::post(HOST, "/echo", &body));
        assert_eq!(
            resp.status,
            200,
            "other client during slowloris\n{}",
            resp.describe()
        );
        assert_eq!(resp.body, body);
    }

    let (sent, bytes) = slow
        .join()
        .expect("slow client thread")
        .unwrap_or_else(|e| panic!("slowloris: {e}"));
    assert_nothing_or_408(&format!("slowloris after {sent} bytes"), &bytes);
    assert_eq!(
        f.backend.heads(),
        3,
        "only the other client's requests reach the origin"
    );
}

#[test]
fn stalled_request_body_is_cut_off() {
    let f = Fixture::with(|c| c.http("client_body_timeout_ms", LIMIT_MS));
    let mut c = f.client();
    let head = format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\r\n");
    c.send(head.as_bytes()).expect("send head");
    c.send(&[b'x'; 10]).expect("send 10 of 1000 body bytes");
    let bytes = c
        .expect_closed()
        .unwrap_or_else(|e| panic!("stalled body (client_body_timeout_ms = {LIMIT_MS}): {e}"));
    assert_nothing_or_408("stalled body", &bytes);
    assert_eq!(
        f.backend.served(),
        0,
        "the origin must never get a complete request from a truncated body"
    );
    // The proxy still serves others.
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let f = Fixture::with(|c| c.http("keepalive_timeout_ms", LIMIT_MS));
    let mut c = f.client();
    let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let bytes = c
        .expect_closed()
        .unwrap_or_else(|e| panic!("idle keep-alive (keepalive_timeout_ms = {LIMIT_MS}): {e}"));
    assert!(
        bytes.is_empty(),
        "nothing may be sent on an idle connection before closing it: {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

/// The number in the admin listener's `ringgate_connections_active` line.
fn active_connections(admin: std::net::SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("ringgate_connections_active "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no ringgate_connections_active in\n{text}")) as u64
}

/// A client that asks for a large body and stops reading is cut off after
/// `send_timeout_ms` without a further byte read: one timer per connection, shared by its
/// client and upstream steps, still bounds each write. (With `send_timeout_ms` at 10
/// minutes this test fails at its guard.)
#[test]
fn a_client_that_stops_reading_is_cut_off_after_send_timeout() {
    const BODY: usize = 64 << 20; // far beyond both sides' socket buffers
    let f = Fixture::with(|c| c.http("send_timeout_ms", LIMIT_MS).admin());
    let admin = f.proxy.admin_addr();
    let mut stalled = f.client();
    stalled
        .send(&req::get(HOST, &format!("/bytes/{BODY}")))
        .expect("send the request");
    // Others are served meanwhile (on connections that then close).
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    // Without reading, wait until the proxy holds no connection: the stalled one is gone.
    let guard = std::time::Instant::now() + Duration::from_secs(60);
    while active_connections(admin) > 0 {
        assert!(
            std::time::Instant::now() < guard,
            "the proxy still holds the stalled connection after 60 s (send_timeout_ms = {LIMIT_MS})"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // What the kernels had buffered arrives, then the end: never the whole body.
    let got = stalled
        .expect_closed()
        .unwrap_or_else(|e| panic!("the stalled connection: {e}"));
    assert!(
        got.len() < BODY,
        "the whole {BODY}-byte body arrived ({} bytes): the write was never cut off",
        got.len()
    );
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn keepalive_connection_closes_after_keepalive_requests() {
    let f = Fixture::with(|c| c.http("keepalive_requests", 3));
    let mut c = f.client();
    for i in 1..=3 {
        let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
        assert_eq!(resp.status, 200, "request {i}\n{}", resp.describe());
        if i == 3 {
            assert!(
                resp.connection_close(),
                "the last allowed request's response says Connection: close\n{}",
                resp.describe()
            );
        }
    }
    let bytes = c.expect_closed().unwrap_or_else(|e| panic!("{e}"));
    assert!(bytes.is_empty());
}

#[test]
fn silent_tls_handshake_is_cut_off() {
    // handshake_timeout_ms is a [listener.tls] setting: build that listener by hand.
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener_with(
            &[(&cert).into()],
            &[
                ("handshake_timeout_ms", &LIMIT_MS.to_string()),
                ("ktls", "\"off\""),
            ],
        )
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let proxy = Proxy::start(&config.build(), pki.dir());
    // Connect and send nothing at all.
    let got = raw_exchange(proxy.addr(), b"").unwrap_or_else(|e| {
        panic!("a connection that never starts TLS (handshake_timeout_ms = {LIMIT_MS}): {e}")
    });
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert may precede the close: {got:02x?}"
    );
}
