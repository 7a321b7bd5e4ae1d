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

/// A head that stops half-way gets a 408 before the close after
/// `client_header_timeout_ms`, on a TLS and on a plain listener alike (the README promises
/// 408). The plain listener closed silently: its head read took the read buffer across
/// the await, so the timeout dropped the bytes already read along with it.
#[test]
fn a_partial_head_gets_408_on_tls_and_plain_listeners() {
    let f = Fixture::with(|c| c.http("client_header_timeout_ms", 200).plain_listener());
    let partial = format!("GET /bytes/1 HTTP/1.1\r\nHost: {HOST}\r\nX-Half: ");
    for name in ["tls", "plain"] {
        // Connected just before sending: an idle first wait is closed without a word.
        let mut c = match name {
            "tls" => f.client(),
            _ => Client::plain(f.proxy.addrs()[1]).expect("connect to the plain listener"),
        };
        c.send(partial.as_bytes()).expect("send half a head");
        let bytes = c
            .expect_closed()
            .unwrap_or_else(|e| panic!("{name}: a half head must be cut off: {e}"));
        assert!(
            bytes.starts_with(b"HTTP/1.1 408 "),
            "{name}: a half head must get a 408 before the close; got {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert_eq!(f.backend.heads(), 0);
}

/// A client that pipelines requests whose answers the proxy makes itself (502: the
/// upstream refuses) and never reads fills the socket buffers until one answer's write
/// hits `send_timeout_ms`. That write may have sent part of a response (or, over TLS,
/// part of a record): the connection must close then, never go on with the next
/// response after it (a half response, a lost one, or — over TLS — the stale bytes of a
/// cancelled record flush ahead of the next record). What the client finally reads is
/// whole 502s, perhaps the start of one more, then the end.
#[test]
fn a_proxy_answer_that_times_out_closes_the_connection() {
    let refusing = common::backend::refusing_addr();
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let config = ConfigBuilder::new()
        .tls_listener_with(&[(&cert).into()], &[("ktls", "\"off\"")])
        .plain_listener()
        .http("send_timeout_ms", 300)
        // Never the reason the connection ends.
        .http("keepalive_requests", 10 * PIPELINED)
        .route(None, "/", false, "down")
        .upstream("down", &[refusing], &[])
        .admin();
    let proxy = Proxy::start(&config.build(), pki.dir());
    let admin = proxy.admin_addr();
    let tls = common::client::client_config(&pki, &rustls::version::TLS13);
    let mut failures = Vec::new();
    for (name, addr, tls) in [
        ("plain", proxy.addrs()[1], None),
        ("tls", proxy.addr(), Some(tls)),
    ] {
        let got = match stalled_reader(addr, admin, tls.as_ref()) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (whole, first, rest) = split_502s(&got);
        if whole == 0 || !first.starts_with(rest) {
            failures.push(format!(
                "{name}: after {whole} whole 502s, not the start of another: {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(300)])
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let panics: u64 = proxy.shutdown_reports().iter().map(|w| w.panics).sum();
    assert_eq!(panics, 0);
}

/// Requests pipelined at most this many (each ~40 bytes, each answer ~150).
const PIPELINED: usize = 200_000;

/// Pipelines [`PIPELINED`] requests on a connection with a small receive window without
/// reading, waits until the proxy holds no connection, then reads what arrived (over TLS,
/// decrypted; `Err` on a TLS error).
fn stalled_reader(
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    // A small window, so the proxy's writes block soon.
    sock.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
    sock.connect(&addr.into()).map_err(|e| e.to_string())?;
    let mut sock: std::net::TcpStream = sock.into();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    let one = format!("GET /x HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes();
    let mut conn = None;
    let wire = match tls {
        None => one.repeat(PIPELINED),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
            let mut c = rustls::ClientConnection::new(config.clone(), name).unwrap();
            while c.is_handshaking() {
                c.complete_io(&mut sock)
                    .map_err(|e| format!("handshake: {e}"))?;
            }
            // Every request encrypted up front: the writer thread only moves bytes.
            let mut wire = Vec::new();
            for batch in one.repeat(PIPELINED).chunks(16 * 1024) {
                c.writer().write_all(batch).unwrap();
                while c.wants_write() {
                    c.write_tls(&mut wire).unwrap();
                }
            }
            conn = Some(c);
            wire
        }
    };
    let mut writer = sock.try_clone().unwrap();
    // Writes until the proxy closes (or all of it went).
    let sender = thread::spawn(move || {
        let _ = writer.set_write_timeout(Some(Duration::from_secs(60)));
        let _ = writer.write_all(&wire);
    });
    let guard = std::time::Instant::now() + Duration::from_secs(30);
    while active_connections(admin) > 0 {
        if std::time::Instant::now() > guard {
            return Err(
                "the proxy still holds the connection 30 s after it stopped being \
                 read (send_timeout_ms = 300): an answer whose write timed out did not \
                 close it"
                    .into(),
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let _ = sender.join();
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the data: the end all the same.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let Some(mut conn) = conn else {
        return Ok(raw);
    };
    let mut plain = Vec::new();
    let mut input = &raw[..];
    while !input.is_empty() {
        conn.read_tls(&mut input).map_err(|e| e.to_string())?;
        conn.process_new_packets()
            .map_err(|e| format!("TLS error in what the proxy sent: {e}"))?;
        let _ = conn.reader().read_to_end(&mut plain);
    }
    Ok(plain)
}

/// How many whole 502 responses `bytes` starts with, the first of them, and what
/// follows them.
fn split_502s(bytes: &[u8]) -> (usize, &[u8], &[u8]) {
    let (mut n, mut first, mut rest) = (0, &bytes[..0], bytes);
    loop {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (n, first, rest);
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let len: Option<usize> = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok());
        match len {
            Some(len) if head.starts_with("http/1.1 502 ") && rest.len() >= end + 4 + len => {
                if n == 0 {
                    first = &rest[..end + 4 + len];
                }
                n += 1;
                rest = &rest[end + 4 + len..];
            }
            _ => return (n, first, rest),
        }
    }
}
