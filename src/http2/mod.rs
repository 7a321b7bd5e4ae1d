//! ④ The HTTP/2 session: one client connection that negotiated `h2` (ALPN) or opened
//! with the HTTP/2 preface on an `h2c = true` listener, from the preface to GOAWAY.
//!
//! **Library.** Frames, HPACK, stream states and flow control are the `h2` crate's
//! (0.4.21+: its CONTINUATION, pending-accept-reset, local-error-reset and empty-DATA
//! budgets). h2 needs tokio's `AsyncRead`/`AsyncWrite` traits only: it spawns nothing and
//! arms no timer, so no tokio runtime runs on the worker. h2 runs over two in-memory
//! queues ([`wire`]) that one driver moves over the connection's [`ClientStream`] with
//! its ordinary owned-buffer reads and writes. Chosen over monoio's `poll-io` bridge
//! (`TcpStream::into_poll_io`): that bridge serves plain sockets only — the userspace
//! rustls stream would need its own poll adapter and kernel TLS its control-record
//! reads again — and its feature adds an epoll inner to every worker's io_uring driver,
//! which the HTTP/1.1 path would pay for. The queues cover all three record layers with
//! the code HTTP/1.1 uses, and the driver owns the write queue (monoio-compat's wrapper,
//! whose README says an h2 server on it fails, and monoio-http's stale h2 fork are not
//! used). The cost: one copy of each frame into the queue, one boxed future per socket
//! operation.
//!
//! **Streams.** Each accepted stream is one [`crate::proxy::exchange`] in its own local
//! task (`monoio::spawn`): streams make progress independently, a slow one never holds
//! a fast one, and the connection task only moves frames. A stream task watches for
//! the client's RST_STREAM and drops its exchange at once (the upstream connection is
//! closed, never pooled); until that task has ended, the stream counts against
//! `max_concurrent_streams` (a new stream beyond it is refused with REFUSED_STREAM), so a
//! rapid reset cannot pile up upstream work. Response DATA is sent only as the stream's
//! window allows, so a client that does not read holds the upstream's body in its window
//! and the kernel's buffers, not in the proxy's memory; request-body window is released
//! as the exchange hands the bytes to the upstream.
//!
//! **WebSocket (RFC 8441).** Sessions advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`.
//! An extended CONNECT (`:protocol`, with `:scheme`, `:path`, `:authority`) is one
//! exchange like any stream, mapped ([`stream::request`]) to a bodiless `GET` whose
//! `Upgrade` is the `:protocol`: the exchange runs the route's policies and the same
//! upgrade check as HTTP/1.1 (`upgrade` list, `websocket_origins`, `max_tunnels`) and
//! sends the upstream an HTTP/1.1 upgrade with a `Sec-WebSocket-Key` of its own. After
//! the upstream's `101` the stream answers `200` and its DATA is the tunnel
//! ([`tunnel`]). Statuses on the stream, from the exchange's one mapping: a `:protocol`
//! the route does not allow or an HTTP/2 upstream → 501, origin refused → 403,
//! `max_tunnels` → 503, a wrong `Sec-WebSocket-Accept` → 502, no random key → 500; an
//! upstream's non-101 answer is relayed; plain CONNECT → stream reset.
//!
//! **Request heads (RFC 9113 §8).** h2 checks: pseudo-header presence, order and
//! repetition, unknown pseudo-headers, connection-specific fields (`connection`,
//! `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`), `te` other than
//! `trailers`, `content-length` against the DATA received, the decoded header-list size
//! (`max_header_list_size`). Added here ([`stream::request`]): field values with NUL, CR,
//! LF or surrounding whitespace, no `:authority` nor Host, a Host differing from
//! `:authority`, CONNECT without `:protocol`. Not checkable after h2: upper-case field
//! names (its HPACK decoder lower-cases them). `:authority` becomes the host that routes and the Host sent
//! upstream; cookie crumbs are joined with `; ` (§8.2.3).
//!
//! **Floods** (each counted in `ringgate_h2_protocol_errors_total{reason}`): client
//! resets and server resets for malformed frames per second beyond
//! `max_reset_streams_per_second` → GOAWAY ENHANCE_YOUR_CALM (`reset_flood`), beside
//! h2's own `max_pending_accept_reset_streams` and `max_local_error_reset_streams`;
//! PING/SETTINGS/PRIORITY/RST_STREAM/empty DATA frames per second beyond
//! `max_control_frames_per_second`, WINDOW_UPDATE beyond
//! `max_window_update_frames_per_second` → GOAWAY ENHANCE_YOUR_CALM (counted by a
//! frame-header scanner on the inbound bytes, [`wire::FrameScan`]); a window held shut
//! beyond `send_timeout_ms` → that stream reset (`zero_window`). A connection without
//! streams for `idle_timeout_ms` gets GOAWAY; one that served
//! `max_requests_per_connection` streams too; so does every connection when the worker
//! drains — in-flight streams finish first.
//!
//! Status mapping: each stream's failures are the exchange's ([`crate::proxy`]); a
//! malformed request head is a stream reset (PROTOCOL_ERROR), never a status. Nothing
//! here blocks or panics on peer input.

