//! HTTP/1.1 message heads: bytes in, a [`RequestHead`] / [`ResponseHead`] out. No I/O.
//!
//! `parse_request` returns [`Parsed::Complete`], [`Parsed::Incomplete`] ("read more") or
//! [`Parsed::Invalid`] with a typed [`Reject`] — what is wrong, never a status number
//! (`error::fault_status` chooses it). httparse does the tokenising; this module adds what a proxy must be strict about (RFC 9112 §6.3, request smuggling): exactly one
//! framing, no obs-fold, no control bytes, one Host, valid targets. Header names and values
//! are `Bytes` slices of the read buffer — never copied.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

pub use crate::message::{Fault, Header, trim};

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes (responses only).
    UntilClose,
}

/// HTTP/1.x minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A checked request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Bytes,
    pub target: Bytes,
    pub version: Version,
    pub headers: Vec<Header>,
    /// Lower-case host without port, from the absolute-form target or the Host header.
    pub host: Option<Bytes>,
    /// The same authority as sent (port and case kept, whitespace trimmed): what the
    /// upstream gets as Host.
    pub authority: Option<Bytes>,
    pub body: BodyKind,
    /// The client asked to keep the connection open (after version defaults).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was present.
    pub expect_continue: bool,
    /// `TE` lists `trailers`: the client takes trailer fields in a chunked response.
    pub te_trailers: bool,
    /// An HTTP/1.1 request whose `Connection` lists `upgrade`: it may ask to switch
    /// protocols (RFC 9110 §7.8; an HTTP/1.0 request's `Upgrade` is ignored).
    pub connection_upgrade: bool,
}

impl RequestHead {
    /// The path and query of the target (`/a/b?q`), also for absolute-form targets
    /// (`http://a.test?q` → `/?q`, `http://a.test` → `/`); `*` for `OPTIONS *`.
    pub fn path(&self) -> Bytes {
        if self.target.as_ref() == b"*" {
            return self.target.clone();
        }
        match path_of(&self.target) {
            Some(r) if self.target[r.start] == b'/' => self.target.slice(r),
            Some(r) => {
                // Absolute-form with a query and no path (rare): the path is `/`.
                let mut p = Vec::with_capacity(1 + r.len());
                p.push(b'/');
                p.extend_from_slice(&self.target[r]);
                Bytes::from(p)
            }
            None => Bytes::from_static(b"/"),
        }
    }

    pub fn is_head(&self) -> bool {
        self.method.as_ref() == b"HEAD"
    }
}

/// A checked response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Bytes,
    pub version: Version,
    pub headers: Vec<Header>,
    /// Framing as sent by the upstream, before taking the request method into account.
    pub body: BodyKind,
    /// The upstream's Connection header and version let the connection persist (a
    /// close-delimited body still ends it: see [`ResponseHead::reusable_after`]).
    pub keep_alive: bool,
}

impl ResponseHead {
    /// Whether the connection can carry another request once this response was read to
    /// its end, given whether it had a body (`bodiless`: HEAD, 204, 304). A bodiless
    /// status that still announced a body (RFC 9110 §6.4.1 forbids it for 204 and 304;
    /// bytes may follow that belong to no request) is never reused: framing in doubt.
    pub fn reusable_after(&self, bodiless_request: bool) -> bool {
        if !self.keep_alive {
            return false;
        }
        if bodiless_request {
            // A HEAD response may describe the body it would have had.
            return true;
        }
        match self.status {
            204 | 304 => matches!(self.body, BodyKind::Empty | BodyKind::UntilClose),
            _ => self.body != BodyKind::UntilClose,
        }
    }
}

/// Result of trying to parse a head from the bytes read so far.
#[derive(Debug)]
pub enum Parsed<T> {
    /// A head, and how many bytes of the buffer it used.
    Complete(T, usize),
    /// Not enough bytes yet.
    Incomplete,
    /// Never valid, whatever follows: refuse it and close.
    Invalid(Reject),
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub fault: Fault,
    pub reason: &'static str,
}

const fn reject(fault: Fault, reason: &'static str) -> Reject {
    Reject { fault, reason }
}

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_request_line: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

