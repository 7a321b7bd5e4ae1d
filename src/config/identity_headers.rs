//! `[listener.tls.client_identity_headers]` once checked: which `X-SSL-Client-*` fields
//! and which XFCC mode a listener uses. Plain settings, no behaviour: what they do to a
//! request is [`crate::identity_headers`], which sits above `config` and reads them.

use std::fmt::Write as _;

use bytes::Bytes;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What `X-SSL-Client-*` fields are named; a client's field with this prefix never
/// reaches an upstream.
const PREFIX: &[u8] = b"x-ssl-client-";

/// Envoy's `forward_client_cert_details`: what happens to a client's
/// `X-Forwarded-Client-Cert` and whether the proxy adds its own element. "mTLS" below
/// means the connection presented a client certificate that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardClientCert {
    /// The client's XFCC is removed; none is sent (Envoy's default).
    Sanitize,
    /// With mTLS, the client's XFCC is forwarded unchanged; without, removed.
    ForwardOnly,
    /// With mTLS, this connection's element is appended to the client's XFCC; without,
    /// it is removed.
    AppendForward,
    /// With mTLS, the client's XFCC is replaced by this connection's element; without,
    /// removed.
    SanitizeSet,
    /// The client's XFCC is forwarded unchanged, mTLS or not (trust the peer fully).
    AlwaysForwardOnly,
}

impl ForwardClientCert {
    /// The config names (Envoy's enum names in lower case).
    pub const NAMES: [&'static str; 5] = [
        "sanitize",
        "forward_only",
        "append_forward",
        "sanitize_set",
        "always_forward_only",
    ];

    pub fn from_name(name: &str) -> Option<ForwardClientCert> {
        Some(match name {
            "sanitize" => ForwardClientCert::Sanitize,
            "forward_only" => ForwardClientCert::ForwardOnly,
            "append_forward" => ForwardClientCert::AppendForward,
            "sanitize_set" => ForwardClientCert::SanitizeSet,
            "always_forward_only" => ForwardClientCert::AlwaysForwardOnly,
            _ => return None,
        })
    }
}

/// Envoy's `set_current_client_cert_details`: the optional keys of the proxy's XFCC
/// element (`By` and `Hash` are always there). Written in Envoy's order: Cert, Subject,
/// URI, DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XfccDetails {
    pub cert: bool,
    pub subject: bool,
    pub uri: bool,
    pub dns: bool,
}

impl XfccDetails {
    pub const NAMES: [&'static str; 4] = ["cert", "subject", "uri", "dns"];
}

/// `[listener.tls.client_identity_headers]`, checked: the field name of each fact
/// (`None`: not sent) and the XFCC mode.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The `X-SSL-Client-*` fields are added (client auth is on, or the table was
    /// written). Stripping happens either way.
    pub enabled: bool,
    /// `SUCCESS`, `NONE`, `FAILED:reason`. nginx: `$ssl_client_verify`.
    pub verify: Option<Bytes>,
    /// nginx: `$ssl_client_s_dn`.
    pub dn: Option<Bytes>,
    /// nginx: `$ssl_client_i_dn`.
    pub issuer_dn: Option<Bytes>,
    /// nginx: `$ssl_client_serial`.
    pub serial: Option<Bytes>,
    /// SHA-256, lower-case hex (nginx's `$ssl_client_fingerprint` is SHA-1).
    pub fingerprint: Option<Bytes>,
    /// nginx: `$ssl_client_escaped_cert`.
    pub cert: Option<Bytes>,
    pub san_uri: Option<Bytes>,
    pub san_dns: Option<Bytes>,
    /// Off by default (not among nginx's usual fields).
    pub san_email: Option<Bytes>,
    pub forward_client_cert: ForwardClientCert,
    pub xfcc_details: XfccDetails,
    /// XFCC `By` elements (`By=uri;…;`) of each of the listener's certificates: the SNI
    /// names each serves (exact or `*.suffix`), and the default certificate's.
    pub by: Vec<(String, Bytes)>,
    pub by_default: Bytes,
    /// Configured names outside the `X-SSL-Client-` prefix (lower case): stripped too.
    pub extra_strip: Vec<Bytes>,
}

