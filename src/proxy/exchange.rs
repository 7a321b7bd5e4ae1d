//! One exchange: request → route → upstream → response sink → [`Outcome`].
//!
//! First the request's path is normalised ([`crate::uri`]; refused → 400) and, under
//! `malformed_forwarding_headers = "reject"`, its forwarding fields checked
//! ([`crate::forwarding`]; malformed → 400): everything after — routing, `strip_prefix`,
//! the head sent upstream — works on that one normalised path and one authority.
//!
//! The request body is forwarded as it arrives, never held whole: the bytes a session
//! already has travel with the head (up to [`FIRST_WRITE_BODY`]), the rest flows while
//! the response is read ([`super::duplex`]). The response is pushed to the sink as it
//! comes; bodies of known length at or over `splice_threshold_bytes` move in the kernel
//! when the sink's socket allows ([`super::splice`]). A pooled upstream connection that
//! fails before any response byte is retried once on a fresh connection — only for an
//! idempotent method (RFC 9110 §9.2.2) and while the whole request is still in hand.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::time::Instant;
use tracing::debug;

use super::duplex::Pump;
use super::{BodySource, Next, Outcome, ResponseSink, Timings};
use crate::clock::{self, Deadline};
use crate::config::{HttpSettings, MalformedForwarding};
use crate::context::WorkerCtx;
use crate::error::{Kind, ProxyError, Side};
use crate::forwarding;
use crate::generation::Generation;
use crate::http1::write::status_text;
use crate::identity_headers::{self, IdentityHeaders};
use crate::message::{BodyLength, Fault, Header, Request, ResponseHead};
use crate::observe::PolicyRejection;
use crate::policy::headers::{HeaderPolicy, ResponsePolicies};
use crate::policy::rate_limit;
use crate::policy::{self, Verdict};
use crate::route::RequestView;
use crate::upstream::Lease;
use crate::upstream::h1::{self, Piece, RequestFraming, ResponseReader};
use crate::uri::{self, PathReject};

/// Upstream read size while streaming a body (two TLS records' worth).
pub(super) const BODY_READ: usize = 32 * 1024;
/// Room reserved for the request head sent upstream: a browser's head plus the
/// forwarding fields fits; bigger heads grow the buffer once.
const REQUEST_HEAD_CAPACITY: usize = 1024;
/// Request body bytes sent together with the head (and kept for a retry).
const FIRST_WRITE_BODY: usize = 64 * 1024;
/// Responses with a body up to this long go out with their head in one write when the
/// upstream sent the two apart (one upstream read of waiting, at most).
const HOLD_HEAD_BODY_MAX: u64 = 64 * 1024;

/// Serves one request whose head a session has read, on `generation` (loaded by the
/// session when the head arrived; the exchange runs to its end on it). `session` is
/// the request body's source and the response's sink.
pub async fn exchange<S: BodySource + ResponseSink>(
    ctx: &WorkerCtx,
    generation: &Arc<Generation>,
    mut req: Request,
    session: &mut S,
) -> Outcome {
    let mut x = Exchange {
        ctx,
        generation,
        status: 0,
        upload: Upload::default(),
        bytes_out: 0,
        connected: None,
        first_byte: None,
        route: None,
        upstream: None,
        error: None,
    };
    // accept-policies: `trusted_proxies` (X-Forwarded-For → the client address policies,
    // forwarding fields and logs use). The lead moves this onto the policy phase runner.
    let listener = generation.listener_policies.get(req.client.listener);
    policy::ip::real_client_step(&mut req, listener.and_then(|p| p.trusted_proxies.as_ref()));
    identity_step(&mut req, generation);
    let next = match admit(&mut req, &generation.config.http) {
        Ok(()) => x.run(&mut req, session).await,
        Err(e) => x.fail(e, &req, session).await,
    };
    Outcome {
        status: x.status,
        bytes_in: x.upload.bytes,
        bytes_out: x.bytes_out,
        timings: Timings {
            received: req.received,
            connected: x.connected,
            first_byte: x.first_byte,
            done: clock::now(),
        },
        route: x.route,
        upstream: x.upstream,
        error: x.error,
        next,
    }
}

/// A plain listener's identity settings: nothing to add, claims still removed.
static PLAIN_LISTENER: IdentityHeaders = IdentityHeaders::DEFAULT;

