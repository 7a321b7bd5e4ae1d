//! `protocol = "h2"` upstreams (issue 23, gRPC): an in-process h2c server (the `h2`
//! crate's server on a tokio runtime in a test thread) behind the real `ringgate run`,
//! reached by HTTP/1.1 clients — curl for bodies, a raw socket where the exact bytes
//! matter (trailers) or many requests must be in flight at once.
//!
//! The upstream counts its connections and the most streams ever open at once on one
//! of them, so the pool's bounds are checked where they matter: on the wire.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::backend::{pattern, refusing_addr};
use common::proxy::{ConfigBuilder, ProxyProcess};
use common::python::GrpcioService;
use common::sha256_hex;

/// What the test upstream saw.
#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    /// The most streams open at once on one connection.
    max_open: AtomicUsize,
    /// `/hold` streams arrived (they are answered once `hold_target` arrived).
    held: AtomicUsize,
    /// `/stall` streams the client (the proxy) reset.
    stall_reset: AtomicUsize,
    /// Says when a `/park` stream arrived; `/park` answers once `/unpark` came.
    parked: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    unpark: tokio::sync::Notify,
    /// Told each time a connection ends (the proxy closed it).
    closed: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

struct Upstream {
    addr: SocketAddr,
    counts: Arc<Counts>,
}

/// Starts the h2c upstream; `/hold` streams wait until `hold_target` of them arrived.
fn upstream(hold_target: usize) -> Upstream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    std::thread::Builder::new()
        .name("h2-upstream".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(serve(listener, c, hold_target));
        })
        .expect("spawn upstream");
    Upstream { addr, counts }
}

