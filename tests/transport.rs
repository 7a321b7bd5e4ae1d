//! The transport's TLS driver in both roles, in process on a monoio runtime: our client
//! role (`UpstreamTlsStream`) against our server role (`ClientStream`) over loopback,
//! against a peer that is not ours (rustls' blocking `ServerConnection` on a thread),
//! against a server it must not trust; and `transport::accept`, the client connection
//! setup, with its metrics.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::{TcpListener, TcpStream};
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::{AlertDescription, CertificateError, ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use ringgate::config::{KtlsMode, RecordLayer};
use ringgate::observe::Registry;
use ringgate::observe::metrics::HandshakeFailure;
use ringgate::transport::{ClientStream, HandshakeError, UpstreamTlsStream};

const HOST: &str = "app.test";

/// A guard against a hang (a failing test, not a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

/// More than one TLS record's worth (16 KiB), so writes and reads span several records.
const UP_LEN: usize = 40 * 1024 + 7;
const DOWN_LEN: usize = 70 * 1024 + 3;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("build a monoio runtime");
    rt.block_on(async move {
        monoio::time::timeout(GUARD, f)
            .await
            .expect("the test did not finish within its guard")
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn versions(
    v: &'static rustls::SupportedProtocolVersion,
) -> [&'static rustls::SupportedProtocolVersion; 1] {
    [v]
}

fn server_config(
    cert: &CertFiles,
    v: &'static rustls::SupportedProtocolVersion,
) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .expect("open chain")
        .collect::<Result<_, _>>()
        .expect("read chain");
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("read key");
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(v))
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    // As the proxy's own configurations: the record layer after the handshake (the
    // kernel's or ringgate's) takes the traffic secrets from rustls.
    config.enable_secret_extraction = true;
    Arc::new(config)
}

fn client_config(pki: &TestPki, v: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_der()).expect("trust the test root");
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(v))
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn client_conn(config: &Arc<ClientConfig>) -> UnbufferedClientConnection {
    UnbufferedClientConnection::new(config.clone(), ServerName::try_from(HOST).unwrap())
        .expect("start a client TLS session")
}

/// Reads exactly `len` plaintext bytes (fails on an early end of stream).
async fn read_len<R: ringgate::transport::Role>(
    s: &mut ringgate::transport::Stream<R>,
    len: usize,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    while buf.len() < len {
        let want = len - buf.len();
        let n = s.read(&mut buf, want).await.expect("read plaintext");
        assert_ne!(n, 0, "end of stream after {} of {len} bytes", buf.len());
    }
    assert_eq!(buf.len(), len, "read more than asked for");
    buf.to_vec()
}

/// A read after the peer's close_notify: a clean end of stream.
async fn expect_eof<R: ringgate::transport::Role>(s: &mut ringgate::transport::Stream<R>) {
    let mut buf = BytesMut::new();
    let n = s.read(&mut buf, 4096).await.expect("clean end of stream");
    assert_eq!(n, 0, "data after close_notify: {buf:?}");
}

fn version_cases() -> [(
    &'static rustls::SupportedProtocolVersion,
    rustls::ProtocolVersion,
); 2] {
    [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ]
}

