//! The exchange driven by a session that is not HTTP/1: an in-memory body source and a
//! sink that records what it is given. Real upstreams (std threads on 127.0.0.1:0)
//! answer over TCP. The HTTP/1 session on top is covered by the integration tests.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::mpsc;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::context::WorkerCtx;
use crate::message::{ClientInfo, Header, Request};

/// A session of no particular protocol.
#[derive(Default)]
struct Recorder {
    /// Body chunks still "on the wire".
    pending: VecDeque<&'static [u8]>,
    /// Received and not yet taken.
    buffered: Option<BytesMut>,
    begun: bool,
    head: Option<(ResponseHead, BodyLength)>,
    interim: Vec<u16>,
    data: Vec<u8>,
    /// Body bytes received before each flush or finish (0: the head sent alone).
    flushes: Vec<usize>,
    finished: bool,
    responded: Option<u16>,
    deadline: crate::clock::Deadline,
}

impl BodySource for Recorder {
    fn is_done(&self) -> bool {
        self.pending.is_empty() && self.buffered.is_none()
    }
    async fn begin(&mut self) -> Result<(), ProxyError> {
        self.begun = true;
        Ok(())
    }
    fn take(&mut self, mut each: impl FnMut(BytesMut)) -> Result<(), ProxyError> {
        if let Some(b) = self.buffered.take() {
            each(b);
        }
        Ok(())
    }
    async fn ready(&self) -> Result<(), ProxyError> {
        Ok(())
    }
    async fn receive(&mut self) -> Result<(), ProxyError> {
        if let Some(c) = self.pending.pop_front() {
            self.buffered = Some(BytesMut::from(c));
        }
        Ok(())
    }
}

impl ResponseSink for Recorder {
    async fn interim(&mut self, head: &ResponseHead) -> Result<(), ProxyError> {
        self.interim.push(head.status);
        Ok(())
    }
    fn start(&mut self, head: &ResponseHead, body: BodyLength) {
        self.head = Some((head.clone(), body));
    }
    fn data(&mut self, chunk: Bytes) {
        self.data.extend_from_slice(&chunk);
    }
    async fn flush(&mut self) -> Result<(), ProxyError> {
        self.flushes.push(self.data.len());
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), ProxyError> {
        // Sends what is buffered, like a flush.
        self.flushes.push(self.data.len());
        self.finished = true;
        Ok(())
    }
    fn raw_socket(&mut self) -> Option<&mut TcpStream> {
        None
    }
    fn deadline(&mut self) -> &mut crate::clock::Deadline {
        &mut self.deadline
    }
    async fn respond(&mut self, response: GatewayResponse, _: bool) -> Result<(), ProxyError> {
        self.responded = Some(response.status);
        Ok(())
    }
}

/// An upstream that reads one request (head, and a chunked body up to its last chunk
/// when it has one), sends it back on `seen` and answers `response`.
fn upstream(response: &'static [u8]) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let chunked = text[..end].contains("Transfer-Encoding: chunked");
            if n == 0 || !chunked || text[end + 4..].ends_with("0\r\n\r\n") {
                break;
            }
        }
        tx.send(got).unwrap();
        s.write_all(response).unwrap();
        // Hold the connection until the pool (or the test's end) closes it.
        let _ = s.read(&mut buf);
    });
    (addr, seen)
}

fn ctx(upstream: SocketAddr, prefix: &str) -> Rc<WorkerCtx> {
    WorkerCtx::for_test(&format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[[route]]\npath_prefix = \"{prefix}\"\n\
         upstream = \"a\"\n[upstream.a]\nservers = [\"{upstream}\"]\n"
    ))
}

fn request(method: &'static str, path: &'static str, body: BodyLength) -> Request {
    Request {
        method: Bytes::from_static(method.as_bytes()),
        scheme: "https",
        authority: Some(Bytes::from_static(b"api.test")),
        authority_sent: Some(Bytes::from_static(b"api.test")),
        path: Bytes::from_static(path.as_bytes()),
        headers: vec![Header {
            name: Bytes::from_static(b"Accept"),
            value: Bytes::from_static(b"*/*"),
        }],
        body,
        client: ClientInfo::new("198.51.100.7:4000".parse().unwrap(), "https"),
        tls: None,
        received: Instant::now(),
    }
}

/// Runs one exchange of `req` on the current generation, with `s` as the session.
fn serve(ctx: &WorkerCtx, req: Request, s: &mut Recorder) -> Outcome {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(async {
            let generation = ctx.live.load_full();
            exchange(ctx, &generation, req, s).await
        })
}

