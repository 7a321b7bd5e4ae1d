//! ⑤ The exchange: one request, whichever protocol brought it, from route to outcome.
//!
//! A session ([`crate::http1::server`], an HTTP/2 stream of [`crate::http2`])
//! reads a request head, turns it into a protocol-neutral [`Request`](crate::message::Request) and calls
//! [`exchange`] with itself as the [`BodySource`] (the request body, pulled as it
//! arrives) and the [`ResponseSink`] (the response head and body, pushed as they come;
//! the session frames them for its protocol). The exchange routes the request, leases
//! an upstream connection, sends the head, streams the request body while the response
//! is already read (full duplex, `duplex`), relays the response (spliced in the kernel
//! when the sink's socket carries bytes as they are, `splice`) and returns an
//! [`Outcome`]: status, bytes each way, timings, route, upstream, error, and what the
//! connection does next. An upgrade the route allows (`exchange/upgrade.rs`) goes upstream with its
//! `Upgrade`; after the upstream's `101` the upstream connection goes to the session
//! ([`ResponseSink::switch`]), the exchange returns [`Next::Tunnel`], and the session runs
//! the [`tunnel`] that copies bytes both ways until both sides closed.
//!
//! This module knows no HTTP/1 or HTTP/2 type: no version, no chunked coding, no
//! connection read buffer. The upstream's wire protocol is [`crate::upstream::h1`] or,
//! for `protocol = "h2"` upstreams, [`crate::upstream::h2`] (chosen at one point, in
//! `exchange::Exchange::run`). A gRPC request's (`content-type: application/grpc*`)
//! failures and policy answers go out as trailers-only gRPC responses (200 with
//! `grpc-status`, [`crate::status::grpc_code`]), and its `grpc-timeout` bounds the wait
//! on an h2 upstream (over it: DEADLINE_EXCEEDED).
//!
//! Status mapping for failures before a response head was sent (chosen by
//! [`ProxyError::status`]): a path that cannot be normalised ([`crate::uri`]) or a
//! malformed forwarding field under `malformed_forwarding_headers = "reject"` → 400, no
//! route → 404, a route's client-certificate requirement not met ([`crate::policy`])
//! → 403, a `redirect_https` listener asked for a host it does not serve → 421, request
//! body over the route's (else `[http]`) `max_request_body_bytes` → 413, client stalled → 408, malformed body framing → 400, upstream refused / reset /
//! garbage → 502, upstream timeout → 504, a local failure (no pipe) → 500; an upgrade
//! with a body → 400, a WebSocket upgrade from an origin the route's `websocket_origins`
//! does not list → 403, one more upgrade than `max_tunnels` → 503, a `101` not asked for
//! (or naming another protocol) → 502; for an HTTP/2 extended CONNECT (RFC 8441,
//! [`Ask::ExtendedConnect`]): a `:protocol` the route does not allow, or a route to an
//! HTTP/2 upstream → 501, no random bytes for the `Sec-WebSocket-Key` → 500, a `101`
//! without that key's `Sec-WebSocket-Accept` → 502. After the
//! head was sent, a failure ends the connection so the client can never mistake a
//! truncated body for a complete one. Nothing here blocks or panics on peer input.

mod duplex;
mod exchange;
mod splice;
pub mod tunnel;
mod upstream_io;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::clock::Deadline;
use crate::error::{Kind, ProxyError};
use crate::message::{BodyLength, GatewayResponse, ResponseHead};
use crate::policy::Rejection;
pub use exchange::exchange;
pub use tunnel::Upgraded;

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection (after the response went out).
    Close,
    /// Hand both byte streams over to a tunnel (an upgrade; the upstream connection is
    /// never pooled again).
    Tunnel,
}

/// The request body as a session delivers it: decoded (no framing left), pulled by the
/// exchange as the upstream takes it.
#[allow(async_fn_in_trait)] // used by generics on one thread: no Send bound wanted
pub trait BodySource {
    /// Every body byte has been handed out (a request without a body starts done).
    fn is_done(&self) -> bool;

    /// The exchange is about to send the body upstream and wait for it: a session whose
    /// client waits for `100 Continue` before sending it says so now.
    async fn begin(&mut self) -> Result<(), ProxyError>;

    /// Hands every body byte already received to `each`, without I/O. Errors are the
    /// client's (bad framing → 400, over `max_request_body_bytes` → 413).
    fn take(&mut self, each: impl FnMut(BytesMut)) -> Result<(), ProxyError>;

    /// Completes when more of the body can be received (buffered, or on the socket),
    /// within `client_body_timeout_ms`. Takes `&self`: it runs beside an upstream read.
    async fn ready(&self) -> Result<(), ProxyError>;

    /// Receives what the client sent (after [`BodySource::ready`]); then
    /// [`BodySource::take`] hands it out. The client closing mid-body is an error.
    async fn receive(&mut self) -> Result<(), ProxyError>;
}

/// Where the response goes: the session frames it for its protocol and connection.
#[allow(async_fn_in_trait)] // used by generics on one thread: no Send bound wanted
pub trait ResponseSink {
    /// An interim (1xx other than 100 and 101) response from the upstream; the session
    /// may drop it (an HTTP/1.0 client knows none).
    async fn interim(&mut self, head: &ResponseHead) -> Result<(), ProxyError>;

    /// Starts the final response (buffered until [`ResponseSink::flush`]). `body` is
    /// its length for the client. The session knows the rest itself: whether the head's
    /// Content-Length describes the representation rather than this message (a HEAD
    /// request, a 304: kept as sent), and — HTTP/1 — whether the connection stays open
    /// (it says so in the head).
    fn start(&mut self, head: &ResponseHead, body: BodyLength);

