//! Checks of a route's request conditions, `methods` and `[[route.headers]]`: a method
//! that is not an HTTP token (or not upper case), a header name that is not a token, a
//! matcher with none or several of `exact`/`prefix`/`present`, and a value that could
//! never match each become an error naming file, line and field. Also which of two
//! routes with the same host and path prefix could never be chosen.

use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawHeaderMatch, RawRoute};
use crate::config::{HeaderMatch, HeaderValueMatch};
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
