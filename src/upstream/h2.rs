//! ⑧ The upstream side of an exchange spoken as HTTP/2 (`protocol = "h2"` on an
//! `[upstream.NAME]`: gRPC and other h2c servers): per-worker pools of multiplexed client
//! connections, and the conversions between the exchange's protocol-neutral parts
//! ([`crate::message`]) and HTTP/2 messages. [`super::h1`] is the other wire; the
//! exchange picks one by the upstream's `protocol` (`crate::proxy`'s one dispatch point)
//! and moves the bytes itself; this module never sees a client.
//!
//! **Library.** hyperium's `h2` (≥ 0.4.21, with its reset, CONTINUATION and empty-DATA
//! budgets) as a client over [`super::h2_io::H2Io`]: tokio's `AsyncRead`/`AsyncWrite`
//! traits over monoio's io_uring reads and writes, with a buffer and a write queue of
//! its own — no tokio runtime runs on the worker. (monoio's `poll-io` bridge,
//! `TcpStream::into_poll_io`, works too, but the feature costs every worker loop turn an
//! epoll poller check, HTTP/1.1 connections included; see `h2_io`.)
//! Each connection's [`::h2::client::Connection`] future, which reads frames, writes
//! the send queue and keeps flow control, is driven by one monoio local task
//! ([`monoio::spawn`]) per connection. h2 wakes that task through the waker it last
//! polled with (kept in its stream store) whenever a [`SendRequest`], send or receive
//! handle queues work, and the adapter's io_uring operations wake it when they
//! complete: everything stays on the worker's thread.
//! The task ends when the connection does (an I/O error, a GOAWAY once in-flight
//! streams are done, or every handle dropped: h2 then sends its own GOAWAY).
//!
//! **Pool.** Per (upstream name, server address) slot — the same slots as the HTTP/1.1
//! pools ([`super::Upstreams`]) — a list of connections. A stream goes on the first live
//! connection with room: its open streams below both `max_concurrent_streams` (the
//! upstream's config, default 100) and the server's SETTINGS_MAX_CONCURRENT_STREAMS;
//! none has room → a new connection. A connection whose server sent GOAWAY (h2 then
//! refuses new streams on it) or whose task ended takes no new stream; the streams in
//! flight on it finish there. One idle (no open stream) longer than the upstream's
//! `keepalive_timeout_ms` is dropped by the sweep. Several streams arriving together
//! while no connection has room may each open one (no waiting list): more connections
//! than the bound needs, never fewer, and the idle ones go at the next sweeps.
//!
//! **Connect** ([`Connector`]): plain TCP (h2c, prior knowledge), or with
//! `[upstream.NAME.tls]` rustls (tokio-rustls over the same adapter) with ALPN `h2`:
//! the certificate verified against `ca` (or the system's anchors) and the server's TLS
//! name; a failed handshake or no `h2` → [`Kind::ConnectFailed`] (502). Connect refused/unreachable →
//! [`Kind::ConnectFailed`] (502), over `connect_timeout_ms` → [`Kind::ConnectTimeout`]
//! (504), like HTTP/1.1. Stream errors map in [`stream_error`]: an I/O error, a reset or
//! GOAWAY is [`Kind::UpstreamClosed`] (502; retryable when the server said it never
//! processed the stream: REFUSED_STREAM, or a GOAWAY below its id), a protocol violation
//! [`Kind::UpstreamProtocol`] (502), a request h2 refuses to encode
//! [`Side::Internal`] (500).
//!
//! **Flow control.** Each stream's receive window is [`STREAM_WINDOW`] bytes: the exchange
//! releases capacity only after the bytes went to the client, so a slow client holds at
//! most one window per stream in the proxy. Request DATA is sent only as the stream's
//! send window allows (`reserve_capacity` / `poll_capacity` in the exchange).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::h2::client::SendRequest;
use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::ActiveToken;
use crate::config::{ForwardHeaders, UpstreamConfig};
use crate::error::{Kind, ProxyError, Side};
use crate::message::{BodyLength, Header, Request, ResponseHead};

/// A stream's receive window (and the initial send window the server is asked for):
/// 256 KiB keeps a 1 Gbit/s stream at 1 ms RTT busy while bounding what one slow client
/// can leave buffered in the proxy.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window: room for a few streams at full window at once.
const CONNECTION_WINDOW: u32 = 4 * STREAM_WINDOW;

/// How a new connection to a server is opened: the byte stream an HTTP/2 client runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Connector {
    /// Plain TCP, HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3).
    PlainH2c,
    /// TLS (rustls) with ALPN `h2` (`[upstream.NAME.tls]`).
    Tls,
}

