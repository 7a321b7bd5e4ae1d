//! Protocol-neutral HTTP message parts: what an exchange ([`crate::proxy`]) takes in and
//! hands out, whichever session (HTTP/1.1 today; HTTP/2 streams and upgraded tunnels
//! next) produced the request and will frame the response.
//!
//! Nothing here knows a wire format: no HTTP version, no chunked coding, no connection
//! buffer. Header names and values are `Bytes` slices of the buffer the session read the
//! head into, never copied until something edits them. Parsers report what is wrong
//! with a client's message as a [`Fault`]; the status it earns is chosen in one place,
//! [`crate::error::ProxyError::status`].

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;

use crate::transport::tls::TlsInfo;

pub use crate::field::{Header, is_tchar, trim};

/// How long a message body is, as far as the exchange needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// The message has no body at all (a GET without one; a response to HEAD; 204; 304).
    None,
    /// Exactly this many bytes (0 is an empty body, which is not the same as none).
    Known(u64),
    /// Bytes until the sender says the body is done (chunked, an HTTP/2 stream without
    /// content-length, a close-delimited response).
    Unknown,
}

pub use crate::status::Fault;

/// What the proxy knows about the client, for forwarding headers and logs. Built once per
/// connection: the address is formatted here, not on every request.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// `"https"` or `"http"`: the scheme the client used.
    pub proto: &'static str,
    /// The listener it came in on: its position in the generation's `listeners` (whose
    /// per-listener settings, such as the identity fields, the exchange reads).
    pub listener: usize,
    /// The canonical IP (an IPv4-mapped IPv6 address shown as IPv4) as text.
    ip_text: [u8; 39],
    ip_len: u8,
}

impl ClientInfo {
    pub fn new(addr: SocketAddr, proto: &'static str) -> ClientInfo {
        use std::io::Write;
        let mut ip_text = [0u8; 39];
        let ip = addr.ip().to_canonical();
        let mut w = &mut ip_text[..];
        // 39 bytes hold the longest IPv6 text (8 groups of 4 hex digits and 7 colons).
        let _ = write!(w, "{ip}");
        let ip_len = (39 - w.len()) as u8;
        ClientInfo {
            addr,
            proto,
            listener: 0,
            ip_text,
            ip_len,
        }
    }

    /// The same client, on the listener at `index` (0 until set).
    pub fn on_listener(mut self, index: usize) -> ClientInfo {
        self.listener = index;
        self
    }

    /// The client's IP as text (canonical form).
    pub fn ip(&self) -> &[u8] {
        &self.ip_text[..usize::from(self.ip_len)]
    }

    pub fn is_v6(&self) -> bool {
        self.addr.ip().to_canonical().is_ipv6()
    }
}

/// A request as every session hands it to the exchange.
#[derive(Debug)]
pub struct Request {
    pub method: Bytes,
    /// `"https"` or `"http"`.
    pub scheme: &'static str,
    /// Lower-case host without port: what routes. From an absolute-form target (whose
    /// authority wins over Host, RFC 9112 §3.2.2), else the Host field (HTTP/2's
    /// `:authority`); `None` when an HTTP/1.0 client sent none.
    pub authority: Option<Bytes>,
    /// The same authority as the client wrote it, port and IPv6 brackets kept
    /// (`App.Test:8443`, `[::1]:8080`): the Host sent upstream and Forwarded `host=`, so
    /// the upstream sees the authority that routed.
    pub authority_sent: Option<Bytes>,
    /// Path and query (`/a/b?q`), or `*` for `OPTIONS *`. As the session received it
    /// until the exchange normalises it ([`crate::uri::normalize`]) before routing;
    /// from then on the path that routes and is forwarded.
    pub path: Bytes,
    /// The fields as the client sent them, in order (editable: policies add, remove and
    /// replace fields). Hop-by-hop and framing fields are still there: whoever writes
    /// the request for the upstream drops them.
    pub headers: Vec<Header>,
    /// The body's length as the client announced it; the bytes come from the session's
    /// [`crate::proxy::BodySource`].
    pub body: BodyLength,
    /// The client (after PROXY protocol / trusted proxies, when those come).
    pub client: ClientInfo,
    /// What the connection's TLS handshake settled (`None` on a plain listener).
    pub tls: Option<Rc<TlsInfo>>,
    /// When the session had the whole head.
    pub received: monoio::time::Instant,
}

impl Request {
    pub fn is_head(&self) -> bool {
        self.method.as_ref() == b"HEAD"
    }

    /// A gRPC request: `content-type: application/grpc` or `application/grpc+…`. The
    /// proxy's own answers to it are gRPC statuses ([`GatewayResponse::grpc`]).
    pub fn is_grpc(&self) -> bool {
        self.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(b"content-type")
                && h.value.len() >= 16
                && h.value[..16].eq_ignore_ascii_case(b"application/grpc")
                && matches!(h.value.get(16), None | Some(b'+' | b';'))
        })
    }

    /// The request's `grpc-timeout` (the first one), when it is valid.
    pub fn grpc_timeout(&self) -> Option<std::time::Duration> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(b"grpc-timeout"))
            .and_then(|h| grpc_timeout(&h.value))
    }
}

