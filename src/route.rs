//! ⑥ Routing: Host + longest path prefix → upstream.
//!
//! Compiled once at load into a table shared read-only by all workers. Host matching
//! tries the exact name, then wildcards from the most specific suffix, then host-less
//! routes; within the chosen host, the longest `path_prefix` that the path starts with
//! wins (plain byte prefix, like nginx's prefix `location`). No match → the proxy answers
//! 404. Never allocates on lookup.
//!
//! The path it is given is the normalised one ([`crate::uri::normalize`]): routes match,
//! and `strip_prefix` cuts, what the upstream will receive. A strip that would leave a
//! dot-segment first (`/api..` under `path_prefix = "/api"`) is refused
//! ([`PathReject::DotAfterPrefix`], 400).

use std::collections::HashMap;

use crate::config::{HostMatch, RouteConfig};
use crate::uri::{self, PathReject};

/// The routes of one host pattern, longest prefix first.
#[derive(Debug, Default)]
struct PrefixTable {
    routes: Vec<RouteConfig>,
}

impl PrefixTable {
    fn insert(&mut self, r: RouteConfig) {
        self.routes.push(r);
        self.routes
            .sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
    }

    fn find(&self, path: &[u8]) -> Option<&RouteConfig> {
        self.routes
            .iter()
            .find(|r| path.starts_with(r.path_prefix.as_bytes()))
    }
}

/// The compiled routing table.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Vec<u8>, PrefixTable>,
    /// Keyed by `.example.com`.
    suffix: HashMap<Vec<u8>, PrefixTable>,
    any: PrefixTable,
}

/// A selected route.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    pub route: &'a RouteConfig,
}

impl<'a> Selected<'a> {
    /// The path to send upstream for the normalised `path` that selected this route: the
    /// same, or with the prefix removed (always starting with `/`, and still normal).
    pub fn upstream_path<'p>(
        &self,
        path: &'p [u8],
        scratch: &'p mut Vec<u8>,
    ) -> Result<&'p [u8], PathReject> {
        if !self.route.strip_prefix || self.route.path_prefix == "/" {
            return Ok(path);
        }
        let rest = &path[self.route.path_prefix.len()..];
        if rest.first() == Some(&b'/') {
            return Ok(rest);
        }
        if uri::starts_with_dot_segment(rest) {
            return Err(PathReject::DotAfterPrefix);
        }
        scratch.clear();
        scratch.push(b'/');
        scratch.extend_from_slice(rest);
        Ok(scratch)
    }
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut r = Router::default();
        for route in routes {
            match &route.host {
                HostMatch::Any => r.any.insert(route.clone()),
                HostMatch::Exact(h) => r
                    .exact
                    .entry(h.as_bytes().to_vec())
                    .or_default()
                    .insert(route.clone()),
                HostMatch::Suffix(s) => r
                    .suffix
                    .entry(s.as_bytes().to_vec())
                    .or_default()
                    .insert(route.clone()),
            }
        }
        r
    }

    /// Finds the route for a lower-case `host` (no port) and request `path`.
    pub fn select(&self, host: Option<&[u8]>, path: &[u8]) -> Option<Selected<'_>> {
        if let Some(host) = host {
            if let Some(t) = self.exact.get(host)
                && let Some(route) = t.find(path)
            {
                return Some(Selected { route });
            }
            if !self.suffix.is_empty() {
                // "a.b.example.com" tries ".b.example.com", then ".example.com", then ".com".
                let mut i = 0;
                while let Some(dot) = host[i..].iter().position(|&b| b == b'.') {
                    let suffix = &host[i + dot..];
                    if let Some(t) = self.suffix.get(suffix)
                        && let Some(route) = t.find(path)
                    {
                        return Some(Selected { route });
                    }
                    i += dot + 1;
                }
            }
        }
        self.any.find(path).map(|route| Selected { route })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: HostMatch, prefix: &str, upstream: usize, strip: bool) -> RouteConfig {
        RouteConfig {
            index: upstream,
            host,
            path_prefix: prefix.to_string(),
            strip_prefix: strip,
            upstream,
            client_cert: None,
            max_request_body_bytes: None,
        }
    }

    fn table() -> Router {
        Router::new(&[
            route(HostMatch::Exact("api.example.com".into()), "/", 0, false),
            route(HostMatch::Exact("api.example.com".into()), "/v1/", 1, true),
            route(HostMatch::Suffix(".example.com".into()), "/", 2, false),
            route(HostMatch::Any, "/static/", 3, false),
        ])
    }

    fn pick(r: &Router, host: &str, path: &str) -> Option<usize> {
        r.select(Some(host.as_bytes()), path.as_bytes())
            .map(|s| s.route.upstream)
    }

    #[test]
    fn exact_wildcard_any_and_longest_prefix() {
        let r = table();
        assert_eq!(pick(&r, "api.example.com", "/v1/users"), Some(1));
        assert_eq!(pick(&r, "api.example.com", "/v2/users"), Some(0));
        assert_eq!(pick(&r, "www.example.com", "/x"), Some(2));
        assert_eq!(pick(&r, "a.b.example.com", "/x"), Some(2));
        assert_eq!(pick(&r, "example.com", "/static/a"), Some(3));
        assert_eq!(pick(&r, "other.org", "/x"), None);
        assert_eq!(
            r.select(None, b"/static/x").map(|s| s.route.upstream),
            Some(3)
        );
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let r = table();
        let sel = r
            .select(Some(b"api.example.com"), b"/v1/users?x=1")
            .unwrap();
        let mut scratch = Vec::new();
        assert_eq!(
            sel.upstream_path(b"/v1/users?x=1", &mut scratch),
            Ok(&b"/users?x=1"[..])
        );
        let r2 = Router::new(&[route(HostMatch::Any, "/api", 0, true)]);
        let sel = r2.select(None, b"/api?q").unwrap();
        assert_eq!(sel.upstream_path(b"/api?q", &mut scratch), Ok(&b"/?q"[..]));
        assert_eq!(
            sel.upstream_path(b"/api.json", &mut scratch),
            Ok(&b"/.json"[..])
        );
    }

    #[test]
    fn a_strip_that_leaves_a_dot_segment_first_is_refused() {
        // `/api..` is a normal path (one segment "api.."), but stripping `/api` from it
        // would send `/..` upstream.
        let r = Router::new(&[route(HostMatch::Any, "/api", 0, true)]);
        let mut scratch = Vec::new();
        for path in ["/api..", "/api../admin", "/api./x", "/api.?q", "/api..?q"] {
            let sel = r.select(None, path.as_bytes()).unwrap();
            assert_eq!(
                sel.upstream_path(path.as_bytes(), &mut scratch),
                Err(PathReject::DotAfterPrefix),
                "{path}"
            );
        }
    }
}
