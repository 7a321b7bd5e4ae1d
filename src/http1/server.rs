//! ④ The HTTP/1.1 session: one client connection after its TLS handshake, from the
//! first request head to the close.
//!
//! It reads request heads (`client_header_timeout_ms`; idle keep-alive waits use
//! `keepalive_timeout_ms` and hold no read buffer), hands each request to the exchange
//! ([`crate::proxy::exchange`]) as a protocol-neutral [`Request`], and serves as the
//! exchange's [`BodySource`] (Content-Length counted, chunked decoded — strict CRLF, a
//! bare LF is a smuggling vector —, `100 Continue` sent when the body is first wanted)
//! and [`ResponseSink`] (the head rebuilt for HTTP/1.x; Content-Length passed through,
//! chunked or close-delimited bodies framed chunked for HTTP/1.1 clients and
//! close-delimited for HTTP/1.0 ones; keep-alive and `keepalive_requests` decided here).
//! Pipelined requests are served in order from the read buffer. A response that went out
//! before its request body was read whole ends the connection with a lingering close.
//!
//! Status mapping for what this module refuses: a malformed head → 400 (414/431 for its
//! limits, 501 unknown transfer coding, 505 version, 417 unknown expectation), a slow
//! head → 408, a malformed chunked body → 400, a body stalled beyond
//! `client_body_timeout_ms` → 408 (all through [`ProxyError::status`]); the answers to
//! heads it refuses carry the listener's response header rules and security headers
//! ([`policy::headers::on_session_answer`]). A client that closes mid-head or mid-body
//! gets nothing. Never blocks, never panics on peer input.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use monoio::time::Instant;
use tracing::debug;

use super::body::{Chunk, ChunkedDecoder, LAST_CHUNK, encode_chunk};
use super::parse::{self, BodyKind, HeadLimits, Parsed, RequestHead, Version};
use super::write::{self, ClientFraming};
use crate::clock::{self, Deadline};
use crate::context::WorkerCtx;
use crate::error::{Kind, ProxyError, Side};
use crate::generation::Generation;
use crate::message::{BodyLength, ClientInfo, GatewayResponse, Request, ResponseHead};
use crate::policy;
use crate::proxy::{self, BodySource, Next, ResponseSink};
use crate::transport::ClientStream;
use crate::transport::tls::TlsInfo;

/// Read size for request heads; heads grow the buffer only when they need to.
const HEAD_READ: usize = 4096;
/// Request body read size (two TLS records).
const BODY_READ: usize = 32 * 1024;
/// Room for a response the proxy generates (status line, four fields, a one-line body;
/// more fields grow it once).
const SIMPLE_RESPONSE_CAPACITY: usize = 256;
/// Room reserved for a relayed response head; bigger heads grow the buffer once.
const RESPONSE_HEAD_CAPACITY: usize = 512;

/// Serves HTTP/1.1 on a connection whose handshake (if any) is done, to its end. `rbuf`
/// holds plaintext already read (bytes rustls decrypted before a kTLS switch).
pub async fn serve(
    stream: ClientStream,
    tls: Option<Rc<TlsInfo>>,
    peer: SocketAddr,
    scheme: &'static str,
    listener: usize,
    ctx: Rc<WorkerCtx>,
    rbuf: BytesMut,
) {
    let mut session = Session {
        generation: ctx.live.load_full(),
        stream,
        client: ClientInfo::new(peer, scheme).on_listener(listener),
        ctx,
        rbuf,
        served: 0,
        linger: false,
        tls,
        deadline: Deadline::new(),
        tunnel: None,
    };
    session.run().await;
}

/// One client connection speaking HTTP/1.x.
struct Session {
    /// The generation of the current exchange (loaded when its head arrived).
    generation: Arc<Generation>,
    stream: ClientStream,
    /// The client for the forwarding headers (its address formatted once).
    client: ClientInfo,
    ctx: Rc<WorkerCtx>,
    /// Bytes read from the client and not yet used (pipelined requests, body bytes).
    rbuf: BytesMut,
    served: u64,
    /// The last response went out before the request body was read whole: close with a
    /// lingering close, so the client can read it before the connection goes.
    linger: bool,
    /// What the TLS handshake settled (`None` on a plain listener).
    tls: Option<Rc<TlsInfo>>,
    /// The connection's timer: its idle wait, head and body reads and writes, and its
    /// exchanges' upstream steps, one at a time.
    deadline: Deadline,
    /// The upstream connection after a `101`, for the tunnel that follows the exchange.
    tunnel: Option<Box<proxy::Upgraded>>,
}

