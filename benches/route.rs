//! Route lookup (`Router::select`): exact host, `*.wildcard` host, longest path prefix,
//! host-less fallback and miss, with 10 and 1,000 routes.
//!
//! Run: `cargo bench --bench route`. See benches/README.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringgate::config::{HostMatch, RouteConfig};
use ringgate::route::Router;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn route(host: HostMatch, prefix: &str, upstream: usize) -> RouteConfig {
    RouteConfig {
        index: upstream,
        host,
        path_prefix: prefix.to_string(),
        strip_prefix: false,
        upstream,
        client_cert: None,
        max_request_body_bytes: None,
    }
}

fn exact(h: &str) -> HostMatch {
    HostMatch::Exact(h.to_string())
}

/// `*.example.org` is stored as `.example.org` (config/mod.rs).
fn suffix(s: &str) -> HostMatch {
    HostMatch::Suffix(s.to_string())
}

/// 10 routes, a small site. No host-less `/` route, so lookups can miss.
fn ten_routes() -> Vec<RouteConfig> {
    vec![
        route(exact("api.example.com"), "/", 0),
        route(exact("api.example.com"), "/v1/", 1),
        route(exact("api.example.com"), "/v1/admin/", 2),
        route(exact("www.example.com"), "/", 3),
        route(exact("h123.example.com"), "/", 4),
        route(suffix(".example.com"), "/", 5),
        route(suffix(".t77.example.org"), "/", 6),
        route(suffix(".t77.example.org"), "/admin/", 7),
        route(HostMatch::Any, "/static99/", 8),
        route(HostMatch::Any, "/.well-known/acme-challenge/", 9),
    ]
}

/// 1,000 routes, a multi-tenant edge:
/// - 500 exact: `h000..h249.example.com` × {`/`, `/api/`}
/// - 50 prefixes on one exact host `api.example.com` (`/`, `/svc1/`..`/svc49/`)
/// - 300 wildcard: `*.t000..*.t149.example.org` × {`/`, `/admin/`}
/// - 150 host-less: `/static0/`..`/static149/` (no `/`, so lookups can miss)
fn thousand_routes() -> Vec<RouteConfig> {
    let mut v = Vec::with_capacity(1000);
    for i in 0..250 {
        let h = format!("h{i:03}.example.com");
        v.push(route(exact(&h), "/", v.len()));
        v.push(route(exact(&h), "/api/", v.len()));
    }
    v.push(route(exact("api.example.com"), "/", v.len()));
    for i in 1..50 {
        v.push(route(
            exact("api.example.com"),
            &format!("/svc{i}/"),
            v.len(),
        ));
    }
    for i in 0..150 {
        let s = format!(".t{i:03}.example.org");
        v.push(route(suffix(&s), "/", v.len()));
        v.push(route(suffix(&s), "/admin/", v.len()));
    }
    for i in 0..150 {
        v.push(route(HostMatch::Any, &format!("/static{i}/"), v.len()));
    }
    assert_eq!(v.len(), 1000);
    v
}

struct Lookup {
    name: &'static str,
    host: Option<&'static [u8]>,
    path: &'static [u8],
    /// Expected `path_prefix` of the selected route; `None` = 404.
    want: Option<&'static str>,
}

fn lookups(big: bool) -> Vec<Lookup> {
    vec![
        Lookup {
            name: "exact",
            host: Some(b"h123.example.com"),
            path: b"/index.html",
            want: Some("/"),
        },
        Lookup {
            name: "longest_prefix",
            host: Some(b"api.example.com"),
            path: if big {
                b"/svc42/users/7"
            } else {
                b"/v1/admin/users/7"
            },
            want: Some(if big { "/svc42/" } else { "/v1/admin/" }),
        },
        Lookup {
            // Exact miss, then `.b.t77.example.org` miss, then `.t77.example.org` hit.
            name: "wildcard",
            host: Some(if big {
                b"a.b.t077.example.org"
            } else {
                b"a.b.t77.example.org"
            }),
            path: b"/admin/x",
            want: Some("/admin/"),
        },
        Lookup {
            // Exact and every wildcard suffix miss, host-less table hits.
            name: "hostless_fallback",
            host: Some(b"unknown.example.net"),
            path: b"/static99/app.js",
            want: Some("/static99/"),
        },
        Lookup {
            // Worst case: every table consulted, nothing matches → 404.
            name: "miss",
            host: Some(b"nope.a.b.invalid"),
            path: b"/nothing/here",
            want: None,
        },
    ]
}

fn bench_select(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_select");
    for (size, routes, big) in [(10, ten_routes(), false), (1000, thousand_routes(), true)] {
        let router = Router::new(&routes);
        for l in lookups(big) {
            let got = router
                .select(l.host, l.path)
                .map(|s| s.route.path_prefix.as_str());
            assert_eq!(got, l.want, "{size} routes, lookup {}", l.name);
            g.bench_function(BenchmarkId::new(l.name, size), |b| {
                b.iter(|| {
                    black_box(router.select(black_box(l.host), black_box(l.path)))
                        .map(|s| s.route.upstream)
                })
            });
        }
    }
    g.finish();
}

/// Table compilation (config load / reload), not per request.
fn bench_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_build");
    for (size, routes) in [(10, ten_routes()), (1000, thousand_routes())] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &routes, |b, routes| {
            b.iter(|| Router::new(black_box(routes)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_select, bench_build);
criterion_main!(benches);
