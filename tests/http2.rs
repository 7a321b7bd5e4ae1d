//! HTTP/2 to clients: a Rust h2 client (the `h2` crate on a tokio test runtime) over an
//! `h2c = true` listener, curl over TLS (ALPN h2) and h2c. Bodies are hash-checked; a
//! rapid reset ends in GOAWAY and a counter while another connection is served (the
//! other floods: tests/h2_attacks.rs, over TLS with the Python `h2` package); a stream
//! that never reads holds the upstream in its window, not in the proxy.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::backend::{Backend, pattern};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::{HOST, h2_errors, sha256_hex};

/// A proxy with an h2c listener (plus the admin listener) in front of `upstream`;
/// `http2`: extra `[http2]` lines.
fn h2c_proxy(pki: &TestPki, upstream: SocketAddr, http2: &str) -> Proxy {
    Proxy::start(&h2c_config(upstream, http2), pki.dir())
}

/// The configuration [`h2c_proxy`] runs.
fn h2c_config(upstream: SocketAddr, http2: &str) -> String {
    let text = ConfigBuilder::new()
        .h2c_listener()
        .admin()
        .route(None, "/", false, "backend")
        .upstream("backend", &[upstream], &[])
        .build();
    format!("{text}\n[http2]\n{http2}\n")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime")
}

type Sender = h2::client::SendRequest<Bytes>;

/// An h2 client connection (prior knowledge) whose connection task runs on `rt`;
/// `stream_window`: the client's per-stream receive window.
async fn connect(addr: SocketAddr, stream_window: u32) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(stream_window)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake");
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    send
}

/// Sends `method path` with `body`, reads the whole response: status, headers, body.
async fn fetch(
    send: &Sender,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut send = send.clone().ready().await.expect("ready");
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{HOST}{path}"))
        .body(())
        .unwrap();
    let (resp, mut stream) = send.send_request(req, body.is_empty()).expect("send");
    if !body.is_empty() {
        // Sent as the window allows.
        let mut rest = Bytes::copy_from_slice(body);
        while !rest.is_empty() {
            stream.reserve_capacity(rest.len());
            let n = std::future::poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .expect("capacity")
                .expect("capacity ok");
            let part = rest.split_to(n.min(rest.len()));
            stream.send_data(part, rest.is_empty()).expect("send data");
        }
    }
    let resp = resp.await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut recv = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("body chunk");
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, headers, out)
}

/// GET and POST bodies from 0 B to 16 MiB, hash-checked, all on one connection.
#[test]
fn bodies_from_0_to_16_mib_cross_intact() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let proxy = h2c_proxy(&pki, backend.addr, "");
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let send = connect(addr, 65_535).await;
        for n in [0usize, 1, 16_383, 16_384, 65_537, 1 << 20, 16 << 20] {
            let (status, _, body) = fetch(&send, "GET", &format!("/bytes/{n}"), &[]).await;
            assert_eq!(status, 200, "GET {n}");
            assert_eq!(body.len(), n, "GET {n}");
            assert_eq!(
                sha256_hex(&body),
                sha256_hex(&pattern(n as u64, n)),
                "GET {n}"
            );
            let sent = pattern(n as u64 + 1, n);
            let (status, headers, body) = fetch(&send, "POST", "/echo", &sent).await;
            assert_eq!(status, 200, "POST {n}");
            let want = sha256_hex(&sent);
            assert_eq!(
                headers.get("x-body-sha256").unwrap(),
                want.as_str(),
                "POST {n}"
            );
            assert_eq!(sha256_hex(&body), want, "POST {n}");
        }
    });
}

/// A hundred streams at once on one connection, each answered whole.
#[test]
fn a_hundred_concurrent_streams_on_one_connection() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let proxy = h2c_proxy(&pki, backend.addr, "");
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let send = connect(addr, 65_535).await;
        let mut tasks = Vec::new();
        for i in 0..100usize {
            let send = send.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let n = 1000 + i * 997;
                let (status, _, body) = fetch(&send, "GET", &format!("/bytes/{n}"), &[]).await;
                (status, body.len() == n && body == pattern(n as u64, n))
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), (200, true));
        }
    });
}

/// Reads a request head byte by byte (nothing past it); `false`: the connection ended.
fn read_head(conn: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut b).unwrap_or(0) == 0 {
            return false;
        }
        head.push(b[0]);
    }
    true
}

