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

use crate::message::{Header, Request, ResponseHead};

/// `Access-Control-Allow-Origin`, and the other names this module writes.
const ALLOW_ORIGIN: &[u8] = b"Access-Control-Allow-Origin";
const ALLOW_CREDENTIALS: &[u8] = b"Access-Control-Allow-Credentials";
const ALLOW_METHODS: &[u8] = b"Access-Control-Allow-Methods";
const ALLOW_HEADERS: &[u8] = b"Access-Control-Allow-Headers";
const EXPOSE_HEADERS: &[u8] = b"Access-Control-Expose-Headers";
const MAX_AGE: &[u8] = b"Access-Control-Max-Age";

/// Which origins may read the route's responses.
#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    /// `["*"]`: every origin, answered with `Access-Control-Allow-Origin: *` (never
    /// with credentials: the config refuses that pair, as browsers do).
    Any,
    /// These, each exact or a one-label wildcard.
    List(Vec<OriginPattern>),
}

/// One allowed origin as configured, checked and lower-cased at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `https://app.example.com[:port]` (a default port dropped).
    Exact(Bytes),
    /// `https://*.example.com[:port]`.
    Wildcard {
        /// `https://`.
        scheme: Bytes,
        /// `.example.com`: what the host ends with after its first label.
        suffix: Bytes,
        /// `:8443`, or empty for the scheme's default port.
        port: Bytes,
    },
}

impl OriginPattern {
    /// Parses a configured origin (`*` and `null` are the caller's); `Err`: why it is
    /// not one.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let lower = text.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(
                "is not an origin: write scheme://host[:port], e.g. \"https://app.example.com\""
                    .into(),
            );
        };
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(format!("has no valid scheme ({scheme:?})"));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(
                "has a path: an origin is scheme://host[:port] only (no trailing /)".into(),
            );
        }
        if rest.contains('@') {
            return Err("has user information: an origin is scheme://host[:port] only".into());
        }
        let (host, port) = split_port(rest)?;
        let default_port = match scheme {
            "https" => Some("443"),
            "http" => Some("80"),
            _ => None,
        };
        // Browsers never write the scheme's default port: neither do we.
        let port = match port {
            Some(p) if Some(p) == default_port => String::new(),
            Some(p) => format!(":{p}"),
            None => String::new(),
        };
        if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_dns_name(suffix) {
                return Err(format!("{suffix:?} after \"*.\" is not a DNS name"));
            }
            if !suffix.contains('.') {
                return Err(format!(
                    "\"*.{suffix}\" would allow every site under a top-level domain"
                ));
            }
            return Ok(OriginPattern::Wildcard {
                scheme: Bytes::from(format!("{scheme}://")),
                suffix: Bytes::from(format!(".{suffix}")),
                port: Bytes::from(port),
            });
        }
        if host.contains('*') {
            return Err(
                "a wildcard must be the whole first label (\"https://*.example.com\")".into(),
            );
        }
        let ip_literal = host.parse::<std::net::Ipv4Addr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        if !ip_literal && !valid_dns_name(host) {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        Ok(OriginPattern::Exact(Bytes::from(format!(
            "{scheme}://{host}{port}"
        ))))
    }

    /// Whether the request's `Origin` value is this origin.
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginPattern::Exact(o) => origin.eq_ignore_ascii_case(o),
            OriginPattern::Wildcard {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = strip_prefix_ci(origin, scheme) else {
                    return false;
                };
                let colon = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
                let (host, origin_port) = rest.split_at(colon);
                if origin_port != port.as_ref() || host.len() <= suffix.len() {
                    return false;
                }
                let (label, tail) = host.split_at(host.len() - suffix.len());
                tail.eq_ignore_ascii_case(suffix) && valid_label(label)
            }
        }
    }
}

/// `host[:port]` → host and the port's digits, checked.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    let split = if rest.starts_with('[') {
        rest.find(']').map(|i| i + 1)
    } else {
        rest.find(':')
    };
    match split {
        Some(i) if i < rest.len() => {
            let (host, port) = rest.split_at(i);
            let digits = port.strip_prefix(':').unwrap_or("");
            match digits.parse::<u16>() {
                Ok(n) if n > 0 && !digits.starts_with('0') => Ok((host, Some(digits))),
                _ => Err(format!("{port:?} is not a port (1 to 65535)")),
            }
        }
        _ => Ok((rest, None)),
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// One DNS label: letters, digits and inner hyphens, 1 to 63 of them.
fn valid_label(l: &[u8]) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && !l.starts_with(b"-")
        && !l.ends_with(b"-")
}

fn valid_dns_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 253 && n.split('.').all(|l| valid_label(l.as_bytes()))
}

/// A route's checked CORS settings, every value prepared at load.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: AllowedOrigins,
    /// `allow_credentials`: `Access-Control-Allow-Credentials: true` on allowed answers.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods` on a preflight's answer.
    pub allow_methods: Bytes,
    /// `Access-Control-Allow-Headers` on a preflight's answer (`None`: not sent).
    pub allow_headers: Option<Bytes>,
    /// `Access-Control-Expose-Headers` on other answers (`None`: not sent).
    pub expose_headers: Option<Bytes>,
    /// `Access-Control-Max-Age` on a preflight's answer (`None`: not sent).
    pub max_age: Option<Bytes>,
}

impl Cors {
    /// The value of `Access-Control-Allow-Origin` for a request from `origin`; `None`:
    /// the origin may not read the answer.
    fn allow_origin(&self, origin: Option<&Bytes>) -> Option<Bytes> {
        match &self.origins {
            AllowedOrigins::Any => Some(Bytes::from_static(b"*")),
            AllowedOrigins::List(list) => {
                let origin = origin?;
                list.iter()
                    .any(|p| p.matches(origin))
                    .then(|| origin.clone())
            }
        }
    }

    /// Whether answers differ by origin (everything but `*` without credentials).
    fn varies(&self) -> bool {
        !matches!(self.origins, AllowedOrigins::Any)
    }
}

/// The value of the request's field `name` (the first one).
fn field<'r>(req: &'r Request, name: &[u8]) -> Option<&'r Bytes> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| &h.value)
}

/// `Some(head)`: `req` is a CORS preflight, answered with this 204 head (no body)
/// instead of going upstream. `None`: not a preflight; proxy it.
pub fn preflight(cors: &Cors, req: &Request) -> Option<ResponseHead> {
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
    Some(ResponseHead {
        status: 204,
        reason: Bytes::from_static(b"No Content"),
        headers,
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
