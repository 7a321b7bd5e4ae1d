//! Misbehaving upstreams (issue: faults found from outside), each against a scripted
//! origin: stray bytes after a response never answer another client's request; a
//! non-idempotent request is never sent twice; impossible status codes, 300 header
//! fields and bare-LF chunk lines; and full duplex — an upstream that answers while the
//! request body is still arriving (streaming echo, early 413) is served at once.
//!
//! The proxy runs one worker, so consecutive clients share its upstream pool.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backend::pattern;
use common::client::{Client, READ_TIMEOUT, TlsOptions, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::scripted::{ScriptConn, ScriptedBackend};
use common::{HOST, sha256_hex};

struct Setup {
    proxy: Proxy,
    pki: TestPki,
}

impl Setup {
    fn new(origin: SocketAddr, upstream: &[(&str, &str)]) -> Setup {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let config = ConfigBuilder::new()
            .server("workers", "1")
            .tls_listener(&[&cert])
            .route(None, "/", false, "up")
            .upstream("up", &[origin], upstream);
        let proxy = Proxy::start(&config.build(), pki.dir());
        Setup { proxy, pki }
    }

    fn client(&self) -> Client {
        Client::tls(
            self.proxy.addr(),
            &TlsOptions::new(self.pki.root_der(), HOST),
        )
        .expect("connect to proxy")
    }
}

/// Sends `request` and reads past interim (1xx) responses to the final one.
fn final_response(c: &mut Client, request: &[u8]) -> common::client::Response {
    c.send(request).expect("send request");
    loop {
        let resp = c.read_response(false).expect("read response");
        if resp.status >= 200 {
            return resp;
        }
    }
}

/// A one-way signal from a script thread to the test ("the stray bytes are sent").
fn signal() -> (Arc<Mutex<Sender<()>>>, Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(Mutex::new(tx)), rx)
}

/// Serves `/first` with `first`; then, once the test says `go` (the response reached the
/// client, so the proxy is done with the connection), sends `stray` on the same
/// connection and signals `sent`. Everything else gets a 200 whose body is its path.
struct StrayOrigin {
    origin: ScriptedBackend,
    go: Sender<()>,
    sent: Receiver<()>,
}

fn stray_origin(first: &'static [u8], stray: &'static [u8]) -> StrayOrigin {
    let (sent_tx, sent) = signal();
    let (go, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let origin = ScriptedBackend::start(move |mut c: ScriptConn| {
        while let Some(r) = c.read_request() {
            if r.path == "/first" {
                c.write(first);
                let go = go_rx.lock().expect("go").recv_timeout(READ_TIMEOUT);
                if go.is_ok() {
                    c.write(stray);
                    let _ = sent_tx.lock().expect("signal").send(());
                }
            } else {
                c.ok(r.path.as_bytes());
            }
        }
    });
    StrayOrigin { origin, go, sent }
}

const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstray!";

#[test]
fn stray_bytes_after_a_response_never_answer_another_clients_request() {
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "a second, unsolicited response",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            STRAY,
        ),
        (
            "a body after a 204",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            STRAY,
        ),
        (
            "a body announced and sent after a 204",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\n",
            b"stray!",
        ),
        (
            "a body after a 304",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\n",
            STRAY,
        ),
        (
            "data after the end of a chunked body",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n",
            STRAY,
        ),
        (
            "a body after a HEAD response",
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n",
            b"stray!HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstray!",
        ),
    ];
    for &(what, first, stray) in cases {
        let StrayOrigin { origin, go, sent } = stray_origin(first, stray);
        let s = Setup::new(origin.addr, &[]);
        let head = what.contains("HEAD");
        let request = if head {
            req::head(HOST, "/first")
        } else {
            req::get(HOST, "/first")
        };
        let mut a = s.client();
        a.send(&request).expect("send /first");
        let resp = a.read_response(head).expect("response to /first");
        assert!(resp.status < 400, "{what}: {}", resp.describe());
        go.send(()).expect("origin waits for go");
        sent.recv_timeout(READ_TIMEOUT)
            .expect("origin sent its stray bytes");
        // Later clients, each on its own connection, get their own answers.
        for path in ["/second", "/third"] {
            let mut c = s.client();
            let resp = c.roundtrip(&req::get(HOST, path));
            assert_eq!(resp.status, 200, "{what}, {path}: {}", resp.describe());
            assert_eq!(
                resp.body,
                path.as_bytes(),
                "{what}, {path}: {}",
                resp.describe()
            );
        }
        // And the first client's connection is still consistent too.
        let resp = a.roundtrip(&req::get(HOST, "/fourth"));
        assert_eq!(resp.body, b"/fourth", "{what}: {}", resp.describe());
        let reports = s.proxy.shutdown_reports();
        let discarded: u64 = reports.iter().map(|r| r.upstream_discarded).sum();
        let reused: u64 = reports.iter().map(|r| r.upstream_reused).sum();
        assert!(
            discarded >= 1 || origin.accepts() >= 2,
            "{what}: the dirty connection was neither discarded nor left unpooled: {reports:?}"
        );
        assert!(
            reused >= 1,
            "{what}: clean connections are still pooled: {reports:?}"
        );
    }
}

