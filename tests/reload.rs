//! Live configuration against the real binary: SIGHUP, `ringgate reload` and certificate
//! polling switch generations without failing a request; a broken configuration changes
//! nothing and says where it is broken; TLS sessions resume across a reload. And, in
//! process, that a reload keeps the pooled connections of unchanged servers and closes
//! those of servers that went away.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rustls::HandshakeKind;

use common::HOST;
use common::backend::Backend;
use common::client::{Client, TlsOptions, client_config, req, request_with};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, ProxyProcess, run_cli};

/// How long a reload may take to show in the log (it reads files and parses keys).
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// Replaces `path` in one step (write aside, rename), as deployment tools do.
fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// A config with upstreams `old` and `new`, routing `/` to `to`.
fn two_upstreams(cert: &CertFiles, old: SocketAddr, new: SocketAddr, to: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .server("certificate_check_interval_ms", "0")
        .tls_listener(&[cert])
        .route(None, "/", false, to)
        .upstream("old", &[old], &[])
        .upstream("new", &[new], &[])
}

/// 1-based line of the last line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .rposition(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

struct Sample {
    sent: Instant,
    result: Result<String, String>,
}

/// One request on `client` (reconnecting when there is none); `Ok(x-backend)` for a 200.
fn load_request(client: &mut Option<Client>, addr: SocketAddr, opts: &TlsOptions) -> Sample {
    let sent = Instant::now();
    let result = (|| {
        if client.is_none() {
            *client = Some(Client::tls(addr, opts).map_err(|e| format!("connect: {e}"))?);
        }
        let c = client.as_mut().expect("just set");
        c.send(&req::get(HOST, "/bytes/64"))
            .map_err(|e| format!("send: {e}"))?;
        let r = c.read_response(false).map_err(|e| format!("read: {e}"))?;
        if r.connection_close() {
            *client = None;
        }
        if r.status != 200 || r.body.len() != 64 {
            return Err(format!("bad response: {}", r.describe()));
        }
        r.header("x-backend")
            .map(str::to_string)
            .ok_or_else(|| "no x-backend".to_string())
    })();
    Sample { sent, result }
}