impl Session {
    async fn run(&mut self) {
        // An idle keep-alive connection waits in `wait_for_request`, whose state is
        // small; everything a request needs (the head read, the exchange with its
        // upstream lease, buffers and body pump) lives in one boxed future per request,
        // freed when the request ends. An async fn's state is as large as its largest
        // await point, so without the box every idle connection would carry room for a
        // whole exchange (measured: 5.9 kB of a 10 kB idle connection before).
        while self.wait_for_request().await {
            if Box::pin(self.serve_one()).await != Next::KeepAlive {
                break;
            }
        }
        // The close steps are boxed (once per connection) so that their state — a TLS
        // close_notify write, the lingering reads — does not size the future every idle
        // connection holds.
        let http = &self.generation.config.http;
        if self.linger {
            let (per_read, total) = (http.lingering_timeout, http.lingering_time);
            let linger = Box::pin(self.stream.linger(per_read, total));
            let _ = self.deadline.within(http.send_timeout, linger).await;
        } else {
            let shutdown = Box::pin(self.stream.shutdown());
            let _ = self.deadline.within(http.send_timeout, shutdown).await;
        }
    }

    /// Reads one request head and serves it; what the connection does next.
    async fn serve_one(&mut self) -> Next {
        let head = match self.read_head().await {
            Ok(Some(h)) => h,
            Ok(None) => return Next::Close,
            Err(e) => {
                debug!(client = %self.client.addr, error = %e, "request head refused");
                if let Some(response) = self.own_answer(&e) {
                    let status = response.status;
                    let started = clock::now();
                    let mut out = BytesMut::with_capacity(SIMPLE_RESPONSE_CAPACITY);
                    write::gateway_response(&mut out, &response, Version::Http11, false, true);
                    let _ = Box::pin(self.write(out.freeze())).await;
                    let took = clock::now().saturating_duration_since(started);
                    self.ctx.metrics.request_done(status, took);
                }
                return Next::Close;
            }
        };
        self.served += 1;
        // The exchange starts: it runs to its end on the generation current now.
        self.generation = self.ctx.live.load_full();
        let generation = self.generation.clone();
        let received = clock::now();
        let ctx = self.ctx.clone();
        let (req, mut x) = self.split(head, received);
        let mut outcome = proxy::exchange(&ctx, &generation, req, &mut x).await;
        let body_done = x.body.done;
        // The exchange's view (the response went out whole) and this session's (what
        // the head said about the connection).
        let next = match outcome.next {
            Next::KeepAlive if x.keep => Next::KeepAlive,
            Next::KeepAlive => Next::Close,
            other => other,
        };
        drop(x);
        if let Some(tunnel) = self.tunnel.take() {
            // The exchange ends when the tunnel does: its bytes each way are the
            // exchange's (the access log and metrics read them).
            self.tunnel(tunnel, &mut outcome).await;
            let took = clock::now().saturating_duration_since(received);
            self.ctx.metrics.request_done(outcome.status, took);
            return Next::Close;
        }
        if !body_done && next != Next::KeepAlive {
            // The response ended before the request body: drain what the client still
            // sends.
            self.linger = true;
        }
        let took = outcome.timings.done.saturating_duration_since(received);
        self.ctx.metrics.request_done(outcome.status, took);
        next
    }

    /// The answer to a head refused before any exchange, with the listener's response
    /// header rules and security headers (nginx's `add_header … always`).
    fn own_answer(&self, e: &ProxyError) -> Option<GatewayResponse> {
        let mut response = e.response()?;
        let generation = self.ctx.live.load();
        let listener = &generation.listener(self.client.listener).headers;
        let https = self.client.proto == "https";
        policy::headers::on_session_answer(listener, https, &mut response.headers);
        Some(response)
    }

    /// Runs the tunnel of an upgraded exchange to its end ([`proxy::tunnel`]) and adds
    /// what it carried to `outcome`. Boxed and out of line: the request path without an
    /// upgrade carries neither its state nor its code.
    #[inline(never)]
    fn tunnel<'s>(
        &'s mut self,
        tunnel: Box<proxy::Upgraded>,
        outcome: &'s mut proxy::Outcome,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 's>> {
        Box::pin(async move {
            let send_timeout = self.generation.config.http.send_timeout;
            let ctx = self.ctx.clone();
            let (stream, rbuf) = (&mut self.stream, &mut self.rbuf);
            let carried = proxy::tunnel::run(&ctx, send_timeout, stream, rbuf, *tunnel).await;
            outcome.bytes_in += carried.to_upstream;
            outcome.bytes_out += carried.to_client;
        })
    }

