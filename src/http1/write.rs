//! Serialising heads: the request sent upstream and the response sent to the client.
//!
//! Heads are rebuilt, never forwarded raw: every line ends in CRLF, hop-by-hop fields
//! (RFC 9110 §7.6.1: `Connection` and the fields it names, `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-*`) are dropped, and framing headers are written
//! by us from the framing we chose. No I/O, no allocation beyond the output buffer.

use bytes::{BufMut, Bytes, BytesMut};

use super::body::is_tchar;
use super::parse::{Header, Version, comma_tokens};
use crate::config::ForwardHeaders;
use crate::forwarding;
use crate::message::{BodyLength, ClientInfo, GatewayBody, GatewayResponse, Request, ResponseHead};

/// Fields a proxy never forwards; `Connection` may name more.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    // One comparison, chosen by length, instead of one per hop-by-hop name: this runs
    // for every field of every head.
    let fixed: &[u8] = match name.len() {
        2 => b"te",
        6 => b"expect",
        7 if name[0].eq_ignore_ascii_case(&b't') => b"trailer",
        7 => b"upgrade",
        10 if name[0].eq_ignore_ascii_case(&b'c') => b"connection",
        10 => b"keep-alive",
        17 => b"transfer-encoding",
        _ => b"",
    };
    (!fixed.is_empty() && name.eq_ignore_ascii_case(fixed))
        || (name.len() > 6 && name[..6].eq_ignore_ascii_case(b"proxy-"))
}

/// The field names the `Connection` headers of `headers` list (RFC 9110 §7.6.1), other
/// than the hop-by-hop names dropped anyway — read once per head, so each
/// field is checked against this short list (usually empty: no allocation) rather than
/// against every `Connection` header again.
pub fn connection_listed(headers: &[Header]) -> Vec<&[u8]> {
    let mut listed = Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"connection"))
    {
        for t in comma_tokens(&h.value) {
            if !is_hop_by_hop(t) {
                listed.push(t);
            }
        }
    }
    listed
}

