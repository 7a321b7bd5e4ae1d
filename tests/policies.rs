//! Gateway policies with real clients against the in-process proxy: a route's body limit
//! with both framings (413, the upstream never sees the over-limit body), a
//! `redirect_https` listener (308 with Location, query kept, unknown Host refused, 301
//! and the port configurable), a policy refusal counted in
//! `ringgate_policy_rejections_total{policy,reason}`, and `ringgate check` naming file,
//! line and field for each malformed policy key.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::backend::{Backend, pattern};
use common::client::{Client, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, run_cli, toml_str};
use common::{HOST, sha256_hex};

/// `ringgate_policy_rejections_total{policy,reason}` from `/metrics` once it reaches
/// `want` (the worker counts a request when its exchange finishes, just after the client
/// has its response), or its value after 10 s of asking.
fn rejections_reach(admin: SocketAddr, policy: &str, reason: &str, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = rejections(admin, policy, reason);
        if n >= want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::yield_now();
    }
}

/// `ringgate_policy_rejections_total{policy,reason}` from `/metrics`.
fn rejections(admin: SocketAddr, policy: &str, reason: &str) -> u64 {
    let mut c = Client::plain(admin).expect("connect admin");
    let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let key =
        format!("ringgate_policy_rejections_total{{policy=\"{policy}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {key} in /metrics:\n{text}"))
}

/// A TLS listener for [`HOST`], routes `/small/` (route limit 1000 bytes) and `/` (the
/// `[http]` limit, unlimited), and the admin listener.
struct Limited {
    proxy: Proxy,
    backend: Backend,
    pki: TestPki,
}

fn limited() -> Limited {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/small/", true, "backend")
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .admin()
        .build()
        .replacen(
            "strip_prefix = true\n",
            "strip_prefix = true\nmax_request_body_bytes = 1000\n",
            1,
        );
    let proxy = Proxy::start(&config, pki.dir());
    Limited {
        proxy,
        backend,
        pki,
    }
}

impl Limited {
    fn client(&self) -> Client {
        let opts = common::client::TlsOptions::new(self.pki.root_der(), HOST);
        Client::tls(self.proxy.addr(), &opts).expect("connect to the proxy")
    }

    /// Sends `request`, expects `status`; for 413 also that the connection closes.
    fn expect(&self, request: &[u8], status: u16, what: &str) {
        let mut c = self.client();
        c.send(request).expect("send");
        let resp = c
            .read_response(false)
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        assert_eq!(resp.status, status, "{what}\n{}", resp.describe());
        if status == 413 {
            assert!(resp.connection_close(), "{what}\n{}", resp.describe());
        }
    }
}

#[test]
fn a_routes_body_limit_refuses_content_length_and_chunked_bodies_over_it() {
    let l = limited();
    let admin = l.proxy.admin_addr();
    let at_limit = pattern(1, 1000);
    let over = pattern(2, 3000);
    // At the limit: through, with both framings.
    l.expect(&req::post(HOST, "/small/echo", &at_limit), 200, "CL at");
    l.expect(
        &req::post_chunked(HOST, "/small/echo", &at_limit, 300),
        200,
        "chunked at",
    );
    assert_eq!(l.backend.served(), 2);
    let heads = l.backend.heads();
    // Content-Length over it: refused before a byte is read; the upstream sees nothing.
    l.expect(&req::post(HOST, "/small/echo", &over), 413, "CL over");
    assert_eq!(
        l.backend.heads(),
        heads,
        "the upstream saw the refused request"
    );
    assert_eq!(rejections_reach(admin, "body_size", "content_length", 1), 1);
    // Chunked over it: the chunk that crosses the limit is never forwarded.
    l.expect(
        &req::post_chunked(HOST, "/small/echo", &over, 400),
        413,
        "chunked over",
    );
    assert_eq!(rejections_reach(admin, "body_size", "streamed", 1), 1);
    let whole = sha256_hex(&over);
    assert!(
        l.backend.requests().iter().all(|r| r.body_sha256 != whole),
        "the upstream received the whole over-limit body"
    );
    assert_eq!(
        l.backend.served(),
        2,
        "the upstream served the refused body"
    );
    // Another route keeps the [http] limit (none).
    l.expect(&req::post(HOST, "/echo", &over), 200, "CL elsewhere");
    l.expect(
        &req::post_chunked(HOST, "/echo", &over, 400),
        200,
        "chunked elsewhere",
    );
}

