use bytes::Bytes;

use super::*;

fn route(host: HostMatch, prefix: &str, upstream: usize, strip: bool) -> RouteConfig {
    let mut r = RouteConfig::new(upstream, host, prefix, upstream);
    r.strip_prefix = strip;
    r
}

/// A GET without fields.
const GET: RequestView<'static> = RequestView {
    method: b"GET",
    headers: &[],
};

fn table() -> Router {
    Router::new(&[
        route(HostMatch::Exact("api.example.com".into()), "/", 0, false),
        route(HostMatch::Exact("api.example.com".into()), "/v1/", 1, true),
        route(HostMatch::Suffix(".example.com".into()), "/", 2, false),
        route(HostMatch::Any, "/static/", 3, false),
    ])
}

fn pick(r: &Router, host: &str, path: &str) -> Option<usize> {
    r.select(Some(host.as_bytes()), path.as_bytes(), GET)
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
        r.select(None, b"/static/x", GET).map(|s| s.route.upstream),
        Some(3)
    );
}

#[test]
fn strip_prefix_keeps_a_leading_slash() {
    let r = table();
    let sel = r
        .select(Some(b"api.example.com"), b"/v1/users?x=1", GET)
        .unwrap();
    let mut scratch = Vec::new();
    assert_eq!(
        sel.upstream_path(b"/v1/users?x=1", &mut scratch),
        Ok(&b"/users?x=1"[..])
    );
    let r2 = Router::new(&[route(HostMatch::Any, "/api", 0, true)]);
    let sel = r2.select(None, b"/api?q", GET).unwrap();
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
        let sel = r.select(None, path.as_bytes(), GET).unwrap();
        assert_eq!(
            sel.upstream_path(path.as_bytes(), &mut scratch),
            Err(PathReject::DotAfterPrefix),
            "{path}"
        );
    }
}

// ---- the trie ----

fn trie(prefixes: &[&str]) -> PrefixTrie {
    let mut t = PrefixTrie::default();
    for (i, p) in prefixes.iter().enumerate() {
        t.insert(p.as_bytes(), i as u32);
    }
    assert_eq!(t.len(), prefixes.len());
    t
}

fn longest(t: &PrefixTrie, path: &str) -> Option<u32> {
    t.longest(path.as_bytes(), |_| true)
}

#[test]
fn trie_longest_prefix_among_nested_prefixes() {
    // Inserted in an order that makes the tree split edges both ways.
    let t = trie(&["/a/b/c/", "/", "/a/", "/a/b/"]);
    assert_eq!(longest(&t, "/a/b/c/d"), Some(0));
    assert_eq!(longest(&t, "/a/b/c/"), Some(0));
    assert_eq!(longest(&t, "/a/b/c"), Some(3));
    assert_eq!(longest(&t, "/a/b/"), Some(3));
    assert_eq!(longest(&t, "/a/bx"), Some(2));
    assert_eq!(longest(&t, "/a"), Some(1));
    assert_eq!(longest(&t, "/"), Some(1));
    assert_eq!(longest(&t, "x"), None);
    assert_eq!(longest(&t, ""), None);
}

#[test]
fn trie_shared_prefixes_split_edges() {
    // `/api/v1`, `/api/v2` and `/apix` share `/api`; `/b` shares only `/`.
    let t = trie(&["/api/v1", "/api/v2", "/apix", "/b", "/api"]);
    assert_eq!(longest(&t, "/api/v1/users"), Some(0));
    assert_eq!(longest(&t, "/api/v2"), Some(1));
    assert_eq!(longest(&t, "/api/v3"), Some(4));
    assert_eq!(longest(&t, "/apix/y"), Some(2));
    assert_eq!(longest(&t, "/apiy"), Some(4));
    assert_eq!(longest(&t, "/ap"), None);
    assert_eq!(longest(&t, "/b"), Some(3));
    assert_eq!(longest(&t, "/c"), None);
}

