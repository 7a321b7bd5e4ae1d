//! The expected strings here are what `openssl x509 -noout -subject -issuer -serial
//! -nameopt RFC2253` prints for the same certificates (checked by hand when written;
//! nginx and Envoy print DNs through that same OpenSSL function).

use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, Issuer, KeyPair, SanType, SerialNumber,
};
use sha2::Digest;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::*;

fn issuer() -> Issuer<'static, KeyPair> {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example, Inc.");
    params
        .distinguished_name
        .push(DnType::CommonName, "Clients CA");
    Issuer::new(params, key)
}

fn leaf(dn: DistinguishedName, sans: Vec<SanType>, serial: &[u8]) -> (Vec<u8>, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
    let cert = params.signed_by(&key, &issuer()).expect("sign leaf");
    (cert.der().to_vec(), cert.pem())
}

fn s(b: &Bytes) -> &str {
    std::str::from_utf8(b).expect("ASCII")
}

#[test]
fn subject_and_issuer_are_rfc2253_with_openssl_escaping() {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "#hash, \"quoted\"");
    dn.push(DnType::OrganizationalUnitName, " lead and trail ");
    dn.push(DnType::LocalityName, "Zürich");
    dn.push(DnType::CommonName, r"a,b+c<d>e;f\g=h");
    let (der, _) = leaf(dn, vec![], &[0x01, 0x02]);
    let id = ClientIdentity::parse(&der).expect("parses");
    assert_eq!(
        s(&id.subject),
        r#"CN=a\,b\+c\<d\>e\;f\\g=h,L=Z\C3\BCrich,OU=\ lead and trail\ ,O=\#hash\, \"quoted\",C=US"#
    );
    assert_eq!(s(&id.issuer), r"CN=Clients CA,O=Example\, Inc.");
    assert_eq!(id.subject_str(), s(&id.subject));
}

#[test]
fn string_types_other_than_utf8_are_converted() {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        DnValue::BmpString("Ωmega".try_into().expect("BMP")),
    );
    dn.push(
        DnType::OrganizationName,
        DnValue::PrintableString("Printable Org".try_into().expect("printable")),
    );
    dn.push(
        DnType::OrganizationalUnitName,
        DnValue::Ia5String("ia5 unit".try_into().expect("ia5")),
    );
    dn.push(
        DnType::LocalityName,
        DnValue::UniversalString("Ünïversal".try_into().expect("universal")),
    );
    let (der, _) = leaf(dn, vec![], &[0x07]);
    let id = ClientIdentity::parse(&der).expect("parses");
    assert_eq!(
        s(&id.subject),
        r"L=\C3\9Cn\C3\AFversal,OU=ia5 unit,O=Printable Org,CN=\CE\A9mega"
    );
}

#[test]
fn control_bytes_and_del_are_hex_escaped() {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bad\r\nX-Injected: 1\x7f");
    let (der, _) = leaf(dn, vec![], &[0x07]);
    let id = ClientIdentity::parse(&der).expect("parses");
    assert_eq!(s(&id.subject), r"CN=bad\0D\0AX-Injected: 1\7F");
}

/// A hand-made Name: one RDN with two attributes (`CN=a+O=b`), then an RDN with an
/// attribute OpenSSL has no name for (OID 1.2.3.4, PrintableString "x").
#[test]
fn multi_valued_rdns_join_with_plus_and_unknown_oids_dump_der() {
    let name_der: &[u8] = &[
        0x30, 0x25, // Name
        0x31, 0x16, // RDN { CN=a, O=b }
        0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'a', b'+', // CN UTF8 "a+"
        0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x02, b'b', b' ', // O UTF8 "b "
        0x31, 0x0b, // RDN { 1.2.3.4 = "x" }
        0x30, 0x09, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x13, 0x02, b'x', b'y',
    ];
    let (_, name) = X509Name::from_der(name_der).expect("name parses");
    assert_eq!(rfc2253(&name), r"1.2.3.4=#13027879,CN=a\++O=b\ ");
}

