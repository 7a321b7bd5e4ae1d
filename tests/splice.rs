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
