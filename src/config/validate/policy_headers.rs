//! `security_headers`, `request_headers`, `response_headers` (listener and route) and
//! `[route.cors]` → [`HeaderPolicy`] and [`Cors`], every name and value checked and made
//! into `Bytes` once, here.
//!
//! Names must be HTTP tokens (RFC 9110 §5.6.2) and none the proxy frames or writes itself
//! (framing and hop-by-hop fields, Host, the forwarding fields); values visible ASCII with
//! inner spaces and tabs (RFC 9110 §5.5: no CR, LF or NUL, nothing an HTTP/1.1 or HTTP/2
//! peer would refuse or read differently). The security headers are checked against their
//! own grammars where a mistake would silently switch them off (`nosniff`, `DENY`,
//! `max-age=`, the referrer policies).

use std::collections::BTreeMap;

use bytes::Bytes;
use toml::Spanned;

use super::super::raw::{RawCors, RawHeaderRule, RawSecurityHeaders};
use super::Validator;
use crate::config::cors::{AllowedOrigins, Cors, OriginPattern};
use crate::config::headers::{HeaderPolicy, HeaderRule, SecurityHeaders};
use crate::field::{FRAMING_FIELDS, is_tchar};

/// Request fields the proxy writes itself: Host is the client's authority (what routed),
/// the forwarding fields follow `[http] forward_headers`, Expect is the session's.
const REQUEST_OWN: [&str; 6] = [
    "host",
    "expect",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-forwarded-proto",
];

/// `security_headers` keys and the fields they write.
const NAMED: [(&str, &str); 5] = [
    ("hsts", "Strict-Transport-Security"),
    ("content_type_options", "X-Content-Type-Options"),
    ("frame_options", "X-Frame-Options"),
    ("content_security_policy", "Content-Security-Policy"),
    ("referrer_policy", "Referrer-Policy"),
];

/// The policies `Referrer-Policy` knows (W3C Referrer Policy §3).
const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// Longest `max_age_secs`: a day (Firefox's cap; Chromium caps at two hours).
const MAX_AGE_SECS_MAX: i64 = 86_400;

/// Which message a rule list edits.
#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