    /// Appends body bytes (buffered until [`ResponseSink::flush`]).
    fn data(&mut self, chunk: Bytes);

    /// The response's trailer fields (an HTTP/2 upstream's, e.g. `grpc-status`), after
    /// the last [`ResponseSink::data`] and before [`ResponseSink::finish`]. A session
    /// that cannot carry them (a Content-Length body, a client that did not send
    /// `TE: trailers`) drops them.
    fn trailers(&mut self, _fields: &[crate::message::Header]) {}

    /// Sends what is buffered, within `send_timeout_ms`.
    async fn flush(&mut self) -> Result<(), ProxyError>;

    /// Ends the body and sends what is buffered.
    async fn finish(&mut self) -> Result<(), ProxyError>;

    /// The socket that carries body bytes to the client as they are — plain TCP or kernel
    /// TLS, and a framing that adds nothing around them — for a splice; `None` otherwise.
    /// Only asked after a flush.
    fn raw_socket(&mut self) -> Option<&mut TcpStream>;

    /// The exchange's timer (HTTP/1: its connection's, one exchange at a time; HTTP/2:
    /// its stream's), which the exchange re-arms for its upstream reads and writes:
    /// they and the session's own timed steps for this exchange never wait at the same
    /// time.
    fn deadline(&mut self) -> &mut Deadline;

    /// Whether and how the client asked to switch protocols in a way this session can
    /// carry. The exchange then reads the `Upgrade` field against the route
    /// (`exchange/upgrade.rs`). A session that cannot tunnel keeps the default.
    fn upgrade_asked(&self) -> Ask {
        Ask::No
    }

    /// The upstream switched protocols: sends its `101` head to the client (HTTP/1.1:
    /// the `101` with the `Upgrade` field kept; HTTP/2: a `200` with the end-to-end
    /// fields) and keeps `tunnel` for the tunnel the session runs once the exchange
    /// returned [`Next::Tunnel`]. `Err`: the head could not be sent (the connection
    /// closes; `tunnel` is dropped, the upstream connection with it).
    async fn switch(&mut self, head: &ResponseHead, tunnel: Upgraded) -> Result<(), ProxyError> {
        let _ = (head, tunnel);
        Err(ProxyError::new(
            crate::error::Side::Internal,
            Kind::UpstreamProtocol,
            "this session cannot tunnel",
        ))
    }

    /// Answers with a response the proxy generated (an error, no route, a policy's
    /// answer with its extra fields), when no head went out yet. The session adds its
    /// framing (`Content-Length`, `Connection`) and `Server`. `request_broken`: the
    /// client's request itself failed (its body, framing or timing), so a session whose
    /// connection carries further requests ends it. `Err`: the answer could not be sent
    /// whole.
    async fn respond(
        &mut self,
        response: GatewayResponse,
        request_broken: bool,
    ) -> Result<(), ProxyError>;
}

/// How a client asked to switch protocols ([`ResponseSink::upgrade_asked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// It did not (or cannot here): the request is plain HTTP.
    No,
    /// HTTP/1.1 `Connection: upgrade` with an `Upgrade` field: a protocol the route
    /// does not allow is served as plain HTTP, the client's WebSocket handshake
    /// (`Sec-WebSocket-Key`, its `Accept`) is the client's and the upstream's.
    Upgrade,
    /// An HTTP/2 extended CONNECT (RFC 8441): the session put its `:protocol` in the
    /// request's `Upgrade` field and made the method `GET`. A protocol the route does
    /// not allow is refused (501: the client waits for a tunnel, never a page); for a
    /// WebSocket the gateway makes the `Sec-WebSocket-Key` and checks the upstream's
    /// `Sec-WebSocket-Accept` (a wrong one → 502).
    ExtendedConnect,
}

/// When each step of an exchange happened.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// The whole request head had arrived.
    pub received: Instant,
    /// An upstream connection was ready (leased from the pool or connected).
    pub connected: Option<Instant>,
    /// The first byte of the upstream's response arrived.
    pub first_byte: Option<Instant>,
    /// The exchange ended (the response sent, or the failure answered).
    pub done: Instant,
}

/// What an exchange did: for the session's next step, metrics and access logs.
#[derive(Debug)]
pub struct Outcome {
    /// The status sent to the client; 0 when none was (the client left first).
    pub status: u16,
    /// Request body bytes sent upstream (decoded: no framing); for a tunnel, the bytes
    /// the client sent through it (added by the session when the tunnel ends).
    pub bytes_in: u64,
    /// Response body bytes sent to the client (decoded: no framing; spliced included);
    /// for a tunnel, the bytes the upstream sent through it.
    pub bytes_out: u64,
    pub timings: Timings,
    /// The route taken: its index in the generation's routes.
    pub route: Option<usize>,
    /// The upstream server that answered (the last one tried).
    pub upstream: Option<SocketAddr>,
    /// What went wrong, if anything did.
    pub error: Option<Kind>,
    /// The policy that answered instead of the upstream, and why (its `policy()` and
    /// `reason()` are the access log's and the metric's labels).
    pub rejected: Option<Rejection>,
    /// As far as the exchange knows: `KeepAlive` when the response went out whole,
    /// `Close` when it was cut or could not be sent (the session adds its own reasons).
    pub next: Next,
}

#[cfg(test)]
mod tests;
