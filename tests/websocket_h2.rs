//! WebSocket over HTTP/2 (RFC 8441 extended CONNECT) through ringgate, with a Python
//! client on the `h2` package (tests/h2/ws_client.py; WebSocket frames by `websockets`'
//! sans-I/O protocol) over TLS with ALPN h2 and over h2c, and the Python `websockets`
//! echo server as the upstream (tests/common/websocket.rs): SETTINGS_ENABLE_CONNECT_PROTOCOL
//! advertised; text, binary, fragmented and 16 MiB messages echoed (hash-checked);
//! ping/pong; close codes both ways; the idle timeout; `websocket_origins` (403); an
//! upstream answering 403 instead of 101; a wrong `Sec-WebSocket-Accept` (502); what the
//! upstream receives; another stream served beside a tunnel; `max_tunnels` (503); a
//! `:protocol` the route does not allow and an HTTP/2 upstream (501); plain CONNECT
//! still refused; half-close; a client reset or lost connection closing the upstream; a
//! tunnel the client does not read holding the upstream, not the proxy's memory.
//!
//! Python with `h2` and `websockets` (≥ 13) is needed: `./test.sh` installs them; a
//! missing one fails the test with that hint.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::child::ChildGuard;
use common::client::Client;
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, toml_str};
use common::websocket::{EchoServer, HINT, count_to_eof, python};

const HOST: &str = "app.test";

/// A raw upstream: reads one request head, then `/accept/wrong…` → a 101 with a wrong
/// `Sec-WebSocket-Accept`; `/half/…` → a right 101, then reads to EOF and answers "got N
/// bytes, then EOF" (half-close); `/flood/…` → a right 101, then 64 MiB as fast as the proxy
/// takes them, reporting on the channel whether its writes stalled (no progress for
/// 2 s) and how many bytes the proxy took; anything else → 403 whose body is the head
/// it received.
fn raw_upstream() -> (SocketAddr, mpsc::Receiver<(bool, u64)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (report, flood) = mpsc::channel();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let report = report.clone();
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let mut buf = Vec::new();
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut tmp = [0u8; 4096];
                    match conn.read(&mut tmp) {
                        Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let accept = || {
                    let key = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("sec-websocket-key")
                                .then(|| v.trim())
                        })
                        .unwrap_or("");
                    ringgate::websocket::accept_for(key.as_bytes())
                };
                if head.starts_with("GET /half/") {
                    let h = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                        accept()
                    );
                    if conn.write_all(h.as_bytes()).is_err() {
                        return;
                    }
                    // Reads to the client's EOF, then answers and closes.
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
                    if let Some(said) = count_to_eof(&mut conn, buf.len() - head_end - 4) {
                        let _ = conn.write_all(said.as_bytes());
                    }
                    return;
                }
                if head.starts_with("GET /flood/") {
                    let h = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                        accept()
                    );
                    if conn.write_all(h.as_bytes()).is_err() {
                        return;
                    }
                    // A stall, not a duration, is what the test reads: a proxy that
                    // buffers without bound never makes these writes wait.
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                    let block = vec![7u8; 64 * 1024];
                    let mut taken = 0u64;
                    let mut stalled = false;
                    while taken < 64 << 20 {
                        match conn.write(&block) {
                            Ok(w) => taken += w as u64,
                            Err(_) => {
                                stalled = true;
                                break;
                            }
                        }
                    }
                    let _ = report.send((stalled, taken));
                    let _ = conn.read(&mut [0u8; 1]);
                    return;
                }
                let answer = if head.starts_with("GET /accept/wrong") {
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
                        .to_string()
                } else {
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                        head.len()
                    )
                };
                let _ = conn.write_all(answer.as_bytes());
                // Hold the connection until the proxy closes it.
                let _ = conn.read(&mut [0u8; 1]);
            });
        }
    });
    (addr, flood)
}

/// The proxy with a TLS listener (ALPN h2 offered) and an h2c one in front of the echo
/// server and the raw upstream.
struct Gateway {
    proxy: Proxy,
    pki: TestPki,
    _echo: EchoServer,
    /// The raw upstream's `/flood/` report: stalled, and the bytes the proxy took.
    flood: mpsc::Receiver<(bool, u64)>,
}