/// One pooled HTTP/2 connection.
struct Conn {
    send: SendRequest<Bytes>,
    /// Streams of this worker's exchanges open on it now.
    open: Cell<usize>,
    /// Takes no new stream: the driver ended or the server sent GOAWAY.
    dead: Rc<Cell<bool>>,
    /// When its last stream ended (meaningful while `open` is 0).
    idle_since: Cell<Instant>,
}

impl Conn {
    /// Room for one more stream: live, under our bound and the server's.
    fn has_room(&self, cap: usize) -> bool {
        if self.dead.get() {
            return false;
        }
        let bound = cap.min(self.send.current_max_send_streams());
        if self.open.get() >= bound {
            return false;
        }
        // h2 refuses new streams after a GOAWAY or a connection error: ask without
        // waiting (a fresh clone holds no pending stream, so this only checks that).
        let mut probe = self.send.clone();
        let mut cx = Context::from_waker(Waker::noop());
        match probe.poll_ready(&mut cx) {
            Poll::Ready(Err(_)) => {
                self.dead.set(true);
                false
            }
            _ => true,
        }
    }
}

/// The HTTP/2 connections of one pool slot.
#[derive(Default)]
struct Pool {
    key: Option<super::PoolKey>,
    conns: Vec<Rc<Conn>>,
}

/// Every HTTP/2 pool of one worker, by pool slot.
#[derive(Default)]
pub struct Pools {
    slots: RefCell<Vec<Pool>>,
}

/// One stream's hold on its connection: counted as open until dropped.
pub struct Stream {
    conn: Rc<Conn>,
    _token: ActiveToken,
    /// The connection was opened for this stream (not shared yet).
    pub fresh: bool,
    pub server: SocketAddr,
}

impl Stream {
    /// A handle to open the stream with.
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.conn.send.clone()
    }

    /// The connection failed or is going away: it takes no new stream.
    pub fn retire(&self) {
        self.conn.dead.set(true);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let open = self.conn.open.get() - 1;
        self.conn.open.set(open);
        if open == 0 {
            self.conn.idle_since.set(crate::clock::now());
        }
    }
}

const CONNECT_FAILED: ProxyError =
    ProxyError::new(Side::Upstream, Kind::ConnectFailed, "connect failed");
const CONNECT_TIMED_OUT: ProxyError =
    ProxyError::new(Side::Upstream, Kind::ConnectTimeout, "connect timed out");
const HANDSHAKE_FAILED: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::ConnectFailed,
    "HTTP/2 handshake with the upstream failed",
);

impl Pools {
    /// A stream slot on a connection of pool `slot` (server `key`), opening a connection
    /// when none has room. `token` counts the stream as active on its server.
    pub(super) async fn stream(
        &self,
        slot: usize,
        key: super::PoolKey,
        cfg: &UpstreamConfig,
        token: ActiveToken,
        metrics: &crate::observe::Local,
    ) -> Result<Stream, ProxyError> {
        let addr = key.1;
        let cap = cfg.max_concurrent_streams;
        {
            let mut slots = self.slots.borrow_mut();
            if slots.len() <= slot {
                slots.resize_with(slot + 1, Pool::default);
            }
            let pool = &mut slots[slot];
            if pool.key != Some(key) {
                // The slot went to another server: its connections close when unused.
                *pool = Pool {
                    key: Some(key),
                    conns: Vec::new(),
                };
            }
            pool.conns.retain(|c| !c.dead.get() || c.open.get() > 0);
            if let Some(c) = pool.conns.iter().find(|c| c.has_room(cap)) {
                c.open.set(c.open.get() + 1);
                metrics.upstream_reused.inc();
                return Ok(Stream {
                    conn: c.clone(),
                    _token: token,
                    fresh: false,
                    server: addr,
                });
            }
        }
        let connector = if cfg.tls.is_some() {
            Connector::Tls
        } else {
            Connector::PlainH2c
        };
        let send = connect(connector, addr, cfg).await?;
        metrics.upstream_opened.inc();
        let conn = Rc::new(Conn {
            send: send.0,
            open: Cell::new(1),
            dead: send.1,
            idle_since: Cell::new(crate::clock::now()),
        });
        let mut slots = self.slots.borrow_mut();
        if let Some(pool) = slots.get_mut(slot)
            && pool.key == Some(key)
        {
            pool.conns.push(conn.clone());
        }
        Ok(Stream {
            conn,
            _token: token,
            fresh: true,
            server: addr,
        })
    }

    /// Drops connections idle longer than their upstream's keepalive timeout, dead ones,
    /// and every connection of a slot whose server `keep` no longer names.
    pub(super) fn sweep(&self, now: Instant, keep: &[Option<(super::PoolKey, Duration)>]) {
        let mut slots = self.slots.borrow_mut();
        for (i, pool) in slots.iter_mut().enumerate() {
            match keep.get(i).copied().flatten() {
                Some((key, t)) if pool.key == Some(key) => pool.conns.retain(|c| {
                    c.open.get() > 0
                        || (!c.dead.get() && now.duration_since(c.idle_since.get()) < t)
                }),
                // Streams in flight keep their connection (they hold it); the pool lets go.
                _ => pool.conns.clear(),
            }
        }
    }

