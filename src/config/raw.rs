//! What the user wrote: serde structs that mirror the TOML file one to one.
//!
//! Nothing here reads files or checks meaning; [`super::validate`] turns a [`RawConfig`]
//! into a [`super::Config`]. Fields that are checked later keep their source span
//! ([`Spanned`]) so an error can name the TOML line. Unknown keys are rejected, so a typo
//! is an error, not a silently ignored setting.
//!
//! Adding a setting is one field here (plus its check in [`super::validate`]): every
//! struct keeps `deny_unknown_fields`, which gives [`super::schema`] the table's known
//! keys for its "did you mean" suggestions. A required key is still an `Option` here,
//! and [`super::validate`] reports it missing: a struct that fails to deserialize takes
//! its whole table out of the checks, a missing `Option` only itself.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub http: RawHttp,
    /// `[http2]`: the HTTP/2 session's limits and flood budgets.
    #[serde(default)]
    pub http2: super::http2::RawHttp2,
    #[serde(default)]
    pub listener: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub upstream: BTreeMap<String, Spanned<RawUpstream>>,
    /// `[admin]`: absent means no admin listener.
    pub admin: Option<Spanned<RawAdmin>>,
    /// `[rate_limit.NAME]`: request rate limits routes name. nginx: `limit_req_zone`.
    #[serde(default)]
    pub rate_limit: BTreeMap<String, Spanned<RawRateLimit>>,
}

/// `[rate_limit.NAME]`: nginx's `limit_req_zone` and `limit_req` in one table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Required: `"client_ip"`, `"header:NAME"`, `"client_cert:dn"` (`"jwt:CLAIM"` and
    /// `"api_key"` arrive with authentication). nginx: the zone's key.
    pub key: Option<Spanned<String>>,
    /// Required: `"10r/s"` or `"600r/m"`. nginx: `rate=`.
    pub rate: Option<Spanned<String>>,
    /// Excess requests allowed (default 0). nginx: `burst=`.
    pub burst: Option<Spanned<i64>>,
    /// Admit the whole burst at once. nginx: `nodelay`.
    pub nodelay: Option<Spanned<bool>>,
    /// Admit this much of the burst at once, delay the rest. nginx: `delay=`.
    pub delay: Option<Spanned<i64>>,
    /// Status of a refusal (default 429). nginx: `limit_req_status`.
    pub status: Option<Spanned<i64>>,
    /// Keys remembered (default 1,000,000). nginx: the zone size.
    pub max_keys: Option<Spanned<i64>>,
}

/// `[admin]`: the metrics and health listener (plain HTTP; bind it to loopback or a
/// management network). nginx: a `stub_status` location on its own `listen`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Required.
    pub addr: Option<Spanned<String>>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `"auto"` (one per core) or a number. nginx: `worker_processes`.
    pub workers: Option<Spanned<toml::Value>>,
    /// Grace period for in-flight requests after SIGTERM/SIGINT. nginx: `worker_shutdown_timeout`.
    pub shutdown_timeout_ms: Option<Spanned<i64>>,
    /// Open connections per worker before new ones are refused. nginx: `worker_connections`.
    pub max_connections_per_worker: Option<Spanned<i64>>,
    /// `"auto"` (io_uring, epoll fallback) or `"off"` (always epoll).
    pub io_uring: Option<Spanned<String>>,
    /// Pin each worker thread to one core (default true).
    pub pin_workers: Option<bool>,
    /// File `ringgate run` writes its process id to, and `ringgate reload` reads.
    /// nginx: `pid`.
    pub pid_file: Option<Spanned<String>>,
    /// How often certificate and key files are compared by content with what is loaded;
    /// a change reloads the configuration (default 5000, 0 = never). nginx has none.
    pub certificate_check_interval_ms: Option<Spanned<i64>>,
}

