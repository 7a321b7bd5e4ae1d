//! ⑥ The client-identity request step: what the connection's verified client certificate
//! says ([`crate::transport::tls::ClientIdentity`], parsed once at the handshake) becomes
//! request fields for the upstream — nginx's `X-SSL-Client-*` fields and, optionally,
//! Envoy's `X-Forwarded-Client-Cert` (XFCC).
//!
//! One function ([`apply`]) of the request's [`TlsInfo`] and the listener's
//! [`IdentityHeaders`], editing the protocol-neutral header list before the exchange
//! routes and writes the upstream head; the policy phases will run it as their first
//! phase. It first removes every field a client could use to claim an identity — any
//! `X-SSL-Client-*`, every configured name, and `X-Forwarded-Client-Cert` unless the
//! mode forwards it — on every listener, TLS or plain, client auth or not: one pass
//! over the fields with a cheap prefix check, nothing allocated when nothing matches.
//! Only then are the proxy's own fields added. Values are `Bytes` made once per
//! connection, so adding them is a reference count each; only XFCC's value is built per
//! request. No I/O, no status: nothing here refuses a request (`[route.client_cert]`
//! does, with 403).

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{Header, Request};
use crate::transport::tls::{ClientIdentity, ClientVerify, TlsInfo};

/// What `X-SSL-Client-*` fields are named; a client's field with this prefix never
/// reaches an upstream.
const PREFIX: &[u8] = b"x-ssl-client-";
const XFCC: &[u8] = b"x-forwarded-client-cert";

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
            for uri in crate::transport::tls::uri_sans(der) {
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
    fn by_for(&self, sni: Option<&str>) -> &Bytes {
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

fn has_prefix(name: &[u8]) -> bool {
    name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

/// Removes every identity claim the client sent, then adds the connection's identity
/// as `settings` says. `tls` is `None` on a plain listener (claims removed, nothing
/// added).
pub fn apply(req: &mut Request, settings: &IdentityHeaders) {
    // Borrowed apart: the TLS facts are read while the fields are edited.
    let Request { headers, tls, .. } = req;
    let tls = tls.as_deref();
    let identity = tls.and_then(verified);
    let mode = settings.forward_client_cert;
    let keep_xfcc = match mode {
        ForwardClientCert::AlwaysForwardOnly => true,
        ForwardClientCert::ForwardOnly => identity.is_some(),
        _ => false,
    };
    let set_xfcc = identity.is_some()
        && matches!(
            mode,
            ForwardClientCert::AppendForward | ForwardClientCert::SanitizeSet
        );
    let mut xfcc = BytesMut::new();
    let append = set_xfcc && mode == ForwardClientCert::AppendForward;
    strip(headers, settings, keep_xfcc, append.then_some(&mut xfcc));
    let Some(tls) = tls else { return };
    if settings.enabled {
        add(headers, tls, identity, settings);
    }
    if let Some(id) = identity.filter(|_| set_xfcc) {
        if !xfcc.is_empty() {
            xfcc.put_u8(b',');
        }
        xfcc_element(
            &mut xfcc,
            id,
            settings.by_for(tls.sni.as_deref()),
            settings.xfcc_details,
        );
        headers.push(Header {
            name: Bytes::from_static(b"X-Forwarded-Client-Cert"),
            value: xfcc.freeze(),
        });
    }
}

/// The identity of a connection whose client certificate verified.
fn verified(tls: &TlsInfo) -> Option<&ClientIdentity> {
    match tls.client_verify {
        ClientVerify::Success => tls.client_identity.as_ref(),
        _ => None,
    }
}

/// One pass over the fields: drops identity claims, and takes identity names out of
/// `Connection` (a client listing `X-SSL-Client-Verify` there would otherwise have the
/// proxy's own field dropped as hop-by-hop). With `xfcc_out`, the client's XFCC values
/// are joined into it (for `append_forward`) as they are removed.
fn strip(
    headers: &mut Vec<Header>,
    settings: &IdentityHeaders,
    keep_xfcc: bool,
    mut xfcc_out: Option<&mut BytesMut>,
) {
    let identity_name =
        |n: &[u8]| has_prefix(n) || n.eq_ignore_ascii_case(XFCC) || is_extra(settings, n);
    let claim = |h: &Header| {
        let n = h.name.as_ref();
        has_prefix(n) || (!keep_xfcc && n.eq_ignore_ascii_case(XFCC)) || is_extra(settings, n)
    };
    let connection_names_identity = |h: &Header| {
        h.name.eq_ignore_ascii_case(b"connection") && tokens(&h.value).any(identity_name)
    };
    // Most requests carry no claim: look before touching the vector.
    if !headers
        .iter()
        .any(|h| claim(h) || connection_names_identity(h))
    {
        return;
    }
    headers.retain_mut(|h| {
        if connection_names_identity(h) {
            let kept: Vec<&[u8]> = tokens(&h.value).filter(|t| !identity_name(t)).collect();
            h.value = Bytes::from(kept.join(&b", "[..]));
            return !h.value.is_empty();
        }
        if !claim(h) {
            return true;
        }
        if let Some(out) = xfcc_out.as_deref_mut()
            && h.name.eq_ignore_ascii_case(XFCC)
            && !h.value.is_empty()
        {
            if !out.is_empty() {
                out.put_u8(b',');
            }
            out.extend_from_slice(&h.value);
        }
        false
    });
}

fn is_extra(settings: &IdentityHeaders, name: &[u8]) -> bool {
    settings
        .extra_strip
        .iter()
        .any(|x| x.eq_ignore_ascii_case(name))
}

/// The comma-separated tokens of a field value, optional whitespace trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn add(
    headers: &mut Vec<Header>,
    tls: &TlsInfo,
    identity: Option<&ClientIdentity>,
    s: &IdentityHeaders,
) {
    let mut push = |name: &Option<Bytes>, value: &Bytes| {
        if let Some(name) = name
            && !value.is_empty()
        {
            headers.push(Header {
                name: name.clone(),
                value: value.clone(),
            });
        }
    };
    push(&s.verify, &verify_value(tls, identity));
    let Some(id) = identity else { return };
    push(&s.dn, &id.subject);
    push(&s.issuer_dn, &id.issuer);
    push(&s.serial, &id.serial);
    push(&s.fingerprint, &id.fingerprint);
    push(&s.cert, &id.escaped_pem);
    push(&s.san_uri, &id.san_uri);
    push(&s.san_dns, &id.san_dns);
    push(&s.san_email, &id.san_email);
}

/// nginx's `$ssl_client_verify`: `SUCCESS` only with an identity to send (a verified
/// certificate x509-parser could not read counts as `FAILED:unreadable certificate`).
fn verify_value(tls: &TlsInfo, identity: Option<&ClientIdentity>) -> Bytes {
    match (tls.client_verify, identity) {
        (ClientVerify::Success, Some(_)) => Bytes::from_static(b"SUCCESS"),
        (ClientVerify::Success, None) => Bytes::from_static(b"FAILED:unreadable certificate"),
        (ClientVerify::Failed(reason), _) => Bytes::from(format!("FAILED:{reason}")),
        _ => Bytes::from_static(b"NONE"),
    }
}

/// One XFCC element: `By` (already rendered), `Hash`, then the chosen details in
/// Envoy's order, `;`-separated.
fn xfcc_element(out: &mut BytesMut, id: &ClientIdentity, by: &Bytes, d: XfccDetails) {
    let mut s = String::with_capacity(160);
    // `by` ends with ';' when present.
    s.push_str(std::str::from_utf8(by).unwrap_or(""));
    s.push_str("Hash=");
    s.push_str(ascii(&id.fingerprint));
    if d.cert {
        s.push_str(";Cert=");
        push_xfcc_value(&mut s, ascii(&id.escaped_pem), true);
    }
    if d.subject {
        // Like Envoy: the key is there even for an empty subject.
        s.push_str(";Subject=");
        push_xfcc_value(&mut s, id.subject_str(), true);
    }
    if d.uri {
        let mut any = false;
        for uri in id.san_uris() {
            s.push_str(";URI=");
            push_xfcc_value(&mut s, uri, false);
            any = true;
        }
        if !any {
            // Like Envoy: `URI=` even without a URI SAN.
            s.push_str(";URI=");
        }
    }
    if d.dns {
        for dns in id.san_dns_names() {
            s.push_str(";DNS=");
            push_xfcc_value(&mut s, dns, false);
        }
    }
    out.extend_from_slice(s.as_bytes());
}

fn ascii(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// An XFCC value as Envoy's documentation defines it: double-quoted when `always_quote`
/// or when it holds `,` `;` `=` `"` (or a space), a `"` inside written `\"`. Nothing else
/// is escaped (Envoy writes a Subject's RFC 2253 backslashes as they are).
fn push_xfcc_value(out: &mut String, value: &str, always_quote: bool) {
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

#[cfg(test)]
#[path = "identity_headers_tests.rs"]
mod tests;
