//! One exchange: request → policies → route → upstream → response sink → [`Outcome`].
//!
//! The steps, in order ([`crate::policy`] documents the policy phases): the client's
//! identity fields; a `redirect_https` listener's redirect (nothing else runs); the
//! request target checked; the route (none → 404); the route's request policies
//! ([`policy::request_phases`]; the route's body limit also bounds a streamed body, see
//! [`super::upstream_io::Upload`]); then the upstream. A policy that answers, a failure
//! and a relayed response all end in [`Exchange::finish`], the one place the
//! [`Outcome`] is completed and a policy rejection counted
//! (`ringgate_policy_rejections_total`) and logged (debug).
//!
//! The request's path is normalised ([`crate::uri`]; refused → 400) and, under
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

use super::duplex::{self, Pump};
use super::splice;
use super::upstream_io::{BODY_READ, Upload, upstream_write};
use super::{Ask, BodySource, Next, Outcome, ResponseSink, Timings};
use crate::clock;
use crate::config::{HttpSettings, MalformedForwarding};
use crate::context::WorkerCtx;
use crate::error::{Kind, ProxyError, Side};
use crate::forwarding;
use crate::generation::Generation;
use crate::identity_headers::{self, IdentityHeaders};
use crate::message::{BodyLength, Fault, GatewayResponse, Request};
use crate::policy::headers::{HeaderPolicy, ResponsePolicies};
use crate::policy::{self, Rejection, Verdict, body_size, redirect};
use crate::route::{RequestView, Selected};
use crate::upstream::Lease;
use crate::upstream::h1::{self, Piece, ResponseReader};
use crate::uri::{self, PathReject};

mod h2;
mod upgrade;

use upgrade::Admitted;

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
        rejected: None,
        upgrade: None,
    };
    // accept-policies: `trusted_proxies` (X-Forwarded-For → the client address policies,
    // forwarding fields and logs use). The lead moves this onto the policy phase runner.
    let listener = generation.listener_policies.get(req.client.listener);
    policy::ip::real_client_step(&mut req, listener.and_then(|p| p.trusted_proxies.as_ref()));
    identity_step(&mut req, generation);
    let next = match x.before_upstream(&mut req, session) {
        Step::Forward(selected, delay) => {
            if let Some(d) = delay {
                x.ctx.metrics.rate_limit_delayed.inc();
                // Boxed: only delayed requests pay for the timer's room. Nothing is held
                // across it: dropping the exchange here loses nothing.
                Box::pin(monoio::time::sleep(d)).await;
            }
            x.run(&req, selected, session).await
        }
        Step::Preflight(answer) => Box::pin(x.answer_preflight(session, &req, answer)).await,
        Step::Answer(v) => x.verdict(v, &req, session).await,
        Step::Fail(e) => x.fail(e, &req, session).await,
    };
    x.finish(&req, next)
}

const CONNECT_TO_H2: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::BadRequest(Fault::ConnectProtocol),
    "extended CONNECT to an HTTP/2 upstream is not supported",
);

/// Where a request goes after the steps before the upstream.
enum Step<'g> {
    /// To the upstream of this route, after the rate limits' delay if any.
    Forward(Selected<'g>, Option<std::time::Duration>),
    /// A CORS preflight the gateway answers (204).
    Preflight(GatewayResponse),
    /// A policy answers (redirect, no route, a request phase's refusal).
    Answer(Verdict),
    /// Refused before routing (the target or forwarding fields: 400).
    Fail(ProxyError),
}

/// A plain listener's identity settings: nothing to add, claims still removed.
static PLAIN_LISTENER: IdentityHeaders = IdentityHeaders::DEFAULT;

/// The client-identity step ([`identity_headers::apply`]): the client's identity claims
/// removed, the connection's verified identity added, as the listener's
/// `client_identity_headers` say (a plain listener: claims removed only).
fn identity_step(req: &mut Request, generation: &Generation) {
    let settings = generation
        .listener(req.client.listener)
        .identity
        .as_ref()
        .unwrap_or(&PLAIN_LISTENER);
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
struct Exchange<'a> {
    ctx: &'a WorkerCtx,
    generation: &'a Arc<Generation>,
    status: u16,
    upload: Upload,
    bytes_out: u64,
    connected: Option<Instant>,
    first_byte: Option<Instant>,
    route: Option<usize>,
    upstream: Option<std::net::SocketAddr>,
    error: Option<Kind>,
    rejected: Option<Rejection>,
    /// The protocol an upgrade request switches to, once admitted ([`upgrade`]), with its
    /// place among the worker's tunnels and the route's idle timeout.
    upgrade: Option<Box<Admitted>>,
}