/// `[http]`: client-side HTTP/1.1 limits and timeouts, shared by all listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// nginx: `large_client_header_buffers` size for the request line → 414.
    pub max_request_line_bytes: Option<Spanned<i64>>,
    /// Whole request head → 431.
    pub max_header_bytes: Option<Spanned<i64>>,
    /// Number of header fields → 431.
    pub max_headers: Option<Spanned<i64>>,
    /// nginx: `client_max_body_size` (0 = unlimited) → 413.
    pub max_request_body_bytes: Option<Spanned<i64>>,
    /// nginx: `client_header_timeout`: the whole head must arrive within it.
    pub client_header_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `client_body_timeout`: longest gap between two body reads.
    pub client_body_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `send_timeout`: longest a single write to the client may stall.
    pub send_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `keepalive_timeout`: idle time allowed between requests.
    pub keepalive_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `keepalive_requests`.
    pub keepalive_requests: Option<Spanned<i64>>,
    /// Content-Length bodies at least this large are spliced socket → pipe → socket when
    /// the client side is plain TCP or kernel TLS (0 = never). nginx: `sendfile` + `aio`.
    pub splice_threshold_bytes: Option<Spanned<i64>>,
    /// nginx: `lingering_time`: how long, at most, a connection closed with request
    /// bytes still unread (an early response) keeps reading and dropping them.
    pub lingering_time_ms: Option<Spanned<i64>>,
    /// nginx: `lingering_timeout`: the longest wait for more of those bytes.
    pub lingering_timeout_ms: Option<Spanned<i64>>,
    /// An upgraded connection (WebSocket) with no byte either way for this long is
    /// closed (default 3,600,000: an hour). nginx: `proxy_read_timeout` on the location.
    pub tunnel_idle_timeout_ms: Option<Spanned<i64>>,
    /// Upgraded connections (tunnels) open at once per worker; an upgrade over it gets
    /// 503 (default 10,000). nginx: bounded by `worker_connections` only.
    pub max_tunnels: Option<Spanned<i64>>,
    /// The forwarding fields added to requests sent upstream, any of `x-forwarded-for`,
    /// `forwarded`, `x-real-ip`, `x-forwarded-proto` (default: all four; `[]`: none).
    /// nginx: `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` and friends.
    pub forward_headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Drop empty path segments before routing (`//a` → `/a`; default true). nginx:
    /// `merge_slashes`; Envoy: `merge_slashes`.
    pub merge_slashes: Option<bool>,
    /// `%2F`, `%5C` and `\` in a path: `"reject"` (400, default), `"keep"` (matched and
    /// forwarded encoded) or `"decode"` (a `/` before matching). Envoy:
    /// `path_with_escaped_slashes_action`.
    pub escaped_slashes: Option<Spanned<String>>,
    /// A malformed `Forwarded` / `X-Forwarded-For` the proxy would extend: `"drop"` it
    /// (default) or `"reject"` the request (400). nginx and Envoy have none.
    pub malformed_forwarding_headers: Option<Spanned<String>>,
}