#[test]
fn sighup_under_load_switches_the_route_with_no_failed_request() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let (old, new) = (Backend::named("old"), Backend::named("new"));
    let path = pki.dir().join("ringgate.toml");
    replace_file(
        &path,
        two_upstreams(&cert, old.addr, new.addr, "old")
            .build()
            .as_bytes(),
    );
    let p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];
    let opts = TlsOptions::new(pki.root_der(), HOST);

    // A slow request, in flight across the reload: it must finish on the old upstream.
    let slow = {
        let opts = opts.clone();
        thread::spawn(move || {
            let mut c = Client::tls(addr, &opts).expect("connect for the slow request");
            c.roundtrip(&req::get(HOST, "/gate"))
        })
    };
    assert!(
        old.wait_for_heads(1, RELOAD_WAIT),
        "slow request never arrived"
    );

    // The load: 4 clients at a fixed rate of one request per 10 ms each (400/s), keep-alive,
    // every 10th request on a new connection; bounded by a count and a stop flag.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Sample>();
    let mut generators = Vec::new();
    for _ in 0..4 {
        let (stop, tx, opts) = (stop.clone(), tx.clone(), opts.clone());
        generators.push(thread::spawn(move || {
            let period = Duration::from_millis(10);
            let start = Instant::now();
            let mut client = None;
            for i in 0..4000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                // Pacing to the fixed rate (not synchronisation): wait for this slot.
                let due = start + period * i;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if i % 10 == 0 {
                    client = None;
                }
                if tx.send(load_request(&mut client, addr, &opts)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut samples = Vec::new();
    let recv = |samples: &mut Vec<Sample>| {
        let s = rx
            .recv_timeout(RELOAD_WAIT)
            .expect("load generator stopped answering");
        samples.push(s);
    };
    while samples.len() < 100 {
        recv(&mut samples);
    }

    replace_file(
        &path,
        two_upstreams(&cert, old.addr, new.addr, "new")
            .build()
            .as_bytes(),
    );
    p.signal("HUP");
    assert!(
        p.wait_for_output("configuration reloaded", 1, RELOAD_WAIT),
        "no reload logged\n{}",
        p.output()
    );
    let reloaded = Instant::now();
    while samples.iter().filter(|s| s.sent > reloaded).count() < 200 {
        recv(&mut samples);
    }
    stop.store(true, Ordering::SeqCst);
    for g in generators {
        g.join().expect("load generator thread");
    }
    samples.extend(rx.try_iter());

    let failed: Vec<&String> = samples
        .iter()
        .filter_map(|s| s.result.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    let after: Vec<&str> = samples
        .iter()
        .filter(|s| s.sent > reloaded)
        .map(|s| s.result.as_deref().expect("checked above"))
        .collect();
    assert!(
        after.iter().all(|b| *b == "new"),
        "a request sent after the reload was answered by the old upstream: {:?}",
        after.iter().filter(|b| **b != "new").count()
    );
    let before_old = samples
        .iter()
        .filter(|s| s.sent < reloaded && s.result.as_deref() == Ok("old"))
        .count();
    assert!(before_old >= 100, "the old route served {before_old}");

    old.open_gate();
    let r = slow.join().expect("slow request thread");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("x-backend"), Some("old"), "{}", r.describe());
    assert_eq!(r.body, b"gate open");
}

#[test]
fn broken_reloads_change_nothing_and_say_where() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let bad_cert = pki.mismatched(&[HOST], KeyType::EcdsaP256);
    let (old, new) = (Backend::named("old"), Backend::named("new"));
    let path = pki.dir().join("ringgate.toml");
    let pid_path = pki.dir().join("ringgate.pid");
    let good = |to: &str| {
        two_upstreams(&cert, old.addr, new.addr, to)
            .server("pid_file", "\"ringgate.pid\"")
            .build()
    };
    replace_file(&path, good("old").as_bytes());
    let mut p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];
    let opts = TlsOptions::new(pki.root_der(), HOST);
    let pid = std::fs::read_to_string(&pid_path).expect("pid_file written at start");
    assert_eq!(pid.trim(), p.pid().to_string());
    let mut kept = Client::tls(addr, &opts).unwrap();
    let served_by = |c: &mut Client| {
        let r = c.roundtrip(&req::get(HOST, "/bytes/3"));
        assert_eq!(r.status, 200, "{}", r.describe());
        r.header("x-backend").map(str::to_string)
    };
    assert_eq!(served_by(&mut kept).as_deref(), Some("old"));

    // Each routes to "new" but is broken; (config text, the text marking the bad line).
    let bad_toml = good("new") + "\n[server\n";
    let bad_key = two_upstreams(&bad_cert, old.addr, new.addr, "new").build();
    let unknown = good("new").replace("upstream = \"new\"", "upstream = \"missing\"");
    let cases = [
        (bad_toml, "[server\n", "expected"),
        (bad_key, "key = ", "does not match"),
        (
            unknown,
            "upstream = \"missing\"",
            "unknown upstream \"missing\"",
        ),
    ];
    for (i, (text, marker, message)) in cases.iter().enumerate() {
        replace_file(&path, text.as_bytes());
        p.signal("HUP");
        assert!(
            p.wait_for_output("reload failed", i + 1, RELOAD_WAIT),
            "case {i}: no failure logged\n{}",
            p.output()
        );
        let line = line_of(text, marker.trim_end());
        let out = p.output();
        let located = format!("{}:{line}:", path.display());
        assert!(
            out.lines()
                .any(|l| l.contains("reload: ") && l.contains(&located) && l.contains(message)),
            "case {i}: no error naming {located} and {message:?}\n{out}"
        );
        assert!(
            out.contains(&format!("reloads_failed={}", i + 1)),
            "case {i}: reload-failed counter not at {}\n{out}",
            i + 1
        );
        assert_eq!(
            served_by(&mut kept).as_deref(),
            Some("old"),
            "case {i}: kept connection"
        );
        let mut fresh = Client::tls(addr, &opts).unwrap();
        assert_eq!(
            served_by(&mut fresh).as_deref(),
            Some("old"),
            "case {i}: new connection"
        );
    }
    assert!(!p.output().contains("configuration reloaded"));

    // `ringgate reload` checks first and refuses to signal with a broken file...
    let cli = run_cli(&["reload", "-c", path.to_str().unwrap()], pki.dir());
    assert_eq!(cli.status.code(), Some(1), "{}", cli.text);
    assert!(
        cli.text.contains("unknown upstream") && cli.text.contains("not signalled"),
        "{}",
        cli.text
    );
    // ...and signals the process named by pid_file with a good one, which also asks for
    // a change only a restart can make: that is reported, the rest applies.
    let needs_restart = good("new").replace("workers = 2", "workers = 3");
    assert_ne!(needs_restart, good("new"));
    replace_file(&path, needs_restart.as_bytes());
    let cli = run_cli(&["reload", "-c", path.to_str().unwrap()], pki.dir());
    assert_eq!(cli.status.code(), Some(0), "{}", cli.text);
    assert!(
        cli.text
            .contains(&format!("sent SIGHUP to pid {}", p.pid())),
        "{}",
        cli.text
    );
    assert!(
        p.wait_for_output("configuration reloaded", 1, RELOAD_WAIT),
        "{}",
        p.output()
    );
    assert_eq!(p.output().matches("reload failed").count(), cases.len());
    assert!(
        p.output()
            .contains("needs a restart: server.workers 2 -> 3"),
        "{}",
        p.output()
    );
    assert_eq!(served_by(&mut kept).as_deref(), Some("new"));

    // Without a pid_file `ringgate reload` cannot find the process: exit 2.
    let other = pki.dir().join("no-pid.toml");
    replace_file(
        &other,
        two_upstreams(&cert, old.addr, new.addr, "new")
            .build()
            .as_bytes(),
    );
    let cli = run_cli(&["reload", "-c", other.to_str().unwrap()], pki.dir());
    assert_eq!(cli.status.code(), Some(2), "{}", cli.text);

    p.signal("TERM");
    let status = p.wait_exit(RELOAD_WAIT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", p.output());
    assert!(!pid_path.exists(), "pid_file removed at exit");
}

/// The leaf a fresh full handshake is served.
fn served_leaf(addr: SocketAddr, pki: &TestPki) -> Vec<u8> {
    let c = Client::tls(addr, &TlsOptions::new(pki.root_der(), HOST)).expect("connect");
    c.tls.expect("tls info").peer_leaf
}

/// Starts the binary serving certificate files at fixed paths, replaces them with a new
/// certificate, and has `reload` make the process notice; checks new handshakes get the
/// new certificate, a kept connection keeps working and sessions from before resume.
fn certificate_replaced(poll: bool, reload: impl FnOnce(&ProxyProcess)) {
    let pki = TestPki::new();
    let first = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let second = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let live = CertFiles {
        cert: pki.dir().join("live.pem"),
        key: pki.dir().join("live.key"),
        leaf_der: first.leaf_der.clone(),
    };
    let copy = |from: &CertFiles| {
        replace_file(&live.key, &std::fs::read(&from.key).unwrap());
        replace_file(&live.cert, &std::fs::read(&from.cert).unwrap());
    };
    copy(&first);
    let backend = Backend::start();
    let path = pki.dir().join("ringgate.toml");
    let interval = if poll { "100" } else { "0" };
    let config = ConfigBuilder::new()
        .server("certificate_check_interval_ms", interval)
        .tls_listener(&[&live])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    replace_file(&path, config.as_bytes());
    let p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];

    let tls13 = client_config(&pki, &rustls::version::TLS13);
    let tls12 = client_config(&pki, &rustls::version::TLS12);
    for c in [&tls13, &tls12] {
        assert_eq!(request_with(c, addr), HandshakeKind::Full);
    }
    let mut kept = Client::tls(addr, &TlsOptions::new(pki.root_der(), HOST)).unwrap();
    assert_eq!(kept.tls.as_ref().unwrap().peer_leaf, first.leaf_der);
    assert_eq!(kept.roundtrip(&req::get(HOST, "/bytes/7")).status, 200);
    assert_eq!(served_leaf(addr, &pki), first.leaf_der);

    copy(&second);
    if !poll {
        // Nothing watches the files: the old certificate is still served.
        assert_eq!(served_leaf(addr, &pki), first.leaf_der);
    }
    reload(&p);
    assert!(
        p.wait_for_output("configuration reloaded", 1, RELOAD_WAIT),
        "no reload\n{}",
        p.output()
    );
    assert_eq!(
        served_leaf(addr, &pki),
        second.leaf_der,
        "new handshakes after the reload get the new certificate"
    );
    let r = kept.roundtrip(&req::get(HOST, "/bytes/7"));
    assert_eq!(r.status, 200, "kept connection: {}", r.describe());
    assert_eq!(
        request_with(&tls13, addr),
        HandshakeKind::Resumed,
        "TLS 1.3 ticket"
    );
    assert_eq!(
        request_with(&tls12, addr),
        HandshakeKind::Resumed,
        "TLS 1.2 session"
    );
}

#[test]
fn replaced_certificate_is_picked_up_by_polling() {
    certificate_replaced(true, |_| {});
}

#[test]
fn replaced_certificate_is_picked_up_on_sighup() {
    certificate_replaced(false, |p| p.signal("HUP"));
}

/// A bare upstream on a test-owned socket: answers each request on its one connection
/// with a small 200 (once `gate` lets it, when given), and reports what happened.
fn one_connection_upstream() -> (SocketAddr, mpsc::Receiver<&'static str>) {
    gated_upstream(None)
}

fn gated_upstream(gate: Option<mpsc::Receiver<()>>) -> (SocketAddr, mpsc::Receiver<&'static str>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = tx.send("accepted");
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send("closed");
                    return;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                got.drain(..end + 4);
                if let Some(gate) = &gate {
                    let _ = tx.send("head");
                    let _ = gate.recv();
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-backend: solo\r\n\r\nok",
                );
            }
        }
    });
    (addr, rx)
}

