//! CORS and security headers through a real client: preflights answered by the gateway
//! without reaching the upstream, allowed and disallowed origins on actual requests,
//! request and response header rules, and the security headers on the upstream's
//! responses and on the gateway's own 404 and 502 (nginx's `add_header … always`).

mod common;

use common::backend::{Backend, refusing_addr};
use common::client::{Client, Response, TlsOptions};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, toml_str};

const HOST: &str = "app.test";
const ALLOWED: &str = "https://app.example.com";

const SECURITY: &str = "[listener.security_headers]\n\
    hsts = \"max-age=31536000; includeSubDomains\"\n\
    content_type_options = \"nosniff\"\n\
    frame_options = \"DENY\"\n\
    referrer_policy = \"no-referrer\"\n";

struct Gateway {
    proxy: Proxy,
    backend: Backend,
    pki: TestPki,
}

impl Gateway {
    /// A TLS listener (first) and a plain one, both with [`SECURITY`]; `/` on
    /// [`HOST`] to a backend with header rules and CORS for `https://*.example.com`,
    /// `/down/` to an address where nothing listens.
    fn start() -> Gateway {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let backend = Backend::start();
        let mut text = ConfigBuilder::new().tls_listener(&[&cert]).build();
        text += SECURITY;
        text += "\n[[listener]]\naddr = \"127.0.0.1:0\"\n";
        text += SECURITY;
        text += &format!(
            "\n[[route]]\nhost = \"{HOST}\"\nupstream = \"backend\"\n\
             [[route.request_headers]]\naction = \"set\"\nname = \"X-Api-Version\"\nvalue = \"2\"\n\
             [[route.request_headers]]\naction = \"remove\"\nname = \"X-Internal\"\n\
             [[route.response_headers]]\naction = \"add\"\nname = \"X-Gateway\"\nvalue = \"edge 1\"\n\
             [route.cors]\n\
             allow_origins = [\"https://*.example.com\"]\n\
             allow_methods = [\"GET\", \"PUT\"]\n\
             allow_headers = [\"Content-Type\"]\n\
             expose_headers = [\"X-Request-Id\"]\n\
             allow_credentials = true\n\
             max_age_secs = 600\n\
             \n[[route]]\nhost = \"{HOST}\"\npath_prefix = \"/down/\"\nupstream = \"down\"\n\
             [route.cors]\nallow_origins = [\"{ALLOWED}\"]\n\
             \n[upstream.backend]\nservers = [{}]\n\
             \n[upstream.down]\nservers = [{}]\nconnect_timeout_ms = 2000\n",
            toml_str(&backend.addr.to_string()),
            toml_str(&refusing_addr().to_string()),
        );
        let proxy = Proxy::start(&text, pki.dir());
        Gateway {
            proxy,
            backend,
            pki,
        }
    }

    fn client(&self) -> Client {
        let opts = TlsOptions::new(self.pki.root_der(), HOST);
        Client::tls(self.proxy.addrs()[0], &opts).expect("connect over TLS")
    }

    fn plain_client(&self) -> Client {
        Client::plain(self.proxy.addrs()[1]).expect("connect over plain TCP")
    }
}

fn all<'r>(r: &'r Response, name: &str) -> Vec<&'r str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn cors_fields(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect()
}

/// The listener's security headers, each once; HSTS only when `https`.
fn assert_security(r: &Response, https: bool) {
    let hsts = if https {
        vec!["max-age=31536000; includeSubDomains"]
    } else {
        vec![]
    };
    assert_eq!(
        all(r, "strict-transport-security"),
        hsts,
        "{}",
        r.describe()
    );
    assert_eq!(
        all(r, "x-content-type-options"),
        ["nosniff"],
        "{}",
        r.describe()
    );
    assert_eq!(all(r, "x-frame-options"), ["DENY"], "{}", r.describe());
    assert_eq!(
        all(r, "referrer-policy"),
        ["no-referrer"],
        "{}",
        r.describe()
    );
}

fn request(method: &str, path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n");
    for (k, v) in fields {
        s += &format!("{k}: {v}\r\n");
    }
    s += "\r\n";
    s.into_bytes()
}