/// `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Required.
    pub addr: Option<Spanned<String>>,
    /// nginx: `listen ... backlog=`.
    pub backlog: Option<Spanned<i64>>,
    /// Absent: plain HTTP.
    pub tls: Option<Spanned<RawTls>>,
    /// Open connections one client IP may hold on this listener, across all workers;
    /// the next is closed at accept. nginx: `limit_conn` on `$binary_remote_addr`.
    pub max_connections_per_ip: Option<Spanned<i64>>,
    /// Expect a PROXY protocol header (v1 or v2) before anything else, and take the
    /// client's address from it. nginx: `listen … proxy_protocol`; HAProxy: `accept-proxy`.
    pub proxy_protocol: Option<Spanned<bool>>,
    /// Required with `proxy_protocol`: the balancers allowed to send the header (CIDRs);
    /// a connection from anywhere else is closed. nginx: `set_real_ip_from`.
    pub proxy_protocol_from: Option<Spanned<Vec<Spanned<String>>>>,
    /// CIDRs allowed to connect (longest prefix wins; with any `allow`, what no prefix
    /// matches is denied). nginx: `allow`.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// CIDRs refused at accept, before the handshake. nginx: `deny`.
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// Peers whose `X-Forwarded-For` is believed (walked from the right, trusted entries
    /// skipped). nginx: `set_real_ip_from` + `real_ip_header X-Forwarded-For` +
    /// `real_ip_recursive on`.
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[listener.security_headers]`: on every response of the listener (routes without
    /// their own table). nginx: `add_header … always` in the `server` block.
    pub security_headers: Option<Spanned<RawSecurityHeaders>>,
    /// `[[listener.request_headers]]`. nginx: `proxy_set_header` in the `server` block.
    pub request_headers: Option<Vec<Spanned<RawHeaderRule>>>,
    /// `[[listener.response_headers]]`. nginx: `add_header … always`, `proxy_hide_header`.
    pub response_headers: Option<Vec<Spanned<RawHeaderRule>>>,
    /// A plain listener that answers every request with a redirect to
    /// `https://HOST[:port]PATH?QUERY` (HOST one this configuration serves over TLS).
    /// nginx: `return 308 https://$host$request_uri;`.
    pub redirect_https: Option<Spanned<bool>>,
    /// The redirect's status: 308 (default) or 301. nginx: the `return` code.
    pub redirect_status: Option<Spanned<i64>>,
    /// The HTTPS port in `Location` (default 443, left out).
    pub redirect_https_port: Option<Spanned<i64>>,
    /// TLS listeners: the application protocols offered, in preference order (default
    /// `["h2", "http/1.1"]`). nginx: `http2 on`; HAProxy: `alpn h2,http/1.1`.
    pub alpn: Option<Spanned<Vec<Spanned<String>>>>,
    /// Plain listeners: HTTP/2 with prior knowledge (h2c) beside HTTP/1.1, told apart by
    /// the connection preface (default false).
    pub h2c: Option<Spanned<bool>>,
}

/// `[listener.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Required.
    pub certificates: Option<Spanned<Vec<Spanned<RawCertificate>>>>,
    /// `"1.2"` (default) or `"1.3"`. nginx: `ssl_protocols`.
    pub min_version: Option<Spanned<String>>,
    /// nginx has none (it rides on `client_header_timeout`).
    pub handshake_timeout_ms: Option<Spanned<i64>>,
    /// Server-side session cache entries (TLS 1.2 session IDs). nginx: `ssl_session_cache`.
    pub session_cache_entries: Option<Spanned<i64>>,
    /// Issue session tickets (default true). nginx: `ssl_session_tickets`.
    pub session_tickets: Option<bool>,
    /// `"auto"`, `"on"` or `"off"`: kernel TLS offload after the handshake.
    pub ktls: Option<Spanned<String>>,
    /// `"ringgate"` (default) or `"rustls"`: who seals and opens records after the
    /// handshake where the kernel does not.
    pub record_layer: Option<Spanned<String>>,
    /// Cipher suites allowed, in the server's order of preference (IANA names, e.g.
    /// `"TLS13_AES_128_GCM_SHA256"`). nginx: `ssl_ciphers` + `ssl_conf_command
    /// Ciphersuites` with `ssl_prefer_server_ciphers on`. Absent: all AEAD suites,
    /// client's order.
    pub cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    /// Key-exchange groups allowed (`"X25519MLKEM768"`, `"X25519"`, `"secp256r1"`, …).
    /// nginx: `ssl_ecdh_curve`. Absent: X25519, secp256r1, secp384r1, X25519MLKEM768.
    pub kx_groups: Option<Spanned<Vec<Spanned<String>>>>,
    /// Session-ticket key files a fleet shares (80 or 48 bytes each); the first encrypts,
    /// all decrypt. nginx: `ssl_session_ticket_key`. Absent: a random key per process.
    pub session_ticket_keys: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[listener.tls.client_auth]`: client certificates (mTLS). Absent: none asked for.
    pub client_auth: Option<Spanned<RawClientAuth>>,
    /// `[listener.tls.client_identity_headers]`: the verified client certificate as
    /// request fields for the upstream. nginx: `proxy_set_header X-SSL-Client-* $ssl_client_*`.
    pub client_identity_headers: Option<Spanned<RawIdentityHeaders>>,
}

/// `[listener.tls.client_identity_headers]`. Each field key takes a field name, `true`
/// (its default name) or `false` (not sent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityHeaders {
    /// Add the fields (default: true once this table is written or client auth is on).
    pub enabled: Option<bool>,
    /// `X-SSL-Client-Verify`. nginx: `$ssl_client_verify`.
    pub verify: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-DN`. nginx: `$ssl_client_s_dn`.
    pub dn: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-I-DN`. nginx: `$ssl_client_i_dn`.
    pub issuer_dn: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-Serial`. nginx: `$ssl_client_serial`.
    pub serial: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-Fingerprint` (SHA-256). nginx: `$ssl_client_fingerprint` (SHA-1).
    pub fingerprint: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-Cert`. nginx: `$ssl_client_escaped_cert`.
    pub cert: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-SAN-URI`.
    pub san_uri: Option<Spanned<toml::Value>>,
    /// `X-SSL-Client-SAN-DNS`.
    pub san_dns: Option<Spanned<toml::Value>>,
    /// Off by default; `true`: `X-SSL-Client-SAN-Email`.
    pub san_email: Option<Spanned<toml::Value>>,
    /// Envoy: `forward_client_cert_details` (`"sanitize"` default, `"forward_only"`,
    /// `"append_forward"`, `"sanitize_set"`, `"always_forward_only"`).
    pub forward_client_cert: Option<Spanned<String>>,
    /// Envoy: `set_current_client_cert_details`, any of `"cert"`, `"subject"`, `"uri"`,
    /// `"dns"` (default: subject, uri, dns).
    pub set_current_client_cert_details: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[listener.tls.client_auth]`, or a certificate entry's `client_auth = { ... }`
