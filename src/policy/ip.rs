//! IP allow/deny and the real client address: [`IpList`], one longest-prefix table of
//! CIDRs (IPv4 and IPv6) that every address-keyed decision uses — a listener's and a
//! route's `allow`/`deny`, `proxy_protocol_from` and `trusted_proxies` — and
//! [`real_client`], nginx's `real_ip_recursive` walk of `X-Forwarded-For`.
//!
//! At accept (①, [`crate::runtime`]) a listener's list closes a denied connection before
//! any TLS byte; on a route ([`check_route`]) a denied request is refused with
//! [`Kind::Forbidden`] (403). Lookups walk a prefix trie (`prefix-trie`): no allocation,
//! no lock, no I/O. Lists are built once, when the configuration loads.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address
//! (`::ffff:10.1.2.3`, what a dual-stack socket reports for an IPv4 client) is the IPv4
//! address it carries.

use std::net::{IpAddr, SocketAddr};

use super::{Rejection, Verdict};
use crate::error::Kind;
use crate::message::{ClientInfo, Header, Request};

pub use crate::config::ip_list::{Action, CidrError, IpList, parse_cidr};

/// A route's `allow`/`deny` against the request's client address (after PROXY protocol
/// and `trusted_proxies`): 403 when denied.
pub fn check_route(list: &IpList, client: IpAddr) -> Verdict {
    if list.allows(client) {
        Verdict::Continue
    } else {
        Verdict::refuse(
            Rejection::IpDenied,
            Kind::Forbidden,
            "client address denied on this route",
        )
    }
}

/// nginx's `set_real_ip_from` + `real_ip_header X-Forwarded-For` + `real_ip_recursive
/// on`: when the connection's `peer` is in `trusted`, the `X-Forwarded-For` entries
/// (every such field, in order, as one list) are walked from the right, skipping trusted
/// addresses; the first untrusted one is the client. When every entry is trusted the
/// leftmost is. An entry that is not an address (`unknown`, garbage) ends the walk at the
/// last address reached: nothing left of it is believed. `None`: the address stays the
/// peer's (untrusted peer, no field, or nothing usable in it).
pub fn real_client(trusted: &IpList, peer: IpAddr, headers: &[Header]) -> Option<SocketAddr> {
    if !trusted.allows(peer) {
        return None;
    }
    let mut found = None;
    let fields = headers
        .iter()
        .rev()
        .filter(|h| h.name.eq_ignore_ascii_case(b"x-forwarded-for"));
    for h in fields {
        for item in h.value.rsplit(|&b| b == b',') {
            let item = crate::message::trim(item);
            if item.is_empty() {
                continue;
            }
            let Some(addr) = xff_entry(item) else {
                return found;
            };
            found = Some(addr);
            if !trusted.allows(addr.ip()) {
                return found;
            }
        }
    }
    found
}

