//! Configuration: TOML text → `raw::RawConfig` (what the user wrote) → [`Config`] (checked).
//!
//! Everything that can fail fails here, at load time, on the main thread: files are read,
//! certificates and keys parsed and matched, upstream names resolved, routes compiled.
//! Each problem becomes a [`ConfigError`] naming the file, the TOML line and column, the
//! field, and the reason; all problems are collected, not just the first, and reported in
//! line order. Workers only ever see a finished, immutable [`Config`].
//!
//! Stages: `schema` (text → raw structs: syntax, unknown keys, types; keeps going past a
//! schema error) → `validate` (raw → [`Config`]: values, files, certificates, names;
//! `addr` parses the addresses).
//!
//! This module never runs on a worker thread: it blocks on files and DNS by design.

mod addr;
mod certs;
mod client_auth;
pub mod cors;
pub mod headers;
pub mod http2;
pub mod identity_headers;
pub mod ip_list;
pub mod kx;
pub mod rate_limit;
mod raw;
mod schema;
#[cfg(test)]
mod tests;
mod ticket_keys;
pub mod upstream_tls;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;

pub use crate::uri::{EscapedSlashes, PathOptions};
pub use client_auth::{
    AllowPattern, ClientAuth, ClientCa, ClientCrl, CrlExpired, RouteClientCert, VerifierError,
    VerifyClient,
};
pub use cors::{AllowedOrigins, Cors, OriginPattern};
pub use headers::{HeaderPolicy, HeaderRule, SecurityHeaders};
pub use identity_headers::{ForwardClientCert, IdentityHeaders, XfccDetails};
pub use ip_list::IpList;
pub use rate_limit::{LimitKey, RateLimitConfig};
pub use ticket_keys::{TicketKeyFile, parse as parse_ticket_key};
pub use validate::from_toml_str;

/// The `Upgrade` protocol every route tunnels unless its `upgrade` list says otherwise.
pub const WEBSOCKET: &str = "websocket";

/// What to do with a malformed `Forwarded` / `X-Forwarded-For` the proxy would extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedForwarding {
    /// Drop the client's fields of that name; send the proxy's hop alone.
    Drop,
    /// Refuse the request (400).
    Reject,
}

impl MalformedForwarding {
    /// The names `malformed_forwarding_headers` accepts.
    pub const NAMES: [&'static str; 2] = ["drop", "reject"];

    pub fn from_name(name: &str) -> Option<MalformedForwarding> {
        match name {
            "drop" => Some(MalformedForwarding::Drop),
            "reject" => Some(MalformedForwarding::Reject),
            _ => None,
        }
    }
}

/// A checked, ready-to-run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path, or `<demo>`), for messages.
    pub source: String,
    /// The file it was read from ([`Config::from_file`]); a reload reads it again.
    pub file: Option<PathBuf>,
    /// FNV-1a of the TOML text this configuration was read from.
    pub text_hash: u64,
    /// FNV-1a of the TOML text and of every certificate and key file it names: equal
    /// hashes, equal configurations (shown by reload logs and `generation::stats`).
    pub hash: u64,
    pub server: ServerSettings,
    pub http: HttpSettings,
    /// `[http2]`.
    pub http2: http2::Http2Settings,
    pub listeners: Vec<ListenerConfig>,
    pub routes: Vec<RouteConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    /// `[admin]`: where `/metrics`, `/healthz` and `/readyz` are served (off if `None`).
    pub admin: Option<AdminConfig>,
    /// `[rate_limit.NAME]`, by name; routes refer to them by index.
    pub rate_limits: Vec<RateLimitConfig>,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub max_connections_per_worker: usize,
    pub io_uring: bool,
    pub pin_workers: bool,
    /// `pid_file`: locked by `ringgate run` for its life (a second start with it is
    /// refused, `crate::instance`), its pid written once it listens, removed at exit;
    /// read by `ringgate reload`.
    pub pid_file: Option<PathBuf>,
    /// `certificate_check_interval_ms`: how often a helper thread compares the content of
    /// every certificate, key and session-ticket key file with what is loaded (zero: never).
    pub certificate_check_interval: Duration,
}

/// `[http]`: client-side limits and timeouts.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_request_line_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// 0 = unlimited.
    pub max_request_body_bytes: u64,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub send_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    /// 0 = never splice.
    pub splice_threshold_bytes: u64,
    pub lingering_time: Duration,
    pub lingering_timeout: Duration,
    /// The forwarding fields added to upstream requests.
    pub forward: ForwardHeaders,
    /// `merge_slashes`, `escaped_slashes`: how request paths are normalised.
    pub path: PathOptions,
    /// `malformed_forwarding_headers`.
    pub malformed_forwarding: MalformedForwarding,
    /// `tunnel_idle_timeout_ms`: an upgraded connection idle both ways this long closes.
    pub tunnel_idle_timeout: Duration,
    /// `max_tunnels`: upgraded connections open at once per worker (503 over it).
    pub max_tunnels: u64,
}