/// (which replaces the listener's for that entry's SNI names, as a whole).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    /// PEM bundle of trusted client CAs. nginx: `ssl_client_certificate`.
    pub ca: Option<Spanned<String>>,
    /// CRL files (PEM or DER). nginx: `ssl_crl` (one file there).
    pub crl: Option<Spanned<Vec<Spanned<String>>>>,
    /// `"required"` (default), `"optional"` or `"off"`. nginx: `ssl_verify_client`.
    pub verify: Option<Spanned<String>>,
    /// Most certificates below the trust anchor, leaf included (default 2). nginx:
    /// `ssl_verify_depth` (which counts intermediates only: its N is our N + 1).
    pub depth: Option<Spanned<i64>>,
    /// A CRL past its next update: `"refuse"` (default) or `"ignore"`.
    pub crl_expired: Option<Spanned<String>>,
}

/// One certificate chain and its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// Required.
    pub cert: Option<Spanned<String>>,
    /// Required.
    pub key: Option<Spanned<String>>,
    /// SNI names this certificate answers for; default: the DNS names in its SAN.
    pub server_names: Option<Vec<Spanned<String>>>,
    /// Served when SNI is absent or matches nothing (default: the first certificate).
    #[serde(default)]
    pub default: bool,
    /// Client-certificate settings for this entry's names, replacing the listener's.
    pub client_auth: Option<Spanned<RawClientAuth>>,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Exact name or `*.example.com`; absent: any host.
    pub host: Option<Spanned<String>>,
    /// Longest prefix wins (default `/`). nginx: `location /prefix/`.
    pub path_prefix: Option<Spanned<String>>,
    /// Remove `path_prefix` before forwarding (nginx: `proxy_pass http://up/;`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Required.
    pub upstream: Option<Spanned<String>>,
    /// `[route.client_cert]`: require a verified client certificate, optionally from
    /// listed subjects. nginx: `if ($ssl_client_verify != SUCCESS) { return 403; }`.
    pub client_cert: Option<Spanned<RawRouteClientCert>>,
    /// Names of `[rate_limit.NAME]` tables that count this route's requests (all are
    /// accounted; the first refusal answers). nginx: `limit_req zone=NAME`.
    pub rate_limit: Option<Spanned<Vec<Spanned<String>>>>,
    /// CIDRs allowed on this route (403 otherwise when any is given). nginx: `allow` in
    /// a `location`.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// CIDRs refused on this route (403). nginx: `deny` in a `location`.
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[route.security_headers]`: replaces the listener's table, as a whole, for this
    /// route (nginx: `add_header` in a `location` replaces the `server`'s).
    pub security_headers: Option<Spanned<RawSecurityHeaders>>,
    /// `[[route.request_headers]]`, after the listener's. nginx: `proxy_set_header`.
    pub request_headers: Option<Vec<Spanned<RawHeaderRule>>>,
    /// `[[route.response_headers]]`, after the listener's. nginx: `add_header … always`,
    /// `proxy_hide_header`.
    pub response_headers: Option<Vec<Spanned<RawHeaderRule>>>,
    /// `[route.cors]`: cross-origin requests answered by the gateway.
    pub cors: Option<Spanned<RawCors>>,
    /// Request methods the route takes (absent: any), exact and case-sensitive tokens.
    /// Kong: `methods`; Envoy: a `:method` header matcher; nginx: `limit_except`.
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[[route.headers]]`: request header conditions, every one must hold.
    /// Envoy: `headers` (`HeaderMatcher`); Kong: `headers`.
    #[serde(default)]
    pub headers: Vec<Spanned<RawHeaderMatch>>,
    /// Overrides `[http] max_request_body_bytes` here (0 = unlimited) → 413. nginx:
    /// `client_max_body_size` in a `location`.
    pub max_request_body_bytes: Option<Spanned<i64>>,
    /// The `Upgrade` protocols tunnelled on this route (default `["websocket"]`; `[]`:
    /// none). A request asking another one is served as plain HTTP, its Upgrade not
    /// forwarded. nginx: `proxy_set_header Upgrade $http_upgrade; proxy_set_header
    /// Connection "upgrade"`.
    pub upgrade: Option<Spanned<Vec<Spanned<String>>>>,
    /// Origins a WebSocket upgrade may come from (absent: any); another or none → 403.
    /// nginx: `if ($http_origin !~ ...) { return 403; }`.
    pub websocket_origins: Option<Spanned<Vec<Spanned<String>>>>,
    /// Overrides `[http] tunnel_idle_timeout_ms` on this route. nginx:
    /// `proxy_read_timeout` in the `location`.
    pub tunnel_idle_timeout_ms: Option<Spanned<i64>>,
}

