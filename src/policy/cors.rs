//! `[route.cors]`: cross-origin resource sharing by the Fetch standard's CORS protocol
//! (<https://fetch.spec.whatwg.org/#http-cors-protocol>), answered by the gateway.
//!
//! - A **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) never
//!   reaches the upstream: [`preflight`] makes its answer, a 204. From an allowed origin
//!   it carries `Access-Control-Allow-Origin` (the origin, or `*`), `-Allow-Methods`,
//!   `-Allow-Headers`, `-Max-Age` and `-Allow-Credentials` as configured; from any other
//!   origin it carries none of them (the browser then refuses the actual request) — what
//!   nginx CORS snippets (`if ($request_method = OPTIONS) { return 204; }` with the fields
//!   behind a `map` on `$http_origin`) and Envoy with `forward_not_matching_preflights:
//!   false` answer. The browser compares the method and fields it wants against the
//!   lists; the gateway does not second-guess them.
//! - On every **other response** of the route, [`on_response`] removes the upstream's
//!   `Access-Control-*` fields (the gateway owns them on a CORS route: two
//!   `Access-Control-Allow-Origin` fields fail every browser check) and, for an allowed
//!   origin, adds `Access-Control-Allow-Origin`, `-Allow-Credentials` and
//!   `-Expose-Headers`. The request itself is forwarded whatever its origin: CORS is the
//!   browser's to enforce.
//! - `Vary: Origin` goes on every response of the route whose answer depends on the
//!   origin (all but `allow_origins = ["*"]` without credentials, which answers `*` to
//!   everyone), so a cache never serves one origin's answer to another.
//!
//! Origins match exactly (ASCII case-insensitively: browsers send them lower-case), or by
//! a one-label wildcard `https://*.example.com` whose scheme and port must be the
//! request's too: `https://a.example.com` matches, `https://example.com`,
//! `https://a.b.example.com`, `http://a.example.com`, `https://a.example.com:8443` and
//! `https://a.example.com.evil.net` do not. `null` (sandboxed documents, `file:` pages)
//! matches nothing but `*`. Matching allocates nothing; the values are `Bytes` made at
//! load. No I/O here, and no status number but the preflight's 204.

use bytes::Bytes;

use crate::message::{GatewayBody, GatewayResponse, Header, Request};

/// `Access-Control-Allow-Origin`, and the other names this module writes.
const ALLOW_ORIGIN: &[u8] = b"Access-Control-Allow-Origin";
const ALLOW_CREDENTIALS: &[u8] = b"Access-Control-Allow-Credentials";
const ALLOW_METHODS: &[u8] = b"Access-Control-Allow-Methods";
const ALLOW_HEADERS: &[u8] = b"Access-Control-Allow-Headers";
const EXPOSE_HEADERS: &[u8] = b"Access-Control-Expose-Headers";
const MAX_AGE: &[u8] = b"Access-Control-Max-Age";

use crate::config::cors::strip_prefix_ci;
pub use crate::config::cors::{AllowedOrigins, Cors, OriginPattern};

/// The value of the request's field `name` (the first one).
fn field<'r>(req: &'r Request, name: &[u8]) -> Option<&'r Bytes> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| &h.value)
}

/// `Some(answer)`: `req` is a CORS preflight, answered with this 204 (no body, no
/// `Content-Length`) instead of going upstream. `None`: not a preflight; proxy it.
pub fn preflight(cors: &Cors, req: &Request) -> Option<GatewayResponse> {
    if req.method.as_ref() != b"OPTIONS" {
        return None;
    }
    let origin = field(req, b"origin")?;
    field(req, b"access-control-request-method")?;
    let mut headers = Vec::with_capacity(7);
    if cors.varies() {
        headers.push(vary_origin());
    }
    if let Some(allow) = cors.allow_origin(Some(origin)) {
        let mut put = |name: &'static [u8], value: Bytes| {
            headers.push(Header {
                name: Bytes::from_static(name),
                value,
            })
        };
        put(ALLOW_ORIGIN, allow);
        if cors.credentials {
            put(ALLOW_CREDENTIALS, Bytes::from_static(b"true"));
        }
        put(ALLOW_METHODS, cors.allow_methods.clone());
        if let Some(h) = &cors.allow_headers {
            put(ALLOW_HEADERS, h.clone());
        }
        if let Some(m) = &cors.max_age {
            put(MAX_AGE, m.clone());
        }
    }
    Some(GatewayResponse {
        status: 204,
        headers,
        body: GatewayBody::Empty,
    })
}

/// The CORS fields of a final response (not a preflight's answer) to `req`.
pub fn on_response(cors: &Cors, req: &Request, headers: &mut Vec<Header>) {
    headers.retain(|h| strip_prefix_ci(&h.name, b"access-control-").is_none());
    if cors.varies() && !varies_on_origin(headers) {
        headers.push(vary_origin());
    }
    let Some(allow) = cors.allow_origin(field(req, b"origin")) else {
        return;
    };
    headers.push(Header {
        name: Bytes::from_static(ALLOW_ORIGIN),
        value: allow,
    });
    if cors.credentials {
        headers.push(Header {
            name: Bytes::from_static(ALLOW_CREDENTIALS),
            value: Bytes::from_static(b"true"),
        });
    }
    if let Some(e) = &cors.expose_headers {
        headers.push(Header {
            name: Bytes::from_static(EXPOSE_HEADERS),
            value: e.clone(),
        });
    }
}

fn vary_origin() -> Header {
    Header {
        name: Bytes::from_static(b"Vary"),
        value: Bytes::from_static(b"Origin"),
    }
}

/// A `Vary` field already lists `Origin` (or `*`).
fn varies_on_origin(headers: &[Header]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"vary"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| {
            let t = t.trim_ascii();
            t.eq_ignore_ascii_case(b"origin") || t == b"*"
        })
}

#[cfg(test)]
#[path = "cors_tests.rs"]
mod tests;
