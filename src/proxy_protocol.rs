//! ① The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) an L4 balancer
//! puts in front of a connection's first byte to say whom it came from. A parser only:
//! it is handed the bytes read so far and answers [`Parsed::Complete`] (with the header's
//! exact length, so the reader consumes nothing after it), [`Parsed::Incomplete`] (every
//! byte so far is still header: the reader may consume it and wait for more) or
//! [`Parsed::Invalid`] with a [`Malformed`] reason. No I/O, no allocation; the reader is
//! [`crate::runtime`]'s accept phase, which closes the connection on `Invalid`.
//!
//! What counts: v1 `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` (at most 107 bytes) or
//! `PROXY UNKNOWN …\r\n`; v2 with the `PROXY` command over TCP/IPv4 or TCP/IPv6, or the
//! `LOCAL` command (a balancer's own health check). `UNKNOWN`, `LOCAL`, and the
//! unspecified and UNIX families keep the connection's real peer ([`Source::Peer`]), as
//! the spec asks; UDP families on a TCP listener are malformed. TLVs are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 line's prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;
/// The longest v2 header accepted: the fixed 16 bytes and up to 1,024 of addresses and
/// TLVs. The spec allows 64 KiB; balancers send far less (the IPv6 addresses are 36
/// bytes, AWS NLB's and Azure's TLVs a few dozen, HAProxy's SSL TLVs a few hundred). A
/// longer header is refused as [`Malformed::TooLong`] rather than read.
pub const V2_MAX: usize = 16 + 1024;
/// A buffer that holds any header accepted.
pub const MAX_HEADER: usize = V2_MAX;

/// Where the connection is from, by the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The original client.
    Address(SocketAddr),
    /// No address given (`LOCAL`, `UNKNOWN`, unspecified or UNIX family): the
    /// connection's own peer stays the client.
    Peer,
}

/// What the bytes read so far come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes (whatever follows is the connection's own stream).
    Complete {
        len: usize,
        source: Source,
    },
    /// A valid beginning; more bytes are needed, and all bytes so far are header.
    Incomplete,
    Invalid(Malformed),
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Neither the v1 prefix nor the v2 signature (no PROXY header was sent).
    Signature,
    /// A v1 line longer than 107 bytes, or a v2 header longer than [`V2_MAX`].
    TooLong,
    /// A v1 line that is not `PROXY PROTO SRC DST SPORT DPORT\r\n` (a bare LF, a missing
    /// or extra field, an unknown protocol).
    V1Syntax,
    /// A v1 address that does not parse, or is not of the line's family.
    V1Address,
    /// A v1 port that is not a decimal number from 0 to 65535.
    V1Port,
    /// A v2 version other than 2, or a command other than LOCAL and PROXY.
    V2Version,
    /// A v2 family or transport that is not TCP over IPv4/IPv6, unspecified or UNIX.
    V2Family,
    /// A v2 length too short for its family's addresses.
    V2Length,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Signature => "no PROXY protocol signature",
            Malformed::TooLong => "header too long",
            Malformed::V1Syntax => "malformed v1 line",
            Malformed::V1Address => "bad v1 address",
            Malformed::V1Port => "bad v1 port",
            Malformed::V2Version => "bad v2 version or command",
            Malformed::V2Family => "unsupported v2 address family",
            Malformed::V2Length => "v2 length too short for its addresses",
        }
    }
}

