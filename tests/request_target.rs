//! The request target as an attacker writes it (issue 19): dot-segments raw and encoded,
//! encoded separators, `%00`, absolute-form targets whose authority disagrees with Host,
//! and forged `Forwarded` / `X-Forwarded-For` fields. Raw bytes over plain TCP (a client
//! library would normalise them first); in-process origins record the exact request line
//! and fields they receive.
//!
//! Routes (no `/` catch-all, so an escaped path has nowhere to go): `/api/` → app,
//! `/v1/` with `strip_prefix` → strip, `public.test` `/pub/` → public, `admin.test` `/` →
//! admin.

mod common;

use common::backend::{Backend, Recorded};
use common::client::{Client, Response};
use common::pki::TestPki;
use common::proxy::{ConfigBuilder, Proxy};

struct Gate {
    proxy: Proxy,
    app: Backend,
    strip: Backend,
    public: Backend,
    admin: Backend,
    _pki: TestPki,
}

/// What one request came to: the proxy's response, and the request a backend received
/// (with that backend's name), if any did.
struct Seen {
    resp: Response,
    got: Option<(&'static str, Recorded)>,
}

impl Seen {
    /// The target the named backend received; panics if another or none got it.
    fn target_at(&self, backend: &str) -> &str {
        match &self.got {
            Some((name, rec)) if *name == backend => &rec.target,
            other => panic!(
                "expected {backend} to receive the request, got {:?}\n{}",
                other.as_ref().map(|(n, r)| (n, &r.target)),
                self.resp.describe()
            ),
        }
    }

    fn recorded(&self) -> &Recorded {
        &self.got.as_ref().expect("a backend received the request").1
    }

    /// The proxy answered `status` itself and no backend saw the request.
    fn refused(&self, status: u16) -> bool {
        self.got.is_none() && self.resp.status == status && self.resp.header("x-backend").is_none()
    }
}

impl Gate {
    fn new(http: &[(&str, &str)]) -> Gate {
        let pki = TestPki::new();
        let (app, strip) = (Backend::named("app"), Backend::named("strip"));
        let (public, admin) = (Backend::named("public"), Backend::named("admin"));
        let mut config = ConfigBuilder::new()
            .plain_listener()
            .route(None, "/api/", false, "app")
            .route(None, "/v1/", true, "strip")
            .route(Some("public.test"), "/pub/", false, "public")
            .route(Some("admin.test"), "/", false, "admin")
            .upstream("app", &[app.addr], &[])
            .upstream("strip", &[strip.addr], &[])
            .upstream("public", &[public.addr], &[])
            .upstream("admin", &[admin.addr], &[]);
        for (k, v) in http {
            config = config.http(k, v);
        }
        let proxy = Proxy::start(&config.build(), pki.dir());
        Gate {
            proxy,
            app,
            strip,
            public,
            admin,
            _pki: pki,
        }
    }

