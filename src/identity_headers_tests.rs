use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::*;
use crate::message::{BodyLength, ClientInfo, Header, Request};
use crate::transport::tls::{ClientIdentity, ClientVerify, TlsInfo};

fn h(name: &'static str, value: &'static str) -> Header {
    Header {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    }
}

/// Every identity claim a client could try, in several spellings, around real fields.
fn spoofed() -> Vec<Header> {
    vec![
        h("Accept", "*/*"),
        h("X-SSL-Client-Verify", "SUCCESS"),
        h("x-ssl-client-dn", "CN=admin"),
        h("X-SSL-CLIENT-SAN-URI", "spiffe://example.org/admin"),
        h("X-Ssl-Client-Anything", "x"),
        h("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=admin\""),
        h("x-forwarded-client-cert", "Hash=11"),
        h("X-SSL-Client", "not the prefix: kept"),
        h("User-Agent", "t"),
    ]
}

fn request(tls: Option<Rc<TlsInfo>>, headers: Vec<Header>) -> Request {
    Request {
        method: Bytes::from_static(b"GET"),
        scheme: "https",
        authority: Some(Bytes::from_static(b"api.test")),
        authority_sent: Some(Bytes::from_static(b"api.test")),
        path: Bytes::from_static(b"/"),
        headers,
        body: BodyLength::None,
        client: ClientInfo::new("198.51.100.7:4000".parse().expect("addr"), "https"),
        tls,
        received: monoio::time::Instant::now(),
    }
}

fn tls(identity: Option<ClientIdentity>, sni: Option<&str>) -> Rc<TlsInfo> {
    Rc::new(TlsInfo {
        sni: sni.map(str::to_string),
        alpn: None,
        version: None,
        cipher_suite: None,
        kx_group: None,
        resumed: false,
        handshake_duration: Duration::ZERO,
        client_chain: Vec::new(),
        client_verify: if identity.is_some() {
            ClientVerify::Success
        } else {
            ClientVerify::None
        },
        client_identity: identity,
        ktls: false,
    })
}

/// A client certificate whose subject needs quoting and escaping everywhere.
fn identity() -> ClientIdentity {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "Clients CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "Example, Inc.");
    p.distinguished_name
        .push(DnType::CommonName, "partner \"a\"");
    p.subject_alt_names = vec![
        SanType::URI(
            "spiffe://example.org/ns/orders/sa/api"
                .try_into()
                .expect("uri"),
        ),
        SanType::DnsName("api.partner.example".try_into().expect("dns")),
        SanType::DnsName("alt.partner.example".try_into().expect("dns")),
    ];
    p.serial_number = Some(rcgen::SerialNumber::from(vec![0x0a, 0xbc]));
    let cert = p.signed_by(&key, &issuer).expect("sign");
    ClientIdentity::parse(cert.der()).expect("parses")
}

