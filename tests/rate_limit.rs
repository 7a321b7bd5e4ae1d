//! Rate limits and per-IP connection limits with the real binary (`ringgate run`, two
//! workers), and the same request sequence against nginx's `limit_req` (the Debian
//! package `nginx`; missing → the test fails with an install hint).
//!
//! The seed example: `rate = "10r/s", burst = 20, nodelay = true`, 100 requests at once
//! over 8 connections (SO_REUSEPORT spreads them over both workers) → exactly 21
//! admitted, 79 answered 429 with `Retry-After`. At 10 r/s one more request's worth
//! leaks every 100 ms: the counts are exact as long as the 100 requests reach the
//! limiter within 100 ms of the first, which a loaded CI host still does by far.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::child::ChildGuard;
use common::client::Client;
use common::proxy::{ProxyProcess, toml_str};

const HOST: &str = "api.test";

/// A port free now (nginx cannot listen on port 0 and tell us which it got).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Starts `ringgate run` with two workers, one plain listener (`listener_extra` added
/// to it), an admin listener, a route to `backend` counted by `[rate_limit.per_client]`
/// (`limit` is its body).
fn ringgate(dir: &Path, backend: SocketAddr, limit: &str, listener_extra: &str) -> Running {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = format!(
        "[server]\nworkers = 2\n\n[[listener]]\naddr = \"127.0.0.1:0\"\n{listener_extra}\n\n\
         [admin]\naddr = {admin}\n\n\
         [rate_limit.per_client]\nkey = \"client_ip\"\n{limit}\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"api\"\nrate_limit = [\"per_client\"]\n\n\
         [upstream.api]\nservers = [{server}]\n",
        admin = toml_str(&admin.to_string()),
        server = toml_str(&backend.to_string()),
    );
    let path = dir.join("ringgate.toml");
    std::fs::write(&path, config).expect("write config");
    let p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];
    Running { p, addr, admin }
}

/// `ringgate run` and its addresses.
struct Running {
    /// Stops the process when dropped.
    p: ProxyProcess,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// nginx with two workers and `limit_req` set like ringgate's: `zone_args` after
/// `limit_req_zone`'s key, `req_args` after `limit_req zone=per_client`.
struct Nginx {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Drop for Nginx {
    /// SIGTERM first: the master stops its workers and exits (the guard's SIGKILL would
    /// leave the workers running, orphaned). The guard's SIGKILL remains the fallback.
    fn drop(&mut self) {
        if self.child.try_wait().is_some() {
            return;
        }
        self.child.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().is_none() && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}

fn nginx(dir: &Path, backend: SocketAddr, zone_args: &str, req_args: &str) -> Nginx {
    let port = free_port();
    let d = dir.display();
    // As root, nginx's workers would switch to `nobody`; these run as whoever runs the test.
    let user = if running_as_root() { "user root;" } else { "" };
    let conf = format!(
        "{user}\ndaemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         limit_req_zone $binary_remote_addr zone=per_client:1m {zone_args};\n\
         limit_req_status 429;\n\
         upstream api {{ server {backend}; keepalive 16; }}\n\
         server {{\n  listen 127.0.0.1:{port} reuseport;\n  location / {{\n\
           limit_req zone=per_client {req_args};\n    proxy_pass http://api;\n\
           proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n  }}\n }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let program = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx");
    let child = ChildGuard::spawn(
        Command::new(program)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "nginx",
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // Readiness: the port accepts (nginx writes no line when it listens).
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {addr}; error.log:\n{}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::yield_now();
    }
    Nginx { child, addr }
}

fn running_as_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// What a burst got back.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answers {
    ok: usize,
    limited: usize,
    /// 429s without a `Retry-After` of at least 1 second.
    bad_retry_after: usize,
}

/// `total` requests at once over `conns` connections (opened first, then each sends its
/// share pipelined in one write, all released together), from `from`.
fn burst(addr: SocketAddr, total: usize, conns: usize, from: IpAddr) -> Answers {
    let start = Arc::new(Barrier::new(conns));
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let start = start.clone();
            let share = total / conns + usize::from(i < total % conns);
            let mut c = Client::plain_from(addr, from).expect("connect");
            std::thread::spawn(move || {
                let one = format!("GET /bytes/2 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
                let all = one.repeat(share);
                start.wait();
                c.send(all.as_bytes()).expect("send the share");
                let mut a = Answers::default();
                for _ in 0..share {
                    let r = c.read_response(false).expect("a response");
                    match r.status {
                        200 => a.ok += 1,
                        429 => {
                            a.limited += 1;
                            let secs = r.header("retry-after").and_then(|v| v.parse::<u64>().ok());
                            if secs.is_none_or(|s| s < 1) {
                                a.bad_retry_after += 1;
                            }
                        }
                        other => panic!("unexpected status {other}:\n{}", r.describe()),
                    }
                }
                a
            })
        })
        .collect();
    let mut sum = Answers::default();
    for t in threads {
        let a = t.join().expect("client thread");
        sum.ok += a.ok;
        sum.limited += a.limited;
        sum.bad_retry_after += a.bad_retry_after;
    }
    sum
}

/// The value of one sample in the proxy's `/metrics` (0 when absent).
fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let mut c = Client::plain(admin).expect("admin connect");
    let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

const REJECTED: &str =
    "ringgate_policy_rejections_total{policy=\"rate_limit\",reason=\"burst_exceeded\"}";
const DELAYED: &str = "ringgate_rate_limit_delayed_total";

#[test]
fn seed_example_admits_exactly_21_of_100_and_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start();
    let Running { p: _p, admin, addr } = ringgate(
        dir.path(),
        backend.addr,
        "rate = \"10r/s\"\nburst = 20\nnodelay = true",
        "",
    );
    let got = burst(addr, 100, 8, "127.0.0.1".parse().expect("ip"));
    assert_eq!(
        got,
        Answers {
            ok: 21,
            limited: 79,
            bad_retry_after: 0
        }
    );
    assert_eq!(metric(admin, REJECTED), 79.0);
    assert_eq!(metric(admin, DELAYED), 0.0, "nodelay never waits");
    assert_eq!(
        backend.heads(),
        21,
        "only admitted requests reach the upstream"
    );
    // Another client address has its own budget.
    let other = burst(addr, 30, 3, "127.0.0.2".parse().expect("ip"));
    assert_eq!((other.ok, other.limited), (21, 9));
}