impl Gateway {
    fn start(http: &[(&str, &str)]) -> Gateway {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let echo = EchoServer::start();
        let (raw, flood) = raw_upstream();
        let mut b = ConfigBuilder::new()
            .server("workers", "1")
            .admin()
            .tls_listener(&[&cert])
            .h2c_listener();
        for (k, v) in http {
            b = b.http(k, v);
        }
        let mut text = b.build();
        text += &format!(
            "\n[[route]]\npath_prefix = \"/\"\nupstream = \"echo\"\n\
             \n[[route]]\npath_prefix = \"/idle/\"\nupstream = \"echo\"\ntunnel_idle_timeout_ms = 300\n\
             \n[[route]]\npath_prefix = \"/origin/\"\nupstream = \"echo\"\n\
             websocket_origins = [\"https://app.example.com\"]\n\
             \n[[route]]\npath_prefix = \"/raw/\"\nupstream = \"raw\"\n\
             \n[[route]]\npath_prefix = \"/accept/\"\nupstream = \"raw\"\n\
             \n[[route]]\npath_prefix = \"/flood/\"\nupstream = \"raw\"\n\
             \n[[route]]\npath_prefix = \"/half/\"\nupstream = \"raw\"\n\
             \n[[route]]\npath_prefix = \"/denied/\"\nupstream = \"echo\"\ndeny = [\"127.0.0.0/8\"]\n\
             \n[[route]]\npath_prefix = \"/other/\"\nupstream = \"raw\"\nupgrade = [\"websocket\", \"x-test\"]\n\
             \n[[route]]\npath_prefix = \"/grpc/\"\nupstream = \"h2up\"\n\
             \n[upstream.echo]\nservers = [{}]\n\
             \n[upstream.raw]\nservers = [{}]\n\
             \n[upstream.h2up]\nprotocol = \"h2\"\nservers = [{}]\n",
            toml_str(&echo.addr.to_string()),
            toml_str(&raw.to_string()),
            toml_str(&raw.to_string()),
        );
        let proxy = Proxy::start(&text, pki.dir());
        Gateway {
            proxy,
            pki,
            _echo: echo,
            flood,
        }
    }

    /// Runs the client script: `mode` on `path` over TLS (`https`) or h2c (`http`).
    fn client(&self, mode: &str, path: &str, scheme: &str, env: &[(&str, &str)]) -> String {
        let addr = self.addr(scheme);
        let ca = self.pki.root_pem_path().to_string_lossy().into_owned();
        let mut all = vec![("CA", ca.as_str()), ("HOST", HOST)];
        all.extend_from_slice(env);
        python(&script(), &[mode, &addr.to_string(), path, scheme], &all)
    }

    fn addr(&self, scheme: &str) -> SocketAddr {
        match scheme {
            "https" => self.proxy.addrs()[0],
            _ => self.proxy.addrs()[1],
        }
    }