    fn backends(&self) -> [(&'static str, &Backend); 4] {
        [
            ("app", &self.app),
            ("strip", &self.strip),
            ("public", &self.public),
            ("admin", &self.admin),
        ]
    }

    /// Sends `request` on a fresh connection.
    fn send(&self, request: &str) -> Seen {
        let mut c = Client::plain(self.proxy.addr()).expect("connect to the proxy");
        self.send_on(&mut c, request)
    }

    fn send_on(&self, c: &mut Client, request: &str) -> Seen {
        let before: Vec<usize> = self.backends().iter().map(|(_, b)| b.served()).collect();
        let resp = c.roundtrip(request.as_bytes());
        // A backend records a request before it answers it: the log is complete now.
        let mut got = None;
        for ((name, b), n) in self.backends().into_iter().zip(before) {
            let reqs = b.requests();
            assert!(reqs.len() <= n + 1, "{name} got more than one request");
            if reqs.len() == n + 1 {
                assert!(got.is_none(), "two backends got {request:?}");
                got = Some((name, reqs[n].clone()));
            }
        }
        Seen { resp, got }
    }

    fn get(&self, path: &str) -> Seen {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n"))
    }
}

#[test]
fn dot_segments_raw_and_encoded_never_escape_a_route_prefix() {
    let g = Gate::new(&[]);
    for path in [
        "/api/../internal/x",
        "/api/%2e%2e/internal/x",
        "/api/%2E%2E/internal/x",
        "/api/.%2e/internal/x",
        "/api/%2e./internal/x",
        "/api/.%2E/internal/x",
        "/api/x/../../internal/x",
        "/api/./../internal/x",
    ] {
        let seen = g.get(path);
        assert!(
            seen.refused(404),
            "{path}: routed as /internal/x (no route): {}",
            seen.resp.describe()
        );
    }
    // Resolved inside the prefix: forwarded resolved, the query as sent.
    for (path, want) in [
        ("/api/x/../y", "/api/y"),
        ("/api/%2e%2e/api/z?q=/../%2e", "/api/z?q=/../%2e"),
        ("/api/./a/.%2E/b/", "/api/b/"),
        ("/api/%61%62?x", "/api/ab?x"),
        ("/api/a/%2e", "/api/a/"),
    ] {
        assert_eq!(g.get(path).target_at("app"), want, "{path}");
    }
    // Above the root: refused.
    for path in ["/../api/x", "/api/../../api/x", "/%2e%2e/api/x"] {
        let seen = g.get(path);
        assert!(seen.refused(400), "{path}: {}", seen.resp.describe());
    }
}

#[test]
fn strip_prefix_applies_to_the_normalised_path() {
    let g = Gate::new(&[]);
    // `/v1/../admin` is `/admin`: not under /v1/, and nothing else routes it.
    for path in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1/.%2e/admin"] {
        let seen = g.get(path);
        assert!(seen.refused(404), "{path}: {}", seen.resp.describe());
    }
    for (path, want) in [
        ("/v1/users", "/users"),
        ("/v1/a/../b?q=/../x", "/b?q=/../x"),
        ("/v1/%2e%2e/v1/x", "/x"),
        ("/v1/./x/%2E", "/x/"),
        ("/v1//x", "/x"),
    ] {
        assert_eq!(g.get(path).target_at("strip"), want, "{path}");
    }
}

#[test]
fn encoded_separators_in_each_mode() {
    let paths = [
        "/api/%2F..%2F..%2Finternal",
        "/api/a%2fb",
        "/api/a%5Cb",
        "/api/a\\b",
    ];
    let reject = Gate::new(&[]);
    for path in paths {
        let seen = reject.get(path);
        assert!(
            seen.refused(400),
            "default reject: {path}: {}",
            seen.resp.describe()
        );
    }
    let explicit = Gate::new(&[("escaped_slashes", "\"reject\"")]);
    assert!(explicit.get(paths[1]).refused(400));

    let keep = Gate::new(&[("escaped_slashes", "\"keep\"")]);
    for (path, want) in paths.iter().zip([
        "/api/%2F..%2F..%2Finternal",
        "/api/a%2Fb",
        "/api/a%5Cb",
        "/api/a%5Cb",
    ]) {
        assert_eq!(keep.get(path).target_at("app"), want, "keep: {path}");
    }

    let decode = Gate::new(&[("escaped_slashes", "\"decode\"")]);
    // Decoded, `/api/` + `/..` + `/..` climbs above the root.
    assert!(decode.get(paths[0]).refused(400));
    assert!(decode.get("/api/x%2F..%2F..%2Finternal").refused(404));
    for path in &paths[1..] {
        assert_eq!(
            decode.get(path).target_at("app"),
            "/api/a/b",
            "decode: {path}"
        );
    }
    assert!(decode.get("/api%5C..%5Cinternal").refused(404));
}

#[test]
fn nul_and_invalid_escapes_are_refused_in_every_mode() {
    for mode in ["\"reject\"", "\"keep\"", "\"decode\""] {
        let g = Gate::new(&[("escaped_slashes", mode)]);
        for path in ["/api/a%00b", "/api/%00", "/api/%zz", "/api/a%", "/api/a%2"] {
            let seen = g.get(path);
            assert!(seen.refused(400), "{mode} {path}: {}", seen.resp.describe());
        }
    }
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    // Tomcat, Jetty and Spring resolve `..;` as `..`: forwarded, it would leave `/api/`.
    let g = Gate::new(&[]);
    for path in [
        "/api/..;/internal/x",
        "/api/%2e%2e;x=1/internal",
        "/v1/.;/x",
    ] {
        let seen = g.get(path);
        assert!(seen.refused(400), "{path}: {}", seen.resp.describe());
    }
    assert_eq!(g.get("/api/a;v=1/b").target_at("app"), "/api/a;v=1/b");
}

#[test]
fn slashes_are_merged_unless_merge_slashes_is_off() {
    let g = Gate::new(&[]);
    assert_eq!(g.get("/api//x///y").target_at("app"), "/api/x/y");
    assert_eq!(g.get("//api/x").target_at("app"), "/api/x");
    let g = Gate::new(&[("merge_slashes", "false")]);
    assert_eq!(g.get("/api//x///y").target_at("app"), "/api//x///y");
    assert!(g.get("//api/x").refused(404));
}

#[test]
fn an_absolute_form_target_routes_and_forwards_one_authority() {
    let g = Gate::new(&[]);
    // Routed by the target's authority: forwarded with it, never with the Host field.
    let seen = g.send("GET http://public.test/pub/x HTTP/1.1\r\nHost: admin.test\r\n\r\n");
    assert_eq!(seen.target_at("public"), "/pub/x");
    let rec = seen.recorded();
    assert_eq!(rec.header_all("host"), vec!["public.test"], "{rec:?}");
    let fwd = rec.header_all("forwarded");
    assert_eq!(fwd, vec!["for=127.0.0.1;proto=http;host=public.test"]);
    let raw = String::from_utf8_lossy(&rec.raw_head).into_owned();
    assert!(raw.starts_with("GET /pub/x HTTP/1.1\r\n"), "{raw}");
    assert!(!raw.contains("admin.test"), "{raw}");

    // The other way round: origin-form, Host decides, the same on both sides.
    let seen = g.send("GET /pub/x HTTP/1.1\r\nHost: public.test\r\n\r\n");
    assert_eq!(seen.recorded().header_all("host"), vec!["public.test"]);

    // A query and no path; a fragment; a port in the authority.
    let cases = [
        (
            "http://admin.test?q=1",
            "/?q=1",
            "admin.test",
            "host=admin.test",
        ),
        ("http://admin.test#f", "/", "admin.test", "host=admin.test"),
        (
            "http://admin.test/a#f",
            "/a",
            "admin.test",
            "host=admin.test",
        ),
        (
            "http://ADMIN.test:8080/x",
            "/x",
            "ADMIN.test:8080",
            "host=\"ADMIN.test:8080\"",
        ),
        (
            "http://admin.test:8080?q",
            "/?q",
            "admin.test:8080",
            "host=\"admin.test:8080\"",
        ),
    ];
    for (target, path, host, element) in cases {
        let seen = g.send(&format!(
            "GET {target} HTTP/1.1\r\nHost: public.test\r\n\r\n"
        ));
        assert_eq!(seen.target_at("admin"), path, "{target}");
        let rec = seen.recorded();
        assert_eq!(rec.header_all("host"), vec![host], "{target}");
        assert_eq!(
            rec.header_all("forwarded"),
            vec![format!("for=127.0.0.1;proto=http;{element}")],
            "{target}"
        );
    }
    // An authority that does not parse never falls back to the Host field.
    let seen = g.send("GET http://public.test:x/pub/x HTTP/1.1\r\nHost: admin.test\r\n\r\n");
    assert!(seen.refused(400), "{}", seen.resp.describe());
}

#[test]
fn ports_and_ipv6_brackets_are_kept_in_host_and_forwarded() {
    let g = Gate::new(&[]);
    let port = g.proxy.addr().port();
    let cases = [
        ("admin.test:8443".to_string(), "admin"),
        (format!("[::1]:{port}"), "app"),
        ("[::1]".to_string(), "app"),
        ("127.0.0.1:8080".to_string(), "app"),
    ];
    for (sent, backend) in &cases {
        let sent = sent.as_str();
        let host_line = format!("Host: {sent}");
        let path = if *backend == "app" { "/api/x" } else { "/x" };
        let seen = g.send(&format!("GET {path} HTTP/1.1\r\n{host_line}\r\n\r\n"));
        assert_eq!(seen.target_at(backend), path, "{host_line}");
        let rec = seen.recorded();
        assert_eq!(rec.header_all("host"), vec![sent], "{host_line}");
        assert_eq!(
            rec.header_all("forwarded"),
            vec![format!("for=127.0.0.1;proto=http;host=\"{sent}\"")],
            "{host_line}"
        );
    }
    // IPv6 in an absolute-form authority.
    let seen = g.send("GET http://[::1]:8080/api/v6 HTTP/1.1\r\nHost: admin.test\r\n\r\n");
    assert_eq!(seen.target_at("app"), "/api/v6");
    assert_eq!(seen.recorded().header_all("host"), vec!["[::1]:8080"]);
    assert_eq!(
        seen.recorded().header_all("forwarded"),
        vec!["for=127.0.0.1;proto=http;host=\"[::1]:8080\""]
    );
}

#[test]
fn a_malformed_forwarded_field_is_dropped_never_extended() {
    let g = Gate::new(&[]);
    let ours = "for=127.0.0.1;proto=http;host=admin.test";
    let send = |fields: &str| {
        let seen = g.send(&format!(
            "GET /x HTTP/1.1\r\nHost: admin.test\r\n{fields}\r\n"
        ));
        assert_eq!(seen.target_at("admin"), "/x");
        seen.recorded().clone()
    };
    // The injection: an unterminated quoted string would swallow the proxy's element.
    for bad in [
        "Forwarded: for=6.6.6.6;proto=https;host=\"x\r\n",
        "Forwarded: for=6.6.6.6\r\nForwarded: host=\"x\r\n",
        "Forwarded: for=6.6.6.6;for\r\n",
        "Forwarded: for=\"a\\\r\n",
    ] {
        let rec = send(bad);
        assert_eq!(rec.header_all("forwarded"), vec![ours], "{bad:?}");
    }
    // Valid fields are joined and extended.
    let rec =
        send("Forwarded: for=192.0.2.1;proto=https\r\nForwarded: for=\"[2001:db8::1]:80\"\r\n");
    assert_eq!(
        rec.header_all("forwarded"),
        vec![format!(
            "for=192.0.2.1;proto=https, for=\"[2001:db8::1]:80\", {ours}"
        )]
    );

    // X-Forwarded-For: only a well-formed address list is extended.
    for bad in [
        "X-Forwarded-For: evil\r\n",
        "X-Forwarded-For: 203.0.113.7, \"for=1.2.3.4\r\n",
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 1.2.3\r\n",
        "X-Forwarded-For: 203.0.113.7,\r\n",
    ] {
        let rec = send(bad);
        assert_eq!(
            rec.header_all("x-forwarded-for"),
            vec!["127.0.0.1"],
            "{bad:?}"
        );
    }
    let rec =
        send("X-Forwarded-For: 203.0.113.7, 2001:db8::1\r\nX-Forwarded-For: 198.51.100.1:80\r\n");
    assert_eq!(
        rec.header_all("x-forwarded-for"),
        vec!["203.0.113.7, 2001:db8::1, 198.51.100.1:80, 127.0.0.1"]
    );
}

#[test]
fn a_malformed_forwarding_field_is_refused_when_configured() {
    let g = Gate::new(&[("malformed_forwarding_headers", "\"reject\"")]);
    for bad in [
        "Forwarded: for=6.6.6.6;proto=https;host=\"x\r\n",
        "X-Forwarded-For: evil\r\n",
    ] {
        let seen = g.send(&format!("GET /x HTTP/1.1\r\nHost: admin.test\r\n{bad}\r\n"));
        assert!(seen.refused(400), "{bad:?}: {}", seen.resp.describe());
    }
    let seen = g.send(
        "GET /x HTTP/1.1\r\nHost: admin.test\r\nForwarded: for=192.0.2.1\r\n\
         X-Forwarded-For: 192.0.2.1\r\n\r\n",
    );
    assert_eq!(seen.target_at("admin"), "/x");
    // Not the proxy's to extend: passed through as sent, never judged.
    let g = Gate::new(&[
        ("malformed_forwarding_headers", "\"reject\""),
        ("forward_headers", "[]"),
    ]);
    let seen = g.send("GET /x HTTP/1.1\r\nHost: admin.test\r\nForwarded: host=\"x\r\n\r\n");
    assert_eq!(seen.recorded().header_all("forwarded"), vec!["host=\"x"]);
}

#[test]
fn connect_is_answered_405_with_allow() {
    let g = Gate::new(&[]);
    let seen = g.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert!(seen.refused(405), "{}", seen.resp.describe());
    let allow = seen.resp.header("allow").unwrap_or_else(|| {
        panic!(
            "RFC 9110 §15.5.6: a 405 carries Allow\n{}",
            seen.resp.describe()
        )
    });
    let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(&m), "{allow}");
    }
    assert!(!methods.contains(&"CONNECT"), "{allow}");
}

