//! A `[[listener]]` table checked: its address, limits and client-address policies,
//! its `[listener.tls]` (protocol versions, cipher suites, key exchange groups, ticket
//! keys, client authentication, identity headers) and each certificate entry — the files
//! read, the key matched to the certificate, the SNI names it serves.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::{Validator, valid_dns_name};
use crate::config::addr::ip_port;
use crate::config::raw::{RawCertificate, RawListener, RawTls};
use crate::config::{
    ClientAuth, KtlsMode, ListenerConfig, LoadedCertificate, RecordLayer, TicketKeyFile,
    TlsMinVersion, TlsSettings, VerifyClient, certs, ticket_keys,
};

impl Validator<'_> {
    pub(super) fn listener(
        &mut self,
        i: usize,
        spanned: &Spanned<RawListener>,
    ) -> Option<ListenerConfig> {
        let l = spanned.get_ref();
        let field = format!("listener[{i}]");
        let addr = match self.required(&l.addr, spanned.span(), &format!("{field}.addr")) {
            None => None,
            Some(a) => match ip_port(a.get_ref(), "\"0.0.0.0:443\" or \"[::]:443\"") {
                Ok(addr) => Some(addr),
                Err(msg) => {
                    self.error(Some(a.span()), &format!("{field}.addr"), msg);
                    None
                }
            },
        };
        // nginx's default backlog on Linux is 511.
        let backlog = self.int(&l.backlog, &format!("{field}.backlog"), 511, 1..=65_535) as i32;
        let policies = self.listener_ip(&field, l);
        let mut tls = match &l.tls {
            Some(t) => Some(self.tls(&format!("{field}.tls"), t)?),
            None => None,
        };
        let h2c = self.h2c(&field, l, tls.is_some());
        if let Some(t) = tls.as_mut() {
            t.alpn = self.alpn(&field, &l.alpn);
        } else if let Some(a) = &l.alpn {
            let msg = "alpn is for TLS listeners (a plain one speaks HTTP/2 with `h2c = true`)";
            self.error(Some(a.span()), &format!("{field}.alpn"), msg);
        }
        let max_connections_per_ip = self.max_connections_per_ip(&l.max_connections_per_ip, &field);
        let headers = self.header_policy(
            &field,
            &l.security_headers,
            &l.request_headers,
            &l.response_headers,
        );
        let redirect_https = self.redirect_https(&field, l, tls.is_some());
        Some(ListenerConfig {
            addr: addr?,
            backlog,
            tls,
            max_connections_per_ip,
            policies: policies?,
            headers,
            redirect_https,
            h2c,
        })
    }

    fn tls(&mut self, field: &str, t: &Spanned<RawTls>) -> Option<TlsSettings> {
        let raw = t.get_ref();
        let errors_before = self.errors.len();
        let no_certificates = Vec::new();
        let listed = match self.required(
            &raw.certificates,
            t.span(),
            &format!("{field}.certificates"),
        ) {
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    Some(list.span()),
                    &format!("{field}.certificates"),
                    "at least one certificate is needed",
                );
                list.get_ref()
            }
            Some(list) => list.get_ref(),
            None => &no_certificates,
        };
        let mut certificates = Vec::new();
        let mut default_certificate = None;
        for (j, c) in listed.iter().enumerate() {
            let cfield = format!("{field}.certificates[{j}]");
            if let Some(lc) = self.certificate(&cfield, c) {
                if c.get_ref().default {
                    if default_certificate.is_some() {
                        self.error(
                            Some(c.span()),
                            &format!("{cfield}.default"),
                            "only one certificate may be the default",
                        );
                    }
                    default_certificate = Some(certificates.len());
                }
                certificates.push(lc);
            }
        }
        let min_version = match &raw.min_version {
            None => TlsMinVersion::Tls12,
            Some(v) => match v.get_ref().as_str() {
                "1.2" => TlsMinVersion::Tls12,
                "1.3" => TlsMinVersion::Tls13,
                other => {
                    let msg = format!(
                        "unsupported TLS version {other:?}: \"1.2\" or \"1.3\" (older versions are never offered)"
                    );
                    self.error(Some(v.span()), &format!("{field}.min_version"), msg);
                    TlsMinVersion::Tls12
                }
            },
        };
        let ktls = match &raw.ktls {
            None => KtlsMode::Auto,
            Some(v) => match v.get_ref().as_str() {
                "auto" => KtlsMode::Auto,
                "on" => KtlsMode::On,
                "off" => KtlsMode::Off,
                other => {
                    let msg = format!("expected \"auto\", \"on\" or \"off\", got {other:?}");
                    self.error(Some(v.span()), &format!("{field}.ktls"), msg);
                    KtlsMode::Auto
                }
            },
        };
        let record_layer = match &raw.record_layer {
            None => RecordLayer::Ringgate,
            Some(v) => match v.get_ref().as_str() {
                "ringgate" => RecordLayer::Ringgate,
                "rustls" => RecordLayer::Rustls,
                other => {
                    let msg = format!("expected \"ringgate\" or \"rustls\", got {other:?}");
                    self.error(Some(v.span()), &format!("{field}.record_layer"), msg);
                    RecordLayer::Ringgate
                }
            },
        };
        let cipher_suites = self.cipher_suites(&raw.cipher_suites, field, min_version);
        let kx_groups = self.kx_groups(&raw.kx_groups, field, min_version);
        let handshake_timeout = self.millis(
            &raw.handshake_timeout_ms,
            &format!("{field}.handshake_timeout_ms"),
            Duration::from_secs(10),
        );
        let session_cache_entries = self.int(
            &raw.session_cache_entries,
            &format!("{field}.session_cache_entries"),
            20_480,
            0..=10_000_000,
        ) as usize;
        let session_tickets = raw.session_tickets.unwrap_or(true);
        let session_ticket_keys =
            self.ticket_keys(&raw.session_ticket_keys, field, session_tickets);
        let client_auth = match &raw.client_auth {
            None => Some(ClientAuth::off()),
            Some(a) => self.client_auth(&format!("{field}.client_auth"), a),
        };
        let identity_headers = self.identity_headers(field, &raw.client_identity_headers);
        if self.errors.len() > errors_before || certificates.is_empty() {
            return None;
        }
        let mut tls = TlsSettings {
            client_auth: client_auth?,
            certificates,
            default_certificate: default_certificate.unwrap_or(0),
            min_version,
            handshake_timeout,
            session_cache_entries,
            session_tickets,
            ktls,
            record_layer,
            cipher_suites,
            kx_groups,
            session_ticket_keys,
            identity_headers,
            // Set by the listener (its `alpn` key).
            alpn: Vec::new(),
        };
        if raw.client_identity_headers.is_none() {
            // Without the table, the fields are on wherever a certificate is asked for.
            let asks = |a: &ClientAuth| a.verify != VerifyClient::Off;
            tls.identity_headers.enabled = asks(&tls.client_auth)
                || tls
                    .certificates
                    .iter()
                    .any(|c| c.client_auth.as_ref().is_some_and(asks));
        }
        tls.refresh_xfcc_by();
        Some(tls)
    }

    /// `kx_groups`: see [`super::kx::check_list`].
    fn kx_groups(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        field: &str,
        min_version: TlsMinVersion,
    ) -> Vec<&'static dyn rustls::crypto::SupportedKxGroup> {
        let Some(list) = raw else {
            return Vec::new();
        };
        let (groups, errors) = super::kx::check_list(list, min_version == TlsMinVersion::Tls12);
        for e in errors {
            let at = match e.entry {
                Some(i) => format!("{field}.kx_groups[{i}]"),
                None => format!("{field}.kx_groups"),
            };
            self.error(Some(e.span), &at, e.message);
        }
        groups
    }

    /// `session_ticket_keys`: each file read and 48 or 80 bytes long; at least one.
    fn ticket_keys(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        field: &str,
        session_tickets: bool,
    ) -> Vec<TicketKeyFile> {
        let Some(list) = raw else {
            return Vec::new();
        };
        let field = format!("{field}.session_ticket_keys");
        if list.get_ref().is_empty() {
            let msg = "empty list: leave the key out for a random key per process";
            self.error(Some(list.span()), &field, msg);
        } else if !session_tickets {
            let msg = "session_tickets = false: no ticket would use these keys";
            self.error(Some(list.span()), &field, msg);
        }
        let mut out = Vec::new();
        for (k, p) in list.get_ref().iter().enumerate() {
            match ticket_keys::load(&self.path(p.get_ref())) {
                Ok(key) => out.push(key),
                Err(msg) => self.error(Some(p.span()), &format!("{field}[{k}]"), msg),
            }
        }
        out
    }

    /// `cipher_suites`: names the TLS provider knows, no repeats, and at least one suite
    /// for a protocol version the listener offers.
    fn cipher_suites(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        field: &str,
        min_version: TlsMinVersion,
    ) -> Vec<rustls::SupportedCipherSuite> {
        let Some(list) = raw else {
            return Vec::new();
        };
        let known = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
        let mut out: Vec<rustls::SupportedCipherSuite> = Vec::new();
        for (i, name) in list.get_ref().iter().enumerate() {
            let wanted = name.get_ref();
            match known
                .iter()
                .find(|s| s.suite().as_str() == Some(wanted.as_str()))
            {
                Some(s) if out.iter().any(|o| o.suite() == s.suite()) => {
                    let msg = format!("{wanted:?} is listed twice");
                    self.error(
                        Some(name.span()),
                        &format!("{field}.cipher_suites[{i}]"),
                        msg,
                    );
                }
                Some(s) => out.push(*s),
                None => {
                    let names: Vec<&str> =
                        known.iter().filter_map(|s| s.suite().as_str()).collect();
                    let msg = format!(
                        "unknown cipher suite {wanted:?} (known: {})",
                        names.join(", ")
                    );
                    self.error(
                        Some(name.span()),
                        &format!("{field}.cipher_suites[{i}]"),
                        msg,
                    );
                }
            }
        }
        let has_13 = out.iter().any(|s| s.tls13().is_some());
        let has_12 = out.iter().any(|s| s.tls13().is_none());
        let usable = has_13 || (has_12 && min_version == TlsMinVersion::Tls12);
        if !out.is_empty() && !usable {
            self.error(
                Some(list.span()),
                &format!("{field}.cipher_suites"),
                "no suite for TLS 1.3, and TLS 1.2 is off (min_version = \"1.3\")",
            );
        }
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                &format!("{field}.cipher_suites"),
                "empty list: leave the key out to allow every suite",
            );
        }
        out
    }

    fn certificate(
        &mut self,
        field: &str,
        spanned: &Spanned<RawCertificate>,
    ) -> Option<LoadedCertificate> {
        let c = spanned.get_ref();
        let cert_field = format!("{field}.cert");
        let key_field = format!("{field}.key");
        let cert_value = self.required(&c.cert, spanned.span(), &cert_field);
        let key_value = self.required(&c.key, spanned.span(), &key_field);
        let (cert_value, key_value) = (cert_value?, key_value?);
        let cert_path = self.path(cert_value.get_ref());
        let key_path = self.path(key_value.get_ref());
        let pair = match certs::load_pair(&cert_path, &key_path) {
            Ok(pair) => pair,
            Err(errors) => {
                for e in errors {
                    let span = match e.which {
                        certs::Which::Cert => cert_value.span(),
                        certs::Which::Key => key_value.span(),
                    };
                    self.error(
                        Some(span),
                        &format!("{field}.{}", e.which.field()),
                        e.message,
                    );
                }
                return None;
            }
        };
        let server_names = match &c.server_names {
            Some(names) => {
                let mut out = Vec::new();
                for n in names {
                    match normalize_server_name(n.get_ref()) {
                        Some(s) => out.push(s),
                        None => {
                            let msg = format!("{:?} is not a DNS name or *.wildcard", n.get_ref());
                            self.error(Some(n.span()), &format!("{field}.server_names"), msg);
                        }
                    }
                }
                out
            }
            None => names_from_certificate(&pair.names),
        };
        let client_auth = match &c.client_auth {
            None => None,
            Some(a) => Some(self.client_auth(&format!("{field}.client_auth"), a)?),
        };
        Some(LoadedCertificate {
            client_auth,
            key: Arc::new(pair.certified),
            server_names,
            server_names_configured: c.server_names.is_some(),
            cert_path,
            key_path,
            cert_hash: pair.cert_hash,
            key_hash: pair.key_hash,
        })
    }
}

/// The SNI names a certificate serves when `server_names` is not written: its own.
pub(crate) fn names_from_certificate(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| normalize_server_name(n))
        .collect()
}

/// Lower-cases and checks an SNI name or `*.wildcard`; `None` if it is neither.
pub(crate) fn normalize_server_name(name: &str) -> Option<String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let labels = n.strip_prefix("*.").unwrap_or(&n);
    valid_dns_name(labels).then_some(n)
}
