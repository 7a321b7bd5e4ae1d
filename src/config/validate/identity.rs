//! `[listener.tls.client_identity_headers]` → [`IdentityHeaders`]: field names checked
//! as HTTP tokens, unique, and none the proxy writes itself (framing, hop-by-hop, Host,
//! XFCC); the XFCC mode and details by Envoy's names.

use toml::Spanned;

use super::super::raw::RawIdentityHeaders;
use super::Validator;
use crate::identity_headers::{ForwardClientCert, IdentityHeaders, XfccDetails};

/// Names a configured identity field may not take: the proxy writes or drops these.
const RESERVED: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-client-cert",
    "forwarded",
];

impl Validator<'_> {
    pub(super) fn identity_headers(
        &mut self,
        field: &str,
        raw: &Option<Spanned<RawIdentityHeaders>>,
    ) -> IdentityHeaders {
        let mut out = IdentityHeaders::DEFAULT;
        let Some(raw) = raw else {
            return out;
        };
        let field = format!("{field}.client_identity_headers");
        let r = raw.get_ref();
        out.enabled = r.enabled.unwrap_or(true);
        let given = [
            &r.verify,
            &r.dn,
            &r.issuer_dn,
            &r.serial,
            &r.fingerprint,
            &r.cert,
            &r.san_uri,
            &r.san_dns,
            &r.san_email,
        ];
        let mut seen: Vec<(String, &'static str)> = Vec::new();
        for ((key, slot), value) in out.fields_mut().into_iter().zip(given) {
            if let Some(v) = value {
                let f = format!("{field}.{key}");
                match v.get_ref() {
                    toml::Value::Boolean(false) => *slot = None,
                    toml::Value::Boolean(true) => {
                        if slot.is_none() {
                            // Only san_email is off by default.
                            *slot = Some(bytes::Bytes::from_static(b"X-SSL-Client-SAN-Email"));
                        }
                    }
                    toml::Value::String(name) => match name_problem(name) {
                        None => *slot = Some(bytes::Bytes::from(name.clone())),
                        Some(why) => {
                            let msg = format!("{name:?} {why}");
                            self.errors_at(v.span(), &f, msg);
                        }
                    },
                    other => {
                        let msg = format!(
                            "expected a field name, true or false, got {}",
                            other.type_str()
                        );
                        self.errors_at(v.span(), &f, msg);
                    }
                }
            }
            if let Some(name) = slot {
                let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
                if let Some((_, other)) = seen.iter().find(|(n, _)| *n == lower) {
                    let msg = format!("{lower:?} is already the name of {other}");
                    let span = value.as_ref().map(|v| v.span()).unwrap_or(raw.span());
                    self.errors_at(span, &format!("{field}.{key}"), msg);
                } else {
                    seen.push((lower, key));
                }
            }
        }
        if let Some(mode) = &r.forward_client_cert {
            match ForwardClientCert::from_name(mode.get_ref()) {
                Some(m) => out.forward_client_cert = m,
                None => {
                    let msg = format!(
                        "unknown mode {:?}: one of {}",
                        mode.get_ref(),
                        quoted(&ForwardClientCert::NAMES)
                    );
                    self.errors_at(mode.span(), &format!("{field}.forward_client_cert"), msg);
                }
            }
        }
        if let Some(list) = &r.set_current_client_cert_details {
            let mut d = XfccDetails {
                cert: false,
                subject: false,
                uri: false,
                dns: false,
            };
            for (i, item) in list.get_ref().iter().enumerate() {
                let flag = match item.get_ref().as_str() {
                    "cert" => &mut d.cert,
                    "subject" => &mut d.subject,
                    "uri" => &mut d.uri,
                    "dns" => &mut d.dns,
                    other => {
                        let msg = format!(
                            "unknown detail {other:?}: any of {}",
                            quoted(&XfccDetails::NAMES)
                        );
                        let f = format!("{field}.set_current_client_cert_details[{i}]");
                        self.errors_at(item.span(), &f, msg);
                        continue;
                    }
                };
                *flag = true;
            }
            out.xfcc_details = d;
        }
        out.finish();
        out
    }

    fn errors_at(&mut self, span: std::ops::Range<usize>, field: &str, msg: String) {
        self.error(Some(span), field, msg);
    }
}

/// Why `name` cannot be an identity field's name, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty: write false to leave the field out");
    }
    // RFC 9110 §5.6.2 tchar.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(tchar) {
        return Some("is not a valid HTTP field name");
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Some("is a field the proxy writes or drops itself");
    }
    None
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
