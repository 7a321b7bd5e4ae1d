//! Both userspace TLS record layers — ringgate's own (src/transport/seal.rs, the
//! default) and rustls' unbuffered API (src/transport/driver.rs, `record_layer =
//! "rustls"`), each test run against each: records split across many TCP segments,
//! several requests in one record, a request bigger than one record, client KeyUpdates in
//! both directions, close_notify, every post-handshake record fault, and a tampered
//! record, which must cost only its own connection. kTLS is off here so these run the
//! same on hosts that have it.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::backend::{Backend, pattern};
use common::client::{READ_TIMEOUT, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{CertEntry, ConfigBuilder, Proxy};
use common::{HOST, sha256_hex};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore};

struct Setup {
    proxy: Proxy,
    pki: TestPki,
    _backend: Backend,
}

/// The userspace record layers, as `record_layer` names them.
const LAYERS: [&str; 2] = ["ringgate", "rustls"];

fn start(layer: &str) -> Setup {
    start_with(layer, |c| c)
}

/// [`start`] with extra settings applied to its config.
fn start_with(layer: &str, tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Setup {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let record_layer = format!("\"{layer}\"");
    let config = tweak(
        ConfigBuilder::new()
            .tls_listener_with(
                &[CertEntry::from(&cert)],
                &[("ktls", "\"off\""), ("record_layer", &record_layer)],
            )
            .route(None, "/", false, "backend")
            .upstream("backend", &[backend.addr], &[]),
    );
    let proxy = Proxy::start(&config.build(), pki.dir());
    Setup {
        proxy,
        pki,
        _backend: backend,
    }
}

/// A TLS client that controls how its ciphertext reaches the socket: in writes of
/// `segment` bytes each (TCP_NODELAY, so mostly one segment per write).
struct Raw {
    conn: ClientConnection,
    sock: TcpStream,
    segment: usize,
    plain: Vec<u8>,
}

impl Raw {
    fn connect(
        s: &Setup,
        version: &'static rustls::SupportedProtocolVersion,
        segment: usize,
    ) -> Raw {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(s.pki.root_der()).unwrap();
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(HOST.to_string()).unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(s.proxy.addr()).unwrap();
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut raw = Raw {
            conn,
            sock,
            segment,
            plain: Vec::new(),
        };
        while raw.conn.is_handshaking() {
            raw.send_pending().unwrap();
            if raw.conn.is_handshaking() {
                assert!(
                    raw.receive().unwrap(),
                    "the proxy closed during the handshake"
                );
            }
        }
        raw.send_pending().unwrap();
        raw
    }

    /// Writes every queued TLS byte, `segment` bytes per write.
    fn send_pending(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out)?;
        }
        for piece in out.chunks(self.segment.max(1)) {
            self.sock.write_all(piece)?;
        }
        Ok(())
    }

    /// Reads once from the socket and processes it; `Ok(false)` at EOF.
    fn receive(&mut self) -> Result<bool, rustls::Error> {
        let n = self
            .conn
            .read_tls(&mut self.sock)
            .map_err(|e| rustls::Error::General(format!("read: {e}")))?;
        self.conn.process_new_packets()?;
        let mut buf = [0u8; 16384];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(k) => self.plain.extend_from_slice(&buf[..k]),
                Err(_) => break,
            }
        }
        Ok(n > 0)
    }

    /// Encrypts `data` (rustls cuts it into records) and sends it.
    fn send(&mut self, data: &[u8]) {
        for piece in data.chunks(16 * 1024) {
            self.conn.writer().write_all(piece).unwrap();
            self.send_pending().unwrap();
        }
    }

    /// Reads one response with a Content-Length body: (status, body).
    fn response(&mut self) -> (u16, Vec<u8>) {
        loop {
            if let Some(end) = self.plain.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.plain[..end]).to_string();
                let status: u16 = head[9..12].parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .expect("Content-Length");
                if self.plain.len() >= end + 4 + len {
                    let body = self.plain[end + 4..end + 4 + len].to_vec();
                    self.plain.drain(..end + 4 + len);
                    return (status, body);
                }
            }
            assert!(
                self.receive().expect("TLS error while reading a response"),
                "connection closed before a whole response arrived"
            );
        }
    }
}

/// Runs `test` against a proxy with each userspace record layer.
fn on_each_layer(test: fn(&str)) {
    for layer in LAYERS {
        // Shown with a failure: which layer it was.
        eprintln!("record_layer = \"{layer}\"");
        test(layer);
    }
}

