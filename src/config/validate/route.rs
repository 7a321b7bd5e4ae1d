//! The `[[route]]` tables checked ([`Validator::routes`]): host, path prefix, upstream,
//! rate limits and the route's policies, and its request conditions, `methods` and
//! `[[route.headers]]`: a method that is not an HTTP token (or not upper case), a header
//! name that is not a token, a matcher with none or several of `exact`/`prefix`/`present`,
//! and a value that could never match each become an error naming file, line and field.
//! Also which of two routes with the same host and path prefix could never be chosen.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::{Validator, valid_dns_name};
use crate::config::raw::{RawConfig, RawHeaderMatch, RawRoute};
use crate::config::{HeaderMatch, HeaderValueMatch, HostMatch, RouteConfig};
use crate::field::is_tchar;

/// Longest method token accepted: the longest registered method (`UPDATEREDIRECTREF`)
/// is 17 bytes; a config listing a longer one has almost certainly pasted something else.
const MAX_METHOD_LEN: usize = 32;

/// A route's `methods` and `headers`, checked.
pub(super) struct Conditions {
    pub methods: Vec<String>,
    pub headers: Vec<HeaderMatch>,
}

impl Conditions {
    /// Whether the route takes every request its host and prefix see.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty() && self.headers.is_empty()
    }

    /// Whether `self` and `other` accept exactly the same requests as written (methods as
    /// a set, headers as a set).
    pub fn same_as(&self, other: &Conditions) -> bool {
        let sorted = |c: &Conditions| {
            let mut m = c.methods.clone();
            m.sort();
            let mut h = c.headers.clone();
            h.sort();
            (m, h)
        };
        sorted(self) == sorted(other)
    }
}

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        raw: &RawConfig,
        upstreams: &HashMap<String, usize>,
        rate_limits: &HashMap<String, usize>,
    ) -> Vec<RouteConfig> {
        let mut routes = Vec::new();
        let mut seen: BTreeMap<(String, String), Vec<(usize, Conditions)>> = BTreeMap::new();
        for (i, spanned) in raw.route.iter().enumerate() {
            let r = spanned.get_ref();
            let field = format!("route[{i}]");
            let wanted = self.required(&r.upstream, spanned.span(), &format!("{field}.upstream"));
            let upstream = match wanted.map(|w| (w, upstreams.get(w.get_ref()))) {
                None => None,
                Some((_, Some(&u))) => Some(u),
                Some((wanted, None)) => {
                    let known: Vec<&str> = raw.upstream.keys().map(String::as_str).collect();
                    let msg = format!(
                        "unknown upstream {:?} (defined: {})",
                        wanted.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                    // An upstream that exists but failed its own checks is reported there,
                    // and so is one the schema check took out.
                    let name = wanted.get_ref();
                    let dotted = format!("upstream.{}", super::schema::key(name));
                    if !raw.upstream.contains_key(name) && !self.already_reported(&dotted) {
                        self.error(Some(wanted.span()), &format!("{field}.upstream"), msg);
                    }
                    None
                }
            };
            let host = match &r.host {
                None => Some(HostMatch::Any),
                Some(h) => match parse_host_match(h.get_ref()) {
                    Some(m) => Some(m),
                    None => {
                        let msg = format!(
                            "{:?} is not a host name, \"*.suffix\" wildcard, or absent",
                            h.get_ref()
                        );
                        self.error(Some(h.span()), &format!("{field}.host"), msg);
                        None
                    }
                },
            };
            let path_prefix = match &r.path_prefix {
                None => Some("/".to_string()),
                Some(p)
                    if p.get_ref().starts_with('/') && p.get_ref().bytes().all(is_path_byte) =>
                {
                    Some(p.get_ref().clone())
                }
                Some(p) => {
                    let msg = format!(
                        "{:?} must start with '/' and contain only URL path characters",
                        p.get_ref()
                    );
                    self.error(Some(p.span()), &format!("{field}.path_prefix"), msg);
                    None
                }
            };
            let client_cert = match &r.client_cert {
                None => Some(None),
                Some(c) => self
                    .route_client_cert(&format!("{field}.client_cert"), c)
                    .map(Some),
            };
            let conditions = self.route_conditions(&field, r);
            let limits = match &r.rate_limit {
                None => Some(Vec::new()),
                Some(names) => self.route_rate_limits(raw, &field, names, rate_limits),
            };
            let ip = self.allow_deny(&field, &r.allow, &r.deny).ok();
            let headers = self.header_policy(
                &field,
                &r.security_headers,
                &r.request_headers,
                &r.response_headers,
            );
            let cors = match &r.cors {
                None => Some(None),
                Some(c) => self.cors(&format!("{field}.cors"), c).map(Some),
            };
            let (
                Some(upstream),
                Some(host),
                Some(path_prefix),
                Some(client_cert),
                Some(limits),
                Some(ip),
                Some(cors),
                Some(when),
            ) = (
                upstream,
                host,
                path_prefix,
                client_cert,
                limits,
                ip,
                cors,
                conditions,
            )
            else {
                continue;
            };
            // Among routes with the same host and prefix the first whose conditions hold
            // wins: a route after one that takes the same requests is never chosen.
            let earlier = seen
                .entry((format!("{host:?}"), path_prefix.clone()))
                .or_default();
            if let Some((first, shadow)) = earlier
                .iter()
                .find(|(_, c)| c.is_empty() || c.same_as(&when))
            {
                let msg = if shadow.is_empty() {
                    format!(
                        "same host and path_prefix as route[{first}], which has no methods or headers: it could never match"
                    )
                } else {
                    format!(
                        "same host, path_prefix, methods and headers as route[{first}]: it could never match"
                    )
                };
                let span = r
                    .path_prefix
                    .as_ref()
                    .map(|p| p.span())
                    .unwrap_or(spanned.span());
                self.error(Some(span), &field, msg);
                continue;
            }
            let max_request_body_bytes = r.max_request_body_bytes.as_ref().map(|_| {
                self.int(
                    &r.max_request_body_bytes,
                    &format!("{field}.max_request_body_bytes"),
                    0,
                    0..=i64::MAX,
                ) as u64
            });
            let (methods, match_headers) = (when.methods.clone(), when.headers.clone());
            let tunnels = self.route_tunnels(&field, r);
            earlier.push((i, when));
            routes.push(RouteConfig {
                index: routes.len(),
                host,
                path_prefix,
                strip_prefix: r.strip_prefix,
                upstream,
                client_cert,
                rate_limits: limits,
                ip,
                headers,
                cors,
                methods,
                match_headers,
                max_request_body_bytes,
                upgrade: tunnels.upgrade,
                websocket_origins: tunnels.websocket_origins,
                tunnel_idle_timeout: tunnels.idle_timeout,
            });
        }
        routes
    }

    /// `methods` and `headers` of the route at `field` (`route[3]`); `None` after an error.
    pub(super) fn route_conditions(&mut self, field: &str, raw: &RawRoute) -> Option<Conditions> {
        let before = self.errors.len();
        let mut methods: Vec<String> = Vec::new();
        if let Some(list) = &raw.methods {
            if list.get_ref().is_empty() {
                self.error(
                    Some(list.span()),
                    &format!("{field}.methods"),
                    "an empty list matches no request: list methods, or leave `methods` out for any",
                );
            }
            for (i, m) in list.get_ref().iter().enumerate() {
                let name = m.get_ref();
                let at = format!("{field}.methods[{i}]");
                if let Some(msg) = method_problem(name) {
                    self.error(Some(m.span()), &at, msg);
                } else if methods.contains(name) {
                    self.error(Some(m.span()), &at, format!("{name:?} is listed twice"));
                } else {
                    methods.push(name.clone());
                }
            }
        }
        let mut headers = Vec::new();
        for (i, h) in raw.headers.iter().enumerate() {
            if let Some(m) = self.header_match(&format!("{field}.headers[{i}]"), h) {
                headers.push(m);
            }
        }
        (self.errors.len() == before).then_some(Conditions { methods, headers })
    }

    fn header_match(
        &mut self,
        field: &str,
        spanned: &Spanned<RawHeaderMatch>,
    ) -> Option<HeaderMatch> {
        let raw = spanned.get_ref();
        let before = self.errors.len();
        let name = self.required(&raw.name, spanned.span(), &format!("{field}.name"));
        let name = match name {
            None => None,
            Some(n) => {
                let text = n.get_ref();
                let problem = if text.is_empty() || !text.bytes().all(is_tchar) {
                    Some(format!(
                        "{text:?} is not a header field name (letters, digits and !#$%&'*+-.^_`|~)"
                    ))
                } else if text.eq_ignore_ascii_case("host") {
                    Some(
                        "the host is matched by the route's `host`, not by a header condition"
                            .to_string(),
                    )
                } else {
                    None
                };
                match problem {
                    Some(msg) => {
                        self.error(Some(n.span()), &format!("{field}.name"), msg);
                        None
                    }
                    None => Some(text.to_ascii_lowercase()),
                }
            }
        };
        let given = [
            raw.exact.is_some(),
            raw.prefix.is_some(),
            raw.present.is_some(),
        ];
        let value = match (&raw.exact, &raw.prefix, &raw.present) {
            (Some(v), None, None) => self.match_value(&format!("{field}.exact"), v, false),
            (None, Some(v), None) => self.match_value(&format!("{field}.prefix"), v, true),
            (None, None, Some(p)) => Some(HeaderValueMatch::Present(*p.get_ref())),
            // A misspelt key the schema check took out was reported already.
            (None, None, None)
                if self
                    .reported
                    .iter()
                    .any(|r| r.starts_with(&format!("{field}."))) =>
            {
                None
            }
            _ => {
                let msg = if given.iter().any(|g| *g) {
                    "give only one of `exact`, `prefix` or `present`"
                } else {
                    "needs one of `exact = \"…\"`, `prefix = \"…\"` or `present = true|false`"
                };
                self.error(Some(spanned.span()), field, msg);
                None
            }
        };
        match (name, value) {
            (Some(name), Some(value)) if self.errors.len() == before => {
                Some(HeaderMatch { name, value })
            }
            _ => None,
        }
    }

    /// The value of `exact` or `prefix`: what a field value can be once its surrounding
    /// whitespace is cut (RFC 9110 §5.5: visible ASCII, spaces and tabs inside).
    fn match_value(
        &mut self,
        field: &str,
        v: &Spanned<String>,
        prefix: bool,
    ) -> Option<HeaderValueMatch> {
        let s = v.get_ref();
        let msg = if !s
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
        {
            Some(format!(
                "{s:?}: a field value is visible ASCII, spaces and tabs"
            ))
        } else if s.starts_with([' ', '\t']) || s.ends_with([' ', '\t']) {
            Some(format!(
                "{s:?}: a field value never starts or ends with whitespace (it is cut off), so this never matches"
            ))
        } else if prefix && s.is_empty() {
            Some("an empty prefix matches any value: write `present = true`".to_string())
        } else {
            None
        };
        if let Some(msg) = msg {
            self.error(Some(v.span()), field, msg);
            return None;
        }
        Some(if prefix {
            HeaderValueMatch::Prefix(s.clone())
        } else {
            HeaderValueMatch::Exact(s.clone())
        })
    }
}

/// Why `name` cannot be a method in `methods`, if it cannot.
fn method_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_METHOD_LEN || !name.bytes().all(is_tchar) {
        return Some(format!(
            "{name:?} is not an HTTP method (a token: letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    if name == "CONNECT" {
        return Some("CONNECT is refused before routing (ringgate is no forward proxy), so this never matches".to_string());
    }
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some(format!(
            "{name:?}: methods are case-sensitive and clients send them in upper case; did you mean {:?}?",
            name.to_ascii_uppercase()
        ));
    }
    None
}

fn parse_host_match(h: &str) -> Option<HostMatch> {
    let n = h.trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = n.strip_prefix("*.") {
        return valid_dns_name(suffix).then(|| HostMatch::Suffix(format!(".{suffix}")));
    }
    if n.parse::<std::net::IpAddr>().is_ok() || valid_dns_name(&n) {
        return Some(HostMatch::Exact(n));
    }
    // A bracketed IPv6 literal, as it appears in a Host header.
    let inner = n.strip_prefix('[').and_then(|s| s.strip_suffix(']'))?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|_| HostMatch::Exact(n.clone()))
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}
