//! One exchange: request head + body stream → route → upstream → response head + body
//! stream.
//!
//! The request body is forwarded as it arrives (Content-Length as is, chunked decoded and
//! re-encoded), never held whole. The response is framed for the client: Content-Length
//! passes through, chunked and close-delimited bodies become chunked for HTTP/1.1 clients
//! and close-delimited for HTTP/1.0 ones. A pooled upstream connection that fails before
//! any response byte is retried once on a fresh connection, when the whole request is
//! still in hand to send again.

use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::duplex::Pump;
use super::{Connection, Next};
use crate::error::{Kind, ProxyError, Side};
use crate::http1::body::{Chunk, ChunkedDecoder, LAST_CHUNK, encode_chunk};
use crate::http1::parse::{self, BodyKind, Parsed, RequestHead, ResponseHead, Version};
use crate::http1::write::{self, ClientFraming};
use crate::upstream::Lease;

/// Body read size while streaming (two TLS records).
pub(super) const BODY_READ: usize = 32 * 1024;
/// Request body bytes sent together with the head (and kept for a retry).
const FIRST_WRITE_BODY: usize = 64 * 1024;

/// Progress of the request body.
pub(super) struct RequestBody {
    kind: BodyKind,
    /// Content-Length bytes still to read from the client.
    remaining: u64,
    decoder: Option<ChunkedDecoder>,
    /// Total body bytes seen (for the size limit).
    seen: u64,
    /// Every body byte has been read from the client.
    pub(super) done: bool,
}

impl RequestBody {
    fn new(kind: BodyKind) -> Self {
        RequestBody {
            kind,
            remaining: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
            decoder: (kind == BodyKind::Chunked).then(ChunkedDecoder::request),
            seen: 0,
            done: matches!(kind, BodyKind::Empty | BodyKind::UntilClose),
        }
    }

    /// Moves every body byte buffered in `rbuf` into `out`, in the upstream's framing.
    /// When it returns and the body is not done, nothing more can be taken without
    /// reading from the client.
    pub(super) fn take(
        &mut self,
        rbuf: &mut BytesMut,
        out: &mut BytesMut,
        limit: u64,
    ) -> Result<(), ProxyError> {
        match self.kind {
            BodyKind::Length(_) => {
                let n = (rbuf.len() as u64).min(self.remaining) as usize;
                if out.is_empty() {
                    // Hand over the client's bytes as they are: no copy.
                    *out = rbuf.split_to(n);
                } else {
                    out.extend_from_slice(&rbuf.split_to(n));
                }
                self.remaining -= n as u64;
                self.seen += n as u64;
                self.done = self.remaining == 0;
            }
            BodyKind::Chunked => {
                let dec = self.decoder.as_mut().expect("chunked body has a decoder");
                loop {
                    let chunk = dec.decode(rbuf).map_err(|r| {
                        ProxyError::new(Side::Downstream, Kind::BadRequest(r.fault), r.reason)
                    })?;
                    match chunk {
                        Chunk::Data(d) => {
                            self.seen += d.len() as u64;
                            encode_chunk(out, &d);
                        }
                        Chunk::NeedMore => break,
                        Chunk::Done => {
                            out.extend_from_slice(LAST_CHUNK);
                            self.done = true;
                            break;
                        }
                    }
                }
            }
            BodyKind::Empty | BodyKind::UntilClose => {}
        }
        if limit > 0 && self.seen > limit {
            return Err(ProxyError::new(
                Side::Downstream,
                Kind::BodyTooLarge,
                "request body larger than max_request_body_bytes",
            ));
        }
        Ok(())
    }
}

