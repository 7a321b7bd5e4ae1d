//! [`RawConfig`] → [`Config`]: reads files, parses certificates, resolves names, checks
//! every value, and reports each problem with file, line, field and reason. The file's
//! shape (keys, types) is checked before, by [`super::schema`]; whatever it took out of
//! the file is not reported again here.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

mod client_auth;
mod identity;
mod ip;
mod policy;
mod policy_headers;
mod rate_limit;
mod route;

use super::addr::{ip_port, resolve};
use super::raw::{RawCertificate, RawConfig, RawListener, RawTls, RawUpstream};
use super::*;
use super::{certs, ticket_keys};

/// Longest timeout accepted anywhere: one day. Longer is almost certainly a unit mistake.
const MAX_TIMEOUT_MS: i64 = 86_400_000;

/// Parses and checks `text`; `file` names it in errors and `base` anchors relative paths.
pub fn from_toml_str(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let schema = super::schema::parse(text, file);
    let Some(raw) = schema.raw else {
        return Err(in_line_order(schema.errors));
    };
    let mut v = Validator {
        text,
        file,
        base,
        errors: schema.errors,
        reported: schema.reported,
    };
    let mut config = v.config(&raw);
    config.text_hash = fnv1a(FNV_SEED, text.as_bytes());
    config.rehash();
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(in_line_order(v.errors))
    }
}

/// In file order; errors without a place (missing sections) last.
fn in_line_order(mut errors: Vec<ConfigError>) -> ConfigErrors {
    errors.sort_by_key(|e| e.line.unwrap_or((usize::MAX, 0)));
    ConfigErrors(errors)
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    base: &'a Path,
    errors: Vec<ConfigError>,
    /// Paths [`super::schema`] already reported (see [`super::schema::Schema::reported`]).
    reported: Vec<String>,
}