mod stream;
mod tunnel;
mod wire;

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::Reason;
use h2::server::SendResponse;
use monoio::time::Instant;
use tracing::debug;

use crate::clock::{self, Deadline};
use crate::config::http2::Http2Settings;
use crate::context::WorkerCtx;
use crate::generation::Generation;
use crate::message::ClientInfo;
use crate::observe::H2Error;
use crate::proxy;
use crate::transport::ClientStream;
use crate::transport::tls::TlsInfo;
use stream::{H2Exchange, Out};
use wire::{Budgets, Driver, Wire, WireIo};

/// The client connection preface (RFC 9113 §3.4): how an `h2c` listener tells HTTP/2
/// with prior knowledge from HTTP/1.1.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the stream tasks of one connection share with it.
#[derive(Default)]
struct Shared {
    /// Stream tasks still running (reset streams whose exchange has not stopped yet
    /// included).
    live: Cell<usize>,
    /// Resets (the client's, and the server's for malformed requests) in the current
    /// second.
    resets: Cell<u32>,
    reset_window: Cell<Option<Instant>>,
    /// The reset budget was exceeded.
    calm: Cell<bool>,
    /// The connection task, woken when a stream ends or the budget is exceeded.
    waker: RefCell<Option<Waker>>,
}

impl Shared {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Counts one reset against `max_reset_streams_per_second`.
    fn reset(&self, budget: u32) {
        let now = clock::now();
        match self.reset_window.get() {
            Some(t) if now.saturating_duration_since(t) < Duration::from_secs(1) => {}
            _ => {
                self.reset_window.set(Some(now));
                self.resets.set(0);
            }
        }
        self.resets.set(self.resets.get() + 1);
        if self.resets.get() > budget {
            self.calm.set(true);
            self.wake();
        }
    }
}

/// Counts a stream task in and out of [`Shared::live`].
struct Live(Rc<Shared>);

impl Live {
    fn enter(shared: &Rc<Shared>) -> Live {
        shared.live.set(shared.live.get() + 1);
        Live(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get().saturating_sub(1));
        self.0.wake();
    }
}

/// The connection's facts every stream's request carries.
#[derive(Clone)]
struct Conn {
    ctx: Rc<WorkerCtx>,
    client: ClientInfo,
    tls: Option<Rc<TlsInfo>>,
    shared: Rc<Shared>,
    wire: Rc<RefCell<Wire>>,
}

