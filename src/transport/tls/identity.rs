//! The verified client certificate's facts, parsed once per connection at the end of its
//! handshake ([`ClientIdentity::parse`]) and kept in [`super::TlsInfo`], so no request
//! parses a certificate again: the identity headers ([`crate::identity_headers`]) and
//! the policies read these values as they are.
//!
//! Every value is made safe for an HTTP field value here, once: the DNs are RFC 2253
//! strings with OpenSSL's (and so nginx's and Envoy's) escaping — `,+"\<>;` and a
//! leading `#` or space and a trailing space backslash-escaped, control and non-ASCII
//! bytes as `\XX` — and SAN values have control, space, non-ASCII and `,` bytes
//! percent-encoded (a comma separates the list in a header). Only the leaf's facts are
//! kept, never an intermediate's. This module does no I/O and has no status to choose:
//! a certificate it cannot parse (rustls accepted it, so that does not happen with a
//! well-formed one) leaves the connection without an identity, never fails it.

use std::fmt::Write as _;

use base64::Engine as _;

use bytes::Bytes;
use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use crate::config::identity_headers::push_san;
pub use crate::config::identity_headers::uri_sans;

/// A client certificate's facts, as the identity headers carry them. Every `Bytes`
/// value is printable ASCII (a valid field value); the SAN lists are comma-separated.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject DN, RFC 2253 (last RDN first: `CN=client,O=Example,C=US`). nginx:
    /// `$ssl_client_s_dn`.
    pub subject: Bytes,
    /// The issuer DN, RFC 2253. nginx: `$ssl_client_i_dn`.
    pub issuer: Bytes,
    /// The serial number, upper-case hex, two digits per byte. nginx: `$ssl_client_serial`.
    pub serial: Bytes,
    /// SHA-256 of the certificate's DER, lower-case hex. Envoy's XFCC `Hash`; nginx's
    /// `$ssl_client_fingerprint` is SHA-1.
    pub fingerprint: Bytes,
    /// The leaf as PEM, percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`), like
    /// nginx's `$ssl_client_escaped_cert` and Envoy's XFCC `Cert`.
    pub escaped_pem: Bytes,
    /// URI SANs (SPIFFE IDs), comma-separated.
    pub san_uri: Bytes,
    /// DNS SANs, comma-separated.
    pub san_dns: Bytes,
    /// e-mail (rfc822Name) SANs, comma-separated.
    pub san_email: Bytes,
}

impl std::fmt::Debug for ClientIdentity {
    // The escaped PEM is long and public; the rest is what a log wants.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.subject_str())
            .field("issuer", &ascii(&self.issuer))
            .field("serial", &ascii(&self.serial))
            .field("san_uri", &ascii(&self.san_uri))
            .field("san_dns", &ascii(&self.san_dns))
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Parses a leaf certificate (DER). `None` when it is not a certificate x509-parser
    /// reads.
    pub fn parse(der: &[u8]) -> Option<ClientIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut san_uri = String::new();
        let mut san_dns = String::new();
        let mut san_email = String::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                let (list, value) = match name {
                    GeneralName::URI(v) => (&mut san_uri, v),
                    GeneralName::DNSName(v) => (&mut san_dns, v),
                    GeneralName::RFC822Name(v) => (&mut san_email, v),
                    _ => continue,
                };
                if !list.is_empty() {
                    list.push(',');
                }
                push_san(list, value);
            }
        }
        Some(ClientIdentity {
            subject: Bytes::from(rfc2253(cert.subject())),
            issuer: Bytes::from(rfc2253(cert.issuer())),
            serial: Bytes::from(serial_hex(cert.raw_serial())),
            fingerprint: Bytes::from(sha256_hex(der)),
            escaped_pem: Bytes::from(escaped_pem(der)),
            san_uri: Bytes::from(san_uri),
            san_dns: Bytes::from(san_dns),
            san_email: Bytes::from(san_email),
        })
    }

    /// The subject DN as text (always ASCII).
    pub fn subject_str(&self) -> &str {
        ascii(&self.subject)
    }

    /// The URI SANs, one by one (percent-encoded as in [`ClientIdentity::san_uri`]).
    pub fn san_uris(&self) -> impl Iterator<Item = &str> {
        split_list(&self.san_uri)
    }

    /// The DNS SANs, one by one.
    pub fn san_dns_names(&self) -> impl Iterator<Item = &str> {
        split_list(&self.san_dns)
    }

    /// Every SAN value (DNS, URI, e-mail, in that order): what a route's `allow` list
    /// matches besides the subject.
    pub fn sans(&self) -> impl Iterator<Item = &str> {
        self.san_dns_names()
            .chain(self.san_uris())
            .chain(self.san_emails())
    }

    /// The e-mail SANs, one by one.
    pub fn san_emails(&self) -> impl Iterator<Item = &str> {
        split_list(&self.san_email)
    }
}