impl Connection {
    /// Serves one request whose head has been read.
    pub(super) async fn exchange(&mut self, head: RequestHead) -> Next {
        let generation = self.generation.clone();
        let config = &generation.config;
        let limit = config.http.max_request_body_bytes;
        if let BodyKind::Length(n) = head.body
            && limit > 0
            && n > limit
        {
            self.respond(413, "request body larger than allowed", head.version, false)
                .await;
            return Next::Close;
        }
        let path = head.path();
        // `OPTIONS *` is about the server as a whole: routed as `/`, forwarded as `*`.
        let asterisk = path.as_ref() == b"*";
        let route_path: &[u8] = if asterisk { b"/" } else { &path };
        let Some(selected) = generation.router.select(head.host.as_deref(), route_path) else {
            // Keep the connection only when no unread body is in the way.
            let keep =
                head.keep_alive && head.body == BodyKind::Empty && !self.ctx.draining.is_raised();
            self.respond(404, "no route for this host and path", head.version, keep)
                .await;
            return if keep { Next::KeepAlive } else { Next::Close };
        };
        let group = selected.route.upstream;
        let upstream = &config.upstreams[group];
        let mut scratch = Vec::new();
        let up_path: &[u8] = if asterisk {
            &path
        } else {
            selected.upstream_path(&path, &mut scratch)
        };
        let mut first = BytesMut::with_capacity(1024);
        let client = self.client;
        let fallback_host = &upstream.servers[0].host_header;
        write::request_head(&mut first, &head, up_path, head.body, client, fallback_host);
        let mut body = RequestBody::new(head.body);
        // Body bytes already here travel with the head.
        let mut first_body = BytesMut::new();
        if let Err(e) = body.take(&mut self.rbuf, &mut first_body, limit) {
            return self.fail(e, &head, &body).await;
        }
        if first_body.len() <= FIRST_WRITE_BODY || body.done {
            first.extend_from_slice(&first_body);
            first_body.clear();
        }
        let first = first.freeze();
        let first_body = first_body.freeze();
        let mut retried = false;
        loop {
            let lease = match self
                .ctx
                .upstreams
                .acquire(&generation, group, retried, None)
                .await
            {
                Ok(l) => l,
                Err(e) => return self.fail(e, &head, &body).await,
            };
            match self
                .forward(lease, &head, &first, &first_body, &mut body)
                .await
            {
                Ok(next) => return next,
                Err(e) if e.retry && !retried => {
                    debug!(error = %e, "stale pooled upstream connection, retrying on a fresh one");
                    retried = true;
                }
                Err(e) => return self.fail(e, &head, &body).await,
            }
        }
    }

    /// Answers a failure that happened before any response head was sent.
    async fn fail(&mut self, e: ProxyError, head: &RequestHead, body: &RequestBody) -> Next {
        debug!(
            peer = %self.peer,
            sni = self.tls.as_ref().and_then(|t| t.sni.as_deref()).unwrap_or("-"),
            error = %e,
            "exchange failed"
        );
        if e.side == Side::Upstream {
            self.ctx.metrics.upstream_error(e.kind);
        }
        let keep = body.done
            && head.keep_alive
            && e.side == Side::Upstream
            && !self.ctx.draining.is_raised();
        if let Some(status) = e.status() {
            self.respond(status, e.reason, head.version, keep).await;
        }
        if keep { Next::KeepAlive } else { Next::Close }
    }