/// `[[route.headers]]`: one request header condition; `name` and exactly one of
/// `exact`, `prefix`, `present` (Envoy's `HeaderMatcher` names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    /// Required. The field name, any case.
    pub name: Option<Spanned<String>>,
    /// A field with exactly this value (case-sensitive). Envoy: `string_match.exact`.
    pub exact: Option<Spanned<String>>,
    /// A field whose value starts with this. Envoy: `string_match.prefix`.
    pub prefix: Option<Spanned<String>>,
    /// `true`: the field is there, any value; `false`: it is absent. Envoy: `present_match`.
    pub present: Option<Spanned<bool>>,
}

/// `[route.client_cert]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteClientCert {
    /// A verified client certificate is needed (default true).
    pub required: Option<bool>,
    /// Subject DNs (RFC 4514, exact) or SANs (DNS name, URI, email; a trailing `*`
    /// matches any rest) allowed; absent: any verified certificate.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[upstream.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Required. `host:port`; names are resolved once, at load.
    pub servers: Option<Spanned<Vec<Spanned<String>>>>,
    /// `"round_robin"` (default) or `"least_conn"`.
    pub balance: Option<Spanned<String>>,
    /// nginx: `proxy_connect_timeout`.
    pub connect_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `proxy_read_timeout`: longest gap between two reads from the upstream.
    pub read_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `proxy_send_timeout`: longest a write to the upstream may stall.
    pub write_timeout_ms: Option<Spanned<i64>>,
    /// Idle keep-alive connections kept per server per worker. nginx: `keepalive`.
    pub keepalive: Option<Spanned<i64>>,
    /// nginx: `keepalive_timeout` in the upstream block.
    pub keepalive_timeout_ms: Option<Spanned<i64>>,
    /// nginx: `keepalive_requests` in the upstream block.
    pub keepalive_requests: Option<Spanned<i64>>,
    /// Largest response head accepted (→ 502). nginx: `proxy_buffer_size` (4k/8k).
    pub max_response_header_bytes: Option<Spanned<i64>>,
    /// Most header fields in a response head (→ 502). nginx has no count limit: its
    /// default 4 KiB `proxy_buffer_size` holds at most ~1,000 fields.
    pub max_response_headers: Option<Spanned<i64>>,
    /// The wire spoken to the servers: `"http1"` (default) or `"h2"` (HTTP/2 with prior
    /// knowledge, h2c; pooled, multiplexed connections — gRPC upstreams). nginx:
    /// `grpc_pass grpc://` (h2c) instead of `proxy_pass`.
    pub protocol: Option<Spanned<String>>,
    /// `protocol = "h2"`: streams open at once on one connection (default 100; the
    /// server's SETTINGS_MAX_CONCURRENT_STREAMS lowers it); one more opens a new
    /// connection. Envoy: `max_concurrent_streams` in `http2_protocol_options`.
    pub max_concurrent_streams: Option<Spanned<i64>>,
    /// TLS to the servers (`protocol = "h2"`: ALPN h2, gRPC over TLS). nginx:
    /// `grpc_pass grpcs://`; Envoy: an `UpstreamTlsContext`.
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

