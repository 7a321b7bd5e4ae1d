//! The statuses the proxy chooses for a refused client message: the parser's [`Fault`]
//! kinds, their one mapping to a status ([`fault_status`]) and the reason phrases
//! ([`status_text`]). A leaf, so that the transport (plain HTTP on a TLS port) and the
//! exchange ([`crate::error`] re-exports these) answer with the same mapping.

/// What kind of fault made a session refuse a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Not valid syntax or framing (request smuggling vectors included).
    Malformed,
    /// The request line is longer than `max_request_line_bytes`.
    LineTooLong,
    /// The head is larger than its byte limit or has more fields than its count limit.
    HeadTooLarge,
    /// A well-formed request line with a version other than HTTP/1.0 or 1.1.
    Version,
    /// A transfer coding other than chunked.
    Coding,
    /// An `Expect` other than `100-continue`.
    Expectation,
    /// A method the proxy does not serve (CONNECT).
    Method,
    /// A request path that cannot be normalised safely ([`crate::uri::PathReject`]: `..`
    /// above `/`, an encoded separator refused by `escaped_slashes`, `%00`, a bad escape).
    Target,
    /// A forwarding field (`Forwarded`, `X-Forwarded-For`) the proxy would extend is
    /// malformed and `malformed_forwarding_headers = "reject"`.
    Forwarding,
    /// Plain HTTP sent to a TLS listener (answered in plain text before the close).
    PlainHttp,
    /// An `Upgrade` request with a body (Content-Length over 0, or chunked): the bytes
    /// after its head belong to the new protocol, so a body cannot be told from them.
    UpgradeBody,
    /// An HTTP/2 extended CONNECT (RFC 8441) the gateway cannot carry: a `:protocol`
    /// the route's `upgrade` list does not allow, or a route to an HTTP/2 upstream.
    ConnectProtocol,
}

/// The status for a client message refused by the parser.
pub fn fault_status(fault: Fault) -> u16 {
    match fault {
        Fault::LineTooLong => 414,
        Fault::HeadTooLarge => 431,
        Fault::Version => 505,
        Fault::Coding | Fault::ConnectProtocol => 501,
        Fault::Expectation => 417,
        Fault::Method => 405,
        Fault::Target | Fault::Forwarding | Fault::PlainHttp | Fault::UpgradeBody => 400,
        // A fault added later is a malformed message until it gets its own status.
        _ => 400,
    }
}

/// The gRPC status code (grpc/doc/statuscodes.md) for a failure the proxy answers
/// itself with HTTP `status`, when the request was gRPC (`content-type:
/// application/grpc*`): the answer is then a trailers-only gRPC response carrying this
/// code instead of the HTTP error. Proxy-side rather than the spec's HTTP-to-gRPC table
/// (doc/http-grpc-status-mapping.md, which sees only HTTP statuses from afar): a timeout
/// is DEADLINE_EXCEEDED, a rate limit RESOURCE_EXHAUSTED, no route UNIMPLEMENTED.
pub fn grpc_code(status: u16) -> u8 {
    match status {
        // Client-side faults: a message the proxy could not take.
        400 | 405 | 414 | 417 | 421 | 431 | 505 => 13, // INTERNAL
        401 => 16,                                     // UNAUTHENTICATED
        403 => 7,                                      // PERMISSION_DENIED
        404 | 501 => 12,                               // UNIMPLEMENTED
        408 | 504 => 4,                                // DEADLINE_EXCEEDED
        413 | 429 => 8,                                // RESOURCE_EXHAUSTED
        502 | 503 => 14,                               // UNAVAILABLE
        500 => 13,                                     // INTERNAL
        _ => 2,                                        // UNKNOWN
    }
}

/// Canonical reason phrases for the statuses the proxy generates.
pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