#[test]
fn a_preflight_is_answered_by_the_gateway_and_never_reaches_the_upstream() {
    let g = Gateway::start();
    let mut c = g.client();
    let preflight = |origin: &str| {
        request(
            "OPTIONS",
            "/v1/items",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "PUT"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
        )
    };
    let r = c.roundtrip(&preflight(ALLOWED));
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_eq!(
        cors_fields(&r),
        [
            "Access-Control-Allow-Origin: https://app.example.com",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Allow-Methods: GET, PUT",
            "Access-Control-Allow-Headers: Content-Type",
            "Access-Control-Max-Age: 600",
        ],
        "{}",
        r.describe()
    );
    assert_eq!(all(&r, "vary"), ["Origin"]);
    assert_eq!(all(&r, "x-gateway"), ["edge 1"], "response rules apply too");
    // A 204 has no Content-Length (RFC 9110 §8.6) and no body.
    assert_eq!(r.header("content-length"), None, "{}", r.describe());
    assert!(r.body.is_empty());
    assert_security(&r, true);
    assert!(!r.connection_close(), "{}", r.describe());

    // A disallowed origin: 204 as well, without a single CORS field.
    for origin in [
        "https://app.example.com.attacker.net",
        "null",
        "https://example.com",
    ] {
        let r = c.roundtrip(&preflight(origin));
        assert_eq!(r.status, 204, "{origin}: {}", r.describe());
        assert!(cors_fields(&r).is_empty(), "{origin}: {}", r.describe());
        assert_eq!(
            r.header("content-length"),
            None,
            "{origin}: {}",
            r.describe()
        );
        assert_eq!(all(&r, "vary"), ["Origin"]);
        assert_security(&r, true);
    }
    assert_eq!(g.backend.heads(), 0, "a preflight reached the upstream");

    // The connection carries on to the upstream.
    let r = c.roundtrip(&request("GET", "/echo", &[]));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(g.backend.heads(), 1);
}