/// Which forwarding fields the proxy adds to each request it sends upstream
/// (`[http] forward_headers`). A field that is on is the proxy's: X-Forwarded-For and
/// Forwarded get this hop appended to what the client sent, X-Real-IP and
/// X-Forwarded-Proto are replaced. A field that is off is passed through as the client
/// sent it, like nginx without a `proxy_set_header` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardHeaders {
    pub x_forwarded_for: bool,
    pub forwarded: bool,
    pub x_real_ip: bool,
    pub x_forwarded_proto: bool,
}

impl ForwardHeaders {
    /// The names `forward_headers` accepts, in the order they are written upstream.
    pub const NAMES: [&'static str; 4] = [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-forwarded-proto",
    ];

    pub const ALL: ForwardHeaders = ForwardHeaders {
        x_forwarded_for: true,
        forwarded: true,
        x_real_ip: true,
        x_forwarded_proto: true,
    };

    pub const NONE: ForwardHeaders = ForwardHeaders {
        x_forwarded_for: false,
        forwarded: false,
        x_real_ip: false,
        x_forwarded_proto: false,
    };

    /// Turns on the field `name` (case-insensitive); `false` for a name not in
    /// [`ForwardHeaders::NAMES`].
    pub fn enable(&mut self, name: &str) -> bool {
        let flag = match name.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => &mut self.x_forwarded_for,
            "forwarded" => &mut self.forwarded,
            "x-real-ip" => &mut self.x_real_ip,
            "x-forwarded-proto" => &mut self.x_forwarded_proto,
            _ => return false,
        };
        *flag = true;
        true
    }
}

impl Default for HttpSettings {
    /// nginx's defaults, except the head limits, which nginx spreads over several buffers.
    fn default() -> Self {
        HttpSettings {
            max_request_line_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_request_body_bytes: 0,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
            splice_threshold_bytes: 256 * 1024,
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            forward: ForwardHeaders::ALL,
            path: PathOptions::default(),
            malformed_forwarding: MalformedForwarding::Drop,
            tunnel_idle_timeout: Duration::from_secs(3600),
            max_tunnels: 10_000,
        }
    }
}

/// One `[[listener]]`.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub backlog: i32,
    pub tls: Option<TlsSettings>,
    /// `max_connections_per_ip` (`None`: no limit).
    pub max_connections_per_ip: Option<u32>,
    /// The client-address settings (PROXY protocol, allow/deny, trusted proxies).
    pub policies: ListenerPolicies,
    /// `security_headers`, `request_headers`, `response_headers`.
    pub headers: HeaderPolicy,
    /// `redirect_https = true` (plain listeners only): every request is redirected.
    pub redirect_https: Option<RedirectHttps>,
    /// `h2c = true` (plain listeners only): HTTP/2 with prior knowledge beside HTTP/1.1.
    pub h2c: bool,
}

/// A listener's client-address settings ([`crate::policy::ip`]); the running listener's
/// copy is in its generation ([`crate::generation::Generation::listener_policies`]).
#[derive(Debug, Clone, Default)]
pub struct ListenerPolicies {
    /// `proxy_protocol = true`: the sources allowed to send the header
    /// (`proxy_protocol_from`); `None`: no PROXY protocol on this listener.
    pub proxy_protocol: Option<IpList>,
    /// `allow` / `deny`, checked at accept on the client's address (after the PROXY
    /// header); `None` when neither is written.
    pub ip: Option<IpList>,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` names the client; `None`: none.
    pub trusted_proxies: Option<IpList>,
}

impl ListenerPolicies {
    /// Something to do at accept, before the handshake.
    pub fn at_accept(&self) -> bool {
        self.proxy_protocol.is_some() || self.ip.is_some()
    }
}

/// A plain listener's redirect to HTTPS ([`crate::policy::redirect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectHttps {
    /// `redirect_status`: 308 (default) or 301.
    pub status: u16,
    /// `redirect_https_port` (default 443, then left out of `Location`).
    pub port: u16,
}

/// Minimum TLS protocol version offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

/// Kernel TLS offload mode (`ktls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KtlsMode {
    Auto,
    On,
    Off,
}