/// The `trusted_proxies` step of an exchange: when the request's listener has
/// `trusted_proxies` (`trusted`) and its connection's client is one of them, the client
/// address becomes the one [`real_client`] finds in `X-Forwarded-For`. Nothing
/// configured: one branch, no work.
pub fn real_client_step(req: &mut Request, trusted: Option<&IpList>) {
    let Some(trusted) = trusted else {
        return;
    };
    if let Some(addr) = real_client(trusted, req.client.addr.ip(), &req.headers) {
        req.client = ClientInfo::new(addr, req.client.proto).on_listener(req.client.listener);
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[v6]:port`). Port
/// 0 when none was given.
fn xff_entry(item: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(item).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    text.parse::<SocketAddr>().ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ipnet::IpNet;

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|t| parse_cidr(t).expect(t)).collect()
    }

    fn ip(t: &str) -> IpAddr {
        t.parse().expect(t)
    }

    #[test]
    fn cidr_text() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Ok("10.0.0.0/8".parse().expect("net"))
        );
        assert_eq!(
            parse_cidr("192.0.2.7"),
            Ok("192.0.2.7/32".parse().expect("net"))
        );
        assert_eq!(parse_cidr("::1"), Ok("::1/128".parse().expect("net")));
        assert_eq!(
            parse_cidr("2001:db8::/32"),
            Ok("2001:db8::/32".parse().expect("net"))
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/",
            "",
            "all",
            "::/129",
            "1.2.3.4/8/8",
        ] {
            assert_eq!(parse_cidr(bad), Err(CidrError::Syntax), "{bad:?}");
        }
        assert!(matches!(
            parse_cidr("10.1.2.3/8"),
            Err(CidrError::HostBits(_))
        ));
        assert!(
            CidrError::HostBits("10.1.2.3/8".parse().expect("net"))
                .to_string()
                .contains("10.0.0.0/8")
        );
    }

    #[test]
    fn longest_prefix_wins_either_way() {
        let l = IpList::new(
            &nets(&["10.0.0.0/8", "10.1.2.128/25"]),
            &nets(&["10.1.2.0/24"]),
        )
        .expect("list");
        assert_eq!(l.action(ip("10.9.9.9")), Action::Allow);
        assert_eq!(l.action(ip("10.1.2.3")), Action::Deny);
        assert_eq!(l.action(ip("10.1.2.200")), Action::Allow);
        // An allow list denies what it does not name.
        assert_eq!(l.action(ip("192.0.2.1")), Action::Deny);
        assert_eq!(l.action(ip("2001:db8::1")), Action::Deny);
        // The IPv4-mapped form of an address is that address.
        assert_eq!(l.action(ip("::ffff:10.1.2.3")), Action::Deny);
        assert_eq!(l.action(ip("::ffff:10.9.9.9")), Action::Allow);
    }

    #[test]
    fn deny_only_allows_the_rest_and_v6_works() {
        let l = IpList::new(&[], &nets(&["2001:db8::/32", "192.0.2.0/24"])).expect("list");
        assert!(!l.allows(ip("2001:db8:1::5")));
        assert!(l.allows(ip("2001:db9::5")));
        assert!(!l.allows(ip("192.0.2.9")));
        assert!(l.allows(ip("198.51.100.1")));
        let all = IpList::new(&nets(&["0.0.0.0/0", "::/0"]), &nets(&["10.0.0.0/8"])).expect("l");
        assert!(all.allows(ip("203.0.113.1")) && all.allows(ip("::2")));
        assert!(!all.allows(ip("10.0.0.1")));
    }

    #[test]
    fn conflicts_are_refused() {
        let e = IpList::new(&nets(&["10.0.0.0/8"]), &nets(&["10.0.0.0/8"]));
        assert!(matches!(e, Err(CidrError::Conflict(_))));
        let dup = IpList::new(&nets(&["10.0.0.0/8", "10.0.0.0/8"]), &[]).expect("dup");
        assert_eq!(dup.len(), 1);
    }

    fn xff(values: &[&str]) -> Vec<Header> {
        values
            .iter()
            .map(|v| Header {
                name: Bytes::from_static(b"X-Forwarded-For"),
                value: Bytes::copy_from_slice(v.as_bytes()),
            })
            .collect()
    }

    #[test]
    fn xff_walk_is_nginx_real_ip_recursive() {
        let trusted = IpList::set(&nets(&["10.0.0.0/8", "2001:db8::/32"]));
        let walk = |peer: &str, values: &[&str]| {
            real_client(&trusted, ip(peer), &xff(values)).map(|a| a.ip().to_string())
        };
        // An untrusted peer's claims count for nothing.
        assert_eq!(walk("203.0.113.9", &["1.2.3.4"]), None);
        assert_eq!(walk("10.0.0.1", &[]), None);
        assert_eq!(walk("10.0.0.1", &["1.2.3.4"]).as_deref(), Some("1.2.3.4"));
        // Trusted hops on the right are skipped; the spoofed left part is not reached.
        assert_eq!(
            walk("10.0.0.1", &["6.6.6.6, 1.2.3.4, 10.0.0.7"]).as_deref(),
            Some("1.2.3.4")
        );
        // Several fields are one list, in order.
        assert_eq!(
            walk("10.0.0.1", &["6.6.6.6, 1.2.3.4", "10.0.0.7"]).as_deref(),
            Some("1.2.3.4")
        );
        // All trusted: the leftmost.
        assert_eq!(
            walk("10.0.0.1", &["10.0.0.3, 10.0.0.7"]).as_deref(),
            Some("10.0.0.3")
        );
        // Garbage stops the walk at the last address reached.
        assert_eq!(
            walk("10.0.0.1", &["1.2.3.4, unknown, 10.0.0.7"]).as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(walk("10.0.0.1", &["unknown"]), None);
        // Ports and IPv6, bracketed or not.
        assert_eq!(
            walk("2001:db8::1", &["[2001:db9::5]:443, 2001:db8::2"]).as_deref(),
            Some("2001:db9::5")
        );
        assert_eq!(
            walk("::ffff:10.0.0.1", &["1.2.3.4:5678"]).as_deref(),
            Some("1.2.3.4")
        );
    }
}