/// Parses the bytes a connection sent so far (from its first byte).
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(&first) = buf.first() else {
        return Parsed::Incomplete;
    };
    if first == V2_SIGNATURE[0] {
        return parse_v2(buf);
    }
    if first == V1_PREFIX[0] {
        return parse_v1(buf);
    }
    Parsed::Invalid(Malformed::Signature)
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Parsed::Invalid(Malformed::Signature);
    }
    let Some(lf) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Parsed::Invalid(Malformed::TooLong);
        }
        return Parsed::Incomplete;
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Parsed::Invalid(Malformed::V1Syntax);
    }
    let line = &buf[V1_PREFIX.len()..lf - 1];
    let len = lf + 1;
    if line.starts_with(b"UNKNOWN") && matches!(line.get(7), None | Some(b' ')) {
        // The spec: the receiver ignores the rest of an UNKNOWN line.
        return Parsed::Complete {
            len,
            source: Source::Peer,
        };
    }
    let mut fields = line.split(|&b| b == b' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Parsed::Invalid(Malformed::V1Syntax);
    };
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Parsed::Invalid(Malformed::V1Syntax),
    };
    let (Some(src), Some(_)) = (v1_ip(src, v6), v1_ip(dst, v6)) else {
        return Parsed::Invalid(Malformed::V1Address);
    };
    let (Some(sport), Some(_)) = (v1_port(sport), v1_port(dport)) else {
        return Parsed::Invalid(Malformed::V1Port);
    };
    Parsed::Complete {
        len,
        source: Source::Address(SocketAddr::new(src, sport)),
    }
}

