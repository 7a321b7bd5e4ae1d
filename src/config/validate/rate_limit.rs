//! Checks of `[rate_limit.NAME]`, a route's `rate_limit = [...]` and a listener's
//! `max_connections_per_ip`: each wrong value becomes an error naming file, line and
//! field, as nginx's `limit_req_zone` / `limit_req` / `limit_conn` refuse them.

use std::collections::HashMap;

use toml::Spanned;

use super::Validator;
use crate::config::rate_limit::{LimitKey, RateLimitConfig, parse_rate};
use crate::config::rate_limit::{MAX_BURST, MAX_RATE_PER_SECOND};
use crate::config::raw::{RawConfig, RawRateLimit};

/// Most limits one route may name (each is one table update per request).
pub(crate) const MAX_LIMITS_PER_ROUTE: usize = 8;
/// Default `max_keys`: about 64 MiB of table at most, touched as keys arrive (nginx: a
/// 64 MiB zone holds about a million keys).
const DEFAULT_MAX_KEYS: i64 = 1_000_000;
const MAX_MAX_KEYS: i64 = 16_000_000;

impl Validator<'_> {
    /// Every `[rate_limit.NAME]`, in name order, and each good one's index by name.
    pub(super) fn rate_limits(
        &mut self,
        raw: &RawConfig,
    ) -> (Vec<RateLimitConfig>, HashMap<String, usize>) {
        let mut out = Vec::new();
        let mut index = HashMap::new();
        for (name, spanned) in &raw.rate_limit {
            let field = format!("rate_limit.{}", crate::config::schema::key(name));
            if let Some(c) = self.rate_limit(name, &field, spanned) {
                index.insert(name.clone(), out.len());
                out.push(c);
            }
        }
        (out, index)
    }

    fn rate_limit(
        &mut self,
        name: &str,
        field: &str,
        spanned: &Spanned<RawRateLimit>,
    ) -> Option<RateLimitConfig> {
        let raw = spanned.get_ref();
        let before = self.errors.len();
        let key = match self.required(&raw.key, spanned.span(), &format!("{field}.key")) {
            None => None,
            Some(k) => match parse_key(k.get_ref()) {
                Ok(key) => Some(key),
                Err(msg) => {
                    self.error(Some(k.span()), &format!("{field}.key"), msg);
                    None
                }
            },
        };
        let rate = match self.required(&raw.rate, spanned.span(), &format!("{field}.rate")) {
            None => None,
            Some(r) => match parse_rate(r.get_ref(), MAX_RATE_PER_SECOND) {
                Ok(rate) => Some((rate, r.get_ref().clone())),
                Err(msg) => {
                    self.error(Some(r.span()), &format!("{field}.rate"), msg);
                    None
                }
            },
        };
        let max = MAX_BURST as i64;
        let burst = self.int(&raw.burst, &format!("{field}.burst"), 0, 0..=max) as u64;
        let delay = match (&raw.nodelay, &raw.delay) {
            (Some(n), Some(_)) if *n.get_ref() => {
                let msg = "nodelay and delay exclude each other: nodelay admits the whole burst \
                           at once, delay = N only its first N";
                self.error(Some(n.span()), &format!("{field}.nodelay"), msg);
                None
            }
            (Some(n), None) if *n.get_ref() => None,
            (_, d) => Some(self.int(d, &format!("{field}.delay"), 0, 0..=max) as u64),
        };
        let status = self.int(&raw.status, &format!("{field}.status"), 429, 400..=599) as u16;
        let max_keys = self.int(
            &raw.max_keys,
            &format!("{field}.max_keys"),
            DEFAULT_MAX_KEYS,
            1..=MAX_MAX_KEYS,
        ) as usize;
        let (key, (rate, rate_text)) = (key?, rate?);
        (self.errors.len() == before).then(|| RateLimitConfig {
            name: name.to_string(),
            key,
            rate,
            rate_text,
            burst,
            delay,
            status,
            max_keys,
        })
    }

    /// A route's `rate_limit = [...]` at `field`: indexes into the rate limits.
    pub(super) fn route_rate_limits(
        &mut self,
        raw: &RawConfig,
        field: &str,
        names: &Spanned<Vec<Spanned<String>>>,
        index: &HashMap<String, usize>,
    ) -> Option<Vec<usize>> {
        let before = self.errors.len();
        let field = format!("{field}.rate_limit");
        if names.get_ref().len() > MAX_LIMITS_PER_ROUTE {
            let msg = format!("at most {MAX_LIMITS_PER_ROUTE} rate limits per route");
            self.error(Some(names.span()), &field, msg);
        }
        let mut out = Vec::new();
        for (i, n) in names.get_ref().iter().enumerate() {
            let name = n.get_ref();
            match index.get(name) {
                Some(&k) if out.contains(&k) => {
                    let msg = format!("rate limit {name:?} is named twice");
                    self.error(Some(n.span()), &format!("{field}[{i}]"), msg);
                }
                Some(&k) => out.push(k),
                // Defined but wrong: reported at its table.
                None if raw.rate_limit.contains_key(name) => {}
                None => {
                    let known: Vec<&str> = raw.rate_limit.keys().map(String::as_str).collect();
                    let msg = format!(
                        "unknown rate limit {name:?} (defined: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                    self.error(Some(n.span()), &format!("{field}[{i}]"), msg);
                }
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// A listener's `max_connections_per_ip`.
    pub(super) fn max_connections_per_ip(
        &mut self,
        value: &Option<Spanned<i64>>,
        field: &str,
    ) -> Option<u32> {
        value.as_ref().map(|_| {
            self.int(
                value,
                &format!("{field}.max_connections_per_ip"),
                1,
                1..=1_000_000,
            ) as u32
        })
    }
}

/// A rate limit's `key`.
fn parse_key(k: &str) -> Result<LimitKey, String> {
    if k == "client_ip" {
        return Ok(LimitKey::ClientIp);
    }
    if k == "client_cert:dn" {
        return Ok(LimitKey::ClientCertDn);
    }
    if let Some(name) = k.strip_prefix("header:") {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!(
                "{k:?}: \"header:NAME\" needs a field name (a token)"
            ));
        }
        return Ok(LimitKey::Header(name.to_ascii_lowercase()));
    }
    if k == "api_key" || k.starts_with("jwt:") {
        return Err(format!(
            "{k:?} arrives with authentication (not yet available); use \"client_ip\", \
             \"header:NAME\" or \"client_cert:dn\""
        ));
    }
    Err(format!(
        "{k:?} is not a key: expected \"client_ip\", \"header:NAME\" or \"client_cert:dn\""
    ))
}
