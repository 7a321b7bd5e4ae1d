use bytes::Bytes;

use super::*;
use crate::message::{BodyLength, ClientInfo, Header, Request};

fn h(name: &'static str, value: &'static str) -> Header {
    Header {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    }
}

fn request(scheme: &'static str, headers: Vec<Header>) -> Request {
    Request {
        method: Bytes::from_static(b"GET"),
        scheme,
        authority: Some(Bytes::from_static(b"api.test")),
        authority_sent: Some(Bytes::from_static(b"api.test")),
        path: Bytes::from_static(b"/"),
        headers,
        body: BodyLength::None,
        client: ClientInfo::new("198.51.100.7:4000".parse().expect("addr"), scheme),
        tls: None,
        received: monoio::time::Instant::now(),
    }
}

/// `name: value` lines, in order, as the client would see them.
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

fn security(override_upstream: bool) -> SecurityHeaders {
    let mut s = SecurityHeaders::new(override_upstream);
    for (n, v) in [
        (
            "Strict-Transport-Security",
            "max-age=31536000; includeSubDomains",
        ),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
    ] {
        s.push(
            Bytes::from_static(n.as_bytes()),
            Bytes::from_static(v.as_bytes()),
        );
    }
    s
}

#[test]
fn security_headers_are_added_to_a_response_without_them() {
    let mut headers = vec![h("Content-Type", "text/plain")];
    security(false).apply(&mut headers, true);
    assert_eq!(
        lines(&headers),
        [
            "Content-Type: text/plain",
            "Strict-Transport-Security: max-age=31536000; includeSubDomains",
            "X-Content-Type-Options: nosniff",
            "X-Frame-Options: DENY",
        ]
    );
}

#[test]
fn the_upstreams_field_stays_without_override_any_case() {
    let mut headers = vec![h("x-frame-options", "SAMEORIGIN"), h("Server", "origin")];
    security(false).apply(&mut headers, true);
    assert_eq!(
        lines(&headers),
        [
            "x-frame-options: SAMEORIGIN",
            "Server: origin",
            "Strict-Transport-Security: max-age=31536000; includeSubDomains",
            "X-Content-Type-Options: nosniff",
        ]
    );
}

#[test]
fn override_replaces_every_upstream_field_of_the_name() {
    let mut headers = vec![
        h("X-FRAME-OPTIONS", "SAMEORIGIN"),
        h("Server", "origin"),
        h("x-frame-options", "ALLOW-FROM https://x"),
    ];
    security(true).apply(&mut headers, true);
    assert_eq!(
        lines(&headers),
        [
            "Server: origin",
            "Strict-Transport-Security: max-age=31536000; includeSubDomains",
            "X-Content-Type-Options: nosniff",
            "X-Frame-Options: DENY",
        ]
    );
}

#[test]
fn hsts_never_goes_out_over_plain_http() {
    let mut headers = Vec::new();
    security(true).apply(&mut headers, false);
    assert_eq!(
        lines(&headers),
        ["X-Content-Type-Options: nosniff", "X-Frame-Options: DENY"]
    );
}

fn rules() -> Vec<HeaderRule> {
    vec![
        HeaderRule::Add(h("X-Edge", "a")),
        HeaderRule::Set(h("x-api-version", "2")),
        HeaderRule::Remove(Bytes::from_static(b"X-Internal")),
    ]
}

#[test]
fn rules_add_set_and_remove_case_insensitively() {
    let mut headers = vec![
        h("X-Edge", "from-client"),
        h("X-API-Version", "1"),
        h("Accept", "*/*"),
        h("x-internal", "secret"),
        h("X-INTERNAL", "secret2"),
        h("X-Api-Version", "0"),
    ];
    apply_rules(&rules(), &mut headers);
    assert_eq!(
        lines(&headers),
        [
            "X-Edge: from-client",
            "Accept: */*",
            "X-Edge: a",
            "x-api-version: 2",
        ]
    );
}

#[test]
fn rules_apply_in_order_listener_first_then_route() {
    let listener = HeaderPolicy {
        request: vec![
            HeaderRule::Set(h("X-Tier", "listener")),
            HeaderRule::Add(h("X-L", "1")),
        ],
        ..HeaderPolicy::default()
    };
    let route = HeaderPolicy {
        request: vec![
            HeaderRule::Set(h("x-tier", "route")),
            HeaderRule::Remove(Bytes::from_static(b"x-l")),
        ],
        ..HeaderPolicy::default()
    };
    let mut req = request("https", vec![h("X-Tier", "client")]);
    on_request(&listener, Some(&route), &mut req);
    assert_eq!(lines(&req.headers), ["x-tier: route"]);
    let mut req = request("https", vec![h("X-Tier", "client")]);
    on_request(&listener, None, &mut req);
    assert_eq!(lines(&req.headers), ["X-Tier: listener", "X-L: 1"]);
}

#[test]
fn a_routes_security_table_replaces_the_listeners() {
    let mut listener_sec = SecurityHeaders::default();
    listener_sec.push(
        Bytes::from_static(b"X-Frame-Options"),
        Bytes::from_static(b"DENY"),
    );
    let listener = HeaderPolicy {
        security: Some(listener_sec),
        response: vec![HeaderRule::Remove(Bytes::from_static(b"Server"))],
        ..HeaderPolicy::default()
    };
    let mut route_sec = SecurityHeaders::default();
    route_sec.push(
        Bytes::from_static(b"Content-Security-Policy"),
        Bytes::from_static(b"default-src 'none'"),
    );
    let route = HeaderPolicy {
        security: Some(route_sec),
        response: vec![HeaderRule::Add(h("X-Route", "r"))],
        ..HeaderPolicy::default()
    };
    let req = request("https", Vec::new());
    let both = ResponsePolicies {
        listener: &listener,
        route: Some(&route),
        cors: None,
    };
    let mut headers = vec![h("Server", "origin")];
    both.apply(&req, &mut headers);
    assert_eq!(
        lines(&headers),
        ["X-Route: r", "Content-Security-Policy: default-src 'none'"]
    );
    // A route without its own table (or no route: the gateway's 404) gets the listener's.
    let bare = HeaderPolicy::default();
    for route in [Some(&bare), None] {
        let p = ResponsePolicies {
            listener: &listener,
            route,
            cors: None,
        };
        let mut headers = vec![h("Server", "origin")];
        p.apply(&req, &mut headers);
        assert_eq!(lines(&headers), ["X-Frame-Options: DENY"]);
    }
}

#[test]
fn nothing_configured_is_empty_and_changes_nothing() {
    let none = HeaderPolicy::default();
    let p = ResponsePolicies {
        listener: &none,
        route: Some(&none),
        cors: None,
    };
    assert!(p.is_empty());
    let req = request("https", Vec::new());
    let mut headers = vec![h("Server", "origin")];
    p.apply(&req, &mut headers);
    assert_eq!(lines(&headers), ["Server: origin"]);
}

#[test]
fn applying_prepared_values_copies_no_bytes() {
    let value = Bytes::from(b"a prepared value".to_vec());
    let rules = vec![HeaderRule::Add(Header {
        name: Bytes::from_static(b"X-A"),
        value: value.clone(),
    })];
    let mut headers = Vec::new();
    apply_rules(&rules, &mut headers);
    // The same allocation: only the reference count moved.
    assert_eq!(headers[0].value.as_ptr(), value.as_ptr());
}
