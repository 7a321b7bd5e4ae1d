//! The facts a TLS handshake settles are kept for the connection (`TlsInfo`: SNI, ALPN,
//! version, cipher suite, full or resumed, duration, client chain, kTLS) — seen here in
//! the proxy's per-connection debug line, from a real rustls client, full then resumed.

mod common;

use std::time::Duration;

use rustls::HandshakeKind;

use common::HOST;
use common::backend::Backend;
use common::client::{client_config, request_with};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, ProxyProcess};

#[test]
fn handshake_facts_are_recorded_per_connection() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .server("workers", "1")
        .tls_listener_with(&[(&cert).into()], &[("ktls", "\"off\"")])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let path = pki.dir().join("ringgate.toml");
    std::fs::write(&path, config.build()).expect("write config");
    let proxy = ProxyProcess::spawn_with(&path, 1, &["--log", "info,ringgate=debug"]);
    let mut client = (*client_config(&pki, &rustls::version::TLS13)).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = std::sync::Arc::new(client);
    let addr = proxy.addrs()[0];
    assert_eq!(request_with(&client, addr), HandshakeKind::Full);
    assert_eq!(request_with(&client, addr), HandshakeKind::Resumed);
    assert!(
        proxy.wait_for_output("tls handshake done", 2, Duration::from_secs(10)),
        "{}",
        proxy.output()
    );
    let output = proxy.output();
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("tls handshake done"))
        .collect();
    assert_eq!(lines.len(), 2, "{output}");
    for (line, resumed) in lines.iter().zip([false, true]) {
        for want in [
            "sni=\"app.test\"",
            "alpn=http/1.1",
            "version=\"TLSv1.3\"",
            "TLS13_",
            &format!("resumed={resumed}"),
            "client_certs=0",
            "ktls=false",
        ] {
            assert!(line.contains(want), "{want:?} missing in {line}");
        }
    }
}