#[test]
fn reload_keeps_pools_of_unchanged_servers_and_closes_removed_ones() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let (solo, events) = one_connection_upstream();
    let other = Backend::named("other");
    // One worker, so every request meets the same pool. "short" only makes the worker
    // sweep often (its keepalive timeout is the shortest); "solo" keeps idle ones 60 s.
    let base = |routes: &[(&str, &str)], solo_servers: &[SocketAddr]| {
        let mut c = ConfigBuilder::new()
            .server("workers", "1")
            .tls_listener(&[&cert]);
        for (prefix, to) in routes {
            c = c.route(None, prefix, *prefix != "/", to);
        }
        c.upstream("solo", solo_servers, &[("keepalive_timeout_ms", "60000")])
            .upstream("short", &[other.addr], &[("keepalive_timeout_ms", "200")])
            .build()
    };
    let text = base(&[("/", "solo")], &[solo]);
    let proxy = Proxy::start(&text, pki.dir());
    let live = proxy.live().clone();
    let opts = TlsOptions::new(pki.root_der(), HOST);
    let get = |path: &str| {
        let mut c = Client::tls(proxy.addr(), &opts).unwrap();
        let r = c.roundtrip(&req::get(HOST, path));
        assert_eq!(r.status, 200, "{}", r.describe());
        r.header("x-backend").map(str::to_string)
    };
    assert_eq!(get("/a").as_deref(), Some("solo"));
    assert_eq!(events.recv_timeout(RELOAD_WAIT), Ok("accepted"));

    // A reload that leaves "solo" as it was: its pooled connection serves on.
    let config = |t: &str| ringgate::config::from_toml_str(t, "test.toml", pki.dir()).unwrap();
    let more_routes = base(&[("/", "solo"), ("/other/", "short")], &[solo]);
    live.reload_with(config(&more_routes), "test").unwrap();
    assert_eq!(get("/b").as_deref(), Some("solo"), "same pooled connection");
    assert_eq!(get("/other/bytes/2").as_deref(), Some("other"));

    // A reload that removes the server: its idle connection is closed at the next sweep
    // (about 100 ms), long before its own 60 s keepalive timeout.
    let removed = base(&[("/", "short")], &[other.addr]);
    let r = live.reload_with(config(&removed), "test").unwrap();
    assert_eq!(r.generation, 3);
    assert_eq!(
        events.recv_timeout(RELOAD_WAIT),
        Ok("closed"),
        "the removed server's pooled connection must close"
    );
    assert_eq!(get("/bytes/2").as_deref(), Some("other"));
    let reports = proxy.shutdown_reports();
    let reused: u64 = reports.iter().map(|w| w.upstream_reused).sum();
    assert!(reused >= 1, "pooled connections were reused: {reused}");
}