/// An upstream that answers every request with `total` bytes (Content-Length) and
/// counts the bytes the proxy took from it.
fn counting_upstream(total: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let taken = Arc::new(AtomicU64::new(0));
    let t = taken.clone();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let t = t.clone();
            thread::spawn(move || {
                if !read_head(&mut conn) {
                    return;
                }
                let h = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                if conn.write_all(h.as_bytes()).is_err() {
                    return;
                }
                let block = vec![7u8; 64 * 1024];
                let mut left = total;
                while left > 0 {
                    let n = left.min(block.len() as u64) as usize;
                    match conn.write(&block[..n]) {
                        Ok(w) => {
                            t.fetch_add(w as u64, Ordering::SeqCst);
                            left -= w as u64;
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (addr, taken)
}

/// A stream whose client never reads holds the upstream's 64 MiB body in its window and
/// the sockets' buffers — the proxy takes at most a few MiB from the upstream — while
/// other streams on the same connection keep being served in full.
#[test]
fn a_stream_that_never_reads_neither_stalls_others_nor_fills_the_proxy() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let (big, taken) = counting_upstream(64 << 20);
    let text = ConfigBuilder::new()
        .h2c_listener()
        .route(None, "/big", false, "big")
        .route(None, "/", false, "backend")
        .upstream("big", &[big], &[])
        .upstream("backend", &[backend.addr], &[])
        .build();
    let proxy = Proxy::start(&text, pki.dir());
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let send = connect(addr, 65_535).await;
        let mut s = send.clone().ready().await.unwrap();
        let req = http::Request::get(format!("http://{HOST}/big"))
            .body(())
            .unwrap();
        let (resp, _) = s.send_request(req, true).unwrap();
        let resp = resp.await.expect("the big response's head");
        assert_eq!(resp.status(), 200);
        // The body is never read: its window (64 KiB) stays shut.
        let _held = resp.into_body();
        for round in 0..3 {
            for n in [1usize << 20, 100, 300_000] {
                let (status, _, body) = fetch(&send, "GET", &format!("/bytes/{n}"), &[]).await;
                assert_eq!((status, body.len()), (200, n), "round {round}");
                assert!(body == pattern(n as u64, n));
            }
            // Window (64 KiB) + the proxy's read (32 KiB) + loopback socket buffers
            // (a few MiB at most): far below the 64 MiB the upstream offers.
            let t = taken.load(Ordering::SeqCst);
            assert!(t < 16 << 20, "the proxy took {t} bytes from the upstream");
        }
    });
}

/// A well-behaved connection is still served.
fn still_serves(addr: SocketAddr) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let send = connect(addr, 65_535).await;
        let (status, _, body) = fetch(&send, "GET", "/bytes/5000", &[]).await;
        assert_eq!((status, body.len()), (200, 5000));
    });
}

/// Opens streams to `/slow` and resets each only after the backend saw its request (so
/// the proxy's exchange, not h2's pending-accept queue, holds it). Returns the reason the
/// connection ended with.
async fn reset_streams(addr: SocketAddr, backend: &Backend) -> Option<h2::Reason> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::task::spawn_local(conn);
    let mut send: Sender = send;
    let seen = backend.heads();
    for i in 0..50usize {
        let Ok(ready) = send.clone().ready().await else {
            break;
        };
        send = ready;
        let req = http::Request::get(format!("http://{HOST}/slow?ms=60000&i={i}"))
            .body(())
            .unwrap();
        let Ok((_resp, mut stream)) = send.send_request(req, false) else {
            break;
        };
        // A readiness wait (the client's connection task runs meanwhile).
        while backend.heads() < seen + i + 1 && !conn.is_finished() {
            tokio::task::yield_now().await;
        }
        stream.send_reset(h2::Reason::CANCEL);
    }
    conn.await.unwrap().err().and_then(|e| e.reason())
}

/// Rapid reset: streams the client resets after the proxy started their upstream work
/// count against `max_reset_streams_per_second`; beyond it, GOAWAY ENHANCE_YOUR_CALM
/// (`reset_flood`), and another connection is served. (Resets before the proxy took the
/// streams, h2's `max_pending_accept_reset_streams`, and the other floods are scripted
/// over TLS with the Python `h2` package: tests/h2_attacks.rs.)
#[test]
fn rapid_reset_ends_in_goaway_and_is_counted() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let proxy = h2c_proxy(&pki, backend.addr, "max_reset_streams_per_second = 5");
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    let reason = local.block_on(&runtime(), reset_streams(addr, &backend));
    assert_eq!(reason, Some(h2::Reason::ENHANCE_YOUR_CALM));
    assert_eq!(h2_errors(proxy.admin_addr(), "reset_flood"), 1);
    still_serves(addr);
}

