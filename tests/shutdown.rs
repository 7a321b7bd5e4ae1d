//! Graceful shutdown: the real binary on SIGTERM stops accepting, lets in-flight requests
//! finish, closes idle connections and exits 0; past `shutdown_timeout_ms` it gives up on
//! stragglers. The in-process handle's `shutdown()` stops listening too. Every other
//! signal an operator may send (HUP, USR1, USR2, WINCH, PIPE) leaves it serving.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::backend::{Backend, pattern};
use common::client::{Client, TlsOptions, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, ProxyProcess};
use common::{Fixture, HOST};

/// Generous bound on how long the process may take to exit once nothing holds it.
const EXIT_GUARD: Duration = Duration::from_secs(20);

struct Running {
    process: ProxyProcess,
    backend: Backend,
    pki: TestPki,
}

impl Running {
    fn start(shutdown_timeout_ms: u64) -> Running {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let backend = Backend::start();
        let config = ConfigBuilder::new()
            .server("shutdown_timeout_ms", &shutdown_timeout_ms.to_string())
            .tls_listener(&[&cert])
            .route(None, "/", false, "backend")
            .upstream("backend", &[backend.addr], &[]);
        let path = pki.dir().join("ringgate.toml");
        std::fs::write(&path, config.build()).expect("write config");
        let process = ProxyProcess::spawn(&path, 1);
        Running {
            process,
            backend,
            pki,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.process.addrs()[0]
    }

    fn client(&self) -> Client {
        Client::tls(self.addr(), &TlsOptions::new(self.pki.root_der(), HOST))
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.process.output()))
    }

    /// Starts a `/gate` request and returns once the origin has received it.
    fn in_flight_request(&self) -> Client {
        let mut c = self.client();
        c.send(&req::get(HOST, "/gate")).expect("send /gate");
        assert!(
            self.backend.wait_for_heads(1, Duration::from_secs(10)),
            "the in-flight request never reached the origin"
        );
        c
    }
}

/// Retries connecting until the listener refuses (with a short backoff between attempts);
/// panics if it still accepts after `limit`.
fn wait_until_refused(addr: SocketAddr, limit: Duration, output: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connecting to {addr} after SIGTERM: unexpected error {e}"),
            Ok(_) if Instant::now() < deadline => {
                // Not closed yet: the signal is handled asynchronously.
                thread::sleep(Duration::from_millis(10));
            }
            Ok(_) => panic!(
                "{addr} still accepts connections {limit:?} after SIGTERM; output:\n{}",
                output()
            ),
        }
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let mut r = Running::start(30_000);
    let mut c = r.in_flight_request();
    r.process.signal("TERM");

    // New connections are refused while the old request is still held at the origin.
    let output = || r.process.output();
    wait_until_refused(r.addr(), Duration::from_secs(10), output);
    assert!(
        r.process.wait_exit(Duration::ZERO).is_none(),
        "the process exited while a request was still in flight"
    );

    r.backend.open_gate();
    let resp = c.read_response(false).unwrap_or_else(|e| {
        panic!(
            "in-flight request after SIGTERM: {e}\n{}",
            r.process.output()
        )
    });
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, b"gate open");

    let status = r
        .process
        .wait_exit(EXIT_GUARD)
        .unwrap_or_else(|| panic!("no exit after draining\n{}", r.process.output()));
    assert_eq!(
        status.code(),
        Some(0),
        "graceful shutdown exits 0\n{}",
        r.process.output()
    );
}

