//! One HTTP/2 stream as one exchange: the request head checked and mapped to the
//! protocol-neutral [`Request`] ([`request`]), and the stream's side of the exchange
//! ([`H2Exchange`]): the request body pulled from h2's `RecvStream` (its window released
//! as the upstream takes the bytes), the response pushed as HEADERS and DATA only as the
//! stream's send window allows, so a client that reads slowly holds its window shut and
//! the exchange stops reading the upstream instead of buffering it.
//!
//! An extended CONNECT (RFC 8441 §4: `:method CONNECT` with `:protocol`, `:scheme`,
//! `:path`, `:authority`) becomes a `GET` whose `Upgrade` field is the `:protocol`,
//! without a body ([`Ask::ExtendedConnect`]: the exchange turns it into an HTTP/1.1
//! upgrade); after the upstream's `101` the stream answers `:status 200` with the
//! `101`'s end-to-end fields ([`ResponseSink::switch`]) and the stream's DATA becomes
//! the tunnel ([`super::tunnel`]). A CONNECT without `:protocol` is refused.
//!
//! Errors: a body that stalls beyond `client_body_timeout_ms` → 408 (or a reset once the
//! head went out), a window held shut beyond `send_timeout_ms` → the stream is reset
//! (CANCEL) and counted as `zero_window`, a client reset → the exchange is dropped on the
//! spot (its upstream connection closed, never pooled).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderName, HeaderValue};
use monoio::net::TcpStream;

use crate::clock::Deadline;
use crate::error::{Kind, ProxyError, Side};
use crate::field::is_tchar;
use crate::http1::write::{connection_listed, is_hop_by_hop, is_listed};
use crate::message::{
    BodyLength, ClientInfo, GatewayBody, GatewayResponse, Header, Request, ResponseHead,
};
use crate::proxy::{Ask, BodySource, ResponseSink, Upgraded};
use crate::transport::tls::TlsInfo;

/// Why a request head is refused (RFC 9113 §8; h2 checks the rest, see the module doc of
/// [`super`]).
pub(super) type Refusal = &'static str;

/// Maps a request head h2 accepted to the exchange's [`Request`], refusing what RFC
/// 9113 §8 forbids and h2 lets through: field values with NUL, CR or LF or with
/// leading or trailing whitespace (§8.2.1), a missing `:authority` and Host, a Host
/// that differs from `:authority` (§8.3.1), CONNECT without `:protocol`, a `:protocol`
/// that is not a token (`name` or `name/version`). An extended CONNECT (RFC 8441)
/// becomes a bodiless `GET` with `upgrade: <:protocol>`.
pub(super) fn request(
    parts: &http::request::Parts,
    end_stream: bool,
    client: ClientInfo,
    tls: Option<Rc<TlsInfo>>,
    received: monoio::time::Instant,
) -> Result<Request, Refusal> {
    let protocol = parts.extensions.get::<h2::ext::Protocol>();
    if parts.method == http::Method::CONNECT && protocol.is_none() {
        return Err("CONNECT is not proxied");
    }
    let protocol = protocol.map(h2::ext::Protocol::as_ref);
    if let Some(p) = protocol
        && (p.is_empty() || !p.iter().all(|&b| is_tchar(b) || b == b'/'))
    {
        return Err(":protocol is not a token");
    }
    let mut cookie: Option<Vec<u8>> = None;
    let mut host: Option<&HeaderValue> = None;
    let mut length: Option<u64> = None;
    // Every name and value is copied into one block (one allocation per head, as
    // `append_fields` does for responses); the request's fields are slices of it.
    let mut total = protocol.map_or(0, <[u8]>::len);
    for (name, value) in &parts.headers {
        let v = value.as_bytes();
        if v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
            || v.first().is_some_and(|&b| b == b' ' || b == b'\t')
            || v.last().is_some_and(|&b| b == b' ' || b == b'\t')
        {
            return Err("a field value with NUL, CR, LF or surrounding whitespace");
        }
        if name == http::header::COOKIE {
            // RFC 9113 §8.2.3: crumbs joined with "; " for HTTP/1.1.
            match cookie.as_mut() {
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(v);
                }
                None => cookie = Some(v.to_vec()),
            }
            continue;
        }
        if name == http::header::HOST {
            host = Some(value);
        }
        if name == http::header::CONTENT_LENGTH {
            // h2 checked it parses and matches the DATA frames.
            length = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        total += name.as_str().len() + v.len();
    }
    let sent: &[u8] = match (parts.uri.authority(), host) {
        // RFC 9113 §8.3.1: a Host that differs from :authority makes the request
        // malformed (two hosts: the routing one and the upstream's could disagree).
        (Some(a), Some(h)) if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) => {
            return Err(":authority and host differ");
        }
        (Some(a), _) => a.as_str().as_bytes(),
        (None, Some(h)) => h.as_bytes(),
        (None, None) => return Err("neither :authority nor host"),
    };
    let path: &[u8] = match parts.uri.path_and_query() {
        Some(p) if !p.as_str().is_empty() => p.as_str().as_bytes(),
        _ => return Err("no :path"),
    };
    total += sent.len() + path.len();
    let mut block = BytesMut::with_capacity(total);
    let mut take = |bytes: &[u8]| {
        block.extend_from_slice(bytes);
        block.split().freeze()
    };
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    if let Some(p) = protocol {
        headers.push(Header {
            name: Bytes::from_static(b"upgrade"),
            value: take(p),
        });
    }
    for (name, value) in &parts.headers {
        if name != http::header::COOKIE {
            headers.push(Header {
                name: take(name.as_str().as_bytes()),
                value: take(value.as_bytes()),
            });
        }
    }
    if let Some(c) = cookie {
        headers.push(Header {
            name: Bytes::from_static(b"cookie"),
            value: Bytes::from(c),
        });
    }
    let sent = take(sent);
    let path = take(path);
    let authority = Some(host_of(&sent));
    let body = match (end_stream, length) {
        // An extended CONNECT's DATA is the tunnel's, not a request body.
        _ if protocol.is_some() => BodyLength::None,
        (true, Some(0)) => BodyLength::Known(0),
        (true, _) => BodyLength::None,
        (false, Some(n)) => BodyLength::Known(n),
        (false, None) => BodyLength::Unknown,
    };
    let method = match protocol {
        Some(_) => Bytes::from_static(b"GET"),
        None => method_bytes(&parts.method),
    };
    Ok(Request {
        method,
        scheme: client.proto,
        authority,
        authority_sent: Some(sent),
        path,
        headers,
        body,
        client,
        tls,
        received,
    })
}