    /// The protocol-neutral request, and this session's side of its exchange.
    fn split(&mut self, head: RequestHead, received: Instant) -> (Request, H1Exchange<'_>) {
        let path = head.path();
        let body = match head.body {
            BodyKind::Length(n) => BodyLength::Known(n),
            BodyKind::Chunked => BodyLength::Unknown,
            BodyKind::Empty | BodyKind::UntilClose => BodyLength::None,
        };
        let x = H1Exchange {
            te_trailers: head.te_trailers,
            ended: false,
            body: RequestBody::new(head.body),
            head_request: head.method.as_ref() == b"HEAD",
            version: head.version,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            framing: ClientFraming::NoBody,
            out: BytesMut::new(),
            tail: None,
            upgrade: head.connection_upgrade,
            keep: false,
            session: self,
        };
        let req = Request {
            method: head.method,
            scheme: x.session.client.proto,
            authority: head.host,
            authority_sent: head.authority,
            path,
            headers: head.headers,
            body,
            client: x.session.client,
            tls: x.session.tls.clone(),
            received,
        };
        (req, x)
    }

    /// Waits until the next request can be read: bytes buffered (pipelined) or on the
    /// socket. `false`: the connection ends quietly (client closed, idle timeout, the
    /// worker draining), like nginx, without a word.
    async fn wait_for_request(&mut self) -> bool {
        if !self.rbuf.is_empty() || self.stream.has_buffered() {
            return true;
        }
        if self.served > 0 {
            // Idle keep-alive: hold no read buffer while nothing arrives.
            self.rbuf = BytesMut::new();
            self.stream.release_buffers();
        }
        if self.ctx.draining.is_raised() {
            return false;
        }
        // From the current generation, not the last exchange's (a short look at the
        // pointer, not held while waiting).
        let idle = {
            let http = &self.ctx.live.load().config.http;
            if self.served == 0 {
                http.client_header_timeout
            } else {
                http.keepalive_timeout
            }
        };
        let ready = monoio::select! {
            r = self.deadline.within(idle, self.stream.readable()) => r,
            _ = self.ctx.draining.wait() => return false,
        };
        matches!(ready, Ok(Ok(())))
    }

    /// Reads the next request head (bytes are there or on their way). `Ok(None)`: the
    /// client closed or stayed silent before sending a byte of it.
    async fn read_head(&mut self) -> Result<Option<RequestHead>, ProxyError> {
        let (limits, header_timeout) = {
            let generation = self.ctx.live.load();
            let http = &generation.config.http;
            let limits = HeadLimits {
                max_request_line: http.max_request_line_bytes,
                max_head_bytes: http.max_header_bytes,
                max_headers: http.max_headers,
            };
            (limits, http.client_header_timeout)
        };
        // One limit for the whole head, however many reads it takes.
        let deadline = clock::now() + header_timeout;
        loop {
            if !self.rbuf.is_empty() {
                match parse::parse_request(&self.rbuf, &limits) {
                    Parsed::Complete(raw, used) => {
                        return parse::take_request(&mut self.rbuf, raw, used)
                            .map(Some)
                            .map_err(bad_request);
                    }
                    Parsed::Incomplete => {}
                    Parsed::Invalid(r) => return Err(bad_request(r)),
                }
            }
            let left = deadline.saturating_duration_since(clock::now());
            let read = (self.deadline)
                .within(left, self.stream.read(&mut self.rbuf, HEAD_READ))
                .await;
            match read {
                Ok(Ok(0)) if self.rbuf.is_empty() => return Ok(None),
                Ok(Ok(0)) => return Err(CLOSED_MID_HEAD),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(ProxyError::io(
                        Side::Downstream,
                        Kind::ClientGone,
                        "read failed",
                        e,
                    ));
                }
                Err(_) if self.rbuf.is_empty() => return Ok(None),
                Err(_) => return Err(HEAD_TIMED_OUT),
            }
        }
    }

    /// Writes to the client within `send_timeout_ms`.
    async fn write(&mut self, data: Bytes) -> Result<(), ProxyError> {
        let t = self.generation.config.http.send_timeout;
        let r = self.deadline.within(t, self.stream.write(data)).await;
        ProxyError::timed(r, WRITE_FAILED, SEND_TIMED_OUT)
    }

    /// Reads more of the request body within `client_body_timeout_ms`.
    async fn read_body(&mut self, want: usize) -> Result<(), ProxyError> {
        let t = self.generation.config.http.client_body_timeout;
        let r = self
            .deadline
            .within(t, self.stream.read(&mut self.rbuf, want))
            .await;
        match ProxyError::timed(r, BODY_READ_FAILED, BODY_STALLED)? {
            0 => Err(CLOSED_MID_BODY),
            _ => Ok(()),
        }
    }
}

