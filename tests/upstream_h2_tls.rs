//! TLS to `protocol = "h2"` upstreams (`[upstream.NAME.tls]`): an in-process HTTP/2
//! server behind rustls (tokio-rustls on a tokio test runtime) answers through ringgate
//! when its certificate chains to `ca` and carries the server's name (or
//! `server_name`); a certificate from another CA, a name mismatch or a server without
//! ALPN `h2` is a 502, and the proxy goes on serving.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::backend::pattern;
use common::client::{Client, req};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::{HOST, sha256_hex};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Starts an HTTP/2 server over TLS with `cert`, offering `alpn`; it echoes request
/// bodies (and says `hello` to a bodyless request), with the path in `x-path`.
fn tls_upstream(cert: &CertFiles, alpn: &[&[u8]]) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .expect("cert file")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("key file");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        tokio::spawn(echo(req, respond));
                    }
                });
            }
        });
    });
    addr
}

async fn echo(req: http::Request<h2::RecvStream>, mut respond: h2::server::SendResponse<Bytes>) {
    let path = req.uri().path().to_string();
    let mut body = req.into_body();
    let mut got = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    if got.is_empty() {
        got = b"hello".to_vec();
    }
    let resp = http::Response::builder()
        .status(200)
        .header("x-path", path)
        .body(())
        .expect("response");
    let Ok(mut send) = respond.send_response(resp, false) else {
        return;
    };
    let mut data = Bytes::from(got);
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) if n > 0 => {
                let part = data.split_to(n.min(data.len()));
                if send.send_data(part, data.is_empty()).is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
}

/// A proxy (plain HTTP/1.1 listener) in front of `server` with `tls` lines in
/// `[upstream.backend.tls]`.
fn proxy(base: &Path, server: SocketAddr, tls: &str) -> Proxy {
    let text = ConfigBuilder::new()
        .plain_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[server], &[("protocol", "\"h2\"")])
        .build();
    Proxy::start(&format!("{text}\n[upstream.backend.tls]\n{tls}\n"), base)
}

fn ca_line(pki: &TestPki) -> String {
    format!("ca = {:?}\n", pki.root_pem_path().display().to_string())
}

#[test]
fn requests_reach_an_h2_upstream_over_tls_and_bodies_cross_intact() {
    let pki = TestPki::new();
    let cert = pki.leaf(&["127.0.0.1"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let server = tls_upstream(&cert, &[b"h2"]);
    let p = proxy(pki.dir(), server, &ca_line(&pki));
    let mut c = Client::plain(p.addr()).expect("connect");
    let resp = c.roundtrip(&req::get(HOST, "/greeting"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, b"hello");
    assert_eq!(resp.header("x-path"), Some("/greeting"));
    let body = pattern(7, 3 << 20);
    let resp = c.roundtrip(&req::post(HOST, "/echo", &body));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(sha256_hex(&resp.body), sha256_hex(&body));
}

#[test]
fn server_name_is_the_name_sent_and_verified() {
    let pki = TestPki::new();
    // The certificate names a host, the server is written as an address.
    let cert = pki.leaf(
        &["grpc.internal.test"],
        KeyType::EcdsaP256,
        KeyEncoding::Pkcs8,
    );
    let server = tls_upstream(&cert, &[b"h2"]);
    let mismatched = proxy(pki.dir(), server, &ca_line(&pki));
    let mut c = Client::plain(mismatched.addr()).expect("connect");
    let resp = c.roundtrip(&req::get(HOST, "/"));
    assert_eq!(resp.status, 502, "no name match: {}", resp.describe());
    let named = proxy(
        pki.dir(),
        server,
        &format!("{}server_name = \"grpc.internal.test\"\n", ca_line(&pki)),
    );
    let mut c = Client::plain(named.addr()).expect("connect");
    let resp = c.roundtrip(&req::get(HOST, "/"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[test]
fn a_certificate_from_another_ca_is_502_and_the_proxy_goes_on() {
    let pki = TestPki::new();
    let stranger = pki.self_signed(&["127.0.0.1"], KeyType::EcdsaP256);
    let bad = tls_upstream(&stranger, &[b"h2"]);
    let p = proxy(pki.dir(), bad, &ca_line(&pki));
    for _ in 0..3 {
        let mut c = Client::plain(p.addr()).expect("connect");
        let resp = c.roundtrip(&req::get(HOST, "/"));
        assert_eq!(resp.status, 502, "{}", resp.describe());
    }
}

#[test]
fn a_server_without_alpn_h2_is_502() {
    let pki = TestPki::new();
    let cert = pki.leaf(&["127.0.0.1"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    // Offering only http/1.1 (rustls refuses the handshake), or no ALPN at all (the
    // handshake completes, without h2).
    let offers: [&[&[u8]]; 2] = [&[b"http/1.1"], &[]];
    for alpn in offers {
        let server = tls_upstream(&cert, alpn);
        let p = proxy(pki.dir(), server, &ca_line(&pki));
        let mut c = Client::plain(p.addr()).expect("connect");
        let resp = c.roundtrip(&req::get(HOST, "/"));
        assert_eq!(resp.status, 502, "ALPN {alpn:?}: {}", resp.describe());
    }
}