/// The client-identity step ([`identity_headers::apply`]): the client's identity claims
/// removed, the connection's verified identity added, as the listener's
/// `client_identity_headers` say (a plain listener: claims removed only).
fn identity_step(req: &mut Request, generation: &Generation) {
    let settings = generation
        .config
        .listeners
        .get(req.client.listener)
        .and_then(|l| l.tls.as_ref())
        .map_or(&PLAIN_LISTENER, |t| &t.identity_headers);
    identity_headers::apply(req, settings);
}

/// Normalises the request's path in place — from here on it is what routes, what
/// policies see and what the upstream receives — and checks the forwarding fields the
/// proxy will extend (under `malformed_forwarding_headers = "reject"`). `Err`: the
/// refusal (400).
fn admit(req: &mut Request, http: &HttpSettings) -> Result<(), ProxyError> {
    if req.path.as_ref() != b"*" {
        let normalised = match uri::normalize(&req.path, http.path) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(p)) => Some(p),
            Err(r) => return Err(target_refused(r)),
        };
        if let Some(p) = normalised {
            req.path = Bytes::from(p);
        }
    }
    if http.malformed_forwarding == MalformedForwarding::Reject
        && let Some(reason) = forwarding::refusal(&req.headers, http.forward)
    {
        return Err(ProxyError::new(
            Side::Downstream,
            Kind::BadRequest(Fault::Forwarding),
            reason,
        ));
    }
    Ok(())
}

fn target_refused(r: PathReject) -> ProxyError {
    ProxyError::new(
        Side::Downstream,
        Kind::BadRequest(Fault::Target),
        r.reason(),
    )
}

/// The state of one exchange (what its [`Outcome`] is made of).
pub(super) struct Exchange<'a> {
    pub(super) ctx: &'a WorkerCtx,
    pub(super) generation: &'a Arc<Generation>,
    status: u16,
    pub(super) upload: Upload,
    bytes_out: u64,
    connected: Option<Instant>,
    first_byte: Option<Instant>,
    route: Option<usize>,
    upstream: Option<std::net::SocketAddr>,
    error: Option<Kind>,
}

/// The request body on its way upstream: its framing there, and how much went.
#[derive(Default)]
pub(super) struct Upload {
    framing: Option<RequestFraming>,
    /// The end of the body (a last chunk) is queued.
    ended: bool,
    /// Body bytes taken from the session.
    pub(super) bytes: u64,
}

impl Upload {
    /// Moves every body byte the session has into `out`, framed for the upstream, and
    /// the end of the body once the session has handed out the last byte.
    pub(super) fn take<S: BodySource>(
        &mut self,
        session: &mut S,
        out: &mut BytesMut,
    ) -> Result<(), ProxyError> {
        let Some(framing) = self.framing else {
            return Ok(());
        };
        let bytes = &mut self.bytes;
        session.take(|data| {
            *bytes += data.len() as u64;
            framing.push(out, data);
        })?;
        if session.is_done() && !self.ended {
            self.ended = true;
            framing.end(out);
        }
        Ok(())
    }
}

/// One request on one upstream connection.
pub(super) struct Flow {
    lease: Lease,
    /// The response as it is read.
    rd: ResponseReader,
    /// The request body while it is still flowing upstream.
    pump: Option<Pump>,
    /// Every request byte was written to the upstream.
    sent_all: bool,
    /// A response (1xx included) has arrived: the request was seen.
    answered: bool,
}