fn bad_request(r: parse::Reject) -> ProxyError {
    ProxyError::new(Side::Downstream, Kind::BadRequest(r.fault), r.reason)
}

const CLOSED_MID_HEAD: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "closed mid-head");
const HEAD_TIMED_OUT: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "request head not received within client_header_timeout",
);
const WRITE_FAILED: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "write failed");
const SEND_TIMED_OUT: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "client did not read within send_timeout",
);
const CLOSED_MID_BODY: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "closed mid-body");
const BODY_READ_FAILED: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "body read failed");
const BODY_STALLED: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "request body stalled beyond client_body_timeout",
);

/// Progress of the request body.
struct RequestBody {
    kind: BodyKind,
    /// Content-Length bytes still to read from the client.
    remaining: u64,
    decoder: Option<ChunkedDecoder>,
    /// Total body bytes seen (a body already begun needs no `100 Continue`).
    seen: u64,
    /// Every body byte has been read from the client.
    done: bool,
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
            done: matches!(
                kind,
                BodyKind::Empty | BodyKind::UntilClose | BodyKind::Length(0)
            ),
        }
    }
}

/// This session's side of one exchange: the request body as it arrives, the response
/// as it goes out.
struct H1Exchange<'a> {
    session: &'a mut Session,
    body: RequestBody,
    /// A HEAD request: the proxy's own answers carry their Content-Length, not the body.
    head_request: bool,
    version: Version,
    /// The client asked to keep the connection (after version defaults).
    keep_alive: bool,
    /// `Expect: 100-continue`, not yet answered.
    expect_continue: bool,
    framing: ClientFraming,
    /// The response bytes not yet sent (head, framed chunks).
    out: BytesMut,
    /// A body slice to send after `out`, not copied into it.
    tail: Option<Bytes>,
    /// The client sent `TE: trailers`: a chunked response may end with trailer fields.
    te_trailers: bool,
    /// The last chunk (with the trailers) is already in `out`.
    ended: bool,
    /// The request's `Connection` lists `upgrade` (HTTP/1.1).
    upgrade: bool,
    /// The response head said the connection stays open.
    keep: bool,
}

impl H1Exchange<'_> {
    /// Whether the connection can stay open after this response, as far as this
    /// session knows: the client wants it, the body was read whole, the worker is not
    /// draining and `keepalive_requests` is not reached.
    fn may_keep(&self, reusable: bool) -> bool {
        let s = &*self.session;
        reusable
            && self.keep_alive
            && self.body.done
            && s.served < s.generation.config.http.keepalive_requests
            && !s.ctx.draining.is_raised()
    }
}

impl BodySource for H1Exchange<'_> {
    fn is_done(&self) -> bool {
        self.body.done
    }

    async fn begin(&mut self) -> Result<(), ProxyError> {
        if std::mem::take(&mut self.expect_continue)
            && self.session.rbuf.is_empty()
            && self.body.seen == 0
        {
            self.session
                .write(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"))
                .await?;
        }
        Ok(())
    }

    fn take(&mut self, mut each: impl FnMut(BytesMut)) -> Result<(), ProxyError> {
        let rbuf = &mut self.session.rbuf;
        let body = &mut self.body;
        match body.kind {
            BodyKind::Length(_) => {
                let n = (rbuf.len() as u64).min(body.remaining) as usize;
                if n > 0 {
                    // The client's bytes as they are: no copy.
                    each(rbuf.split_to(n));
                }
                body.remaining -= n as u64;
                body.seen += n as u64;
                body.done = body.remaining == 0;
            }
            BodyKind::Chunked => {
                let Some(dec) = body.decoder.as_mut() else {
                    return Ok(());
                };
                while !body.done {
                    match dec.decode(rbuf).map_err(bad_request)? {
                        Chunk::Data(d) => {
                            body.seen += d.len() as u64;
                            each(d);
                        }
                        Chunk::NeedMore => break,
                        Chunk::Done => body.done = true,
                    }
                }
            }
            BodyKind::Empty | BodyKind::UntilClose => {}
        }
        // The body's size limit is the route's, counted by the exchange as it takes the
        // bytes (`policy::body_size`).
        Ok(())
    }

    async fn ready(&self) -> Result<(), ProxyError> {
        let stream = &self.session.stream;
        if stream.has_buffered() {
            return Ok(());
        }
        let t = self.session.generation.config.http.client_body_timeout;
        ProxyError::timed(
            monoio::time::timeout(t, stream.readable()).await,
            BODY_READ_FAILED,
            BODY_STALLED,
        )
    }

    async fn receive(&mut self) -> Result<(), ProxyError> {
        self.session.read_body(BODY_READ).await
    }
}

