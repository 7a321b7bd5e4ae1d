//! ⑦ Routing: Host + longest path prefix + methods and headers → route.
//!
//! Compiled once at load into a table shared read-only by all workers. Host matching
//! tries the exact name, then wildcards from the most specific suffix, then host-less
//! routes. Within a host pattern, a route matches a request when its `path_prefix` is a
//! byte prefix of the path (like nginx's prefix `location`), the request's method is one
//! of its `methods` (if it lists any) and every `[[route.headers]]` condition holds; the
//! route with the longest matching prefix wins, and among routes with the same prefix
//! the first in config order. A route whose methods or headers do not match is passed
//! over as if absent: the request goes to the next shorter prefix, then the next host
//! pattern — as Kong's router and Envoy's ordered route list (specific routes first,
//! catch-all last) do. No route → the proxy answers 404 (Envoy and Kong do too; no 405
//! when only the methods failed: the route a 405 would speak for does not exist for that
//! method).
//!
//! Each host pattern's prefixes sit in a radix tree over path bytes ([`trie`]): a lookup
//! costs the length of the path, not the number of routes; it never allocates.
//!
//! The path it is given is the normalised one ([`crate::uri::normalize`]): routes match,
//! and `strip_prefix` cuts, what the upstream will receive. A strip that would leave a
//! dot-segment first (`/api..` under `path_prefix = "/api"`) is refused
//! ([`PathReject::DotAfterPrefix`], 400).

use std::collections::HashMap;

use crate::config::{HeaderMatch, HeaderValueMatch, HostMatch, RouteConfig};
use crate::message::{Header, Request};
use crate::uri::{self, PathReject};

mod trie;

use trie::PrefixTrie;

/// The request fields a route's conditions look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a [u8],
    pub headers: &'a [Header],
}

impl<'a> RequestView<'a> {
    /// The method and fields of `req`, as the session received them.
    pub fn of(req: &'a Request) -> Self {
        RequestView {
            method: &req.method,
            headers: &req.headers,
        }
    }
}

/// The routes of one host pattern, by path prefix.
#[derive(Debug, Default)]
struct PrefixTable {
    /// In config order; the trie's entries index it.
    routes: Vec<RouteConfig>,
    /// Per route: it has methods or header conditions to check (most have none).
    conditional: Vec<bool>,
    trie: PrefixTrie,
}

impl PrefixTable {
    fn insert(&mut self, r: RouteConfig) {
        // Tables hold at most the routes of one file, far below u32::MAX.
        let entry = self.routes.len() as u32;
        self.trie.insert(r.path_prefix.as_bytes(), entry);
        self.conditional
            .push(!r.methods.is_empty() || !r.match_headers.is_empty());
        self.routes.push(r);
    }

    fn find(&self, path: &[u8], req: RequestView<'_>) -> Option<&RouteConfig> {
        self.trie
            .longest(path, |e| {
                !self.conditional[e as usize] || accepts(&self.routes[e as usize], req)
            })
            .map(|e| &self.routes[e as usize])
    }
}

/// Whether `route`'s methods and header conditions hold for `req`.
fn accepts(route: &RouteConfig, req: RequestView<'_>) -> bool {
    (route.methods.is_empty() || route.methods.iter().any(|m| m.as_bytes() == req.method))
        && route
            .match_headers
            .iter()
            .all(|h| header_holds(h, req.headers))
}

/// Whether one `[[route.headers]]` condition holds: for `exact` and `prefix`, any field
/// of that name with such a value (surrounding whitespace not counted).
fn header_holds(m: &HeaderMatch, headers: &[Header]) -> bool {
    let mut fields = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(m.name.as_bytes()))
        .map(|h| h.value.trim_ascii());
    match &m.value {
        HeaderValueMatch::Present(wanted) => fields.next().is_some() == *wanted,
        HeaderValueMatch::Exact(v) => fields.any(|f| f == v.as_bytes()),
        HeaderValueMatch::Prefix(v) => fields.any(|f| f.starts_with(v.as_bytes())),
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

    /// Finds the route for a lower-case `host` (no port), normalised `path`, and the
    /// method and fields in `req`.
    pub fn select(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        req: RequestView<'_>,
    ) -> Option<Selected<'_>> {
        if let Some(host) = host {
            if let Some(t) = self.exact.get(host)
                && let Some(route) = t.find(path, req)
            {
                return Some(Selected { route });
            }
            if !self.suffix.is_empty() {
                // "a.b.example.com" tries ".b.example.com", then ".example.com", then ".com".
                let mut i = 0;
                while let Some(dot) = host[i..].iter().position(|&b| b == b'.') {
                    let suffix = &host[i + dot..];
                    if let Some(t) = self.suffix.get(suffix)
                        && let Some(route) = t.find(path, req)
                    {
                        return Some(Selected { route });
                    }
                    i += dot + 1;
                }
            }
        }
        self.any.find(path, req).map(|route| Selected { route })
    }
}

#[cfg(test)]
mod tests;