impl IdentityHeaders {
    /// nginx's customary names, nothing added (`enabled` false), XFCC sanitized.
    pub const DEFAULT: IdentityHeaders = IdentityHeaders {
        enabled: false,
        verify: Some(Bytes::from_static(b"X-SSL-Client-Verify")),
        dn: Some(Bytes::from_static(b"X-SSL-Client-DN")),
        issuer_dn: Some(Bytes::from_static(b"X-SSL-Client-I-DN")),
        serial: Some(Bytes::from_static(b"X-SSL-Client-Serial")),
        fingerprint: Some(Bytes::from_static(b"X-SSL-Client-Fingerprint")),
        cert: Some(Bytes::from_static(b"X-SSL-Client-Cert")),
        san_uri: Some(Bytes::from_static(b"X-SSL-Client-SAN-URI")),
        san_dns: Some(Bytes::from_static(b"X-SSL-Client-SAN-DNS")),
        san_email: None,
        forward_client_cert: ForwardClientCert::Sanitize,
        xfcc_details: XfccDetails {
            cert: false,
            subject: true,
            uri: true,
            dns: true,
        },
        by: Vec::new(),
        by_default: Bytes::new(),
        extra_strip: Vec::new(),
    };

    /// The configurable fields, by config key, in the order they are written upstream.
    pub fn fields_mut(&mut self) -> [(&'static str, &mut Option<Bytes>); 9] {
        [
            ("verify", &mut self.verify),
            ("dn", &mut self.dn),
            ("issuer_dn", &mut self.issuer_dn),
            ("serial", &mut self.serial),
            ("fingerprint", &mut self.fingerprint),
            ("cert", &mut self.cert),
            ("san_uri", &mut self.san_uri),
            ("san_dns", &mut self.san_dns),
            ("san_email", &mut self.san_email),
        ]
    }

    /// Recomputes `extra_strip` from the configured names.
    pub fn finish(&mut self) {
        let mut extra = Vec::new();
        for (_, name) in self.fields_mut() {
            if let Some(n) = name
                && !has_prefix(n)
            {
                extra.push(Bytes::from(n.to_ascii_lowercase()));
            }
        }
        self.extra_strip = extra;
    }

    /// Sets the XFCC `By` elements from each certificate's URI SANs: `certs` gives each
    /// certificate's SNI names and leaf DER; `default` is the index of the default one.
    pub fn set_by<'a>(
        &mut self,
        certs: impl Iterator<Item = (&'a [String], &'a [u8])>,
        default: usize,
    ) {
        self.by.clear();
        self.by_default = Bytes::new();
        for (i, (names, der)) in certs.enumerate() {
            let mut elements = String::new();
            for uri in uri_sans(der) {
                elements.push_str("By=");
                push_xfcc_value(&mut elements, &uri, false);
                elements.push(';');
            }
            let elements = Bytes::from(elements);
            for n in names {
                self.by.push((n.clone(), elements.clone()));
            }
            if i == default {
                self.by_default = elements;
            }
        }
    }

    /// The `By=…;` elements of the certificate that served `sni` (exact name, then a
    /// one-label wildcard, then the default, like [`crate::transport::tls::SniResolver`]).
    pub fn by_for(&self, sni: Option<&str>) -> &Bytes {
        let Some(sni) = sni.map(|s| s.trim_end_matches('.')) else {
            return &self.by_default;
        };
        if let Some((_, b)) = self.by.iter().find(|(n, _)| n == sni) {
            return b;
        }
        if let Some(dot) = sni.find('.')
            && let Some((_, b)) = self
                .by
                .iter()
                .find(|(n, _)| n.strip_prefix('*') == Some(&sni[dot..]))
        {
            return b;
        }
        &self.by_default
    }
}

pub fn has_prefix(name: &[u8]) -> bool {
    name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

/// An XFCC value as Envoy's documentation defines it: double-quoted when `always_quote`
/// or when it holds `,` `;` `=` `"` (or a space), a `"` inside written `\"`. Nothing else
/// is escaped (Envoy writes a Subject's RFC 2253 backslashes as they are).
pub fn push_xfcc_value(out: &mut String, value: &str, always_quote: bool) {
    let quote = always_quote || value.bytes().any(|b| b",;=\" ".contains(&b));
    if !quote {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The URI SANs of a certificate (a server's own, for XFCC `By`), as header-safe as
/// [`crate::transport::tls::ClientIdentity::san_uri`]; none when it does not parse.
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(v) => {
                let mut s = String::new();
                push_san(&mut s, v);
                Some(s)
            }
            _ => None,
        })
        .collect()
}

/// A SAN value, header-safe: control bytes, space, DEL, non-ASCII, `,` and `%` itself
/// percent-encoded (so the list splits on `,` exactly and decodes back).
pub fn push_san(out: &mut String, value: &str) {
    for &b in value.as_bytes() {
        if b <= b' ' || b >= 0x7f || b == b',' || b == b'%' {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}
