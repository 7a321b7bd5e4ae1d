//! ⑧ The upstream side of an exchange, spoken as HTTP/1.1: the request head and body
//! framing going out, the response head and body decoding coming in. No I/O: the
//! exchange ([`crate::proxy`]) moves the bytes and keeps the timeouts; this module turns
//! them into protocol-neutral parts ([`crate::message`]) and back, with the codec in
//! [`crate::http1`] (`parse`, `body`, `write`).
//!
//! Request bodies of known length go as they are; bodies of unknown length (a chunked
//! request, an HTTP/2 stream without content-length) are chunk-encoded. Response bodies
//! are decoded: Content-Length counted, chunked unwrapped (a bare LF accepted as a line
//! end, RFC 9112 §2.2), close-delimited read to EOF. A response that is not valid HTTP/1.1
//! is an upstream protocol error (502); one cut short is an upstream close (502).

use bytes::{Bytes, BytesMut};

use crate::config::ForwardHeaders;
use crate::error::{Kind, ProxyError, Side};
use crate::http1::body::{Chunk, ChunkedDecoder, LAST_CHUNK, encode_chunk};
use crate::http1::parse::{self, BodyKind, Parsed, ResponseLimits};
use crate::http1::write;
use crate::message::{BodyLength, Request, ResponseHead};

/// Writes the request head for the upstream into `out`: `path` is the target to send
/// (after any prefix strip); `fallback_host` is used when the client sent no host;
/// `forward` names the forwarding fields to add. Returns the framing its body takes.
pub fn request_head(
    out: &mut BytesMut,
    req: &Request,
    path: &[u8],
    fallback_host: &str,
    forward: ForwardHeaders,
) -> RequestFraming {
    write::request_head(out, req, path, req.body, fallback_host, forward);
    RequestFraming {
        chunked: req.body == BodyLength::Unknown,
    }
}

/// [`request_head`] for an upgrade the route allows: `Connection: upgrade` and
/// `Upgrade: {protocol}` go upstream, and no body (an upgrade request has none).
pub fn upgrade_request_head(
    out: &mut BytesMut,
    req: &Request,
    path: &[u8],
    fallback_host: &str,
    forward: ForwardHeaders,
    protocol: &[u8],
    key: Option<&[u8]>,
) -> RequestFraming {
    write::upgrade_request_head(out, req, path, fallback_host, forward, protocol, key);
    RequestFraming { chunked: false }
}

/// How request body bytes are framed on their way upstream.
#[derive(Debug, Clone, Copy)]
pub struct RequestFraming {
    chunked: bool,
}

impl RequestFraming {
    /// Body bytes as they are, no framing added (a wire that frames them itself).
    pub const RAW: RequestFraming = RequestFraming { chunked: false };

    /// Appends body bytes to `out` in the upstream's framing (moved, not copied, when
    /// `out` is empty and no framing is added).
    pub fn push(&self, out: &mut BytesMut, data: BytesMut) {
        if self.chunked {
            encode_chunk(out, &data);
        } else if out.is_empty() {
            *out = data;
        } else {
            out.extend_from_slice(&data);
        }
    }

    /// Appends the end of the body (the last chunk, when chunked).
    pub fn end(&self, out: &mut BytesMut) {
        if self.chunked {
            out.extend_from_slice(LAST_CHUNK);
        }
    }
}

/// A parsed response head with what the upstream side needs to read its body.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    kind: BodyKind,
    /// The request was HEAD: no body follows, whatever the head announces.
    head_request: bool,
    /// The head lets the connection persist once the response was read whole.
    reusable: bool,
}

impl Response {
    /// No body follows: a response to HEAD, a 204 or a 304, whatever it announced.
    pub fn bodiless(&self) -> bool {
        self.head_request || matches!(self.head.status, 204 | 304)
    }

    /// The body length the client's session frames.
    pub fn body_length(&self) -> BodyLength {
        if self.bodiless() {
            return BodyLength::None;
        }
        match self.kind {
            BodyKind::Empty => BodyLength::Known(0),
            BodyKind::Length(n) => BodyLength::Known(n),
            BodyKind::Chunked | BodyKind::UntilClose => BodyLength::Unknown,
        }
    }
}

/// What the response body decoder produced.
#[derive(Debug)]
pub enum Piece {
    /// Body bytes for the client.
    Data(Bytes),
    /// Read more from the upstream and ask again.
    NeedMore,
    /// The body is complete.
    Done,
}