    /// Sends the request on `lease` and relays the response. `Err` only before the
    /// response head went to the client; afterwards failures close the connection.
    async fn forward(
        &mut self,
        lease: Lease,
        head: &RequestHead,
        first: &Bytes,
        first_body: &Bytes,
        body: &mut RequestBody,
    ) -> Result<Next, ProxyError> {
        // A retry may send the request a second time: only for idempotent methods
        // (RFC 9110 §9.2.2), and only while the whole request is still in hand.
        let replayable =
            lease.reused && body.done && first_body.is_empty() && idempotent(&head.method);
        let stale = |e: ProxyError| if replayable { e.retryable() } else { e };
        let mut f = Flow {
            lease,
            ubuf: BytesMut::with_capacity(4096),
            pump: None,
            sent_all: true,
            answered: false,
        };
        upstream_write(&mut f.lease, first.clone())
            .await
            .map_err(stale)?;
        if !first_body.is_empty() || !body.done {
            if head.expect_continue && self.rbuf.is_empty() && first_body.is_empty() {
                self.write_client(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"))
                    .await?;
            }
            // The body flows while the response is read (full duplex).
            let Some(pump) = Pump::start(&mut f.lease, first_body.clone()) else {
                return Err(ProxyError::new(
                    Side::Internal,
                    Kind::UpstreamClosed,
                    "a fresh upstream stream could not be split",
                ));
            };
            f.pump = Some(pump);
            f.sent_all = false;
        }
        let resp = loop {
            let resp = match self.read_response_head(&mut f, body).await {
                Ok(r) => r,
                // Nothing came back on a pooled connection: it was closed under us.
                Err(e) if !f.answered && f.ubuf.is_empty() && e.kind == Kind::UpstreamClosed => {
                    return Err(stale(e));
                }
                Err(e) => return Err(e),
            };
            // Any response byte, 1xx included, means the request was seen: no retry.
            f.answered = true;
            match resp.status {
                100 => continue,
                101 => {
                    return Err(ProxyError::new(
                        Side::Upstream,
                        Kind::UpstreamProtocol,
                        "upstream switched protocols without an Upgrade request",
                    ));
                }
                102..=199 => {
                    if head.version == Version::Http11 {
                        let mut out = BytesMut::new();
                        write::response_head(
                            &mut out,
                            &resp,
                            ClientFraming::NoBody,
                            Version::Http11,
                            true,
                            true,
                        );
                        self.write_client(out.freeze()).await?;
                    }
                }
                _ => break resp,
            }
        };
        self.relay_response(f, head, resp, body).await
    }

    /// Reads until a full response head is parsed.
    async fn read_response_head(
        &mut self,
        f: &mut Flow,
        body: &mut RequestBody,
    ) -> Result<ResponseHead, ProxyError> {
        let limits = f.lease.upstream().response_limits;
        loop {
            if !f.ubuf.is_empty() {
                match parse::parse_response(&mut f.ubuf, &limits) {
                    Parsed::Complete(resp, _) => return Ok(resp),
                    Parsed::Incomplete => {}
                    Parsed::Invalid(r) => {
                        return Err(ProxyError::new(
                            Side::Upstream,
                            Kind::UpstreamProtocol,
                            r.reason,
                        ));
                    }
                }
            }
            if self.pull(f, body, 4096).await? == 0 {
                return Err(ProxyError::new(
                    Side::Upstream,
                    Kind::UpstreamClosed,
                    "upstream closed before the response head",
                ));
            }
        }
    }

    /// Reads more of the response into `f.ubuf` (0: the upstream closed), moving the
    /// request body along while it is still flowing.
    async fn pull(
        &mut self,
        f: &mut Flow,
        body: &mut RequestBody,
        want: usize,
    ) -> Result<usize, ProxyError> {
        let Flow {
            lease,
            ubuf,
            pump,
            sent_all,
            ..
        } = f;
        self.pumped_read(lease, ubuf, pump, sent_all, body, want)
            .await
    }

    /// Sends the response head and streams the body to the client.
    async fn relay_response(
        &mut self,
        mut f: Flow,
        head: &RequestHead,
        resp: ResponseHead,
        body: &mut RequestBody,
    ) -> Result<Next, ProxyError> {
        let no_body = head.is_head() || resp.status == 204 || resp.status == 304;
        let up_body = if no_body { BodyKind::Empty } else { resp.body };
        let framing = match (no_body, up_body, head.version) {
            (true, _, _) => ClientFraming::NoBody,
            (_, BodyKind::Empty, _) => ClientFraming::Length(0),
            (_, BodyKind::Length(n), _) => ClientFraming::Length(n),
            (_, _, Version::Http11) => ClientFraming::Chunked,
            (_, _, Version::Http10) => ClientFraming::Close,
        };
        let keepalive_requests = self.generation.config.http.keepalive_requests;
        // A body still arriving when the head goes out may never be read whole: promise
        // nothing (an early answer to an upload ends the connection).
        let keep = head.keep_alive
            && body.done
            && framing != ClientFraming::Close
            && self.served < keepalive_requests
            && !self.ctx.draining.is_raised();
        let mut out = BytesMut::with_capacity(512);
        // HEAD and 304 keep the upstream's Content-Length: it describes the representation.
        let keep_length = head.is_head() || resp.status == 304;
        write::response_head(&mut out, &resp, framing, head.version, keep, keep_length);
        self.status = resp.status;
        let relayed = self.relay_body(&mut f, body, up_body, framing, out).await;
        match relayed {
            Ok(()) => {
                if !body.done {
                    // The response ended before the request body: stop sending, close
                    // the upstream connection, drain what the client still sends.
                    self.linger = true;
                }
                let upstream_keep = resp.reusable_after(no_body)
                    && body.done
                    && f.pump.is_none()
                    && f.sent_all
                    && f.ubuf.is_empty();
                if upstream_keep {
                    self.ctx.upstreams.release(f.lease);
                }
                Ok(if keep { Next::KeepAlive } else { Next::Close })
            }
            Err(e) => {
                // The head is out: the only honest signal left is closing the connection.
                debug!(peer = %self.peer, error = %e, "response aborted");
                if e.side == Side::Upstream {
                    self.ctx.metrics.upstream_error(e.kind);
                }
                Ok(Next::Close)
            }
        }
    }

    /// Copies the body from the upstream to the client; `out` holds the response head.
    async fn relay_body(
        &mut self,
        f: &mut Flow,
        body: &mut RequestBody,
        kind: BodyKind,
        framing: ClientFraming,
        mut out: BytesMut,
    ) -> Result<(), ProxyError> {
        let chunked_out = framing == ClientFraming::Chunked;
        match kind {
            BodyKind::Empty => self.write_client(out.freeze()).await,
            BodyKind::Length(n) => {
                let mut remaining = n;
                loop {
                    let take = (f.ubuf.len() as u64).min(remaining) as usize;
                    remaining -= take as u64;
                    if out.is_empty() {
                        out = f.ubuf.split_to(take);
                    } else {
                        out.extend_from_slice(&f.ubuf.split_to(take));
                    }
                    if !out.is_empty() {
                        self.write_client(out.split().freeze()).await?;
                    }
                    if remaining == 0 {
                        return Ok(());
                    }
                    // Splice needs the whole upstream socket: not while the body flows.
                    if f.ubuf.is_empty() && f.pump.is_none() && self.splice_wanted(n) {
                        return self.splice_to_client(&mut f.lease, remaining).await;
                    }
                    let want = (remaining as usize).min(BODY_READ);
                    if self.pull(f, body, want).await? == 0 {
                        return Err(ProxyError::new(
                            Side::Upstream,
                            Kind::UpstreamClosed,
                            "upstream closed mid-body",
                        ));
                    }
                }
            }
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::response();
                loop {
                    loop {
                        let chunk = dec.decode(&mut f.ubuf).map_err(|r| {
                            ProxyError::new(Side::Upstream, Kind::UpstreamProtocol, r.reason)
                        })?;
                        match chunk {
                            Chunk::Data(d) if chunked_out => encode_chunk(&mut out, &d),
                            Chunk::Data(d) => out.extend_from_slice(&d),
                            Chunk::NeedMore => break,
                            Chunk::Done => {
                                if chunked_out {
                                    out.extend_from_slice(LAST_CHUNK);
                                }
                                return self.write_client(out.freeze()).await;
                            }
                        }
                    }
                    if !out.is_empty() {
                        self.write_client(out.split().freeze()).await?;
                    }
                    if self.pull(f, body, BODY_READ).await? == 0 {
                        return Err(ProxyError::new(
                            Side::Upstream,
                            Kind::UpstreamClosed,
                            "upstream closed mid-chunked-body",
                        ));
                    }
                }
            }
            BodyKind::UntilClose => loop {
                if chunked_out {
                    encode_chunk(&mut out, &f.ubuf.split());
                } else {
                    out.extend_from_slice(&f.ubuf.split());
                }
                if !out.is_empty() {
                    self.write_client(out.split().freeze()).await?;
                }
                if self.pull(f, body, BODY_READ).await? == 0 {
                    if chunked_out {
                        self.write_client(Bytes::from_static(LAST_CHUNK)).await?;
                    }
                    return Ok(());
                }
            },
        }
    }
}