    /// Lets go of every connection (shutdown): each closes once its streams are done.
    pub(super) fn close_idle(&self) {
        self.slots.borrow_mut().clear();
    }
}

/// Opens a connection to `addr` (TLS with ALPN `h2` when the upstream has
/// `[upstream.NAME.tls]`) and starts its driver task. Returns the handle to open
/// streams with and the flag the driver raises when the connection ends.
async fn connect(
    connector: Connector,
    addr: SocketAddr,
    cfg: &UpstreamConfig,
) -> Result<(SendRequest<Bytes>, Rc<Cell<bool>>), ProxyError> {
    // Boxed: a connect (and its timer) is not what every stream's future should carry.
    let tcp = Box::pin(monoio::time::timeout(
        cfg.connect_timeout,
        TcpStream::connect_addr(addr),
    ));
    let tcp =
        ProxyError::timed(tcp.await, CONNECT_FAILED, CONNECT_TIMED_OUT).map_err(|e| e.at(addr))?;
    let _ = tcp.set_nodelay(true);
    let io = super::h2_io::H2Io::new(tcp);
    match connector {
        Connector::PlainH2c => handshake(io, addr, cfg).await,
        Connector::Tls => {
            let tls = tls_connect(io, addr, cfg).await?;
            handshake(tls, addr, cfg).await
        }
    }
}

/// The TLS handshake over `io`: the server's certificate verified against the
/// upstream's trust anchors and its TLS name, ALPN `h2` required. A failure (the
/// certificate, the name, no `h2`) → [`Kind::ConnectFailed`] (502) with rustls' reason.
async fn tls_connect(
    io: super::h2_io::H2Io,
    addr: SocketAddr,
    cfg: &UpstreamConfig,
) -> Result<tokio_rustls::client::TlsStream<super::h2_io::H2Io>, ProxyError> {
    let name = cfg
        .servers
        .iter()
        .find(|s| s.addr == addr)
        .and_then(|s| s.tls_name.clone());
    let (Some(tls), Some(name)) = (cfg.tls.as_ref(), name) else {
        return Err(NO_TLS_NAME.at(addr));
    };
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let shake = Box::pin(monoio::time::timeout(
        cfg.connect_timeout,
        connector.connect(name, io),
    ));
    let stream = match shake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %addr, anchors = %tls.anchors, "upstream TLS handshake failed");
            return Err(
                ProxyError::io(Side::Upstream, Kind::ConnectFailed, TLS_FAILED, e).at(addr),
            );
        }
        Err(_) => return Err(CONNECT_TIMED_OUT.at(addr)),
    };
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(NOT_H2.at(addr));
    }
    Ok(stream)
}

const TLS_FAILED: &str = "TLS handshake with the upstream failed";
const NOT_H2: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::ConnectFailed,
    "upstream TLS did not negotiate ALPN h2",
);
const NO_TLS_NAME: ProxyError = ProxyError::new(
    Side::Internal,
    Kind::ConnectFailed,
    "no TLS name for this upstream server",
);

/// The HTTP/2 handshake over `io`, then the connection's driver task.
async fn handshake<T>(
    io: T,
    addr: SocketAddr,
    cfg: &UpstreamConfig,
) -> Result<(SendRequest<Bytes>, Rc<Cell<bool>>), ProxyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let mut builder = ::h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(u32::try_from(cfg.response_limits.max_head_bytes).unwrap_or(u32::MAX))
        .enable_push(false);
    let handshake = Box::pin(monoio::time::timeout(
        cfg.connect_timeout,
        builder.handshake::<_, Bytes>(io),
    ));
    let (send, conn) = match handshake.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %addr, "upstream HTTP/2 handshake failed");
            return Err(HANDSHAKE_FAILED.at(addr));
        }
        Err(_) => return Err(CONNECT_TIMED_OUT.at(addr)),
    };
    let dead = Rc::new(Cell::new(false));
    let flag = dead.clone();
    // The connection's driver: reads and writes frames until the connection ends. The
    // join handle is dropped: the task runs on detached, owned by the runtime.
    drop(monoio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %addr, "upstream HTTP/2 connection ended");
        }
        flag.set(true);
    }));
    Ok((send, dead))
}

/// Why a request could not be turned into an HTTP/2 request (500: ours to fix).
const UNENCODABLE: ProxyError = ProxyError::new(
    Side::Internal,
    Kind::UpstreamProtocol,
    "request cannot be encoded as HTTP/2",
);

