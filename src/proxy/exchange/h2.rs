//! The exchange over an HTTP/2 upstream (`protocol = "h2"`, [`crate::upstream::h2`]):
//! one stream per exchange on a pooled, multiplexed connection.
//!
//! The request head becomes an HTTP/2 request ([`h2w::request`]); its body is streamed
//! from the session as it arrives, sent only as the stream's send window allows
//! (`reserve_capacity` / `poll_capacity`), while the response is awaited — full duplex,
//! as over HTTP/1.1 ([`super::super::duplex`]). The response head goes to the sink, DATA
//! is pushed and its flow-control capacity released only once the sink flushed it (the
//! stream's window, not memory, absorbs a slow client), trailers go to
//! [`ResponseSink::trailers`].
//!
//! Every wait on the upstream is bounded by its `read_timeout_ms` (re-armed by each
//! step) and by the request's `grpc-timeout` from the head's arrival (the exchange's
//! deadline): over either → [`Kind::UpstreamTimeout`] (504; DEADLINE_EXCEEDED to a gRPC
//! client). A stream the server refused unprocessed (REFUSED_STREAM, above a GOAWAY's
//! last id) is sent again once on another connection when the whole body is still in
//! hand. Errors before the head went out are answered ([`Exchange::fail`]); after it,
//! the client connection closes.
//!
//! Cancellation: every await may be the last (the client leaves, a timeout drops the
//! exchange). The stream's handles live in this future: dropping them makes h2 reset
//! the stream (CANCEL) and the pool's count of it end; no buffer is taken from its owner
//! across an await (body bytes wait in [`BodyOut`] until h2 takes them, response bytes
//! are released to the window only after the sink flushed them).

use std::future::{Future, poll_fn};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::time::Instant;
use tracing::debug;

use super::super::upstream_io::BODY_READ;
use super::super::{BodySource, Next, ResponseSink};
use super::Exchange;
use crate::clock;
use crate::error::{Kind, ProxyError, Side};
use crate::message::{BodyLength, Request};
use crate::upstream::h1::RequestFraming;
use crate::upstream::h2 as h2w;

/// Request body bytes taken from the client before the stream's window is waited for
/// (backpressure, as [`super::super::duplex`]'s queue).
const QUEUE_LIMIT: usize = 2 * BODY_READ;

/// Which bound a wait on the upstream ran into.
#[derive(Clone, Copy)]
enum Over {
    /// The upstream's `read_timeout_ms`.
    Read,
    /// The request's `grpc-timeout`.
    Deadline,
}

fn timed_out(over: Over) -> ProxyError {
    let reason = match over {
        Over::Read => "upstream did not answer within read_timeout",
        Over::Deadline => "grpc-timeout reached before the upstream answered",
    };
    ProxyError::new(Side::Upstream, Kind::UpstreamTimeout, reason)
}

/// The request body on its way up one stream.
struct BodyOut {
    send: h2::SendStream<Bytes>,
    /// Taken from the client, not yet sent.
    pending: BytesMut,
    /// END_STREAM went out (or the stream is gone): nothing more is sent.
    ended: bool,
}

/// The bounds of a wait on the upstream.
#[derive(Clone, Copy)]
struct Waits {
    read: Duration,
    /// The request's `grpc-timeout`, from when its head arrived.
    deadline: Option<Instant>,
}

impl Waits {
    /// When the wait starting now ends, and the error it ends with.
    fn until(&self) -> (Instant, Over) {
        let read = clock::now() + self.read;
        match self.deadline {
            Some(d) if d <= read => (d, Over::Deadline),
            _ => (read, Over::Read),
        }
    }
}