/// One request on one upstream connection.
pub(super) struct Flow {
    lease: Lease,
    /// Response bytes read and not yet used.
    ubuf: BytesMut,
    /// The request body while it is still flowing upstream.
    pump: Option<Pump>,
    /// Every request byte was written to the upstream.
    sent_all: bool,
    /// A response (1xx included) has arrived: the request was seen.
    answered: bool,
}

/// Methods a proxy may send again after a failure (RFC 9110 §9.2.2).
fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// Reads from the upstream within `read_timeout_ms`. Resets count as closes.
pub(super) async fn upstream_read(
    lease: &mut Lease,
    buf: &mut BytesMut,
    want: usize,
) -> Result<usize, ProxyError> {
    let t = lease.upstream().read_timeout;
    let r = monoio::time::timeout(t, lease.stream.read(buf, want)).await;
    ProxyError::timed(r, READ_FAILED, READ_TIMED_OUT)
}

/// Writes to the upstream within `write_timeout_ms`.
pub(super) async fn upstream_write(lease: &mut Lease, data: Bytes) -> Result<(), ProxyError> {
    let t = lease.upstream().write_timeout;
    let r = monoio::time::timeout(t, lease.stream.write(data)).await;
    ProxyError::timed(r, WRITE_FAILED, WRITE_TIMED_OUT)
}

pub(super) const READ_FAILED: ProxyError =
    ProxyError::new(Side::Upstream, Kind::UpstreamClosed, "upstream read failed");
pub(super) const READ_TIMED_OUT: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamTimeout,
    "upstream did not answer within read_timeout",
);
pub(super) const WRITE_FAILED: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamClosed,
    "upstream write failed",
);
pub(super) const WRITE_TIMED_OUT: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamTimeout,
    "upstream did not read within write_timeout",
);
pub(super) const BODY_READ_FAILED: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "body read failed");
pub(super) const BODY_STALLED: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "request body stalled beyond client_body_timeout",
);