/// Serves HTTP/2 on a connection whose handshake (if any) is done, to its end.
/// `preread`: plaintext already read (the h2c preface, or bytes rustls decrypted before
/// a kernel TLS switch).
pub async fn serve(
    stream: ClientStream,
    tls: Option<Rc<TlsInfo>>,
    peer: SocketAddr,
    scheme: &'static str,
    listener: usize,
    ctx: Rc<WorkerCtx>,
    preread: BytesMut,
) {
    let generation = ctx.live.load_full();
    let http = &generation.config.http;
    let settings = generation.config.http2.clone();
    let budgets = Budgets {
        control: settings.max_control_frames_per_second,
        window_update: settings.max_window_update_frames_per_second,
    };
    let wire = Wire::new(preread, budgets);
    let mut driver = Driver::new(
        stream,
        wire.clone(),
        http.send_timeout,
        http.client_body_timeout,
    );
    let linger = (http.lingering_timeout, http.lingering_time);
    // Boxed, and dropped once done: inline, its state (1.1 kB) would stay in every idle
    // connection's future.
    let mut handshake = Box::pin(builder(&settings).handshake::<_, Bytes>(WireIo(wire.clone())));
    let mut deadline = Deadline::new();
    let shaken = poll_fn(|cx| driver.drive(cx, |cx| handshake.as_mut().poll(cx)));
    let shaken = deadline.within(http.client_header_timeout, shaken).await;
    drop(handshake);
    let mut conn = match shaken {
        Ok(Ok(Ok(c))) => c,
        Ok(Ok(Err(e))) => {
            debug!(client = %peer, error = %e, "HTTP/2 preface refused");
            count_error(&ctx, &e);
            let _ = poll_fn(|cx| driver.poll_flushed(cx)).await;
            driver.close(linger.0, linger.1).await;
            return;
        }
        _ => {
            driver.close(linger.0, linger.1).await;
            return;
        }
    };
    let mut generation_seen = generation.id;
    drop(generation);
    ctx.metrics.h2_connections.inc();
    let c = Conn {
        ctx: ctx.clone(),
        client: ClientInfo::new(peer, scheme).on_listener(listener),
        tls,
        shared: Rc::new(Shared::default()),
        wire: wire.clone(),
    };
    let mut accepted: u64 = 0;
    let mut closing = false;
    loop {
        // With streams at work the idle timeout does not run: when the last one ends,
        // the loop comes round again to start it.
        let busy = c.shared.live.get() > 0;
        // Without streams at work, a wait for the client holds no read buffers.
        driver.lean = !busy;
        let event = poll_fn(|cx| {
            *c.shared.waker.borrow_mut() = Some(cx.waker().clone());
            if busy && c.shared.live.get() == 0 {
                return Poll::Ready(Event::Quiet);
            }
            if c.shared.calm.get() {
                return Poll::Ready(Event::Calm(H2Error::ResetFlood));
            }
            if let Some(f) = wire.borrow().flood() {
                return Poll::Ready(Event::Calm(f));
            }
            if !closing && ctx.draining.is_raised() {
                return Poll::Ready(Event::Drain);
            }
            driver
                .drive(cx, |cx| conn.poll_accept(cx))
                .map(|r| match r {
                    Ok(Some(Ok(s))) => Event::Stream(Box::new(s)),
                    Ok(Some(Err(e))) => Event::Failed(Some(e)),
                    Ok(None) => Event::Closed,
                    Err(_) => Event::Failed(None),
                })
        });
        // Idle: no stream at work, so the idle timeout runs (and the drain signal wakes
        // the task; with streams at work, their ends wake it).
        let event = if c.shared.live.get() == 0 && !closing {
            monoio::select! {
                e = deadline.within(settings.idle_timeout, event) => e.unwrap_or(Event::Idle),
                _ = ctx.draining.wait() => Event::Drain,
            }
        } else {
            event.await
        };
        match event {
            Event::Stream(s) => {
                let (head, respond) = *s;
                accepted += 1;
                c.ctx.metrics.h2_streams.inc();
                start_stream(&c, &settings, head, respond);
                if accepted >= settings.max_requests_per_connection && !closing {
                    conn.graceful_shutdown();
                    closing = true;
                }
                // A reload that changed `[http2]` (the settings this connection
                // announced and runs by): GOAWAY, so that the client's next streams go
                // on a connection under the new ones. This stream is served here.
                let live = ctx.live.load();
                if live.id != generation_seen {
                    generation_seen = live.id;
                    if live.config.http2 != settings && !closing {
                        debug!(client = %peer, "[http2] changed by a reload: GOAWAY");
                        conn.graceful_shutdown();
                        closing = true;
                    }
                }
            }
            Event::Quiet => {}
            Event::Drain | Event::Idle => {
                if !closing {
                    conn.graceful_shutdown();
                    closing = true;
                }
            }
            Event::Calm(reason) => {
                ctx.metrics.h2_protocol_errors[reason.index()].inc();
                debug!(client = %peer, reason = reason.label(), "HTTP/2 flood: GOAWAY ENHANCE_YOUR_CALM");
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                wire.borrow_mut().stop_reading();
                // h2 writes the GOAWAY and ends; what it queued goes out, within
                // send_timeout.
                let t = ctx.live.load().config.http.send_timeout;
                let closed = poll_fn(|cx| driver.drive(cx, |cx| conn.poll_closed(cx)));
                let _ = deadline.within(t, closed).await;
                let _ = deadline
                    .within(t, poll_fn(|cx| driver.poll_flushed(cx)))
                    .await;
                break;
            }
            Event::Failed(e) => {
                if let Some(e) = e {
                    debug!(client = %peer, error = %e, "HTTP/2 connection error");
                    count_error(&ctx, &e);
                }
                let t = ctx.live.load().config.http.send_timeout;
                let _ = deadline
                    .within(t, poll_fn(|cx| driver.poll_flushed(cx)))
                    .await;
                break;
            }
            Event::Closed => {
                let t = ctx.live.load().config.http.send_timeout;
                let _ = deadline
                    .within(t, poll_fn(|cx| driver.poll_flushed(cx)))
                    .await;
                break;
            }
        }
    }
    drop(conn);
    driver.close(linger.0, linger.1).await;
}