#[test]
fn a_connection_to_a_removed_server_is_not_pooled_after_its_request() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let (open, gate) = mpsc::channel();
    let (solo, events) = gated_upstream(Some(gate));
    let other = Backend::named("other");
    // Both keep idle connections 60 s, so the sweep runs every 30 s: a prompt close can
    // only come from the release of the lease.
    let config = |servers: &[SocketAddr]| {
        ConfigBuilder::new()
            .server("workers", "1")
            .tls_listener(&[&cert])
            .route(None, "/", false, "solo")
            .upstream("solo", servers, &[("keepalive_timeout_ms", "60000")])
            .build()
    };
    let proxy = Proxy::start(&config(&[solo]), pki.dir());
    let (addr, opts) = (proxy.addr(), TlsOptions::new(pki.root_der(), HOST));
    let slow = thread::spawn(move || {
        let mut c = Client::tls(addr, &opts).unwrap();
        c.roundtrip(&req::get(HOST, "/slow"))
    });
    assert_eq!(events.recv_timeout(RELOAD_WAIT), Ok("accepted"));
    assert_eq!(events.recv_timeout(RELOAD_WAIT), Ok("head"));
    let moved =
        ringgate::config::from_toml_str(&config(&[other.addr]), "test.toml", pki.dir()).unwrap();
    proxy.live().reload_with(moved, "test").unwrap();
    open.send(()).unwrap();
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("x-backend"),
        Some("solo"),
        "finished on its generation"
    );
    assert_eq!(
        events.recv_timeout(Duration::from_secs(10)),
        Ok("closed"),
        "the connection to the removed server must close when its request ends"
    );
}

