//! Checks of `[listener.tls.client_auth]`, a certificate entry's `client_auth` and
//! `[route.client_cert]`: each wrong value, missing or unreadable CA, and CRL that is
//! not a CRL becomes an error naming file, line and field.

use toml::Spanned;

use super::Validator;
use crate::config::client_auth::{load_ca, load_crl};
use crate::config::raw::{RawClientAuth, RawRouteClientCert};
use crate::config::{AllowPattern, ClientAuth, CrlExpired, RouteClientCert, VerifyClient};

/// Longest `depth` accepted: chains this long are already unusual.
const MAX_DEPTH: i64 = 16;

impl Validator<'_> {
    /// `client_auth` at `field` (`listener[0].tls.client_auth`); `None` after an error.
    pub(super) fn client_auth(
        &mut self,
        field: &str,
        spanned: &Spanned<RawClientAuth>,
    ) -> Option<ClientAuth> {
        let raw = spanned.get_ref();
        let before = self.errors.len();
        let verify = match &raw.verify {
            None => VerifyClient::Required,
            Some(v) => match v.get_ref().as_str() {
                "required" => VerifyClient::Required,
                "optional" => VerifyClient::Optional,
                "off" => VerifyClient::Off,
                other => {
                    let msg =
                        format!("expected \"required\", \"optional\" or \"off\", got {other:?}");
                    self.error(Some(v.span()), &format!("{field}.verify"), msg);
                    VerifyClient::Required
                }
            },
        };
        let crl_expired = match &raw.crl_expired {
            None => CrlExpired::Refuse,
            Some(v) => match v.get_ref().as_str() {
                "refuse" => CrlExpired::Refuse,
                "ignore" => CrlExpired::Ignore,
                other => {
                    let msg = format!("expected \"refuse\" or \"ignore\", got {other:?}");
                    self.error(Some(v.span()), &format!("{field}.crl_expired"), msg);
                    CrlExpired::Refuse
                }
            },
        };
        let depth = self.int(&raw.depth, &format!("{field}.depth"), 2, 1..=MAX_DEPTH) as usize;
        let ca = match &raw.ca {
            Some(p) => match load_ca(&self.path(p.get_ref())) {
                Ok(ca) => Some(ca),
                Err(msg) => {
                    self.error(Some(p.span()), &format!("{field}.ca"), msg);
                    None
                }
            },
            None if verify != VerifyClient::Off => {
                self.error(
                    Some(spanned.span()),
                    &format!("{field}.ca"),
                    "required key is missing (the CAs client certificates must chain to)",
                );
                None
            }
            None => None,
        };
        let mut crls = Vec::new();
        if let Some(list) = &raw.crl {
            for (i, p) in list.get_ref().iter().enumerate() {
                match load_crl(&self.path(p.get_ref())) {
                    Ok(crl) => crls.push(crl),
                    Err(msg) => self.error(Some(p.span()), &format!("{field}.crl[{i}]"), msg),
                }
            }
        }
        if self.errors.len() > before {
            return None;
        }
        let auth = ClientAuth {
            verify,
            ca,
            crls,
            depth,
            crl_expired,
        };
        // The verifier is built here once so that a CRL rustls refuses fails the check,
        // not the start; each CRL alone, to name the file rustls refuses.
        let problems = auth.verifier_problems();
        for (i, msg) in &problems {
            match i {
                Some(i) => {
                    let span = raw
                        .crl
                        .as_ref()
                        .and_then(|l| l.get_ref().get(*i))
                        .map(|p| p.span());
                    self.error(span, &format!("{field}.crl[{i}]"), msg.clone());
                }
                None => self.error(Some(spanned.span()), field, msg.clone()),
            }
        }
        if !problems.is_empty() {
            return None;
        }
        Some(auth)
    }

    /// `[route.client_cert]` at `field`.
    pub(super) fn route_client_cert(
        &mut self,
        field: &str,
        spanned: &Spanned<RawRouteClientCert>,
    ) -> Option<RouteClientCert> {
        let raw = spanned.get_ref();
        let mut allow = Vec::new();
        let mut ok = true;
        if let Some(list) = &raw.allow {
            for (i, p) in list.get_ref().iter().enumerate() {
                let s = p.get_ref();
                if s.is_empty() || s == "*" || s[..s.len() - 1].contains('*') {
                    let msg = format!(
                        "{s:?}: a subject DN or SAN, exact or with one trailing `*` after a prefix"
                    );
                    self.error(Some(p.span()), &format!("{field}.allow[{i}]"), msg);
                    ok = false;
                } else {
                    allow.push(AllowPattern::parse(s));
                }
            }
        }
        let required = raw.required.unwrap_or(true);
        if !required && !allow.is_empty() {
            self.error(
                Some(spanned.span()),
                &format!("{field}.required"),
                "`allow` needs `required = true` (an unverified client has no names to match)",
            );
            ok = false;
        }
        ok.then_some(RouteClientCert { required, allow })
    }
}
