//! Security headers and header rules, per listener and per route: the fields the gateway
//! adds to, replaces in or removes from a request on its way upstream and a response on
//! its way back. nginx: `add_header … always`, `proxy_set_header`, `proxy_hide_header`;
//! Envoy: `request_headers_to_add`, `response_headers_to_add`,
//! `response_headers_to_remove`.
//!
//! Everything is checked and made into `Bytes` at load ([`crate::config`]): applying a
//! policy clones prepared `Bytes` (a reference count, no copy) and pushes, retains or
//! scans the message's field list, nothing else. Names compare ASCII case-insensitively.
//! Nothing here does I/O, and nothing here refuses a request: no status is chosen here
//! (a CORS preflight's 204 is [`super::cors`]'s).
//!
//! Order on a request: the listener's rules, then the route's. On a response — the
//! upstream's and the gateway's own (404, 413, 502, …, nginx's `always`) alike: the
//! listener's response rules, the route's, the route's CORS fields ([`super::cors`]),
//! then the security headers (the route's table if it has one, else the listener's).

use bytes::Bytes;

use super::cors::{self, Cors};
use crate::message::{Header, Request};

/// One `[[…request_headers]]` / `[[…response_headers]]` entry.
#[derive(Debug, Clone)]
pub enum HeaderRule {
    /// Appends the field, whatever is there already (nginx `add_header`).
    Add(Header),
    /// Replaces every field of that name by this one (nginx `proxy_set_header`;
    /// Envoy `append_action: OVERWRITE_IF_EXISTS_OR_ADD`).
    Set(Header),
    /// Removes every field of that name (nginx `proxy_hide_header`; Envoy
    /// `*_headers_to_remove`).
    Remove(Bytes),
}

/// One security field and whether it may go out over plain HTTP.
#[derive(Debug, Clone)]
struct SecurityField {
    field: Header,
    /// `Strict-Transport-Security`: RFC 6797 §7.2 forbids it over plain HTTP.
    https_only: bool,
}

/// `[listener.security_headers]` / `[route.security_headers]`: fields every response
/// carries.
#[derive(Debug, Clone, Default)]
pub struct SecurityHeaders {
    fields: Vec<SecurityField>,
    /// `override = true`: replace a field of the same name the upstream sent; `false`
    /// (default): the upstream's field stays and ours is not added.
    pub override_upstream: bool,
}

impl SecurityHeaders {
    /// No fields yet; `override_upstream` as in the field's doc.
    pub fn new(override_upstream: bool) -> SecurityHeaders {
        SecurityHeaders {
            fields: Vec::new(),
            override_upstream,
        }
    }

    /// Adds a field (names and values checked by the caller, at load).
    pub fn push(&mut self, name: Bytes, value: Bytes) {
        let https_only = name.eq_ignore_ascii_case(b"strict-transport-security");
        self.fields.push(SecurityField {
            field: Header { name, value },
            https_only,
        });
    }

    /// The configured fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Header> {
        self.fields.iter().map(|f| &f.field)
    }

    /// Puts the fields into a response's `headers`; `https`: the client's connection
    /// is TLS (Strict-Transport-Security is left out otherwise).
    pub fn apply(&self, headers: &mut Vec<Header>, https: bool) {
        for f in &self.fields {
            if f.https_only && !https {
                continue;
            }
            let name = &f.field.name;
            if self.override_upstream {
                remove(headers, name);
            } else if has(headers, name) {
                continue;
            }
            headers.push(f.field.clone());
        }
    }
}

/// The header settings of one listener or one route.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    /// `security_headers`; `None`: not written (a route then uses its listener's).
    pub security: Option<SecurityHeaders>,
    /// `request_headers`: rules for the request sent upstream.
    pub request: Vec<HeaderRule>,
    /// `response_headers`: rules for the response sent to the client.
    pub response: Vec<HeaderRule>,
}

impl HeaderPolicy {
    /// Nothing configured: the steps below can be skipped.
    pub fn is_empty(&self) -> bool {
        self.security.is_none() && self.request.is_empty() && self.response.is_empty()
    }
}

/// Applies `rules` to a message's fields, in order.
pub fn apply_rules(rules: &[HeaderRule], headers: &mut Vec<Header>) {
    for rule in rules {
        match rule {
            HeaderRule::Add(h) => headers.push(h.clone()),
            HeaderRule::Set(h) => {
                remove(headers, &h.name);
                headers.push(h.clone());
            }
            HeaderRule::Remove(name) => remove(headers, name),
        }
    }
}

/// The request step: the listener's request rules, then the route's.
pub fn on_request(listener: &HeaderPolicy, route: Option<&HeaderPolicy>, req: &mut Request) {
    apply_rules(&listener.request, &mut req.headers);
    if let Some(route) = route {
        apply_rules(&route.request, &mut req.headers);
    }
}

/// What applies to one response: the listener's settings and, once the request was
/// routed, the route's.
#[derive(Debug, Clone, Copy)]
pub struct ResponsePolicies<'a> {
    pub listener: &'a HeaderPolicy,
    pub route: Option<&'a HeaderPolicy>,
    pub cors: Option<&'a Cors>,
}

impl ResponsePolicies<'_> {
    /// Nothing to do for any response.
    pub fn is_empty(&self) -> bool {
        self.listener.is_empty()
            && self.route.is_none_or(HeaderPolicy::is_empty)
            && self.cors.is_none()
    }

    /// The response step, on a final response's `headers` (the upstream's or the
    /// gateway's own) for `req`.
    pub fn apply(&self, req: &Request, headers: &mut Vec<Header>) {
        apply_rules(&self.listener.response, headers);
        if let Some(route) = self.route {
            apply_rules(&route.response, headers);
        }
        if let Some(c) = self.cors {
            cors::on_response(c, req, headers);
        }
        let security = self
            .route
            .and_then(|r| r.security.as_ref())
            .or(self.listener.security.as_ref());
        if let Some(s) = security {
            s.apply(headers, req.scheme == "https");
        }
    }
}

/// Whether a field named `name` is in `headers`.
pub(super) fn has(headers: &[Header], name: &[u8]) -> bool {
    headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
}

/// Removes every field named `name`.
pub(super) fn remove(headers: &mut Vec<Header>, name: &[u8]) {
    headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
