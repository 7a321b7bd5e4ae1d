//! `[route.client_cert]`: a route that needs a verified client certificate, optionally
//! from listed subjects. Reads the identity the handshake recorded once per connection
//! ([`TlsInfo::client_identity`]); parses no certificate. A connection without a
//! verified certificate (plain HTTP, `verify = "optional"` with none sent) or with one
//! whose subject DN and SANs match no `allow` entry is refused with
//! [`Kind::Forbidden`] (403), counted as `client_cert` with the reason of its
//! [`Rejection`].

use super::{Rejection, Verdict};
use crate::config::RouteClientCert;
use crate::error::Kind;
use crate::transport::tls::{ClientVerify, TlsInfo};

/// The route's requirement against the connection's TLS facts.
pub fn check(tls: Option<&TlsInfo>, rule: &RouteClientCert) -> Verdict {
    if !rule.required {
        return Verdict::Continue;
    }
    let refuse = |why, reason| Verdict::refuse(why, Kind::Forbidden, reason);
    let Some(tls) = tls.filter(|t| t.client_verify == ClientVerify::Success) else {
        return refuse(
            Rejection::ClientCertMissing,
            "route requires a verified client certificate",
        );
    };
    if rule.allow.is_empty() {
        return Verdict::Continue;
    }
    let Some(id) = &tls.client_identity else {
        return refuse(
            Rejection::ClientCertUnreadable,
            "client certificate identity unreadable",
        );
    };
    let allowed = rule
        .allow
        .iter()
        .any(|p| p.matches(id.subject_str()) || id.sans().any(|san| p.matches(san)));
    if allowed {
        Verdict::Continue
    } else {
        refuse(
            Rejection::ClientCertNotAllowed,
            "client certificate subject not allowed on this route",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::AllowPattern;
    use crate::transport::tls::ClientIdentity;

    fn info(verify: ClientVerify, id: Option<ClientIdentity>) -> TlsInfo {
        TlsInfo {
            sni: None,
            alpn: None,
            version: None,
            cipher_suite: None,
            kx_group: None,
            resumed: false,
            handshake_duration: Duration::ZERO,
            client_chain: Vec::new(),
            client_verify: verify,
            client_identity: id,
            ktls: false,
        }
    }

    fn rule(allow: &[&str]) -> RouteClientCert {
        RouteClientCert {
            required: true,
            allow: allow.iter().map(|s| AllowPattern::parse(s)).collect(),
        }
    }

    fn refused(v: Verdict) -> bool {
        match v {
            Verdict::Continue => false,
            Verdict::Respond(r, resp) => {
                assert_eq!((r.policy(), resp.status), ("client_cert", 403));
                true
            }
        }
    }

    fn partner() -> ClientIdentity {
        ClientIdentity {
            subject: "CN=partner-a,O=Example".into(),
            issuer: "CN=Clients CA".into(),
            serial: "01".into(),
            fingerprint: "00".into(),
            escaped_pem: "".into(),
            san_dns: "partner-a.example.com".into(),
            san_uri: "spiffe://example.org/ns/orders/sa/api".into(),
            san_email: "ops@partner-a.example".into(),
        }
    }

    #[test]
    fn no_verified_certificate_is_403() {
        assert!(refused(check(None, &rule(&[]))));
        assert!(refused(check(
            Some(&info(ClientVerify::None, None)),
            &rule(&[])
        )));
        let failed = info(ClientVerify::Failed("expired"), Some(partner()));
        assert!(refused(check(Some(&failed), &rule(&[]))));
        let not_required = RouteClientCert {
            required: false,
            allow: Vec::new(),
        };
        assert!(!refused(check(None, &not_required)));
    }

    #[test]
    fn allow_matches_subject_or_any_san() {
        let ok = info(ClientVerify::Success, Some(partner()));
        assert!(!refused(check(Some(&ok), &rule(&[]))));
        for pattern in [
            "CN=partner-a,O=Example",
            "spiffe://example.org/ns/orders/*",
            "partner-a.example.com",
            "ops@partner-a.example",
        ] {
            assert!(!refused(check(Some(&ok), &rule(&[pattern]))), "{pattern}");
        }
        for pattern in [
            "CN=partner-a",
            "O=Example,CN=partner-a",
            "spiffe://example.org/ns/billing/*",
            "spiffe://example.org/ns/orders",
            "*.example.com",
        ] {
            assert!(refused(check(Some(&ok), &rule(&[pattern]))), "{pattern}");
        }
    }
}