impl Validator<'_> {
    /// The header settings of a listener or route (`field` names it). Entries with
    /// errors are recorded and left out.
    pub(super) fn header_policy(
        &mut self,
        field: &str,
        security: &Option<Spanned<RawSecurityHeaders>>,
        request: &Option<Vec<Spanned<RawHeaderRule>>>,
        response: &Option<Vec<Spanned<RawHeaderRule>>>,
    ) -> HeaderPolicy {
        HeaderPolicy {
            security: security
                .as_ref()
                .map(|s| self.security_headers(&format!("{field}.security_headers"), s)),
            request: self.rules(&format!("{field}.request_headers"), request, Side::Request),
            response: self.rules(
                &format!("{field}.response_headers"),
                response,
                Side::Response,
            ),
        }
    }

    fn security_headers(
        &mut self,
        field: &str,
        raw: &Spanned<RawSecurityHeaders>,
    ) -> SecurityHeaders {
        let r = raw.get_ref();
        let mut out = SecurityHeaders::new(r.override_upstream.unwrap_or(false));
        let given = [
            &r.hsts,
            &r.content_type_options,
            &r.frame_options,
            &r.content_security_policy,
            &r.referrer_policy,
        ];
        for ((key, name), value) in NAMED.iter().zip(given) {
            let Some(v) = value else { continue };
            let f = format!("{field}.{key}");
            let problem = value_problem(v.get_ref()).or_else(|| grammar_problem(key, v.get_ref()));
            match problem {
                Some(why) => self.error(Some(v.span()), &f, format!("{:?} {why}", v.get_ref())),
                None => out.push(
                    Bytes::from_static(name.as_bytes()),
                    Bytes::from(v.get_ref().clone()),
                ),
            }
        }
        let empty = BTreeMap::new();
        let custom = r.custom.as_ref().map_or(&empty, |c| c.get_ref());
        let mut seen: Vec<String> = Vec::new();
        for (name, v) in custom {
            let f = format!("{field}.custom.{}", super::super::schema::key(name));
            let lower = name.to_ascii_lowercase();
            if let Some((key, _)) = NAMED.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)) {
                self.error(
                    Some(v.span()),
                    &f,
                    format!("{name:?} has its own key: write {key} = …"),
                );
                continue;
            }
            if seen.contains(&lower) {
                self.error(Some(v.span()), &f, format!("{name:?} is listed twice"));
                continue;
            }
            seen.push(lower);
            if let Some(why) = name_problem(name, Side::Response) {
                self.error(Some(v.span()), &f, format!("{name:?} {why}"));
                continue;
            }
            match value_problem(v.get_ref()) {
                Some(why) => self.error(Some(v.span()), &f, format!("{:?} {why}", v.get_ref())),
                None => out.push(Bytes::from(name.clone()), Bytes::from(v.get_ref().clone())),
            }
        }
        let written = given.iter().any(|v| v.is_some()) || !custom.is_empty();
        if !written {
            self.error(
                Some(raw.span()),
                field,
                "no field set: write hsts, content_type_options, frame_options, content_security_policy, referrer_policy or custom",
            );
        }
        out
    }

    fn rules(
        &mut self,
        field: &str,
        raw: &Option<Vec<Spanned<RawHeaderRule>>>,
        side: Side,
    ) -> Vec<HeaderRule> {
        let Some(list) = raw else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, spanned) in list.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let r = spanned.get_ref();
            let action = self.required(&r.action, spanned.span(), &format!("{f}.action"));
            let name = self.required(&r.name, spanned.span(), &format!("{f}.name"));
            let (Some(action), Some(name)) = (action, name) else {
                continue;
            };
            if let Some(why) = name_problem(name.get_ref(), side) {
                let msg = format!("{:?} {why}", name.get_ref());
                self.error(Some(name.span()), &format!("{f}.name"), msg);
                continue;
            }
            let name_bytes = Bytes::from(name.get_ref().clone());
            let value = match (action.get_ref().as_str(), &r.value) {
                ("remove", None) => {
                    out.push(HeaderRule::Remove(name_bytes));
                    continue;
                }
                ("remove", Some(v)) => {
                    let msg = "remove takes no value";
                    self.error(Some(v.span()), &format!("{f}.value"), msg);
                    continue;
                }
                ("add" | "set", None) => {
                    self.error(
                        Some(spanned.span()),
                        &format!("{f}.value"),
                        "required key is missing",
                    );
                    continue;
                }
                ("add" | "set", Some(v)) => match value_problem(v.get_ref()) {
                    Some(why) => {
                        let msg = format!("{:?} {why}", v.get_ref());
                        self.error(Some(v.span()), &format!("{f}.value"), msg);
                        continue;
                    }
                    None => Bytes::from(v.get_ref().clone()),
                },
                (other, _) => {
                    let msg = format!("{other:?} is not one of \"add\", \"set\", \"remove\"");
                    self.error(Some(action.span()), &format!("{f}.action"), msg);
                    continue;
                }
            };
            let header = crate::field::Header {
                name: name_bytes,
                value,
            };
            out.push(if action.get_ref() == "add" {
                HeaderRule::Add(header)
            } else {
                HeaderRule::Set(header)
            });
        }
        out
    }

    /// `[route.cors]`; `None` after an error (recorded).
    pub(super) fn cors(&mut self, field: &str, raw: &Spanned<RawCors>) -> Option<Cors> {
        let errors_before = self.errors.len();
        let r = raw.get_ref();
        let credentials = r.allow_credentials.unwrap_or(false);
        let origins_field = format!("{field}.allow_origins");
        let origins = match self.required(&r.allow_origins, raw.span(), &origins_field) {
            None => AllowedOrigins::List(Vec::new()),
            Some(list) => self.origins(&origins_field, list, credentials),
        };
        let default_methods = ["GET", "HEAD", "POST"];
        let allow_methods = match &r.allow_methods {
            None => Some(Bytes::from(default_methods.join(", "))),
            Some(list) => self.token_list(&format!("{field}.allow_methods"), list, credentials),
        };
        let allow_headers = match &r.allow_headers {
            None => None,
            Some(list) => self.token_list(&format!("{field}.allow_headers"), list, credentials),
        };
        let expose_headers = match &r.expose_headers {
            None => None,
            Some(list) => self.token_list(&format!("{field}.expose_headers"), list, credentials),
        };
        let max_age = r.max_age_secs.as_ref().map(|_| {
            let secs = self.int(
                &r.max_age_secs,
                &format!("{field}.max_age_secs"),
                0,
                0..=MAX_AGE_SECS_MAX,
            );
            Bytes::from(secs.to_string())
        });
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Cors {
            origins,
            credentials,
            allow_methods: allow_methods?,
            allow_headers,
            expose_headers,
            max_age,
        })
    }

    fn origins(
        &mut self,
        field: &str,
        list: &Spanned<Vec<Spanned<String>>>,
        credentials: bool,
    ) -> AllowedOrigins {
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                field,
                "empty list: no origin could ever be allowed",
            );
        }
        let mut out: Vec<OriginPattern> = Vec::new();
        for (i, o) in list.get_ref().iter().enumerate() {
            let f = format!("{field}[{i}]");
            match o.get_ref().as_str() {
                "*" if list.get_ref().len() > 1 => {
                    self.error(
                        Some(o.span()),
                        &f,
                        "\"*\" allows every origin: list it alone",
                    );
                }
                "*" if credentials => {
                    let msg = "\"*\" cannot go with allow_credentials = true (browsers refuse the pair): list the origins";
                    self.error(Some(o.span()), &f, msg);
                }
                "*" => return AllowedOrigins::Any,
                "null" => {
                    let msg = "\"null\" is the origin of every sandboxed document and file: page: allowing it allows them all";
                    self.error(Some(o.span()), &f, msg);
                }
                text => match OriginPattern::parse(text) {
                    Ok(p) if out.contains(&p) => {
                        self.error(Some(o.span()), &f, format!("{text:?} is listed twice"));
                    }
                    Ok(p) => out.push(p),
                    Err(why) => self.error(Some(o.span()), &f, format!("{text:?} {why}")),
                },
            }
        }
        AllowedOrigins::List(out)
    }

    /// A list of methods or field names for a CORS field: tokens, or `*` alone (not
    /// with credentials, where browsers take it literally); joined with `, `.
    fn token_list(
        &mut self,
        field: &str,
        list: &Spanned<Vec<Spanned<String>>>,
        credentials: bool,
    ) -> Option<Bytes> {
        let items = list.get_ref();
        if items.is_empty() {
            self.error(Some(list.span()), field, "empty list: leave the key out");
            return None;
        }
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let v = item.get_ref();
            if v == "*" {
                if items.len() > 1 {
                    self.error(Some(item.span()), &f, "\"*\" means all: list it alone");
                    ok = false;
                } else if credentials {
                    let msg = "\"*\" is taken literally by browsers when allow_credentials = true: list the names";
                    self.error(Some(item.span()), &f, msg);
                    ok = false;
                }
            } else if !is_token(v) {
                self.error(Some(item.span()), &f, format!("{v:?} is not an HTTP token"));
                ok = false;
            } else if items[..i]
                .iter()
                .any(|p| p.get_ref().eq_ignore_ascii_case(v))
            {
                self.error(Some(item.span()), &f, format!("{v:?} is listed twice"));
                ok = false;
            }
        }
        let joined: Vec<&str> = items.iter().map(|s| s.get_ref().as_str()).collect();
        ok.then(|| Bytes::from(joined.join(", ")))
    }
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Why `name` cannot be a rule's or custom security field's name, if it cannot.
fn name_problem(name: &str, side: Side) -> Option<&'static str> {
    if !is_token(name) {
        return Some("is not a valid HTTP field name");
    }
    let lower = name.to_ascii_lowercase();
    // A rule may never touch these on either side.
    if FRAMING_FIELDS.contains(&lower.as_str()) {
        return Some("is a framing or connection field: the proxy writes it for each message");
    }
    if matches!(side, Side::Request) && REQUEST_OWN.contains(&lower.as_str()) {
        return Some(
            "is written by the proxy (Host: the client's authority; forwarding fields: [http] forward_headers)",
        );
    }
    None
}