const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

#[test]
fn records_split_into_tiny_tcp_segments_are_reassembled() {
    on_each_layer(records_split_into_tiny_tcp_segments_are_reassembled_on);
}

fn records_split_into_tiny_tcp_segments_are_reassembled_on(layer: &str) {
    let s = start(layer);
    for v in VERSIONS {
        // The whole handshake and a request, one byte per write.
        let mut c = Raw::connect(&s, v, 1);
        c.send(&req::get(HOST, "/bytes/5000"));
        let (status, body) = c.response();
        assert_eq!((status, body), (200, pattern(5000, 5000)), "{v:?}");
        // A body spanning many records, in segments that never line up with them.
        c.segment = 1237;
        let upload = pattern(3, 200_000);
        c.send(&req::post(HOST, "/echo", &upload));
        let (status, body) = c.response();
        assert_eq!(status, 200, "{v:?}");
        assert_eq!(sha256_hex(&body), sha256_hex(&upload), "{v:?}");
    }
}

#[test]
fn several_requests_in_one_record_are_answered_in_order() {
    on_each_layer(several_requests_in_one_record_are_answered_in_order_on);
}

fn several_requests_in_one_record_are_answered_in_order_on(layer: &str) {
    let s = start(layer);
    for v in VERSIONS {
        let mut c = Raw::connect(&s, v, usize::MAX);
        let mut three = req::get(HOST, "/bytes/10");
        three.extend(req::get(HOST, "/bytes/20000"));
        three.extend(req::get(HOST, "/bytes/30"));
        c.send(&three);
        for n in [10usize, 20000, 30] {
            let (status, body) = c.response();
            assert_eq!(
                (status, body),
                (200, pattern(n as u64, n)),
                "{v:?} /bytes/{n}"
            );
        }
    }
}

#[test]
fn client_key_updates_rotate_both_directions_and_keep_the_connection() {
    on_each_layer(client_key_updates_rotate_both_directions_and_keep_the_connection_on);
}

fn client_key_updates_rotate_both_directions_and_keep_the_connection_on(layer: &str) {
    let s = start(layer);
    let mut c = Raw::connect(&s, &rustls::version::TLS13, usize::MAX);
    for round in 0..4 {
        // rustls sends KeyUpdate(update_requested): the proxy must take the client's new
        // key and answer with its own, or this response would not decrypt.
        c.conn.refresh_traffic_keys().unwrap();
        c.send(&req::get(HOST, "/bytes/70000"));
        let (status, body) = c.response();
        assert_eq!(status, 200, "round {round}");
        assert_eq!(body, pattern(70000, 70000), "round {round}");
    }
}

#[test]
fn client_close_notify_gets_the_response_then_a_close_notify() {
    on_each_layer(client_close_notify_gets_the_response_then_a_close_notify_on);
}

fn client_close_notify_gets_the_response_then_a_close_notify_on(layer: &str) {
    let s = start(layer);
    for v in VERSIONS {
        let mut c = Raw::connect(&s, v, usize::MAX);
        c.conn
            .writer()
            .write_all(&req::get(HOST, "/bytes/100"))
            .unwrap();
        c.conn.send_close_notify();
        c.send_pending().unwrap();
        let (status, body) = c.response();
        assert_eq!((status, body), (200, pattern(100, 100)), "{v:?}");
        // Then a clean close: rustls reports EOF (Ok(0)) only after a close_notify.
        while c.receive().expect("TLS error after the response") {}
        let mut rest = [0u8; 16];
        assert_eq!(
            c.conn.reader().read(&mut rest).map_err(|e| e.kind()),
            Ok(0),
            "{v:?}: the proxy closed without close_notify"
        );
    }
}

#[test]
fn tampered_record_gets_bad_record_mac_and_costs_only_its_connection() {
    on_each_layer(tampered_record_gets_bad_record_mac_and_costs_only_its_connection_on);
}