impl<'a> Exchange<'a> {
    async fn run<S: BodySource + ResponseSink>(&mut self, req: &mut Request, s: &mut S) -> Next {
        let generation = self.generation;
        let config = &generation.config;
        let limit = config.http.max_request_body_bytes;
        if let BodyLength::Known(n) = req.body
            && limit > 0
            && n > limit
        {
            self.error = Some(Kind::BodyTooLarge);
            return self
                .answer(s, req, 413, "request body larger than allowed", false)
                .await;
        }
        // `OPTIONS *` is about the server as a whole: routed as `/`, forwarded as `*`.
        let asterisk = req.path.as_ref() == b"*";
        let route_path: &[u8] = if asterisk { b"/" } else { &req.path };
        let Some(selected) =
            generation
                .router
                .select(req.authority.as_deref(), route_path, RequestView::of(req))
        else {
            return self
                .answer(s, req, 404, "no route for this host and path", true)
                .await;
        };
        self.route = Some(selected.route.index);
        // ── Issue 22, branch policy-headers (the lead re-places this on the phase runner):
        // a CORS preflight is answered right after routing, before any other route policy
        // (browsers send no credentials on it); the request header rules run once the
        // route is known.
        if let Some(cors) = &selected.route.cors
            && let Some(head) = policy::cors::preflight(cors, req)
        {
            return Box::pin(self.answer_preflight(s, req, head)).await;
        }
        let listener_headers = listener_headers(generation, req);
        policy::headers::on_request(listener_headers, Some(&selected.route.headers), req);
        let req: &Request = req;
        // ── end of issue 22's request step
        if let Some(rule) = &selected.route.client_cert
            && let Verdict::Refuse(e) = policy::client_cert::check(req.tls.as_deref(), rule)
        {
            return self.fail(e, req, s).await;
        }
        // accept-policies: the route's `allow` / `deny` (403), counted as
        // {policy="ip",reason="denied"}. The lead moves this onto the policy phase runner.
        if let Some(list) = &selected.route.ip
            && let Verdict::Refuse(e) = policy::ip::check_route(list, req.client.addr.ip())
        {
            self.ctx.metrics.policy_rejections[PolicyRejection::IpDenied as usize].inc();
            return self.fail(e, req, s).await;
        }
        // Rate limits (policy::rate_limit). Wired here by the rate-limit branch for its
        // tests; the lead moves it into policy-core's phase runner (after
        // authentication, before the body limit).
        if !selected.route.rate_limits.is_empty() {
            let limits = &generation.rate_limits;
            let now = rate_limit::now_ms();
            match rate_limit::check(limits, &selected.route.rate_limits, req, now) {
                rate_limit::Decision::Continue => {}
                rate_limit::Decision::Delay(d) => {
                    self.ctx.metrics.rate_limit_delayed.inc();
                    // Boxed: only delayed requests pay for the timer's room. Nothing is
                    // held across it: dropping the exchange here loses nothing.
                    Box::pin(monoio::time::sleep(d)).await;
                }
                rate_limit::Decision::Refuse(r) => return self.rate_limited(s, r).await,
            }
        }
        let group = selected.route.upstream;
        let upstream = &config.upstreams[group];
        let mut scratch = Vec::new();
        let up_path: &[u8] = if asterisk {
            &req.path
        } else {
            match selected.upstream_path(&req.path, &mut scratch) {
                Ok(p) => p,
                Err(r) => return self.fail(target_refused(r), req, s).await,
            }
        };
        let mut first = BytesMut::with_capacity(REQUEST_HEAD_CAPACITY);
        let fallback_host = &upstream.servers[0].host_header;
        let forward = config.http.forward;
        let framing = h1::request_head(&mut first, req, up_path, fallback_host, forward);
        self.upload.framing = Some(framing);
        // Body bytes already here travel with the head.
        let mut first_body = BytesMut::new();
        if let Err(e) = self.upload.take(s, &mut first_body) {
            return self.fail(e, req, s).await;
        }
        if first_body.len() <= FIRST_WRITE_BODY || s.is_done() {
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
                .acquire(generation, group, retried, None)
                .await
            {
                Ok(l) => l,
                Err(e) => return self.fail(e, req, s).await,
            };
            self.connected = Some(clock::now());
            self.upstream = Some(lease.server_addr());
            match self.forward(lease, req, &first, &first_body, s).await {
                Ok(next) => return next,
                Err(e) if e.retry && !retried => {
                    debug!(error = %e, "stale pooled upstream connection, retrying on a fresh one");
                    retried = true;
                }
                Err(e) => return self.fail(e, req, s).await,
            }
        }
    }

    /// A response of the proxy's own; `reusable` as in [`ResponseSink::respond`].
    async fn answer<S: ResponseSink>(
        &mut self,
        s: &mut S,
        req: &Request,
        status: u16,
        reason: &'static str,
        reusable: bool,
    ) -> Next {
        self.status = status;
        // ── Issue 22, branch policy-headers: with header policies, the gateway's own
        // answer carries them too (nginx `add_header … always`). The lead folds this into
        // the GatewayResponse path; without policies nothing changes.
        let policies = self.response_policies(req);
        if !policies.is_empty() {
            let mut head = ResponseHead {
                status,
                reason: Bytes::from_static(crate::http1::write::status_text(status).as_bytes()),
                headers: vec![
                    static_field(b"Server", b"ringgate"),
                    static_field(b"Content-Type", b"text/plain; charset=utf-8"),
                ],
            };
            policies.apply(req, &mut head.headers);
            let mut body = BytesMut::with_capacity(reason.len() + 1);
            body.extend_from_slice(reason.as_bytes());
            body.extend_from_slice(b"\n");
            return Box::pin(send_own(
                s,
                head,
                Some(body.freeze()),
                req.is_head(),
                reusable,
            ))
            .await;
        }
        // Boxed, like every rare branch here: an async fn's state is as large as its
        // largest await point, and the whole exchange future is moved into place for
        // every request (a memcpy of its size).
        Box::pin(s.respond(status, reason, reusable)).await
    }

