//! `[listener.tls.client_identity_headers]` → [`IdentityHeaders`]: field names checked
//! as HTTP tokens, unique, and none the proxy writes itself (framing, hop-by-hop, Host,
//! XFCC); the XFCC mode and details by Envoy's names.

use toml::Spanned;

use super::super::raw::RawIdentityHeaders;
use super::Validator;
use crate::config::{ForwardClientCert, IdentityHeaders, XfccDetails};
use crate::field::{FRAMING_FIELDS, is_tchar};

/// Names a configured identity field may not take besides the framing fields
/// ([`FRAMING_FIELDS`]): the proxy writes or drops these.
const RESERVED: [&str; 3] = ["host", "x-forwarded-client-cert", "forwarded"];

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
    if !name.bytes().all(is_tchar) {
        return Some("is not a valid HTTP field name");
    }
    if FRAMING_FIELDS
        .iter()
        .chain(&RESERVED)
        .any(|r| r.eq_ignore_ascii_case(name))
    {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ForwardClientCert, from_toml_str};

    /// A TLS listener with `table` as its `client_identity_headers` (absent when empty);
    /// the config's errors as `ringgate check` prints them (file:line:col: field: why).
    fn load(table: &str) -> Result<Config, Vec<String>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_pair(dir.path());
        let mut text = String::from(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[listener.tls]\n\
             [[listener.tls.certificates]]\ncert = \"c.pem\"\nkey = \"c.key\"\n",
        );
        if !table.is_empty() {
            text += "[listener.tls.client_identity_headers]\n";
            text += table;
        }
        text += "\n[[route]]\nupstream = \"u\"\n[upstream.u]\nservers = [\"127.0.0.1:9000\"]\n";
        from_toml_str(&text, "t.toml", dir.path())
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn write_pair(dir: &Path) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["app.test".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        std::fs::write(dir.join("c.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("c.key"), key.serialize_pem()).expect("write key");
    }

    fn settings(c: &Config) -> &crate::config::IdentityHeaders {
        &c.listeners[0]
            .tls
            .as_ref()
            .expect("a TLS listener")
            .identity_headers
    }

    #[test]
    fn without_the_table_or_client_auth_nothing_is_added() {
        let c = load("").expect("valid");
        let s = settings(&c);
        assert!(!s.enabled);
        assert_eq!(s.forward_client_cert, ForwardClientCert::Sanitize);
        assert!(s.extra_strip.is_empty());
    }

    #[test]
    fn names_modes_and_details_are_read() {
        let c = load(
            "dn = \"X-Client-Subject\"\ncert = false\nsan_email = true\n\
             forward_client_cert = \"append_forward\"\n\
             set_current_client_cert_details = [\"cert\", \"dns\"]\n",
        )
        .expect("valid");
        let s = settings(&c);
        assert!(s.enabled);
        assert_eq!(s.dn.as_deref(), Some(&b"X-Client-Subject"[..]));
        assert_eq!(s.cert, None);
        assert_eq!(s.san_email.as_deref(), Some(&b"X-SSL-Client-SAN-Email"[..]));
        assert_eq!(
            s.extra_strip,
            vec![bytes::Bytes::from_static(b"x-client-subject")]
        );
        assert_eq!(s.forward_client_cert, ForwardClientCert::AppendForward);
        let d = s.xfcc_details;
        assert!(d.cert && d.dns && !d.subject && !d.uri);
    }

    #[test]
    fn every_mistake_names_its_line_and_field() {
        let errors = load(
            "dn = \"Bad Name\"\ncert = \"Host\"\nserial = \"x-ssl-client-verify\"\n\
             fingerprint = 5\nforward_client_cert = \"sometimes\"\n\
             set_current_client_cert_details = [\"chain\"]\nsan_uri = \"\"\n",
        )
        .expect_err("invalid");
        let f = "listener[0].tls.client_identity_headers";
        assert_eq!(
            errors,
            vec![
                format!("t.toml:8:6: {f}.dn: \"Bad Name\" is not a valid HTTP field name"),
                format!(
                    "t.toml:9:8: {f}.cert: \"Host\" is a field the proxy writes or drops itself"
                ),
                format!(
                    "t.toml:10:10: {f}.serial: \"x-ssl-client-verify\" is already the name of verify"
                ),
                format!(
                    "t.toml:11:15: {f}.fingerprint: expected a field name, true or false, got integer"
                ),
                format!(
                    "t.toml:12:23: {f}.forward_client_cert: unknown mode \"sometimes\": one of \"sanitize\", \"forward_only\", \"append_forward\", \"sanitize_set\", \"always_forward_only\""
                ),
                format!(
                    "t.toml:13:36: {f}.set_current_client_cert_details[0]: unknown detail \"chain\": any of \"cert\", \"subject\", \"uri\", \"dns\""
                ),
                format!(
                    "t.toml:14:11: {f}.san_uri: \"\" is empty: write false to leave the field out"
                ),
            ]
        );
    }
}