#[test]
fn client_role_and_server_role_carry_data_both_ways_and_close_cleanly() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    for (v, expected) in version_cases() {
        let server_cfg = server_config(&cert, v);
        let client_cfg = client_config(&pki, v);
        run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let up = payload(UP_LEN, 1);
            let down = payload(DOWN_LEN, 2);
            let (up2, down2) = (up.clone(), down.clone());
            let server = monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                let conn = UnbufferedServerConnection::new(server_cfg).expect("server session");
                let mut s = ClientStream::tls(tcp, conn, false);
                let sni = s.handshake().await.expect("server handshake");
                assert_eq!(sni.as_deref(), Some(HOST));
                assert_eq!(s.tls_conn().unwrap().protocol_version(), Some(expected));
                assert_eq!(
                    read_len(&mut s, up2.len()).await,
                    up2,
                    "client → server bytes"
                );
                s.write(Bytes::from(down2)).await.expect("server write");
                // close_notify (and FIN) from the server first ...
                s.shutdown().await;
                // ... then the client's close_notify is a clean end of stream here.
                expect_eof(&mut s).await;
            });
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let mut c = UpstreamTlsStream::tls_client(tcp, client_conn(&client_cfg), false);
            c.connect_handshake().await.expect("client handshake");
            assert!(!c.is_ktls());
            assert!(
                c.splice_socket().is_none(),
                "userspace TLS is never spliced"
            );
            let conn = c.tls_conn().expect("a rustls connection");
            assert_eq!(conn.protocol_version(), Some(expected));
            assert!(!conn.is_handshaking());
            // Two writes, the first one several records long.
            c.write(Bytes::copy_from_slice(&up[..UP_LEN - 100]))
                .await
                .expect("client write");
            c.write(Bytes::copy_from_slice(&up[UP_LEN - 100..]))
                .await
                .expect("client write");
            assert_eq!(
                read_len(&mut c, down.len()).await,
                down,
                "server → client bytes"
            );
            expect_eof(&mut c).await;
            c.shutdown().await;
            server.await;
        });
    }
}

/// A blocking rustls server on a thread (a TLS peer that is not ours): reads `up` bytes,
/// sends `down`, sends close_notify and holds the socket open (no FIN) until the client
/// says it saw the end of stream, then expects the client's close_notify.
fn std_server(
    config: Arc<ServerConfig>,
    up: usize,
    down: Vec<u8>,
    client_saw_eof: std::sync::mpsc::Receiver<()>,
) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(GUARD)).unwrap();
        let mut conn = rustls::ServerConnection::new(config).expect("server session");
        let mut got = vec![0u8; up];
        {
            let mut tls = rustls::Stream::new(&mut conn, &mut sock);
            tls.read_exact(&mut got).expect("read the client's bytes");
            tls.write_all(&down).expect("write to the client");
            tls.flush().expect("flush");
        }
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut sock).expect("send close_notify");
        }
        client_saw_eof
            .recv_timeout(GUARD)
            .expect("the client never reported its end of stream");
        // rustls reports a TCP close without close_notify as UnexpectedEof: Ok(0) here
        // proves the client sent one.
        let mut rest = Vec::new();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.read_to_end(&mut rest)
            .expect("the client's close_notify, then FIN");
        assert!(rest.is_empty(), "bytes after the payload: {}", rest.len());
        got
    });
    (addr, handle)
}

#[test]
fn client_role_talks_to_a_plain_rustls_server() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    for (v, expected) in version_cases() {
        let up = payload(UP_LEN, 3);
        let down = payload(DOWN_LEN, 4);
        let (saw_eof, client_saw_eof) = std::sync::mpsc::channel();
        let (addr, server) = std_server(
            server_config(&cert, v),
            up.len(),
            down.clone(),
            client_saw_eof,
        );
        let client_cfg = client_config(&pki, v);
        let up2 = up.clone();
        run(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let mut c = UpstreamTlsStream::tls_client(tcp, client_conn(&client_cfg), false);
            c.connect_handshake().await.expect("client handshake");
            assert_eq!(c.tls_conn().unwrap().protocol_version(), Some(expected));
            c.write(Bytes::from(up2)).await.expect("client write");
            assert_eq!(
                read_len(&mut c, down.len()).await,
                down,
                "server → client bytes"
            );
            // The server's close_notify, with its socket still open: end of stream.
            expect_eof(&mut c).await;
            saw_eof.send(()).unwrap();
            c.shutdown().await;
        });
        assert_eq!(
            server.join().expect("server thread"),
            up,
            "client → server bytes"
        );
    }
}

