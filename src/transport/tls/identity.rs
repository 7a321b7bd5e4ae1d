//! A verified client certificate's identity, parsed once per connection (at the end of
//! the handshake, from the leaf only) so that no request re-parses a certificate: the
//! subject and issuer as RFC 4514 strings (nginx's `$ssl_client_s_dn`), and the subject
//! alternative names a route's `allow` list and the identity headers match on.
//!
//! Parses; never verifies (rustls' `WebPkiClientVerifier` did that before this runs)
//! and never does I/O. A leaf that x509-parser cannot read gives no identity.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The facts of a client certificate's leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject, RFC 4514 (`CN=partner-a,O=Example`: most specific RDN first).
    pub subject: String,
    /// The issuer, RFC 4514.
    pub issuer: String,
    /// DNS-name SANs.
    pub san_dns: Vec<String>,
    /// URI SANs (SPIFFE IDs among them).
    pub san_uri: Vec<String>,
    /// rfc822Name (email) SANs.
    pub san_email: Vec<String>,
}

impl ClientIdentity {
    /// Parses the leaf `der`; `None` when it is not a readable X.509 certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Option<ClientIdentity> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let mut id = ClientIdentity {
            subject: rfc4514(cert.subject()),
            issuer: rfc4514(cert.issuer()),
            ..ClientIdentity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => id.san_dns.push((*n).to_string()),
                    GeneralName::URI(u) => id.san_uri.push((*u).to_string()),
                    GeneralName::RFC822Name(e) => id.san_email.push((*e).to_string()),
                    _ => {}
                }
            }
        }
        Some(id)
    }

    /// Every SAN value (DNS, URI, email), in that order.
    pub fn sans(&self) -> impl Iterator<Item = &str> {
        self.san_dns
            .iter()
            .chain(&self.san_uri)
            .chain(&self.san_email)
            .map(String::as_str)
    }
}

/// A distinguished name as RFC 4514 writes it: RDNs in reverse order of the encoding,
/// separated by `,`; multi-valued RDNs joined by `+`; known attribute types by their
/// short names, others as a dotted OID; a value that is not a string as `#` + hex DER.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attribute(&mut out, attr);
        }
    }
    out
}

fn push_attribute(out: &mut String, attr: &AttributeTypeAndValue<'_>) {
    let oid = attr.attr_type();
    match short_name(&oid.to_id_string()) {
        Some(short) => out.push_str(short),
        None => out.push_str(&oid.to_id_string()),
    }
    out.push('=');
    match attr.as_str() {
        Ok(v) => escape_value(out, v),
        Err(_) => {
            out.push('#');
            for b in attr.attr_value().as_bytes() {
                out.push_str(&format!("{b:02x}"));
            }
        }
    }
}

/// The short names RFC 4514 §3 lists, plus the common `emailAddress`.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 4514 §2.4: `"+,;<>\` escaped anywhere, `#` and space at the start, space at the
/// end, NUL as `\00`.
fn escape_value(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("self-signed").der().clone()
    }

    #[test]
    fn subject_is_rfc4514_most_specific_first_and_escaped() {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, " partner+a ");
        p.subject_alt_names = vec![
            rcgen::SanType::URI(
                "spiffe://example.org/ns/orders/sa/api"
                    .try_into()
                    .expect("uri"),
            ),
            rcgen::SanType::DnsName("a.example.com".try_into().expect("dns")),
            rcgen::SanType::Rfc822Name("ops@example.com".try_into().expect("email")),
        ];
        let id = ClientIdentity::parse(&cert(p)).expect("parses");
        assert_eq!(id.subject, r"CN=\ partner\+a\ ,O=Example\, Inc.");
        assert_eq!(id.subject, id.issuer);
        assert_eq!(id.san_uri, ["spiffe://example.org/ns/orders/sa/api"]);
        assert_eq!(id.san_dns, ["a.example.com"]);
        assert_eq!(id.san_email, ["ops@example.com"]);
    }

    #[test]
    fn garbage_is_no_identity() {
        assert!(ClientIdentity::parse(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_none());
    }
}