/// The HTTP/2 request for `req`: `path` is the target to send (after any prefix
/// strip), `fallback_host` the authority when the client sent none. The fields are the
/// ones the HTTP/1.1 wire would send — the same forwarding fields, the same hop-by-hop
/// fields dropped ([`crate::http1::write::request_head`] writes them into `scratch`) —
/// less `Host` (it becomes `:authority`) and the framing fields HTTP/2 has none of;
/// `te: trailers` is kept when the client sent it (gRPC needs it).
pub fn request(
    req: &Request,
    path: &[u8],
    fallback_host: &str,
    forward: ForwardHeaders,
    scratch: &mut BytesMut,
) -> Result<http::Request<()>, ProxyError> {
    scratch.clear();
    crate::http1::write::request_head(scratch, req, path, BodyLength::None, fallback_host, forward);
    let authority = match &req.authority_sent {
        Some(a) => a.clone(),
        None => Bytes::copy_from_slice(fallback_host.as_bytes()),
    };
    let authority = http::uri::Authority::from_maybe_shared(authority).map_err(|_| UNENCODABLE)?;
    let path = http::uri::PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path))
        .map_err(|_| UNENCODABLE)?;
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| UNENCODABLE)?;
    let method = http::Method::from_bytes(&req.method).map_err(|_| UNENCODABLE)?;
    let mut out = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .map_err(|_| UNENCODABLE)?;
    let headers = out.headers_mut();
    let written = scratch.split().freeze();
    // Skip the request line; every field line is `Name: value\r\n` (written above).
    let mut lines = written.split(|&b| b == b'\n').skip(1);
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let name = http::HeaderName::from_bytes(name).map_err(|_| UNENCODABLE)?;
        let start = value.as_ptr() as usize - written.as_ptr() as usize;
        let value = written.slice(start..start + value.len());
        let value = http::HeaderValue::from_maybe_shared(value).map_err(|_| UNENCODABLE)?;
        headers.append(name, value);
    }
    if let BodyLength::Known(n) = req.body {
        headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    if crate::message::te_trailers(&req.headers) {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    Ok(out)
}

/// The exchange's response head for an HTTP/2 response, and its body length for the
/// client (`head_request`: the request was HEAD; `ended`: the HEADERS frame ended the
/// stream, so no body follows — gRPC's trailers-only form, its `grpc-status` in these
/// fields, which a gRPC client reads only from a HEADERS frame that ends the stream).
pub fn response_head(
    parts: &http::response::Parts,
    head_request: bool,
    ended: bool,
) -> (ResponseHead, BodyLength) {
    let status = parts.status.as_u16();
    let head = ResponseHead {
        status,
        reason: Bytes::from_static(
            parts
                .status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes(),
        ),
        headers: fields(&parts.headers),
    };
    let length = if head_request || matches!(status, 204 | 304) {
        BodyLength::None
    } else if ended {
        // Empty, said at once: an HTTP/2 client gets one HEADERS frame with END_STREAM,
        // an HTTP/1.1 client `Content-Length: 0`.
        BodyLength::Known(0)
    } else {
        match parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(n) => BodyLength::Known(n),
            None => BodyLength::Unknown,
        }
    };
    (head, length)
}

/// A header map as the exchange's field list.
pub fn fields(map: &http::HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(n, v)| Header {
            name: Bytes::copy_from_slice(n.as_str().as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect()
}

/// The exchange's error for an h2 failure on a stream (see the module doc).
pub fn stream_error(e: &::h2::Error) -> ProxyError {
    if let Some(io) = e.get_io() {
        return ProxyError::io(
            Side::Upstream,
            Kind::UpstreamClosed,
            "upstream HTTP/2 connection failed",
            std::io::Error::new(io.kind(), io.to_string()),
        );
    }
    // A graceful GOAWAY fails only the streams above its last id: never processed.
    let refused = e.reason() == Some(::h2::Reason::REFUSED_STREAM)
        || (e.is_go_away() && e.is_remote() && e.reason() == Some(::h2::Reason::NO_ERROR));
    if refused {
        // RFC 9113 §8.7: the server did not process it; a retry is safe.
        return ProxyError::new(
            Side::Upstream,
            Kind::UpstreamClosed,
            "upstream refused the stream (GOAWAY or REFUSED_STREAM)",
        )
        .retryable();
    }
    if e.is_reset() && e.is_remote() {
        return ProxyError::new(
            Side::Upstream,
            Kind::UpstreamClosed,
            "upstream reset the stream",
        );
    }
    if e.reason().is_none() {
        // Neither I/O nor a frame: h2 refused what it was asked to send.
        return UNENCODABLE;
    }
    ProxyError::new(
        Side::Upstream,
        Kind::UpstreamProtocol,
        "upstream HTTP/2 protocol error",
    )
}
