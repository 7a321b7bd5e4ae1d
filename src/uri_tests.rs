use super::*;
use crate::config::{HostMatch, RouteConfig};
use crate::route::Router;

const REJECT: PathOptions = PathOptions {
    merge_slashes: true,
    escaped_slashes: EscapedSlashes::Reject,
};
const KEEP: PathOptions = PathOptions {
    escaped_slashes: EscapedSlashes::Keep,
    ..REJECT
};
const DECODE: PathOptions = PathOptions {
    escaped_slashes: EscapedSlashes::Decode,
    ..REJECT
};
const NO_MERGE: PathOptions = PathOptions {
    merge_slashes: false,
    ..REJECT
};

fn norm(path: &str, opts: PathOptions) -> Result<String, PathReject> {
    normalize(path.as_bytes(), opts).map(|p| String::from_utf8(p.into_owned()).unwrap())
}

#[test]
fn normal_paths_are_borrowed() {
    for p in [
        "/",
        "/a",
        "/api/users/42",
        "/a/b/",
        "/a.b/c..d/e...",
        "/a?x=/../y",
        "/a?q=%2e%2e&r=//",
        "/~user/-_x",
    ] {
        let n = normalize(p.as_bytes(), REJECT).unwrap();
        assert!(matches!(n, Cow::Borrowed(_)), "{p} was copied");
        assert_eq!(&n[..], p.as_bytes());
        assert!(is_normal(p.as_bytes()), "{p}");
    }
    // The slow path's candidates that come back unchanged.
    for p in ["/.well-known/x", "/%C3%A9"] {
        assert!(!is_normal(p.as_bytes()), "{p}");
        assert_eq!(norm(p, REJECT).as_deref(), Ok(p));
    }
}

