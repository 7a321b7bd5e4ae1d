//! Things that only show with several workers or several servers: TLS resumption across
//! workers, load balancing across upstream servers, IPv6 listeners, names resolved at load.

mod common;

use std::net::TcpListener;

use rustls::HandshakeKind;

use common::backend::Backend;
use common::client::{Client, TlsOptions, client_config, req, request_with};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::{Fixture, HOST};

fn resumption_across_workers(version: &'static rustls::SupportedProtocolVersion) {
    let f = Fixture::new();
    let config = client_config(&f.pki, version);
    assert_eq!(request_with(&config, f.addr()), HandshakeKind::Full);
    // SO_REUSEPORT spreads connections by their 4-tuple: with two workers, twelve
    // connections all landing on the first worker would be a 1-in-4096 event, so these
    // resumptions prove that either worker can resume the other's sessions.
    for i in 0..12 {
        assert_eq!(
            request_with(&config, f.addr()),
            HandshakeKind::Resumed,
            "connection {i} was not resumed"
        );
    }
}

#[test]
fn tls13_sessions_resume_on_any_worker() {
    resumption_across_workers(&rustls::version::TLS13);
}

#[test]
fn tls12_sessions_resume_on_any_worker() {
    resumption_across_workers(&rustls::version::TLS12);
}

fn spread(balance: &str) -> (usize, usize) {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let balance = format!("\"{balance}\"");
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/", false, "pool")
        .upstream("pool", &[a.addr, b.addr], &[("balance", &balance)]);
    let proxy = Proxy::start(&config.build(), pki.dir());
    let opts = TlsOptions::new(pki.root_der(), HOST);
    for _ in 0..24 {
        let mut c = Client::tls(proxy.addr(), &opts).unwrap();
        let r = c.roundtrip(&req::get(HOST, "/bytes/3"));
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    (a.served(), b.served())
}

#[test]
fn round_robin_uses_every_server() {
    let (a, b) = spread("round_robin");
    assert_eq!(a + b, 24);
    assert!(
        a >= 6 && b >= 6,
        "round robin should alternate per worker: a={a} b={b}"
    );
}

#[test]
fn least_conn_uses_every_server() {
    let (a, b) = spread("least_conn");
    assert_eq!(a + b, 24);
    assert!(
        a > 0 && b > 0,
        "ties must rotate, not pin one server: a={a} b={b}"
    );
}

#[test]
fn ipv6_listener_serves() {
    assert!(
        TcpListener::bind("[::1]:0").is_ok(),
        "this test needs an IPv6 loopback (::1); the host has none"
    );
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let mut config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    config = config.replace("addr = \"127.0.0.1:0\"", "addr = \"[::1]:0\"");
    let proxy = Proxy::start(&config, pki.dir());
    assert!(proxy.addr().is_ipv6(), "{}", proxy.addr());
    let mut c = Client::tls(proxy.addr(), &TlsOptions::new(pki.root_der(), HOST)).unwrap();
    let r = c.roundtrip(&req::get(HOST, "/headers"));
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = backend.last_request().expect("backend saw the request");
    assert_eq!(seen.header("x-real-ip"), Some("::1"));
    assert_eq!(
        seen.header("forwarded")
            .map(|f| f.starts_with("for=\"[::1]\"")),
        Some(true),
        "{:?}",
        seen.header("forwarded")
    );
}

#[test]
fn upstream_host_names_resolve_at_load() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    // The backend listens where `localhost` resolves first on this host (127.0.0.1 or
    // ::1), so the name the proxy resolved at load reaches it either way.
    let first = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .expect("localhost resolves")
        .next()
        .expect("an address for localhost");
    let backend = Backend::named_at("backend", first);
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/", false, "backend")
        .build()
        + &format!(
            "\n[upstream.backend]\nservers = [\"localhost:{}\"]\n",
            backend.addr.port()
        );
    let proxy = Proxy::start(&config, pki.dir());
    let mut c = Client::tls(proxy.addr(), &TlsOptions::new(pki.root_der(), HOST)).unwrap();
    let r = c.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body.len(), 10);
}