/// The client sent `TE: trailers` (among its codings): it takes trailer fields.
pub fn te_trailers(headers: &[Header]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"te"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(b"trailers"))
}

/// A `grpc-timeout` value (gRPC over HTTP/2 spec: `TimeoutValue TimeoutUnit`, 1 to 8
/// ASCII digits then one of `H M S m u n`); `None` when malformed. No I/O.
pub fn grpc_timeout(v: &[u8]) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A response head as the exchange hands it to a session's sink: the upstream's status,
/// reason and fields. Hop-by-hop and framing fields are still in `headers`; the session
/// drops them and writes its own framing.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Bytes,
    pub headers: Vec<Header>,
}

/// A response of the proxy's own — an error, a policy's refusal, a redirect — as the
/// exchange hands it to a session ([`crate::proxy::ResponseSink::respond`]): the status,
/// extra header fields (`Location`, `Retry-After`, `WWW-Authenticate`, CORS fields…)
/// and a small body. The session adds its own framing (`Content-Length`, `Connection`)
/// and `Server`; nothing here is hop-by-hop.
#[derive(Debug, Clone)]
pub struct GatewayResponse {
    pub status: u16,
    /// Fields written after `Server` and `Content-Type`, in order (empty: no allocation).
    pub headers: Vec<Header>,
    pub body: GatewayBody,
}

/// The body of a [`GatewayResponse`].
#[derive(Debug, Clone)]
pub enum GatewayBody {
    /// No body bytes (`Content-Length: 0`; a 204, such as a CORS preflight's answer,
    /// has none), e.g. a redirect.
    Empty,
    /// One line of text (`text/plain`, a newline added): an error's reason.
    Line(&'static str),
    /// These bytes as they are; a `Content-Type` field, if wanted, is in `headers`.
    Bytes(Bytes),
}

impl GatewayResponse {
    /// A plain-text answer: `status` with `reason` as its one-line body.
    pub fn text(status: u16, reason: &'static str) -> GatewayResponse {
        GatewayResponse {
            status,
            headers: Vec::new(),
            body: GatewayBody::Line(reason),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: Bytes) -> GatewayResponse {
        self.headers.push(Header {
            name: Bytes::from_static(name.as_bytes()),
            value,
        });
        self
    }

    /// This answer as a gRPC trailers-only response (HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` from [`crate::status::grpc_code`] and the
    /// reason as `grpc-message`, percent-encoded as the spec asks, no body), for a
    /// request that was gRPC. The extra fields (`Retry-After`, …) stay.
    pub fn grpc(mut self) -> GatewayResponse {
        let code = crate::status::grpc_code(self.status);
        let message: &[u8] = match &self.body {
            GatewayBody::Line(l) => l.as_bytes(),
            _ => crate::status::status_text(self.status).as_bytes(),
        };
        let mut encoded = Vec::with_capacity(message.len());
        for &b in message {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                encoded.push(b);
            } else {
                encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
        let mut headers = vec![
            Header {
                name: Bytes::from_static(b"content-type"),
                value: Bytes::from_static(b"application/grpc"),
            },
            Header {
                name: Bytes::from_static(b"grpc-status"),
                value: Bytes::from(code.to_string()),
            },
            Header {
                name: Bytes::from_static(b"grpc-message"),
                value: Bytes::from(encoded),
            },
        ];
        headers.append(&mut self.headers);
        GatewayResponse {
            status: 200,
            headers,
            body: GatewayBody::Empty,
        }
    }

    /// The body's length on the wire.
    pub fn body_len(&self) -> u64 {
        match &self.body {
            GatewayBody::Empty => 0,
            GatewayBody::Line(l) => l.len() as u64 + 1,
            GatewayBody::Bytes(b) => b.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grpc_timeout_per_spec() {
        assert_eq!(grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(
            grpc_timeout(b"99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
        assert_eq!(grpc_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        for bad in [
            &b""[..],
            b"m",
            b"100",
            b"100x",
            b"123456789m",
            b"-1m",
            b"1 m",
            b"1.5S",
        ] {
            assert_eq!(
                grpc_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn grpc_answer_is_trailers_only() {
        let r = GatewayResponse::text(502, "connect failed: 100%").grpc();
        assert_eq!(r.status, 200);
        assert!(matches!(r.body, GatewayBody::Empty));
        let get = |n: &str| {
            r.headers
                .iter()
                .find(|h| h.name.as_ref() == n.as_bytes())
                .map(|h| h.value.clone())
        };
        assert_eq!(
            get("content-type").as_deref(),
            Some(&b"application/grpc"[..])
        );
        assert_eq!(get("grpc-status").as_deref(), Some(&b"14"[..]));
        assert_eq!(
            get("grpc-message").as_deref(),
            Some(&b"connect failed: 100%25"[..])
        );
        for (status, code) in [(504, 4), (401, 16), (403, 7), (429, 8), (404, 12)] {
            assert_eq!(crate::status::grpc_code(status), code, "{status}");
        }
    }
}