impl ResponseSink for H1Exchange<'_> {
    async fn interim(&mut self, head: &ResponseHead) -> Result<(), ProxyError> {
        if self.version != Version::Http11 {
            // HTTP/1.0 knows no 1xx responses.
            return Ok(());
        }
        let mut out = BytesMut::new();
        write::response_head(
            &mut out,
            head,
            ClientFraming::NoBody,
            Version::Http11,
            true,
            true,
        );
        self.session.write(out.freeze()).await
    }

    fn start(&mut self, head: &ResponseHead, body: BodyLength) {
        // A HEAD request's or a 304's Content-Length describes the representation.
        let length_described = self.head_request || head.status == 304;
        self.framing = match (body, self.version) {
            (BodyLength::None, _) => ClientFraming::NoBody,
            (BodyLength::Known(n), _) => ClientFraming::Length(n),
            (BodyLength::Unknown, Version::Http11) => ClientFraming::Chunked,
            (BodyLength::Unknown, Version::Http10) => ClientFraming::Close,
        };
        // A body still arriving may never be read whole: the connection ends then.
        let keep = self.framing != ClientFraming::Close && self.may_keep(true);
        self.keep = keep;
        self.out.reserve(RESPONSE_HEAD_CAPACITY);
        write::response_head(
            &mut self.out,
            head,
            self.framing,
            self.version,
            keep,
            length_described,
        );
    }

    fn data(&mut self, chunk: Bytes) {
        // A slice held back to go out uncopied joins the buffer once more follows.
        if let Some(t) = self.tail.take() {
            self.out.extend_from_slice(&t);
        }
        if self.framing == ClientFraming::Chunked {
            encode_chunk(&mut self.out, &chunk);
        } else if self.out.is_empty() {
            // Sent as it is: no copy.
            self.tail = Some(chunk);
        } else {
            self.out.extend_from_slice(&chunk);
        }
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        if self.out.is_empty() {
            return match self.tail.take() {
                Some(t) => self.session.write(t).await,
                None => Ok(()),
            };
        }
        if let Some(t) = self.tail.take() {
            self.out.extend_from_slice(&t);
        }
        let data = self.out.split().freeze();
        self.session.write(data).await
    }

    fn trailers(&mut self, fields: &[crate::message::Header]) {
        // Trailers only where a chunked body can carry them and the client asked for
        // them (RFC 9110 §6.5.1); otherwise dropped.
        if self.framing == ClientFraming::Chunked && self.te_trailers && !self.ended {
            write::last_chunk_with_trailers(&mut self.out, fields);
            self.ended = true;
        }
    }

    async fn finish(&mut self) -> Result<(), ProxyError> {
        if self.framing == ClientFraming::Chunked && !std::mem::replace(&mut self.ended, true) {
            // (Chunked bodies are always framed into `out`: no tail to place first.)
            self.out.extend_from_slice(LAST_CHUNK);
        }
        self.flush().await
    }

    fn deadline(&mut self) -> &mut Deadline {
        &mut self.session.deadline
    }

    fn raw_socket(&mut self) -> Option<&mut TcpStream> {
        // Only a Content-Length body goes as it is (no chunk framing around it).
        if !matches!(self.framing, ClientFraming::Length(_)) {
            return None;
        }
        self.session.stream.splice_socket()
    }

    fn upgrade_asked(&self) -> proxy::Ask {
        if self.upgrade {
            proxy::Ask::Upgrade
        } else {
            proxy::Ask::No
        }
    }

    async fn switch(
        &mut self,
        head: &ResponseHead,
        tunnel: proxy::Upgraded,
    ) -> Result<(), ProxyError> {
        let mut out = BytesMut::with_capacity(RESPONSE_HEAD_CAPACITY);
        write::switching_head(&mut out, head);
        self.session.write(out.freeze()).await?;
        self.session.tunnel = Some(Box::new(tunnel));
        Ok(())
    }

    async fn respond(
        &mut self,
        response: GatewayResponse,
        request_broken: bool,
    ) -> Result<(), ProxyError> {
        let keep = self.may_keep(!request_broken);
        self.keep = keep;
        let mut out = BytesMut::with_capacity(SIMPLE_RESPONSE_CAPACITY);
        let body = !self.head_request;
        write::gateway_response(&mut out, &response, self.version, keep, body);
        // A write that failed or hit send_timeout may have sent part of this response:
        // the next one must never follow it on the same connection.
        self.session.write(out.freeze()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway's own answer (a policy's, say) reaches the client with its extra
    /// fields, its body, and the session's framing.
    #[test]
    fn a_gateway_response_goes_out_with_its_fields_and_body() {
        use std::io::Read;
        let ctx = WorkerCtx::for_test(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[[route]]\nupstream = \"a\"\n\
             [upstream.a]\nservers = [\"127.0.0.1:1\"]\n",
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        let next = crate::clock::test_runtime().block_on(async {
            let mut session = Session {
                generation: ctx.live.load_full(),
                stream: ClientStream::plain(monoio::net::TcpStream::from_std(s).unwrap()),
                client: ClientInfo::new(peer, "http"),
                ctx: ctx.clone(),
                rbuf: BytesMut::new(),
                served: 1,
                linger: false,
                tls: None,
                deadline: Deadline::new(),
                tunnel: None,
            };
            let mut x = H1Exchange {
                te_trailers: false,
                ended: false,
                body: RequestBody::new(BodyKind::Empty),
                head_request: false,
                version: Version::Http11,
                keep_alive: true,
                expect_continue: false,
                framing: ClientFraming::NoBody,
                out: BytesMut::new(),
                tail: None,
                upgrade: false,
                keep: false,
                session: &mut session,
            };
            let response = GatewayResponse {
                status: 429,
                headers: Vec::new(),
                body: crate::message::GatewayBody::Bytes(Bytes::from_static(b"{\"slow\":1}")),
            }
            .with_header("Retry-After", Bytes::from_static(b"1"))
            .with_header("Content-Type", Bytes::from_static(b"application/json"));
            let sent = x.respond(response, false).await;
            (sent.is_ok(), x.keep)
        });
        assert_eq!(next, (true, true));
        let mut got = vec![0u8; 4096];
        let n = client.read(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got[..n]);
        assert_eq!(
            text,
            "HTTP/1.1 429 Too Many Requests\r\nServer: ringgate\r\nContent-Length: 10\r\n\
             Retry-After: 1\r\nContent-Type: application/json\r\n\r\n{\"slow\":1}"
        );
    }

    /// The memory an idle keep-alive connection holds is its task's future, and an async
    /// fn's future is as large as its largest await point: the request's state (head
    /// read, exchange, upstream lease, body pump) must live in the boxed `serve_one`, not
    /// in the future that waits between requests.
    #[test]
    fn an_idle_connection_does_not_carry_a_requests_state() {
        let ctx = WorkerCtx::for_test(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[[route]]\nupstream = \"a\"\n\
             [upstream.a]\nservers = [\"127.0.0.1:1\"]\n",
        );
        crate::clock::test_runtime().block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, peer) = l.accept().unwrap();
            let mut session = Session {
                generation: ctx.live.load_full(),
                stream: ClientStream::plain(monoio::net::TcpStream::from_std(s).unwrap()),
                client: ClientInfo::new(peer, "http"),
                ctx: ctx.clone(),
                rbuf: BytesMut::new(),
                served: 0,
                linger: false,
                tls: None,
                deadline: Deadline::new(),
                tunnel: None,
            };
            let request = std::mem::size_of_val(&session.serve_one());
            let idle = std::mem::size_of_val(&session.run());
            // Measured (release, rustc 1.95): run 208 B, serve_one 3,456 B (before the
            // connection's timer moved out of the futures: 1,152 B and 5,120 B).
            assert!(
                idle * 3 <= request,
                "the connection's future ({idle} B) holds room for a request ({request} B)"
            );
        });
    }
}