fn tampered_record_gets_bad_record_mac_and_costs_only_its_connection_on(layer: &str) {
    let s = start(layer);
    for v in VERSIONS {
        let mut bystander = Raw::connect(&s, v, usize::MAX);
        let mut c = Raw::connect(&s, v, usize::MAX);
        c.conn
            .writer()
            .write_all(&req::get(HOST, "/bytes/10"))
            .unwrap();
        let mut out = Vec::new();
        while c.conn.wants_write() {
            c.conn.write_tls(&mut out).unwrap();
        }
        let last = out.len() - 1;
        out[last] ^= 0x01; // inside the AEAD tag
        c.sock.write_all(&out).unwrap();
        let err = loop {
            match c.receive() {
                Ok(true) => continue,
                Ok(false) => panic!("{v:?}: closed without an alert"),
                Err(e) => break e,
            }
        };
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::BadRecordMac),
            "{v:?}"
        );
        assert!(c.plain.is_empty(), "{v:?}: nothing may be answered");
        // Another connection, open all along, is untouched.
        bystander.send(&req::get(HOST, "/bytes/10"));
        assert_eq!(bystander.response(), (200, pattern(10, 10)), "{v:?}");
    }
}

#[test]
fn garbage_after_the_handshake_is_refused_without_hanging() {
    on_each_layer(garbage_after_the_handshake_is_refused_without_hanging_on);
}

fn garbage_after_the_handshake_is_refused_without_hanging_on(layer: &str) {
    let s = start(layer);
    let c = Raw::connect(&s, &rustls::version::TLS13, usize::MAX);
    let mut sock = c.sock;
    // A record header with an impossible length, then junk.
    sock.write_all(&[23, 3, 3, 0xff, 0xff, 1, 2, 3, 4]).unwrap();
    let mut got = Vec::new();
    // The proxy answers with an (encrypted) alert and closes: EOF, not a read timeout.
    sock.read_to_end(&mut got)
        .expect("the proxy must close the connection, not wait for more");
    let mut next = Raw::connect(&s, &rustls::version::TLS13, usize::MAX);
    next.send(&req::get(HOST, "/bytes/10"));
    assert_eq!(next.response(), (200, pattern(10, 10)));
}

fn target(s: &Setup) -> common::records::Target {
    common::records::Target {
        addr: s.proxy.addr(),
        root: s.pki.root_der(),
        host: HOST.to_string(),
        read_timeout: READ_TIMEOUT,
    }
}

/// Every post-handshake record fault of tests/common/records.rs, for every suite it
/// applies to: exactly one fatal alert of the right description and then EOF (never a
/// second alert from the close that follows), or, for the legal sequences, the connection
/// goes on. A connection open all along is untouched, and no connection task panicked.
#[test]
fn post_handshake_record_faults_get_one_fatal_alert_then_close() {
    on_each_layer(post_handshake_record_faults_get_one_fatal_alert_then_close_on);
}

