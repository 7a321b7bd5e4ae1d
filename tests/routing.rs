//! Route selection: exact host, `*.suffix` wildcard, longest path prefix, `strip_prefix`,
//! and a 404 from the proxy itself when nothing matches.

mod common;

use common::backend::Backend;
use common::client::{Client, Response, TlsOptions, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};

struct Routes {
    proxy: Proxy,
    pki: TestPki,
    api: Backend,
    wild: Backend,
    statics: Backend,
    images: Backend,
    strip: Backend,
    fallback: Backend,
}

impl Routes {
    fn new() -> Routes {
        let pki = TestPki::new();
        let cert = pki.leaf(
            &[
                "api.test",
                "*.example.test",
                "strip.test",
                "other.test",
                "www.test",
            ],
            KeyType::EcdsaP256,
            KeyEncoding::Pkcs8,
        );
        let api = Backend::named("api");
        let wild = Backend::named("wild");
        let statics = Backend::named("static");
        let images = Backend::named("images");
        let strip = Backend::named("strip");
        let fallback = Backend::named("fallback");
        let config = ConfigBuilder::new()
            .tls_listener(&[&cert])
            .route(Some("api.test"), "/", false, "api")
            .route(Some("*.example.test"), "/", false, "wild")
            .route(None, "/static/", false, "static")
            .route(None, "/static/img/", false, "images")
            .route(Some("strip.test"), "/v1/", true, "strip")
            .route(Some("www.test"), "/", false, "fallback")
            .upstream("api", &[api.addr], &[])
            .upstream("wild", &[wild.addr], &[])
            .upstream("static", &[statics.addr], &[])
            .upstream("images", &[images.addr], &[])
            .upstream("strip", &[strip.addr], &[])
            .upstream("fallback", &[fallback.addr], &[]);
        let proxy = Proxy::start(&config.build(), pki.dir());
        Routes {
            proxy,
            pki,
            api,
            wild,
            statics,
            images,
            strip,
            fallback,
        }
    }

    fn get(&self, host: &str, path: &str) -> Response {
        // SNI stays within the certificate; the Host header is what routes.
        let mut c = Client::tls(
            self.proxy.addr(),
            &TlsOptions::new(self.pki.root_der(), "api.test"),
        )
        .expect("connect to proxy");
        c.roundtrip(&req::get(host, path))
    }

    fn backends(&self) -> [&Backend; 6] {
        [
            &self.api,
            &self.wild,
            &self.statics,
            &self.images,
            &self.strip,
            &self.fallback,
        ]
    }

    /// Sends the request and checks that exactly `expected` served it, seeing `target`.
    fn expect_routed(&self, host: &str, path: &str, expected: &Backend, target: &str) {
        let before: Vec<usize> = self.backends().iter().map(|b| b.served()).collect();
        let resp = self.get(host, path);
        assert_eq!(
            resp.header("x-backend"),
            Some(expected.name()),
            "Host {host} path {path} should go to {}\n{}",
            expected.name(),
            resp.describe()
        );
        for (b, n) in self.backends().iter().zip(before) {
            let want = n + usize::from(b.name() == expected.name());
            assert_eq!(
                b.served(),
                want,
                "Host {host} path {path}: backend {} served count",
                b.name()
            );
        }
        let seen = expected.last_request().expect("request recorded");
        assert_eq!(
            seen.target, target,
            "Host {host} path {path}: target at the origin"
        );
    }
}

#[test]
fn exact_host_routes() {
    let r = Routes::new();
    r.expect_routed("api.test", "/bytes/1", &r.api, "/bytes/1");
    r.expect_routed("API.test:443", "/bytes/2", &r.api, "/bytes/2");
    r.expect_routed("www.test", "/headers", &r.fallback, "/headers");
}

#[test]
fn wildcard_host_routes() {
    let r = Routes::new();
    r.expect_routed("a.example.test", "/bytes/1", &r.wild, "/bytes/1");
    r.expect_routed("b.c.example.test", "/bytes/1", &r.wild, "/bytes/1");
    // The bare suffix is not covered by the wildcard; nothing else matches "/".
    let resp = r.get("example.test", "/bytes/1");
    assert_eq!(resp.status, 404, "{}", resp.describe());
}

#[test]
fn longest_path_prefix_wins() {
    let r = Routes::new();
    r.expect_routed(
        "other.test",
        "/static/app.css",
        &r.statics,
        "/static/app.css",
    );
    r.expect_routed(
        "other.test",
        "/static/img/logo.png",
        &r.images,
        "/static/img/logo.png",
    );
    r.expect_routed("other.test", "/static/imgx", &r.statics, "/static/imgx");
}