/// Header slots tried on the stack for a response head before the configured maximum is
/// allocated: typical upstream responses carry 5–20 fields.
const RESPONSE_STACK_SLOTS: usize = 64;

pub use crate::config::ResponseLimits;

/// Parses a request head from the start of `buf`.
///
/// On `Complete` the caller splits off the used bytes; the returned head holds slices of
/// `frozen`, which must be `buf[..used]` frozen — see [`take_request`].
pub fn parse_request(buf: &[u8], limits: &HeadLimits) -> Parsed<RawRequest> {
    // Request-line limit first: it must hold even while the line is incomplete.
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        None if buf.len() > limits.max_request_line => {
            return Parsed::Invalid(reject(Fault::LineTooLong, "request line too long"));
        }
        Some(n) if n > limits.max_request_line => {
            return Parsed::Invalid(reject(Fault::LineTooLong, "request line too long"));
        }
        _ => {}
    }
    // Uninitialised header slots: zero-filling 128 slots would cost more than parsing a
    // small request (benches/http1.rs).
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; 128];
    let mut heap: Vec<MaybeUninit<httparse::Header>>;
    let headers: &mut [MaybeUninit<httparse::Header>] = if limits.max_headers <= storage.len() {
        &mut storage[..limits.max_headers]
    } else {
        heap = (0..limits.max_headers)
            .map(|_| MaybeUninit::uninit())
            .collect();
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, headers);
    let used = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Parsed::Invalid(reject(
                    Fault::HeadTooLarge,
                    "request header fields too large",
                ));
            }
            return Parsed::Incomplete;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(reject(Fault::HeadTooLarge, "too many header fields"));
        }
        Err(httparse::Error::Version) => {
            return Parsed::Invalid(version_reject(buf));
        }
        Err(httparse::Error::Token) => {
            return Parsed::Invalid(reject(Fault::Malformed, "invalid method or request line"));
        }
        Err(httparse::Error::HeaderName) => {
            return Parsed::Invalid(reject(
                Fault::Malformed,
                "invalid header name (obs-fold or space before colon?)",
            ));
        }
        Err(httparse::Error::HeaderValue) => {
            return Parsed::Invalid(reject(Fault::Malformed, "invalid byte in header value"));
        }
        Err(httparse::Error::NewLine) => {
            return Parsed::Invalid(reject(Fault::Malformed, "bare CR or invalid line ending"));
        }
        Err(_) => return Parsed::Invalid(reject(Fault::Malformed, "malformed request")),
    };
    if used > limits.max_head_bytes {
        return Parsed::Invalid(reject(
            Fault::HeadTooLarge,
            "request header fields too large",
        ));
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let version = if req.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut raw = RawRequest {
        method: offset(method.as_bytes()),
        target: offset(target.as_bytes()),
        version,
        headers: Vec::with_capacity(req.headers.len()),
    };
    for h in req.headers.iter() {
        raw.headers
            .push((offset(h.name.as_bytes()), offset(h.value)));
    }
    Parsed::Complete(raw, used)
}

fn version_reject(buf: &[u8]) -> Reject {
    // A well-formed line asking for another version ("GET / HTTP/2.0", or "PRI * HTTP/2.0",
    // the h2 preface without ALPN) → 505; any other shape is a malformed line → 400.
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    // The line may still be incomplete: then its start must fit the pattern.
    let complete = buf.contains(&b'\n');
    let fits = |v: &[u8]| {
        let pattern_ok = v.iter().enumerate().all(|(i, &b)| match i {
            0..=4 => b == b"HTTP/"[i],
            5 | 7 => b.is_ascii_digit(),
            6 => b == b'.',
            _ => false,
        });
        pattern_ok && (v.len() == 8 || (!complete && v.len() < 8))
    };
    if parts.len() == 3 && fits(parts[2]) {
        reject(Fault::Version, "HTTP version not supported")
    } else {
        reject(Fault::Malformed, "malformed request line")
    }
}

/// Offsets of a parsed request into its buffer; [`take_request`] turns it into slices.
#[derive(Debug)]
pub struct RawRequest {
    method: (usize, usize),
    target: (usize, usize),
    version: Version,
    headers: Vec<((usize, usize), (usize, usize))>,
}

