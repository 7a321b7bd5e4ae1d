//! Request head limits: an over-long request line is 414, an over-large header section or
//! too many header fields is 431; in each case the connection closes and the origin sees
//! nothing. Requests comfortably inside the limits pass.

mod common;

use common::backend::pattern;
use common::proxy::ConfigBuilder;
use common::{Fixture, HOST};

const MAX_LINE: usize = 1024;
const MAX_HEADER_BYTES: usize = 4096;
const MAX_HEADERS: usize = 20;

fn limited() -> Fixture {
    Fixture::with(|c: ConfigBuilder| {
        c.http("max_request_line_bytes", MAX_LINE)
            .http("max_header_bytes", MAX_HEADER_BYTES)
            .http("max_headers", MAX_HEADERS)
    })
}

fn expect_status_and_close(f: &Fixture, request: &[u8], status: u16, what: &str) {
    let mut c = f.client();
    c.send(request)
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let resp = c
        .read_response(false)
        .unwrap_or_else(|e| panic!("{what}: expected a {status} response: {e}"));
    assert_eq!(resp.status, status, "{what}\n{}", resp.describe());
    assert!(
        resp.connection_close(),
        "{what}: the {status} must say Connection: close\n{}",
        resp.describe()
    );
    let rest = c
        .expect_closed()
        .unwrap_or_else(|e| panic!("{what}: after the {status}: {e}"));
    assert!(rest.is_empty(), "{what}: bytes after the {status}");
    assert_eq!(
        f.backend.heads(),
        0,
        "{what}: the origin received a request"
    );
}

fn padded_get(target_len: usize, extra_headers: &[String]) -> Vec<u8> {
    let prefix = "/bytes/1?pad=";
    let target = format!("{prefix}{}", "a".repeat(target_len - prefix.len()));
    let mut s = format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n");
    for h in extra_headers {
        s += h;
        s += "\r\n";
    }
    s += "\r\n";
    s.into_bytes()
}

#[test]
fn request_line_over_limit_is_414() {
    let f = limited();
    expect_status_and_close(
        &f,
        &padded_get(MAX_LINE * 2, &[]),
        414,
        "request line of twice the limit",
    );
    expect_status_and_close(
        &f,
        &padded_get(MAX_LINE + 10, &[]),
        414,
        "request line just over the limit",
    );
}

#[test]
fn header_section_over_limit_is_431() {
    let f = limited();
    // Few fields (within max_headers) but many bytes.
    let big: Vec<String> = (0..8)
        .map(|i| format!("X-Big-{i}: {}", "b".repeat(MAX_HEADER_BYTES / 6)))
        .collect();
    expect_status_and_close(&f, &padded_get(20, &big), 431, "header section of ~5 KiB");
    let one: Vec<String> = vec![format!("X-Huge: {}", "h".repeat(MAX_HEADER_BYTES + 100))];
    expect_status_and_close(&f, &padded_get(20, &one), 431, "one field over the limit");
}

#[test]
fn too_many_header_fields_is_431() {
    let f = limited();
    let many: Vec<String> = (0..MAX_HEADERS + 5).map(|i| format!("X-N{i}: v")).collect();
    expect_status_and_close(
        &f,
        &padded_get(20, &many),
        431,
        "header fields over max_headers",
    );
}

#[test]
fn requests_inside_the_limits_pass() {
    let f = limited();
    let mut c = f.client();
    let resp = c.roundtrip(&padded_get(MAX_LINE / 2, &[]));
    assert_eq!(
        resp.status,
        200,
        "half-limit request line\n{}",
        resp.describe()
    );
    assert_eq!(resp.body, pattern(1, 1));
    let some: Vec<String> = (0..MAX_HEADERS / 2).map(|i| format!("X-N{i}: v")).collect();
    let resp = c.roundtrip(&padded_get(20, &some));
    assert_eq!(resp.status, 200, "half of max_headers\n{}", resp.describe());
    let mid: Vec<String> = (0..2)
        .map(|i| format!("X-Mid-{i}: {}", "m".repeat(MAX_HEADER_BYTES / 5)))
        .collect();
    let resp = c.roundtrip(&padded_get(20, &mid));
    assert_eq!(
        resp.status,
        200,
        "~40% of max_header_bytes\n{}",
        resp.describe()
    );
    assert_eq!(f.backend.served(), 3);
}

#[test]
fn request_body_over_limit_is_413() {
    let f = Fixture::with(|c| c.http("max_request_body_bytes", 1000));
    let mut c = f.client();
    let resp = c.roundtrip(&common::client::req::post(HOST, "/echo", &[b'x'; 1000]));
    assert_eq!(resp.status, 200, "body at the limit\n{}", resp.describe());
    let body = vec![b'y'; 1001];
    expect_status_and_close(
        &Fixture::with(|c| c.http("max_request_body_bytes", 1000)),
        &common::client::req::post(HOST, "/echo", &body),
        413,
        "Content-Length body over max_request_body_bytes",
    );
}