fn v1_ip(text: &[u8], v6: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if v6 {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// Decimal, no sign, no leading zero (the spec's form), 0 to 65535.
fn v1_port(text: &[u8]) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || (text.len() > 1 && text[0] == b'0') {
        return None;
    }
    if !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Parsed::Invalid(Malformed::Signature);
    }
    if buf.len() < 16 {
        if let Some(&vc) = buf.get(12)
            && !matches!(vc, 0x20 | 0x21)
        {
            return Parsed::Invalid(Malformed::V2Version);
        }
        return Parsed::Incomplete;
    }
    let command = match buf[12] {
        0x20 => Command::Local,
        0x21 => Command::Proxy,
        _ => return Parsed::Invalid(Malformed::V2Version),
    };
    let family = buf[13];
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + payload;
    if len > V2_MAX {
        return Parsed::Invalid(Malformed::TooLong);
    }
    // Addresses the family needs: IPv4 4+4+2+2, IPv6 16+16+2+2, UNIX 108+108. LOCAL's
    // address block, whatever it holds, is skipped (the spec: the receiver ignores it).
    let needed = match family {
        _ if command == Command::Local => 0,
        0x00 => 0,
        0x11 => 12,
        0x21 => 36,
        0x31 => 216,
        _ => return Parsed::Invalid(Malformed::V2Family),
    };
    if payload < needed {
        return Parsed::Invalid(Malformed::V2Length);
    }
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let a = &buf[16..len];
    let source = match (command, family) {
        (Command::Local, _) | (_, 0x00 | 0x31) => Source::Peer,
        (_, 0x11) => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Source::Address(SocketAddr::new(IpAddr::V4(ip), port))
        }
        _ => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Source::Address(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
    };
    Parsed::Complete { len, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Local,
    Proxy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(command);
        h.push(family);
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn v2_tcp4() -> Vec<u8> {
        let mut p = vec![203, 0, 113, 7, 10, 0, 0, 1];
        p.extend_from_slice(&4711u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        // A TLV (PP2_TYPE_NOOP) that is skipped.
        p.extend_from_slice(&[0x04, 0, 2, 9, 9]);
        v2(0x21, 0x11, &p)
    }

    fn v2_tcp6() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::7".parse().expect("v6");
        let dst: Ipv6Addr = "2001:db8::1".parse().expect("v6");
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&4711u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        v2(0x21, 0x21, &p)
    }

    /// Every prefix of a valid header (followed by a TLS record's first bytes) is
    /// Incomplete; the whole is Complete with its exact length whatever follows.
    fn check_split(header: &[u8], source: Source) {
        let mut stream = header.to_vec();
        stream.extend_from_slice(&[22, 3, 1, 0, 200]);
        for cut in 0..header.len() {
            assert_eq!(parse(&stream[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        for end in header.len()..=stream.len() {
            assert_eq!(
                parse(&stream[..end]),
                Parsed::Complete {
                    len: header.len(),
                    source
                },
                "end at {end}"
            );
        }
    }

    #[test]
    fn v1_headers_at_every_split() {
        let a = |t: &str| Source::Address(t.parse().expect("addr"));
        check_split(
            b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 443\r\n",
            a("203.0.113.7:4711"),
        );
        check_split(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n",
            a("[2001:db8::7]:4711"),
        );
        check_split(b"PROXY UNKNOWN\r\n", Source::Peer);
        check_split(
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            Source::Peer,
        );
        // The longest TCP6 line (104 bytes) and the longest line the spec allows (107).
        let tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(tcp6.len(), 104);
        check_split(tcp6, a("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"));
        let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX);
        check_split(longest, Source::Peer);
    }

    #[test]
    fn v2_headers_at_every_split() {
        check_split(
            &v2_tcp4(),
            Source::Address("203.0.113.7:4711".parse().expect("addr")),
        );
        check_split(
            &v2_tcp6(),
            Source::Address("[2001:db8::7]:4711".parse().expect("addr")),
        );
        // LOCAL: the balancer's own connection, addresses (if any) ignored.
        check_split(&v2(0x20, 0x00, &[]), Source::Peer);
        check_split(&v2(0x20, 0x11, &[1; 12]), Source::Peer);
        check_split(&v2(0x20, 0x21, &[1; 3]), Source::Peer);
        check_split(&v2(0x21, 0x00, &[]), Source::Peer);
        check_split(&v2(0x21, 0x31, &[0; 216]), Source::Peer);
    }

    #[test]
    fn malformed_v1() {
        let bad: &[(&[u8], Malformed)] = &[
            (b"GET / HTTP/1.1\r\n", Malformed::Signature),
            (b"PROXX TCP4", Malformed::Signature),
            (&[22, 3, 1, 0, 200], Malformed::Signature),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Malformed::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Malformed::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Malformed::V1Syntax),
            (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Malformed::V1Syntax),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Malformed::V1Syntax),
            (b"PROXY UNKNOWNX\r\n", Malformed::V1Syntax),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", Malformed::V1Address),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Malformed::V1Address),
            (
                b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
                Malformed::V1Address,
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Malformed::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", Malformed::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", Malformed::V1Port),
        ];
        for (input, why) in bad {
            assert_eq!(
                parse(input),
                Parsed::Invalid(*why),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // No line end within 107 bytes: refused once 107 bytes are in, not before.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(V1_MAX - 1, b'1');
        assert_eq!(parse(&long), Parsed::Incomplete);
        long.push(b'1');
        assert_eq!(parse(&long), Parsed::Invalid(Malformed::TooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Parsed::Invalid(Malformed::TooLong));
    }

    #[test]
    fn malformed_v2() {
        assert_eq!(
            parse(&v2(0x11, 0x11, &[0; 12])),
            Parsed::Invalid(Malformed::V2Version)
        );
        // Refused as soon as the version byte is in.
        assert_eq!(
            parse(&v2(0x22, 0x11, &[0; 12])[..13]),
            Parsed::Invalid(Malformed::V2Version)
        );
        assert_eq!(
            parse(&v2(0x21, 0x12, &[0; 12])),
            Parsed::Invalid(Malformed::V2Family)
        );
        assert_eq!(
            parse(&v2(0x21, 0x41, &[0; 12])),
            Parsed::Invalid(Malformed::V2Family)
        );
        assert_eq!(
            parse(&v2(0x21, 0x11, &[0; 11])),
            Parsed::Invalid(Malformed::V2Length)
        );
        assert_eq!(
            parse(&v2(0x21, 0x21, &[0; 35])[..16]),
            Parsed::Invalid(Malformed::V2Length)
        );
        // Oversized: refused from the fixed part alone, before the rest is read.
        let big = v2(0x21, 0x11, &[0; V2_MAX - 16 + 1]);
        assert_eq!(parse(&big[..16]), Parsed::Invalid(Malformed::TooLong));
        let max = v2(0x21, 0x11, &[0; V2_MAX - 16]);
        assert!(matches!(parse(&max), Parsed::Complete { len: V2_MAX, .. }));
        let mut sig = V2_SIGNATURE.to_vec();
        sig[5] = b'X';
        assert_eq!(parse(&sig), Parsed::Invalid(Malformed::Signature));
    }
}