/// The host that routes: lower case, without port or IPv6 brackets' port.
fn host_of(authority: &Bytes) -> Bytes {
    let a = authority.as_ref();
    // userinfo is not allowed in :authority for http(s) (RFC 9113 §8.3.1); strip it anyway.
    let a = match a.iter().rposition(|&b| b == b'@') {
        Some(i) => &a[i + 1..],
        None => a,
    };
    let host = if a.first() == Some(&b'[') {
        match a.iter().position(|&b| b == b']') {
            Some(i) => &a[..=i],
            None => a,
        }
    } else {
        match a.iter().rposition(|&b| b == b':') {
            Some(i) => &a[..i],
            None => a,
        }
    };
    if host.iter().any(u8::is_ascii_uppercase) {
        Bytes::from(host.to_ascii_lowercase())
    } else {
        authority.slice_ref(host)
    }
}

fn method_bytes(m: &http::Method) -> Bytes {
    match *m {
        http::Method::GET => Bytes::from_static(b"GET"),
        http::Method::POST => Bytes::from_static(b"POST"),
        http::Method::HEAD => Bytes::from_static(b"HEAD"),
        http::Method::PUT => Bytes::from_static(b"PUT"),
        http::Method::DELETE => Bytes::from_static(b"DELETE"),
        http::Method::OPTIONS => Bytes::from_static(b"OPTIONS"),
        http::Method::PATCH => Bytes::from_static(b"PATCH"),
        _ => Bytes::copy_from_slice(m.as_str().as_bytes()),
    }
}

/// Where the response stands on the stream.
pub(super) enum Out {
    /// No head sent yet.
    Head(SendResponse<Bytes>),
    /// The head went out; the body follows.
    Body(SendStream<Bytes>),
    /// The stream was ended (END_STREAM or a reset).
    Done,
}

impl Out {
    /// Completes when the client reset the stream (or the connection ended).
    pub(super) fn poll_reset(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        match self {
            Out::Head(r) => r.poll_reset(cx).map(|_| ()),
            Out::Body(s) => s.poll_reset(cx).map(|_| ()),
            Out::Done => Poll::Pending,
        }
    }

