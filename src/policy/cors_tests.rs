use bytes::Bytes;

use super::*;
use crate::message::{BodyLength, ClientInfo, Header, Request};

fn h(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::from(name.to_string()),
        value: Bytes::from(value.to_string()),
    }
}

fn request(method: &'static str, headers: Vec<Header>) -> Request {
    Request {
        method: Bytes::from_static(method.as_bytes()),
        scheme: "https",
        authority: Some(Bytes::from_static(b"api.example.com")),
        authority_sent: Some(Bytes::from_static(b"api.example.com")),
        path: Bytes::from_static(b"/v1/items"),
        headers,
        body: BodyLength::None,
        client: ClientInfo::new("198.51.100.7:4000".parse().expect("addr"), "https"),
        tls: None,
        received: monoio::time::Instant::now(),
    }
}

fn preflight_from(origin: &str) -> Request {
    request(
        "OPTIONS",
        vec![
            h("Origin", origin),
            h("Access-Control-Request-Method", "PUT"),
            h("Access-Control-Request-Headers", "content-type"),
        ],
    )
}

fn pattern(s: &str) -> OriginPattern {
    OriginPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cors(origins: &[&str], credentials: bool) -> Cors {
    Cors {
        origins: AllowedOrigins::List(origins.iter().map(|o| pattern(o)).collect()),
        credentials,
        allow_methods: Bytes::from_static(b"GET, PUT"),
        allow_headers: Some(Bytes::from_static(b"Content-Type, Authorization")),
        expose_headers: Some(Bytes::from_static(b"X-Request-Id")),
        max_age: Some(Bytes::from_static(b"600")),
    }
}

fn any() -> Cors {
    Cors {
        origins: AllowedOrigins::Any,
        ..cors(&[], false)
    }
}

fn lines(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .map(|h| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(&h.name),
                String::from_utf8_lossy(&h.value)
            )
        })
        .collect()
}

#[test]
fn an_allowed_preflight_is_answered_204_with_the_fields() {
    let c = cors(&["https://app.example.com"], true);
    let head = preflight(&c, &preflight_from("https://app.example.com")).expect("a preflight");
    assert_eq!(head.status, 204);
    assert_eq!(
        lines(&head.headers),
        [
            "Vary: Origin",
            "Access-Control-Allow-Origin: https://app.example.com",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Allow-Methods: GET, PUT",
            "Access-Control-Allow-Headers: Content-Type, Authorization",
            "Access-Control-Max-Age: 600",
        ]
    );
}

#[test]
fn a_disallowed_preflight_is_answered_204_without_cors_fields() {
    let c = cors(&["https://app.example.com"], true);
    for origin in [
        "https://evil.example.net",
        "null",
        "https://app.example.com.evil.net",
    ] {
        let head = preflight(&c, &preflight_from(origin)).expect("still answered here");
        assert_eq!(head.status, 204);
        assert_eq!(lines(&head.headers), ["Vary: Origin"], "{origin}");
    }
}

#[test]
fn only_options_with_origin_and_request_method_is_a_preflight() {
    let c = cors(&["https://app.example.com"], false);
    let origin = h("Origin", "https://app.example.com");
    let acrm = h("Access-Control-Request-Method", "PUT");
    assert!(preflight(&c, &request("OPTIONS", vec![origin.clone()])).is_none());
    assert!(preflight(&c, &request("OPTIONS", vec![acrm.clone()])).is_none());
    assert!(preflight(&c, &request("GET", vec![origin.clone(), acrm.clone()])).is_none());
    assert!(preflight(&c, &request("options", vec![origin.clone(), acrm.clone()])).is_none());
    // Field names in any case.
    let lower = vec![
        h("origin", "https://app.example.com"),
        h("ACCESS-CONTROL-REQUEST-METHOD", "PUT"),
    ];
    assert!(preflight(&c, &request("OPTIONS", lower)).is_some());
}