fn fields(req: &Request) -> Vec<(String, String)> {
    req.headers
        .iter()
        .map(|h| {
            (
                String::from_utf8(h.name.to_vec()).expect("name"),
                String::from_utf8(h.value.to_vec()).expect("value"),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn enabled() -> IdentityHeaders {
    IdentityHeaders {
        enabled: true,
        ..IdentityHeaders::DEFAULT
    }
}

const KEPT: [(&str, &str); 3] = [
    ("Accept", "*/*"),
    ("X-SSL-Client", "not the prefix: kept"),
    ("User-Agent", "t"),
];

#[test]
fn claims_are_removed_on_a_plain_listener_and_nothing_is_added() {
    let mut req = request(None, spoofed());
    apply(&mut req, &enabled());
    assert_eq!(fields(&req), pairs(&KEPT));
}

#[test]
fn claims_are_removed_when_the_fields_are_off() {
    let mut req = request(Some(tls(Some(identity()), None)), spoofed());
    apply(&mut req, &IdentityHeaders::DEFAULT);
    assert_eq!(fields(&req), pairs(&KEPT));
}

#[test]
fn no_certificate_is_verify_none_and_nothing_else() {
    let mut req = request(Some(tls(None, None)), spoofed());
    apply(&mut req, &enabled());
    let mut want = pairs(&KEPT);
    want.push(("X-SSL-Client-Verify".into(), "NONE".into()));
    assert_eq!(fields(&req), want);
}

#[test]
fn a_verified_certificate_is_told_byte_for_byte() {
    let id = identity();
    let fp = String::from_utf8(id.fingerprint.to_vec()).expect("hex");
    let pem = String::from_utf8(id.escaped_pem.to_vec()).expect("pem");
    let mut req = request(Some(tls(Some(id), None)), spoofed());
    apply(&mut req, &enabled());
    let mut want = pairs(&KEPT);
    want.extend(pairs(&[
        ("X-SSL-Client-Verify", "SUCCESS"),
        ("X-SSL-Client-DN", r#"CN=partner \"a\",O=Example\, Inc."#),
        ("X-SSL-Client-I-DN", "CN=Clients CA"),
        ("X-SSL-Client-Serial", "0ABC"),
        ("X-SSL-Client-Fingerprint", &fp),
        ("X-SSL-Client-Cert", &pem),
        (
            "X-SSL-Client-SAN-URI",
            "spiffe://example.org/ns/orders/sa/api",
        ),
        (
            "X-SSL-Client-SAN-DNS",
            "api.partner.example,alt.partner.example",
        ),
    ]));
    assert_eq!(fields(&req), want);
}

#[test]
fn names_are_configurable_and_each_can_be_off() {
    let mut s = enabled();
    s.dn = Some(Bytes::from_static(b"X-Client-Subject"));
    s.cert = None;
    s.issuer_dn = None;
    s.serial = None;
    s.fingerprint = None;
    s.san_dns = None;
    s.san_email = Some(Bytes::from_static(b"X-SSL-Client-SAN-Email"));
    s.finish();
    let mut headers = spoofed();
    headers.push(h("x-client-subject", "CN=admin"));
    let mut req = request(Some(tls(Some(identity()), None)), headers);
    apply(&mut req, &s);
    let mut want = pairs(&KEPT);
    want.extend(pairs(&[
        ("X-SSL-Client-Verify", "SUCCESS"),
        ("X-Client-Subject", r#"CN=partner \"a\",O=Example\, Inc."#),
        (
            "X-SSL-Client-SAN-URI",
            "spiffe://example.org/ns/orders/sa/api",
        ),
        // No e-mail SAN: an empty list is no field.
    ]));
    assert_eq!(fields(&req), want);
}

/// The XFCC the upstream receives for each Envoy mode, with and without mTLS.
#[test]
fn xfcc_follows_envoys_modes() {
    let id = identity();
    let fp = String::from_utf8(id.fingerprint.to_vec()).expect("hex");
    let ours = format!(
        r#"Hash={fp};Subject="CN=partner \\"a\\",O=Example\, Inc.";URI=spiffe://example.org/ns/orders/sa/api;DNS=api.partner.example;DNS=alt.partner.example"#
    );
    let client = "Hash=00;Subject=\"CN=admin\",Hash=11".to_string();
    use ForwardClientCert::*;
    let cases: [(ForwardClientCert, bool, Option<String>); 10] = [
        (Sanitize, true, None),
        (Sanitize, false, None),
        (ForwardOnly, true, Some(client.clone())),
        (ForwardOnly, false, None),
        (AppendForward, true, Some(format!("{client},{ours}"))),
        (AppendForward, false, None),
        (SanitizeSet, true, Some(ours.clone())),
        (SanitizeSet, false, None),
        (AlwaysForwardOnly, true, Some(client.clone())),
        (AlwaysForwardOnly, false, Some(client.clone())),
    ];
    for (mode, mtls, want) in cases {
        let s = IdentityHeaders {
            forward_client_cert: mode,
            ..IdentityHeaders::DEFAULT
        };
        let info = tls(mtls.then(|| id.clone()), None);
        let mut req = request(Some(info), spoofed());
        apply(&mut req, &s);
        let got: Vec<String> = fields(&req)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-client-cert"))
            .map(|(_, v)| v)
            .collect();
        // Forwarded unchanged means as the client sent it: two fields, in order.
        let got = (!got.is_empty()).then(|| got.join(","));
        assert_eq!(got, want, "{mode:?}, mTLS {mtls}");
        assert!(
            fields(&req)
                .iter()
                .all(|(n, _)| !n.to_ascii_lowercase().starts_with("x-ssl-client-")),
            "{mode:?}: no X-SSL-Client-* field when they are off"
        );
    }
}

#[test]
fn xfcc_by_is_the_served_certificates_uri_and_details_are_chosen() {
    let id = identity();
    let fp = String::from_utf8(id.fingerprint.to_vec()).expect("hex");
    let pem = String::from_utf8(id.escaped_pem.to_vec()).expect("pem");
    let mut s = IdentityHeaders {
        forward_client_cert: ForwardClientCert::SanitizeSet,
        xfcc_details: XfccDetails {
            cert: true,
            subject: false,
            uri: true,
            dns: false,
        },
        ..IdentityHeaders::DEFAULT
    };
    s.by = vec![
        (
            "api.test".into(),
            Bytes::from_static(b"By=spiffe://example.org/edge;"),
        ),
        (
            "*.wild.test".into(),
            Bytes::from_static(b"By=spiffe://example.org/wild;By=\"urn:a;b\";"),
        ),
    ];
    s.by_default = Bytes::new();
    for (sni, by) in [
        (Some("api.test"), "By=spiffe://example.org/edge;"),
        (
            Some("x.wild.test"),
            "By=spiffe://example.org/wild;By=\"urn:a;b\";",
        ),
        (Some("other.test"), ""),
        (None, ""),
    ] {
        let mut req = request(Some(tls(Some(id.clone()), sni)), vec![]);
        apply(&mut req, &s);
        let want =
            format!("{by}Hash={fp};Cert=\"{pem}\";URI=spiffe://example.org/ns/orders/sa/api");
        assert_eq!(
            fields(&req),
            vec![("X-Forwarded-Client-Cert".to_string(), want)],
            "{sni:?}"
        );
    }
}

#[test]
fn xfcc_values_are_quoted_as_envoy_documents() {
    let mut s = String::new();
    push_xfcc_value(&mut s, "plain", false);
    s.push('|');
    push_xfcc_value(&mut s, "a;b", false);
    s.push('|');
    push_xfcc_value(&mut s, "a=b,c", false);
    s.push('|');
    push_xfcc_value(&mut s, r#"CN=x \"y\",O=a\, b"#, true);
    s.push('|');
    push_xfcc_value(&mut s, "", true);
    assert_eq!(s, r#"plain|"a;b"|"a=b,c"|"CN=x \\"y\\",O=a\, b"|"""#);
}

#[test]
fn a_uri_san_missing_is_an_empty_uri_key_like_envoy() {
    let mut out = BytesMut::new();
    let mut id = identity();
    id.san_uri = Bytes::new();
    id.san_dns = Bytes::new();
    let d = XfccDetails {
        cert: false,
        subject: false,
        uri: true,
        dns: true,
    };
    xfcc_element(&mut out, &id, &Bytes::new(), d);
    let fp = String::from_utf8(id.fingerprint.to_vec()).expect("hex");
    assert_eq!(&out[..], format!("Hash={fp};URI=").as_bytes());
}

#[test]
fn a_request_without_claims_keeps_its_fields_untouched() {
    let headers = vec![h("Accept", "*/*"), h("X-Other", "1")];
    let before = headers.as_ptr();
    let mut req = request(None, headers);
    apply(&mut req, &IdentityHeaders::DEFAULT);
    assert_eq!(req.headers.as_ptr(), before);
    assert_eq!(req.headers.len(), 2);
}

#[test]
fn a_failed_verification_is_told_with_its_reason_and_no_identity() {
    let mut info = (*tls(Some(identity()), None)).clone();
    info.client_verify = ClientVerify::Failed("certificate expired");
    let mut req = request(Some(Rc::new(info)), spoofed());
    let s = IdentityHeaders {
        forward_client_cert: ForwardClientCert::SanitizeSet,
        ..enabled()
    };
    apply(&mut req, &s);
    let mut want = pairs(&KEPT);
    want.push((
        "X-SSL-Client-Verify".into(),
        "FAILED:certificate expired".into(),
    ));
    assert_eq!(fields(&req), want);
}

/// `Connection: X-SSL-Client-Verify` would make the proxy's own field hop-by-hop (dropped
/// on the way upstream): identity names are taken out of Connection, the rest kept.
#[test]
fn connection_cannot_make_the_identity_fields_hop_by_hop() {
    let headers = vec![
        h(
            "Connection",
            "keep-alive, X-SSL-Client-Verify,x-forwarded-client-cert , X-Other",
        ),
        h("connection", "x-ssl-client-dn"),
        h("Accept", "*/*"),
    ];
    let mut req = request(Some(tls(None, None)), headers);
    apply(&mut req, &enabled());
    assert_eq!(
        fields(&req),
        pairs(&[
            ("Connection", "keep-alive, X-Other"),
            ("Accept", "*/*"),
            ("X-SSL-Client-Verify", "NONE"),
        ])
    );
}