pub fn is_listed(listed: &[&[u8]], name: &[u8]) -> bool {
    listed.iter().any(|t| t.eq_ignore_ascii_case(name))
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn put_u64(out: &mut BytesMut, n: u64) {
    let mut b = itoa_buf(n);
    out.put_slice(b.as_str());
}

struct ItoaBuf {
    buf: [u8; 20],
    start: usize,
}

impl ItoaBuf {
    fn as_str(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> ItoaBuf {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ItoaBuf { buf, start: i }
}

/// Writes the request head to send upstream.
///
/// `path` replaces the target (the normalised path, after any prefix strip); `body` is
/// the length we forward (unknown: chunked). Host is the authority that routed, as the
/// client wrote it (an absolute-form target's, never a Host field that disagrees with
/// it); `fallback_host` when the client sent none (HTTP/1.0). `forward` says which
/// forwarding fields are ours to add (the others pass through); a client's
/// X-Forwarded-For or Forwarded that is ours to extend is extended only when every such
/// field is well-formed ([`crate::forwarding`]), else dropped and ours sent alone.
#[inline]
pub fn request_head(
    out: &mut BytesMut,
    head: &Request,
    path: &[u8],
    body: BodyLength,
    fallback_host: &str,
    forward: ForwardHeaders,
) {
    head_for_upstream(out, head, path, body, fallback_host, forward, None);
}

/// [`request_head`] for an upgrade request the route allows: the client's `Upgrade` and
/// `Connection` fields are dropped like any hop-by-hop field, and `Connection: upgrade`
/// with `Upgrade: {protocol}` (the one protocol chosen) written instead. No body.
/// `key`: a `Sec-WebSocket-Key` the gateway made (an RFC 8441 stream), sent instead of
/// any the client sent.
pub fn upgrade_request_head(
    out: &mut BytesMut,
    head: &Request,
    path: &[u8],
    fallback_host: &str,
    forward: ForwardHeaders,
    protocol: &[u8],
    key: Option<&[u8]>,
) {
    let body = BodyLength::None;
    let upgrade = Some(UpgradeFields { protocol, key });
    head_for_upstream(out, head, path, body, fallback_host, forward, upgrade);
}

/// The fields an upgrade request adds ([`upgrade_request_head`]).
struct UpgradeFields<'a> {
    protocol: &'a [u8],
    key: Option<&'a [u8]>,
}

#[inline(always)]
fn head_for_upstream(
    out: &mut BytesMut,
    head: &Request,
    path: &[u8],
    body: BodyLength,
    fallback_host: &str,
    forward: ForwardHeaders,
    upgrade: Option<UpgradeFields<'_>>,
) {
    let own_key = upgrade.as_ref().is_some_and(|u| u.key.is_some());
    let client = head.client;
    out.reserve(256 + head.headers.len() * 48);
    out.put_slice(&head.method);
    out.put_u8(b' ');
    out.put_slice(path);
    out.put_slice(b" HTTP/1.1\r\n");
    match &head.authority_sent {
        Some(h) => put_header(out, b"Host", h),
        None => put_header(out, b"Host", fallback_host.as_bytes()),
    }
    let mut xff_done = false;
    let mut forwarded_done = false;
    let listed = connection_listed(&head.headers);
    for h in &head.headers {
        let name = h.name.as_ref();
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"content-length")
            || (forward.x_real_ip && name.eq_ignore_ascii_case(b"x-real-ip"))
            || (forward.x_forwarded_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto"))
            || is_listed(&listed, name)
            || (own_key && name.eq_ignore_ascii_case(b"sec-websocket-key"))
        {
            continue;
        }
        if forward.x_forwarded_for && name.eq_ignore_ascii_case(b"x-forwarded-for") {
            // All earlier hops, joined, then this client: one header.
            if !xff_done {
                xff_done = true;
                out.put_slice(b"X-Forwarded-For: ");
                if forwarding::all_valid(&head.headers, b"x-forwarded-for", forwarding::xff_valid) {
                    put_joined(out, &head.headers, b"x-forwarded-for");
                }
                put_ip(out, &client);
                out.put_slice(b"\r\n");
            }
            continue;
        }
        if forward.forwarded && name.eq_ignore_ascii_case(b"forwarded") {
            if !forwarded_done {
                forwarded_done = true;
                out.put_slice(b"Forwarded: ");
                if forwarding::all_valid(&head.headers, b"forwarded", forwarding::forwarded_valid) {
                    put_joined(out, &head.headers, b"forwarded");
                }
                put_forwarded_element(out, &client, head.authority_sent.as_ref());
                out.put_slice(b"\r\n");
            }
            continue;
        }
        put_header(out, name, &h.value);
    }
    if forward.x_forwarded_for && !xff_done {
        out.put_slice(b"X-Forwarded-For: ");
        put_ip(out, &client);
        out.put_slice(b"\r\n");
    }
    if forward.forwarded && !forwarded_done {
        out.put_slice(b"Forwarded: ");
        put_forwarded_element(out, &client, head.authority_sent.as_ref());
        out.put_slice(b"\r\n");
    }
    if forward.x_real_ip {
        out.put_slice(b"X-Real-IP: ");
        put_ip(out, &client);
        out.put_slice(b"\r\n");
    }
    if forward.x_forwarded_proto {
        out.put_slice(b"X-Forwarded-Proto: ");
        out.put_slice(client.proto.as_bytes());
        out.put_slice(b"\r\n");
    }
    if let Some(u) = upgrade {
        out.put_slice(b"Connection: upgrade\r\nUpgrade: ");
        out.put_slice(u.protocol);
        out.put_slice(b"\r\n");
        if let Some(key) = u.key {
            put_header(out, b"Sec-WebSocket-Key", key);
        }
    }
    match body {
        BodyLength::Known(n) => {
            out.put_slice(b"Content-Length: ");
            put_u64(out, n);
            out.put_slice(b"\r\n");
        }
        BodyLength::Unknown => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyLength::None => {
            // Methods that usually carry a body announce an empty one explicitly.
            if matches!(head.method.as_ref(), b"POST" | b"PUT" | b"PATCH") {
                out.put_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    out.put_slice(b"\r\n");
}

/// The non-empty values of every `name` field, each followed by `, ` (the proxy's own
/// entry comes next).
fn put_joined(out: &mut BytesMut, headers: &[Header], name: &[u8]) {
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        let v = super::parse::trim(&h.value);
        if !v.is_empty() {
            out.put_slice(v);
            out.put_slice(b", ");
        }
    }
}

fn put_ip(out: &mut BytesMut, client: &ClientInfo) {
    out.put_slice(client.ip());
}

/// RFC 7239 §4: `for=` (IPv6 quoted and bracketed), `proto=`, and `host=` as the client
/// wrote the authority (quoted when it is not a token: a port, IPv6 brackets; §5.3).
fn put_forwarded_element(out: &mut BytesMut, client: &ClientInfo, host: Option<&Bytes>) {
    if client.is_v6() {
        out.put_slice(b"for=\"[");
        out.put_slice(client.ip());
        out.put_slice(b"]\"");
    } else {
        out.put_slice(b"for=");
        out.put_slice(client.ip());
    }
    out.put_slice(b";proto=");
    out.put_slice(client.proto.as_bytes());
    let Some(h) = host else { return };
    if h.iter().all(|&b| is_tchar(b)) {
        out.put_slice(b";host=");
        out.put_slice(h);
    } else if h
        .iter()
        .all(|&b| b > 0x20 && b < 0x7f && b != b'"' && b != b'\\')
    {
        // A validated Host holds no quote or backslash; checked again, never escaped.
        out.put_slice(b";host=\"");
        out.put_slice(h);
        out.put_u8(b'"');
    }
}

/// The end of a chunked body with trailer fields: the last chunk, each field that may
/// be a trailer (no hop-by-hop or framing field, no `Host`), the final CRLF.
pub fn last_chunk_with_trailers(out: &mut BytesMut, fields: &[Header]) {
    out.put_slice(b"0\r\n");
    for h in fields {
        let name = h.name.as_ref();
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"host")
        {
            continue;
        }
        put_header(out, name, &h.value);
    }
    out.put_slice(b"\r\n");
}

/// How the response body travels to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body bytes follow (HEAD, 204, 304, or empty).
    NoBody,
    Length(u64),
    Chunked,
    /// Body until we close (HTTP/1.0 clients only).
    Close,
}

/// Writes the response head for the client. `keep_alive` decides the `Connection` header.
pub fn response_head(
    out: &mut BytesMut,
    head: &ResponseHead,
    framing: ClientFraming,
    client_version: Version,
    keep_alive: bool,
    keep_upstream_length: bool,
) {
    out.reserve(128 + head.headers.len() * 48);
    out.put_slice(match client_version {
        Version::Http11 => b"HTTP/1.1 ",
        Version::Http10 => b"HTTP/1.0 ",
    });
    put_u64(out, u64::from(head.status));
    out.put_u8(b' ');
    out.put_slice(&head.reason);
    out.put_slice(b"\r\n");
    let listed = connection_listed(&head.headers);
    for h in &head.headers {
        let name = h.name.as_ref();
        if is_hop_by_hop(name)
            || (!keep_upstream_length && name.eq_ignore_ascii_case(b"content-length"))
            || is_listed(&listed, name)
        {
            continue;
        }
        put_header(out, name, &h.value);
    }
    match framing {
        ClientFraming::Length(n) if !keep_upstream_length => {
            out.put_slice(b"Content-Length: ");
            put_u64(out, n);
            out.put_slice(b"\r\n");
        }
        ClientFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    connection_header(out, client_version, keep_alive);
    out.put_slice(b"\r\n");
}

/// The head of a `101 Switching Protocols` for the client: the upstream's fields but
/// the hop-by-hop and framing ones, its `Upgrade` kept, and `Connection: upgrade`.
pub fn switching_head(out: &mut BytesMut, head: &ResponseHead) {
    out.reserve(128 + head.headers.len() * 48);
    out.put_slice(b"HTTP/1.1 101 ");
    out.put_slice(&head.reason);
    out.put_slice(b"\r\n");
    let listed = connection_listed(&head.headers);
    for h in &head.headers {
        let name = h.name.as_ref();
        let upgrade = name.eq_ignore_ascii_case(b"upgrade");
        if (is_hop_by_hop(name) && !upgrade)
            || name.eq_ignore_ascii_case(b"content-length")
            || (is_listed(&listed, name) && !upgrade)
        {
            continue;
        }
        put_header(out, name, &h.value);
    }
    out.put_slice(b"Connection: upgrade\r\n\r\n");
}

fn connection_header(out: &mut BytesMut, version: Version, keep_alive: bool) {
    match (version, keep_alive) {
        (Version::Http11, false) | (Version::Http10, false) => {
            out.put_slice(b"Connection: close\r\n")
        }
        (Version::Http10, true) => out.put_slice(b"Connection: keep-alive\r\n"),
        (Version::Http11, true) => {}
    }
}

/// A complete response generated by the proxy itself ([`GatewayResponse`]: errors, policy
/// answers, redirects; 100 Continue aside): status line, `Server`, the body's
/// `Content-Type` (a text line's), `Content-Length` (not on a 204), the response's own
/// fields, then `Connection` as `keep_alive` says, and the body unless `with_body` is
/// false (the answer to a HEAD request: the head says the length the body would have).
pub fn gateway_response(
    out: &mut BytesMut,
    response: &GatewayResponse,
    version: Version,
    keep_alive: bool,
    with_body: bool,
) {
    let status = response.status;
    out.put_slice(match version {
        Version::Http11 => b"HTTP/1.1 ",
        Version::Http10 => b"HTTP/1.0 ",
    });
    put_u64(out, u64::from(status));
    out.put_u8(b' ');
    out.put_slice(status_text(status).as_bytes());
    out.put_slice(b"\r\nServer: ringgate\r\n");
    if let GatewayBody::Line(_) = response.body {
        out.put_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    // RFC 9110 §8.6: a 204 (a CORS preflight's answer) has no Content-Length, nor body.
    if status != 204 {
        out.put_slice(b"Content-Length: ");
        put_u64(out, response.body_len());
        out.put_slice(b"\r\n");
    }
    if status == 405 {
        // RFC 9110 §15.5.6: a 405 lists what is allowed. The proxy forwards every
        // method but CONNECT (the only one it refuses with 405).
        out.put_slice(b"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n");
    }
    for h in &response.headers {
        out.put_slice(&h.name);
        out.put_slice(b": ");
        out.put_slice(&h.value);
        out.put_slice(b"\r\n");
    }
    connection_header(out, version, keep_alive);
    out.put_slice(b"\r\n");
    if !with_body {
        return;
    }
    match &response.body {
        GatewayBody::Empty => {}
        GatewayBody::Line(line) => {
            out.put_slice(line.as_bytes());
            out.put_u8(b'\n');
        }
        GatewayBody::Bytes(b) => out.put_slice(b),
    }
}

pub use crate::error::status_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_matches_display() {
        for n in [0u64, 1, 9, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(itoa_buf(n).as_str(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn hop_by_hop_names() {
        for n in [
            "Connection",
            "keep-alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Authorization",
            "proxy-connection",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["Host", "Content-Type", "Authorization", "Proxy"] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
        // The length-first lookup: every fixed name in other cases, and names of the
        // same lengths that are not hop-by-hop.
        for n in [
            "te",
            "EXPECT",
            "trailer",
            "UPGRADE",
            "CONNECTION",
            "Keep-Alive",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        for n in [
            "tx",
            "Accept",
            "Cookie",
            "Trailers",
            "Tracker",
            "Upgradx",
            "Connectiox",
            "Keep-Alivx",
            "Content-Encoding",
            "Proxy-",
            "Transfer-Encodinx",
        ] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn response_fields_named_by_connection_headers_are_dropped() {
        let h = |n: &'static str, v: &'static str| Header {
            name: Bytes::from_static(n.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
        };
        let head = ResponseHead {
            status: 200,
            reason: Bytes::from_static(b"OK"),
            headers: vec![
                h("Connection", "keep-alive, X-Hop-One"),
                h("X-Hop-One", "1"),
                h("X-Kept", "yes"),
                h("connection", "x-hop-two ,close"),
                h("X-HOP-TWO", "2"),
                h("Keep-Alive", "timeout=5"),
                // Listed too (as the `close` option): a field of that name goes.
                h("Close", "dropped"),
            ],
        };
        let mut out = BytesMut::new();
        response_head(
            &mut out,
            &head,
            ClientFraming::Length(0),
            Version::Http11,
            true,
            false,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text, "HTTP/1.1 200 OK\r\nX-Kept: yes\r\nContent-Length: 0\r\n\r\n",
            "{text}"
        );
    }

    #[test]
    fn a_101_keeps_its_upgrade_and_says_connection_upgrade() {
        let h = |n: &'static str, v: &'static str| Header {
            name: Bytes::from_static(n.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
        };
        let head = ResponseHead {
            status: 101,
            reason: Bytes::from_static(b"Switching Protocols"),
            headers: vec![
                h("Upgrade", "websocket"),
                h("Connection", "Upgrade, X-Hop"),
                h("X-Hop", "1"),
                h("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                h("Content-Length", "0"),
                h("Keep-Alive", "timeout=5"),
            ],
        };
        let mut out = BytesMut::new();
        switching_head(&mut out, &head);
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn an_upgrade_request_goes_upstream_with_its_one_protocol() {
        let mut buf = BytesMut::from(
            &b"GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\n\
               Upgrade: foo/2, websocket\r\nSec-WebSocket-Key: k\r\n\r\n"[..],
        );
        let limits = super::super::parse::HeadLimits {
            max_request_line: 8192,
            max_head_bytes: 8192,
            max_headers: 10,
        };
        let super::super::parse::Parsed::Complete(raw, used) =
            super::super::parse::parse_request(&buf, &limits)
        else {
            panic!("parse");
        };
        let head = super::super::parse::take_request(&mut buf, raw, used).unwrap();
        assert!(head.connection_upgrade);
        let req = Request {
            method: head.method.clone(),
            scheme: "http",
            authority: head.host.clone(),
            authority_sent: head.authority.clone(),
            path: head.path(),
            headers: head.headers.clone(),
            body: BodyLength::None,
            client: ClientInfo::new("192.0.2.1:1".parse().unwrap(), "http"),
            tls: None,
            received: monoio::time::Instant::now(),
        };
        let upgrade = |key: Option<&[u8]>| {
            let mut out = BytesMut::new();
            upgrade_request_head(
                &mut out,
                &req,
                b"/chat",
                "b",
                ForwardHeaders::NONE,
                b"websocket",
                key,
            );
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(
            upgrade(None),
            "GET /chat HTTP/1.1\r\nHost: a.test\r\nSec-WebSocket-Key: k\r\n\
             Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        // A key the gateway made (RFC 8441) replaces the client's.
        assert_eq!(
            upgrade(Some(b"bmV3")),
            "GET /chat HTTP/1.1\r\nHost: a.test\r\n\
             Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: bmV3\r\n\r\n"
        );
        // The same request without the upgrade: neither field goes.
        let mut out = BytesMut::new();
        request_head(
            &mut out,
            &req,
            b"/chat",
            BodyLength::None,
            "b",
            ForwardHeaders::NONE,
        );
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "GET /chat HTTP/1.1\r\nHost: a.test\r\nSec-WebSocket-Key: k\r\n\r\n"
        );
    }

    #[test]
    fn client_address_text_is_canonical_and_fits_the_longest_ipv6() {
        let cases = [
            ("203.0.113.7:1", "203.0.113.7", false),
            ("[::ffff:198.51.100.9]:1", "198.51.100.9", false),
            ("[2001:db8::1]:1", "2001:db8::1", true),
            (
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                true,
            ),
        ];
        for (addr, text, v6) in cases {
            let c = ClientInfo::new(addr.parse().unwrap(), "https");
            assert_eq!(c.ip(), text.as_bytes(), "{addr}");
            assert_eq!(c.is_v6(), v6, "{addr}");
            let mut out = BytesMut::new();
            let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"[..]);
            let limits = super::super::parse::HeadLimits {
                max_request_line: 8192,
                max_head_bytes: 8192,
                max_headers: 10,
            };
            let super::super::parse::Parsed::Complete(raw, used) =
                super::super::parse::parse_request(&buf, &limits)
            else {
                panic!("test request does not parse");
            };
            let head = super::super::parse::take_request(&mut buf, raw, used).unwrap();
            put_forwarded_element(&mut out, &c, head.authority.as_ref());
            let want = if v6 {
                format!("for=\"[{text}]\";proto=https;host=a.test")
            } else {
                format!("for={text};proto=https;host=a.test")
            };
            assert_eq!(&out[..], want.as_bytes(), "{addr}");
        }
    }
}