impl Validator<'_> {
    /// Records a problem, unless it is about a key the schema check already reported
    /// and took out (a missing required key that had the wrong type, say).
    fn error(&mut self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) {
        if self.already_reported(field) {
            return;
        }
        let line = span.map(|s| line_col(self.text, s.start));
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Whether the schema check reported `field` or a table holding it.
    fn already_reported(&self, field: &str) -> bool {
        self.reported.iter().any(|r| {
            field
                .strip_prefix(r.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// A required key: its value, or an error at its table (`table` is the table's span)
    /// and `None` when it is missing.
    fn required<'r, T>(
        &mut self,
        value: &'r Option<Spanned<T>>,
        table: Range<usize>,
        field: &str,
    ) -> Option<&'r Spanned<T>> {
        if value.is_none() {
            self.error(Some(table), field, "required key is missing");
        }
        value.as_ref()
    }

    /// An integer field within `range`, or `default` when absent.
    fn int(
        &mut self,
        value: &Option<Spanned<i64>>,
        field: &str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if range.contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                let msg = format!(
                    "{} is out of range (allowed {}..={})",
                    v.get_ref(),
                    range.start(),
                    range.end()
                );
                self.error(Some(v.span()), field, msg);
                default
            }
        }
    }

    /// A `*_ms` duration field: whole milliseconds, at least 1, at most a day.
    fn millis(&mut self, value: &Option<Spanned<i64>>, field: &str, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) if (1..=MAX_TIMEOUT_MS).contains(v.get_ref()) => {
                Duration::from_millis(*v.get_ref() as u64)
            }
            Some(v) => {
                let msg = format!(
                    "bad duration {} ms: must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}",
                    v.get_ref()
                );
                self.error(Some(v.span()), field, msg);
                default
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn config(&mut self, raw: &RawConfig) -> Config {
        let server = self.server(raw);
        let http = self.http(raw);
        let http2 = self.http2(&raw.http2, &http);
        if raw.listener.is_empty() {
            self.error(
                None,
                "listener",
                "no [[listener]] defined: nothing to serve",
            );
        }
        let mut listeners: Vec<ListenerConfig> = Vec::new();
        let mut seen_addrs: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, l) in raw.listener.iter().enumerate() {
            // Port 0 asks the kernel for a fresh port each time: never a duplicate.
            if let Some(addr) = &l.get_ref().addr
                && let Ok(a) = addr.get_ref().parse::<SocketAddr>()
                && a.port() != 0
                && let Some(first) = seen_addrs.insert(a, i)
            {
                let msg = format!("duplicate listener address {a} (also listener[{first}])");
                self.error(Some(addr.span()), &format!("listener[{i}].addr"), msg);
                continue;
            }
            if let Some(lc) = self.listener(i, l) {
                listeners.push(lc);
            }
        }
        let mut upstreams = Vec::new();
        let mut upstream_index = HashMap::new();
        for (name, u) in &raw.upstream {
            if let Some(uc) = self.upstream(name, u) {
                upstream_index.insert(name.clone(), upstreams.len());
                upstreams.push(uc);
            }
        }
        let (rate_limits, rate_limit_index) = self.rate_limits(raw);
        let routes = self.routes(raw, &upstream_index, &rate_limit_index);
        let admin = self.admin(raw, &seen_addrs);
        Config {
            source: self.file.to_string(),
            file: None,
            text_hash: 0,
            hash: 0,
            server,
            http,
            http2,
            listeners,
            routes,
            upstreams,
            admin,
            rate_limits,
        }
    }

    fn admin(
        &mut self,
        raw: &RawConfig,
        listeners: &HashMap<SocketAddr, usize>,
    ) -> Option<AdminConfig> {
        let admin = raw.admin.as_ref()?;
        let a = self.required(&admin.get_ref().addr, admin.span(), "admin.addr")?;
        let addr = match ip_port(a.get_ref(), "\"127.0.0.1:9901\"") {
            Ok(addr) => addr,
            Err(msg) => {
                self.error(Some(a.span()), "admin.addr", msg);
                return None;
            }
        };
        if addr.port() != 0
            && let Some(i) = listeners.get(&addr)
        {
            let msg = format!("admin address {addr} is also listener[{i}]'s");
            self.error(Some(a.span()), "admin.addr", msg);
            return None;
        }
        Some(AdminConfig { addr })
    }

    fn server(&mut self, raw: &RawConfig) -> ServerSettings {
        let s = &raw.server;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let workers = match &s.workers {
            None => cores,
            Some(v) => match v.get_ref() {
                toml::Value::String(a) if a == "auto" => cores,
                toml::Value::Integer(n) if (1..=1024).contains(n) => *n as usize,
                other => {
                    let msg = format!("expected \"auto\" or a number from 1 to 1024, got {other}");
                    self.error(Some(v.span()), "server.workers", msg);
                    cores
                }
            },
        };
        let io_uring = match &s.io_uring {
            None => true,
            Some(v) => match v.get_ref().as_str() {
                "auto" => true,
                "off" => false,
                other => {
                    let msg = format!("expected \"auto\" or \"off\", got {other:?}");
                    self.error(Some(v.span()), "server.io_uring", msg);
                    true
                }
            },
        };
        ServerSettings {
            workers,
            shutdown_timeout: self.millis(
                &s.shutdown_timeout_ms,
                "server.shutdown_timeout_ms",
                Duration::from_secs(30),
            ),
            max_connections_per_worker: self.int(
                &s.max_connections_per_worker,
                "server.max_connections_per_worker",
                16_384,
                1..=10_000_000,
            ) as usize,
            io_uring,
            pin_workers: s.pin_workers.unwrap_or(true),
            pid_file: s.pid_file.as_ref().map(|p| self.path(p.get_ref())),
            certificate_check_interval: Duration::from_millis(self.int(
                &s.certificate_check_interval_ms,
                "server.certificate_check_interval_ms",
                5000,
                0..=MAX_TIMEOUT_MS,
            ) as u64),
        }
    }

    fn http(&mut self, raw: &RawConfig) -> HttpSettings {
        let h = &raw.http;
        let d = HttpSettings::default();
        HttpSettings {
            max_request_line_bytes: self.int(
                &h.max_request_line_bytes,
                "http.max_request_line_bytes",
                d.max_request_line_bytes as i64,
                64..=1 << 20,
            ) as usize,
            max_header_bytes: self.int(
                &h.max_header_bytes,
                "http.max_header_bytes",
                d.max_header_bytes as i64,
                256..=1 << 24,
            ) as usize,
            max_headers: self.int(
                &h.max_headers,
                "http.max_headers",
                d.max_headers as i64,
                1..=10_000,
            ) as usize,
            max_request_body_bytes: self.int(
                &h.max_request_body_bytes,
                "http.max_request_body_bytes",
                0,
                0..=i64::MAX,
            ) as u64,
            client_header_timeout: self.millis(
                &h.client_header_timeout_ms,
                "http.client_header_timeout_ms",
                d.client_header_timeout,
            ),
            client_body_timeout: self.millis(
                &h.client_body_timeout_ms,
                "http.client_body_timeout_ms",
                d.client_body_timeout,
            ),
            send_timeout: self.millis(&h.send_timeout_ms, "http.send_timeout_ms", d.send_timeout),
            keepalive_timeout: self.millis(
                &h.keepalive_timeout_ms,
                "http.keepalive_timeout_ms",
                d.keepalive_timeout,
            ),
            keepalive_requests: self.int(
                &h.keepalive_requests,
                "http.keepalive_requests",
                d.keepalive_requests as i64,
                1..=i64::MAX,
            ) as u64,
            splice_threshold_bytes: self.int(
                &h.splice_threshold_bytes,
                "http.splice_threshold_bytes",
                d.splice_threshold_bytes as i64,
                0..=i64::MAX,
            ) as u64,
            lingering_time: self.millis(
                &h.lingering_time_ms,
                "http.lingering_time_ms",
                d.lingering_time,
            ),
            lingering_timeout: self.millis(
                &h.lingering_timeout_ms,
                "http.lingering_timeout_ms",
                d.lingering_timeout,
            ),
            forward: self.forward_headers(&h.forward_headers, d.forward),
            path: PathOptions {
                merge_slashes: h.merge_slashes.unwrap_or(d.path.merge_slashes),
                escaped_slashes: self
                    .choice(
                        &h.escaped_slashes,
                        "http.escaped_slashes",
                        &EscapedSlashes::NAMES,
                        EscapedSlashes::from_name,
                    )
                    .unwrap_or(d.path.escaped_slashes),
            },
            malformed_forwarding: self
                .choice(
                    &h.malformed_forwarding_headers,
                    "http.malformed_forwarding_headers",
                    &MalformedForwarding::NAMES,
                    MalformedForwarding::from_name,
                )
                .unwrap_or(d.malformed_forwarding),
        }
    }

    /// One of a few names (`names`, for the message), parsed by `parse`; `None` when absent
    /// or unknown (an error is recorded).
    fn choice<T>(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let v = value.as_ref()?;
        let parsed = parse(v.get_ref());
        if parsed.is_none() {
            let msg = format!(
                "{:?} is not one of {}",
                v.get_ref(),
                names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.error(Some(v.span()), field, msg);
        }
        parsed
    }

    fn forward_headers(
        &mut self,
        value: &Option<Spanned<Vec<Spanned<String>>>>,
        default: ForwardHeaders,
    ) -> ForwardHeaders {
        let Some(list) = value else {
            return default;
        };
        let mut on = ForwardHeaders::NONE;
        for name in list.get_ref() {
            if !on.enable(name.get_ref()) {
                let msg = format!(
                    "unknown forwarding header {:?} (known: {})",
                    name.get_ref(),
                    ForwardHeaders::NAMES.join(", ")
                );
                self.error(Some(name.span()), "http.forward_headers", msg);
            }
        }
        on
    }

    fn listener(&mut self, i: usize, spanned: &Spanned<RawListener>) -> Option<ListenerConfig> {
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

    fn upstream(&mut self, name: &str, u: &Spanned<RawUpstream>) -> Option<UpstreamConfig> {
        let raw = u.get_ref();
        let field = format!("upstream.{}", super::schema::key(name));
        let errors_before = self.errors.len();
        let no_servers = Vec::new();
        let listed = match self.required(&raw.servers, u.span(), &format!("{field}.servers")) {
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    Some(list.span()),
                    &format!("{field}.servers"),
                    "at least one server is needed",
                );
                list.get_ref()
            }
            Some(list) => list.get_ref(),
            None => &no_servers,
        };
        let mut servers = Vec::new();
        for (i, s) in listed.iter().enumerate() {
            match resolve(s.get_ref()) {
                Ok(addr) => servers.push(UpstreamServer {
                    name: s.get_ref().clone(),
                    addr,
                    host_header: s.get_ref().clone(),
                }),
                Err(e) => self.error(Some(s.span()), &format!("{field}.servers[{i}]"), e),
            }
        }
        let balance = match &raw.balance {
            None => Balance::RoundRobin,
            Some(b) => match b.get_ref().as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_conn" => Balance::LeastConn,
                other => {
                    let msg =
                        format!("unknown balance {other:?}: \"round_robin\" or \"least_conn\"");
                    self.error(Some(b.span()), &format!("{field}.balance"), msg);
                    Balance::RoundRobin
                }
            },
        };
        let uc = UpstreamConfig {
            name: name.to_string(),
            servers,
            balance,
            connect_timeout: self.millis(
                &raw.connect_timeout_ms,
                &format!("{field}.connect_timeout_ms"),
                Duration::from_secs(5),
            ),
            read_timeout: self.millis(
                &raw.read_timeout_ms,
                &format!("{field}.read_timeout_ms"),
                Duration::from_secs(60),
            ),
            write_timeout: self.millis(
                &raw.write_timeout_ms,
                &format!("{field}.write_timeout_ms"),
                Duration::from_secs(60),
            ),
            keepalive: self.int(
                &raw.keepalive,
                &format!("{field}.keepalive"),
                64,
                0..=100_000,
            ) as usize,
            keepalive_timeout: self.millis(
                &raw.keepalive_timeout_ms,
                &format!("{field}.keepalive_timeout_ms"),
                Duration::from_secs(60),
            ),
            keepalive_requests: self.int(
                &raw.keepalive_requests,
                &format!("{field}.keepalive_requests"),
                1000,
                1..=i64::MAX,
            ) as u64,
            response_limits: ResponseLimits {
                max_head_bytes: self.int(
                    &raw.max_response_header_bytes,
                    &format!("{field}.max_response_header_bytes"),
                    64 * 1024,
                    256..=1 << 24,
                ) as usize,
                max_headers: self.int(
                    &raw.max_response_headers,
                    &format!("{field}.max_response_headers"),
                    4096,
                    1..=65_536,
                ) as usize,
            },
        };
        (self.errors.len() == errors_before).then_some(uc)
    }

    fn routes(
        &mut self,
        raw: &RawConfig,
        upstreams: &HashMap<String, usize>,
        rate_limits: &HashMap<String, usize>,
    ) -> Vec<RouteConfig> {
        let mut routes = Vec::new();
        let mut seen: BTreeMap<(String, String), Vec<(usize, route::Conditions)>> = BTreeMap::new();
        for (i, spanned) in raw.route.iter().enumerate() {
            let r = spanned.get_ref();
            let field = format!("route[{i}]");
            let wanted = self.required(&r.upstream, spanned.span(), &format!("{field}.upstream"));
            let upstream = match wanted.map(|w| (w, upstreams.get(w.get_ref()))) {
                None => None,
                Some((_, Some(&u))) => Some(u),
                Some((wanted, None)) => {
                    let known: Vec<&str> = raw.upstream.keys().map(String::as_str).collect();
                    let msg = format!(
                        "unknown upstream {:?} (defined: {})",
                        wanted.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                    // An upstream that exists but failed its own checks is reported there,
                    // and so is one the schema check took out.
                    let name = wanted.get_ref();
                    let dotted = format!("upstream.{}", super::schema::key(name));
                    if !raw.upstream.contains_key(name) && !self.already_reported(&dotted) {
                        self.error(Some(wanted.span()), &format!("{field}.upstream"), msg);
                    }
                    None
                }
            };
            let host = match &r.host {
                None => Some(HostMatch::Any),
                Some(h) => match parse_host_match(h.get_ref()) {
                    Some(m) => Some(m),
                    None => {
                        let msg = format!(
                            "{:?} is not a host name, \"*.suffix\" wildcard, or absent",
                            h.get_ref()
                        );
                        self.error(Some(h.span()), &format!("{field}.host"), msg);
                        None
                    }
                },
            };
            let path_prefix = match &r.path_prefix {
                None => Some("/".to_string()),
                Some(p)
                    if p.get_ref().starts_with('/') && p.get_ref().bytes().all(is_path_byte) =>
                {
                    Some(p.get_ref().clone())
                }
                Some(p) => {
                    let msg = format!(
                        "{:?} must start with '/' and contain only URL path characters",
                        p.get_ref()
                    );
                    self.error(Some(p.span()), &format!("{field}.path_prefix"), msg);
                    None
                }
            };
            let client_cert = match &r.client_cert {
                None => Some(None),
                Some(c) => self
                    .route_client_cert(&format!("{field}.client_cert"), c)
                    .map(Some),
            };
            let conditions = self.route_conditions(&field, r);
            let limits = match &r.rate_limit {
                None => Some(Vec::new()),
                Some(names) => self.route_rate_limits(raw, &field, names, rate_limits),
            };
            let ip = self.allow_deny(&field, &r.allow, &r.deny).ok();
            let headers = self.header_policy(
                &field,
                &r.security_headers,
                &r.request_headers,
                &r.response_headers,
            );
            let cors = match &r.cors {
                None => Some(None),
                Some(c) => self.cors(&format!("{field}.cors"), c).map(Some),
            };
            let (
                Some(upstream),
                Some(host),
                Some(path_prefix),
                Some(client_cert),
                Some(limits),
                Some(ip),
                Some(cors),
                Some(when),
            ) = (
                upstream,
                host,
                path_prefix,
                client_cert,
                limits,
                ip,
                cors,
                conditions,
            )
            else {
                continue;
            };
            // Among routes with the same host and prefix the first whose conditions hold
            // wins: a route after one that takes the same requests is never chosen.
            let earlier = seen
                .entry((format!("{host:?}"), path_prefix.clone()))
                .or_default();
            if let Some((first, shadow)) = earlier
                .iter()
                .find(|(_, c)| c.is_empty() || c.same_as(&when))
            {
                let msg = if shadow.is_empty() {
                    format!(
                        "same host and path_prefix as route[{first}], which has no methods or headers: it could never match"
                    )
                } else {
                    format!(
                        "same host, path_prefix, methods and headers as route[{first}]: it could never match"
                    )
                };
                let span = r
                    .path_prefix
                    .as_ref()
                    .map(|p| p.span())
                    .unwrap_or(spanned.span());
                self.error(Some(span), &field, msg);
                continue;
            }
            let max_request_body_bytes = r.max_request_body_bytes.as_ref().map(|_| {
                self.int(
                    &r.max_request_body_bytes,
                    &format!("{field}.max_request_body_bytes"),
                    0,
                    0..=i64::MAX,
                ) as u64
            });
            let (methods, match_headers) = (when.methods.clone(), when.headers.clone());
            earlier.push((i, when));
            routes.push(RouteConfig {
                index: routes.len(),
                host,
                path_prefix,
                strip_prefix: r.strip_prefix,
                upstream,
                client_cert,
                rate_limits: limits,
                ip,
                headers,
                cors,
                methods,
                match_headers,
                max_request_body_bytes,
            });
        }
        routes
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

fn valid_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn parse_host_match(h: &str) -> Option<HostMatch> {
    let n = h.trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = n.strip_prefix("*.") {
        return valid_dns_name(suffix).then(|| HostMatch::Suffix(format!(".{suffix}")));
    }
    if n.parse::<std::net::IpAddr>().is_ok() || valid_dns_name(&n) {
        return Some(HostMatch::Exact(n));
    }
    // A bracketed IPv6 literal, as it appears in a Host header.
    let inner = n.strip_prefix('[').and_then(|s| s.strip_suffix(']'))?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|_| HostMatch::Exact(n.clone()))
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}

impl Validator<'_> {
    /// `[http2]` (see [`super::http2`]).
    fn http2(
        &mut self,
        h: &super::http2::RawHttp2,
        http: &HttpSettings,
    ) -> super::http2::Http2Settings {
        let d =
            super::http2::Http2Settings::defaults(http.max_header_bytes, http.keepalive_timeout);
        let window = 65_535..=(1i64 << 31) - 1;
        super::http2::Http2Settings {
            max_concurrent_streams: self.int(
                &h.max_concurrent_streams,
                "http2.max_concurrent_streams",
                d.max_concurrent_streams.into(),
                1..=100_000,
            ) as u32,
            max_requests_per_connection: self.int(
                &h.max_requests_per_connection,
                "http2.max_requests_per_connection",
                d.max_requests_per_connection as i64,
                1..=i64::MAX,
            ) as u64,
            max_header_list_size: self.int(
                &h.max_header_list_size,
                "http2.max_header_list_size",
                d.max_header_list_size.into(),
                256..=1 << 24,
            ) as u32,
            initial_stream_window_size: self.int(
                &h.initial_stream_window_size,
                "http2.initial_stream_window_size",
                d.initial_stream_window_size.into(),
                window.clone(),
            ) as u32,
            initial_connection_window_size: self.int(
                &h.initial_connection_window_size,
                "http2.initial_connection_window_size",
                d.initial_connection_window_size.into(),
                window,
            ) as u32,
            max_reset_streams_per_second: self.int(
                &h.max_reset_streams_per_second,
                "http2.max_reset_streams_per_second",
                d.max_reset_streams_per_second.into(),
                1..=1_000_000,
            ) as u32,
            max_pending_accept_reset_streams: self.int(
                &h.max_pending_accept_reset_streams,
                "http2.max_pending_accept_reset_streams",
                d.max_pending_accept_reset_streams as i64,
                1..=1_000_000,
            ) as usize,
            max_local_error_reset_streams: self.int(
                &h.max_local_error_reset_streams,
                "http2.max_local_error_reset_streams",
                d.max_local_error_reset_streams as i64,
                1..=1_000_000,
            ) as usize,
            max_control_frames_per_second: self.int(
                &h.max_control_frames_per_second,
                "http2.max_control_frames_per_second",
                d.max_control_frames_per_second.into(),
                1..=10_000_000,
            ) as u32,
            max_window_update_frames_per_second: self.int(
                &h.max_window_update_frames_per_second,
                "http2.max_window_update_frames_per_second",
                d.max_window_update_frames_per_second.into(),
                1..=10_000_000,
            ) as u32,
            idle_timeout: self.millis(&h.idle_timeout_ms, "http2.idle_timeout_ms", d.idle_timeout),
        }
    }

    /// A TLS listener's `alpn` (default h2, then http/1.1).
    fn alpn(&mut self, field: &str, value: &Option<Spanned<Vec<Spanned<String>>>>) -> Vec<Vec<u8>> {
        use super::http2::{DEFAULT_ALPN, KNOWN_ALPN};
        let Some(list) = value else {
            return DEFAULT_ALPN.iter().map(|p| p.as_bytes().to_vec()).collect();
        };
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                &format!("{field}.alpn"),
                "at least one protocol is needed",
            );
        }
        let mut out: Vec<Vec<u8>> = Vec::new();
        for p in list.get_ref() {
            let name = p.get_ref().as_str();
            if !KNOWN_ALPN.contains(&name) {
                let msg = format!(
                    "unknown protocol {name:?} (known: {})",
                    KNOWN_ALPN.join(", ")
                );
                self.error(Some(p.span()), &format!("{field}.alpn"), msg);
            } else if out.iter().any(|o| o == name.as_bytes()) {
                let msg = format!("{name:?} is listed twice");
                self.error(Some(p.span()), &format!("{field}.alpn"), msg);
            } else {
                out.push(name.as_bytes().to_vec());
            }
        }
        out
    }

    /// A listener's `h2c` (plain listeners only).
    fn h2c(&mut self, field: &str, l: &RawListener, tls: bool) -> bool {
        let Some(v) = &l.h2c else {
            return false;
        };
        if tls && *v.get_ref() {
            let msg = "h2c is for plain listeners (a TLS listener offers h2 through alpn)";
            self.error(Some(v.span()), &format!("{field}.h2c"), msg);
            return false;
        }
        *v.get_ref()
    }
}