#[test]
fn client_role_refuses_an_untrusted_server_and_the_server_sees_the_alert() {
    let pki = TestPki::new();
    // Self-signed: not issued by the root the client trusts.
    let cert = pki.self_signed(&[HOST], KeyType::EcdsaP256);
    for (v, _) in version_cases() {
        let server_cfg = server_config(&cert, v);
        let client_cfg = client_config(&pki, v);
        run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let server = monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                let conn = UnbufferedServerConnection::new(server_cfg).expect("server session");
                let mut s = ClientStream::tls(tcp, conn, false);
                s.handshake().await
            });
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let mut c = UpstreamTlsStream::tls_client(tcp, client_conn(&client_cfg), false);
            match c.connect_handshake().await {
                Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                ))) => {}
                other => panic!("expected an unknown-issuer TLS error, got {other:?}"),
            }
            // The failed session sends nothing more.
            assert!(c.write(Bytes::from_static(b"x")).await.is_err());
            drop(c);
            match server.await {
                Err(HandshakeError::Tls(rustls::Error::AlertReceived(
                    AlertDescription::UnknownCA,
                ))) => {}
                other => panic!("expected the server to receive unknown_ca, got {other:?}"),
            }
        });
    }
}

#[test]
fn accept_records_tls_info_and_counts_handshakes() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let server_cfg = server_config(&cert, &rustls::version::TLS13);
    let client_cfg = client_config(&pki, &rustls::version::TLS13);
    let registry = Registry::new(1, 1);
    let metrics = registry.local(0);
    run(async move {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = monoio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..2 {
                let (tcp, peer) = listener.accept().await.expect("accept");
                let mut rbuf = BytesMut::new();
                let accepted = ringgate::transport::accept(
                    tcp,
                    peer,
                    ringgate::transport::tls::ServerConfigs::single(server_cfg.clone()),
                    ringgate::transport::RecordLayers {
                        ktls: KtlsMode::Off,
                        userspace: RecordLayer::Ringgate,
                    },
                    GUARD,
                    &mut rbuf,
                    &metrics,
                )
                .await;
                outcomes.push(accepted.map(|(mut s, info)| {
                    assert!(!s.is_ktls());
                    assert!(s.is_sealed_here(), "ringgate's record layer took over");
                    assert!(s.splice_socket().is_none());
                    info
                }));
            }
            (outcomes, metrics)
        });
        // A TLS client, then plain HTTP on the TLS port.
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut c = UpstreamTlsStream::tls_client(tcp, client_conn(&client_cfg), false);
        c.connect_handshake().await.expect("client handshake");
        c.shutdown().await;
        let mut plain = ringgate::transport::upstream::UpstreamStream::new(
            TcpStream::connect(addr).await.expect("connect"),
        );
        plain
            .write(Bytes::from_static(
                b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
            ))
            .await
            .expect("send plain HTTP");
        let mut reply = BytesMut::new();
        while plain.read(&mut reply, 4096).await.expect("read the 400") > 0 {}
        assert!(
            reply.starts_with(b"HTTP/1.1 400 "),
            "reply to plain HTTP: {:?}",
            String::from_utf8_lossy(&reply)
        );

        let (outcomes, metrics) = server.await;
        let info = outcomes[0].as_ref().expect("the TLS client was accepted");
        assert_eq!(info.sni.as_deref(), Some(HOST));
        assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_3));
        assert!(info.cipher_suite.is_some());
        assert!(!info.resumed);
        assert!(!info.ktls);
        assert!(outcomes[1].is_none(), "plain HTTP is not accepted");
        let full: u64 = metrics.handshakes.iter().map(|h| h[0].get()).sum();
        let resumed: u64 = metrics.handshakes.iter().map(|h| h[1].get()).sum();
        assert_eq!((full, resumed), (1, 0), "handshakes counted");
        assert_eq!(metrics.handshake_failures_total(), 1);
        assert_eq!(
            metrics.handshake_failures[HandshakeFailure::PlainHttp as usize].get(),
            1
        );
    });
}