#[test]
fn dot_segments_raw_and_encoded_are_removed() {
    let cases = [
        ("/api/../internal/x", "/internal/x"),
        ("/api/%2e%2e/internal/x", "/internal/x"),
        ("/api/%2E%2E/internal/x", "/internal/x"),
        ("/api/.%2e/internal/x", "/internal/x"),
        ("/api/%2e./internal/x", "/internal/x"),
        ("/api/.%2E/internal/x", "/internal/x"),
        ("/a/./b", "/a/b"),
        ("/a/%2e/b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/%2e%2e", "/a/"),
        ("/a/..", "/"),
        ("/.", "/"),
        ("/./", "/"),
        ("/a/b/../../c", "/c"),
        ("/a/../b/../c/", "/c/"),
        // Not dot-segments: literal names with dots.
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a/b../c", "/a/b../c"),
        ("/a/.%2e%2e/c", "/a/.../c"),
        // The query is kept byte for byte, the fragment dropped.
        ("/a/../b?x=/../%2e", "/b?x=/../%2e"),
        ("/a/./b#frag", "/a/b"),
        ("/a?q#frag", "/a?q"),
        ("/a#f?not-a-query", "/a"),
    ];
    for (input, want) in cases {
        assert_eq!(norm(input, REJECT).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn climbing_above_the_root_is_refused() {
    for p in [
        "/..",
        "/../a",
        "/%2e%2e",
        "/a/../..",
        "/a/../../b",
        "/.%2e/",
        "/%2E./x",
        "/a/./../../b",
    ] {
        assert_eq!(norm(p, REJECT), Err(PathReject::AboveRoot), "{p}");
        assert_eq!(norm(p, NO_MERGE), Err(PathReject::AboveRoot), "{p}");
    }
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    let cases = [
        ("/%41%62c", "/Abc"),
        ("/%7e%2D%5f", "/~-_"),
        ("/a%20b", "/a%20b"),
        ("/%c3%a9", "/%C3%A9"),
        ("/%25", "/%25"),
        // Decoded once only: `%252e` is `%2e` to an upstream, not a dot.
        ("/%252e%252e/x", "/%252e%252e/x"),
        ("/a%3fb", "/a%3Fb"),
    ];
    for (input, want) in cases {
        assert_eq!(norm(input, REJECT).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn nul_and_invalid_escapes_are_refused() {
    for (p, why) in [
        ("/a%00b", PathReject::Nul),
        ("/%00", PathReject::Nul),
        ("/a%zz", PathReject::BadEscape),
        ("/a%", PathReject::BadEscape),
        ("/a%2", PathReject::BadEscape),
        ("/a%2g", PathReject::BadEscape),
        ("/a%g2", PathReject::BadEscape),
        ("/%%41", PathReject::BadEscape),
    ] {
        for opts in [REJECT, KEEP, DECODE, NO_MERGE] {
            assert_eq!(norm(p, opts), Err(why), "{p} {opts:?}");
        }
    }
    // In the query, nothing is decoded or judged.
    assert_eq!(norm("/a/./b?%00%zz", REJECT).as_deref(), Ok("/a/b?%00%zz"));
    assert_eq!(norm("a/b", REJECT), Err(PathReject::NotAbsolute));
    assert_eq!(norm("", REJECT), Err(PathReject::NotAbsolute));
}

#[test]
fn encoded_separators_follow_the_configured_action() {
    let inputs = [
        "/api/%2f..%2f..%2finternal",
        "/api%2Finternal",
        "/api/%5c../x",
        "/api\\..\\x",
        "/a\\b",
    ];
    for p in inputs {
        assert_eq!(norm(p, REJECT), Err(PathReject::EscapedSlash), "{p}");
    }
    let keep = [
        "/api/%2F..%2F..%2Finternal",
        "/api%2Finternal",
        "/api/%5C../x",
        "/api%5C..%5Cx",
        "/a%5Cb",
    ];
    for (p, want) in inputs.iter().zip(keep) {
        assert_eq!(norm(p, KEEP).as_deref(), Ok(want), "{p}");
    }
    let decode = [
        // `/api/` + `/..` + `/..` climbs above the root once decoded.
        Err(PathReject::AboveRoot),
        Ok("/api/internal"),
        Ok("/x"),
        Ok("/x"),
        Ok("/a/b"),
    ];
    for (p, want) in inputs.iter().zip(decode) {
        assert_eq!(norm(p, DECODE).as_deref().map_err(|e| *e), want, "{p}");
    }
}

#[test]
fn slashes_merge_unless_told_not_to() {
    let cases = [
        ("//", "/", "//"),
        ("//a", "/a", "//a"),
        ("/a//b", "/a/b", "/a//b"),
        ("/a///b/", "/a/b/", "/a///b/"),
        ("/a//", "/a/", "/a//"),
        // Merged first (nginx), then resolved; unmerged, `..` removes the empty segment
        // (RFC 3986 §5.2.4).
        ("/a//../b", "/b", "/a/b"),
        ("/a/.//b", "/a/b", "/a//b"),
    ];
    for (input, merged, kept) in cases {
        assert_eq!(norm(input, REJECT).as_deref(), Ok(merged), "{input}");
        assert_eq!(norm(input, NO_MERGE).as_deref(), Ok(kept), "{input}");
    }
}

#[test]
fn normalising_is_idempotent() {
    for p in [
        "/a/../b/./c//d/%2e%2e/e%41?q",
        "/x/%2f/y",
        "/a\\b/..",
        "/%c3%a9/./",
    ] {
        for opts in [KEEP, DECODE, NO_MERGE] {
            if let Ok(once) = norm(p, opts) {
                assert_eq!(norm(&once, opts).as_deref(), Ok(once.as_str()), "{p}");
            }
        }
    }
}

/// A small seeded generator (xorshift64*): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// What a lenient upstream makes of a path: every escape decoded once (in `keep` mode
/// only the unreserved ones, as RFC 3986 asks: an encoded separator stays data there),
/// `\` taken as `/` (unless `keep`), slashes merged, dot-segments resolved (clamped at
/// the root, as servers do). Returns the resolved path and whether it had any dot-segment.
fn upstream_view(path: &str, keep: bool) -> (String, bool) {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut bytes = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&path[i + 1..i + 3], 16)
            && (!keep || is_unreserved(v))
        {
            bytes.push(v);
            i += 3;
            continue;
        }
        bytes.push(b[i]);
        i += 1;
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let text = if keep { text } else { text.replace('\\', "/") };
    let mut out: Vec<&str> = Vec::new();
    let mut dots = false;
    for seg in text.split('/').skip(1) {
        match seg {
            "." => dots = true,
            ".." => {
                dots = true;
                out.pop();
            }
            "" => {}
            s => out.push(s),
        }
    }
    (format!("/{}", out.join("/")), dots)
}

fn route(prefix: &str, upstream: usize, strip: bool) -> RouteConfig {
    RouteConfig {
        index: upstream,
        host: HostMatch::Any,
        path_prefix: prefix.to_string(),
        strip_prefix: strip,
        upstream,
        client_cert: None,
        max_request_body_bytes: None,
    }
}

#[test]
fn property_what_the_upstream_resolves_stays_under_the_matched_prefix() {
    // Prefixes with and without a trailing slash, with and without strip_prefix; no `/`
    // route, so a path that escapes every prefix has nowhere to go (404).
    let routes = [
        route("/api/", 0, false),
        route("/public", 1, false),
        route("/v1/", 2, true),
        route("/static", 3, true),
    ];
    let router = Router::new(&routes);
    let pieces = [
        "api", "public", "v1", "static", "admin", "x", ".", "..", "%2e", "%2E", ".%2e", "%2e.",
        "%2E%2e", "...", "..a", "%2f", "%2F", "%5c", "\\", "", "%41", "%00", "%zz", "a.b", "%252e",
        "?q=..", "#f", ";", "%3b",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut routed, mut refused, mut unrouted) = (0, 0, 0);
    for _ in 0..20_000 {
        // Usually under one of the prefixes, as an attacker would start.
        let mut path = rng
            .pick(&["/api", "/public", "/v1", "/static", "", "/pub", "/apix"])
            .to_string();
        let segments = 1 + rng.next() % 6;
        for _ in 0..segments {
            path.push('/');
            // A segment of one or two pieces (`.` + `%2e` and so on).
            path.push_str(rng.pick(&pieces));
            if rng.next().is_multiple_of(3) {
                path.push_str(rng.pick(&pieces));
            }
        }
        let opts = [REJECT, KEEP, DECODE, NO_MERGE][(rng.next() % 4) as usize];
        let keep = opts.escaped_slashes == EscapedSlashes::Keep;
        let Ok(normal) = normalize(path.as_bytes(), opts) else {
            refused += 1;
            continue;
        };
        let Some(selected) = router.select(None, &normal) else {
            unrouted += 1;
            continue;
        };
        let mut scratch = Vec::new();
        let Ok(sent) = selected.upstream_path(&normal, &mut scratch) else {
            refused += 1;
            continue;
        };
        routed += 1;
        let sent = String::from_utf8(sent.to_vec()).unwrap();
        let (resolved, dots) = upstream_view(&sent, keep);
        let prefix = selected.route.path_prefix.as_str();
        let ctx = format!("{path:?} {opts:?} → {sent:?} (upstream: {resolved:?}) via {prefix}");
        // Nothing the upstream would resolve differently from what routed.
        assert!(!dots, "a dot-segment reached the upstream: {ctx}");
        assert!(sent.starts_with('/'), "{ctx}");
        if !selected.route.strip_prefix {
            assert!(sent.starts_with(prefix), "{ctx}");
            let bare = prefix.trim_end_matches('/');
            assert!(
                resolved.starts_with(bare),
                "the upstream resolves outside {prefix}: {ctx}"
            );
        }
    }
    // The generator reaches every outcome often enough to mean something.
    assert!(
        routed > 4000 && refused > 2000 && unrouted > 2000,
        "{routed} {refused} {unrouted}"
    );
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    for p in [
        "/api/..;/internal",
        "/api/.;x/a",
        "/api/%2e%2e;jsessionid=1/x",
        "/..;",
    ] {
        for opts in [REJECT, KEEP, DECODE, NO_MERGE] {
            assert_eq!(norm(p, opts), Err(PathReject::DotWithParams), "{p}");
        }
    }
    // `;` elsewhere in a segment is an ordinary byte.
    assert_eq!(norm("/a/b;v=1/./c", REJECT).as_deref(), Ok("/a/b;v=1/c"));
    assert_eq!(norm("/a/...;x", REJECT).as_deref(), Ok("/a/...;x"));
    assert!(crate::uri::starts_with_dot_segment(b"..;x/admin"));
}