    /// Resets the stream unless it ended.
    pub(super) fn reset(&mut self, reason: Reason) {
        match std::mem::replace(self, Out::Done) {
            Out::Head(mut r) => r.send_reset(reason),
            Out::Body(mut s) => s.send_reset(reason),
            Out::Done => {}
        }
    }
}

/// The stream's side of one exchange.
pub(super) struct H2Exchange {
    pub(super) recv: RefCell<RecvStream>,
    /// Request body bytes received and not yet handed to the exchange.
    pub(super) pending: RefCell<Option<Bytes>>,
    /// Every request body byte was handed out.
    pub(super) body_done: Cell<bool>,
    pub(super) out: Rc<RefCell<Out>>,
    /// Response body bytes waiting for window.
    pub(super) queue: Vec<Bytes>,
    /// The stream's timer (its upstream steps and its own waits, one at a time).
    pub(super) deadline: Deadline,
    pub(super) body_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) head_request: bool,
    /// The window stayed shut beyond `send_timeout_ms`.
    pub(super) zero_window: bool,
    /// The response's trailer fields, sent after the last DATA (gRPC's `grpc-status`).
    pub(super) trailers: Option<http::HeaderMap>,
    /// The request is an extended CONNECT ([`Ask::ExtendedConnect`]) or not.
    pub(super) ask: Ask,
    /// The upstream connection after its `101`, for the tunnel after the exchange.
    pub(super) tunnel: Option<Box<Upgraded>>,
}

/// Why response DATA could not be sent.
pub(super) enum Stop {
    /// The stream was reset or the connection is gone.
    Gone,
    /// The window stayed shut beyond the timeout.
    WindowShut,
}

/// Sends `chunk` on the stream in `out` as its send window allows (`eos`: END_STREAM
/// with the last of it; an empty `chunk` with `eos` only ends the stream), waiting for
/// window no longer than `timeout` at a time. At most `chunk` is held: a client that
/// does not read holds the sender here. Dropping it loses the unsent rest of `chunk`.
pub(super) async fn send_windowed(
    out: &RefCell<Out>,
    deadline: &mut Deadline,
    timeout: Duration,
    mut chunk: Bytes,
    eos: bool,
) -> Result<(), Stop> {
    if chunk.is_empty() {
        return if eos {
            send_data(out, chunk, true)
        } else {
            Ok(())
        };
    }
    while !chunk.is_empty() {
        if let Out::Body(s) = &mut *out.borrow_mut() {
            s.reserve_capacity(chunk.len());
        }
        let wait = poll_fn(|cx| match &mut *out.borrow_mut() {
            Out::Body(s) => match s.poll_capacity(cx) {
                // A reservation satisfied with 0 on an open stream: wait on.
                Poll::Ready(Some(Ok(0))) => Poll::Pending,
                Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
                Poll::Ready(Some(Err(_)) | None) => Poll::Ready(Err(Stop::Gone)),
                Poll::Pending => Poll::Pending,
            },
            _ => Poll::Ready(Err(Stop::Gone)),
        });
        let granted = match deadline.within(timeout, wait).await {
            Ok(r) => r?,
            Err(_) => return Err(Stop::WindowShut),
        };
        let part = chunk.split_to(granted.min(chunk.len()));
        send_data(out, part, eos && chunk.is_empty())?;
    }
    Ok(())
}

/// Sends one DATA frame's worth already within the window.
fn send_data(out: &RefCell<Out>, data: Bytes, eos: bool) -> Result<(), Stop> {
    let mut out = out.borrow_mut();
    let Out::Body(s) = &mut *out else {
        return Err(Stop::Gone);
    };
    s.send_data(data, eos).map_err(|_| Stop::Gone)?;
    if eos {
        *out = Out::Done;
    }
    Ok(())
}

const BODY_FAILED: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "request stream failed");
const BODY_STALLED: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "request body stalled beyond client_body_timeout",
);
const STREAM_GONE: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientGone,
    "stream reset or connection gone",
);
const WINDOW_SHUT: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "client kept the stream's window shut beyond send_timeout",
);

