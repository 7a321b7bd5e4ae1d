//! Origin failures: refused → 502, silent → 504 after `read_timeout_ms`, a broken response
//! head → 502, and a reset mid-body → the client connection ends before the promised
//! length (never a body that looks complete).

mod common;

use std::io::ErrorKind;

use common::backend::{Backend, SilentBackend, pattern, refusing_addr};
use common::client::{Client, TlsOptions, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::{Fixture, HOST};

/// A proxy for [`HOST`] whose only upstream is `servers`, with `extra` upstream settings.
struct Setup {
    proxy: Proxy,
    pki: TestPki,
}

impl Setup {
    fn new(servers: &[std::net::SocketAddr], extra: &[(&str, &str)]) -> Setup {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let config = ConfigBuilder::new()
            .tls_listener(&[&cert])
            .route(None, "/", false, "up")
            .upstream("up", servers, extra);
        let proxy = Proxy::start(&config.build(), pki.dir());
        Setup { proxy, pki }
    }
    fn client(&self) -> Client {
        Client::tls(
            self.proxy.addr(),
            &TlsOptions::new(self.pki.root_der(), HOST),
        )
        .expect("connect to proxy")
    }
}

#[test]
fn refused_upstream_is_502() {
    let s = Setup::new(&[refusing_addr()], &[("connect_timeout_ms", "2000")]);
    let mut c = s.client();
    let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 502, "{}", resp.describe());
    // A second request (same or new connection) gets the same answer, not a hang.
    let mut c = s.client();
    let resp = c.roundtrip(&req::post(HOST, "/echo", b"hello"));
    assert_eq!(resp.status, 502, "{}", resp.describe());
}

#[test]
fn silent_upstream_is_504_after_read_timeout() {
    let silent = SilentBackend::start();
    let s = Setup::new(&[silent.addr], &[("read_timeout_ms", "500")]);
    let mut c = s.client();
    let resp = c.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 504, "{}", resp.describe());
    assert!(
        silent.accepts() >= 1,
        "the proxy did connect to the silent origin"
    );
}

#[test]
fn slow_upstream_beyond_read_timeout_is_504_and_within_it_is_200() {
    let f = Fixture::with_upstream(&[("read_timeout_ms", "500")], |c| c);
    let mut c = f.client();
    let resp = c.roundtrip(&req::get(HOST, "/slow?ms=3000"));
    assert_eq!(
        resp.status,
        504,
        "origin slower than read_timeout_ms\n{}",
        resp.describe()
    );
    let mut c = f.client();
    let resp = c.roundtrip(&req::get(HOST, "/slow?ms=50"));
    assert_eq!(
        resp.status,
        200,
        "origin within read_timeout_ms\n{}",
        resp.describe()
    );
    assert_eq!(resp.body, b"slow done");
}

#[test]
fn invalid_upstream_response_head_is_502() {
    let f = Fixture::new();
    let mut c = f.client();
    let resp = c.roundtrip(&req::get(HOST, "/garbage"));
    assert_eq!(
        resp.status,
        502,
        "non-HTTP response head\n{}",
        resp.describe()
    );
    let mut c = f.client();
    let resp = c.roundtrip(&req::get(HOST, "/close-before-head"));
    assert_eq!(
        resp.status,
        502,
        "origin closed before answering\n{}",
        resp.describe()
    );
    // The broken connections were not put back in the pool: the next request works.
    let mut c = f.client();
    let resp = c.roundtrip(&req::get(HOST, "/bytes/100"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, pattern(100, 100));
}

#[test]
fn upstream_reset_mid_body_truncates_the_client_connection() {
    let f = Fixture::new();
    let mut c = f.client();
    c.send(&req::get(HOST, "/reset-mid-body")).expect("send");
    match c.read_response(false) {
        Ok(resp) if resp.status == 502 => {
            // The reset overtook the head inside the proxy: a 502 is right then.
        }
        Ok(resp) => panic!(
            "the origin sent 1000 of 100000 promised bytes and reset, yet the client got a \
             complete-looking response:\n{}",
            resp.describe()
        ),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
            "the client connection must be closed after the origin reset, not left hanging: {e}"
        ),
    }
    // Only the broken exchange was affected.
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn one_dead_server_does_not_break_a_later_healthy_upstream() {
    // Two upstreams, one dead: requests routed to the healthy one are unaffected.
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let good = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/dead/", false, "dead")
        .route(None, "/", false, "good")
        .upstream("dead", &[refusing_addr()], &[])
        .upstream("good", &[good.addr], &[]);
    let proxy = Proxy::start(&config.build(), pki.dir());
    let mut c = Client::tls(proxy.addr(), &TlsOptions::new(pki.root_der(), HOST))
        .expect("connect to proxy");
    let resp = c.roundtrip(&req::get(HOST, "/dead/x"));
    assert_eq!(resp.status, 502, "{}", resp.describe());
    let mut c = Client::tls(proxy.addr(), &TlsOptions::new(pki.root_der(), HOST))
        .expect("connect to proxy");
    let resp = c.roundtrip(&req::get(HOST, "/bytes/20"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, pattern(20, 20));
}
