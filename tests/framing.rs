//! Request smuggling and malformed framing: each request must get a 400 (501 for an
//! unknown transfer coding) with `Connection: close`, the connection must then close, and
//! the origin must never receive the request.

mod common;

use common::client::first_line;
use common::{Fixture, HOST};

/// What may reach the origin before the proxy notices the problem.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The error is in the head: nothing may reach the origin.
    Untouched,
    /// The error is in a chunked body: a streaming proxy may already have sent the head,
    /// but the origin must never receive a complete request.
    NoCompleteRequest,
}

/// Sends `raw` on a fresh connection and checks the rejection, then proves with a probe
/// request on another connection that the origin saw nothing of it.
fn expect_rejected(f: &Fixture, raw: &[u8], status: u16, origin: Origin) {
    let what = format!("{:?}", String::from_utf8_lossy(raw));
    let heads_before = f.backend.heads();
    let mut c = f.client();
    c.send(raw)
        .unwrap_or_else(|e| panic!("sending {what}: {e}"));
    let resp = c
        .read_response(false)
        .unwrap_or_else(|e| panic!("no proper {status} response to {what}: {e}"));
    assert_eq!(
        resp.status,
        status,
        "wrong status for {what}\n{}",
        resp.describe()
    );
    assert!(
        resp.connection_close(),
        "the {status} for {what} must say Connection: close\n{}",
        resp.describe()
    );
    let rest = c
        .expect_closed()
        .unwrap_or_else(|e| panic!("after the {status} for {what}: {e}"));
    assert!(
        rest.is_empty(),
        "bytes after the {status} response to {what}: {:?}",
        String::from_utf8_lossy(&rest)
    );

    // A probe on a new connection: once it is answered, anything the proxy forwarded from
    // the bad request would have reached the origin before it.
    let probe = format!("GET /bytes/1?probe HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let resp = f.client().roundtrip(probe.as_bytes());
    assert_eq!(resp.status, 200, "probe after {what}\n{}", resp.describe());
    let seen: Vec<String> = f
        .backend
        .requests()
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t != "/bytes/1?probe")
        .collect();
    assert!(
        seen.is_empty(),
        "the origin received requests from {what}: {seen:?}"
    );
    if origin == Origin::Untouched {
        assert_eq!(
            f.backend.heads(),
            heads_before + 1,
            "the origin received a request head from {what} ({})",
            first_line(raw)
        );
    }
}

fn raw(lines: &[&str], body: &str) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s += "\r\n\r\n";
    s += body;
    s.into_bytes()
}

fn host() -> String {
    format!("Host: {HOST}")
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let f = Fixture::new();
    let h = host();
    // CL.TE: a CL-framing hop would see a smuggled GET after the empty chunked body.
    let smuggle = "0\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
    for req in [
        raw(
            &[
                "POST /echo HTTP/1.1",
                &h,
                &format!("Content-Length: {}", smuggle.len()),
                "Transfer-Encoding: chunked",
            ],
            smuggle,
        ),
        raw(
            &[
                "POST /echo HTTP/1.1",
                &h,
                "Transfer-Encoding: chunked",
                "Content-Length: 3",
            ],
            "0\r\n\r\n",
        ),
    ] {
        expect_rejected(&f, &req, 400, Origin::Untouched);
    }
}

#[test]
fn differing_content_lengths_are_400() {
    let f = Fixture::new();
    let h = host();
    for req in [
        raw(
            &[
                "POST /echo HTTP/1.1",
                &h,
                "Content-Length: 5",
                "Content-Length: 6",
            ],
            "hello!",
        ),
        raw(
            &["POST /echo HTTP/1.1", &h, "Content-Length: 5, 6"],
            "hello!",
        ),
        raw(&["POST /echo HTTP/1.1", &h, "Content-Length: +5"], "hello"),
        raw(&["POST /echo HTTP/1.1", &h, "Content-Length: 0x5"], "hello"),
    ] {
        expect_rejected(&f, &req, 400, Origin::Untouched);
    }
}