    /// Starts the client script's `mode` on `path` over h2c with its stdin held open
    /// (it waits for its EOF at the end); returns it with the first `n` lines it printed.
    fn held_client(&self, mode: &str, path: &str, n: usize) -> (ChildGuard, Vec<String>) {
        let ca = self.pki.root_pem_path().to_string_lossy().into_owned();
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(script())
            .args([mode, &self.addr("http").to_string(), path, "http"])
            .envs([("CA", ca.as_str()), ("HOST", HOST)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = ChildGuard::spawn(&mut cmd, "python3");
        let mut out = BufReader::new(child.take_stdout().expect("stdout"));
        let mut lines = Vec::new();
        while lines.len() < n {
            let mut line = String::new();
            if out.read_line(&mut line).expect("read the client") == 0 {
                panic!("the client ended early ({lines:?}): {HINT}");
            }
            lines.push(line.trim().to_string());
        }
        (child, lines)
    }

    /// Waits (bounded) until the metric line `line` appears.
    fn wait_metric(&self, line: &str) {
        let mut text = String::new();
        for _ in 0..600 {
            text = self.metrics();
            if text.lines().any(|l| l == line) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("no `{line}` in /metrics:\n{text}");
    }

    fn metrics(&self) -> String {
        let mut c = Client::plain(self.proxy.admin_addr()).expect("connect to admin");
        let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// The client script's text.
fn script() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/h2/ws_client.py");
    std::fs::read_to_string(&path).expect("tests/h2/ws_client.py")
}

#[test]
fn the_setting_is_advertised_and_messages_of_every_kind_are_echoed() {
    let g = Gateway::start(&[]);
    for scheme in ["https", "http"] {
        let out = g.client("echo", "/", scheme, &[]);
        assert_eq!(
            out,
            "setting 1\nsubprotocol chat\n16 MiB ok\npong ok\nclosed 4000 client done\nstream ended",
            "over {scheme}"
        );
    }
}

#[test]
fn close_codes_from_the_upstream_reach_the_client() {
    let g = Gateway::start(&[]);
    let out = g.client("closed-by-server", "/close-4001", "https", &[]);
    assert_eq!(out, "setting 1\nclosed 4001 server says bye");
}

#[test]
fn an_idle_tunnel_is_reset_after_its_timeout() {
    let g = Gateway::start(&[]);
    // CANCEL (8): the tunnel ended without either side closing.
    let out = g.client("idle", "/idle/x", "http", &[]);
    assert_eq!(out, "setting 1\nreset 8");
    let m = g.metrics();
    assert!(
        m.lines()
            .any(|l| l == "ringgate_tunnels_total{outcome=\"idle_timeout\"} 1"),
        "{m}"
    );
}

#[test]
fn websocket_origins_refuse_other_and_missing_origins() {
    let g = Gateway::start(&[]);
    let ok = g.client(
        "status",
        "/origin/",
        "https",
        &[("ORIGIN", "https://app.example.com")],
    );
    assert!(ok.starts_with("setting 1\nstatus 200"), "{ok}");
    let evil = g.client(
        "status",
        "/origin/",
        "https",
        &[("ORIGIN", "https://evil.example")],
    );
    assert!(evil.starts_with("setting 1\nstatus 403"), "{evil}");
    let none = g.client("status", "/origin/", "http", &[]);
    assert!(none.starts_with("setting 1\nstatus 403"), "{none}");
    // The route's other policies answer before the upgrade too (an IP list here).
    let denied = g.client("status", "/denied/", "https", &[]);
    assert!(denied.starts_with("setting 1\nstatus 403"), "{denied}");
}

#[test]
fn an_upstream_answering_403_is_relayed_and_sees_an_http1_upgrade() {
    let g = Gateway::start(&[]);
    let out = g.client("status", "/forbidden", "https", &[]);
    assert!(
        out.starts_with("setting 1\nstatus 403\nbody no WebSocket here"),
        "{out}"
    );
    // What the upstream receives: an HTTP/1.1 upgrade with a fresh key.
    let out = g.client("status", "/raw/chat?x=1", "https", &[]);
    assert!(
        out.starts_with("setting 1\nstatus 403\nbody GET /raw/chat?x=1 HTTP/1.1\r\n"),
        "{out}"
    );
    let lower = out.to_ascii_lowercase();
    for line in [
        "\r\nhost: app.test\r\n",
        "\r\nconnection: upgrade\r\n",
        "\r\nupgrade: websocket\r\n",
        "\r\nsec-websocket-version: 13\r\n",
        "\r\nsec-websocket-key: ",
    ] {
        assert!(lower.contains(line), "{line:?} missing upstream:\n{out}");
    }
    let key = lower
        .split("\r\nsec-websocket-key: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .expect("a key");
    assert_eq!(key.len(), 24, "16 bytes, base64: {key}");
}

#[test]
fn a_wrong_accept_is_a_502() {
    let g = Gateway::start(&[]);
    for scheme in ["https", "http"] {
        let out = g.client("status", "/accept/wrong", scheme, &[]);
        assert!(
            out.starts_with("setting 1\nstatus 502\n"),
            "over {scheme}: {out}"
        );
        assert!(out.contains("Sec-WebSocket-Accept"), "{out}");
    }
}

#[test]
fn another_stream_is_served_while_a_tunnel_is_open() {
    let g = Gateway::start(&[]);
    let out = g.client("second-stream", "/", "https", &[]);
    // The echo server answers a plain GET with 426 Upgrade Required.
    assert_eq!(out, "setting 1\nsecond stream 426\ntunnels ok");
}

#[test]
fn max_tunnels_refuses_one_more_with_503() {
    let g = Gateway::start(&[("max_tunnels", "1")]);
    let out = g.client("tunnels-full", "/", "http", &[]);
    assert_eq!(out, "setting 1\nsecond tunnel 503\nfirst tunnel ok");
}

#[test]
fn a_protocol_the_route_does_not_allow_and_an_h2_upstream_are_501() {
    let g = Gateway::start(&[]);
    let run =
        |path: &str, protocol: &str| g.client("protocol", path, "https", &[("PROTOCOL", protocol)]);
    assert_eq!(run("/", "x-test"), "setting 1\nstatus 501");
    assert_eq!(run("/grpc/", "websocket"), "setting 1\nstatus 501");
    // A route that allows the token forwards it (the raw upstream answers 403).
    assert_eq!(run("/other/", "x-test"), "setting 1\nstatus 403");
    // CONNECT without :protocol stays refused.
    assert_eq!(
        g.client("plain-connect", "/", "http", &[]),
        "setting 1\nreset"
    );
}

/// A client that never reads its tunnel holds the upstream's bytes in the stream's
/// window and the sockets' buffers, not in the proxy: of the 64 MiB the upstream offers
/// the proxy takes a few MiB at most, and other streams on the connection are served;
/// after `send_timeout_ms` of shut window the tunnel ends (`zero_window`).
#[test]
fn a_tunnel_the_client_does_not_read_holds_the_upstream_not_memory() {
    let g = Gateway::start(&[("send_timeout_ms", "500")]);
    let (mut child, lines) = g.held_client("hold", "/flood/", 2);
    assert_eq!(lines, ["setting 1", "held True others served"]);
    // Window (64 KiB) + one upstream read (32 KiB) + loopback socket buffers (a few MiB
    // at most): far below the 64 MiB the upstream offers.
    let (stalled, taken) = g
        .flood
        .recv_timeout(Duration::from_secs(120))
        .expect("the flooding upstream's report");
    assert!(
        stalled && taken < 16 << 20,
        "the proxy took {taken} bytes from the upstream"
    );
    // The window held shut beyond send_timeout_ms ends the tunnel, counted as such.
    g.wait_metric("ringgate_h2_protocol_errors_total{reason=\"zero_window\"} 1");
    g.wait_metric("ringgate_tunnels_total{outcome=\"error\"} 1");
    drop(child.take_stdin());
    assert!(child.wait().success());
}

/// A client resetting its tunnel's stream (its connection staying open), or losing its
/// connection, closes the upstream connection: the tunnel's place is freed and it is
/// counted as ended in error.
#[test]
fn a_client_reset_or_lost_connection_closes_the_tunnel() {
    let g = Gateway::start(&[]);
    for (n, (mode, said)) in [("rst", "reset sent"), ("drop", "connection dropped")]
        .into_iter()
        .enumerate()
    {
        let (mut child, lines) = g.held_client(mode, "/", 2);
        assert_eq!(lines, ["setting 1", said]);
        g.wait_metric(&format!(
            "ringgate_tunnels_total{{outcome=\"error\"}} {}",
            n + 1
        ));
        g.wait_metric("ringgate_tunnels_active 0");
        drop(child.take_stdin());
        assert!(child.wait().success());
    }
}

/// The client's END_STREAM shuts the upstream's write side only: the upstream, having
/// read to its EOF, still answers on the stream, and its EOF ends the stream.
#[test]
fn half_close_lets_the_client_receive_after_its_end_stream() {
    let g = Gateway::start(&[]);
    let out = g.client("half", "/half/", "http", &[]);
    assert_eq!(out, "setting 1\ngot 1000 bytes, then EOF\nstream ended");
}