enum Body {
    /// Head not read yet, or the body is complete.
    Idle,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// Reads one response from the upstream's bytes: `buf` holds what was read and not yet
/// used.
pub struct ResponseReader {
    pub buf: BytesMut,
    body: Body,
    /// The connection may carry another request once this response is read whole.
    reusable: bool,
}

/// Read size for response heads.
pub const HEAD_READ: usize = 4096;

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader {
            buf: BytesMut::with_capacity(HEAD_READ),
            body: Body::Idle,
            reusable: false,
        }
    }
}

impl ResponseReader {
    /// Parses a response head from the bytes read so far (`head_request`: the request
    /// was HEAD); `Ok(None)`: read more.
    pub fn head(
        &mut self,
        limits: &ResponseLimits,
        head_request: bool,
    ) -> Result<Option<Response>, ProxyError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match parse::parse_response(&mut self.buf, limits) {
            Parsed::Complete(r, _) => Ok(Some(Response {
                reusable: r.reusable_after(head_request),
                kind: r.body,
                head_request,
                head: ResponseHead {
                    status: r.status,
                    reason: r.reason,
                    headers: r.headers,
                },
            })),
            Parsed::Incomplete => Ok(None),
            Parsed::Invalid(r) => Err(ProxyError::new(
                Side::Upstream,
                Kind::UpstreamProtocol,
                r.reason,
            )),
        }
    }

    /// Starts reading the body of `resp`.
    pub fn start_body(&mut self, resp: &Response) {
        self.reusable = resp.reusable;
        self.body = match (resp.bodiless(), resp.kind) {
            (true, _) | (_, BodyKind::Empty) | (_, BodyKind::Length(0)) => Body::Idle,
            (_, BodyKind::Length(n)) => Body::Length(n),
            (_, BodyKind::Chunked) => Body::Chunked(ChunkedDecoder::response()),
            (_, BodyKind::UntilClose) => Body::UntilClose,
        };
    }

    /// The next piece of the body from the bytes read so far.
    pub fn next_piece(&mut self) -> Result<Piece, ProxyError> {
        match &mut self.body {
            Body::Idle => Ok(Piece::Done),
            Body::Length(remaining) => {
                if self.buf.is_empty() {
                    return Ok(Piece::NeedMore);
                }
                let take = (self.buf.len() as u64).min(*remaining) as usize;
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.body = Body::Idle;
                }
                Ok(Piece::Data(self.buf.split_to(take).freeze()))
            }
            Body::Chunked(dec) => {
                let chunk = dec.decode(&mut self.buf).map_err(|r| {
                    ProxyError::new(Side::Upstream, Kind::UpstreamProtocol, r.reason)
                })?;
                Ok(match chunk {
                    Chunk::Data(d) => Piece::Data(d.freeze()),
                    Chunk::NeedMore => Piece::NeedMore,
                    Chunk::Done => {
                        self.body = Body::Idle;
                        Piece::Done
                    }
                })
            }
            Body::UntilClose => {
                if self.buf.is_empty() {
                    Ok(Piece::NeedMore)
                } else {
                    Ok(Piece::Data(self.buf.split().freeze()))
                }
            }
        }
    }

    /// The upstream closed: the end of a close-delimited body, else a cut-short one.
    pub fn closed(&mut self) -> Result<(), ProxyError> {
        match self.body {
            Body::UntilClose => {
                self.body = Body::Idle;
                Ok(())
            }
            Body::Idle => Ok(()),
            Body::Length(_) => Err(ProxyError::new(
                Side::Upstream,
                Kind::UpstreamClosed,
                "upstream closed mid-body",
            )),
            Body::Chunked(_) => Err(ProxyError::new(
                Side::Upstream,
                Kind::UpstreamClosed,
                "upstream closed mid-chunked-body",
            )),
        }
    }

    /// Body bytes still to come on the socket for a Content-Length body when nothing is
    /// buffered: what a splice may move. `None` for other framings or buffered bytes.
    pub fn unbuffered_remaining(&self) -> Option<u64> {
        match self.body {
            Body::Length(n) if self.buf.is_empty() => Some(n),
            _ => None,
        }
    }

    /// `n` body bytes went past this reader (spliced).
    pub fn skipped(&mut self, n: u64) {
        if let Body::Length(remaining) = &mut self.body {
            *remaining = remaining.saturating_sub(n);
            if *remaining == 0 {
                self.body = Body::Idle;
            }
        }
    }

    /// How much to read next: no more than the rest of a Content-Length body.
    pub fn want(&self, max: usize) -> usize {
        match self.body {
            Body::Length(n) => (n as usize).clamp(1, max),
            _ => max,
        }
    }

    /// The response was read to its end, nothing more was sent, and its head let the
    /// connection persist: it may serve another request.
    pub fn reusable(&self) -> bool {
        self.reusable && matches!(self.body, Body::Idle) && self.buf.is_empty()
    }
}