#[test]
fn chunked_not_final_transfer_coding_is_400() {
    let f = Fixture::new();
    let h = host();
    for req in [
        raw(
            &[
                "POST /echo HTTP/1.1",
                &h,
                "Transfer-Encoding: chunked, identity",
            ],
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        raw(
            &["POST /echo HTTP/1.1", &h, "Transfer-Encoding: identity"],
            "hello",
        ),
        raw(
            &[
                "POST /echo HTTP/1.1",
                &h,
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: identity",
            ],
            "5\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        expect_rejected(&f, &req, 400, Origin::Untouched);
    }
}

#[test]
fn unsupported_transfer_coding_is_501() {
    let f = Fixture::new();
    let h = host();
    let req = raw(
        &[
            "POST /echo HTTP/1.1",
            &h,
            "Transfer-Encoding: gzip, chunked",
        ],
        "5\r\nhello\r\n0\r\n\r\n",
    );
    expect_rejected(&f, &req, 501, Origin::Untouched);
}

#[test]
fn invalid_chunk_sizes_are_400() {
    let f = Fixture::new();
    let h = host();
    let head = ["POST /echo HTTP/1.1", &h, "Transfer-Encoding: chunked"];
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n-1\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
    ] {
        expect_rejected(&f, &raw(&head, body), 400, Origin::NoCompleteRequest);
    }
}

#[test]
fn obs_fold_is_400() {
    let f = Fixture::new();
    let h = host();
    let req = raw(&["GET /echo HTTP/1.1", &h, "X-Folded: a", " b"], "");
    expect_rejected(&f, &req, 400, Origin::Untouched);
    let req = raw(&["GET /echo HTTP/1.1", &h, "X-Folded: a", "\tb"], "");
    expect_rejected(&f, &req, 400, Origin::Untouched);
}

#[test]
fn whitespace_before_colon_is_400() {
    let f = Fixture::new();
    let req = raw(&["GET /echo HTTP/1.1", &format!("Host : {HOST}")], "");
    expect_rejected(&f, &req, 400, Origin::Untouched);
    let h = host();
    let req = raw(&["POST /echo HTTP/1.1", &h, "Content-Length : 5"], "hello");
    expect_rejected(&f, &req, 400, Origin::Untouched);
}

#[test]
fn bare_cr_in_header_value_is_400() {
    let f = Fixture::new();
    let h = host();
    let req = raw(&["GET /echo HTTP/1.1", &h, "X-A: a\rb"], "");
    expect_rejected(&f, &req, 400, Origin::Untouched);
}

#[test]
fn control_bytes_in_header_value_are_400() {
    let f = Fixture::new();
    let h = host();
    for value in ["a\0b", "a\x01b", "a\x7fb", "a\x1bb"] {
        let req = raw(&["GET /echo HTTP/1.1", &h, &format!("X-A: {value}")], "");
        expect_rejected(&f, &req, 400, Origin::Untouched);
    }
}

#[test]
fn invalid_method_token_is_400() {
    let f = Fixture::new();
    let h = host();
    for line in [
        "G@T /echo HTTP/1.1",
        "GE(T /echo HTTP/1.1",
        "G\x01T /echo HTTP/1.1",
    ] {
        expect_rejected(&f, &raw(&[line, &h], ""), 400, Origin::Untouched);
    }
}

#[test]
fn invalid_request_target_is_400() {
    let f = Fixture::new();
    let h = host();
    for line in [
        "GET foo HTTP/1.1",
        "GET echo/x HTTP/1.1",
        "GET /ec ho HTTP/1.1",
    ] {
        expect_rejected(&f, &raw(&[line, &h], ""), 400, Origin::Untouched);
    }
}

#[test]
fn http10_with_transfer_encoding_is_400() {
    let f = Fixture::new();
    let h = host();
    let req = raw(
        &["POST /echo HTTP/1.0", &h, "Transfer-Encoding: chunked"],
        "5\r\nhello\r\n0\r\n\r\n",
    );
    expect_rejected(&f, &req, 400, Origin::Untouched);
}

#[test]
fn missing_or_duplicate_host_is_400() {
    let f = Fixture::new();
    let h = host();
    expect_rejected(
        &f,
        &raw(&["GET /echo HTTP/1.1", "X-A: b"], ""),
        400,
        Origin::Untouched,
    );
    expect_rejected(
        &f,
        &raw(&["GET /echo HTTP/1.1", &h, "Host: other.test"], ""),
        400,
        Origin::Untouched,
    );
    expect_rejected(
        &f,
        &raw(&["GET /echo HTTP/1.1", &h, &h], ""),
        400,
        Origin::Untouched,
    );
}

#[test]
fn smuggled_request_after_rejection_is_never_answered() {
    // A TE.CL attempt with a second request hidden in the body: the client must get
    // exactly one response, the 400, and nothing for the hidden GET.
    let f = Fixture::new();
    let h = host();
    let hidden = format!("GET /bytes/5 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let body = format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len());
    let req = raw(
        &[
            "POST /echo HTTP/1.1",
            &h,
            "Content-Length: 4",
            "Transfer-Encoding: chunked",
        ],
        &body,
    );
    expect_rejected(&f, &req, 400, Origin::Untouched);
}