/// curl with ALPN h2 over TLS and with prior knowledge over h2c.
#[test]
fn curl_over_tls_alpn_and_h2c() {
    let version = Command::new("curl").arg("--version").output();
    let Ok(version) = version else {
        panic!("curl is missing: install it (apt-get install curl; test.sh does)");
    };
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.contains("HTTP2"),
        "curl without HTTP/2 support: {version}"
    );
    let pki = TestPki::new();
    let backend = Backend::start();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let text = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .h2c_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    let proxy = Proxy::start(&text, pki.dir());
    let (tls, plain) = (proxy.addrs()[0], proxy.addrs()[1]);
    let body = pattern(300_000, 300_000);
    let curl = |args: &[String]| {
        let out = Command::new("curl").args(args).output().expect("run curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let tls_out = curl(&[
        "-sS".into(),
        "--http2".into(),
        "--cacert".into(),
        pki.root_pem_path().to_string_lossy().into_owned(),
        "--resolve".into(),
        format!("{HOST}:{}:127.0.0.1", tls.port()),
        "-w".into(),
        "\n%{http_version}".into(),
        format!("https://{HOST}:{}/bytes/300000", tls.port()),
    ]);
    let (got, version) = tls_out.split_at(tls_out.len() - 2);
    assert_eq!(version, b"\n2", "ALPN chose HTTP/2");
    assert_eq!(sha256_hex(got), sha256_hex(&body));
    let h2c_out = curl(&[
        "-sS".into(),
        "--http2-prior-knowledge".into(),
        "-w".into(),
        "\n%{http_version}".into(),
        format!("http://127.0.0.1:{}/bytes/300000", plain.port()),
    ]);
    let (got, version) = h2c_out.split_at(h2c_out.len() - 2);
    assert_eq!(version, b"\n2");
    assert_eq!(sha256_hex(got), sha256_hex(&body));
    // HTTP/1.1 still served on both.
    let h1 = curl(&[
        "-sS".into(),
        "--http1.1".into(),
        format!("http://127.0.0.1:{}/bytes/1000", plain.port()),
    ]);
    assert_eq!(h1, pattern(1000, 1000));
}

/// A stream whose client keeps its window shut longer than `send_timeout_ms` is reset
/// (CANCEL) and counted as `zero_window`; the connection goes on.
#[test]
fn a_window_held_shut_past_send_timeout_resets_the_stream() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let text = ConfigBuilder::new()
        .h2c_listener()
        .admin()
        .http("send_timeout_ms", 300)
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    let proxy = Proxy::start(&text, pki.dir());
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let send = connect(addr, 65_535).await;
        let mut s = send.clone().ready().await.unwrap();
        let req = http::Request::get(format!("http://{HOST}/bytes/1000000"))
            .body(())
            .unwrap();
        let (resp, _) = s.send_request(req, true).unwrap();
        let mut body = resp.await.expect("the head").into_body();
        // Read what the window let through, never release it: the window stays shut.
        let mut got = 0;
        let err = loop {
            match body.data().await {
                Some(Ok(chunk)) => got += chunk.len(),
                Some(Err(e)) => break e,
                None => panic!("the body ended whole with the window shut"),
            }
        };
        assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err}");
        assert!(got <= 65_535, "{got} bytes past a 64 KiB window");
        // The connection still serves.
        let (status, _, b) = fetch(&send, "GET", "/bytes/100", &[]).await;
        assert_eq!((status, b.len()), (200, 100));
    });
    assert_eq!(h2_errors(proxy.admin_addr(), "zero_window"), 1);
}

/// `max_requests_per_connection` streams, then GOAWAY: the connection ends in order
/// (the client sees its end without error) and a new one is served.
#[test]
fn max_requests_per_connection_then_goaway() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let proxy = h2c_proxy(&pki, backend.addr, "max_requests_per_connection = 3");
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::task::spawn_local(conn);
        for _ in 0..3 {
            let (status, _, b) = fetch(&send, "GET", "/bytes/10", &[]).await;
            assert_eq!((status, b.len()), (200, 10));
        }
        let ended = conn.await.unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    });
    still_serves(addr);
}