/// A TLS listener for [`HOST`] (and a route for `api.example`), and a plain listener
/// with `redirect_https = true` plus `extra` keys.
fn redirecting(extra: &str) -> (Proxy, TestPki, Backend) {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .plain_listener()
        .route(Some("api.example"), "/", false, "backend")
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .admin()
        .build()
        .replacen(
            "addr = \"127.0.0.1:0\"\n\n[[route]]",
            &format!("addr = \"127.0.0.1:0\"\nredirect_https = true\n{extra}\n[[route]]"),
            1,
        );
    assert!(config.contains("redirect_https"), "{config}");
    (Proxy::start(&config, pki.dir()), pki, backend)
}

fn plain_roundtrip(addr: SocketAddr, request: &[u8]) -> common::client::Response {
    Client::plain(addr).expect("connect").roundtrip(request)
}

#[test]
fn a_redirect_listener_sends_served_hosts_to_https_and_refuses_others() {
    let (proxy, pki, _backend) = redirecting("");
    let plain = proxy.addrs()[1];
    let r = plain_roundtrip(plain, &req::get(HOST, "/a/b?x=1&y=%20"));
    assert_eq!(r.status, 308, "{}", r.describe());
    assert_eq!(r.header("location"), Some("https://app.test/a/b?x=1&y=%20"));
    assert_eq!(r.header("content-length"), Some("0"));
    // A route's host is served too; the Host's port is not the HTTPS one.
    let r = plain_roundtrip(plain, &req::get("API.example:80", "/v1"));
    assert_eq!(r.status, 308, "{}", r.describe());
    assert_eq!(r.header("location"), Some("https://api.example/v1"));
    // Never an open redirect.
    for host in ["evil.example", "app.test.evil.example", "127.0.0.1"] {
        let r = plain_roundtrip(plain, &req::get(host, "/"));
        assert_eq!(r.status, 421, "{host}: {}", r.describe());
        assert_eq!(r.header("location"), None, "{host}");
    }
    let admin = proxy.admin_addr();
    assert_eq!(
        rejections_reach(admin, "redirect_https", "redirected", 2),
        2
    );
    assert_eq!(
        rejections_reach(admin, "redirect_https", "unknown_host", 3),
        3
    );
    // The TLS listener serves as usual.
    let tls = common::client::TlsOptions::new(pki.root_der(), HOST);
    let mut c = Client::tls(proxy.addr(), &tls).expect("tls");
    assert_eq!(c.roundtrip(&req::get(HOST, "/bytes/3")).status, 200);
}

#[test]
fn a_redirects_status_and_port_are_configurable() {
    let (proxy, _pki, _backend) =
        redirecting("redirect_status = 301\nredirect_https_port = 8443\n");
    let r = plain_roundtrip(proxy.addrs()[1], &req::get(HOST, "/p?q"));
    assert_eq!(r.status, 301, "{}", r.describe());
    assert_eq!(r.header("location"), Some("https://app.test:8443/p?q"));
}

#[test]
fn a_client_cert_refusal_is_counted_by_policy_and_reason() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .admin()
        .build()
        .replacen(
            "upstream = \"backend\"\n",
            "upstream = \"backend\"\n[route.client_cert]\nrequired = true\n",
            1,
        );
    let proxy = Proxy::start(&config, pki.dir());
    let admin = proxy.admin_addr();
    assert_eq!(
        rejections(admin, "client_cert", "no_verified_certificate"),
        0
    );
    let opts = common::client::TlsOptions::new(pki.root_der(), HOST);
    let mut c = Client::tls(proxy.addr(), &opts).expect("tls");
    for _ in 0..2 {
        let r = c.roundtrip(&req::get(HOST, "/bytes/3"));
        assert_eq!(r.status, 403, "{}", r.describe());
    }
    assert_eq!(
        rejections(admin, "client_cert", "no_verified_certificate"),
        2
    );
    assert_eq!(rejections(admin, "client_cert", "subject_not_allowed"), 0);
    assert_eq!(backend.heads(), 0);
}