impl H2Exchange {
    /// Receives the next body chunk into `pending` (or notes the end).
    async fn pull(&self) -> Result<(), ProxyError> {
        let next = monoio::time::timeout(
            self.body_timeout,
            poll_fn(|cx| self.recv.borrow_mut().poll_data(cx)),
        )
        .await;
        match next {
            Err(_) => Err(BODY_STALLED),
            Ok(None) => {
                self.body_done.set(true);
                Ok(())
            }
            Ok(Some(Ok(b))) => {
                *self.pending.borrow_mut() = Some(b);
                Ok(())
            }
            Ok(Some(Err(e))) => Err(ProxyError::io(
                Side::Downstream,
                Kind::ClientGone,
                BODY_FAILED.reason,
                std::io::Error::other(e),
            )),
        }
    }

    /// Sends the queued body within the stream's window, waiting for window no longer
    /// than `send_timeout_ms` at a time.
    async fn send_queued(&mut self, end: bool) -> Result<(), ProxyError> {
        let queue = std::mem::take(&mut self.queue);
        let last = queue.len();
        for (i, chunk) in queue.into_iter().enumerate() {
            let eos = end && i + 1 == last;
            let sent = send_windowed(&self.out, &mut self.deadline, self.send_timeout, chunk, eos);
            match sent.await {
                Ok(()) => {}
                Err(Stop::Gone) => return Err(STREAM_GONE),
                Err(Stop::WindowShut) => {
                    self.zero_window = true;
                    return Err(WINDOW_SHUT);
                }
            }
        }
        if end && last == 0 {
            send_data(&self.out, Bytes::new(), true).map_err(|_| STREAM_GONE)?;
        }
        Ok(())
    }

    /// Sends a response head; `eos`: it has no body.
    fn send_head(&mut self, response: http::Response<()>, eos: bool) -> Result<(), ProxyError> {
        let mut out = self.out.borrow_mut();
        let Out::Head(r) = &mut *out else {
            return Err(STREAM_GONE);
        };
        let stream = r.send_response(response, eos).map_err(|_| STREAM_GONE)?;
        *out = if eos { Out::Done } else { Out::Body(stream) };
        Ok(())
    }
}

impl BodySource for H2Exchange {
    fn is_done(&self) -> bool {
        self.body_done.get()
    }

    async fn begin(&mut self) -> Result<(), ProxyError> {
        Ok(())
    }

    fn take(&mut self, mut each: impl FnMut(BytesMut)) -> Result<(), ProxyError> {
        if let Some(b) = self.pending.borrow_mut().take() {
            let mut recv = self.recv.borrow_mut();
            // The upstream takes these bytes now: the client may send as many more.
            let _ = recv.flow_control().release_capacity(b.len());
            if recv.is_end_stream() {
                self.body_done.set(true);
            }
            if !b.is_empty() {
                each(BytesMut::from(b));
            }
        }
        Ok(())
    }

    async fn ready(&self) -> Result<(), ProxyError> {
        if self.pending.borrow().is_some() || self.body_done.get() {
            return Ok(());
        }
        self.pull().await
    }

    async fn receive(&mut self) -> Result<(), ProxyError> {
        self.ready().await
    }
}

/// Appends `fields` to `map` but connection-specific ones and those `skip` names:
/// upper-case names become lower case, a field HTTP/2 cannot carry is dropped.
fn append_fields(map: &mut http::HeaderMap, fields: &[Header], skip: impl Fn(&[u8]) -> bool) {
    // The values are copied into one block of their own (one allocation per head): h2's
    // HPACK encoder keeps the values it indexes for the connection's life, and a slice
    // of the upstream's read buffer would pin all of it (4 kB per idle connection,
    // measured with loadtest/heap_profile.sh).
    let kept = |h: &&Header| {
        let name = h.name.as_ref();
        !(is_hop_by_hop(name) || skip(name))
    };
    let total = fields.iter().filter(kept).map(|h| h.value.len()).sum();
    let mut block = BytesMut::with_capacity(total);
    for h in fields.iter().filter(kept) {
        block.extend_from_slice(&h.value);
    }
    let mut block = block.freeze();
    for h in fields.iter().filter(kept) {
        let value = block.split_to(h.value.len());
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_ref()),
            HeaderValue::from_maybe_shared(value),
        ) {
            map.append(n, v);
        }
    }
}

impl ResponseSink for H2Exchange {
    async fn interim(&mut self, _head: &ResponseHead) -> Result<(), ProxyError> {
        // 1xx (103 Early Hints, 102) are dropped, as browsers ignore them over a proxy.
        Ok(())
    }

