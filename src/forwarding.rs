//! ⑤ The forwarding fields a client sent (`Forwarded`, `X-Forwarded-For`): which are
//! well-formed enough for the proxy to extend with its own hop. No I/O, no allocation.
//!
//! The proxy never appends to a field value it did not parse as valid: appended to an
//! unterminated quoted string (`Forwarded: for=6.6.6.6;host="x`), its own element would
//! be swallowed into the client's and the upstream would see only the client's claims.
//! A malformed field the proxy would extend is dropped (the upstream gets the proxy's hop
//! alone) or the request refused, by [`MalformedForwarding`]
//! (`[http] malformed_forwarding_headers`); the exchange turns a refusal into a
//! `Fault::Forwarding`, which [`crate::error::fault_status`] answers with 400. Fields the
//! proxy does not add (`forward_headers` without them) pass through untouched.

use std::net::{IpAddr, SocketAddr};

use crate::config::ForwardHeaders;
pub use crate::config::MalformedForwarding;
use crate::message::{Header, is_tchar, trim};

/// Whether every `name` field of `headers` passes `valid` (true when there are none).
pub fn all_valid(headers: &[Header], name: &[u8], valid: fn(&[u8]) -> bool) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .all(|h| valid(&h.value))
}

/// The reason to refuse a request whose forwarding fields the proxy would extend are
/// malformed; `None` when they are fine (or none are the proxy's to extend).
pub fn refusal(headers: &[Header], forward: ForwardHeaders) -> Option<&'static str> {
    if forward.forwarded && !all_valid(headers, b"forwarded", forwarded_valid) {
        return Some("malformed Forwarded field");
    }
    if forward.x_forwarded_for && !all_valid(headers, b"x-forwarded-for", xff_valid) {
        return Some("malformed X-Forwarded-For field");
    }
    None
}

/// RFC 7239 §4: `Forwarded = 1#forwarded-element`, `forwarded-element = [ pair ] *( ";"
/// [ pair ] )`, `pair = token "=" ( token / quoted-string )`. Optional whitespace is
/// allowed around `,` and `;` (as real proxies write it), not around `=`. Empty list
/// elements are allowed (RFC 9110 §5.6.1); an empty value is ignored like an absent one.
pub fn forwarded_valid(v: &[u8]) -> bool {
    let mut i = 0;
    let n = v.len();
    let skip_ows = |i: &mut usize| {
        while *i < n && (v[*i] == b' ' || v[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ows(&mut i);
        if i == n {
            return true;
        }
        if v[i] == b',' || v[i] == b';' {
            i += 1;
            continue;
        }
        // A pair: token "=" value.
        let key = i;
        while i < n && is_tchar(v[i]) {
            i += 1;
        }
        if i == key || i == n || v[i] != b'=' {
            return false;
        }
        i += 1;
        if i < n && v[i] == b'"' {
            i += 1;
            loop {
                match v.get(i) {
                    None => return false,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match v.get(i + 1) {
                        Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => i += 2,
                        _ => return false,
                    },
                    Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => i += 1,
                    Some(_) => return false,
                }
            }
        } else {
            let start = i;
            while i < n && is_tchar(v[i]) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
        skip_ows(&mut i);
        match v.get(i) {
            None => return true,
            Some(b',' | b';') => i += 1,
            Some(_) => return false,
        }
    }
}

/// An `X-Forwarded-For` value is a comma-separated list of addresses (`203.0.113.7`,
/// `2001:db8::1`, with a port `203.0.113.7:4711` / `[2001:db8::1]:4711`), optional
/// whitespace around the commas; an empty value is ignored like an absent one.
pub fn xff_valid(v: &[u8]) -> bool {
    let v = trim(v);
    if v.is_empty() {
        return true;
    }
    v.split(|&b| b == b',').all(|item| {
        let Ok(text) = std::str::from_utf8(trim(item)) else {
            return false;
        };
        text.parse::<IpAddr>().is_ok() || text.parse::<SocketAddr>().is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_values() {
        for ok in [
            "",
            "for=192.0.2.43",
            "for=192.0.2.43, for=198.51.100.17",
            "for=\"[2001:db8:cafe::17]:4711\"",
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            "For=\"_gazonk\"",
            "for=192.0.2.43 ; proto=https , for=unknown",
            "for=a,,for=b",
            "for=a;",
            ";",
            "host=\"a.test:8443\"",
            "for=\"quoted \\\" pair\"",
            "for=\"obs-text \u{e9}\"",
        ] {
            assert!(forwarded_valid(ok.as_bytes()), "{ok:?} is valid");
        }
        for bad in [
            // The injection: an unterminated quoted string would swallow our element.
            "for=6.6.6.6;proto=https;host=\"x",
            "for=\"a\\",
            "for",
            "for=",
            "=x",
            "for =x",
            "for= x",
            "for=a b",
            "for=[::1]",
            "for=\"a\"b",
            "for=a=b",
            "for=\"a\u{7f}\"",
            "for=\"a\x01\"",
        ] {
            assert!(!forwarded_valid(bad.as_bytes()), "{bad:?} is malformed");
        }
    }

    #[test]
    fn x_forwarded_for_values() {
        for ok in [
            "",
            "  ",
            "203.0.113.7",
            "203.0.113.7, 198.51.100.1",
            "2001:db8::1,203.0.113.7",
            "203.0.113.7:4711",
            "[2001:db8::1]:4711",
        ] {
            assert!(xff_valid(ok.as_bytes()), "{ok:?} is valid");
        }
        for bad in [
            "unknown",
            "203.0.113.7,",
            ", 203.0.113.7",
            "203.0.113.7 198.51.100.1",
            "203.0.113.256",
            "evil\", for=1.2.3.4",
            "[2001:db8::1]",
            "1.2.3.4;x",
        ] {
            assert!(!xff_valid(bad.as_bytes()), "{bad:?} is malformed");
        }
    }
}