/// `pem` with its base64 body cut short between intact BEGIN/END lines: a certificate
/// file that lost lines (what a careless edit or a partial copy leaves).
fn lines_missing(pem: &str) -> String {
    let lines: Vec<&str> = pem.lines().collect();
    [&lines[..2], &lines[lines.len() - 2..]].concat().join("\n") + "\n"
}

#[test]
fn a_certificate_change_applies_the_certificate_only_never_unreloaded_toml_edits() {
    let pki = TestPki::new();
    let first = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let second = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    // One file holding certificate and key, named as both: it must be named once.
    let both = pki.dir().join("live.pem");
    let combined = |c: &CertFiles| {
        let mut pem = std::fs::read(&c.cert).unwrap();
        pem.extend(std::fs::read(&c.key).unwrap());
        pem
    };
    replace_file(&both, &combined(&first));
    let live = CertFiles {
        cert: both.clone(),
        key: both.clone(),
        leaf_der: first.leaf_der.clone(),
    };
    let (old, new) = (Backend::named("old"), Backend::named("new"));
    let config = |to: &str| {
        ConfigBuilder::new()
            .server("certificate_check_interval_ms", "100")
            .tls_listener(&[&live])
            .route(None, "/", false, to)
            .upstream("old", &[old.addr], &[])
            .upstream("new", &[new.addr], &[])
            .build()
    };
    let path = pki.dir().join("ringgate.toml");
    replace_file(&path, config("old").as_bytes());
    let p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];
    let opts = TlsOptions::new(pki.root_der(), HOST);
    let backend = || {
        let mut c = Client::tls(addr, &opts).unwrap();
        let r = c.roundtrip(&req::get(HOST, "/bytes/3"));
        assert_eq!(r.status, 200, "{}", r.describe());
        r.header("x-backend").map(str::to_string)
    };
    assert_eq!(backend().as_deref(), Some("old"));

    // An edit to the file, not reloaded; then the certificate is renewed.
    replace_file(&path, config("new").as_bytes());
    replace_file(&both, &combined(&second));
    assert!(
        p.wait_for_output("configuration reloaded", 1, RELOAD_WAIT),
        "no reload\n{}",
        p.output()
    );
    assert_eq!(
        served_leaf(addr, &pki),
        second.leaf_der,
        "the new certificate"
    );
    assert_eq!(
        backend().as_deref(),
        Some("old"),
        "the unreloaded route edit went live with the certificate\n{}",
        p.output()
    );
    let out = p.output();
    let changed = out
        .lines()
        .find(|l| l.contains("certificate files changed on disk"))
        .unwrap_or_else(|| panic!("no changed-files line\n{out}"));
    assert_eq!(
        changed.matches(&both.display().to_string()).count(),
        1,
        "each changed file named once: {changed}"
    );

    // A broken certificate: said in plain words with the file, nothing changes.
    let cert_pem = String::from_utf8(std::fs::read(&second.cert).unwrap()).unwrap();
    let broken = lines_missing(&cert_pem) + &std::fs::read_to_string(&second.key).unwrap();
    replace_file(&both, broken.as_bytes());
    assert!(
        p.wait_for_output("reload failed", 1, RELOAD_WAIT),
        "no failure\n{}",
        p.output()
    );
    let expected = format!("{}: certificate #1 is truncated", both.display());
    let out = p.output();
    assert!(out.contains(&expected), "{expected:?} not in\n{out}");
    assert!(!out.contains("NomError"), "{out}");
    assert_eq!(served_leaf(addr, &pki), second.leaf_der);
    let cli = run_cli(&["check", "-c", path.to_str().unwrap()], pki.dir());
    assert_eq!(cli.status.code(), Some(1), "{}", cli.text);
    assert!(cli.text.contains(&expected), "{}", cli.text);
    assert!(!cli.text.contains("NomError"), "{}", cli.text);

    // The edit goes live when it is reloaded.
    replace_file(&both, &combined(&second));
    p.signal("HUP");
    assert!(
        p.wait_for_output("configuration reloaded", 2, RELOAD_WAIT),
        "{}",
        p.output()
    );
    assert_eq!(backend().as_deref(), Some("new"));
}

