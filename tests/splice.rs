//! Zero-copy bodies: Content-Length bodies above `splice_threshold_bytes` travel socket →
//! pipe → socket when the client side is plain TCP (here) or kernel TLS (the VM test).
//! Checked with SHA-256 both ways, with io_uring and with the epoll fallback, and the
//! workers' counters prove the splice path ran.

mod common;

use common::backend::Backend;
use common::client::{Client, req};
use common::pki::TestPki;
use common::proxy::{ConfigBuilder, Proxy};
use common::{HOST, sha256_hex};

fn start(io_uring: &str, threshold: u64) -> (Proxy, Backend, TestPki) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .server("io_uring", &format!("\"{io_uring}\""))
        .http("splice_threshold_bytes", threshold)
        .plain_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let proxy = Proxy::start(&config.build(), pki.dir());
    (proxy, backend, pki)
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn spliced_both_ways(io_uring: &str, driver: &str) {
    let (proxy, backend, _pki) = start(io_uring, 64 * 1024);
    let mut c = Client::plain(proxy.addr()).unwrap();
    for size in [64 * 1024, 1024 * 1024 + 3, 4 * 1024 * 1024] {
        let r = c.roundtrip(&req::get(HOST, &format!("/bytes/{size}")));
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body.len(), size);
        let direct = backend_body(&backend, size);
        assert_eq!(sha256_hex(&r.body), sha256_hex(&direct), "GET {size}");
        let sent = body(size);
        let r = c.roundtrip(&req::post(HOST, "/echo", &sent));
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            r.header("x-body-sha256"),
            Some(sha256_hex(&sent).as_str()),
            "origin saw a different body"
        );
        assert_eq!(sha256_hex(&r.body), sha256_hex(&sent), "POST {size} echoed");
    }
    // Smaller than the threshold: the copying path, same results.
    let r = c.roundtrip(&req::get(HOST, "/bytes/1000"));
    assert_eq!(r.body.len(), 1000);
    drop(c);
    let reports = proxy.shutdown_reports();
    let spliced: u64 = reports.iter().map(|r| r.spliced_bodies).sum();
    // Three GETs and three echo responses above the threshold.
    assert_eq!(spliced, 6, "{reports:?}");
    // The mechanism under test really ran: every worker on the driver asked for.
    assert!(
        reports.iter().all(|r| r.driver == driver),
        "expected every worker on {driver}: {reports:?}"
    );
}

/// The origin's bytes for `/bytes/N`, fetched directly.
fn backend_body(backend: &Backend, size: usize) -> Vec<u8> {
    let mut c = Client::plain(backend.addr).unwrap();
    c.roundtrip(&req::get(HOST, &format!("/bytes/{size}"))).body
}

#[test]
fn splice_with_io_uring() {
    spliced_both_ways("auto", "io_uring");
}

#[test]
fn splice_with_epoll_fallback() {
    spliced_both_ways("off", "epoll");
}

#[test]
fn upstream_dying_mid_splice_closes_the_client() {
    let (proxy, _backend, _pki) = start("auto", 1024);
    let mut c = Client::plain(proxy.addr()).unwrap();
    c.send(&req::get(HOST, "/reset-mid-body")).unwrap();
    if let Ok(r) = c.read_response(false) {
        panic!(
            "a truncated body was passed off as complete: {}",
            r.describe()
        );
    }
    // The proxy is still serving.
    let mut c = Client::plain(proxy.addr()).unwrap();
    assert_eq!(c.roundtrip(&req::get(HOST, "/bytes/5000")).body.len(), 5000);
}

/// Bytes of each download in the burst: far more than a non-reading client's receive
/// buffer (set small) and the proxy's send buffer hold, so every download is still
/// splicing, holding its pipe, when the next one starts.
const BURST_BODY: usize = 8 * 1024 * 1024;
/// Body bytes a client reads before it stops: more than the upstream read buffer could
/// have carried with the head, so these came through the pipe (the splice has begun).
const SPLICED_PREFIX: usize = 1024 * 1024;

/// Reads a response head; returns its Content-Length and the body bytes read with it.
fn read_head(s: &mut std::net::TcpStream) -> (usize, usize) {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("response head");
        assert!(
            n > 0,
            "closed before the head: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            return (len, got.len() - end - 4);
        }
    }
}

/// Reads (and discards) `n` more bytes.
fn read_n(s: &mut std::net::TcpStream, mut n: usize) {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = n.min(buf.len());
        let got = s.read(&mut buf[..want]).expect("body");
        assert!(got > 0, "closed with {n} body bytes to go");
        n -= got;
    }
}

/// The spare-pipe gauge, read from `/metrics`.
fn spare_pipes(proxy: &Proxy) -> u64 {
    let mut c = Client::plain(proxy.admin_addr()).unwrap();
    let r = c.roundtrip(&req::get(HOST, "/metrics"));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("ringgate_splice_pipes_spare "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no ringgate_splice_pipes_spare in:\n{text}")) as u64
}

#[test]
fn a_burst_of_slow_downloads_leaves_at_most_the_spare_cap() {
    use ringgate::context::pipes::SPARE_PIPES_MAX;
    use std::io::Write;
    let backend = Backend::start();
    // One worker: every download splices through the same pool.
    let config = ConfigBuilder::new()
        .server("workers", "1")
        .http("splice_threshold_bytes", 64 * 1024)
        .plain_listener()
        .admin()
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let pki = TestPki::new();
    let proxy = Proxy::start(&config.build(), pki.dir());
    let burst = SPARE_PIPES_MAX + 4;
    let mut clients = Vec::new();
    for _ in 0..burst {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // A small fixed receive buffer (no autotuning): the download stalls once the
        // client stops reading.
        sock.set_recv_buffer_size(32 * 1024).unwrap();
        sock.connect(&proxy.addr().into()).unwrap();
        let mut s: std::net::TcpStream = sock.into();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        s.write_all(&req::get(HOST, &format!("/bytes/{BURST_BODY}")))
            .unwrap();
        let (len, with_head) = read_head(&mut s);
        assert_eq!(len, BURST_BODY);
        read_n(&mut s, SPLICED_PREFIX - with_head);
        // This download now holds a pipe, and keeps it: the client stopped reading.
        clients.push(s);
    }
    for s in &mut clients {
        read_n(s, BURST_BODY - SPLICED_PREFIX);
        // Its exchange has ended (pipe returned) once the next request is answered.
        s.write_all(&req::get(HOST, "/bytes/10")).unwrap();
        let (len, with_head) = read_head(s);
        read_n(s, len - with_head);
    }
    let spare = spare_pipes(&proxy);
    assert!(
        spare <= SPARE_PIPES_MAX as u64,
        "{spare} spare pipes kept after a burst of {burst} (cap {SPARE_PIPES_MAX})"
    );
    drop(clients);
    let reports = proxy.shutdown_reports();
    let spliced: u64 = reports.iter().map(|r| r.spliced_bodies).sum();
    assert_eq!(spliced, burst as u64, "the burst went through splice");
}