fn ascii(b: &Bytes) -> &str {
    // Built from `String`s of ASCII only (see the module doc).
    std::str::from_utf8(b).unwrap_or("")
}

fn split_list(b: &Bytes) -> impl Iterator<Item = &str> {
    ascii(b).split(',').filter(|s| !s.is_empty())
}

/// OpenSSL's `i2a_ASN1_INTEGER`: the magnitude's bytes as upper-case hex (a leading
/// sign byte dropped, zero as `00`), a `-` before a negative one.
fn serial_hex(raw: &[u8]) -> String {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let mut out = String::with_capacity(raw.len() * 2 + 1);
    if negative {
        // Two's complement → magnitude.
        out.push('-');
        let mut mag: Vec<u8> = raw.iter().map(|b| !b).collect();
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        push_hex_upper(&mut out, trim_zeros(&mag));
    } else {
        push_hex_upper(&mut out, trim_zeros(raw));
    }
    out
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    if b.is_empty() { &[0] } else { &b[first..] }
}

fn push_hex_upper(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
}

fn sha256_hex(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The leaf as PEM (64-column base64, `\n` line ends, as OpenSSL writes it), then
/// percent-encoded like nginx's `ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT)`: everything
/// but the RFC 3986 unreserved characters, upper-case hex.
fn escaped_pem(der: &[u8]) -> String {
    let mut pem = String::with_capacity(der.len() * 4 / 3 + 80);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() + pem.len() / 8);
    for &b in pem.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A DN as OpenSSL prints it with `XN_FLAG_RFC2253` (what nginx's `$ssl_client_s_dn` and
/// Envoy's XFCC `Subject` are): RDNs last first, joined by `,`; the attributes of a
/// multi-valued RDN joined by `+`; short attribute names where OpenSSL has them, else
/// the dotted OID with the value as `#` and its DER in hex.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            match short_name(&oid) {
                Some(sn) => {
                    out.push_str(sn);
                    out.push('=');
                    match value_text(atv.attr_value()) {
                        Some(text) => escape_value(&mut out, &text),
                        None => push_der_hex(&mut out, atv.attr_value()),
                    }
                }
                None => {
                    // OpenSSL dumps the value of a field it has no name for.
                    out.push_str(&oid);
                    out.push('=');
                    push_der_hex(&mut out, atv.attr_value());
                }
            }
        }
    }
    out
}

/// OpenSSL's short (or long, where it has no short) names for DN attributes.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.72" => "role",
        "2.5.4.97" => "organizationIdentifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// A string-typed value as Unicode text (T61String read as Latin-1, as OpenSSL does);
/// `None` for any other type (then dumped as hex).
fn value_text(v: &Any<'_>) -> Option<String> {
    if v.class() != Class::Universal {
        return None;
    }
    let data = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// OpenSSL's `do_esc_char` with `ASN1_STRFLGS_RFC2253` (ESC_2253 | ESC_CTRL | ESC_MSB |
/// UTF8_CONVERT): on the value's UTF-8 bytes.
fn escape_value(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        let special = matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (b == b'#' || b == b' '))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(char::from(b));
        } else if !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// `#` and the value's whole DER (tag, length, content) in upper-case hex.
fn push_der_hex(out: &mut String, v: &Any<'_>) {
    out.push('#');
    let tag = v.tag().0;
    let first = (v.class() as u8) << 6 | if v.header.is_constructed() { 0x20 } else { 0 };
    if tag < 31 {
        let _ = write!(out, "{:02X}", first | tag as u8);
    } else {
        // High tag numbers: base-128, most significant group first.
        let _ = write!(out, "{:02X}", first | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (k, g) in groups.iter().rev().enumerate() {
            let more = if k + 1 < groups.len() { 0x80 } else { 0 };
            let _ = write!(out, "{:02X}", g | more);
        }
    }
    let len = v.data.len();
    if len < 0x80 {
        let _ = write!(out, "{len:02X}");
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        let _ = write!(out, "{:02X}", 0x80 | (be.len() - skip) as u8);
        push_hex_upper(out, &be[skip..]);
    }
    push_hex_upper(out, v.data);
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