/// xorshift64*: the same paths on every run.
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

/// The path as a lenient upstream resolves it: every escape decoded once, `\` as `/`,
/// dot-segments resolved; and whether it had any dot-segment at all.
fn upstream_view(target: &str) -> (String, bool) {
    let path = target.split('?').next().unwrap_or("");
    let mut bytes = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&path[i + 1..i + 3], 16)
        {
            bytes.push(v);
            i += 3;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let (mut out, mut dots) = (Vec::new(), false);
    for seg in text.split('/').skip(1) {
        match seg {
            "." => dots = true,
            ".." => {
                dots = true;
                out.pop();
            }
            s => out.push(s),
        }
    }
    (format!("/{}", out.join("/")), dots)
}

#[test]
fn property_the_origin_only_ever_receives_paths_under_the_matched_prefix() {
    for mode in ["\"reject\"", "\"decode\""] {
        let g = Gate::new(&[("escaped_slashes", mode)]);
        let pieces = [
            "api", "v1", "internal", "x", ".", "..", "%2e", "%2E", ".%2e", "%2e.", "%2f", "%5c",
            "\\", "", "%41", "%00", "%zz", "...", "a.b", "%252e",
        ];
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        let mut c = Client::plain(g.proxy.addr()).expect("connect");
        let (mut routed, mut refused) = (0, 0);
        for _ in 0..300 {
            let mut path = rng.pick(&["/api", "/v1", "", "/api/x"]).to_string();
            for _ in 0..1 + rng.next() % 5 {
                path.push('/');
                path.push_str(rng.pick(&pieces));
                if rng.next().is_multiple_of(3) {
                    path.push_str(rng.pick(&pieces));
                }
            }
            let request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n");
            let seen = g.send_on(&mut c, &request);
            match &seen.got {
                Some((backend, rec)) => {
                    routed += 1;
                    let (resolved, dots) = upstream_view(&rec.target);
                    let why = format!("{mode} {path:?} → {backend} {:?}", rec.target);
                    assert!(!dots, "a dot-segment reached the origin: {why}");
                    match *backend {
                        "app" => {
                            assert!(rec.target.starts_with("/api/"), "{why}");
                            assert!(resolved.starts_with("/api/"), "{why}: {resolved}");
                        }
                        "strip" => assert!(rec.target.starts_with('/'), "{why}"),
                        other => panic!("{other} has no route for app.test: {why}"),
                    }
                }
                None => {
                    refused += 1;
                    assert!(
                        matches!(seen.resp.status, 400 | 404),
                        "{path:?}: {}",
                        seen.resp.describe()
                    );
                }
            }
            if seen.resp.connection_close() {
                c = Client::plain(g.proxy.addr()).expect("connect");
            }
        }
        assert!(
            routed > 50 && refused > 50,
            "{mode}: {routed} routed, {refused} refused"
        );
    }
}