/// Splits the head off `buf` and checks its meaning; the head keeps slices of those bytes.
pub fn take_request(
    buf: &mut BytesMut,
    raw: RawRequest,
    used: usize,
) -> Result<RequestHead, Reject> {
    let frozen = buf.split_to(used).freeze();
    let s = |(o, l): (usize, usize)| frozen.slice(o..o + l);
    let headers: Vec<Header> = raw
        .headers
        .iter()
        .map(|&(n, v)| Header {
            name: s(n),
            value: s(v),
        })
        .collect();
    let method = s(raw.method);
    let target = s(raw.target);
    check_request(method, target, raw.version, headers)
}

fn check_request(
    method: Bytes,
    target: Bytes,
    version: Version,
    headers: Vec<Header>,
) -> Result<RequestHead, Reject> {
    check_target(&method, &target)?;
    let mut framing = Framing::default();
    let mut host: Option<&Bytes> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut expect_continue = false;
    let mut te_trailers = false;
    for h in &headers {
        check_value(&h.value)?;
        let name = h.name.as_ref();
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err(reject(Fault::Malformed, "more than one Host header"));
            }
            host = Some(&h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in comma_tokens(&h.value) {
                connection_close |= token.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if trim(&h.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(reject(Fault::Expectation, "unsupported Expect"));
            }
        } else if name.eq_ignore_ascii_case(b"te") {
            te_trailers |= comma_tokens(&h.value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        } else {
            framing.add(name, &h.value)?;
        }
    }
    let body = match framing.resolve()? {
        BodyKind::Chunked if version == Version::Http10 => {
            return Err(reject(
                Fault::Malformed,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        BodyKind::UntilClose => BodyKind::Empty,
        b => b,
    };
    // Host must be there (HTTP/1.1) and valid even when an absolute-form target's
    // authority overrides it (RFC 9112 §3.2, §3.2.2).
    let host_field = match host {
        Some(h) => Some(parse_host_header(h)?),
        None if version == Version::Http11 => {
            return Err(reject(Fault::Malformed, "HTTP/1.1 request without Host"));
        }
        None => None,
    };
    let (host_value, authority) = match target_authority(&target)? {
        Some((host, sent)) => (Some(host), Some(sent)),
        None => host_field.unzip(),
    };
    let keep_alive = match version {
        Version::Http11 => !connection_close,
        Version::Http10 => connection_keep_alive && !connection_close,
    };
    Ok(RequestHead {
        method,
        target,
        version,
        headers,
        host: host_value,
        authority,
        body,
        keep_alive,
        expect_continue: expect_continue && version == Version::Http11,
        te_trailers,
        connection_upgrade: connection_upgrade && version == Version::Http11,
    })
}

/// Parses a response head from the start of `buf` (from an upstream). Status codes must
/// be three digits from 100 to 999 (RFC 9110 §15); anything else is refused (502).
pub fn parse_response(buf: &mut BytesMut, limits: &ResponseLimits) -> Parsed<ResponseHead> {
    let config = httparse::ParserConfig::default();
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; RESPONSE_STACK_SLOTS];
    let mut heap: Vec<MaybeUninit<httparse::Header>>;
    let mut resp = httparse::Response::new(&mut []);
    let slots = limits.max_headers.min(RESPONSE_STACK_SLOTS);
    let mut status =
        config.parse_response_with_uninit_headers(&mut resp, buf, &mut storage[..slots]);
    if matches!(status, Err(httparse::Error::TooManyHeaders)) && limits.max_headers > slots {
        // Rare: more fields than the stack holds; retry with the configured maximum.
        heap = (0..limits.max_headers)
            .map(|_| MaybeUninit::uninit())
            .collect();
        resp = httparse::Response::new(&mut []);
        status = config.parse_response_with_uninit_headers(&mut resp, buf, &mut heap);
    }
    let used = match status {
        Ok(httparse::Status::Complete(n)) if n > limits.max_head_bytes => {
            return Parsed::Invalid(reject(
                Fault::HeadTooLarge,
                "upstream response head too large",
            ));
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Parsed::Invalid(reject(
                Fault::HeadTooLarge,
                "upstream response head too large",
            ));
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(reject(
                Fault::HeadTooLarge,
                "upstream response has too many header fields",
            ));
        }
        Err(_) => {
            return Parsed::Invalid(reject(Fault::Malformed, "malformed upstream response head"));
        }
    };
    let status = match resp.code {
        Some(code @ 100..=999) => code,
        _ => {
            return Parsed::Invalid(reject(
                Fault::Malformed,
                "upstream status code not in 100-999",
            ));
        }
    };
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let version = if resp.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    let reason = offset(resp.reason.unwrap_or("").as_bytes());
    let offsets: Vec<_> = resp
        .headers
        .iter()
        .map(|h| (offset(h.name.as_bytes()), offset(h.value)))
        .collect();
    let frozen = buf.split_to(used).freeze();
    let s = |(o, l): (usize, usize)| frozen.slice(o..o + l);
    let headers: Vec<Header> = offsets
        .into_iter()
        .map(|(n, v)| Header {
            name: s(n),
            value: s(v),
        })
        .collect();
    let mut framing = Framing::default();
    let mut close = false;
    let mut keep = false;
    for h in &headers {
        if h.name.eq_ignore_ascii_case(b"connection") {
            for t in comma_tokens(&h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if let Err(r) = framing.add(&h.name, &h.value) {
            return Parsed::Invalid(reject(Fault::Malformed, r.reason));
        }
    }
    let body = match framing.resolve_response() {
        Ok(b) => b,
        Err(r) => return Parsed::Invalid(reject(Fault::Malformed, r.reason)),
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    };
    Parsed::Complete(
        ResponseHead {
            status,
            reason: s(reason),
            version,
            headers,
            body,
            keep_alive,
        },
        used,
    )
}

/// Collects Content-Length and Transfer-Encoding and decides the framing.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    te_seen: bool,
    te_chunked_last: bool,
    te_chunked_count: usize,
    te_other: bool,
}

impl Framing {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), Reject> {
        if name.eq_ignore_ascii_case(b"content-length") {
            // A list of identical values ("5, 5") is one length (RFC 9110 §8.6).
            for part in value.split(|&b| b == b',') {
                let n = parse_content_length(trim(part))
                    .ok_or(reject(Fault::Malformed, "invalid Content-Length"))?;
                match self.length {
                    Some(prev) if prev != n => {
                        return Err(reject(
                            Fault::Malformed,
                            "conflicting Content-Length values",
                        ));
                    }
                    _ => self.length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&b| b == b',') {
                let coding = trim(coding);
                if coding.is_empty() {
                    continue;
                }
                self.te_seen = true;
                if coding.eq_ignore_ascii_case(b"chunked") {
                    self.te_chunked_count += 1;
                    self.te_chunked_last = true;
                } else {
                    self.te_other = true;
                    self.te_chunked_last = false;
                }
            }
        }
        Ok(())
    }

    fn resolve(&self) -> Result<BodyKind, Reject> {
        if self.te_seen {
            if self.length.is_some() {
                return Err(reject(
                    Fault::Malformed,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if !self.te_chunked_last || self.te_chunked_count != 1 {
                return Err(reject(
                    Fault::Malformed,
                    "Transfer-Encoding must end in a single chunked",
                ));
            }
            if self.te_other {
                return Err(reject(Fault::Coding, "transfer coding not implemented"));
            }
            return Ok(BodyKind::Chunked);
        }
        Ok(match self.length {
            Some(0) | None => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        })
    }

    fn resolve_response(&self) -> Result<BodyKind, Reject> {
        if self.te_seen {
            // RFC 9112 §6.3: chunked wins over Content-Length; anything else we can't frame.
            if !self.te_chunked_last || self.te_chunked_count != 1 || self.te_other {
                return Err(reject(
                    Fault::Malformed,
                    "upstream sent an unsupported Transfer-Encoding",
                ));
            }
            return Ok(BodyKind::Chunked);
        }
        Ok(match self.length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::UntilClose,
        })
    }
}

fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// httparse lets obs-text and DEL through in values; a proxy refuses control bytes.
fn check_value(v: &[u8]) -> Result<(), Reject> {
    if v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(reject(Fault::Malformed, "control byte in header value"));
    }
    Ok(())
}

fn check_target(method: &[u8], target: &[u8]) -> Result<(), Reject> {
    if target.is_empty() || !target.iter().all(|&b| b > 0x20 && b < 0x7f) {
        return Err(reject(Fault::Malformed, "invalid request target"));
    }
    if method == b"CONNECT" {
        return Err(reject(Fault::Method, "CONNECT is not supported"));
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(())
        } else {
            Err(reject(
                Fault::Malformed,
                "asterisk-form target is only for OPTIONS",
            ))
        };
    }
    if target[0] == b'/' {
        return Ok(());
    }
    let lower = target.to_ascii_lowercase();
    if (lower.starts_with(b"http://") || lower.starts_with(b"https://"))
        && host_from_target_bytes(target).is_some()
    {
        return Ok(());
    }
    Err(reject(Fault::Malformed, "invalid request target"))
}

/// For an absolute-form target, the range of its path and query (from the `/` or `?`
/// after the authority; `None` when only the authority or a fragment follows); for
/// origin-form, all of it.
fn path_of(target: &[u8]) -> Option<std::ops::Range<usize>> {
    if target.first() == Some(&b'/') {
        return Some(0..target.len());
    }
    let after_scheme = target.windows(3).position(|w| w == b"://")? + 3;
    let rest = &target[after_scheme..];
    match rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
    {
        Some(p) if rest[p] != b'#' => Some(after_scheme + p..target.len()),
        _ => None,
    }
}

fn host_from_target_bytes(target: &[u8]) -> Option<(usize, usize)> {
    let start = target.windows(3).position(|w| w == b"://")? + 3;
    let rest = &target[start..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(&b'@') {
        return None;
    }
    Some((start, end))
}

/// An absolute-form target's authority as (routing host, as sent); `None` for the other
/// forms. An authority that is not a valid host is refused: it must never fall back to
/// the Host field, which would route by one authority and forward another.
fn target_authority(target: &Bytes) -> Result<Option<(Bytes, Bytes)>, Reject> {
    if target.first() == Some(&b'/') || target.as_ref() == b"*" {
        return Ok(None);
    }
    let bad = reject(Fault::Malformed, "invalid authority in the request target");
    let (start, len) = host_from_target_bytes(target).ok_or(bad.clone())?;
    let auth = target.slice(start..start + len);
    parse_host_header(&auth).map(Some).map_err(|_| bad)
}

/// Checks a Host value (`name`, `name:port`, `[v6]:port`) and returns it lower-cased,
/// without port or trailing dot (what routes), and trimmed as sent (what is forwarded).
fn parse_host_header(v_all: &Bytes) -> Result<(Bytes, Bytes), Reject> {
    let v = trim(v_all);
    let sent = v_all.slice_ref(v);
    let bad = reject(Fault::Malformed, "invalid Host header");
    if v.is_empty() {
        return Err(bad);
    }
    let host: &[u8] = if v[0] == b'[' {
        let close = v.iter().position(|&b| b == b']').ok_or(bad.clone())?;
        let rest = &v[close + 1..];
        if !(rest.is_empty() || (rest[0] == b':' && rest[1..].iter().all(u8::is_ascii_digit))) {
            return Err(bad);
        }
        &v[..=close]
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(p) if v[p + 1..].iter().all(u8::is_ascii_digit) => &v[..p],
            Some(_) => return Err(bad),
            None => v,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%[]:".contains(&b));
    if !ok || host.is_empty() {
        return Err(bad);
    }
    if host.iter().any(u8::is_ascii_uppercase) {
        return Ok((Bytes::from(host.to_ascii_lowercase()), sent));
    }
    // Already lower case (the usual): a slice of the head, no copy, no allocation.
    Ok((v_all.slice_ref(host), sent))
}

/// The comma-separated, trimmed, non-empty tokens of a list header.
pub fn comma_tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