#[test]
fn actual_requests_get_cors_fields_for_allowed_origins_only() {
    let g = Gateway::start();
    let mut c = g.client();
    let r = c.roundtrip(&request(
        "GET",
        "/headers",
        &[
            ("Origin", "https://shop.example.com"),
            ("X-Internal", "secret"),
            ("X-Api-Version", "1"),
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        cors_fields(&r),
        [
            "Access-Control-Allow-Origin: https://shop.example.com",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Expose-Headers: X-Request-Id",
        ]
    );
    assert_eq!(all(&r, "vary"), ["Origin"]);
    assert_eq!(all(&r, "x-gateway"), ["edge 1"]);
    assert_security(&r, true);
    let seen = g.backend.last_request().expect("forwarded");
    assert_eq!(
        seen.header_all("x-api-version"),
        ["2"],
        "set replaces the client's value"
    );
    assert!(
        seen.header("x-internal").is_none(),
        "removed before the upstream"
    );
    assert_eq!(seen.header("origin"), Some("https://shop.example.com"));

    // Disallowed or null: still forwarded (the browser enforces CORS), no CORS fields.
    for origin in [
        "https://evil.example.com.attacker.net",
        "null",
        "http://shop.example.com",
    ] {
        let before = g.backend.heads();
        let r = c.roundtrip(&request("GET", "/echo", &[("Origin", origin)]));
        assert_eq!(r.status, 200, "{origin}: {}", r.describe());
        assert!(cors_fields(&r).is_empty(), "{origin}: {}", r.describe());
        assert_eq!(all(&r, "vary"), ["Origin"], "{origin}");
        assert_eq!(g.backend.heads(), before + 1);
    }

    // OPTIONS without Access-Control-Request-Method is no preflight: it goes upstream.
    let before = g.backend.heads();
    let r = c.roundtrip(&request("OPTIONS", "/echo", &[("Origin", ALLOWED)]));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(g.backend.heads(), before + 1);
    assert_eq!(
        g.backend.last_request().expect("forwarded").method,
        "OPTIONS"
    );
}

#[test]
fn the_gateways_own_404_and_502_carry_the_security_headers() {
    let g = Gateway::start();
    let mut c = g.client();
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_security(&r, true);
    assert_eq!(r.body, b"no route for this host and path\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(cors_fields(&r).is_empty(), "no route: no route's CORS");
    assert!(!r.connection_close(), "{}", r.describe());

    let r = c.roundtrip(b"HEAD / HTTP/1.1\r\nHost: other.test\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_security(&r, true);
    assert_eq!(r.header("content-length"), Some("32"), "{}", r.describe());

    let r = c.roundtrip(&request("GET", "/down/x", &[("Origin", ALLOWED)]));
    assert_eq!(r.status, 502, "{}", r.describe());
    assert_security(&r, true);
    assert_eq!(
        cors_fields(&r),
        ["Access-Control-Allow-Origin: https://app.example.com"],
        "a browser may read the route's errors"
    );
    // The connection still serves after the gateway's own answers.
    let r = c.roundtrip(&request("GET", "/echo", &[]));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_security(&r, true);
    assert_eq!(
        g.backend.heads(),
        1,
        "only the last request reached the upstream"
    );
}

#[test]
fn plain_http_gets_the_security_headers_but_never_hsts() {
    let g = Gateway::start();
    let mut c = g.plain_client();
    let r = c.roundtrip(&request("GET", "/echo", &[]));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_security(&r, false);
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_security(&r, false);
}

/// `ringgate check` (the real binary) names the line, the field and the reason of each
/// bad policy value, all in one run, and exits 1.
#[test]
fn ringgate_check_names_every_bad_policy_value() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let text = format!(
        "[[listener]]\naddr = \"127.0.0.1:18080\"\n\
         [listener.security_headers]\n\
         hsts = \"includeSubDomains\"\n\
         frame_options = \"ALLOW-FROM https://a.example\"\n\
         custom = {{ \"Transfer-Encoding\" = \"chunked\" }}\n\
         [[route]]\nupstream = \"u\"\n\
         [[route.request_headers]]\naction = \"set\"\nname = \"Host\"\nvalue = \"internal\"\n\
         [[route.response_headers]]\naction = \"append\"\nname = \"X-A\"\nvalue = \"1\"\n\
         [route.cors]\n\
         allow_origins = [\"*\"]\n\
         allow_credentials = true\n\
         allow_methods = [\"GET\", \"PUT DELETE\"]\n\
         max_age_secs = 100000\n\
         [upstream.u]\nservers = [{}]\n",
        toml_str(&refusing_addr().to_string())
    );
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, &text).expect("write config");
    let out = common::proxy::run_cli(&["check", "-c", &file.to_string_lossy()], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", out.text);
    let line = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in the config"))
            + 1
    };
    let expected = [
        (
            line("hsts ="),
            "listener[0].security_headers.hsts: ",
            "needs max-age=SECONDS",
        ),
        (
            line("frame_options ="),
            "listener[0].security_headers.frame_options: ",
            "\"DENY\" or \"SAMEORIGIN\"",
        ),
        (
            line("custom ="),
            "listener[0].security_headers.custom.Transfer-Encoding: ",
            "framing",
        ),
        (
            line("\"Host\""),
            "route[0].request_headers[0].name: ",
            "written by the proxy",
        ),
        (
            line("\"append\""),
            "route[0].response_headers[0].action: ",
            "\"add\", \"set\", \"remove\"",
        ),
        (
            line("allow_origins"),
            "route[0].cors.allow_origins[0]: ",
            "allow_credentials",
        ),
        (
            line("allow_methods"),
            "route[0].cors.allow_methods[1]: ",
            "not an HTTP token",
        ),
        (
            line("max_age_secs"),
            "route[0].cors.max_age_secs: ",
            "out of range",
        ),
    ];
    for (at, field, words) in expected {
        let place = format!("policies.toml:{at}:");
        assert!(
            out.text
                .lines()
                .any(|l| l.contains(&place) && l.contains(field) && l.contains(words)),
            "no line {place}…{field}…{words}; output:\n{}",
            out.text
        );
    }
}