#[test]
fn reload_command_refuses_another_file_and_reports_the_outcome() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let (old, new) = (Backend::named("old"), Backend::named("new"));
    let config = |to: &str| {
        two_upstreams(&cert, old.addr, new.addr, to)
            .server("pid_file", "\"ringgate.pid\"")
            .build()
    };
    let path = pki.dir().join("ringgate.toml");
    replace_file(&path, config("old").as_bytes());
    let p = ProxyProcess::spawn(&path, 1);
    let addr = p.addrs()[0];
    let opts = TlsOptions::new(pki.root_der(), HOST);
    let backend = || {
        let mut c = Client::tls(addr, &opts).unwrap();
        let r = c.roundtrip(&req::get(HOST, "/bytes/3"));
        assert_eq!(r.status, 200, "{}", r.describe());
        r.header("x-backend").map(str::to_string)
    };
    assert_eq!(backend().as_deref(), Some("old"));
    let running = std::fs::canonicalize(&path).unwrap();

    // Another file naming the same pid_file: refused, naming the file the process runs.
    let other = pki.dir().join("other.toml");
    replace_file(&other, config("new").as_bytes());
    let cli = run_cli(&["reload", "-c", "other.toml"], pki.dir());
    assert_eq!(cli.status.code(), Some(2), "{}", cli.text);
    assert!(
        cli.text.contains(&format!(
            "does not run this file: it runs {}",
            running.display()
        )),
        "{}",
        cli.text
    );
    assert!(!cli.text.contains("sent SIGHUP"), "{}", cli.text);
    assert!(!p.output().contains("reloading the configuration"));
    assert_eq!(backend().as_deref(), Some("old"));

    // The running file, edited (by a relative path): reloaded, the new generation said.
    replace_file(&path, config("new").as_bytes());
    let cli = run_cli(&["reload", "-c", "ringgate.toml"], pki.dir());
    assert_eq!(cli.status.code(), Some(0), "{}", cli.text);
    assert!(
        cli.text.contains(&format!(
            "reloaded: pid {} serves generation 2 (was 1)",
            p.pid()
        )),
        "{}",
        cli.text
    );
    assert_eq!(backend().as_deref(), Some("new"));

    // An edit `check` accepts but the process cannot apply: kTLS demanded where the
    // kernel has none fails in the process, and the command says so (exit 1). Where the
    // kernel has kTLS, the same edit applies (exit 0).
    let ktls_on = config("new").replace("ktls = \"auto\"", "ktls = \"on\"");
    assert_ne!(ktls_on, config("new"));
    replace_file(&path, ktls_on.as_bytes());
    let cli = run_cli(&["reload", "-c", path.to_str().unwrap()], pki.dir());
    if ringgate::transport::ktls::support().is_available() {
        assert_eq!(cli.status.code(), Some(0), "{}", cli.text);
        assert!(cli.text.contains("serves generation 3"), "{}", cli.text);
    } else {
        assert_eq!(cli.status.code(), Some(1), "{}", cli.text);
        assert!(
            cli.text.contains("kernel TLS is unavailable")
                && cli.text.contains(&format!(
                    "reload failed in pid {}: nothing changed, still serving generation 2",
                    p.pid()
                )),
            "{}",
            cli.text
        );
        assert_eq!(backend().as_deref(), Some("new"));
    }
}
