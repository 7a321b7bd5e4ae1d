//! The RFC 9113 cases of `httpwg-cli` (crates.io; `cargo install httpwg-cli --locked`,
//! test.sh does) against an h2c listener. The cases known to fail are listed with their
//! reason: every one is the h2 crate choosing PROTOCOL_ERROR where the RFC names a more
//! specific code (the connection is still refused), or a check the proxy does not make
//! yet. A case not listed that fails, or fewer cases than known, fails this test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;

use common::pki::TestPki;
use common::proxy::{ConfigBuilder, Proxy};

/// Cases that fail, and why (a case may also pass). Two of them ("half closed remote sends data frame", "sends
/// data frame on invalid stream state") pass or fail by timing: the code h2 answers
/// with depends on whether the stream's response already ended.
const KNOWN_FAILURES: [(&str, &str); 16] = [
    (
        "4. http frames :: invalid header block fragment",
        "h2: PROTOCOL_ERROR, not COMPRESSION_ERROR",
    ),
    (
        "5. streams and multiplexing :: closed sends headers frame",
        "h2: PROTOCOL_ERROR, not STREAM_CLOSED",
    ),
    (
        "5. streams and multiplexing :: closed sends headers frame after rst stream",
        "h2: PROTOCOL_ERROR, not STREAM_CLOSED",
    ),
    (
        "5. streams and multiplexing :: half closed remote sends data frame",
        "h2: PROTOCOL_ERROR, not STREAM_CLOSED",
    ),
    (
        "5. streams and multiplexing :: half closed remote sends headers frame",
        "h2: PROTOCOL_ERROR, not STREAM_CLOSED",
    ),
    (
        "6. frame definitions :: sends data frame on invalid stream state",
        "h2: PROTOCOL_ERROR, not STREAM_CLOSED",
    ),
    (
        "6. frame definitions :: sends ping frame with invalid length",
        "h2: PROTOCOL_ERROR, not FRAME_SIZE_ERROR",
    ),
    (
        "6. frame definitions :: sends priority frame with invalid length",
        "h2: PROTOCOL_ERROR, not FRAME_SIZE_ERROR",
    ),
    (
        "6. frame definitions :: sends rst stream frame with invalid length",
        "h2: PROTOCOL_ERROR, not FRAME_SIZE_ERROR",
    ),
    (
        "6. frame definitions :: sends settings frame with ack and payload",
        "h2: PROTOCOL_ERROR, not FRAME_SIZE_ERROR",
    ),
    (
        "6. frame definitions :: sends settings frame with invalid length",
        "h2: PROTOCOL_ERROR, not FRAME_SIZE_ERROR",
    ),
    (
        "6. frame definitions :: sends settings initial window size with exceeded max window size value",
        "h2: PROTOCOL_ERROR, not FLOW_CONTROL_ERROR",
    ),
    (
        "6. frame definitions :: sends settings initial window size with invalid value",
        "h2: PROTOCOL_ERROR, not FLOW_CONTROL_ERROR",
    ),
    (
        "6. frame definitions :: sends window update frame with invalid length",
        "h2: PROTOCOL_ERROR, not FRAME_SIZE_ERROR",
    ),
    (
        "8. expressing http semantics in http2 :: client sends push promise frame",
        "h2 waits for the rest of the PUSH_PROMISE's header block (sent without END_HEADERS) before refusing it; the case times out first (it passes when the block is whole)",
    ),
    (
        "8. expressing http semantics in http2 :: sends headers frame with pseudo header in trailer",
        "request trailers are not read (nor forwarded): nothing checks them",
    ),
];

/// An HTTP/1.1 upstream that answers every request 200 with a 16-byte body (some
/// cases need 5 bytes or more) after reading the request body.
fn ok_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming().flatten() {
            thread::spawn(move || serve_ok(conn));
        }
    });
    addr
}

fn serve_ok(conn: TcpStream) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let (mut length, mut chunked) = (0usize, false);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
            if line == "\r\n" {
                break;
            }
        }
        if chunked {
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut skip = vec![0u8; n + 2];
                if r.read_exact(&mut skip).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
            }
        } else if r.read_exact(&mut vec![0u8; length]).is_err() {
            return;
        }
        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nok, from behind\n")
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn httpwg_rfc9113_cases_pass_but_the_known_ones() {
    if Command::new("httpwg")
        .arg("-f")
        .arg("none")
        .output()
        .is_err()
    {
        panic!("httpwg is missing: cargo install httpwg-cli --locked (test.sh does)");
    }
    let pki = TestPki::new();
    let upstream = ok_upstream();
    let text = ConfigBuilder::new()
        .h2c_listener()
        .route(None, "/", false, "ok")
        .upstream("ok", &[upstream], &[])
        .build();
    let proxy = Proxy::start(&text, pki.dir());
    let out = Command::new("httpwg")
        .args([
            "-v",
            "-a",
            &proxy.addr().to_string(),
            "--frame-timeout",
            "5000",
            "-f",
            "RFC 9113",
        ])
        .env("NO_COLOR", "1")
        .env("BUFFET_NUM_BUFS", "1024")
        .output()
        .expect("run httpwg");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Colours off whatever the tool decides.
    let text: String = {
        let mut s = String::with_capacity(text.len());
        let mut esc = false;
        for c in text.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => s.push(c),
            }
        }
        s
    };
    let failed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("Test failed: RFC 9113 :: ").nth(1))
        .map(str::trim)
        .collect();
    let unexpected: Vec<&&str> = failed
        .iter()
        .filter(|f| !KNOWN_FAILURES.iter().any(|(k, _)| k == *f))
        .collect();
    assert!(
        unexpected.is_empty(),
        "new failures: {unexpected:#?}\n{text}"
    );
    let passed = text
        .lines()
        .find_map(|l| l.split("Passed ").nth(1))
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no summary in httpwg's output:\n{text}"));
    // A case whose own assertion panics reports neither pass nor failure.
    let unreported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("Running test: RFC 9113 :: ").nth(1))
        .map(str::trim)
        .filter(|name| {
            !text.contains(&format!("Test passed: RFC 9113 :: {name}"))
                && !text.contains(&format!("Test failed: RFC 9113 :: {name}"))
        })
        .collect();
    eprintln!("httpwg: {passed}/107 passed; failed: {failed:#?}; unreported: {unreported:#?}");
    // After the client's GOAWAY with no stream open, h2 closes the connection; the case
    // sends a PING after its GOAWAY and sometimes meets that close (its assertion then
    // panics instead of reporting).
    let racy = "7. error codes :: sends goaway frame with unknown error code";
    assert!(
        unreported.iter().all(|u| *u == racy),
        "unreported: {unreported:#?}\n{text}"
    );
    // 107 cases; the known failures, and a case whose assertion panics instead of
    // reporting (counted as failed without a "Test failed" line), aside.
    assert!(
        passed >= 107 - KNOWN_FAILURES.len() - 1,
        "{passed} passed\n{text}"
    );
}