/// Who seals and opens records in userspace after the handshake (`record_layer`), where
/// kernel TLS does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordLayer {
    /// ringgate's own, in place (rustls keeps the key schedule).
    Ringgate,
    /// rustls' unbuffered API.
    Rustls,
}

/// `[listener.tls]`, with every certificate loaded and checked.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certificates: Vec<LoadedCertificate>,
    /// Index into `certificates` of the one served without (matching) SNI.
    pub default_certificate: usize,
    pub min_version: TlsMinVersion,
    pub handshake_timeout: Duration,
    pub session_cache_entries: usize,
    pub session_tickets: bool,
    pub ktls: KtlsMode,
    pub record_layer: RecordLayer,
    /// `cipher_suites`: allowed suites in server preference order; empty = the
    /// provider's AEAD suites in the client's order.
    pub cipher_suites: Vec<rustls::SupportedCipherSuite>,
    /// `kx_groups`: allowed key-exchange groups, in the order written; empty = the
    /// provider's defaults. Whatever is allowed, the client's preference picks.
    pub kx_groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    /// `session_ticket_keys`: the fleet's ticket key files, first = encrypting key; empty
    /// = a random key made once per listener (rustls rotates it every 6 hours).
    pub session_ticket_keys: Vec<TicketKeyFile>,
    /// `[listener.tls.client_auth]` ([`ClientAuth::off`] when absent).
    pub client_auth: ClientAuth,
    /// `client_identity_headers`: what the upstream is told about the client's
    /// certificate (claims from the client are removed whatever it says).
    pub identity_headers: IdentityHeaders,
    /// The listener's `alpn`: protocols offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

impl TlsSettings {
    /// Sets the XFCC `By` elements from the certificates' URI SANs (after they load).
    pub(crate) fn refresh_xfcc_by(&mut self) {
        let certs = self.certificates.iter().map(|c| {
            let leaf = c.key.cert.first().map(|d| d.as_ref()).unwrap_or(&[][..]);
            (&c.server_names[..], leaf)
        });
        self.identity_headers
            .set_by(certs, self.default_certificate);
    }
}

/// A certificate chain with its private key, parsed and matched.
#[derive(Clone)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    /// Lower-case SNI names, exact (`api.example.com`) or wildcard (`*.example.com`).
    pub server_names: Vec<String>,
    /// `server_names` was written in the file (a certificate reload keeps them); else
    /// they are the certificate's own names (a certificate reload takes the new ones).
    pub server_names_configured: bool,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// FNV-1a of the certificate and key files' content as loaded, so a changed file is
    /// noticed by content, not by its modification time.
    pub cert_hash: u64,
    pub key_hash: u64,
    /// `client_auth = { ... }`: replaces the listener's for this entry's names.
    pub client_auth: Option<ClientAuth>,
}

impl fmt::Debug for LoadedCertificate {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("server_names", &self.server_names)
            .finish_non_exhaustive()
    }
}

/// Host pattern of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lower-case, no port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`; matches one or more labels in front.
    Suffix(String),
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Position in [`Config::routes`] (the order of `[[route]]` tables in the file).
    pub index: usize,
    pub host: HostMatch,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// `[route.client_cert]`.
    pub client_cert: Option<RouteClientCert>,
    /// `rate_limit`: indexes into [`Config::rate_limits`], in the order written.
    pub rate_limits: Vec<usize>,
    /// `allow` / `deny` on the route (403); `None` when neither is written.
    pub ip: Option<IpList>,
    /// `security_headers`, `request_headers`, `response_headers`.
    pub headers: HeaderPolicy,
    /// `[route.cors]`.
    pub cors: Option<Cors>,
    /// `methods`: the request methods the route takes, exact tokens; empty: any.
    pub methods: Vec<String>,
    /// `[[route.headers]]`: conditions on request fields, all of which must hold.
    pub match_headers: Vec<HeaderMatch>,
    /// Overrides `[http] max_request_body_bytes` on this route (0 = unlimited).
    pub max_request_body_bytes: Option<u64>,
    /// `upgrade`: the protocols an `Upgrade` request may switch to here, lower case
    /// (default `["websocket"]`).
    pub upgrade: Vec<String>,
    /// `websocket_origins`: the origins a WebSocket upgrade may come from (`None`: any).
    pub websocket_origins: Option<Vec<cors::OriginPattern>>,
    /// Overrides `[http] tunnel_idle_timeout_ms` on this route.
    pub tunnel_idle_timeout: Option<Duration>,
}