/// An origin whose connection 0 answers `/warm`, then reads the next request whole and
/// sends `before_close` (e.g. a 100 or 103) and closes without a final answer. Every
/// later connection answers normally.
fn dropping_origin(before_close: &'static [u8]) -> ScriptedBackend {
    ScriptedBackend::start(move |mut c: ScriptConn| {
        while let Some(r) = c.read_request() {
            if c.index == 0 && r.path != "/warm" {
                c.write(before_close);
                return;
            }
            c.ok(r.path.as_bytes());
        }
    })
}

#[test]
fn a_post_the_upstream_read_and_dropped_is_502_and_delivered_once() {
    for (what, before_close) in [
        ("nothing", &b""[..]),
        ("a 100 Continue", &b"HTTP/1.1 100 Continue\r\n\r\n"[..]),
        (
            "a 103 Early Hints",
            &b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"[..],
        ),
    ] {
        let origin = dropping_origin(before_close);
        let s = Setup::new(origin.addr, &[]);
        let mut c = s.client();
        assert_eq!(c.roundtrip(&req::get(HOST, "/warm")).status, 200);
        let mut c = s.client();
        let resp = final_response(&mut c, &req::post(HOST, "/order", b"one order"));
        assert_eq!(
            resp.status,
            502,
            "after {what}: a POST is never retried: {}",
            resp.describe()
        );
        assert_eq!(
            origin.count("POST", "/order"),
            1,
            "after {what}: {:?}",
            origin.requests()
        );
        s.proxy.shutdown();
    }
}

