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
