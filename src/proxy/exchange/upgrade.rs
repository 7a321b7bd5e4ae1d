//! The exchange's upgrade steps: whether a request switches protocols, decided after
//! routing and the route's request policies (IP lists, client certificates, rate
//! limits answer first), without I/O; and, after the upstream's `101`, the hand-over of
//! the upstream connection to the session's tunnel ([`super::super::tunnel`]).
//!
//! A request asks to switch when its session says so ([`ResponseSink::upgrade_asked`]:
//! HTTP/1.1 with `Connection: upgrade`, or an HTTP/2 extended CONNECT whose `:protocol`
//! the session put in the `Upgrade` field) and its `Upgrade` field names a protocol.
//! The first protocol it names that the route's `upgrade` list allows (default
//! `["websocket"]`) is the one forwarded; an HTTP/1.1 request naming none of them is
//! served as plain HTTP, its `Upgrade` not forwarded (nginx without `proxy_set_header
//! Upgrade`).
//!
//! **RFC 8441.** An extended CONNECT goes upstream as the HTTP/1.1 upgrade `GET <path>`
//! with `Connection: upgrade`, `Upgrade: <:protocol>` and, for `websocket`, a
//! `Sec-WebSocket-Key` the gateway makes ([`crate::websocket::new_key`]); the client's
//! `Sec-WebSocket-Version`, `-Protocol` and `-Extensions` go as they came. The
//! upstream's `101` must carry the `Sec-WebSocket-Accept` of that key
//! ([`crate::websocket::accept_for`]).
//!
//! Refusals, statuses from the one mapping ([`crate::error`]): a body with the upgrade
//! (Content-Length over 0, or chunked) → 400 ([`Fault::UpgradeBody`]); a WebSocket
//! upgrade from an `Origin` the route's `websocket_origins` does not list, or without
//! one → 403 ([`Rejection::WebSocketOrigin`]); an extended CONNECT whose `:protocol` the
//! route does not allow → 501 ([`Fault::ConnectProtocol`]); no random source for the
//! key → 500; a `101` without the right `Sec-WebSocket-Accept` → 502 (the upstream
//! connection closed). The WebSocket handshake of an HTTP/1.1 client
//! (`Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`, the method) is the upstream's to
//! judge, as nginx and Envoy leave it: its answer (400, 426…) is relayed.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use super::super::tunnel::{TunnelSlot, Upgraded};
use super::super::{Ask, Next, ResponseSink};
use super::{Exchange, Flow, Step};
use crate::config::{HttpSettings, RouteConfig, WEBSOCKET};
use crate::error::{Kind, ProxyError, Side};
use crate::field::trim;
use crate::message::{BodyLength, Fault, Request, ResponseHead};
use crate::policy::{Rejection, Verdict};
use crate::websocket;

/// An upgrade the route allows, on its way upstream (boxed: rare, and the exchange's
/// state is moved into place for every request).
pub(super) struct Admitted {
    pub(super) protocol: Bytes,
    /// The `Sec-WebSocket-Key` the gateway made (an RFC 8441 WebSocket), whose accept
    /// value the upstream's `101` must carry.
    pub(super) key: Option<String>,
    slot: TunnelSlot,
    idle_timeout: std::time::Duration,
}