#[test]
fn an_idempotent_request_is_retried_only_while_nothing_was_answered() {
    // Closed without a byte: a GET goes again on a fresh connection.
    let origin = dropping_origin(b"");
    let s = Setup::new(origin.addr, &[]);
    let mut c = s.client();
    assert_eq!(c.roundtrip(&req::get(HOST, "/warm")).status, 200);
    let resp = c.roundtrip(&req::get(HOST, "/again"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, b"/again");
    assert_eq!(origin.count("GET", "/again"), 2, "{:?}", origin.requests());
    drop(s);

    // A 103 first: the request was seen, so not even a GET is sent again.
    let origin = dropping_origin(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    let s = Setup::new(origin.addr, &[]);
    let mut c = s.client();
    assert_eq!(c.roundtrip(&req::get(HOST, "/warm")).status, 200);
    let resp = final_response(&mut c, &req::get(HOST, "/hinted"));
    assert_eq!(resp.status, 502, "{}", resp.describe());
    assert_eq!(origin.count("GET", "/hinted"), 1, "{:?}", origin.requests());
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_not_used_even_for_a_post() {
    let (tx, closed) = signal();
    let origin = ScriptedBackend::start(move |mut c: ScriptConn| {
        while let Some(r) = c.read_request() {
            c.ok(r.path.as_bytes());
            if r.path == "/warm" {
                // An idle close, as upstreams do at their keep-alive timeout.
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                let _ = tx.lock().expect("signal").send(());
                return;
            }
        }
    });
    let s = Setup::new(origin.addr, &[]);
    let mut c = s.client();
    assert_eq!(c.roundtrip(&req::get(HOST, "/warm")).status, 200);
    closed.recv_timeout(READ_TIMEOUT).expect("origin closed");
    let resp = c.roundtrip(&req::post(HOST, "/pay", b"once"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(origin.count("POST", "/pay"), 1, "{:?}", origin.requests());
}

/// An origin that answers every request with `response`.
fn fixed_origin(response: Vec<u8>) -> ScriptedBackend {
    ScriptedBackend::start(move |mut c: ScriptConn| {
        while c.read_request().is_some() {
            c.write(&response);
        }
    })
}

#[test]
fn status_codes_outside_100_to_999_are_502() {
    for line in [
        "HTTP/1.1 000 x",
        "HTTP/1.1 099 x",
        "HTTP/1.1 0 x",
        "HTTP/1.1 1000 x",
    ] {
        let origin = fixed_origin(format!("{line}\r\nContent-Length: 2\r\n\r\nhi").into_bytes());
        let s = Setup::new(origin.addr, &[]);
        let resp = s.client().roundtrip(&req::get(HOST, "/"));
        assert_eq!(resp.status, 502, "{line}: {}", resp.describe());
    }
}

#[test]
fn a_response_with_300_header_fields_is_served_whole() {
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n");
    for i in 0..300 {
        head += &format!("X-Field-{i}: value {i}\r\n");
    }
    let origin = fixed_origin(format!("{head}\r\nbody").into_bytes());
    let s = Setup::new(origin.addr, &[]);
    let resp = s.client().roundtrip(&req::get(HOST, "/"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, b"body");
    for i in [0, 150, 299] {
        assert_eq!(
            resp.header(&format!("x-field-{i}")),
            Some(format!("value {i}").as_str())
        );
    }
    // The limit is configurable, and a response beyond it is a 502, not a hang.
    let s = Setup::new(origin.addr, &[("max_response_headers", "100")]);
    let resp = s.client().roundtrip(&req::get(HOST, "/"));
    assert_eq!(resp.status, 502, "{}", resp.describe());
}

#[test]
fn chunk_lines_ended_by_a_bare_lf_do_not_cut_the_response() {
    let origin = fixed_origin(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n6;x=y\n world\r\n0\nX-Trailer: 1\n\n"
            .to_vec(),
    );
    let s = Setup::new(origin.addr, &[]);
    let mut c = s.client();
    for _ in 0..2 {
        let resp = c.roundtrip(&req::get(HOST, "/"));
        assert_eq!(resp.status, 200, "{}", resp.describe());
        assert_eq!(resp.body, b"hello world", "{}", resp.describe());
    }
}

/// Streams every request body straight back as it arrives (Content-Length bodies with
/// the same length, chunked bodies chunk by chunk), with small socket buffers so an
/// upstream that is not read soon stops reading — like the demo's echo under a large
/// upload.
fn streaming_echo() -> ScriptedBackend {
    ScriptedBackend::start(|mut c: ScriptConn| {
        let sock = socket2::SockRef::from(&c.stream);
        let _ = sock.set_send_buffer_size(32 * 1024);
        let _ = sock.set_recv_buffer_size(32 * 1024);
        while let Some(mut seen) = c.read_head() {
            let header = |name: &str| {
                seen.headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                c.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                let mut total = 0;
                loop {
                    let Some(line) = c.read_line() else { return };
                    let Some(size) = line
                        .split(';')
                        .next()
                        .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    else {
                        return;
                    };
                    if size == 0 {
                        while c.read_line().is_some_and(|l| !l.is_empty()) {}
                        c.write(b"0\r\n\r\n");
                        break;
                    }
                    let Some(data) = c.read_exact(size + 2) else {
                        return;
                    };
                    c.write(format!("{size:x}\r\n").as_bytes());
                    c.write(&data);
                    total += size;
                }
                seen.body = vec![0; total];
                c.log(seen);
                continue;
            }
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            c.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").as_bytes());
            let mut left = len;
            while left > 0 {
                let Ok(part) = c.read_some(left.min(16 * 1024)) else {
                    return;
                };
                if part.is_empty() {
                    return;
                }
                left -= part.len();
                c.write(&part);
            }
            seen.body = vec![0; len];
            c.log(seen);
        }
    })
}

/// `curl` uploading `body` with PUT to `path`; (HTTP status, response body).
fn curl_upload(s: &Setup, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    curl_upload_as(s, path, body, false, "--http1.1")
}

/// Like [`curl_upload`]; `chunked`: from stdin (`-T -`), which curl sends chunked;
/// `version`: curl's `--http1.1` or `--http2`.
fn curl_upload_as(
    s: &Setup,
    path: &str,
    body: &[u8],
    chunked: bool,
    version: &str,
) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("upload.bin");
    let output = dir.path().join("response.bin");
    std::fs::File::create(&input)
        .and_then(|mut f| f.write_all(body))
        .expect("write upload file");
    let port = s.proxy.addr().port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", version, "--max-time", "60", "--cacert"])
        .arg(s.pki.root_pem_path())
        .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
        .arg("-T");
    if chunked {
        cmd.arg("-")
            .stdin(std::fs::File::open(&input).expect("upload file"));
    } else {
        cmd.arg(&input);
    }
    let out = cmd
        .arg("-o")
        .arg(&output)
        .args(["-w", "%{http_code}"])
        .arg(format!("https://{HOST}:{port}{path}"))
        .output()
        .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed ({}), http code {code}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (code, std::fs::read(&output).unwrap_or_default())
}

#[test]
fn an_upstream_that_streams_its_answer_while_reading_a_large_upload_is_served_whole() {
    let origin = streaming_echo();
    // A write stalled longer than this would cut the old half-duplex exchange short.
    let s = Setup::new(origin.addr, &[("write_timeout_ms", "5000")]);
    let body = pattern(7, 8 << 20);
    let (code, echoed) = curl_upload(&s, "/echo", &body);
    assert_eq!(code, "200");
    assert_eq!(echoed.len(), body.len(), "echo length");
    assert_eq!(sha256_hex(&echoed), sha256_hex(&body), "echoed bytes");
    // The connection stays usable: a second upload on a new client works the same way.
    let body = pattern(8, 3 << 20);
    let (code, echoed) = curl_upload(&s, "/echo", &body);
    assert_eq!(code, "200");
    assert_eq!(sha256_hex(&echoed), sha256_hex(&body));
    // A chunked upload (curl -T - sends chunked) is decoded, re-encoded and echoed the
    // same way, while it flows.
    let body = pattern(10, 6 << 20);
    let (code, echoed) = curl_upload_as(&s, "/echo", &body, true, "--http1.1");
    assert_eq!(code, "200");
    assert_eq!(echoed.len(), body.len(), "chunked echo length");
    assert_eq!(sha256_hex(&echoed), sha256_hex(&body), "chunked echo");
}

#[test]
fn an_early_answer_to_an_upload_reaches_the_client_at_once() {
    early_answer_to_an_upload("--http1.1");
}

/// The same over HTTP/2 (ALPN h2): the 413 and its body, then the stream's reset
/// (NO_ERROR) — in a TLS record of its own, or curl 7.88 fails the transfer (92).
#[test]
fn an_early_answer_to_an_upload_reaches_an_h2_client_at_once() {
    early_answer_to_an_upload("--http2");
}

fn early_answer_to_an_upload(version: &str) {
    let (tx, release) = signal();
    let release = Arc::new(Mutex::new(release));
    let origin = ScriptedBackend::start(move |mut c: ScriptConn| {
        let sock = socket2::SockRef::from(&c.stream);
        let _ = sock.set_recv_buffer_size(32 * 1024);
        if let Some(seen) = c.read_head() {
            c.log(seen);
            c.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n");
            // Stop reading, but keep the connection open until the test is over.
            let _ = release
                .lock()
                .expect("release")
                .recv_timeout(Duration::from_secs(120));
        }
    });
    // The proxy would otherwise wait up to this long on the stalled body write.
    let s = Setup::new(origin.addr, &[("write_timeout_ms", "600000")]);
    let body = pattern(9, 64 << 20);
    let (code, answer) = curl_upload_as(&s, "/upload", &body, false, version);
    assert_eq!(code, "413");
    assert_eq!(answer, b"too big\n");
    assert_eq!(origin.count("PUT", "/upload"), 1);
    drop(tx);
    // The proxy still serves (the origin answers everything with its 413).
    let mut c = s.client();
    let _ = c.set_read_timeout(READ_TIMEOUT);
    let after = c.roundtrip(&req::get(HOST, "/after"));
    assert_eq!(after.status, 413, "{}", after.describe());
}