    /// A rate limit's refusal: its status with `Retry-After` (policy-core's early
    /// answer with fields replaces this).
    fn rate_limited<'s, S: ResponseSink>(
        &'s mut self,
        s: &'s mut S,
        r: rate_limit::Refusal,
    ) -> Pin<Box<dyn Future<Output = Next> + 's>> {
        Box::pin(async move {
            let counter = match r.reason {
                rate_limit::Reason::Burst => PolicyRejection::RateLimitBurst,
                rate_limit::Reason::TableFull => PolicyRejection::RateLimitTableFull,
            };
            self.ctx.metrics.policy_rejections[counter.index()].inc();
            debug!(
                limit = r.limit,
                reason = r.reason.name(),
                "rate limit refused the request"
            );
            self.status = r.status;
            const BODY: &[u8] = b"too many requests\n";
            let head = ResponseHead {
                status: r.status,
                reason: Bytes::from_static(status_text(r.status).as_bytes()),
                headers: vec![
                    Header {
                        name: Bytes::from_static(b"retry-after"),
                        value: Bytes::from(r.retry_after_secs.to_string()),
                    },
                    Header {
                        name: Bytes::from_static(b"content-type"),
                        value: Bytes::from_static(b"text/plain; charset=utf-8"),
                    },
                ],
            };
            let next = s.start(&head, BodyLength::Known(BODY.len() as u64), false, true);
            s.data(Bytes::from_static(BODY));
            match s.finish().await {
                Ok(()) => next,
                Err(_) => Next::Close,
            }
        })
    }

    /// Issue 22, branch policy-headers: a CORS preflight's 204, with the response step
    /// but for the CORS fields the preflight's head already has.
    async fn answer_preflight<S: ResponseSink>(
        &mut self,
        s: &mut S,
        req: &Request,
        mut head: ResponseHead,
    ) -> Next {
        self.status = head.status;
        let policies = ResponsePolicies {
            cors: None,
            ..self.response_policies(req)
        };
        policies.apply(req, &mut head.headers);
        Box::pin(send_own(s, head, None, req.is_head(), true)).await
    }

    /// Issue 22, branch policy-headers: what the response step applies to `req`'s
    /// answer: its listener's settings and, once routed, its route's.
    fn response_policies(&self, req: &Request) -> ResponsePolicies<'a> {
        let generation: &'a Generation = self.generation;
        let route = self.route.and_then(|i| generation.config.routes.get(i));
        ResponsePolicies {
            listener: listener_headers(generation, req),
            route: route.map(|r| &r.headers),
            cors: route.and_then(|r| r.cors.as_ref()),
        }
    }

    /// Answers a failure that happened before any response head was sent.
    fn fail<'s, S: ResponseSink>(
        &'s mut self,
        e: ProxyError,
        req: &'s Request,
        s: &'s mut S,
    ) -> Pin<Box<dyn Future<Output = Next> + 's>> {
        Box::pin(self.failed(e, req, s))
    }

    async fn failed<S: ResponseSink>(&mut self, e: ProxyError, req: &Request, s: &mut S) -> Next {
        if e.side == Side::Upstream {
            self.upstream_failed(req, &e);
        } else {
            debug!(
                client = %req.client.addr,
                sni = req.tls.as_ref().and_then(|t| t.sni.as_deref()).unwrap_or("-"),
                error = %e,
                "exchange failed"
            );
        }
        self.error = Some(e.kind);
        match e.status() {
            // After an upstream failure the client's connection is still in order.
            Some(status) => {
                self.answer(s, req, status, e.reason, e.side == Side::Upstream)
                    .await
            }
            None => Next::Close,
        }
    }

    /// Counts and logs (warn, rate-limited) an upstream failure of this exchange.
    fn upstream_failed(&self, req: &Request, e: &ProxyError) {
        let (generation, route, server) = (self.generation, self.route, self.upstream);
        crate::observe::upstream_log::upstream_failed(
            &self.ctx.metrics,
            generation,
            route,
            server,
            req,
            e,
        );
    }

    /// Sends the request on `lease` and relays the response. `Err` only before the
    /// response head went to the client; afterwards failures close the connection.
    async fn forward<S: BodySource + ResponseSink>(
        &mut self,
        lease: Lease,
        req: &Request,
        first: &Bytes,
        first_body: &Bytes,
        s: &mut S,
    ) -> Result<Next, ProxyError> {
        // A retry may send the request a second time: only for idempotent methods
        // (RFC 9110 §9.2.2), and only while the whole request is still in hand.
        let replayable =
            lease.reused && s.is_done() && first_body.is_empty() && idempotent(&req.method);
        let stale = |e: ProxyError| if replayable { e.retryable() } else { e };
        let mut f = Flow {
            lease,
            rd: ResponseReader::default(),
            pump: None,
            sent_all: true,
            answered: false,
        };
        upstream_write(&mut f.lease, first.clone(), s.deadline())
            .await
            .map_err(stale)?;
        if !first_body.is_empty() || !s.is_done() {
            Box::pin(s.begin()).await?;
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
        let limits = f.lease.upstream().response_limits;
        let mut resp = loop {
            let resp = loop {
                match f.rd.head(&limits, req.is_head())? {
                    Some(resp) => break resp,
                    None => {
                        let e = match self.pull(&mut f, s, h1::HEAD_READ).await {
                            Ok(0) => ProxyError::new(
                                Side::Upstream,
                                Kind::UpstreamClosed,
                                "upstream closed before the response head",
                            ),
                            Ok(_) => continue,
                            Err(e) => e,
                        };
                        // Nothing came back on a pooled connection: closed under us.
                        let untouched = !f.answered && f.rd.buf.is_empty();
                        return Err(if untouched && e.kind == Kind::UpstreamClosed {
                            stale(e)
                        } else {
                            e
                        });
                    }
                }
            };
            // Any response byte, 1xx included, means the request was seen: no retry.
            f.answered = true;
            match resp.head.status {
                100 => continue,
                101 => {
                    return Err(ProxyError::new(
                        Side::Upstream,
                        Kind::UpstreamProtocol,
                        "upstream switched protocols without an Upgrade request",
                    ));
                }
                102..=199 => Box::pin(s.interim(&resp.head)).await?,
                _ => break resp,
            }
        };
        // ── Issue 22, branch policy-headers: the response step (header rules, CORS,
        // security headers) on the upstream's final head.
        let policies = self.response_policies(req);
        if !policies.is_empty() {
            policies.apply(req, &mut resp.head.headers);
        }
        let length_described = req.is_head() || resp.head.status == 304;
        let body = resp.body_length();
        // A body still arriving when the head goes out may never be read whole: the
        // session promises nothing (an early answer to an upload ends the connection).
        let next = s.start(&resp.head, body, length_described, s.is_done());
        self.status = resp.head.status;
        f.rd.start_body(&resp);
        let splice_len = match body {
            BodyLength::Known(n) => n,
            _ => 0,
        };
        match self.relay_body(&mut f, s, splice_len).await {
            Ok(()) => {
                let upstream_keep =
                    f.rd.reusable() && s.is_done() && f.pump.is_none() && f.sent_all;
                if upstream_keep {
                    self.ctx.upstreams.release(f.lease);
                }
                Ok(next)
            }
            Err(e) => {
                // The head is out: the only honest signal left is closing the connection.
                if e.side == Side::Upstream {
                    self.upstream_failed(req, &e);
                } else {
                    debug!(client = %req.client.addr, error = %e, "response aborted");
                }
                self.error = Some(e.kind);
                Ok(Next::Close)
            }
        }
    }

    /// Moves the response body from the upstream to the sink (which already holds the
    /// head); `splice_len` is the body's length when known.
    async fn relay_body<S: BodySource + ResponseSink>(
        &mut self,
        f: &mut Flow,
        s: &mut S,
        splice_len: u64,
    ) -> Result<(), ProxyError> {
        // A small body's head waits for the body's first bytes: an upstream that writes
        // the head and the body apart (nginx with sendfile: writev, then sendfile) would
        // otherwise cost the client two TLS records and two writes per response. Bodies
        // of unknown length (streams, server-sent events) never wait.
        let mut hold_head = splice_len > 0 && splice_len <= HOLD_HEAD_BODY_MAX;
        loop {
            loop {
                match f.rd.next_piece()? {
                    Piece::Data(d) => {
                        self.bytes_out += d.len() as u64;
                        hold_head = false;
                        s.data(d);
                    }
                    Piece::NeedMore => break,
                    Piece::Done => return s.finish().await,
                }
            }
            if std::mem::take(&mut hold_head) {
                let want = f.rd.want(BODY_READ);
                let pulled = self.pull(f, s, want).await;
                if !matches!(pulled, Ok(n) if n > 0) {
                    // No body came (a close, an error, a timeout): the head goes out
                    // first, as it would have without waiting, then the failure.
                    s.flush().await?;
                    if pulled? == 0 {
                        f.rd.closed()?;
                    }
                }
                continue;
            }
            s.flush().await?;
            // Splice needs the whole upstream socket: not while the request body flows.
            if let Some(remaining) = f.rd.unbuffered_remaining()
                && f.pump.is_none()
                && self.splice_wanted(splice_len)
                && let Some(client) = s.raw_socket()
            {
                Box::pin(self.splice_to_client(&mut f.lease, client, remaining)).await?;
                self.bytes_out += remaining;
                f.rd.skipped(remaining);
                continue;
            }
            let want = f.rd.want(BODY_READ);
            if self.pull(f, s, want).await? == 0 {
                f.rd.closed()?;
            }
        }
    }

    /// Reads more of the response (0: the upstream closed), moving the request body
    /// along while it is still flowing.
    async fn pull<S: BodySource + ResponseSink>(
        &mut self,
        f: &mut Flow,
        s: &mut S,
        want: usize,
    ) -> Result<usize, ProxyError> {
        let Flow {
            lease,
            rd,
            pump,
            sent_all,
            ..
        } = f;
        let n = self
            .pumped_read(lease, &mut rd.buf, pump, sent_all, s, want)
            .await?;
        if n > 0 && self.first_byte.is_none() {
            self.first_byte = Some(clock::now());
        }
        Ok(n)
    }
}