fn post_handshake_record_faults_get_one_fatal_alert_then_close_on(layer: &str) {
    use common::record_cases::{Layer, post_handshake_cases};
    use common::records::{SUITES, suite_name};
    let s = start(layer);
    let t = target(&s);
    let mut bystander = Raw::connect(&s, &rustls::version::TLS13, usize::MAX);
    let mut failures = Vec::new();
    for case in post_handshake_cases()
        .into_iter()
        .chain(common::record_cases::warning_alert_cases())
    {
        for suite in SUITES.into_iter().filter(|s| case.applies(*s)) {
            let on = if layer == "rustls" {
                Layer::Rustls
            } else {
                Layer::Ringgate
            };
            if let Err(e) = case.run(&t, suite, on) {
                failures.push(format!("{} {}: {e}", case.name, suite_name(suite)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    bystander.send(&req::get(HOST, "/bytes/10"));
    assert_eq!(bystander.response(), (200, pattern(10, 10)));
    // Fails on any panic caught in a connection task.
    s.proxy.shutdown();
}

/// Plaintext records around a real ClientHello (TLS 1.3 and 1.2 offers) while rustls
/// holds part of a handshake message: another record type, an oversized or empty record
/// between its fragments, a ClientHello over 64 KiB. The one alert rustls has (if any)
/// goes out, then the connection closes at once; nothing panics.
#[test]
fn handshake_record_faults_get_their_alert_without_a_panic() {
    on_each_layer(handshake_record_faults_get_their_alert_without_a_panic_on);
}

fn handshake_record_faults_get_their_alert_without_a_panic_on(layer: &str) {
    use common::record_cases::handshake_cases;
    let s = start(layer);
    let t = target(&s);
    let mut failures = Vec::new();
    for case in handshake_cases() {
        for tls13 in [true, false] {
            if let Err(e) = case.run(&t, tls13) {
                failures.push(format!("{} (tls13 offered: {tls13}): {e}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mut next = Raw::connect(&s, &rustls::version::TLS12, usize::MAX);
    next.send(&req::get(HOST, "/bytes/10"));
    assert_eq!(next.response(), (200, pattern(10, 10)));
    s.proxy.shutdown();
}

/// A record holding only the first byte of a KeyUpdate, then silence past
/// `client_header_timeout_ms`: rustls holds the partial handshake message in the driver's
/// ciphertext buffer when the timeout cancels the head read. The close that follows must
/// drive rustls over the same buffer: a read that took the buffer across its await and
/// lost it made rustls index past the shorter one and panic (caught per connection, a
/// bug all the same). Each connection closes cleanly, and no connection task panicked.
#[test]
fn a_head_read_cancelled_inside_a_handshake_message_closes_without_a_panic() {
    on_each_layer(a_head_read_cancelled_inside_a_handshake_message_closes_without_a_panic_on);
}

fn a_head_read_cancelled_inside_a_handshake_message_closes_without_a_panic_on(layer: &str) {
    use common::records::{HANDSHAKE, RawSession, SUITES, is_tls13, key_update, suite_name};
    let s = start_with(layer, |c| c.http("client_header_timeout_ms", 200));
    let t = target(&s);
    let mut failures = Vec::new();
    for suite in SUITES.into_iter().filter(|s| is_tls13(*s)) {
        let mut c = RawSession::connect(&t, suite).expect("handshake");
        let fragment = c.record(HANDSHAKE, &key_update(1)[..1]);
        c.send(&fragment).expect("send the fragment");
        let out = c.outcome();
        if !out.closed() || !out.data.is_empty() {
            failures.push(format!("{}: {out:?}", suite_name(suite)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mut next = Raw::connect(&s, &rustls::version::TLS13, usize::MAX);
    next.send(&req::get(HOST, "/bytes/10"));
    assert_eq!(next.response(), (200, pattern(10, 10)));
    let panics: u64 = s.proxy.shutdown_reports().iter().map(|w| w.panics).sum();
    assert_eq!(
        panics, 0,
        "connection tasks panicked after a cancelled read"
    );
}

/// A ClientHello sent as one-byte records (the CPU sink: 60,000 of them cost the
/// proxy 0.6 s of CPU) is refused once it passes the record cap: a handshake_failure
/// alert, then the close — no ServerHello — and the failure is counted under its own
/// reason. A hello in one record still gets its handshake.
#[test]
fn a_client_hello_in_too_many_records_is_refused() {
    on_each_layer(a_client_hello_in_too_many_records_is_refused_on);
}

fn a_client_hello_in_too_many_records_is_refused_on(layer: &str) {
    use std::io::Read;
    let s = start_with(layer, |c| c.admin());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(HOST.to_string()).unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut flight = Vec::new();
    conn.write_tls(&mut flight).unwrap();
    assert_eq!(flight[0], 22, "one handshake record");
    let mut records = Vec::new();
    for b in &flight[5..] {
        records.extend_from_slice(&[22, 3, 1, 0, 1, *b]);
    }
    let mut sock = TcpStream::connect(s.proxy.addr()).unwrap();
    sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    // The proxy may close before it has read everything: a reset of this write is fine.
    let _ = sock.write_all(&records);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the proxy neither answered nor closed: {e}"),
        }
    }
    assert!(
        got == [21, 3, 3, 0, 2, 2, 40],
        "a hello in {} one-byte records must get a handshake_failure alert and the close; \
         got {} bytes starting {:?} (22: a ServerHello)",
        flight.len() - 5,
        got.len(),
        &got[..got.len().min(8)]
    );
    let metrics = admin_metrics(s.proxy.admin_addr());
    assert!(
        metrics
            .lines()
            .any(|l| l == "ringgate_tls_handshakes_total{outcome=\"hello_fragmented\"} 1"),
        "the refusal is counted under its reason:\n{metrics}"
    );
    let mut next = Raw::connect(&s, &rustls::version::TLS13, usize::MAX);
    next.send(&req::get(HOST, "/bytes/10"));
    assert_eq!(next.response(), (200, pattern(10, 10)));
}

/// The admin listener's `/metrics` text.
fn admin_metrics(admin: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).expect("connect to the admin listener");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    text
}