/// A reload that changes `[http2]` sends GOAWAY on a connection at its next stream (which
/// is served); one that leaves it alone does not; a new connection runs by the new
/// settings.
#[test]
fn a_reload_that_changes_http2_settings_ends_connections_in_order() {
    let pki = TestPki::new();
    let backend = Backend::start();
    // A long idle timeout: only the GOAWAY can end the connection within the guard.
    let text = |streams: u32| {
        h2c_config(
            backend.addr,
            &format!("max_concurrent_streams = {streams}\nidle_timeout_ms = 3600000"),
        )
    };
    let proxy = Proxy::start(&text(50), pki.dir());
    let addr = proxy.addr();
    let live = proxy.live().clone();
    let reload = move |streams: u32| {
        let config = ringgate::config::from_toml_str(&text(streams), "t.toml", Path::new("."))
            .expect("config");
        live.reload_with(config, "test").expect("reload");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::task::spawn_local(conn);
        let (status, _, _) = fetch(&send, "GET", "/bytes/10", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(send.current_max_send_streams(), 50);
        // The same settings: the connection goes on.
        reload(50);
        for _ in 0..2 {
            let (status, _, _) = fetch(&send, "GET", "/bytes/10", &[]).await;
            assert_eq!(status, 200);
        }
        assert!(!conn.is_finished());
        // Changed: the next stream is served, then the connection ends in order.
        reload(20);
        let (status, _, b) = fetch(&send, "GET", "/bytes/10", &[]).await;
        assert_eq!((status, b.len()), (200, 10));
        // A bound on a hang (no GOAWAY would hold the connection for the idle hour).
        let ended = tokio::time::timeout(Duration::from_secs(60), conn)
            .await
            .expect("the connection ends after the reload's GOAWAY")
            .unwrap();
        assert!(ended.is_ok(), "{ended:?}");
        let fresh = connect(addr, 65_535).await;
        let (status, _, _) = fetch(&fresh, "GET", "/bytes/10", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(fresh.current_max_send_streams(), 20);
    });
}

/// A connection without streams for `idle_timeout_ms` gets GOAWAY and ends in order.
#[test]
fn an_idle_connection_gets_goaway() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let proxy = h2c_proxy(&pki, backend.addr, "idle_timeout_ms = 200");
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::task::spawn_local(conn);
        let (status, _, _) = fetch(&send, "GET", "/bytes/10", &[]).await;
        assert_eq!(status, 200);
        let ended = conn.await.unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    });
}

/// An upstream that answers an upload early — a 413 with `Connection: close` right after
/// the head, then reads nothing more (the connection held open until `release` drops) —
/// has its answer reach the HTTP/2 client whole, while the client is still sending: the
/// stream ends with the response, then (RFC 9113 §8.1) a NO_ERROR reset stops the upload.
#[test]
fn an_early_answer_to_an_upload_reaches_the_h2_client() {
    let pki = TestPki::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = l.local_addr().unwrap();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        let Ok((mut conn, _)) = l.accept() else {
            return;
        };
        let _ = socket2::SockRef::from(&conn).set_recv_buffer_size(32 * 1024);
        if !read_head(&mut conn) {
            return;
        }
        let _ = conn.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n",
        );
        let _ = release.recv_timeout(Duration::from_secs(120));
    });
    let proxy = h2c_proxy(&pki, upstream, "");
    let addr = proxy.addr();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let send = connect(addr, 65_535).await;
        let mut ready = send.clone().ready().await.expect("ready");
        let req = http::Request::builder()
            .method("PUT")
            .uri(format!("http://{HOST}/upload"))
            .header("content-length", (64u64 << 20).to_string())
            .body(())
            .unwrap();
        let (resp, mut stream) = ready.send_request(req, false).expect("send");
        // The upload goes on in its own task until the proxy stops it.
        let uploading = tokio::task::spawn_local(async move {
            let mut rest = Bytes::from(pattern(5, 64 << 20));
            while !rest.is_empty() {
                stream.reserve_capacity(rest.len().min(1 << 20));
                match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(Ok(n)) => {
                        let part = rest.split_to(n.min(rest.len()));
                        if stream.send_data(part, rest.is_empty()).is_err() {
                            return rest.len();
                        }
                    }
                    _ => return rest.len(),
                }
            }
            0
        });
        let resp = resp.await.expect("the 413 arrives, not a reset");
        assert_eq!(resp.status().as_u16(), 413);
        let mut recv = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            out.extend_from_slice(&chunk.expect("the 413's body, not a reset"));
        }
        assert_eq!(out, b"too big\n");
        let unsent = uploading.await.expect("upload task");
        assert!(unsent > 0, "the upload was stopped before its end");
        // The connection still serves.
        drop(release_tx);
    });
}