#[test]
fn an_exchange_reports_its_outcome_to_a_session_of_any_protocol() {
    let (addr, seen) = upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello");
    let ctx = ctx(addr, "/");
    let mut s = Recorder::default();
    let outcome = serve(&ctx, request("GET", "/a?b", BodyLength::None), &mut s);
    let sent = String::from_utf8(seen.recv().unwrap()).unwrap();
    assert!(sent.starts_with("GET /a?b HTTP/1.1\r\n"), "{sent}");
    assert!(sent.contains("\r\nHost: api.test\r\n"), "{sent}");
    assert!(
        sent.contains("\r\nX-Forwarded-For: 198.51.100.7\r\n"),
        "{sent}"
    );
    let (head, body) = s.head.as_ref().expect("a response head");
    assert_eq!((head.status, *body), (200, BodyLength::Known(5)));
    assert!(head.headers.iter().any(|h| h.name.as_ref() == b"X-Up"));
    assert_eq!(s.data, b"hello");
    assert!(s.finished && !s.begun && s.responded.is_none());
    assert_eq!(outcome.status, 200);
    assert_eq!((outcome.bytes_in, outcome.bytes_out), (0, 5));
    assert_eq!(outcome.route, Some(0));
    assert_eq!(outcome.upstream, Some(addr));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.next, Next::KeepAlive);
    let t = outcome.timings;
    let (connected, first) = (t.connected.unwrap(), t.first_byte.unwrap());
    assert!(t.received <= connected && connected <= first && first <= t.done);
}

#[test]
fn a_body_of_unknown_length_goes_chunked_and_a_chunked_response_comes_back_decoded() {
    let (addr, seen) = upstream(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n1\n!\n0\r\n\r\n",
    );
    let ctx = ctx(addr, "/");
    let mut s = Recorder {
        pending: VecDeque::from([&b"ab"[..], &b"cde"[..]]),
        ..Recorder::default()
    };
    let outcome = serve(&ctx, request("POST", "/up", BodyLength::Unknown), &mut s);
    let sent = String::from_utf8(seen.recv().unwrap()).unwrap();
    let (head, body) = sent.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nTransfer-Encoding: chunked"), "{head}");
    assert_eq!(body, "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n");
    assert!(s.begun, "the body was asked for");
    let (head, body) = s.head.as_ref().unwrap();
    assert_eq!((head.status, *body), (201, BodyLength::Unknown));
    assert_eq!(s.data, b"xyz!");
    assert_eq!(
        (outcome.status, outcome.bytes_in, outcome.bytes_out),
        (201, 5, 4)
    );
    assert_eq!(outcome.next, Next::KeepAlive);
}

#[test]
fn no_route_and_a_refused_upstream_are_answered_through_the_sink() {
    // Nothing listens on a port just closed.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ctx = ctx(closed, "/api/");
    let mut s = Recorder::default();
    let outcome = serve(&ctx, request("GET", "/other", BodyLength::None), &mut s);
    assert_eq!((s.responded, outcome.status), (Some(404), 404));
    assert_eq!((outcome.route, outcome.upstream), (None, None));
    // Answered by the route phase: recorded in the outcome and counted once.
    assert_eq!(outcome.rejected, Some(Rejection::NoRoute));
    assert_eq!(
        ctx.metrics.policy_rejections[Rejection::NoRoute.index()].get(),
        1
    );
    assert_eq!(
        outcome.next,
        Next::KeepAlive,
        "a 404 leaves the connection usable"
    );

    let mut s = Recorder::default();
    let outcome = serve(&ctx, request("GET", "/api/x", BodyLength::None), &mut s);
    assert_eq!((s.responded, outcome.status), (Some(502), 502));
    assert_eq!(outcome.error, Some(crate::error::Kind::ConnectFailed));
    assert_eq!(outcome.rejected, None, "an upstream failure is no policy's");
    assert_eq!(outcome.route, Some(0));
    assert!(s.head.is_none());
}

/// Bytes the kernel holds for the reader of the local socket `local` → `remote` (its
/// receive queue, from /proc/net/tcp), `None` when no such IPv4 socket exists.
fn receive_queue(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (l, r) = (hex(local), hex(remote));
    std::fs::read_to_string("/proc/net/tcp")
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&l.as_str()) && f.get(2) == Some(&r.as_str()))
                .then(|| u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok())
                .flatten()
        })
}

#[test]
fn a_small_bodys_head_waits_for_the_body_when_the_upstream_sends_them_apart() {
    // Like nginx with sendfile: the head in one write, the body in another, and here the
    // body only once the proxy has read the head (its receive queue is empty again).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, proxy_side) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed before sending its request");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        // Wait (on the kernel's state, not on time) until the proxy has read the head.
        while receive_queue(proxy_side, addr) != Some(0) {
            std::thread::yield_now();
        }
        s.write_all(b"hello").unwrap();
        let _ = s.read(&mut buf);
    });
    let ctx = ctx(addr, "/");
    let mut s = Recorder::default();
    let outcome = serve(&ctx, request("GET", "/", BodyLength::None), &mut s);
    assert_eq!((outcome.status, s.data.as_slice()), (200, &b"hello"[..]));
    assert_eq!(
        s.flushes.first(),
        Some(&5),
        "the head went out alone (body bytes at each flush: {:?})",
        s.flushes
    );
}