/// One request on one upstream connection.
struct Flow {
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
    /// The request's steps up to the upstream (see the module doc), without I/O: where
    /// the request goes next. (Not an async fn of its own: the upstream steps are
    /// awaited straight from [`exchange`], one future level less on every poll.)
    fn before_upstream<'g, S: ResponseSink>(&mut self, req: &mut Request, s: &S) -> Step<'g>
    where
        'a: 'g,
    {
        let generation: &'g Generation = self.generation;
        if let Some(to) = &generation.listener(req.client.listener).redirect_https {
            return Step::Answer(redirect::check(req, to, &generation.policies.https_hosts));
        }
        if let Err(e) = admit(req, &generation.config.http) {
            return Step::Fail(e);
        }
        // `OPTIONS *` is about the server as a whole: routed as `/`, forwarded as `*`.
        let route_path: &[u8] = if req.path.as_ref() == b"*" {
            b"/"
        } else {
            &req.path
        };
        let Some(selected) =
            generation
                .router
                .select(req.authority.as_deref(), route_path, RequestView::of(req))
        else {
            return Step::Answer(Verdict::refuse(
                Rejection::NoRoute,
                Kind::NoRoute,
                "no route for this host and path",
            ));
        };
        self.route = Some(selected.route.index);
        // A CORS preflight is answered right after routing, before any other route
        // policy (browsers send no credentials on it).
        if let Some(cors) = &selected.route.cors
            && let Some(head) = policy::cors::preflight(cors, req)
        {
            return Step::Preflight(head);
        }
        let http = &generation.config.http;
        let phases = policy::request_phases(req, selected.route, http, &generation.rate_limits);
        if let v @ Verdict::Respond(..) = phases.verdict {
            return Step::Answer(v);
        }
        // An HTTP/2 upstream takes no HTTP/1.1 Upgrade: an HTTP/1.1 upgrade goes as plain
        // HTTP, as one to a route without the protocol; an extended CONNECT (RFC 8441
        // towards HTTP/2 upstreams is not built) is refused with 501.
        let upstream_h1 = generation.config.upstreams[selected.route.upstream].protocol
            == crate::config::UpstreamProtocol::Http1;
        let ask = s.upgrade_asked();
        if !upstream_h1 && ask == Ask::ExtendedConnect {
            return Step::Fail(CONNECT_TO_H2);
        }
        if upstream_h1
            && ask != Ask::No
            && let Some(step) = self.admit_upgrade(req, selected.route, http, ask)
        {
            return step;
        }
        // Request header rules: the listener's, then the route's.
        let listener_headers = listener_headers(generation, req);
        policy::headers::on_request(listener_headers, Some(&selected.route.headers), req);
        self.upload.limit = body_size::limit(selected.route, http);
        Step::Forward(selected, phases.delay)
    }

    /// The one finish point: every exit path of the exchange passes here, where the
    /// [`Outcome`] is completed and a policy's rejection counted and logged.
    fn finish(self, req: &Request, next: Next) -> Outcome {
        if let Some(r) = self.rejected {
            self.ctx.metrics.policy_rejection(r);
            debug!(
                client = %req.client.addr,
                policy = r.policy(),
                reason = r.reason(),
                status = self.status,
                "request answered by a policy"
            );
        }
        Outcome {
            status: self.status,
            bytes_in: self.upload.bytes,
            bytes_out: self.bytes_out,
            timings: Timings {
                received: req.received,
                connected: self.connected,
                first_byte: self.first_byte,
                done: clock::now(),
            },
            route: self.route,
            upstream: self.upstream,
            error: self.error,
            rejected: self.rejected,
            next,
        }
    }