/// `[upstream.NAME.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// PEM file of the CAs the servers' certificates must chain to (default: the
    /// system's trust anchors). nginx: `grpc_ssl_trusted_certificate` with
    /// `grpc_ssl_verify on`; Envoy: `validation_context.trusted_ca`.
    pub ca: Option<Spanned<String>>,
    /// The SNI sent and the name the certificate must carry (default: each server's
    /// host as written in `servers`). nginx: `grpc_ssl_name`; Envoy: `sni`.
    pub server_name: Option<Spanned<String>>,
}

/// `[listener.security_headers]` / `[route.security_headers]`: each key absent is a field
/// not sent. nginx: `add_header NAME VALUE always`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityHeaders {
    /// `Strict-Transport-Security` (HTTPS responses only), e.g.
    /// `"max-age=31536000; includeSubDomains"`.
    pub hsts: Option<Spanned<String>>,
    /// `X-Content-Type-Options`: `"nosniff"`.
    pub content_type_options: Option<Spanned<String>>,
    /// `X-Frame-Options`: `"DENY"` or `"SAMEORIGIN"`.
    pub frame_options: Option<Spanned<String>>,
    /// `Content-Security-Policy`.
    pub content_security_policy: Option<Spanned<String>>,
    /// `Referrer-Policy`, e.g. `"strict-origin-when-cross-origin"`.
    pub referrer_policy: Option<Spanned<String>>,
    /// Any other fields: `{ "Permissions-Policy" = "geolocation=()" }`.
    pub custom: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Replace a field of the same name the upstream sent (default false: the
    /// upstream's stays, ours is not added).
    #[serde(rename = "override")]
    pub override_upstream: Option<bool>,
}

/// One `[[…request_headers]]` / `[[…response_headers]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRule {
    /// Required: `"add"`, `"set"` or `"remove"`.
    pub action: Option<Spanned<String>>,
    /// Required.
    pub name: Option<Spanned<String>>,
    /// Required for add and set; not allowed for remove.
    pub value: Option<Spanned<String>>,
}

/// `[route.cors]`. Envoy: the `cors` policy of a route; nginx: `add_header
/// Access-Control-*` behind a `map $http_origin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Required: origins (`"https://app.example.com"`, `"https://*.example.com"`) or
    /// `["*"]`. Envoy: `allow_origin_string_match`.
    pub allow_origins: Option<Spanned<Vec<Spanned<String>>>>,
    /// Default `["GET", "HEAD", "POST"]`. Envoy: `allow_methods`.
    pub allow_methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Request fields a page may send. Envoy: `allow_headers`.
    pub allow_headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Response fields a page may read. Envoy: `expose_headers`.
    pub expose_headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Default false. Envoy: `allow_credentials`.
    pub allow_credentials: Option<bool>,
    /// How long a browser may cache a preflight's answer. Envoy: `max_age`.
    pub max_age_secs: Option<Spanned<i64>>,
}
