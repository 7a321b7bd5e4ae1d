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

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::Verdict;
use crate::error::{Kind, ProxyError, Side};
use crate::message::{ClientInfo, Header, Request};

/// What a list says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// CIDRs, each allowed or denied; the longest prefix containing an address decides, and
/// an address no prefix contains gets the default: [`Action::Deny`] when any `allow` was
/// given, else [`Action::Allow`] (nginx: `allow …; deny all;` and `deny …;` alone).
#[derive(Clone)]
pub struct IpList {
    v4: PrefixMap<Ipv4Net, Action>,
    v6: PrefixMap<Ipv6Net, Action>,
    default: Action,
    len: usize,
}

/// Why a CIDR text or a list is refused (the config check words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `ADDRESS/LENGTH` or a bare address.
    Syntax,
    /// Bits set below the prefix length (`10.1.2.3/8`): almost always a typo.
    HostBits(IpNet),
    /// The same prefix is both allowed and denied.
    Conflict(IpNet),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Syntax => f.write_str(
                "not a CIDR (\"10.0.0.0/8\", \"2001:db8::/32\") or an address (\"192.0.2.7\")",
            ),
            CidrError::HostBits(n) => write!(
                f,
                "has bits set after the prefix length (did you mean \"{}\"?)",
                n.trunc()
            ),
            CidrError::Conflict(n) => write!(f, "{n} is in both allow and deny"),
        }
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => return Err(CidrError::Syntax),
        },
    };
    if net.trunc() != net {
        return Err(CidrError::HostBits(net));
    }
    Ok(net)
}

impl IpList {
    /// A list from parsed `allow` and `deny` prefixes. A prefix listed twice on one side
    /// is harmless; on both sides it is [`CidrError::Conflict`].
    pub fn new(allow: &[IpNet], deny: &[IpNet]) -> Result<IpList, CidrError> {
        let mut list = IpList {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            default: if allow.is_empty() {
                Action::Allow
            } else {
                Action::Deny
            },
            len: 0,
        };
        for (nets, action) in [(allow, Action::Allow), (deny, Action::Deny)] {
            for &net in nets {
                let previous = match net {
                    IpNet::V4(n) => list.v4.insert(n, action),
                    IpNet::V6(n) => list.v6.insert(n, action),
                };
                match previous {
                    None => list.len += 1,
                    Some(p) if p == action => {}
                    Some(_) => return Err(CidrError::Conflict(net)),
                }
            }
        }
        Ok(list)
    }

    /// A set: the listed prefixes are in it, nothing else is (`trusted_proxies`,
    /// `proxy_protocol_from`).
    pub fn set(members: &[IpNet]) -> IpList {
        // Only one side: no conflict is possible.
        IpList::new(members, &[]).unwrap_or_else(|_| IpList::empty())
    }

    fn empty() -> IpList {
        IpList {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            default: Action::Deny,
            len: 0,
        }
    }

    /// What the list says about `ip`: the longest listed prefix containing it, else the
    /// default. No allocation.
    pub fn action(&self, ip: IpAddr) -> Action {
        let found = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, a)| *a),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, a)| *a),
        };
        found.unwrap_or(self.default)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.action(ip) == Action::Allow
    }

    /// Listed prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for IpList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v4 = self.v4.iter().map(|(n, a)| (IpNet::V4(n), *a));
        let v6 = self.v6.iter().map(|(n, a)| (IpNet::V6(n), *a));
        f.debug_struct("IpList")
            .field("prefixes", &v4.chain(v6).collect::<Vec<_>>())
            .field("default", &self.default)
            .finish()
    }
}

/// A route's `allow`/`deny` against the request's client address (after PROXY protocol
/// and `trusted_proxies`): 403 when denied.
pub fn check_route(list: &IpList, client: IpAddr) -> Verdict {
    if list.allows(client) {
        Verdict::Continue
    } else {
        Verdict::Refuse(ProxyError::new(
            Side::Downstream,
            Kind::Forbidden,
            "client address denied on this route",
        ))
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
            let item = crate::http1::parse::trim(item);
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