    fn start(&mut self, head: &ResponseHead, body: BodyLength) {
        // A HEAD request's or a 304's Content-Length describes the representation.
        let length_described = self.head_request || head.status == 304;
        let mut response = http::Response::new(());
        *response.status_mut() =
            http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let map = response.headers_mut();
        let listed = connection_listed(&head.headers);
        append_fields(map, &head.headers, |name| {
            (!length_described && name.eq_ignore_ascii_case(b"content-length"))
                || is_listed(&listed, name)
        });
        if let (BodyLength::Known(n), false) = (body, length_described) {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        let eos = body == BodyLength::None || body == BodyLength::Known(0);
        // A failure shows at the next flush (the stream is gone).
        let _ = self.send_head(response, eos);
    }

    fn data(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queue.push(chunk);
        }
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        if self.queue.is_empty() {
            return Ok(());
        }
        self.send_queued(false).await
    }

    fn trailers(&mut self, fields: &[Header]) {
        // Pseudo-fields never go in trailers (RFC 9113 §8.1).
        let map = self.trailers.get_or_insert_with(http::HeaderMap::new);
        append_fields(map, fields, |name| name.first() == Some(&b':'));
    }

    async fn finish(&mut self) -> Result<(), ProxyError> {
        if matches!(*self.out.borrow(), Out::Done) {
            return if self.queue.is_empty() {
                Ok(())
            } else {
                Err(STREAM_GONE)
            };
        }
        let Some(trailers) = self.trailers.take().filter(|t| !t.is_empty()) else {
            return self.send_queued(true).await;
        };
        // The body without END_STREAM, then the trailers end the stream.
        self.send_queued(false).await?;
        let mut out = self.out.borrow_mut();
        let Out::Body(s) = &mut *out else {
            return Err(STREAM_GONE);
        };
        s.send_trailers(trailers).map_err(|_| STREAM_GONE)?;
        *out = Out::Done;
        Ok(())
    }

    fn raw_socket(&mut self) -> Option<&mut TcpStream> {
        // Frames add bytes around the body: never spliced.
        None
    }

    fn deadline(&mut self) -> &mut Deadline {
        &mut self.deadline
    }

    fn upgrade_asked(&self) -> Ask {
        self.ask
    }

    async fn switch(&mut self, head: &ResponseHead, tunnel: Upgraded) -> Result<(), ProxyError> {
        // RFC 8441 §5: the tunnel opens with a 2xx; the 101's end-to-end fields
        // (`sec-websocket-protocol`, `-extensions`) go with it, not its hop-by-hop ones
        // nor the accept value, which answered the gateway's key, not the client.
        let mut response = http::Response::new(());
        let map = response.headers_mut();
        let listed = connection_listed(&head.headers);
        append_fields(map, &head.headers, |name| {
            is_listed(&listed, name)
                || name.eq_ignore_ascii_case(b"sec-websocket-accept")
                || name.eq_ignore_ascii_case(b"content-length")
        });
        self.send_head(response, false)?;
        self.tunnel = Some(Box::new(tunnel));
        Ok(())
    }