#[test]
fn delay_admits_late_instead_of_refusing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start();
    let Running { p: _p, admin, addr } = ringgate(
        dir.path(),
        backend.addr,
        "rate = \"10r/s\"\nburst = 20\ndelay = 8",
        "",
    );
    // 21 requests at once: the first 9 (excess up to 8) pass at once, the other 12 wait
    // (100 ms per request of excess over 8) and are admitted, none refused.
    let got = burst(addr, 21, 8, "127.0.0.1".parse().expect("ip"));
    assert_eq!((got.ok, got.limited), (21, 0));
    let delayed = metric(admin, DELAYED);
    assert!(
        (1.0..=12.0).contains(&delayed),
        "{delayed} requests waited: expected the ones past delay = 8 to (at most 12)"
    );
    // Without delay or nodelay every excess request waits; still none refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let Running { p: _p, admin, addr } =
        ringgate(dir.path(), backend.addr, "rate = \"10r/s\"\nburst = 3", "");
    let got = burst(addr, 4, 2, "127.0.0.1".parse().expect("ip"));
    assert_eq!((got.ok, got.limited), (4, 0));
    assert!(metric(admin, DELAYED) >= 1.0);
}

#[test]
fn nginx_limit_req_admits_the_same_counts() {
    let backend = Backend::start();
    for (ours, zone, req, total, conns) in [
        (
            "rate = \"10r/s\"\nburst = 20\nnodelay = true",
            "rate=10r/s",
            "burst=20 nodelay",
            100,
            8,
        ),
        (
            "rate = \"10r/s\"\nburst = 20\ndelay = 8",
            "rate=10r/s",
            "burst=20 delay=8",
            21,
            8,
        ),
        (
            "rate = \"600r/m\"\nburst = 5\nnodelay = true",
            "rate=600r/m",
            "burst=5 nodelay",
            40,
            4,
        ),
    ] {
        let from: IpAddr = "127.0.0.1".parse().expect("ip");
        let dir = tempfile::tempdir().expect("tempdir");
        let n = nginx(dir.path(), backend.addr, zone, req);
        let theirs = burst(n.addr, total, conns, from);
        let dir = tempfile::tempdir().expect("tempdir");
        let Running { p: _p, addr, .. } = ringgate(dir.path(), backend.addr, ours, "");
        let mine = burst(addr, total, conns, from);
        println!("{req}, {total} requests: nginx {theirs:?}, ringgate {mine:?}");
        assert_eq!(
            (mine.ok, mine.limited),
            (theirs.ok, theirs.limited),
            "{req}: ringgate and nginx admit differently"
        );
        assert_eq!(mine.bad_retry_after, 0);
    }
}

#[test]
fn per_ip_connection_limit_closes_the_excess_at_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start();
    let Running { p: _p, admin, addr } = ringgate(
        dir.path(),
        backend.addr,
        "rate = \"1000r/s\"\nburst = 1000\nnodelay = true",
        "max_connections_per_ip = 2",
    );
    let two: IpAddr = "127.0.0.2".parse().expect("ip");
    let get = format!("GET /bytes/2 HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    // Two connections from 127.0.0.2, each known to be accepted (a response came back).
    let mut held: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::plain_from(addr, two).expect("connect");
            assert_eq!(c.roundtrip(get.as_bytes()).status, 200);
            c
        })
        .collect();
    // The third is closed at once, without a byte.
    let mut third = Client::plain_from(addr, two).expect("the kernel accepts the SYN");
    let _ = third.send(get.as_bytes());
    let rest = third.expect_closed().expect("closed by the proxy");
    assert!(rest.is_empty(), "a refused connection gets no response");
    let refused =
        "ringgate_policy_rejections_total{policy=\"conn_limit\",reason=\"max_connections_per_ip\"}";
    assert_eq!(metric(admin, refused), 1.0);
    // Other addresses are not affected.
    for ip in ["127.0.0.3", "127.0.0.4"] {
        let mut c = Client::plain_from(addr, ip.parse().expect("ip")).expect("connect");
        assert_eq!(c.roundtrip(get.as_bytes()).status, 200, "{ip}");
    }
    // Once one of the two closes, 127.0.0.2 may connect again (the close is counted
    // out when the proxy's connection task ends: retried until it has).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::plain_from(addr, two).expect("connect");
        let _ = c.send(get.as_bytes());
        if let Ok(r) = c.read_response(false) {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 never got its slot back"
        );
    }
}