impl Exchange<'_> {
    /// Forwards a routed request to the `protocol = "h2"` upstream `group`; `up_path` is
    /// the target to send.
    pub(super) async fn run_h2<S: BodySource + ResponseSink>(
        &mut self,
        req: &Request,
        group: usize,
        up_path: &[u8],
        s: &mut S,
    ) -> Next {
        let generation = self.generation;
        let config = &generation.config;
        let upstream = &config.upstreams[group];
        let waits = Waits {
            read: upstream.read_timeout,
            deadline: req.grpc_timeout().map(|t| req.received + t),
        };
        self.upload.framing = Some(RequestFraming::RAW);
        let mut first_body = BytesMut::new();
        if let Err(e) = self.upload.take(s, &mut first_body) {
            return self.fail(e, req, s).await;
        }
        // The whole body is in hand: a refused stream can be sent again.
        let replayable = s.is_done();
        let mut scratch = BytesMut::new();
        let mut retried = false;
        loop {
            let fallback = &upstream.servers[0].host_header;
            let forward = config.http.forward;
            let head = match h2w::request(req, up_path, fallback, forward, &mut scratch) {
                Ok(h) => h,
                Err(e) => return self.fail(e, req, s).await,
            };
            let acquire = self.ctx.upstreams.acquire_h2(generation, group);
            let stream = match waits.deadline {
                Some(d) => match monoio::time::timeout_at(d, acquire).await {
                    Ok(r) => r,
                    Err(_) => Err(timed_out(Over::Deadline)),
                },
                None => acquire.await,
            };
            let stream = match stream {
                Ok(st) => st,
                Err(e) => return self.fail(e, req, s).await,
            };
            self.connected = Some(clock::now());
            self.upstream = Some(stream.server);
            let body = first_body.clone();
            match self.forward_h2(&stream, head, req, body, waits, s).await {
                Ok(next) => return next,
                Err(e) if e.retry && replayable && !retried => {
                    debug!(error = %e, "upstream refused the stream, sending it on another connection");
                    stream.retire();
                    retried = true;
                }
                Err(e) => return self.fail(e, req, s).await,
            }
        }
    }

    /// One attempt on `stream`. `Err` only before the response head went to the client.
    async fn forward_h2<S: BodySource + ResponseSink>(
        &mut self,
        stream: &h2w::Stream,
        head: http::Request<()>,
        req: &Request,
        first_body: BytesMut,
        waits: Waits,
        s: &mut S,
    ) -> Result<Next, ProxyError> {
        let conn_error = |e: h2::Error| {
            if e.is_io() || e.is_go_away() {
                stream.retire();
            }
            h2w::stream_error(&e)
        };
        let (until, over) = waits.until();
        let ready = monoio::time::timeout_at(until, stream.sender().ready()).await;
        let mut sender = match ready {
            Ok(r) => r.map_err(conn_error)?,
            Err(_) => return Err(timed_out(over)),
        };
        let no_body = first_body.is_empty() && s.is_done();
        let (response, send) = sender.send_request(head, no_body).map_err(conn_error)?;
        if !no_body {
            Box::pin(s.begin()).await?;
        }
        let mut up = BodyOut {
            send,
            pending: first_body,
            ended: no_body,
        };
        let response = match self.pumping(&mut up, s, response, waits).await? {
            Ok(r) => r.map_err(conn_error)?,
            Err(over) => return Err(timed_out(over)),
        };
        if self.first_byte.is_none() {
            self.first_byte = Some(clock::now());
        }
        let (parts, mut recv) = response.into_parts();
        let (mut head, length) = h2w::response_head(&parts, req.is_head(), recv.is_end_stream());
        let policies = self.response_policies(req);
        if !policies.is_empty() {
            policies.apply(req, &mut head.headers);
        }
        // The session decides what its connection does (an HTTP/1 early answer to an
        // upload ends it); the exchange says whether the response went out whole.
        s.start(&head, length);
        self.status = head.status;
        match self.relay_h2(&mut up, &mut recv, s, waits, length).await {
            Ok(()) => Ok(if up.ended {
                Next::KeepAlive
            } else {
                Next::Close
            }),
            Err(e) => Ok(self.relay_failed(req, &e)),
        }
    }

    /// Moves the response body (and trailers) from `recv` to the sink, capacity
    /// released as the sink flushes, while the request body keeps going up.
    async fn relay_h2<S: BodySource + ResponseSink>(
        &mut self,
        up: &mut BodyOut,
        recv: &mut h2::RecvStream,
        s: &mut S,
        waits: Waits,
        length: BodyLength,
    ) -> Result<(), ProxyError> {
        let failed = |e: h2::Error| h2w::stream_error(&e);
        if length == BodyLength::None {
            return s.finish().await;
        }
        // The head goes out now: a stream may be long-lived (server streaming).
        s.flush().await?;
        loop {
            let data = match self.pumping(up, s, recv.data(), waits).await? {
                Ok(d) => d,
                Err(over) => return Err(timed_out(over)),
            };
            match data {
                Some(Ok(d)) => {
                    let n = d.len();
                    self.bytes_out += n as u64;
                    s.data(d);
                    s.flush().await?;
                    // Consumed: the window opens again only now.
                    let _ = recv.flow_control().release_capacity(n);
                }
                Some(Err(e)) => return Err(failed(e)),
                None => break,
            }
        }
        let trailers = match self.pumping(up, s, recv.trailers(), waits).await? {
            Ok(t) => t.map_err(failed)?,
            Err(over) => return Err(timed_out(over)),
        };
        if let Some(t) = trailers {
            s.trailers(&h2w::fields(&t));
        }
        s.finish().await
    }

    /// Waits for `fut` (an upstream step) within the read timeout and the deadline,
    /// moving the request body along meanwhile. `Ok(Err(e))`: the wait timed out with
    /// `e`; `Err`: a client-side failure (closed or stalled mid-body, too large).
    async fn pumping<S: BodySource, T>(
        &mut self,
        up: &mut BodyOut,
        s: &mut S,
        fut: impl Future<Output = T>,
        waits: Waits,
    ) -> Result<Result<T, Over>, ProxyError> {
        let mut fut = std::pin::pin!(fut);
        let (until, mut over) = waits.until();
        let timer = monoio::time::sleep_until(until);
        let mut timer = std::pin::pin!(timer);
        loop {
            if !up.ended && up.pending.is_empty() && s.is_done() {
                up.ended = true;
                if up.send.send_data(Bytes::new(), true).is_err() {
                    // The stream is gone: the response tells why.
                    debug!("upstream stream closed before the request body ended");
                }
            }
            let want_window = !up.ended && !up.pending.is_empty();
            if want_window {
                up.send.reserve_capacity(up.pending.len());
            }
            let want_client = !up.ended && !s.is_done() && up.pending.len() < QUEUE_LIMIT;
            monoio::select! {
                biased;
                r = &mut fut => return Ok(Ok(r)),
                _ = &mut timer => return Ok(Err(over)),
                cap = poll_fn(|cx| up.send.poll_capacity(cx)), if want_window => {
                    match cap {
                        Some(Ok(0)) => {}
                        Some(Ok(n)) => {
                            let chunk = up.pending.split_to(n.min(up.pending.len())).freeze();
                            let end = up.pending.is_empty() && s.is_done();
                            let sent = up.send.send_data(chunk, end);
                            up.ended = end || sent.is_err();
                            // Progress: the wait starts again.
                            let (u, o) = waits.until();
                            over = o;
                            timer.as_mut().reset(u);
                        }
                        // The stream closed or was reset: the upstream reads no more.
                        _ => {
                            up.ended = true;
                            up.pending.clear();
                        }
                    }
                },
                ready = s.ready(), if want_client => {
                    ready?;
                    s.receive().await?;
                    self.upload.take(s, &mut up.pending)?;
                }
            }
        }
    }
}