#[test]
fn trie_empty_root_and_slash() {
    let empty = trie(&[]);
    assert_eq!(longest(&empty, "/x"), None);
    assert_eq!(longest(&empty, ""), None);
    let slash = trie(&["/"]);
    assert_eq!(longest(&slash, "/"), Some(0));
    assert_eq!(longest(&slash, "/anything/at/all"), Some(0));
    assert_eq!(longest(&slash, "*"), None);
    // An empty prefix (never valid in a config) would match everything, even "".
    let all = trie(&[""]);
    assert_eq!(longest(&all, ""), Some(0));
    assert_eq!(longest(&all, "x"), Some(0));
}

#[test]
fn trie_is_byte_wise_not_segment_wise() {
    let t = trie(&["/api", "/static/img"]);
    assert_eq!(longest(&t, "/api.json"), Some(0));
    assert_eq!(longest(&t, "/apix/y"), Some(0));
    assert_eq!(longest(&t, "/static/imgx"), Some(1));
    assert_eq!(longest(&t, "/static/im"), None);
}

#[test]
fn trie_keeps_insertion_order_at_one_prefix_and_falls_back_to_shorter() {
    let t = trie(&["/a/", "/a/b/", "/a/b/", "/a/b/"]);
    assert_eq!(longest(&t, "/a/b/x"), Some(1));
    assert_eq!(t.longest(b"/a/b/x", |e| e != 1), Some(2));
    assert_eq!(t.longest(b"/a/b/x", |e| e == 3), Some(3));
    // Nothing accepted at `/a/b/`: the shorter prefix's entry.
    assert_eq!(t.longest(b"/a/b/x", |e| e == 0), Some(0));
    assert_eq!(t.longest(b"/a/b/x", |_| false), None);
}

// ---- methods and headers ----

fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn when(name: &str, value: HeaderValueMatch) -> HeaderMatch {
    HeaderMatch {
        name: name.to_string(),
        value,
    }
}

fn conditional() -> Router {
    let host = || HostMatch::Exact("api.test".into());
    let mut v2 = route(host(), "/orders/", 1, false);
    v2.match_headers = vec![when("x-api-version", HeaderValueMatch::Exact("2".into()))];
    let mut reads = route(host(), "/orders/", 2, false);
    reads.methods = vec!["GET".into(), "HEAD".into()];
    let writes = route(host(), "/orders/", 3, false);
    let mut beta = route(host(), "/", 4, false);
    beta.match_headers = vec![
        when("x-beta", HeaderValueMatch::Present(true)),
        when("user-agent", HeaderValueMatch::Prefix("curl/".into())),
    ];
    let mut no_debug = route(host(), "/", 5, false);
    no_debug.match_headers = vec![when("x-debug", HeaderValueMatch::Present(false))];
    let mut only_delete = route(host(), "/admin/", 6, false);
    only_delete.methods = vec!["DELETE".into()];
    let mut any_host = route(HostMatch::Any, "/", 7, false);
    any_host.methods = vec!["POST".into()];
    Router::new(&[v2, reads, writes, beta, no_debug, only_delete, any_host])
}

fn pick_with(r: &Router, method: &str, path: &str, headers: &[Header]) -> Option<usize> {
    let req = RequestView {
        method: method.as_bytes(),
        headers,
    };
    r.select(Some(b"api.test"), path.as_bytes(), req)
        .map(|s| s.route.upstream)
}

#[test]
fn first_route_whose_methods_and_headers_match_wins_at_one_prefix() {
    let r = conditional();
    let v2 = [header("X-Api-Version", " 2 ")];
    assert_eq!(pick_with(&r, "POST", "/orders/1", &v2), Some(1));
    assert_eq!(pick_with(&r, "GET", "/orders/1", &v2), Some(1));
    let v3 = [header("x-api-version", "3")];
    assert_eq!(pick_with(&r, "GET", "/orders/1", &v3), Some(2));
    assert_eq!(pick_with(&r, "HEAD", "/orders/1", &[]), Some(2));
    assert_eq!(pick_with(&r, "POST", "/orders/1", &v3), Some(3));
    // Methods are case-sensitive (RFC 9110 §9.1).
    assert_eq!(pick_with(&r, "get", "/orders/1", &[]), Some(3));
}