impl RouteConfig {
    /// A route for `host` and `path_prefix` to `upstream`, any method and headers, no
    /// strip, no client-certificate rule (tests and benches build tables with it).
    pub fn new(index: usize, host: HostMatch, path_prefix: &str, upstream: usize) -> Self {
        RouteConfig {
            index,
            host,
            path_prefix: path_prefix.to_string(),
            strip_prefix: false,
            upstream,
            client_cert: None,
            rate_limits: Vec::new(),
            ip: None,
            headers: HeaderPolicy::default(),
            cors: None,
            methods: Vec::new(),
            match_headers: Vec::new(),
            max_request_body_bytes: None,
            upgrade: vec![WEBSOCKET.to_string()],
            websocket_origins: None,
            tunnel_idle_timeout: None,
        }
    }
}

/// One `[[route.headers]]` condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeaderMatch {
    /// Lower-case field name (compared without regard to case).
    pub name: String,
    pub value: HeaderValueMatch,
}

/// What a [`HeaderMatch`] asks of the field's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HeaderValueMatch {
    /// Some field of that name has exactly this value (case-sensitive, surrounding
    /// whitespace not counted).
    Exact(String),
    /// Some field of that name has a value starting with this.
    Prefix(String),
    /// `true`: some field of that name is there; `false`: none is.
    Present(bool),
}

/// Load-balancing algorithm of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
}

/// One `[upstream.NAME]`, with its servers resolved.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    /// `max_response_header_bytes`, `max_response_headers`.
    pub response_limits: ResponseLimits,
    /// `protocol`: the wire spoken to the servers.
    pub protocol: UpstreamProtocol,
    /// `max_concurrent_streams`: streams per HTTP/2 connection (`protocol = "h2"`).
    pub max_concurrent_streams: usize,
    /// `[upstream.NAME.tls]`: the servers are reached over TLS (ALPN `h2`).
    pub tls: Option<Arc<upstream_tls::UpstreamTls>>,
}

/// The wire an upstream's servers speak (`protocol` on `[upstream.NAME]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over pooled keep-alive connections ([`crate::upstream::h1`]).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c) over pooled, multiplexed connections
    /// ([`crate::upstream::h2`]).
    H2,
}

/// Limits applied while parsing an upstream's response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

