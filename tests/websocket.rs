//! WebSocket and other upgrade tunnels through ringgate, with real clients and servers:
//! the Python `websockets` echo server as the upstream and its client, over plain
//! (`ws://`) and TLS (`wss://`) listeners — text, binary, fragmented and 16 MiB
//! messages, ping/pong, close codes both ways, the idle timeout, a non-101 answer
//! relayed, `websocket_origins`, policies before the upgrade (rate limit 429, IP list
//! 403), `max_tunnels` (503) — and a raw upstream for what a WebSocket library hides:
//! half-close, an upgrade protocol the route does not allow (served as plain HTTP), the
//! upstream connection never pooled after a tunnel. Autobahn's cases (PyPI `kosoku`)
//! through the proxy are compared with the echo server's own results.
//!
//! Python and its `websockets` (≥ 13) and `kosoku` packages are needed: `./test.sh`
//! installs them; a missing one fails the test with that hint.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::child::ChildGuard;
use common::client::Client;
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, toml_str};
use common::python::WS_CLIENT;
use common::websocket::{EchoServer, count_to_eof, python};

const HOST: &str = "app.test";

/// A raw upstream: `Upgrade: x-test` → 101, then reads to EOF and answers "got N bytes,
/// then EOF" before closing (half-close); any other request → 200 whose body says the
/// `Upgrade` field it received (keep-alive). Counts the connections it accepted.
struct RawUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

impl RawUpstream {
    fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let a = accepts.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || raw_conn(conn));
            }
        });
        RawUpstream { addr, accepts }
    }
}

fn raw_conn(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut tmp = [0u8; 4096];
            match conn.read(&mut tmp) {
                Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let rest = buf.split_off(end);
        buf = rest;
        let upgrade = head
            .lines()
            .find_map(|l| l.strip_prefix("upgrade:"))
            .map(|v| v.trim().to_string());
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        if path.ends_with("/unasked") || path.ends_with("/elsewhere") {
            // A 101 to a request that asked none, or to another protocol than asked.
            let _ = conn.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-other\r\nConnection: Upgrade\r\n\r\n",
            );
            return;
        }
        if upgrade.as_deref() == Some("x-test") {
            let _ = conn.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-test\r\nConnection: Upgrade\r\n\r\n",
            );
            // No EOF (a read timeout): no answer either.
            if let Some(said) = count_to_eof(&mut conn, buf.len()) {
                let _ = conn.write_all(said.as_bytes());
            }
            return;
        }
        let body = format!("upgrade: {}", upgrade.as_deref().unwrap_or("absent"));
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The proxy in front of both upstreams, with a TLS listener (first) and a plain one.
struct Gateway {
    proxy: Proxy,
    pki: TestPki,
    echo: EchoServer,
    raw: RawUpstream,
}

impl Gateway {
    fn start(http: &[(&str, &str)], workers: &str) -> Gateway {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let echo = EchoServer::start();
        let raw = RawUpstream::start();
        let mut b = ConfigBuilder::new()
            .server("workers", workers)
            .admin()
            .tls_listener(&[&cert])
            .plain_listener();
        for (k, v) in http {
            b = b.http(k, v);
        }
        let mut text = b.build();
        text += &format!(
            "\n[rate_limit.one]\nkey = \"client_ip\"\nrate = \"1r/m\"\n\
             \n[[route]]\npath_prefix = \"/\"\nupstream = \"echo\"\n\
             \n[[route]]\npath_prefix = \"/idle/\"\nupstream = \"echo\"\ntunnel_idle_timeout_ms = 300\n\
             \n[[route]]\npath_prefix = \"/origin/\"\nupstream = \"echo\"\n\
             websocket_origins = [\"https://app.example.com\"]\n\
             \n[[route]]\npath_prefix = \"/limited/\"\nupstream = \"echo\"\nrate_limit = [\"one\"]\n\
             \n[[route]]\npath_prefix = \"/denied/\"\nupstream = \"echo\"\ndeny = [\"127.0.0.0/8\"]\n\
             \n[[route]]\npath_prefix = \"/raw/\"\nupstream = \"raw\"\nupgrade = [\"websocket\", \"x-test\"]\n\
             \n[[route]]\npath_prefix = \"/noup/\"\nupstream = \"raw\"\nupgrade = []\n\
             \n[[route]]\npath_prefix = \"/hdr/\"\nupstream = \"raw\"\nupgrade = [\"x-test\"]\n\
             [route.security_headers]\nframe_options = \"DENY\"\n\
             [[route.response_headers]]\naction = \"set\"\nname = \"X-Gateway\"\nvalue = \"ringgate\"\n\
             \n[upstream.echo]\nservers = [{}]\n\
             \n[upstream.raw]\nservers = [{}]\n",
            toml_str(&echo.addr.to_string()),
            toml_str(&raw.addr.to_string()),
        );
        let proxy = Proxy::start(&text, pki.dir());
        Gateway {
            proxy,
            pki,
            echo,
            raw,
        }
    }