/// Issue 22, branch policy-headers: a listener that was never configured (a test's
/// generation without listeners) has no header settings.
static NO_HEADERS: HeaderPolicy = HeaderPolicy {
    security: None,
    request: Vec::new(),
    response: Vec::new(),
};

/// Issue 22, branch policy-headers: the header settings of `req`'s listener.
fn listener_headers<'g>(generation: &'g Generation, req: &Request) -> &'g HeaderPolicy {
    generation
        .config
        .listeners
        .get(req.client.listener)
        .map_or(&NO_HEADERS, |l| &l.headers)
}

fn static_field(name: &'static [u8], value: &'static [u8]) -> Header {
    Header {
        name: Bytes::from_static(name),
        value: Bytes::from_static(value),
    }
}

/// Issue 22, branch policy-headers: sends a response the gateway made, with `body`
/// (none for a 204; only its length for a HEAD request). A failed write closes.
async fn send_own<S: ResponseSink>(
    s: &mut S,
    mut head: ResponseHead,
    body: Option<Bytes>,
    head_request: bool,
    reusable: bool,
) -> Next {
    let next = match body {
        Some(b) if !head_request => {
            let next = s.start(&head, BodyLength::Known(b.len() as u64), false, reusable);
            s.data(b);
            next
        }
        Some(b) => {
            let len = Bytes::from(b.len().to_string());
            head.headers.push(Header {
                name: Bytes::from_static(b"Content-Length"),
                value: len,
            });
            s.start(&head, BodyLength::None, true, reusable)
        }
        None => s.start(&head, BodyLength::None, false, reusable),
    };
    match s.finish().await {
        Ok(()) => next,
        Err(_) => Next::Close,
    }
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
    deadline: &mut Deadline,
) -> Result<usize, ProxyError> {
    let t = lease.upstream().read_timeout;
    let r = deadline.within(t, lease.stream.read(buf, want)).await;
    ProxyError::timed(r, READ_FAILED, READ_TIMED_OUT)
}

/// Writes to the upstream within `write_timeout_ms`.
pub(super) async fn upstream_write(
    lease: &mut Lease,
    data: Bytes,
    deadline: &mut Deadline,
) -> Result<(), ProxyError> {
    let t = lease.upstream().write_timeout;
    let r = deadline.within(t, lease.stream.write(data)).await;
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