/// One server of an upstream: what the user wrote and the address it resolved to.
#[derive(Debug, Clone)]
pub struct UpstreamServer {
    pub name: String,
    pub addr: SocketAddr,
    /// `Host` sent when the client sent none (HTTP/1.0).
    pub host_header: String,
    /// With `[upstream.NAME.tls]`: the SNI sent and the name its certificate must carry
    /// (`server_name`, or this server's host as written).
    pub tls_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column in the TOML text, when the problem has a place.
    pub line: Option<(usize, usize)>,
    /// Dotted path of the field, e.g. `listener[0].tls.certificates[1].key`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{}:{}: ", self.file, l, c)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// 1-based line and column (in bytes) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Every problem found in one configuration.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// FNV-1a, 64 bits: a content fingerprint (not a defence against a chosen collision:
/// whoever can write the files can change the configuration anyway).
pub fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h = seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The FNV-1a offset basis: the seed of a fresh hash.
pub const FNV_SEED: u64 = 0xcbf2_9ce4_8422_2325;

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and checks the file at `path`. Relative paths inside it are taken from its folder.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: shown.clone(),
                line: None,
                field: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = from_toml_str(&text, &shown, &base)?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// This configuration with every certificate, key and session-ticket key file read and
    /// checked again, and nothing else: the TOML file is not read, so an edit to it that was never
    /// reloaded stays out. What a changed certificate file reloads.
    pub fn with_reloaded_certificates(&self) -> Result<Config, ConfigErrors> {
        let mut next = self.clone();
        let mut errors = Vec::new();
        for (i, l) in next.listeners.iter_mut().enumerate() {
            let Some(tls) = &mut l.tls else { continue };
            for (j, c) in tls.certificates.iter_mut().enumerate() {
                match certs::load_pair(&c.cert_path, &c.key_path) {
                    Ok(pair) => {
                        c.key = Arc::new(pair.certified);
                        c.cert_hash = pair.cert_hash;
                        c.key_hash = pair.key_hash;
                        if !c.server_names_configured {
                            c.server_names = validate::names_from_certificate(&pair.names);
                        }
                    }
                    Err(problems) => errors.extend(problems.into_iter().map(|e| ConfigError {
                        file: self.source.clone(),
                        line: None,
                        field: format!("listener[{i}].tls.certificates[{j}].{}", e.which.field()),
                        message: e.message,
                    })),
                }
            }
            for (k, key) in tls.session_ticket_keys.iter_mut().enumerate() {
                match ticket_keys::load(&key.path) {
                    Ok(loaded) => *key = loaded,
                    Err(message) => errors.push(ConfigError {
                        file: self.source.clone(),
                        line: None,
                        field: format!("listener[{i}].tls.session_ticket_keys[{k}]"),
                        message,
                    }),
                }
            }
        }
        for (i, l) in next.listeners.iter_mut().enumerate() {
            let Some(tls) = &mut l.tls else { continue };
            let mut at = |field: String, problems: Vec<(&str, String)>| {
                errors.extend(problems.into_iter().map(|(f, message)| ConfigError {
                    file: self.source.clone(),
                    line: None,
                    field: format!("{field}.client_auth.{f}"),
                    message,
                }))
            };
            if let Err(p) = tls.client_auth.reload() {
                at(format!("listener[{i}].tls"), p);
            }
            for (j, c) in tls.certificates.iter_mut().enumerate() {
                if let Some(Err(p)) = c.client_auth.as_mut().map(ClientAuth::reload) {
                    at(format!("listener[{i}].tls.certificates[{j}]"), p);
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        for tls in next.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
            // XFCC `By` follows the certificates' URI SANs.
            tls.refresh_xfcc_by();
        }
        next.rehash();
        Ok(next)
    }

    /// Sets [`Config::hash`] from `text_hash` and the certificate and key files' hashes.
    fn rehash(&mut self) {
        self.hash = self
            .watched_files()
            .iter()
            .fold(self.text_hash, |h, (_, f)| fnv1a(h, &f.to_le_bytes()));
    }

    /// Every file whose content this configuration depends on besides the TOML file
    /// itself, with the hash of the content it was loaded from.
    pub fn watched_files(&self) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        for l in &self.listeners {
            for c in l.tls.iter().flat_map(|t| &t.certificates) {
                out.push((c.cert_path.clone(), c.cert_hash));
                out.push((c.key_path.clone(), c.key_hash));
            }
            for k in l.tls.iter().flat_map(|t| &t.session_ticket_keys) {
                out.push((k.path.clone(), k.hash));
            }
            // CA bundles and CRLs reload like certificates (a new CRL is a file write).
            let client_auths = l.tls.iter().flat_map(|t| {
                std::iter::once(&t.client_auth)
                    .chain(t.certificates.iter().filter_map(|c| c.client_auth.as_ref()))
            });
            for a in client_auths {
                out.extend(a.files().map(|(p, h)| (p.to_path_buf(), h)));
            }
        }
        out
    }

    /// One line per listener, route and upstream, for `ringgate check`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: ok — {} worker(s), {} listener(s), {} route(s), {} upstream(s)\n",
            self.source,
            self.server.workers,
            self.listeners.len(),
            self.routes.len(),
            self.upstreams.len()
        );
        for l in &self.listeners {
            match &l.tls {
                Some(t) => {
                    let names: Vec<String> = t
                        .certificates
                        .iter()
                        .map(|c| c.server_names.join(","))
                        .collect();
                    s += &format!(
                        "  listener {} https, certificates: [{}]\n",
                        l.addr,
                        names.join("; ")
                    );
                }
                None => s += &format!("  listener {} http\n", l.addr),
            }
        }
        if let Some(a) = &self.admin {
            s += &format!("  admin http://{} (/metrics, /healthz, /readyz)\n", a.addr);
        }
        for r in &self.routes {
            let host = match &r.host {
                HostMatch::Any => "*".to_string(),
                HostMatch::Exact(h) => h.clone(),
                HostMatch::Suffix(h) => format!("*{h}"),
            };
            let mut when = String::new();
            if !r.methods.is_empty() {
                when += &format!(" {}", r.methods.join(","));
            }
            for h in &r.match_headers {
                when += &match &h.value {
                    HeaderValueMatch::Exact(v) => format!(" {}={v:?}", h.name),
                    HeaderValueMatch::Prefix(v) => format!(" {}={v:?}*", h.name),
                    HeaderValueMatch::Present(true) => format!(" {}", h.name),
                    HeaderValueMatch::Present(false) => format!(" !{}", h.name),
                };
            }
            s += &format!(
                "  route {host}{}{when} -> {}{}\n",
                r.path_prefix,
                self.upstreams[r.upstream].name,
                if r.strip_prefix {
                    " (strip prefix)"
                } else {
                    ""
                }
            );
        }
        for u in &self.upstreams {
            let servers: Vec<String> = u
                .servers
                .iter()
                .map(|s| format!("{} ({})", s.name, s.addr))
                .collect();
            s += &format!("  upstream {}: {}\n", u.name, servers.join(", "));
        }
        s
    }
}
