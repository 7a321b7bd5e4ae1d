//! ⑥ Policies: the gateway's decisions about a request, each a small type whose `check`
//! says [`Verdict::Continue`] or [`Verdict::Respond`] — an answer of the gateway's own
//! ([`GatewayResponse`]: status, extra fields such as `Location` or `Retry-After`, a
//! small body) that goes to the client instead of the upstream, with the
//! [`Rejection`] that names the policy and its reason for the access log and
//! `ringgate_policy_rejections_total{policy,reason}`. Policies read the request and the
//! connection's facts; they never do I/O. A refusal's status comes from the one
//! mapping, [`crate::error::ProxyError::status`] (403, 404, 413, 421); only statuses a
//! configuration chooses (a redirect's 301/308, a rate limit's 429) are set here.
//!
//! # Phases, in the order they run
//!
//! At accept, before any TLS byte (`runtime`/`listener`, next to come):
//! 1. PROXY protocol — the real client address;
//! 2. IP allow/deny (listener) — the connection closed;
//! 3. connection limits — the excess closed at once.
//!
//! Per request, once the head is read ([`crate::proxy`] runs them):
//! 0. [`redirect`] — a plain listener with `redirect_https` answers every request with a
//!    redirect to HTTPS, before routing (421 for a host no certificate or route serves);
//! 1. route — [`crate::route`]; none → 404 (`route`/`no_route`);
//! 2. then [`request_phases`]: IP allow/deny (route) → authentication ([`client_cert`]
//!    today; JWT and API keys next) → rate limits → body size ([`body_size`]: a
//!    Content-Length over the route's `max_request_body_bytes` → 413 before a byte is
//!    read; a chunked body is counted by the exchange as it streams, → 413) → request
//!    header rules → upstream.
//!
//! On the way back: response header rules and security headers (on every response, the
//! gateway's own included).
//!
//! Each phase is one `phase!(…)` line in [`request_phases`]; a policy's compiled state
//! (tables, counters shared across workers) lives in [`Policies`], built once per
//! configuration generation. Policies that are not configured cost one branch each.

pub mod body_size;
pub mod client_cert;
pub mod conn_limit;
pub mod cors;
pub mod headers;
pub mod ip;
pub mod rate_limit;
pub mod redirect;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{HttpSettings, RouteConfig};
use crate::error::{Kind, ProxyError, Side};
use crate::message::{GatewayResponse, Request};

/// What a policy decided.
#[derive(Debug)]
pub enum Verdict {
    /// Go on to the next phase.
    Continue,
    /// Answer the client with this instead of proxying; the rejection says which policy
    /// and why.
    Respond(Rejection, GatewayResponse),
}

impl Verdict {
    /// A refusal: the status for `kind` from the one mapping, `reason` as the body.
    pub fn refuse(rejection: Rejection, kind: Kind, reason: &'static str) -> Verdict {
        let e = ProxyError::new(Side::Downstream, kind, reason);
        // Every kind a policy refuses with has a status; one without would be a bug,
        // answered as a local failure rather than with nothing.
        let response = e
            .response()
            .unwrap_or_else(|| GatewayResponse::text(500, reason));
        Verdict::Respond(rejection, response)
    }
}

/// Which policy answered a request instead of the upstream, and why: a fixed set, so
/// that each is one counter (`ringgate_policy_rejections_total{policy,reason}`) and the
/// access log reads two static strings. A policy added later adds its variants here,
/// to [`Rejection::ALL`] and to the two name tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No route for the request's host and path (404).
    NoRoute,
    /// The route needs a verified client certificate and the connection has none (403).
    ClientCertMissing,
    /// The verified certificate's identity could not be read (403).
    ClientCertUnreadable,
    /// The certificate's subject and SANs match no `allow` entry (403).
    ClientCertNotAllowed,
    /// Content-Length over the route's `max_request_body_bytes` (413, nothing read).
    BodyDeclaredTooLarge,
    /// A streamed (chunked) body grew over the route's `max_request_body_bytes` (413, or
    /// the connection closed when the response had started).
    BodyStreamedTooLarge,
    /// A `redirect_https` listener sent the client to HTTPS (301/308).
    RedirectedToHttps,
    /// A `redirect_https` listener was asked for a host no certificate or route serves
    /// (421), or for none at all.
    RedirectUnknownHost,
    /// A rate limit's burst was exceeded (its `status`, 429 by default).
    RateLimitBurst,
    /// A rate limit's table had no room for a new key.
    RateLimitTableFull,
    /// A listener's `max_connections_per_ip` was reached (closed at accept).
    ConnLimitPerIp,
    /// An `allow`/`deny` list refused the client's address (at accept: closed; on a
    /// route: 403).
    IpDenied,
    /// A connection to a PROXY protocol listener from outside `proxy_protocol_from`.
    ProxyUntrusted,
    /// A PROXY header that is malformed, too long, cut short by a close, or absent.
    ProxyMalformed,
    /// No whole PROXY header within the handshake timeout.
    ProxyTimeout,
    /// A WebSocket upgrade from an origin not in the route's `websocket_origins`, or
    /// without an `Origin` (403).
    WebSocketOrigin,
}

impl Rejection {
    pub const ALL: [Rejection; 16] = [
        Rejection::NoRoute,
        Rejection::ClientCertMissing,
        Rejection::ClientCertUnreadable,
        Rejection::ClientCertNotAllowed,
        Rejection::BodyDeclaredTooLarge,
        Rejection::BodyStreamedTooLarge,
        Rejection::RedirectedToHttps,
        Rejection::RedirectUnknownHost,
        Rejection::RateLimitBurst,
        Rejection::RateLimitTableFull,
        Rejection::ConnLimitPerIp,
        Rejection::IpDenied,
        Rejection::ProxyUntrusted,
        Rejection::ProxyMalformed,
        Rejection::ProxyTimeout,
        Rejection::WebSocketOrigin,
    ];