#[test]
fn serial_is_upper_hex_of_the_magnitude() {
    assert_eq!(serial_hex(&[0x01, 0xab]), "01AB");
    assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8F01");
    assert_eq!(serial_hex(&[0x00]), "00");
    assert_eq!(serial_hex(&[]), "00");
    assert_eq!(serial_hex(&[0xff]), "-01");
    assert_eq!(serial_hex(&[0xff, 0x00]), "-0100");
    let (der, _) = leaf(DistinguishedName::new(), vec![], &[0x4a, 0x3b, 0x00, 0xff]);
    let id = ClientIdentity::parse(&der).expect("parses");
    assert_eq!(s(&id.serial), "4A3B00FF");
}

#[test]
fn fingerprint_is_sha256_of_the_der_lower_hex() {
    let (der, _) = leaf(DistinguishedName::new(), vec![], &[0x01]);
    let id = ClientIdentity::parse(&der).expect("parses");
    let want: String = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(s(&id.fingerprint), want);
    assert_eq!(id.fingerprint.len(), 64);
}

#[test]
fn escaped_pem_is_nginx_escaped_cert() {
    let (der, pem) = leaf(DistinguishedName::new(), vec![], &[0x01]);
    let id = ClientIdentity::parse(&der).expect("parses");
    let escaped = s(&id.escaped_pem);
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"),
        "{escaped}"
    );
    assert!(
        escaped.ends_with("%0A-----END%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    // Only unreserved characters and %XX escapes.
    assert!(
        escaped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
    );
    // Decoded, it is the PEM rcgen wrote (64-column lines, LF).
    let mut decoded = Vec::new();
    let b = escaped.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
            decoded.push(u8::from_str_radix(hex, 16).expect("hex digit"));
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    assert_eq!(
        String::from_utf8(decoded).expect("UTF-8"),
        pem.replace("\r\n", "\n")
    );
    for c in ["+", "/", "="] {
        // Base64's own specials never appear raw.
        assert!(!escaped.contains(c), "{c} escaped");
    }
}

#[test]
fn sans_are_listed_by_kind_and_header_safe() {
    let sans = vec![
        SanType::URI(
            "spiffe://example.org/ns/orders/sa/api"
                .try_into()
                .expect("uri"),
        ),
        SanType::DnsName("api.example.org".try_into().expect("dns")),
        SanType::URI("urn:x:a,b%c".try_into().expect("uri")),
        SanType::Rfc822Name("ops@example.org".try_into().expect("email")),
        SanType::DnsName("*.example.org".try_into().expect("dns")),
        SanType::IpAddress("192.0.2.1".parse().expect("ip")),
    ];
    let (der, _) = leaf(DistinguishedName::new(), sans, &[0x01]);
    let id = ClientIdentity::parse(&der).expect("parses");
    assert_eq!(
        s(&id.san_uri),
        "spiffe://example.org/ns/orders/sa/api,urn:x:a%2Cb%25c"
    );
    assert_eq!(s(&id.san_dns), "api.example.org,*.example.org");
    assert_eq!(s(&id.san_email), "ops@example.org");
    assert_eq!(
        id.san_uris().collect::<Vec<_>>(),
        ["spiffe://example.org/ns/orders/sa/api", "urn:x:a%2Cb%25c"]
    );
    assert_eq!(id.san_dns_names().count(), 2);
    assert_eq!(id.san_emails().collect::<Vec<_>>(), ["ops@example.org"]);
    // An empty subject is an empty DN, and no SANs are empty lists.
    assert_eq!(s(&id.subject), "");
    let (der, _) = leaf(DistinguishedName::new(), vec![], &[0x01]);
    let id = ClientIdentity::parse(&der).expect("parses");
    assert!(id.san_uri.is_empty() && id.san_dns.is_empty() && id.san_email.is_empty());
    assert_eq!(id.san_uris().count(), 0);
}

#[test]
fn not_a_certificate_is_no_identity() {
    assert!(ClientIdentity::parse(b"not DER").is_none());
    assert!(ClientIdentity::parse(&[]).is_none());
}