    fn wss(&self, path: &str) -> String {
        format!("wss://{}{path}", self.proxy.addrs()[0])
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.proxy.addrs()[1])
    }

    fn client(&self, mode: &str, uri: &str, origin: Option<&str>) -> String {
        let ca = self.pki.root_pem_path().to_string_lossy().into_owned();
        let mut env = vec![("CA", ca.as_str()), ("HOST", HOST)];
        if let Some(o) = origin {
            env.push(("ORIGIN", o));
        }
        python(WS_CLIENT, &[mode, uri], &env)
    }

    fn metrics(&self) -> String {
        let mut c = Client::plain(self.proxy.admin_addr()).expect("connect to admin");
        let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Waits (bounded) until the metric line `name value` appears.
    fn wait_metric(&self, line: &str) -> String {
        let mut text = String::new();
        for _ in 0..600 {
            text = self.metrics();
            if text.lines().any(|l| l == line) {
                return text;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("no `{line}` in /metrics:\n{text}");
    }
}

fn upgrade_request(path: &str, protocol: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[test]
fn messages_of_every_kind_are_echoed_over_ws_and_wss() {
    let g = Gateway::start(&[], "2");
    for uri in [g.ws("/"), g.wss("/")] {
        let out = g.client("echo", &uri, None);
        assert_eq!(out, "echo ok, closed 4000 client done", "{uri}");
    }
    // The client started the close handshake, but the server closes the TCP connection
    // first (RFC 6455 §7.1.1), so the tunnels count as closed by the upstream; 101 is
    // the exchanges' status.
    let text = g.wait_metric("ringgate_tunnels_total{outcome=\"closed_upstream\"} 2");
    assert!(text.contains("ringgate_tunnels_active 0"), "{text}");
    assert!(
        text.contains("ringgate_requests_total{class=\"1xx\"} 2"),
        "{text}"
    );
}

#[test]
fn close_codes_from_the_upstream_reach_the_client() {
    let g = Gateway::start(&[], "2");
    for uri in [g.ws("/close-4001"), g.wss("/close-4002")] {
        let code = &uri[uri.len() - 4..];
        let out = g.client("closed-by-server", &uri, None);
        assert_eq!(out, format!("closed {code} server says bye"), "{uri}");
    }
    g.wait_metric("ringgate_tunnels_total{outcome=\"closed_upstream\"} 2");
}

#[test]
fn an_idle_tunnel_is_closed_after_its_timeout() {
    let g = Gateway::start(&[], "2");
    for uri in [g.ws("/idle/"), g.wss("/idle/")] {
        let out = g.client("idle", &uri, None);
        assert_eq!(out, "closed without close frame", "{uri}");
    }
    g.wait_metric("ringgate_tunnels_total{outcome=\"idle_timeout\"} 2");
}

#[test]
fn a_non_101_answer_is_relayed_and_the_connection_goes_on() {
    let g = Gateway::start(&[], "2");
    assert_eq!(g.client("status", &g.wss("/forbidden"), None), "status 403");
    let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
    let r = c.roundtrip(upgrade_request("/forbidden", "websocket", "").as_bytes());
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_eq!(String::from_utf8_lossy(&r.body), "no WebSocket here\n");
    // The same connection serves the next request.
    let r = c.roundtrip(format!("GET /noup/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(String::from_utf8_lossy(&r.body), "upgrade: absent");
}

#[test]
fn websocket_origins_refuse_other_and_missing_origins() {
    let g = Gateway::start(&[], "2");
    let uri = g.wss("/origin/");
    assert_eq!(
        g.client("status", &uri, Some("https://app.example.com")),
        "open"
    );
    assert_eq!(
        g.client("status", &uri, Some("https://evil.example")),
        "status 403"
    );
    assert_eq!(g.client("status", &uri, None), "status 403");
    let text = g.metrics();
    let line = "ringgate_policy_rejections_total{policy=\"websocket_origin\",reason=\"origin_not_allowed\"} 2";
    assert!(text.lines().any(|l| l == line), "{text}");
}

#[test]
fn policies_answer_before_the_upgrade() {
    let g = Gateway::start(&[], "1");
    // rate = 1r/m: the first upgrade passes, the second is refused, no tunnel.
    assert_eq!(g.client("status", &g.ws("/limited/"), None), "open");
    assert_eq!(g.client("status", &g.ws("/limited/"), None), "status 429");
    assert_eq!(g.client("status", &g.wss("/denied/"), None), "status 403");
    let text = g.wait_metric("ringgate_tunnels_total{outcome=\"closed_upstream\"} 1");
    assert!(text.contains("ringgate_tunnels_active 0"), "{text}");
}

#[test]
fn max_tunnels_refuses_one_more_with_503() {
    let g = Gateway::start(&[("max_tunnels", "1")], "1");
    let mut first = Client::plain(g.proxy.addrs()[1]).expect("connect");
    let r = first.roundtrip(upgrade_request("/raw/", "x-test", "").as_bytes());
    assert_eq!(r.status, 101, "{}", r.describe());
    g.wait_metric("ringgate_tunnels_active 1");
    let mut second = Client::plain(g.proxy.addrs()[1]).expect("connect");
    let r = second.roundtrip(upgrade_request("/raw/", "x-test", "").as_bytes());
    assert_eq!(r.status, 503, "{}", r.describe());
}

/// The response step (header rules, security headers) runs on the 101 as on any
/// response the upstream sends.
#[test]
fn the_response_header_rules_apply_to_the_101() {
    let g = Gateway::start(&[], "1");
    let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
    let r = c.roundtrip(upgrade_request("/hdr/", "x-test", "").as_bytes());
    assert_eq!(r.status, 101, "{}", r.describe());
    assert_eq!(r.header("x-gateway"), Some("ringgate"), "{}", r.describe());
    assert_eq!(
        r.header("x-frame-options"),
        Some("DENY"),
        "{}",
        r.describe()
    );
}

#[test]
fn half_close_lets_the_client_receive_after_its_eof() {
    let g = Gateway::start(&[], "2");
    let mut s = TcpStream::connect(g.proxy.addrs()[1]).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(upgrade_request("/raw/", "x-test", "").as_bytes())
        .expect("send");
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut tmp).expect("read the 101");
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("upgrade: x-test\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    s.write_all(b"hello").expect("send");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read to EOF");
    assert_eq!(String::from_utf8_lossy(&rest), "got 5 bytes, then EOF");
    g.wait_metric("ringgate_tunnels_total{outcome=\"closed_client\"} 1");
}

#[test]
fn an_upgrade_the_route_does_not_allow_is_served_as_plain_http() {
    let g = Gateway::start(&[], "2");
    let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
    // `upgrade = []`: not even WebSocket.
    let r = c.roundtrip(upgrade_request("/noup/", "websocket", "").as_bytes());
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(String::from_utf8_lossy(&r.body), "upgrade: absent");
    // A protocol the route does not list.
    let r = c.roundtrip(upgrade_request("/raw/", "x-other", "").as_bytes());
    assert_eq!(String::from_utf8_lossy(&r.body), "upgrade: absent");
    // An Upgrade without `Connection: upgrade` is no upgrade request.
    let r = c.roundtrip(
        format!("GET /raw/ HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: x-test\r\n\r\n").as_bytes(),
    );
    assert_eq!(String::from_utf8_lossy(&r.body), "upgrade: absent");
    // Nor is one over HTTP/1.0 (RFC 9110 §7.8).
    let r = c.roundtrip(
        format!(
            "GET /raw/ HTTP/1.0\r\nHost: {HOST}\r\nConnection: upgrade, keep-alive\r\nUpgrade: x-test\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(String::from_utf8_lossy(&r.body), "upgrade: absent");
}

#[test]
fn a_101_not_asked_for_or_to_another_protocol_is_a_502() {
    let g = Gateway::start(&[], "2");
    let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
    let r = c.roundtrip(format!("GET /raw/unasked HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 502, "{}", r.describe());
    let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
    let r = c.roundtrip(upgrade_request("/raw/elsewhere", "x-test", "").as_bytes());
    assert_eq!(r.status, 502, "{}", r.describe());
    let text = g.metrics();
    assert!(text.contains("ringgate_tunnels_active 0"), "{text}");
}

#[test]
fn an_upgrade_with_a_body_is_refused() {
    let g = Gateway::start(&[], "2");
    for extra in ["Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n"] {
        let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
        let mut req = upgrade_request("/raw/", "x-test", extra).into_bytes();
        req.extend_from_slice(if extra.starts_with("Content") {
            b"abc"
        } else {
            b"3\r\nabc\r\n0\r\n\r\n"
        });
        let r = c.roundtrip(&req);
        assert_eq!(r.status, 400, "{extra}: {}", r.describe());
    }
    assert_eq!(g.raw.accepts.load(Ordering::SeqCst), 0);
}

#[test]
fn the_upstream_connection_of_a_tunnel_is_never_pooled() {
    let g = Gateway::start(&[], "1");
    let mut s = TcpStream::connect(g.proxy.addrs()[1]).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(upgrade_request("/raw/", "x-test", "").as_bytes())
        .expect("send");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read to EOF");
    assert!(
        String::from_utf8_lossy(&all).ends_with("got 0 bytes, then EOF"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    // Two plain requests after the tunnel: one new upstream connection, reused by the
    // second; the tunnel's is never lent.
    let mut c = Client::plain(g.proxy.addrs()[1]).expect("connect");
    for _ in 0..2 {
        let r = c.roundtrip(format!("GET /raw/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(g.raw.accepts.load(Ordering::SeqCst), 2);
}

/// The Autobahn cases (kosoku's fuzzing client) against the echo server directly and
/// through the proxy: every case must end the same way — the same grade (Autobahn's
/// OK and NON-STRICT are both a pass: NON-STRICT is timing, e.g. in 4.2.5 whether the
/// echo of a message got out before the server failed the connection on the frame
/// after it, which varies between runs with or without a proxy) and the same close
/// code.
#[test]
fn autobahn_cases_end_as_they_do_without_the_proxy() {
    let g = Gateway::start(&[], "2");
    let dir = g.pki.dir().to_path_buf();
    let direct = kosoku(&dir.join("direct"), &g.echo.addr.to_string());
    let proxied = kosoku(&dir.join("proxied"), &g.proxy.addrs()[1].to_string());
    assert!(direct.len() > 100, "too few cases ran: {}", direct.len());
    let grade = |r: &str| r.replace("=NON-STRICT", "=OK");
    let differ: Vec<String> = direct
        .iter()
        .filter(|(case, result)| proxied.get(*case).map(|p| grade(p)) != Some(grade(result)))
        .map(|(case, result)| format!("{case}: direct {result}, proxied {:?}", proxied.get(case)))
        .collect();
    assert!(
        differ.is_empty(),
        "cases that differ:\n{}",
        differ.join("\n")
    );
}

/// Runs kosoku's fuzzing client against `addr` (a subset: framing, pings, reserved
/// bits, opcodes, fragmentation, UTF-8, close handling, limits — not 9.* (performance)
/// nor 12.*/13.* (compression)); case id → behaviour.
fn kosoku(out: &Path, addr: &str) -> std::collections::BTreeMap<String, String> {
    let mut cmd = Command::new("kosoku");
    cmd.args(["-m", "fuzzingclient", "-o"])
        .arg(out)
        .args(["-p", "4"])
        .args([
            "-i", "1.*", "-i", "2.*", "-i", "3.*", "-i", "4.*", "-i", "5.*",
        ])
        .args(["-i", "6.*", "-i", "7.*", "-i", "10.*"])
        .arg(addr)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd, "kosoku (PyPI)");
    let mut err = String::new();
    let _ = child
        .take_stderr()
        .expect("stderr")
        .read_to_string(&mut err);
    // A failed case makes the exit status 1: the results are compared, not the status.
    let status = child.wait();
    assert!(
        out.join("index.json").exists(),
        "kosoku against {addr} wrote no report: {status}\n{err}"
    );
    read_results(out)
}

/// Case id → `behavior/behaviorClose/remoteCloseCode` from the report's index.json
/// (pretty-printed: one key per line, so read line by line).
fn read_results(out: &Path) -> std::collections::BTreeMap<String, String> {
    let index = out.join("index.json");
    let text =
        std::fs::read_to_string(&index).unwrap_or_else(|e| panic!("{}: {e}", index.display()));
    let mut results = std::collections::BTreeMap::new();
    let mut case: Option<String> = None;
    let mut fields: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once("\": ") else {
            continue;
        };
        let key = key.trim_start_matches('"');
        let value = value.trim_end_matches(',').trim_matches('"');
        if value == "{" && key.starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(c) = case.take() {
                results.insert(c, fields.join("/"));
            }
            case = Some(key.to_string());
            fields.clear();
        } else if matches!(key, "behavior" | "behaviorClose" | "remoteCloseCode") {
            fields.push(format!("{key}={value}"));
        }
    }
    if let Some(c) = case {
        results.insert(c, fields.join("/"));
    }
    results
}