#[test]
fn sigterm_closes_idle_keepalive_connections() {
    let mut r = Running::start(60_000);
    let mut idle = r.client();
    let resp = idle.roundtrip(&req::get(HOST, "/bytes/100"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body, pattern(100, 100));
    r.process.signal("TERM");
    let rest = idle
        .expect_closed()
        .unwrap_or_else(|e| panic!("idle connection after SIGTERM: {e}\n{}", r.process.output()));
    assert!(rest.is_empty(), "nothing is sent on an idle connection");
    let status = r.process.wait_exit(EXIT_GUARD).unwrap_or_else(|| {
        panic!(
            "an idle connection must not hold the process until shutdown_timeout_ms\n{}",
            r.process.output()
        )
    });
    assert_eq!(status.code(), Some(0), "{}", r.process.output());
}

#[test]
fn sigint_is_graceful_too() {
    let mut r = Running::start(30_000);
    let resp = r.client().roundtrip(&req::get(HOST, "/bytes/1"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    r.process.signal("INT");
    let status = r
        .process
        .wait_exit(EXIT_GUARD)
        .unwrap_or_else(|| panic!("no exit after SIGINT\n{}", r.process.output()));
    assert_eq!(status.code(), Some(0), "{}", r.process.output());
}

#[test]
fn shutdown_timeout_cuts_off_stragglers() {
    let mut r = Running::start(500);
    let mut c = r.in_flight_request();
    r.process.signal("TERM");
    // The gate stays shut: the request can only end by the drain deadline.
    let status = r.process.wait_exit(EXIT_GUARD).unwrap_or_else(|| {
        panic!(
            "shutdown_timeout_ms = 500 passed but the process still runs\n{}",
            r.process.output()
        )
    });
    assert!(
        status.code().is_some(),
        "exited by itself, not killed: {status}"
    );
    match c.read_response(false) {
        Ok(resp) => assert_ne!(
            resp.status,
            200,
            "the origin never answered, so no 200 can have been sent\n{}",
            resp.describe()
        ),
        Err(e) => assert_ne!(e.kind(), ErrorKind::TimedOut, "connection left open: {e}"),
    }
    r.backend.open_gate();
}

#[test]
fn in_process_shutdown_stops_listening() {
    let f = Fixture::new();
    let addr = f.addr();
    let resp = f.client().roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let Fixture { proxy, .. } = f;
    proxy.shutdown();
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionRefused,
            "after shutdown() returned: {e}"
        ),
        Ok(_) => panic!("{addr} still accepts connections after shutdown() returned"),
    }
}

#[test]
fn operator_signals_leave_the_process_serving() {
    let mut r = Running::start(30_000);
    let mut kept = r.client();
    let resp = kept.roundtrip(&req::get(HOST, "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    // (signal, what the process logs once it has handled it); PIPE is ignored by
    // disposition, so there is nothing to wait for: the requests after it and the exit
    // status below show it did not kill the process.
    for (sig, logged) in [
        ("HUP", "configuration reloaded"),
        ("USR1", "signal=\"SIGUSR1\""),
        ("USR2", "signal=\"SIGUSR2\""),
        ("WINCH", "signal=\"SIGWINCH\""),
        ("PIPE", ""),
        // A second HUP (logrotate runs daily): still not fatal.
        ("HUP", "configuration reloaded"),
    ] {
        let before = r.process.output().matches(logged).count();
        r.process.signal(sig);
        if !logged.is_empty() {
            assert!(
                r.process
                    .wait_for_output(logged, before + 1, Duration::from_secs(10)),
                "no log line for SIG{sig} (exit: {:?})\n{}",
                r.process.wait_exit(Duration::ZERO),
                r.process.output()
            );
        }
        assert!(
            r.process.wait_exit(Duration::ZERO).is_none(),
            "SIG{sig} ended the process\n{}",
            r.process.output()
        );
        let resp = r.client().roundtrip(&req::get(HOST, "/bytes/100"));
        assert_eq!(resp.status, 200, "after SIG{sig}: {}", resp.describe());
        assert_eq!(resp.body, pattern(100, 100));
        let resp = kept.roundtrip(&req::get(HOST, "/bytes/20"));
        assert_eq!(
            resp.status,
            200,
            "keep-alive connection after SIG{sig}: {}",
            resp.describe()
        );
    }
    let output = r.process.output();
    assert_eq!(
        output.matches("configuration reloaded").count(),
        2,
        "each SIGHUP reloads once\n{output}"
    );
    r.process.signal("TERM");
    let status = r
        .process
        .wait_exit(EXIT_GUARD)
        .unwrap_or_else(|| panic!("no exit after SIGTERM\n{}", r.process.output()));
    assert_eq!(status.code(), Some(0), "{}", r.process.output());
    let output = r.process.output();
    assert!(
        output.contains("stopping: draining") && output.contains("ringgate: stopped"),
        "drained and stopped\n{output}"
    );
}
