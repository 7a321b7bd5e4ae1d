//! ⑨ The log line of an upstream failure: at `warn`, naming the upstream, the server
//! address, the route, the method and the path (so that with two pools one can tell
//! which fails), and counting it in `ringgate_upstream_errors_total{kind}`.
//!
//! A dead upstream fails every request sent to it, so the lines are rate-limited: at
//! most one per upstream per [`LOG_INTERVAL`] per worker; the next line says how many
//! were left out (`suppressed=N`). The limiter's state is the worker's own (a thread
//! local: no lock, nothing shared), keyed by upstream name so a reload keeps it. The
//! counters count every failure, logged or not.
//!
//! Runs on the worker: it allocates only for a line it writes (the path as text) and
//! for the first failure of an upstream name (its limiter slot).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::WorkerMetrics;
use crate::error::ProxyError;
use crate::generation::Generation;
use crate::message::Request;

/// At most one line per upstream per worker this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// One upstream's limiter on one worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl Limiter {
    /// Whether a failure at `now` is logged: `Some(n)` with the `n` failures left out
    /// since the last line, or `None` (this one is left out and counted).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

thread_local! {
    /// This worker's limiters by upstream name (a handful; scanned in order).
    static LIMITERS: RefCell<Vec<(Box<str>, Limiter)>> = const { RefCell::new(Vec::new()) };
}

/// Counts an upstream failure of the exchange of `req` on `generation` and logs it
/// (rate-limited). `route` is the index of the route taken; `server` the address of
/// the server tried, when the exchange knows it (the error's own address wins: a
/// failed connect names the server it tried).
pub fn upstream_failed(
    metrics: &WorkerMetrics,
    generation: &Generation,
    route: Option<usize>,
    server: Option<SocketAddr>,
    req: &Request,
    e: &ProxyError,
) {
    metrics.upstream_error(e.kind);
    let config = &generation.config;
    let route = route.and_then(|i| config.routes.get(i));
    let upstream = route
        .and_then(|r| config.upstreams.get(r.upstream))
        .map_or("-", |u| u.name.as_str());
    let Some(suppressed) = admit(upstream, crate::clock::now().into_std()) else {
        return;
    };
    let server = e.server.or(server);
    tracing::warn!(
        upstream,
        server = %server.map_or_else(|| "-".to_string(), |a| a.to_string()),
        route = %route.map_or_else(|| "-".to_string(), |r| format!("{}{}", host_label(r), r.path_prefix)),
        method = %String::from_utf8_lossy(&req.method),
        path = %String::from_utf8_lossy(&req.path),
        client = %req.client.addr,
        kind = crate::observe::metrics::UPSTREAM_ERROR_KINDS
            [crate::observe::metrics::upstream_error_index(e.kind)],
        error = %e,
        suppressed,
        "upstream failed"
    );
}

fn host_label(r: &crate::config::RouteConfig) -> String {
    use crate::config::HostMatch;
    match &r.host {
        HostMatch::Any => String::new(),
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Suffix(s) => format!("*{s}"),
    }
}

fn admit(upstream: &str, now: Instant) -> Option<u64> {
    LIMITERS.with(|l| {
        let mut l = l.borrow_mut();
        let i = match l.iter().position(|(name, _)| &**name == upstream) {
            Some(i) => i,
            None => {
                l.push((upstream.into(), Limiter::default()));
                l.len() - 1
            }
        };
        l[i].1.admit(now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_says_how_many_were_left_out() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut l = Limiter::default();
        assert_eq!(l.admit(at(0)), Some(0));
        assert_eq!(l.admit(at(1)), None);
        assert_eq!(l.admit(at(999)), None);
        assert_eq!(l.admit(at(1000)), Some(2));
        assert_eq!(l.admit(at(1500)), None);
        assert_eq!(l.admit(at(5000)), Some(1));
        assert_eq!(l.admit(at(6000)), Some(0));
    }

    #[test]
    fn each_upstream_has_its_own_limiter() {
        let t = Instant::now();
        assert_eq!(admit("a-test", t), Some(0));
        assert_eq!(admit("b-test", t), Some(0), "another upstream still logs");
        assert_eq!(admit("a-test", t), None);
        assert_eq!(admit("b-test", t), None);
    }
}