#[test]
fn header_conditions_exact_prefix_present_absent_and_repeated_fields() {
    let r = conditional();
    let curl = header("user-agent", "curl/8.5");
    let beta = header("x-beta", "");
    assert_eq!(
        pick_with(&r, "GET", "/x", &[curl.clone(), beta.clone()]),
        Some(4)
    );
    // Every condition must hold.
    assert_eq!(
        pick_with(&r, "GET", "/x", std::slice::from_ref(&curl)),
        Some(5)
    );
    assert_eq!(
        pick_with(
            &r,
            "GET",
            "/x",
            &[header("user-agent", "wget"), beta.clone()]
        ),
        Some(5)
    );
    // A repeated field matches when any of its values does.
    let two = [
        header("user-agent", "wget"),
        header("user-agent", "curl/7"),
        beta,
    ];
    assert_eq!(pick_with(&r, "GET", "/x", &two), Some(4));
    // `present = false`: the route is passed over when the field is there…
    let debug = [header("x-debug", "1")];
    assert_eq!(pick_with(&r, "GET", "/x", &debug), None);
    // …and an exact value is not a prefix.
    let v22 = [header("x-api-version", "22")];
    assert_eq!(pick_with(&r, "PUT", "/orders/", &v22), Some(3));
}

#[test]
fn a_route_whose_conditions_fail_falls_back_to_a_shorter_prefix_then_other_hosts() {
    let r = conditional();
    // `/admin/` takes only DELETE: a GET goes on to `/` (route 5).
    assert_eq!(pick_with(&r, "DELETE", "/admin/x", &[]), Some(6));
    assert_eq!(pick_with(&r, "GET", "/admin/x", &[]), Some(5));
    // No route of the host takes it: the host-less table is next.
    let debug = [header("x-debug", "1")];
    assert_eq!(pick_with(&r, "POST", "/admin/x", &debug), Some(7));
    assert_eq!(pick_with(&r, "GET", "/admin/x", &debug), None);
}

// ---- the trie against the linear table it replaced ----

/// The table before the trie: every prefix tried, longest first (a stable sort keeps
/// config order among equal lengths).
fn linear<'r>(
    routes: &'r [RouteConfig],
    path: &[u8],
    req: RequestView<'_>,
) -> Option<&'r RouteConfig> {
    let mut sorted: Vec<&RouteConfig> = routes.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
    sorted
        .into_iter()
        .find(|r| path.starts_with(r.path_prefix.as_bytes()) && accepts(r, req))
}

/// xorshift64*: a fixed seed, so every run tries the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A path from a small alphabet, so prefixes nest and share often.
    fn path(&mut self, max: usize) -> String {
        const ALPHABET: &[u8] = b"/ab.";
        let mut s = String::from("/");
        for _ in 0..self.below(max + 1) {
            s.push(ALPHABET[self.below(ALPHABET.len())] as char);
        }
        s
    }
}

#[test]
fn trie_selects_what_the_linear_table_selects_on_random_route_sets() {
    let mut rng = Rng(0x5eed_0f40_47e5);
    let methods = [b"GET".as_slice(), b"POST", b"DELETE"];
    for round in 0..300 {
        let n = 1 + rng.below(40);
        let mut routes = Vec::with_capacity(n);
        for i in 0..n {
            let mut r = route(HostMatch::Any, &rng.path(6), i, false);
            match rng.below(4) {
                0 => r.methods = vec!["GET".into()],
                1 => r.match_headers = vec![when("x-v", HeaderValueMatch::Exact("1".into()))],
                _ => {}
            }
            routes.push(r);
        }
        let router = Router::new(&routes);
        for _ in 0..200 {
            let path = rng.path(9);
            let fields = [header("x-v", "1")];
            let req = RequestView {
                method: methods[rng.below(methods.len())],
                headers: if rng.below(2) == 0 { &fields } else { &[] },
            };
            let got = router
                .select(None, path.as_bytes(), req)
                .map(|s| s.route.index);
            let want = linear(&routes, path.as_bytes(), req).map(|r| r.index);
            assert_eq!(
                got,
                want,
                "round {round}, path {path:?}, method {:?}, {} field(s), routes {:?}",
                String::from_utf8_lossy(req.method),
                req.headers.len(),
                routes
                    .iter()
                    .map(|r| (&r.path_prefix, &r.methods, r.match_headers.len()))
                    .collect::<Vec<_>>()
            );
        }
    }
}
