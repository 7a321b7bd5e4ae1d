//! Checks of the address lists: a listener's `proxy_protocol` / `proxy_protocol_from`,
//! `allow` / `deny` and `trusted_proxies`, and a route's `allow` / `deny`. Each bad CIDR,
//! a prefix both allowed and denied, and `proxy_protocol` without its sources becomes an
//! error naming file, line and field (`listener[0].allow[2]`).

use ipnet::IpNet;
use toml::Spanned;

use super::Validator;
use crate::config::ListenerPolicies;
use crate::config::ip_list::{CidrError, IpList, parse_cidr};
use crate::config::raw::RawListener;

type CidrList = Option<Spanned<Vec<Spanned<String>>>>;

impl Validator<'_> {
    /// The CIDRs of `value` at `field`; `None` when absent or when one is wrong (each
    /// wrong one is reported).
    fn cidrs(&mut self, value: &CidrList, field: &str) -> Option<Vec<IpNet>> {
        let list = value.as_ref()?;
        let mut nets = Vec::with_capacity(list.get_ref().len());
        let mut ok = true;
        for (k, text) in list.get_ref().iter().enumerate() {
            match parse_cidr(text.get_ref()) {
                Ok(n) => nets.push(n),
                Err(e) => {
                    ok = false;
                    let msg = format!("{:?} {e}", text.get_ref());
                    self.error(Some(text.span()), &format!("{field}[{k}]"), msg);
                }
            }
        }
        ok.then_some(nets)
    }

    /// `allow` and `deny` at `table` (`listener[0]`, `route[3]`): `Ok(None)` when neither
    /// is written, `Err(())` after an error.
    pub(super) fn allow_deny(
        &mut self,
        table: &str,
        allow: &CidrList,
        deny: &CidrList,
    ) -> Result<Option<IpList>, ()> {
        if allow.is_none() && deny.is_none() {
            return Ok(None);
        }
        let a = self.cidrs(allow, &format!("{table}.allow"));
        let d = self.cidrs(deny, &format!("{table}.deny"));
        let (Some(a), Some(d)) = (
            a.or_else(|| allow.is_none().then(Vec::new)),
            d.or_else(|| deny.is_none().then(Vec::new)),
        ) else {
            return Err(());
        };
        match IpList::new(&a, &d) {
            Ok(list) => Ok(Some(list)),
            Err(e) => {
                // Reported on the deny entry that repeats an allowed prefix.
                let at = match &e {
                    CidrError::Conflict(net) => deny.as_ref().and_then(|l| {
                        l.get_ref()
                            .iter()
                            .position(|t| parse_cidr(t.get_ref()).ok() == Some(*net))
                            .map(|k| (Some(l.get_ref()[k].span()), format!("{table}.deny[{k}]")))
                    }),
                    _ => None,
                };
                let (span, field) = at.unwrap_or_else(|| {
                    let span = deny.as_ref().or(allow.as_ref()).map(|l| l.span());
                    (span, format!("{table}.deny"))
                });
                self.error(span, &field, e.to_string());
                Err(())
            }
        }
    }

    /// `proxy_protocol`, `proxy_protocol_from`, `allow`, `deny` and `trusted_proxies` of
    /// `listener[i]` (`field`); `None` after an error.
    pub(super) fn listener_ip(&mut self, field: &str, l: &RawListener) -> Option<ListenerPolicies> {
        let before = self.errors.len();
        let on = l.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
        let from_field = format!("{field}.proxy_protocol_from");
        let from = self.cidrs(&l.proxy_protocol_from, &from_field);
        let proxy_protocol = match (&l.proxy_protocol, &l.proxy_protocol_from) {
            (Some(p), None) if on => {
                let msg = "proxy_protocol = true needs proxy_protocol_from (required): the \
                           balancers allowed to send the header (\"0.0.0.0/0\" and \"::/0\" to trust any)";
                self.error(Some(p.span()), &from_field, msg);
                None
            }
            (_, Some(list)) if !on => {
                let msg = "proxy_protocol_from without proxy_protocol = true";
                self.error(Some(list.span()), &from_field, msg);
                None
            }
            (_, Some(list)) if list.get_ref().is_empty() => {
                let msg = "empty: no balancer could send the header (every connection would \
                           be closed)";
                self.error(Some(list.span()), &from_field, msg);
                None
            }
            _ => from.map(|nets| IpList::set(&nets)),
        };
        let ip = self.allow_deny(field, &l.allow, &l.deny).ok().flatten();
        let trusted_proxies = self
            .cidrs(&l.trusted_proxies, &format!("{field}.trusted_proxies"))
            .filter(|nets| !nets.is_empty())
            .map(|nets| IpList::set(&nets));
        (self.errors.len() == before).then_some(ListenerPolicies {
            proxy_protocol,
            ip,
            trusted_proxies,
        })
    }
}
