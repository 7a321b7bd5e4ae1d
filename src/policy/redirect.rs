//! HTTPS redirect: a plain listener with `redirect_https = true` answers every request
//! with `redirect_status` (308 by default, or 301) and
//! `Location: https://HOST[:redirect_https_port]PATH?QUERY` — the request's path and
//! query as the client sent them. nginx: `return 308 https://$host$request_uri;` in a
//! `server { listen 80; }`.
//!
//! Never an open redirect: HOST must be a name this configuration serves over TLS — an
//! exact or wildcard (`*.example.com`: one label) name of some TLS listener's
//! certificates, or a route's exact or `*.suffix` host (a route for any host names
//! nothing). Any other host, or none, is refused with [`Kind::MisdirectedHost`] (421
//! Misdirected Request: "this server does not answer for that authority"; 400 is kept
//! for malformed messages). The port is omitted when it is 443.

use std::collections::HashSet;

use bytes::{BufMut, BytesMut};

use super::{Rejection, Verdict};
use crate::config::{Config, HostMatch, RedirectHttps};
use crate::error::Kind;
use crate::message::{GatewayResponse, Request};

/// The host names a redirect may point at, compiled once per generation.
#[derive(Debug, Default)]
pub struct ServedHosts {
    /// Exact lower-case names.
    exact: HashSet<Box<[u8]>>,
    /// `.example.com` from a certificate's `*.example.com`: exactly one label in front.
    one_label: Vec<Box<[u8]>>,
    /// `.example.com` from a route's `*.example.com`: one or more labels in front.
    any_labels: Vec<Box<[u8]>>,
}

impl ServedHosts {
    pub fn of(config: &Config) -> ServedHosts {
        let mut hosts = ServedHosts::default();
        let certificates = config
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .flat_map(|t| &t.certificates);
        for name in certificates.flat_map(|c| &c.server_names) {
            match name.strip_prefix('*') {
                Some(suffix) => hosts.one_label.push(suffix.as_bytes().into()),
                None => {
                    hosts.exact.insert(name.as_bytes().into());
                }
            }
        }
        for route in &config.routes {
            match &route.host {
                HostMatch::Any => {}
                HostMatch::Exact(n) => {
                    hosts.exact.insert(n.as_bytes().into());
                }
                HostMatch::Suffix(s) => hosts.any_labels.push(s.as_bytes().into()),
            }
        }
        hosts
    }

    /// Whether `host` (lower case, no port) is served.
    pub fn serves(&self, host: &[u8]) -> bool {
        if self.exact.contains(host) {
            return true;
        }
        let front = |suffix: &[u8]| {
            host.strip_suffix(suffix)
                .filter(|f| !f.is_empty())
                .map(|f| f.contains(&b'.'))
        };
        self.one_label.iter().any(|s| front(s) == Some(false))
            || self.any_labels.iter().any(|s| front(s).is_some())
    }
}

/// The listener's redirect for `req`.
pub fn check(req: &Request, redirect: &RedirectHttps, hosts: &ServedHosts) -> Verdict {
    let Some(host) = req.authority.as_deref().filter(|h| hosts.serves(h)) else {
        return Verdict::refuse(
            Rejection::RedirectUnknownHost,
            Kind::MisdirectedHost,
            "no HTTPS site for this host",
        );
    };
    // `OPTIONS *` has no path to keep.
    let path: &[u8] = if req.path.as_ref() == b"*" {
        b"/"
    } else {
        &req.path
    };
    let mut location = BytesMut::with_capacity(16 + host.len() + path.len());
    location.put_slice(b"https://");
    location.put_slice(host);
    if redirect.port != 443 {
        location.put_u8(b':');
        location.put_slice(redirect.port.to_string().as_bytes());
    }
    location.put_slice(path);
    let response = GatewayResponse {
        status: redirect.status,
        headers: Vec::with_capacity(1),
        body: crate::message::GatewayBody::Empty,
    }
    .with_header("Location", location.freeze());
    Verdict::Respond(Rejection::RedirectedToHttps, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> ServedHosts {
        let mut h = ServedHosts::default();
        h.exact.insert(b"example.com"[..].into());
        h.one_label.push(b".certs.test"[..].into());
        h.any_labels.push(b".routes.test"[..].into());
        h
    }

    #[test]
    fn only_served_names() {
        let h = hosts();
        for ok in [
            "example.com",
            "a.certs.test",
            "a.routes.test",
            "a.b.routes.test",
        ] {
            assert!(h.serves(ok.as_bytes()), "{ok}");
        }
        for no in [
            "evil.com",
            "certs.test",
            "a.b.certs.test",
            "routes.test",
            "xexample.com",
            "",
        ] {
            assert!(!h.serves(no.as_bytes()), "{no}");
        }
    }
}