/// What the connection task does next.
enum Event {
    Stream(Box<(http::Request<h2::RecvStream>, SendResponse<Bytes>)>),
    /// A flood budget was exceeded.
    Calm(H2Error),
    Drain,
    Idle,
    /// The last stream at work ended.
    Quiet,
    /// h2 ended the connection with an error (`None`: the socket failed).
    Failed(Option<h2::Error>),
    /// The connection ended in order.
    Closed,
}

/// h2's server settings from `[http2]` and `[http]`.
fn builder(s: &Http2Settings) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(s.max_concurrent_streams)
        .max_header_list_size(s.max_header_list_size)
        .initial_window_size(s.initial_stream_window_size)
        .initial_connection_window_size(s.initial_connection_window_size)
        .max_pending_accept_reset_streams(s.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(s.max_local_error_reset_streams))
        // SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3): extended CONNECT streams
        // become HTTP/1.1 upgrades towards the upstream (`stream`, `tunnel`).
        .enable_connect_protocol()
        // Response DATA is sent only as the window allows (the stream reserves what it
        // sends): h2 buffers at most one read's worth per stream.
        .max_send_buffer_size(64 * 1024);
    b
}

/// Counts a connection error h2 reported (not the client closing or going away).
fn count_error(ctx: &WorkerCtx, e: &h2::Error) {
    if e.is_io() || e.is_remote() {
        return;
    }
    let reason = match e.reason() {
        Some(Reason::ENHANCE_YOUR_CALM) => H2Error::H2Budget,
        Some(_) => H2Error::Protocol,
        None => return,
    };
    ctx.metrics.h2_protocol_errors[reason.index()].inc();
}

/// Starts the exchange of one accepted stream in a task of its own, or refuses the
/// stream when `max_concurrent_streams` tasks are still at work.
fn start_stream(
    c: &Conn,
    settings: &Http2Settings,
    head: http::Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let limit = settings.max_concurrent_streams as usize;
    if c.shared.live.get() >= limit {
        respond.send_reset(Reason::REFUSED_STREAM);
        c.ctx.metrics.h2_protocol_errors[H2Error::StreamRefused.index()].inc();
        c.shared.reset(settings.max_reset_streams_per_second);
        return;
    }
    let live = Live::enter(&c.shared);
    let c = c.clone();
    let budget = settings.max_reset_streams_per_second;
    monoio::spawn(Guarded(Box::pin(async move {
        let _live = live;
        serve_stream(c, budget, head, respond).await;
    })));
}