impl Exchange<'_> {
    /// An upgrade the session saw asked ([`check`]): kept in `self.upgrade` when
    /// the route allows it and the worker has room for one more tunnel; `Some`: the
    /// request is refused.
    #[cold]
    pub(super) fn admit_upgrade<'g>(
        &mut self,
        req: &Request,
        route: &RouteConfig,
        http: &HttpSettings,
        ask: Ask,
    ) -> Option<Step<'g>> {
        match check(req, route, ask) {
            Check::Plain => None,
            Check::Refuse(v) => Some(Step::Answer(v)),
            Check::Fail(e) => Some(Step::Fail(e)),
            Check::Switch(protocol) => {
                let key = if ask == Ask::ExtendedConnect
                    && name_of(&protocol).eq_ignore_ascii_case(WEBSOCKET.as_bytes())
                {
                    match websocket::new_key() {
                        Some(k) => Some(k),
                        None => return Some(Step::Fail(NO_KEY)),
                    }
                } else {
                    None
                };
                let Some(slot) = TunnelSlot::take(self.ctx, http.max_tunnels) else {
                    return Some(Step::Fail(TUNNELS_FULL));
                };
                let idle_timeout = route
                    .tunnel_idle_timeout
                    .unwrap_or(http.tunnel_idle_timeout);
                self.upgrade = Some(Box::new(Admitted {
                    protocol,
                    key,
                    slot,
                    idle_timeout,
                }));
                None
            }
        }
    }

    /// The upstream answered `101`: to an upgrade it was asked for, the head goes to the
    /// client and the upstream connection to the session's tunnel ([`Next::Tunnel`]);
    /// otherwise (no upgrade asked, another protocol, or the wrong
    /// `Sec-WebSocket-Accept` for the gateway's key) → 502.
    #[inline(never)]
    pub(super) fn switch<'s, S: ResponseSink>(
        &'s mut self,
        f: Flow,
        head: ResponseHead,
        s: &'s mut S,
    ) -> Pin<Box<dyn Future<Output = Result<Next, ProxyError>> + 's>> {
        Box::pin(self.switched(f, head, s))
    }

    async fn switched<S: ResponseSink>(
        &mut self,
        mut f: Flow,
        head: ResponseHead,
        s: &mut S,
    ) -> Result<Next, ProxyError> {
        let Some(admitted) = self.upgrade.take() else {
            return Err(SWITCHED_UNASKED);
        };
        if !switched_to(&head.headers, &admitted.protocol) {
            return Err(SWITCHED_ELSEWHERE);
        }
        if let Some(key) = &admitted.key
            && !accepts(&head.headers, key)
        {
            return Err(WRONG_ACCEPT);
        }
        let Admitted {
            slot, idle_timeout, ..
        } = *admitted;
        let pending = f.rd.buf.split();
        let tunnel = Upgraded {
            lease: f.lease,
            pending,
            idle_timeout,
            slot,
        };
        self.status = 101;
        match s.switch(&head, tunnel).await {
            Ok(()) => Ok(Next::Tunnel),
            Err(e) => {
                self.failed_with(&e);
                Ok(Next::Close)
            }
        }
    }
}

const SWITCHED_UNASKED: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamProtocol,
    "upstream switched protocols without an Upgrade request",
);
const SWITCHED_ELSEWHERE: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamProtocol,
    "upstream switched to a protocol other than the one asked",
);
const WRONG_ACCEPT: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamProtocol,
    "upstream's 101 lacks the Sec-WebSocket-Accept of the key sent",
);
const NO_KEY: ProxyError = ProxyError::new(
    Side::Internal,
    Kind::UpstreamProtocol,
    "no random bytes for a Sec-WebSocket-Key",
);
const CONNECT_PROTOCOL: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::BadRequest(Fault::ConnectProtocol),
    "extended CONNECT with a :protocol this route does not allow",
);
const TUNNELS_FULL: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::TunnelsFull,
    "max_tunnels reached on this worker",
);

/// What the exchange does with a request's `Upgrade`.
enum Check {
    /// No upgrade (none asked, or none the route allows): plain HTTP.
    Plain,
    /// Forward the upgrade to this protocol (as the client wrote it).
    Switch(Bytes),
    /// A policy refuses it (the origin check).
    Refuse(Verdict),
    /// The request is malformed for an upgrade (a body).
    Fail(ProxyError),
}

