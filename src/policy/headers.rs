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
//! then the security headers (the route's table if it has one, else the listener's). A
//! session's own answer to a request no exchange saw (400, 405, 408, 414, 431, …) gets
//! the listener's part of that ([`on_session_answer`]): there is no route yet.

use super::cors::{self, Cors};
pub use crate::config::headers::{HeaderPolicy, HeaderRule, SecurityHeaders, has, remove};
use crate::message::{Header, Request};

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

/// The response step on a session's own answer to a request it refused before any
/// exchange (no route, no request to read an origin from): the listener's response
/// rules, then its security headers (HSTS only when `https`).
pub fn on_session_answer(listener: &HeaderPolicy, https: bool, headers: &mut Vec<Header>) {
    apply_rules(&listener.response, headers);
    if let Some(s) = &listener.security {
        s.apply(headers, https);
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

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
