//! What the origin sees: forwarding headers added, Host kept, hop-by-hop headers removed.

mod common;

use common::backend::Recorded;
use common::client::req;
use common::{Fixture, HOST};

fn forwarded_request(f: &Fixture, request: &[u8]) -> Recorded {
    let mut c = f.client();
    let resp = c.roundtrip(request);
    assert_eq!(resp.status, 200, "{}", resp.describe());
    f.backend
        .last_request()
        .expect("the origin received the request")
}

/// `Forwarded` elements as lists of (lower-case key, unquoted value).
fn forwarded_elements(values: &[&str]) -> Vec<Vec<(String, String)>> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    Some((
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    ))
                })
                .collect()
        })
        .collect()
}

#[test]
fn forwarding_headers_are_added() {
    let f = Fixture::new();
    let request = format!(
        "GET /headers HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 203.0.113.7\r\n\
         Forwarded: for=198.51.100.1;proto=http\r\nX-End-To-End: kept\r\n\r\n"
    );
    let seen = forwarded_request(&f, request.as_bytes());
    let raw = String::from_utf8_lossy(&seen.raw_head).into_owned();

    let xff = seen.header_all("x-forwarded-for").join(", ");
    assert_eq!(
        xff, "203.0.113.7, 127.0.0.1",
        "X-Forwarded-For must keep the client's value and append the peer IP\n{raw}"
    );
    assert_eq!(
        seen.header_all("x-real-ip"),
        vec!["127.0.0.1"],
        "X-Real-IP\n{raw}"
    );
    assert_eq!(
        seen.header_all("x-forwarded-proto"),
        vec!["https"],
        "X-Forwarded-Proto\n{raw}"
    );
    let elements = forwarded_elements(&seen.header_all("forwarded"));
    assert!(
        elements
            .iter()
            .any(|e| { e.contains(&("for".into(), "198.51.100.1".into())) }),
        "the client's Forwarded element is kept\n{raw}"
    );
    let last = elements.last().expect("a Forwarded header");
    assert!(
        last.contains(&("for".into(), "127.0.0.1".into()))
            && last.contains(&("proto".into(), "https".into())),
        "the proxy's own element (last) is for=127.0.0.1;proto=https: {last:?}\n{raw}"
    );
    assert_eq!(seen.header_all("host"), vec![HOST], "Host preserved\n{raw}");
    assert_eq!(seen.header("x-end-to-end"), Some("kept"), "{raw}");
}

#[test]
fn forwarding_headers_without_client_values() {
    let f = Fixture::new();
    let seen = forwarded_request(&f, &req::get(HOST, "/headers"));
    let raw = String::from_utf8_lossy(&seen.raw_head).into_owned();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "{raw}"
    );
    let elements = forwarded_elements(&seen.header_all("forwarded"));
    assert_eq!(
        elements.len(),
        1,
        "exactly the proxy's Forwarded element\n{raw}"
    );
    assert_eq!(seen.target, "/headers", "the path is forwarded unchanged");
}

#[test]
fn only_the_configured_forwarding_headers_are_added_the_others_pass_through() {
    // Like nginx with one `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`.
    let f = Fixture::with(|c| c.http("forward_headers", r#"["X-Forwarded-For"]"#));
    let request = format!(
        "GET /headers HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Real-IP: 192.0.2.1\r\nForwarded: for=198.51.100.1\r\n\r\n"
    );
    let seen = forwarded_request(&f, request.as_bytes());
    let raw = String::from_utf8_lossy(&seen.raw_head).into_owned();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["203.0.113.7, 127.0.0.1"],
        "{raw}"
    );
    // Not ours to add: passed through as the client sent them, or absent.
    assert_eq!(seen.header_all("x-real-ip"), vec!["192.0.2.1"], "{raw}");
    assert_eq!(
        seen.header_all("forwarded"),
        vec!["for=198.51.100.1"],
        "{raw}"
    );
    assert!(seen.header_all("x-forwarded-proto").is_empty(), "{raw}");

    let f = Fixture::with(|c| c.http("forward_headers", "[]"));
    let seen = forwarded_request(&f, request.as_bytes());
    let raw = String::from_utf8_lossy(&seen.raw_head).into_owned();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["203.0.113.7"],
        "{raw}"
    );
    assert_eq!(
        seen.header_all("forwarded"),
        vec!["for=198.51.100.1"],
        "{raw}"
    );
    assert!(seen.header_all("x-forwarded-proto").is_empty(), "{raw}");

    let f = Fixture::with(|c| c.http("forward_headers", r#"["x-real-ip", "x-forwarded-proto"]"#));
    let seen = forwarded_request(&f, request.as_bytes());
    let raw = String::from_utf8_lossy(&seen.raw_head).into_owned();
    // Ours: the client's X-Real-IP is replaced, never trusted.
    assert_eq!(seen.header_all("x-real-ip"), vec!["127.0.0.1"], "{raw}");
    assert_eq!(seen.header_all("x-forwarded-proto"), vec!["https"], "{raw}");
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["203.0.113.7"],
        "{raw}"
    );
}

#[test]
fn host_with_port_and_case_is_preserved() {
    let f = Fixture::new();
    let request = "GET /headers HTTP/1.1\r\nHost: App.Test:443\r\n\r\n";
    let seen = forwarded_request(&f, request.as_bytes());
    assert_eq!(seen.header_all("host"), vec!["App.Test:443"]);
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let f = Fixture::new();
    let request = format!(
        "GET /headers HTTP/1.1\r\nHost: {HOST}\r\n\
         Connection: keep-alive, X-Custom-Hop, x-other-hop\r\n\
         X-Custom-Hop: 1\r\nX-Other-Hop: 2\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Trailer: X-Checksum\r\nUpgrade: example/1\r\nProxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic dXNlcjpwYXNz\r\nX-End-To-End: kept\r\n\r\n"
    );
    let seen = forwarded_request(&f, request.as_bytes());
    let raw = String::from_utf8_lossy(&seen.raw_head).into_owned();
    for name in [
        "x-custom-hop",
        "x-other-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
    ] {
        assert!(
            seen.header(name).is_none(),
            "hop-by-hop header {name} reached the origin\n{raw}"
        );
    }
    // The proxy may speak its own Connection header to the origin, but not the client's.
    for v in seen.header_all("connection") {
        for token in v.split(',').map(str::trim) {
            assert!(
                token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close"),
                "the client's Connection options reached the origin: {v:?}\n{raw}"
            );
        }
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"), "{raw}");
}

#[test]
fn client_connection_close_is_honoured() {
    let f = Fixture::new();
    let mut c = f.client();
    let request = format!("GET /bytes/5 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let resp = c.roundtrip(request.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(
        resp.connection_close(),
        "a response to Connection: close says so\n{}",
        resp.describe()
    );
    let rest = c.expect_closed().unwrap_or_else(|e| panic!("{e}"));
    assert!(rest.is_empty());
}