/// Decides the upgrade of `req` on `route`; `ask`: how the session saw it asked.
fn check(req: &Request, route: &RouteConfig, ask: Ask) -> Check {
    if ask == Ask::No {
        return Check::Plain;
    }
    let Some(protocol) = chosen(req, &route.upgrade) else {
        // An extended CONNECT waits for a tunnel: a page would be taken for one.
        if ask == Ask::ExtendedConnect {
            return Check::Fail(CONNECT_PROTOCOL);
        }
        return Check::Plain;
    };
    if matches!(req.body, BodyLength::Unknown) || matches!(req.body, BodyLength::Known(n) if n > 0)
    {
        return Check::Fail(ProxyError::new(
            Side::Downstream,
            Kind::BadRequest(Fault::UpgradeBody),
            "an Upgrade request cannot carry a body",
        ));
    }
    if let Some(origins) = &route.websocket_origins
        && name_of(&protocol).eq_ignore_ascii_case(WEBSOCKET.as_bytes())
    {
        let mut sent = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"origin"));
        let allowed = match (sent.next(), sent.next()) {
            (Some(o), None) => {
                let o = trim(&o.value);
                origins.iter().any(|p| p.matches(o))
            }
            _ => false,
        };
        if !allowed {
            return Check::Refuse(Verdict::refuse(
                Rejection::WebSocketOrigin,
                Kind::Forbidden,
                "WebSocket upgrade from an origin this route does not allow",
            ));
        }
    }
    Check::Switch(protocol)
}

/// The first protocol of the request's `Upgrade` fields that `allowed` lists (compared
/// by name, without a `/version`, in any case).
fn chosen(req: &Request, allowed: &[String]) -> Option<Bytes> {
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"upgrade"))
    {
        for token in h.value.split(|&b| b == b',') {
            let token = trim(token);
            let name = name_of(token);
            if !name.is_empty()
                && allowed
                    .iter()
                    .any(|a| name.eq_ignore_ascii_case(a.as_bytes()))
            {
                return Some(h.value.slice_ref(token));
            }
        }
    }
    None
}

/// A protocol's name: `websocket` of `websocket`, `foo` of `foo/2`.
fn name_of(protocol: &[u8]) -> &[u8] {
    let end = protocol
        .iter()
        .position(|&b| b == b'/')
        .unwrap_or(protocol.len());
    &protocol[..end]
}

/// Whether the upstream's `101` switched to `asked` (by name, any case): its `Upgrade`
/// field names that protocol.
fn switched_to(headers: &[crate::message::Header], asked: &[u8]) -> bool {
    let asked = name_of(asked);
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"upgrade"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| name_of(trim(t)).eq_ignore_ascii_case(asked))
}