#[test]
fn wildcard_origins_take_one_label_same_scheme_same_port() {
    let p = pattern("https://*.example.com");
    for ok in [
        "https://a.example.com",
        "https://app-2.example.com",
        "HTTPS://App.Example.COM",
    ] {
        assert!(p.matches(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "https://example.com",
        "https://.example.com",
        "https://a.b.example.com",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://a.example.com:443",
        "https://evil.example.com.attacker.net",
        "https://a.example.com.",
        "https://aexample.com",
        "https://a_b.example.com",
        "https://-a.example.com",
        "https://user@a.example.com",
        "https://a.example.com/",
        "https://a.example.comx",
        "null",
        "",
    ] {
        assert!(!p.matches(bad.as_bytes()), "{bad}");
    }
    let port = pattern("https://*.example.com:8443");
    assert!(port.matches(b"https://a.example.com:8443"));
    assert!(!port.matches(b"https://a.example.com"));
    assert!(!port.matches(b"https://a.example.com:84430"));
}

#[test]
fn exact_origins_match_whole_and_drop_default_ports() {
    let p = pattern("HTTPS://App.Example.com:443");
    assert_eq!(
        p,
        OriginPattern::Exact(Bytes::from_static(b"https://app.example.com"))
    );
    assert!(p.matches(b"https://app.example.com"));
    assert!(!p.matches(b"https://app.example.com.evil.net"));
    assert!(!p.matches(b"https://app.example.co"));
    assert!(!p.matches(b"http://app.example.com"));
    assert!(pattern("http://localhost:3000").matches(b"http://localhost:3000"));
    assert!(pattern("http://[::1]:8080").matches(b"http://[::1]:8080"));
}

#[test]
fn bad_origin_patterns_are_refused() {
    for bad in [
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://*",
        "https://*.com",
        "https://a*.example.com",
        "https://*.*.example.com",
        "https://app.example.com:0",
        "https://app.example.com:99999",
        "https://app.example.com:",
        "https://user@app.example.com",
        "1https://app.example.com",
        "https://exa mple.com",
    ] {
        assert!(OriginPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn actual_requests_from_allowed_origins_get_the_fields_and_vary() {
    let c = cors(&["https://*.example.com"], true);
    let req = request("GET", vec![h("Origin", "https://app.example.com")]);
    let mut headers = vec![h("Content-Type", "application/json")];
    on_response(&c, &req, &mut headers);
    assert_eq!(
        lines(&headers),
        [
            "Content-Type: application/json",
            "Vary: Origin",
            "Access-Control-Allow-Origin: https://app.example.com",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Expose-Headers: X-Request-Id",
        ]
    );
}

#[test]
fn disallowed_null_and_absent_origins_get_vary_only_and_lose_the_upstreams_fields() {
    let c = cors(&["https://*.example.com"], false);
    for origin in [
        Some("https://evil.example.com.attacker.net"),
        Some("null"),
        Some("https://example.com"),
        None,
    ] {
        let mut fields = Vec::new();
        if let Some(o) = origin {
            fields.push(h("Origin", o));
        }
        let req = request("POST", fields);
        let mut headers = vec![
            h("access-control-allow-origin", "*"),
            h("Access-Control-Allow-Credentials", "true"),
            h("ETag", "\"1\""),
        ];
        on_response(&c, &req, &mut headers);
        assert_eq!(
            lines(&headers),
            ["ETag: \"1\"", "Vary: Origin"],
            "{origin:?}"
        );
    }
}

#[test]
fn the_upstreams_cors_fields_are_replaced_not_doubled() {
    let c = cors(&["https://app.example.com"], false);
    let req = request("GET", vec![h("Origin", "https://app.example.com")]);
    let mut headers = vec![
        h("Access-Control-Allow-Origin", "https://other.example"),
        h("Vary", "Accept-Encoding, origin"),
    ];
    on_response(&c, &req, &mut headers);
    assert_eq!(
        lines(&headers),
        [
            "Vary: Accept-Encoding, origin",
            "Access-Control-Allow-Origin: https://app.example.com",
            "Access-Control-Expose-Headers: X-Request-Id",
        ]
    );
}

#[test]
fn star_answers_everyone_without_vary() {
    let c = any();
    for origin in ["https://anything.example", "null"] {
        let req = request("GET", vec![h("Origin", origin)]);
        let mut headers = Vec::new();
        on_response(&c, &req, &mut headers);
        assert_eq!(
            lines(&headers),
            [
                "Access-Control-Allow-Origin: *",
                "Access-Control-Expose-Headers: X-Request-Id",
            ]
        );
        let head = preflight(&c, &preflight_from(origin)).expect("a preflight");
        assert_eq!(lines(&head.headers)[0], "Access-Control-Allow-Origin: *");
    }
}
