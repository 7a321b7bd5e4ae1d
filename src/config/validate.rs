//! [`RawConfig`] → [`Config`]: reads files, parses certificates, resolves names, checks
//! every value, and reports each problem with file, line, field and reason. The file's
//! shape (keys, types) is checked before, by [`super::schema`]; whatever it took out of
//! the file is not reported again here.
//!
//! Here: the top-level tables (`[server]`, `[http]`, `[admin]`) and the walk over the
//! rest, each part checked in its own file — `listeners.rs` (listeners, TLS,
//! certificates), `upstreams.rs`, `route.rs` (routes and their match conditions), and the
//! policies' settings (`ip.rs`, `rate_limit.rs`, `policy_headers.rs`, `policy.rs`,
//! `client_auth.rs`, `identity.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

mod client_auth;
mod http2;
mod identity;
mod ip;
mod listeners;
mod policy;
mod policy_headers;
mod rate_limit;
mod route;
mod tunnel;
mod upstreams;

use super::addr::ip_port;
use super::raw::RawConfig;
use super::*;

pub(crate) use listeners::names_from_certificate;

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
            tunnel_idle_timeout: self.millis(
                &h.tunnel_idle_timeout_ms,
                "http.tunnel_idle_timeout_ms",
                d.tunnel_idle_timeout,
            ),
            max_tunnels: self.int(
                &h.max_tunnels,
                "http.max_tunnels",
                d.max_tunnels as i64,
                1..=1_000_000,
            ) as u64,
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