#[test]
fn strip_prefix_rewrites_the_path() {
    let r = Routes::new();
    r.expect_routed("strip.test", "/v1/headers", &r.strip, "/headers");
    r.expect_routed(
        "strip.test",
        "/v1/bytes/5?chunked",
        &r.strip,
        "/bytes/5?chunked",
    );
    let resp = r.get("strip.test", "/v1/bytes/5");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body.len(), 5);
}

#[test]
fn no_matching_route_is_404_from_the_proxy() {
    let r = Routes::new();
    for (host, path) in [
        ("other.test", "/"),
        ("other.test", "/nothing"),
        ("strip.test", "/v2/x"),
        ("other.test", "/stati"),
    ] {
        let resp = r.get(host, path);
        assert_eq!(
            resp.status,
            404,
            "Host {host} path {path}\n{}",
            resp.describe()
        );
        assert!(
            resp.header("x-backend").is_none(),
            "the 404 must come from the proxy, not an origin\n{}",
            resp.describe()
        );
    }
    let total: usize = r.backends().iter().map(|b| b.served()).sum();
    assert_eq!(total, 0, "no origin may see unrouted requests");
}

/// `OPTIONS *` is routed like `/` and reaches the origin with its `*` target intact.
#[test]
fn options_asterisk_is_forwarded_as_is() {
    let f = common::Fixture::new();
    let mut c = f.client();
    let r = c.roundtrip(format!("OPTIONS * HTTP/1.1\r\nHost: {}\r\n\r\n", common::HOST).as_bytes());
    assert!(r.status < 500, "{}", r.describe());
    let seen = f.backend.last_request().expect("origin saw the request");
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("OPTIONS", "*")
    );
}

/// One host whose `/bytes/` routes differ by method and request header, in config order:
/// `X-Api-Version: 2` → v2; GET and HEAD → replica; anything else → primary. Under `/`,
/// `X-Canary` present → canary, a `curl/` user agent → tools, else primary. `/only/`
/// takes DELETE only and has no fallback of its own on `strict.test`.
struct Conditional {
    proxy: Proxy,
    pki: TestPki,
    primary: Backend,
    replica: Backend,
    v2: Backend,
    canary: Backend,
    tools: Backend,
}

impl Conditional {
    fn new() -> Conditional {
        let pki = TestPki::new();
        let cert = pki.leaf(
            &["api.test", "strict.test"],
            KeyType::EcdsaP256,
            KeyEncoding::Pkcs8,
        );
        let [primary, replica, v2, canary, tools] =
            ["primary", "replica", "v2", "canary", "tools"].map(Backend::named);
        let mut toml = ConfigBuilder::new()
            .tls_listener(&[&cert])
            .upstream("primary", &[primary.addr], &[])
            .upstream("replica", &[replica.addr], &[])
            .upstream("v2", &[v2.addr], &[])
            .upstream("canary", &[canary.addr], &[])
            .upstream("tools", &[tools.addr], &[])
            .build();
        toml += r#"
[[route]]
host = "api.test"
path_prefix = "/bytes/"
upstream = "v2"
[[route.headers]]
name = "X-API-Version"
exact = "2"

[[route]]
host = "api.test"
path_prefix = "/bytes/"
methods = ["GET", "HEAD"]
upstream = "replica"

[[route]]
host = "api.test"
path_prefix = "/bytes/"
upstream = "primary"

[[route]]
host = "api.test"
upstream = "canary"
[[route.headers]]
name = "x-canary"
present = true

[[route]]
host = "api.test"
upstream = "tools"
headers = [{ name = "user-agent", prefix = "curl/" }]

[[route]]
host = "api.test"
upstream = "primary"

[[route]]
host = "strict.test"
path_prefix = "/only/"
methods = ["DELETE"]
upstream = "primary"
"#;
        let proxy = Proxy::start(&toml, pki.dir());
        Conditional {
            proxy,
            pki,
            primary,
            replica,
            v2,
            canary,
            tools,
        }
    }

    fn send(&self, request: &[u8]) -> Response {
        let mut c = Client::tls(
            self.proxy.addr(),
            &TlsOptions::new(self.pki.root_der(), "api.test"),
        )
        .expect("connect to proxy");
        c.roundtrip(request)
    }

    fn backends(&self) -> [&Backend; 5] {
        [
            &self.primary,
            &self.replica,
            &self.v2,
            &self.canary,
            &self.tools,
        ]
    }

    fn served(&self) -> Vec<usize> {
        self.backends().iter().map(|b| b.served()).collect()
    }

    /// Sends `request` and checks that exactly `expected` served it, with `method`.
    fn expect_routed(&self, request: &[u8], expected: &Backend, method: &str) {
        let what = common::client::first_line(request);
        let before = self.served();
        let resp = self.send(request);
        assert_eq!(
            resp.header("x-backend"),
            Some(expected.name()),
            "{what} should go to {}\n{}",
            expected.name(),
            resp.describe()
        );
        for (b, n) in self.backends().iter().zip(before) {
            let want = n + usize::from(b.name() == expected.name());
            assert_eq!(
                b.served(),
                want,
                "{what}: backend {} served count",
                b.name()
            );
        }
        let seen = expected.last_request().expect("request recorded");
        assert_eq!(seen.method, method, "{what}: method at the origin");
    }
}