    /// The `policy` label.
    pub fn policy(self) -> &'static str {
        match self {
            Rejection::NoRoute => "route",
            Rejection::ClientCertMissing
            | Rejection::ClientCertUnreadable
            | Rejection::ClientCertNotAllowed => "client_cert",
            Rejection::BodyDeclaredTooLarge | Rejection::BodyStreamedTooLarge => "body_size",
            Rejection::RedirectedToHttps | Rejection::RedirectUnknownHost => "redirect_https",
            Rejection::RateLimitBurst | Rejection::RateLimitTableFull => "rate_limit",
            Rejection::ConnLimitPerIp => "conn_limit",
            Rejection::IpDenied => "ip",
            Rejection::ProxyUntrusted | Rejection::ProxyMalformed | Rejection::ProxyTimeout => {
                "proxy_protocol"
            }
            Rejection::WebSocketOrigin => "websocket_origin",
        }
    }

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NoRoute => "no_route",
            Rejection::ClientCertMissing => "no_verified_certificate",
            Rejection::ClientCertUnreadable => "identity_unreadable",
            Rejection::ClientCertNotAllowed => "subject_not_allowed",
            Rejection::BodyDeclaredTooLarge => "content_length",
            Rejection::BodyStreamedTooLarge => "streamed",
            Rejection::RedirectedToHttps => "redirected",
            Rejection::RedirectUnknownHost => "unknown_host",
            Rejection::RateLimitBurst => "burst_exceeded",
            Rejection::RateLimitTableFull => "table_full",
            Rejection::ConnLimitPerIp => "max_connections_per_ip",
            Rejection::IpDenied => "denied",
            Rejection::ProxyUntrusted => "untrusted_source",
            Rejection::ProxyMalformed => "malformed",
            Rejection::ProxyTimeout => "timeout",
            Rejection::WebSocketOrigin => "origin_not_allowed",
        }
    }

    /// Its index in [`Rejection::ALL`] (the metrics array).
    pub fn index(self) -> usize {
        self as usize
    }

    /// `(policy, reason)`: the labels of `ringgate_policy_rejections_total`.
    pub fn labels(self) -> (&'static str, &'static str) {
        (self.policy(), self.reason())
    }
}

/// The policies' compiled state for one configuration generation (built with it, off the
/// workers; read without locks). Rate-limit tables and IP prefix tables join here.
#[derive(Debug, Default)]
pub struct Policies {
    /// The names a `redirect_https` listener may send a client to.
    pub https_hosts: redirect::ServedHosts,
}

impl Policies {
    pub fn build(config: &crate::config::Config) -> Policies {
        Policies {
            https_hosts: redirect::ServedHosts::of(config),
        }
    }
}

/// Returns from the phase runner when a phase answers.
macro_rules! phase {
    ($verdict:expr) => {
        if let v @ Verdict::Respond(..) = $verdict {
            return Phases::answer(v);
        }
    };
}

/// The per-request phases after routing, in their order (see the module doc): the
/// route's configured policies, each one `phase!` line. `req` is mutable for the header
/// rules.
pub fn request_phases(
    req: &mut Request,
    route: &RouteConfig,
    http: &HttpSettings,
    rate_limits: &[Arc<rate_limit::Limiter>],
) -> Phases {
    // IP allow/deny (route).
    if let Some(list) = &route.ip {
        phase!(ip::check_route(list, req.client.addr.ip()));
    }
    // Authentication.
    if let Some(rule) = &route.client_cert {
        phase!(client_cert::check(req.tls.as_deref(), rule));
    }
    // Rate limits: accounted here, before the body and whatever a later phase decides
    // (authentication by JWT/API key joins before this line and is still counted: the
    // limits charge the request when it arrives, as nginx's preaccess phase does).
    let mut delay = None;
    if !route.rate_limits.is_empty() {
        let now = rate_limit::now_ms();
        match rate_limit::check(rate_limits, &route.rate_limits, req, now) {
            rate_limit::Decision::Continue => {}
            rate_limit::Decision::Delay(d) => delay = Some(d),
            rate_limit::Decision::Refuse(r) => {
                let rejection = match r.reason {
                    rate_limit::Reason::Burst => Rejection::RateLimitBurst,
                    rate_limit::Reason::TableFull => Rejection::RateLimitTableFull,
                };
                let response = GatewayResponse::text(r.status, "too many requests")
                    .with_header("Retry-After", Bytes::from(r.retry_after_secs.to_string()));
                return Phases::answer(Verdict::Respond(rejection, response));
            }
        }
    }
    // Body size.
    let limit = body_size::limit(route, http);
    phase!(body_size::check_declared(req.body, limit));
    // Request header rules run in the exchange, which knows the listener's rules too.
    Phases {
        verdict: Verdict::Continue,
        delay,
    }
}

/// What the request phases decided: a verdict, and for an admitted request the time a
/// rate limit makes it wait (`delay` / no `nodelay`) before it goes upstream.
#[derive(Debug)]
pub struct Phases {
    pub verdict: Verdict,
    pub delay: Option<Duration>,
}

impl Phases {
    fn answer(verdict: Verdict) -> Phases {
        Phases {
            verdict,
            delay: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_index_their_table_and_have_fixed_labels() {
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.policy().is_empty() && !r.reason().is_empty());
        }
    }
}