async fn serve(listener: std::net::TcpListener, counts: Arc<Counts>, hold_target: usize) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let gate = Arc::new(tokio::sync::Notify::new());
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        counts.connections.fetch_add(1, Ordering::SeqCst);
        let (counts, gate) = (counts.clone(), gate.clone());
        tokio::spawn(async move {
            let mut conn = match h2::server::Builder::new()
                .max_concurrent_streams(1000)
                .handshake::<_, Bytes>(tcp)
                .await
            {
                Ok(c) => c,
                Err(_) => return,
            };
            let open = Arc::new(AtomicUsize::new(0));
            let goaway = Arc::new(tokio::sync::Notify::new());
            let mut going = false;
            loop {
                let next = tokio::select! {
                    n = conn.accept() => n,
                    _ = goaway.notified(), if !going => {
                        going = true;
                        conn.graceful_shutdown();
                        continue;
                    }
                };
                let Some(Ok((req, respond))) = next else {
                    if let Some(tx) = counts.closed.lock().expect("closed lock").as_ref() {
                        let _ = tx.send(());
                    }
                    return;
                };
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                counts.max_open.fetch_max(now, Ordering::SeqCst);
                let (open, counts, gate, goaway) =
                    (open.clone(), counts.clone(), gate.clone(), goaway.clone());
                tokio::spawn(async move {
                    handle(req, respond, &counts, &gate, hold_target, &goaway).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
}

/// Sends `data` as the stream's window allows.
async fn send_all(send: &mut h2::SendStream<Bytes>, mut data: Bytes, end: bool) {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let Some(Ok(n)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else {
            return;
        };
        let chunk = data.split_to(n.min(data.len()));
        if send.send_data(chunk, end && data.is_empty()).is_err() {
            return;
        }
    }
    if end && data.is_empty() {
        let _ = send.send_data(Bytes::new(), true);
    }
}

async fn read_body(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(Ok(d)) = body.data().await {
        let _ = body.flow_control().release_capacity(d.len());
        all.extend_from_slice(&d);
    }
    all
}

async fn handle(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    counts: &Counts,
    gate: &tokio::sync::Notify,
    hold_target: usize,
    goaway: &tokio::sync::Notify,
) {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let te = req
        .headers()
        .get("te")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let authority = req.uri().authority().map(|a| a.to_string());
    let (_, mut body) = req.into_parts();
    let ok = |ct: &str| {
        http::Response::builder()
            .status(200)
            .header("content-type", ct)
            .body(())
            .expect("response")
    };
    match path.as_str() {
        "/echo" => {
            let got = read_body(&mut body).await;
            let mut send = respond
                .send_response(ok("application/octet-stream"), false)
                .expect("respond");
            send_all(&mut send, Bytes::from(got), true).await;
        }
        "/gen" => {
            read_body(&mut body).await;
            let len: usize = query.get("len").and_then(|l| l.parse().ok()).unwrap_or(0);
            let mut send = respond
                .send_response(ok("application/octet-stream"), false)
                .expect("respond");
            send_all(&mut send, Bytes::from(pattern(3, len)), true).await;
        }
        "/grpc" => {
            read_body(&mut body).await;
            let mut send = respond
                .send_response(ok("application/grpc"), false)
                .expect("respond");
            // What the upstream saw, for the test to check: te and :authority.
            let seen = format!(
                "te={};authority={}",
                te.unwrap_or_default(),
                authority.unwrap_or_default()
            );
            send_all(&mut send, Bytes::from(seen), false).await;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            trailers.insert("grpc-message", http::HeaderValue::from_static("fine"));
            let _ = send.send_trailers(trailers);
        }
        "/hold" => {
            read_body(&mut body).await;
            let arrived = counts.held.fetch_add(1, Ordering::SeqCst) + 1;
            if arrived >= hold_target {
                gate.notify_waiters();
            } else {
                // A bound, not a synchronisation: a proxy that never lets `hold_target`
                // streams through fails the counts below instead of hanging the test.
                let _ = tokio::time::timeout(Duration::from_secs(30), gate.notified()).await;
                gate.notify_waiters();
            }
            let mut send = respond
                .send_response(ok("text/plain"), false)
                .expect("respond");
            send_all(&mut send, Bytes::from_static(b"held"), true).await;
        }
        "/stall" => {
            // Never answers; notes when the proxy gives up on the stream.
            let r = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
            if r.is_ok() {
                counts.stall_reset.fetch_add(1, Ordering::SeqCst);
            }
        }
        "/park" => {
            if let Some(tx) = counts.parked.lock().expect("parked lock").as_ref() {
                let _ = tx.send(());
            }
            // Bounded, like `/hold`: a missing `/unpark` fails the test, never hangs it.
            let _ = tokio::time::timeout(Duration::from_secs(30), counts.unpark.notified()).await;
            let mut send = respond
                .send_response(ok("text/plain"), false)
                .expect("respond");
            send_all(&mut send, Bytes::from_static(b"parked"), true).await;
        }
        "/unpark" => {
            counts.unpark.notify_waiters();
            let mut send = respond
                .send_response(ok("text/plain"), false)
                .expect("respond");
            send_all(&mut send, Bytes::from_static(b"unparked"), true).await;
        }
        "/goaway" => {
            let mut send = respond
                .send_response(ok("text/plain"), false)
                .expect("respond");
            send_all(&mut send, Bytes::from_static(b"bye"), true).await;
            goaway.notify_one();
        }
        _ => {
            let resp = http::Response::builder().status(404).body(()).expect("404");
            let _ = respond.send_response(resp, true);
        }
    }
}

/// `ringgate run` with a plain listener routing `/` to the h2 upstream at `server`.
fn proxy(dir: &Path, server: SocketAddr, extra: &[(&str, &str)]) -> ProxyProcess {
    proxy_with(dir, server, extra, 2)
}

/// [`proxy`] with `workers` workers.
fn proxy_with(
    dir: &Path,
    server: SocketAddr,
    extra: &[(&str, &str)],
    workers: usize,
) -> ProxyProcess {
    let mut settings = vec![("protocol", "\"h2\"")];
    settings.extend_from_slice(extra);
    if !extra.iter().any(|(k, _)| *k == "read_timeout_ms") {
        settings.push(("read_timeout_ms", "10000"));
    }
    let toml = ConfigBuilder::new()
        .server("workers", &workers.to_string())
        .plain_listener()
        .route(None, "/", false, "grpc")
        .upstream("grpc", &[server], &settings)
        .build();
    let path = dir.join("ringgate.toml");
    std::fs::write(&path, toml).expect("write config");
    ProxyProcess::spawn(&path, 1)
}

fn curl() -> Command {
    let version = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
    assert!(version.status.success(), "curl --version failed");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--max-time", "60"]);
    cmd
}

/// One HTTP/1.1 request on a new connection (closed after it); the whole response.
fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

#[test]
fn bodies_up_to_16_mib_both_ways_are_hash_checked() {
    let up = upstream(usize::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = proxy(dir.path(), up.addr, &[]);
    let base = format!("http://{}", p.addrs()[0]);
    for len in [0usize, 1, 16 * 1024, 300 * 1024, 16 << 20] {
        let body = pattern(len as u64, len);
        let input = dir.path().join("in.bin");
        let output = dir.path().join("out.bin");
        std::fs::write(&input, &body).expect("write body");
        let out = curl()
            .arg("--data-binary")
            .arg(format!("@{}", input.display()))
            .arg("-o")
            .arg(&output)
            .args(["-w", "%{http_code}"])
            .arg(format!("{base}/echo"))
            .output()
            .expect("run curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "POST {len}: {out:?}"
        );
        let echoed = std::fs::read(&output).unwrap_or_default();
        assert_eq!(echoed.len(), len, "POST {len}: echoed length");
        assert_eq!(
            sha256_hex(&echoed),
            sha256_hex(&body),
            "POST {len}: echoed bytes"
        );

        let out = curl()
            .arg("-o")
            .arg(&output)
            .args(["-w", "%{http_code}"])
            .arg(format!("{base}/gen?len={len}"))
            .output()
            .expect("run curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "GET {len}: {out:?}"
        );
        let got = std::fs::read(&output).unwrap_or_default();
        assert_eq!(got.len(), len, "GET {len}: length");
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(&pattern(3, len)),
            "GET {len}: bytes"
        );
    }
}

#[test]
fn trailers_reach_a_client_that_asked_for_them_and_no_other() {
    let up = upstream(usize::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = proxy(dir.path(), up.addr, &[]);
    let addr = p.addrs()[0];
    let with = raw(
        addr,
        "POST /grpc HTTP/1.1\r\nHost: app.test:8080\r\nTE: trailers\r\n\
         Content-Type: application/grpc\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(status(&with), "200", "{with}");
    assert!(with.contains("Transfer-Encoding: chunked\r\n"), "{with}");
    // The upstream saw `te: trailers` and the client's authority.
    assert!(
        with.contains("te=trailers;authority=app.test:8080"),
        "{with}"
    );
    assert!(
        with.ends_with("\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"),
        "trailers after the last chunk: {with:?}"
    );
    let without = raw(
        addr,
        "POST /grpc HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(status(&without), "200", "{without}");
    assert!(without.ends_with("\r\n0\r\n\r\n"), "{without:?}");
    assert!(!without.contains("grpc-status"), "{without}");
}

#[test]
fn two_hundred_concurrent_requests_spread_over_connections_of_ten_streams() {
    const N: usize = 200;
    let up = upstream(N);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = proxy(dir.path(), up.addr, &[("max_concurrent_streams", "10")]);
    let addr = p.addrs()[0];
    let clients: Vec<_> = (0..N)
        .map(|_| {
            std::thread::spawn(move || {
                raw(
                    addr,
                    "GET /hold HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
                )
            })
        })
        .collect();
    for c in clients {
        let r = c.join().expect("client thread");
        assert_eq!(status(&r), "200", "{r}");
        assert!(r.contains("\r\nheld\r\n"), "{r}");
    }
    let conns = up.counts.connections.load(Ordering::SeqCst);
    let max_open = up.counts.max_open.load(Ordering::SeqCst);
    eprintln!("{conns} upstream connections, at most {max_open} streams open on one");
    assert!(
        conns >= N / 10,
        "{conns} connections for {N} streams at 10 each"
    );
    assert!(
        max_open <= 10,
        "{max_open} streams open at once on one connection"
    );
    assert_eq!(up.counts.held.load(Ordering::SeqCst), N);
}

#[test]
fn after_a_goaway_requests_go_on_a_new_connection_while_the_old_finishes_its_streams() {
    let up = upstream(usize::MAX);
    let (tx, parked) = std::sync::mpsc::channel();
    *up.counts.parked.lock().expect("parked lock") = Some(tx);
    let dir = tempfile::tempdir().expect("tempdir");
    // One worker: every request shares one pool.
    let p = proxy_with(dir.path(), up.addr, &[], 1);
    let addr = p.addrs()[0];
    let get = move |path: &str| {
        raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"),
        )
    };
    // A stream in flight on the first connection when its GOAWAY comes.
    let in_flight = std::thread::spawn(move || get("/park"));
    parked
        .recv_timeout(Duration::from_secs(30))
        .expect("the /park stream reached the upstream");
    let r = get("/goaway");
    assert_eq!(status(&r), "200", "{r}");
    for i in 0..20 {
        let r = get("/gen?len=100");
        assert_eq!(status(&r), "200", "request {i} after the GOAWAY: {r}");
    }
    let conns = up.counts.connections.load(Ordering::SeqCst);
    assert!(conns >= 2, "a new connection after the GOAWAY: {conns}");
    // The stream in flight finishes on the old connection.
    let r = get("/unpark");
    assert_eq!(status(&r), "200", "{r}");
    let r = in_flight.join().expect("in-flight client");
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("\r\nparked\r\n"), "{r}");
}

#[test]
fn an_idle_connection_is_closed_after_keepalive_timeout() {
    let up = upstream(usize::MAX);
    let (tx, closed) = std::sync::mpsc::channel();
    *up.counts.closed.lock().expect("closed lock") = Some(tx);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = proxy_with(dir.path(), up.addr, &[("keepalive_timeout_ms", "200")], 1);
    let r = raw(
        p.addrs()[0],
        "GET /gen?len=10 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), "200", "{r}");
    // Waited on, not slept for: the upstream says when the proxy closed it.
    closed
        .recv_timeout(Duration::from_secs(30))
        .expect("the idle upstream connection was closed");
    assert_eq!(up.counts.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn upstream_down_is_502_for_http_and_unavailable_for_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = proxy(dir.path(), refusing_addr(), &[]);
    let addr = p.addrs()[0];
    let plain = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&plain), "502", "{plain}");
    let grpc = raw(
        addr,
        "POST /pkg.Svc/Call HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/grpc\r\n\
         TE: trailers\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&grpc), "200", "{grpc}");
    assert!(
        grpc.contains("content-type: application/grpc\r\n"),
        "{grpc}"
    );
    assert!(grpc.contains("grpc-status: 14\r\n"), "UNAVAILABLE: {grpc}");
    assert!(grpc.contains("grpc-message: "), "{grpc}");
}

#[test]
fn grpc_timeout_with_a_stalled_upstream_is_deadline_exceeded() {
    let up = upstream(usize::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    // The read timeout is far longer than the request's own deadline.
    let p = proxy(dir.path(), up.addr, &[("read_timeout_ms", "60000")]);
    let r = raw(
        p.addrs()[0],
        "POST /stall HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/grpc+proto\r\n\
         grpc-timeout: 100m\r\nTE: trailers\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("grpc-status: 4\r\n"), "DEADLINE_EXCEEDED: {r}");
}

/// A gRPC call over HTTP/1.1 through the proxy: `message` in one length-prefixed frame.
fn grpc_call(addr: SocketAddr, method: &str, message: &[u8], extra: &str) -> String {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST /ringgate.test.Echo/{method} HTTP/1.1\r\nHost: app.test\r\n\
         Content-Type: application/grpc\r\nTE: trailers\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send head");
    s.write_all(&body).expect("send body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_grpcio_service_answers_http1_clients_with_its_statuses_and_trailers() {
    let service = GrpcioService::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = proxy(dir.path(), service.addr, &[]);
    let addr = p.addrs()[0];
    // Unary: the message echoed in one frame, then the status as trailers.
    let r = grpc_call(addr, "Unary", b"hello", "");
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("\r\na\r\n\0\0\0\0\x05hello\r\n"), "{r:?}");
    assert!(r.contains("\r\n0\r\ngrpc-status: 0\r\n"), "{r:?}");
    // Server streaming: three frames, then the status.
    let r = grpc_call(addr, "ServerStream", &[3], "");
    assert_eq!(r.matches("6\r\n\0\0\0\0\x01\x03\r\n").count(), 3, "{r:?}");
    assert!(r.contains("\r\n0\r\ngrpc-status: 0\r\n"), "{r:?}");
    // The service's own error status (trailers-only) is relayed as it is.
    let r = grpc_call(addr, "Fail", &[9], "");
    assert_eq!(status(&r), "200", "{r}");
    assert!(
        r.contains("grpc-status: 9\r\n"),
        "FAILED_PRECONDITION: {r:?}"
    );
    assert!(r.contains("grpc-message: failed\r\n"), "{r:?}");
    // A deadline shorter than the service takes: DEADLINE_EXCEEDED from the proxy.
    let r = grpc_call(addr, "Sleep", &[50], "grpc-timeout: 100m\r\n");
    assert!(r.contains("grpc-status: 4\r\n"), "DEADLINE_EXCEEDED: {r:?}");
}

#[test]
fn policy_answers_to_grpc_requests_are_grpc_statuses() {
    let up = upstream(usize::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    // One worker: the limit's one admitted request and the refused one meet.
    let toml = format!(
        "[server]\nworkers = 1\npin_workers = false\n\n[[listener]]\naddr = \"127.0.0.1:0\"\n\n\
         [rate_limit.per_client]\nkey = \"client_ip\"\nrate = \"1r/m\"\nstatus = 429\n\n\
         [[route]]\nhost = \"grpc.test\"\npath_prefix = \"/\"\nupstream = \"grpc\"\n\
         rate_limit = [\"per_client\"]\n\n\
         [upstream.grpc]\nservers = [\"{}\"]\nprotocol = \"h2\"\n",
        up.addr
    );
    let path = dir.path().join("ringgate.toml");
    std::fs::write(&path, toml).expect("write config");
    let p = ProxyProcess::spawn(&path, 1);
    let call = |host: &str| {
        raw(
            p.addrs()[0],
            &format!(
                "POST /pkg.Svc/Call HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/grpc\r\n\
                 TE: trailers\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    // No route: UNIMPLEMENTED, not a 404 page.
    let r = call("other.test");
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("grpc-status: 12\r\n"), "UNIMPLEMENTED: {r}");
    // The limit admits one (the upstream answers 404 for this path: relayed as it is),
    // then refuses: RESOURCE_EXHAUSTED, its Retry-After kept.
    let r = call("grpc.test");
    assert_eq!(status(&r), "404", "{r}");
    let r = call("grpc.test");
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("grpc-status: 8\r\n"), "RESOURCE_EXHAUSTED: {r}");
    assert!(r.to_ascii_lowercase().contains("\r\nretry-after: "), "{r}");
}

/// HTTP/2 end to end: an h2 client (prior knowledge, an `h2c = true` listener) to an h2
/// upstream; the upstream's trailers (`grpc-status`, `grpc-message`) reach the client as
/// HTTP/2 trailers after the body.
#[test]
fn trailers_cross_from_an_h2_upstream_to_an_h2_client() {
    let up = upstream(usize::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = ConfigBuilder::new()
        .server("workers", "1")
        .h2c_listener()
        .route(None, "/", false, "grpc")
        .upstream("grpc", &[up.addr], &[("protocol", "\"h2\"")])
        .build();
    let path = dir.path().join("ringgate.toml");
    std::fs::write(&path, toml).expect("write config");
    let p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let (status, body, trailers) = local.block_on(&rt, async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        let mut send = send.ready().await.expect("ready");
        let request = http::Request::builder()
            .method("POST")
            .uri("http://app.test/grpc")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, mut out) = send.send_request(request, false).expect("send");
        out.send_data(Bytes::from_static(b"hello"), true)
            .expect("body");
        let response = tokio::time::timeout(Duration::from_secs(30), response)
            .await
            .expect("a response within 30 s")
            .expect("response");
        let status = response.status().as_u16();
        let mut recv = response.into_body();
        let body = read_body(&mut recv).await;
        let trailers = recv.trailers().await.expect("trailers");
        (status, body, trailers)
    });
    assert_eq!(status, 200);
    assert_eq!(body, b"te=trailers;authority=app.test");
    let trailers = trailers.expect("the upstream's trailers reach the client");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(
        trailers.get("grpc-message").map(|v| v.as_bytes()),
        Some(&b"fine"[..])
    );
}
