//! The checked form of `[rate_limit.NAME]` (nginx's `limit_req_zone` + `limit_req`) and
//! of a listener's `max_connections_per_ip` (nginx's `limit_conn`), as
//! [`crate::policy::rate_limit`] and [`crate::policy::conn_limit`] use them. The checks
//! are in `validate/rate_limit.rs`.

/// The largest `burst` (and `delay`) the rate limiter's packed word can carry
/// (26 bits of milli-requests; `crate::policy::rate_limit::algo`).
pub const MAX_BURST: u64 = 65_535;
/// The largest rate, in requests per second: keeps the limiter's `rate * ms` exact.
pub const MAX_RATE_PER_SECOND: u64 = 1_000_000;

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address: an IPv4 address, or an IPv6 address's /64 (one subscriber's
    /// network). nginx: `$binary_remote_addr`.
    ClientIp,
    /// A request field's value (the first one; lower-case name). nginx: `$http_NAME`.
    Header(String),
    /// The verified client certificate's subject DN. nginx: `$ssl_client_s_dn`.
    ClientCertDn,
}

impl LimitKey {
    /// As written in the file.
    pub fn describe(&self) -> String {
        match self {
            LimitKey::ClientIp => "client_ip".to_string(),
            LimitKey::Header(h) => format!("header:{h}"),
            LimitKey::ClientCertDn => "client_cert:dn".to_string(),
        }
    }
}

/// One `[rate_limit.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub name: String,
    pub key: LimitKey,
    /// Milli-requests per second, as nginx keeps it (`10r/s` → 10,000; `600r/m` → 10,000).
    pub rate: u64,
    /// `rate` as written, for messages.
    pub rate_text: String,
    /// Requests of excess allowed. nginx: `burst=`.
    pub burst: u64,
    /// Requests of excess admitted at once; `None`: `nodelay` (all of them). nginx:
    /// `delay=` / `nodelay`; neither written: 0 (every excess request waits).
    pub delay: Option<u64>,
    /// The status of a refusal. nginx: `limit_req_status` (default 503 there, 429 here).
    pub status: u16,
    /// Keys remembered at once. nginx: the zone's size.
    pub max_keys: usize,
}

/// `"10r/s"` → 10,000 and `"600r/m"` → 10,000 milli-requests per second (nginx's
/// `rate * 1000 / scale`), with requests per second at most `max`.
pub fn parse_rate(text: &str, max: u64) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a rate: expected \"Nr/s\" or \"Nr/m\" (e.g. \"10r/s\")");
    let (n, scale) = if let Some(n) = text.strip_suffix("r/s") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix("r/m") {
        (n, 60)
    } else {
        return Err(bad());
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = n.parse().map_err(|_| bad())?;
    if n == 0 || n / scale > max || (scale == 1 && n > max) {
        return Err(format!("{text:?}: the rate must be from 1r/m to {max}r/s"));
    }
    Ok(n * 1000 / scale)
}
