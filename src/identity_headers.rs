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

use crate::config::identity_headers::{has_prefix, push_xfcc_value};
pub use crate::config::{ForwardClientCert, IdentityHeaders, XfccDetails};
use crate::message::{Header, Request};
use crate::transport::tls::{ClientIdentity, ClientVerify, TlsInfo};

const XFCC: &[u8] = b"x-forwarded-client-cert";

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

#[cfg(test)]
#[path = "identity_headers_tests.rs"]
mod tests;