/// Whether the `101`'s one `Sec-WebSocket-Accept` answers `key` (RFC 6455 §4.1).
fn accepts(headers: &[crate::message::Header], key: &str) -> bool {
    let mut sent = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"sec-websocket-accept"));
    match (sent.next(), sent.next()) {
        (Some(h), None) => trim(&h.value) == websocket::accept_for(key.as_bytes()).as_bytes(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginPattern;
    use crate::message::{ClientInfo, Header};

    fn request(fields: &[(&str, &str)], body: BodyLength) -> Request {
        Request {
            method: Bytes::from_static(b"GET"),
            scheme: "http",
            authority: None,
            authority_sent: None,
            path: Bytes::from_static(b"/"),
            headers: fields
                .iter()
                .map(|(n, v)| Header {
                    name: Bytes::copy_from_slice(n.as_bytes()),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect(),
            body,
            client: ClientInfo::new("127.0.0.1:1".parse().unwrap(), "http"),
            tls: None,
            received: monoio::time::Instant::now(),
        }
    }

    fn route() -> RouteConfig {
        RouteConfig::new(0, crate::config::HostMatch::Any, "/", 0)
    }

    fn switch_to(c: Check) -> Option<Bytes> {
        match c {
            Check::Switch(p) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn websocket_is_tunnelled_by_default_others_only_when_listed() {
        let ws = request(&[("Upgrade", "WebSocket")], BodyLength::None);
        assert_eq!(
            switch_to(check(&ws, &route(), Ask::Upgrade)).as_deref(),
            Some(&b"WebSocket"[..])
        );
        // Not asked by the session (HTTP/1.0, or no `Connection: upgrade`): plain.
        assert!(matches!(check(&ws, &route(), Ask::No), Check::Plain));
        let other = request(&[("Upgrade", "foo/2, websocket")], BodyLength::None);
        assert_eq!(
            switch_to(check(&other, &route(), Ask::Upgrade)).as_deref(),
            Some(&b"websocket"[..])
        );
        let mut r = route();
        r.upgrade = vec!["foo".into()];
        assert_eq!(
            switch_to(check(&other, &r, Ask::Upgrade)).as_deref(),
            Some(&b"foo/2"[..])
        );
        assert!(matches!(check(&ws, &r, Ask::Upgrade), Check::Plain));
        r.upgrade = Vec::new();
        assert!(matches!(check(&other, &r, Ask::Upgrade), Check::Plain));
    }

    #[test]
    fn an_upgrade_with_a_body_is_refused() {
        for body in [BodyLength::Known(1), BodyLength::Unknown] {
            let req = request(&[("Upgrade", "websocket")], body);
            match check(&req, &route(), Ask::Upgrade) {
                Check::Fail(e) => assert_eq!(e.status(), Some(400)),
                _ => panic!("an upgrade with a body went through"),
            }
        }
        let empty = request(&[("Upgrade", "websocket")], BodyLength::Known(0));
        assert!(matches!(
            check(&empty, &route(), Ask::Upgrade),
            Check::Switch(_)
        ));
    }

    #[test]
    fn websocket_origins_refuse_other_missing_and_repeated_origins() {
        let mut r = route();
        r.websocket_origins = Some(vec![
            OriginPattern::parse("https://app.example.com").unwrap(),
        ]);
        let with = |origins: &[&str]| {
            let mut fields = vec![("Upgrade", "websocket")];
            fields.extend(origins.iter().map(|o| ("Origin", *o)));
            check(&request(&fields, BodyLength::None), &r, Ask::Upgrade)
        };
        assert!(matches!(
            with(&["https://app.example.com"]),
            Check::Switch(_)
        ));
        assert!(matches!(
            with(&["https://APP.example.com"]),
            Check::Switch(_)
        ));
        for refused in [
            &["https://evil.example"][..],
            &[],
            &["https://app.example.com", "https://evil.example"],
            &["http://app.example.com"],
        ] {
            match with(refused) {
                Check::Refuse(Verdict::Respond(Rejection::WebSocketOrigin, resp)) => {
                    assert_eq!(resp.status, 403)
                }
                _ => panic!("{refused:?} was not refused"),
            }
        }
    }

    #[test]
    fn an_extended_connect_for_a_protocol_the_route_does_not_allow_is_501() {
        let other = request(&[("upgrade", "x-test")], BodyLength::None);
        match check(&other, &route(), Ask::ExtendedConnect) {
            Check::Fail(e) => assert_eq!(e.status(), Some(501)),
            _ => panic!("an extended CONNECT for x-test went through"),
        }
        // The same over HTTP/1.1 is plain HTTP.
        assert!(matches!(
            check(&other, &route(), Ask::Upgrade),
            Check::Plain
        ));
        let ws = request(&[("upgrade", "websocket")], BodyLength::None);
        assert!(matches!(
            check(&ws, &route(), Ask::ExtendedConnect),
            Check::Switch(_)
        ));
    }

    #[test]
    fn the_101_must_carry_the_accept_of_the_key_sent() {
        let h = |values: &[&str]| -> Vec<Header> {
            values
                .iter()
                .map(|v| Header {
                    name: Bytes::from_static(b"Sec-WebSocket-Accept"),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect()
        };
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert!(accepts(&h(&["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]), key));
        assert!(accepts(&h(&[" s3pPLMBiTxaQ9kYGzzhZRbK+xOo= "]), key));
        assert!(!accepts(&h(&["d3Jvbmc="]), key));
        assert!(!accepts(&h(&[]), key));
        let twice = [
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        ];
        assert!(!accepts(&h(&twice), key));
    }

    #[test]
    fn the_101_must_name_the_protocol_asked() {
        let h = |v: &str| {
            vec![Header {
                name: Bytes::from_static(b"Upgrade"),
                value: Bytes::copy_from_slice(v.as_bytes()),
            }]
        };
        assert!(switched_to(&h("websocket"), b"WebSocket"));
        assert!(switched_to(&h("foo/3"), b"foo/2"));
        assert!(!switched_to(&h("h2c"), b"websocket"));
        assert!(!switched_to(&[], b"websocket"));
    }
}