/// A request with extra header lines (each `Name: value\r\n`).
fn with_fields(method: &str, host: &str, path: &str, fields: &str) -> Vec<u8> {
    let body = if method == "POST" || method == "PUT" {
        "Content-Length: 2\r\n\r\nhi"
    } else {
        "\r\n"
    };
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{fields}{body}").into_bytes()
}

#[test]
fn methods_route_reads_to_a_replica_and_writes_to_the_primary() {
    let r = Conditional::new();
    r.expect_routed(&req::get("api.test", "/bytes/3"), &r.replica, "GET");
    r.expect_routed(&req::head("api.test", "/bytes/3"), &r.replica, "HEAD");
    r.expect_routed(
        &req::post("api.test", "/bytes/3", b"hi"),
        &r.primary,
        "POST",
    );
    let put = with_fields("PUT", "api.test", "/bytes/3", "");
    r.expect_routed(&put, &r.primary, "PUT");
    let delete = with_fields("DELETE", "api.test", "/bytes/3", "");
    r.expect_routed(&delete, &r.primary, "DELETE");
}

#[test]
fn headers_route_by_exact_value_presence_and_prefix() {
    let r = Conditional::new();
    // Field names match in any case; the value exactly, surrounding spaces aside.
    for method in ["GET", "POST"] {
        let v2 = with_fields(method, "api.test", "/bytes/3", "x-api-version:  2 \r\n");
        r.expect_routed(&v2, &r.v2, method);
    }
    // Not version 2: the method decides, as if the first route were absent.
    let v3 = with_fields("GET", "api.test", "/bytes/3", "X-Api-Version: 3\r\n");
    r.expect_routed(&v3, &r.replica, "GET");
    let v22 = with_fields("POST", "api.test", "/bytes/3", "X-Api-Version: 22\r\n");
    r.expect_routed(&v22, &r.primary, "POST");
    // Under `/`: presence, then a prefix, then the catch-all.
    let canary = with_fields("GET", "api.test", "/headers", "X-Canary: \r\n");
    r.expect_routed(&canary, &r.canary, "GET");
    let curl = with_fields("GET", "api.test", "/headers", "User-Agent: curl/8.5.0\r\n");
    r.expect_routed(&curl, &r.tools, "GET");
    let other = with_fields(
        "GET",
        "api.test",
        "/headers",
        "User-Agent: Mozilla/5.0 curl/8\r\n",
    );
    r.expect_routed(&other, &r.primary, "GET");
}

/// curl, an outside client, sends the header that routes.
#[test]
fn curl_is_routed_by_its_header() {
    let version = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
    assert!(version.status.success(), "curl --version failed");
    let r = Conditional::new();
    let port = r.proxy.addr().port();
    for (extra, want) in [
        (Some("X-API-Version: 2"), &r.v2),
        (Some("X-API-Version: 1"), &r.replica),
        (None, &r.replica),
    ] {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--http1.1", "--max-time", "30", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--cacert"])
            .arg(r.pki.root_pem_path())
            .arg("--resolve")
            .arg(format!("api.test:{port}:127.0.0.1"));
        if let Some(h) = extra {
            cmd.args(["-H", h]);
        }
        let before = want.served();
        let out = cmd
            .arg(format!("https://api.test:{port}/bytes/4"))
            .output()
            .expect("run curl");
        let code = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && code == "200",
            "curl with {extra:?}: status {code}, {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            want.served(),
            before + 1,
            "curl with {extra:?} goes to {}",
            want.name()
        );
    }
}

/// Envoy and Kong answer 404 when no route's method and header conditions hold; so does
/// ringgate, from the proxy itself (no 405: the route a 405 would speak for does not
/// exist for that method).
#[test]
fn no_route_whose_conditions_hold_is_404_from_the_proxy() {
    let r = Conditional::new();
    for request in [
        req::get("strict.test", "/only/x"),
        req::post("strict.test", "/only/x", b"hi"),
        with_fields("delete", "strict.test", "/only/x", ""),
    ] {
        let what = common::client::first_line(&request);
        let resp = r.send(&request);
        assert_eq!(resp.status, 404, "{what}\n{}", resp.describe());
        assert!(
            resp.header("x-backend").is_none() && resp.header("allow").is_none(),
            "{what}: a 404 of the proxy's own, without Allow\n{}",
            resp.describe()
        );
    }
    assert_eq!(r.served().iter().sum::<usize>(), 0, "no origin saw them");
    let delete = with_fields("DELETE", "strict.test", "/only/x", "");
    r.expect_routed(&delete, &r.primary, "DELETE");
}