    async fn respond(&mut self, response: GatewayResponse, _: bool) -> Result<(), ProxyError> {
        let mut head = http::Response::new(());
        *head.status_mut() = http::StatusCode::from_u16(response.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let map = head.headers_mut();
        map.insert(http::header::SERVER, HeaderValue::from_static("ringgate"));
        let body = match response.body {
            GatewayBody::Empty => Bytes::new(),
            GatewayBody::Line(l) => {
                map.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                let mut b = Vec::with_capacity(l.len() + 1);
                b.extend_from_slice(l.as_bytes());
                b.push(b'\n');
                Bytes::from(b)
            }
            GatewayBody::Bytes(b) => b,
        };
        map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if response.status == 405 {
            map.insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
            );
        }
        for h in &response.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&h.name),
                HeaderValue::from_maybe_shared(h.value.clone()),
            ) {
                map.append(n, v);
            }
        }
        let eos = body.is_empty() || self.head_request;
        self.send_head(head, eos)?;
        if !eos {
            self.queue.push(body);
            self.send_queued(true).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Response field values do not share the upstream's read buffer (h2's HPACK table
    /// would keep it alive for the connection's life); hop-by-hop and skipped fields stay
    /// out.
    #[test]
    fn response_fields_do_not_pin_the_upstream_buffer() {
        let upstream = Bytes::from(vec![b'v'; 4096]);
        let fields = [
            Header {
                name: Bytes::from_static(b"content-type"),
                value: upstream.slice(10..20),
            },
            Header {
                name: Bytes::from_static(b"connection"),
                value: upstream.slice(20..25),
            },
            Header {
                name: Bytes::from_static(b"x-skip"),
                value: upstream.slice(30..32),
            },
            Header {
                name: Bytes::from_static(b"x-custom"),
                value: upstream.slice(40..43),
            },
        ];
        let mut map = http::HeaderMap::new();
        append_fields(&mut map, &fields, |n| n == b"x-skip");
        assert_eq!(map.len(), 2);
        let range = upstream.as_ptr_range();
        for (name, v) in &map {
            let p = v.as_bytes().as_ptr();
            assert!(!range.contains(&p), "{name} shares the upstream's buffer");
        }
        assert_eq!(map["content-type"].as_bytes(), &[b'v'; 10][..]);
        assert_eq!(map["x-custom"].as_bytes(), b"vvv");
    }

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    fn map(req: http::Request<()>, end: bool) -> Result<Request, Refusal> {
        let client = ClientInfo::new("127.0.0.1:1".parse().unwrap(), "https");
        request(&parts(req), end, client, None, monoio::time::Instant::now())
    }

    #[test]
    fn authority_routes_lower_case_without_port_and_cookies_are_joined() {
        let r = http::Request::get("https://App.Test:8443/a?b")
            .header("cookie", "a=1")
            .header("x-y", "z")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        let req = map(r, true).unwrap();
        assert_eq!(req.authority.as_deref(), Some(&b"app.test"[..]));
        assert_eq!(req.authority_sent.as_deref(), Some(&b"App.Test:8443"[..]));
        assert_eq!(req.path.as_ref(), b"/a?b");
        assert_eq!(req.body, BodyLength::None);
        let cookies: Vec<_> = req
            .headers
            .iter()
            .filter(|h| h.name.as_ref() == b"cookie")
            .collect();
        assert_eq!(cookies.len(), 1);
        assert_eq!(cookies[0].value.as_ref(), b"a=1; b=2");
    }

    #[test]
    fn ipv6_authority_keeps_its_brackets() {
        let r = http::Request::get("http://[::1]:8080/").body(()).unwrap();
        assert_eq!(
            map(r, true).unwrap().authority.as_deref(),
            Some(&b"[::1]"[..])
        );
    }

    #[test]
    fn body_length_follows_content_length_and_end_stream() {
        let r = http::Request::post("https://a/")
            .header("content-length", "5")
            .body(())
            .unwrap();
        assert_eq!(map(r, false).unwrap().body, BodyLength::Known(5));
        let r = http::Request::post("https://a/").body(()).unwrap();
        assert_eq!(map(r, false).unwrap().body, BodyLength::Unknown);
    }

    #[test]
    fn an_extended_connect_becomes_a_bodiless_get_with_its_protocol_as_upgrade() {
        let mut r = http::Request::connect("https://app.test/chat?x")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        r.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let req = map(r, false).unwrap();
        assert_eq!(req.method.as_ref(), b"GET");
        assert_eq!(req.path.as_ref(), b"/chat?x");
        assert_eq!(req.body, BodyLength::None);
        let upgrade = req.headers.iter().find(|h| h.name.as_ref() == b"upgrade");
        assert_eq!(upgrade.map(|h| h.value.as_ref()), Some(&b"websocket"[..]));
        let mut bad = http::Request::connect("https://app.test/")
            .body(())
            .unwrap();
        bad.extensions_mut()
            .insert(h2::ext::Protocol::from_static("web socket"));
        assert!(map(bad, false).is_err());
    }

    #[test]
    fn values_with_surrounding_whitespace_and_connect_are_refused() {
        let r = http::Request::get("https://a/")
            .header("x", " v")
            .body(())
            .unwrap();
        assert!(map(r, true).is_err());
        let r = http::Request::get("https://a/")
            .header("x", "v\t")
            .body(())
            .unwrap();
        assert!(map(r, true).is_err());
        let r = http::Request::connect("a:443").body(()).unwrap();
        assert!(map(r, true).is_err());
        let r = http::Request::get("https://a/")
            .header("host", "b")
            .body(())
            .unwrap();
        assert!(map(r, true).is_err());
        let r = http::Request::get("https://a/")
            .header("host", "A")
            .body(())
            .unwrap();
        assert!(map(r, true).is_ok());
    }
}