/// One stream's exchange, dropped when the client resets the stream.
async fn serve_stream(
    c: Conn,
    reset_budget: u32,
    head: http::Request<h2::RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let received = clock::now();
    let generation: Arc<Generation> = c.ctx.live.load_full();
    let (parts, body) = head.into_parts();
    let end_stream = body.is_end_stream();
    let ask = match parts.extensions.get::<h2::ext::Protocol>() {
        Some(_) => proxy::Ask::ExtendedConnect,
        None => proxy::Ask::No,
    };
    let out = Rc::new(RefCell::new(Out::Head(respond)));
    let req = match stream::request(&parts, end_stream, c.client, c.tls.clone(), received) {
        Ok(r) => r,
        Err(reason) => {
            debug!(client = %c.client.addr, reason, "HTTP/2 request refused");
            out.borrow_mut().reset(Reason::PROTOCOL_ERROR);
            c.ctx.metrics.h2_protocol_errors[H2Error::MalformedRequest.index()].inc();
            // A reset the server sends for a malformed request counts as the client's
            // would (MadeYouReset).
            c.shared.reset(reset_budget);
            return;
        }
    };
    let http = &generation.config.http;
    let mut x = H2Exchange {
        recv: RefCell::new(body),
        pending: RefCell::new(None),
        // An extended CONNECT's DATA is the tunnel's: the exchange sees no body.
        body_done: Cell::new(end_stream || ask == proxy::Ask::ExtendedConnect),
        out: out.clone(),
        queue: Vec::new(),
        deadline: Deadline::new(),
        body_timeout: http.client_body_timeout,
        send_timeout: http.send_timeout,
        head_request: req.is_head(),
        zero_window: false,
        trailers: None,
        ask,
        tunnel: None,
    };
    let watch = out.clone();
    let reset = poll_fn(|cx| watch.borrow_mut().poll_reset(cx));
    let exchange = async {
        let mut outcome = proxy::exchange(&c.ctx, &generation, req, &mut x).await;
        if outcome.next == proxy::Next::Tunnel
            && let Some(up) = x.tunnel.take()
        {
            // Boxed: a stream without a tunnel carries none of its state.
            let send_timeout = x.send_timeout;
            let tunnel = tunnel::run(&c.ctx, *up, &x.recv, &x.out, send_timeout);
            let (carried, shut) = Box::pin(tunnel).await;
            x.zero_window |= shut;
            outcome.bytes_in += carried.to_upstream;
            outcome.bytes_out += carried.to_client;
        }
        outcome
    };
    monoio::select! {
        outcome = exchange => {
            let took = outcome.timings.done.saturating_duration_since(received);
            c.ctx.metrics.request_done(outcome.status, took);
        }
        _ = reset => {
            // The client reset the stream: the exchange (and its upstream work) is
            // dropped here, before the stream stops counting as live.
            c.shared.reset(reset_budget);
            return;
        }
    }
    if x.zero_window {
        c.ctx.metrics.h2_protocol_errors[H2Error::ZeroWindow.index()].inc();
    }
    if !x.body_done.get() && matches!(*out.borrow(), Out::Done) {
        // An answer before the whole request (RFC 9113 §8.1): once it is written, h2
        // resets the request side with NO_ERROR as `x` drops — in a write of its own.
        let since = c.wire.borrow().polls();
        let sent = poll_fn(|cx| c.wire.borrow_mut().poll_sent(since, cx));
        let watch = out.clone();
        let reset = poll_fn(|cx| watch.borrow_mut().poll_reset(cx));
        monoio::select! {
            _ = x.deadline.within(x.send_timeout, sent) => {}
            _ = reset => {}
        }
    }
    // A response that did not end (a failure after its head went out) is reset, so the
    // client never takes a truncated body for a whole one.
    out.borrow_mut().reset(Reason::CANCEL);
}

/// Runs a stream task with the connection-task clock ([`clock::polled`]) and turns a
/// panic into the end of that stream only.
struct Guarded<F: Future<Output = ()>>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for Guarded<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let fut = &mut self.get_mut().0;
        let polled =
            clock::polled(|| std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))));
        match polled {
            Ok(p) => p,
            Err(_) => {
                tracing::error!("HTTP/2 stream task panicked; stream dropped");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle HTTP/2 connection holds its task's future: that future carries the h2
    /// connection and the loop's state, not the finished handshake's.
    #[test]
    fn an_idle_connection_does_not_carry_the_handshake() {
        let ctx = WorkerCtx::for_test(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[[route]]\nupstream = \"a\"\n\
             [upstream.a]\nservers = [\"127.0.0.1:1\"]\n",
        );
        crate::clock::test_runtime().block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let _client =
                std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            let (s, peer) = l.accept().expect("accept");
            let stream =
                ClientStream::plain(monoio::net::TcpStream::from_std(s).expect("monoio tcp"));
            let f = serve(stream, None, peer, "http", 0, ctx, BytesMut::new());
            let size = std::mem::size_of_val(&f);
            let handshake = std::mem::size_of::<h2::server::Handshake<WireIo, Bytes>>();
            let connection = std::mem::size_of::<h2::server::Connection<WireIo, Bytes>>();
            // Measured (release, rustc 1.95): 5,504 B with the handshake inline.
            assert!(
                size < connection + 3 * handshake,
                "the connection's future is {size} B (h2 connection {connection} B, \
                 handshake {handshake} B)"
            );
        });
    }
}
