//! [`IpList`]: one longest-prefix table of CIDRs (IPv4 and IPv6), the settings type of
//! every address-keyed decision — a listener's and a route's `allow`/`deny`,
//! `proxy_protocol_from` and `trusted_proxies` (checked in [`crate::policy::ip`] and at
//! accept). Lookups walk a prefix trie (`prefix-trie`): no allocation, no lock, no I/O.
//! Lists are built once, when the configuration loads.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address
//! (`::ffff:10.1.2.3`, what a dual-stack socket reports for an IPv4 client) is the IPv4
//! address it carries.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

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
