//! The settings of `[route.cors]` ([`crate::policy::cors`] applies them): the allowed
//! origins, checked and lower-cased at load, and the prepared field values.

use bytes::Bytes;

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

pub fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
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
    pub fn allow_origin(&self, origin: Option<&Bytes>) -> Option<Bytes> {
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
    pub fn varies(&self) -> bool {
        !matches!(self.origins, AllowedOrigins::Any)
    }
}