/// Writes `text` into `dir` and runs `ringgate check` on it; the output must exit 1 and
/// have a line `NAME:LINE:` naming `field` and containing `words`.
fn check_rejects(dir: &Path, name: &str, text: &str, needle: &str, field: &str, words: &[&str]) {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write config");
    let out = run_cli(&["check", "-c", &file.to_string_lossy()], dir);
    assert_eq!(out.status.code(), Some(1), "{name}:\n{}", out.text);
    let line = text
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1;
    let place = format!("{name}:{line}:");
    let found = out.text.lines().any(|l| {
        let lower = l.to_ascii_lowercase();
        l.contains(&place)
            && l.contains(&format!("{field}: "))
            && words
                .iter()
                .all(|w| lower.contains(&w.to_ascii_lowercase()))
    });
    assert!(
        found,
        "{name}: expected {place} {field}: {words:?}; output:\n{}",
        out.text
    );
}

#[test]
fn check_names_file_line_and_field_for_each_malformed_policy_key() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let base = format!(
        "[[listener]]\naddr = \"127.0.0.1:18443\"\n{{TLS_EXTRA}}[listener.tls]\n\
         [[listener.tls.certificates]]\ncert = {}\nkey = {}\n\n\
         [[listener]]\naddr = \"127.0.0.1:18080\"\n{{PLAIN_EXTRA}}\n\
         [[route]]\nupstream = \"backend\"\n{{ROUTE_EXTRA}}\n\
         [upstream.backend]\nservers = [\"127.0.0.1:9\"]\n",
        toml_str(&cert.cert.to_string_lossy()),
        toml_str(&cert.key.to_string_lossy())
    );
    let with = |tls: &str, plain: &str, route: &str| {
        base.replace("{TLS_EXTRA}", tls)
            .replace("{PLAIN_EXTRA}", plain)
            .replace("{ROUTE_EXTRA}", route)
    };
    let dir = pki.dir();
    let good = with("", "redirect_https = true\nredirect_status = 301\n", "");
    let file = dir.join("good.toml");
    std::fs::write(&file, &good).expect("write");
    let out = run_cli(&["check", "-c", &file.to_string_lossy()], dir);
    assert_eq!(out.status.code(), Some(0), "{}", out.text);

    let text = with("", "", "max_request_body_bytes = -1\n");
    check_rejects(
        dir,
        "body.toml",
        &text,
        "max_request_body_bytes",
        "route[0].max_request_body_bytes",
        &["-1", "range"],
    );
    let text = with("", "redirect_https = true\nredirect_status = 302\n", "");
    check_rejects(
        dir,
        "status.toml",
        &text,
        "redirect_status",
        "listener[1].redirect_status",
        &["302", "308", "301"],
    );
    let text = with(
        "",
        "redirect_https = true\nredirect_https_port = 70000\n",
        "",
    );
    check_rejects(
        dir,
        "port.toml",
        &text,
        "redirect_https_port",
        "listener[1].redirect_https_port",
        &["70000", "range"],
    );
    let text = with("redirect_https = true\n", "", "");
    check_rejects(
        dir,
        "tls.toml",
        &text,
        "redirect_https",
        "listener[0].redirect_https",
        &["plain listener"],
    );
    let text = with("", "redirect_status = 308\n", "");
    check_rejects(
        dir,
        "alone.toml",
        &text,
        "redirect_status",
        "listener[1].redirect_status",
        &["needs redirect_https = true"],
    );
}

#[test]
fn the_gateways_own_answer_to_head_has_no_body_and_the_connection_goes_on() {
    let (proxy, _pki, _backend) = redirecting("");
    let mut c = Client::plain(proxy.addrs()[1]).expect("connect");
    c.send(&req::head("evil.example", "/x")).expect("send");
    let r = c.read_response(true).expect("the 421 head");
    assert_eq!(r.status, 421, "{}", r.describe());
    assert!(r.body.is_empty());
    // The next response on the connection starts where the head ended.
    let r = c.roundtrip(&req::get(HOST, "/next"));
    assert_eq!(r.status, 308, "{}", r.describe());
    assert_eq!(r.header("location"), Some("https://app.test/next"));
}