/// Why `value` cannot be a field value, if it cannot.
fn value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("is empty: leave the field out (or remove it)");
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Some("starts or ends with white space, which HTTP drops");
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Some(
            "may hold visible ASCII, spaces and tabs only (no line breaks or control characters)",
        );
    }
    None
}

/// A security field's own grammar, where a typo would switch it off in browsers.
fn grammar_problem(key: &str, value: &str) -> Option<&'static str> {
    match key {
        "hsts" => {
            let max_age = value.split(';').map(str::trim).find_map(|d| {
                let (k, v) = d.split_once('=')?;
                k.trim().eq_ignore_ascii_case("max-age").then(|| v.trim().trim_matches('"'))
            });
            match max_age {
                Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => None,
                _ => Some("needs max-age=SECONDS (RFC 6797), e.g. \"max-age=31536000; includeSubDomains\""),
            }
        }
        "content_type_options" => {
            (!value.eq_ignore_ascii_case("nosniff")).then_some("must be \"nosniff\" (the only value browsers know)")
        }
        "frame_options" => (!value.eq_ignore_ascii_case("deny") && !value.eq_ignore_ascii_case("sameorigin"))
            .then_some("must be \"DENY\" or \"SAMEORIGIN\" (ALLOW-FROM is gone from browsers: use content_security_policy = \"frame-ancestors …\")"),
        "referrer_policy" => value
            .split(',')
            .map(str::trim)
            .any(|p| !REFERRER_POLICIES.contains(&p.to_ascii_lowercase().as_str()))
            .then_some("must be referrer policies from no-referrer, no-referrer-when-downgrade, origin, origin-when-cross-origin, same-origin, strict-origin, strict-origin-when-cross-origin, unsafe-url"),
        _ => None,
    }
}

#[cfg(test)]
#[path = "policy_headers_tests.rs"]
mod tests;