    /// Forwards a routed request whose policies let it through.
    async fn run<S: BodySource + ResponseSink>(
        &mut self,
        req: &Request,
        selected: Selected<'_>,
        s: &mut S,
    ) -> Next {
        let generation = self.generation;
        let config = &generation.config;
        let asterisk = req.path.as_ref() == b"*";
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
        // The one dispatch point between the upstream wires.
        if upstream.protocol == crate::config::UpstreamProtocol::H2 {
            return Box::pin(self.run_h2(req, group, up_path, s)).await;
        }
        let mut first = BytesMut::with_capacity(REQUEST_HEAD_CAPACITY);
        let fallback_host = &upstream.servers[0].host_header;
        let forward = config.http.forward;
        let framing = match &self.upgrade {
            None => h1::request_head(&mut first, req, up_path, fallback_host, forward),
            Some(u) => {
                let (protocol, key) = (&u.protocol, u.key.as_ref().map(|k| k.as_bytes()));
                h1::upgrade_request_head(
                    &mut first,
                    req,
                    up_path,
                    fallback_host,
                    forward,
                    protocol,
                    key,
                )
            }
        };
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

    /// A response of the proxy's own; `request_broken` as in [`ResponseSink::respond`].
    async fn answer<S: ResponseSink>(
        &mut self,
        s: &mut S,
        req: &Request,
        mut response: GatewayResponse,
        request_broken: bool,
    ) -> Next {
        if req.is_grpc() {
            // A gRPC client reads the status from grpc-status, not the HTTP status.
            response = response.grpc();
        }
        self.status = response.status;
        // The response phases: header rules and security headers on the gateway's own
        // answers too (nginx's `add_header … always`).
        let policies = self.response_policies(req);
        if !policies.is_empty() {
            policies.apply(req, &mut response.headers);
        }
        // Boxed, like every rare branch here: an async fn's state is as large as its
        // largest await point, and the whole exchange future is moved into place for
        // every request (a memcpy of its size).
        match Box::pin(s.respond(response, request_broken)).await {
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Close,
        }
    }

    /// Sends a policy's answer (`Continue` sends nothing). The connection stays usable
    /// as far as the exchange knows: the session keeps it only if the request body was
    /// read whole.
    fn verdict<'s, S: ResponseSink>(
        &'s mut self,
        v: Verdict,
        req: &'s Request,
        s: &'s mut S,
    ) -> Pin<Box<dyn Future<Output = Next> + 's>> {
        Box::pin(async move {
            match v {
                Verdict::Continue => Next::KeepAlive,
                Verdict::Respond(rejection, response) => {
                    self.rejected = Some(rejection);
                    self.answer(s, req, response, false).await
                }
            }
        })
    }

    /// Records a failure in the outcome: its kind, and a body over its limit as the body
    /// size policy's rejection.
    fn failed_with(&mut self, e: &ProxyError) {
        self.error = Some(e.kind);
        if e.kind == Kind::BodyTooLarge {
            self.rejected = Some(Rejection::BodyStreamedTooLarge);
        }
    }

    /// A CORS preflight's 204, a gateway answer like the others: the response step but
    /// for the CORS fields the answer already has.
    async fn answer_preflight<S: ResponseSink>(
        &mut self,
        s: &mut S,
        req: &Request,
        mut response: GatewayResponse,
    ) -> Next {
        self.status = response.status;
        let policies = ResponsePolicies {
            cors: None,
            ..self.response_policies(req)
        };
        policies.apply(req, &mut response.headers);
        match Box::pin(s.respond(response, false)).await {
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Close,
        }
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
        self.failed_with(&e);
        match e.response() {
            // After an upstream failure the client's connection is still in order.
            Some(response) => {
                self.answer(s, req, response, e.side != Side::Upstream)
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
                    // The response step runs on the switch too (nginx `add_header …
                    // always`, Envoy's response_headers_to_add).
                    let mut head = resp.head;
                    let policies = self.response_policies(req);
                    if !policies.is_empty() {
                        policies.apply(req, &mut head.headers);
                    }
                    return self.switch(f, head, s).await;
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
        let body = resp.body_length();
        // A body still arriving when the head goes out may never be read whole: the
        // session knows (an HTTP/1 early answer to an upload ends the connection).
        s.start(&resp.head, body);
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
                Ok(Next::KeepAlive)
            }
            Err(e) => Ok(self.relay_failed(req, &e)),
        }
    }

    /// A failure after the response head went out (either upstream wire): counted and
    /// logged; the only honest signal left to the client is closing the connection.
    fn relay_failed(&mut self, req: &Request, e: &ProxyError) -> Next {
        if e.side == Side::Upstream {
            self.upstream_failed(req, e);
        } else {
            debug!(client = %req.client.addr, error = %e, "response aborted");
        }
        self.failed_with(e);
        Next::Close
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
                && splice::wanted(&self.generation.config.http, splice_len)
                && let Some(client) = s.raw_socket()
            {
                let send_timeout = self.generation.config.http.send_timeout;
                let to_client =
                    splice::to_client(self.ctx, send_timeout, &mut f.lease, client, remaining);
                Box::pin(to_client).await?;
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
        let upload = &mut self.upload;
        let n = duplex::pumped_read(upload, lease, &mut rd.buf, pump, sent_all, s, want).await?;
        if n > 0 && self.first_byte.is_none() {
            self.first_byte = Some(clock::now());
        }
        Ok(n)
    }
}

/// Issue 22, branch policy-headers: the header settings of `req`'s listener.
fn listener_headers<'g>(generation: &'g Generation, req: &Request) -> &'g HeaderPolicy {
    &generation.listener(req.client.listener).headers
}

/// Methods a proxy may send again after a failure (RFC 9110 §9.2.2).
fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}
