//! One instance per address and per pid file, against the real binary: a second `run`
//! or `demo` on an address a running ringgate serves exits non-zero with "address in
//! use" instead of taking a share of its connections; a second start with the same
//! `pid_file` fails naming it and the running pid, and leaves the file to its holder.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::HOST;
use common::backend::Backend;
use common::client::{Client, TlsOptions, req};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, ProxyProcess, run_cli_bounded};

/// How long a refused second start may take to exit (it only reads a config and probes).
const EXIT_GUARD: Duration = Duration::from_secs(30);

fn config(cert: &CertFiles, backend: &Backend, pid_file: Option<&str>) -> String {
    let mut c = ConfigBuilder::new()
        .tls_listener(&[cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    if let Some(p) = pid_file {
        c = c.server("pid_file", &format!("\"{p}\""));
    }
    c.build()
}

/// `text` listening on `addr` instead of `127.0.0.1:0`.
fn at(text: &str, addr: SocketAddr) -> String {
    let moved = text.replace("addr = \"127.0.0.1:0\"", &format!("addr = \"{addr}\""));
    assert_ne!(moved, text);
    moved
}

/// Six requests, each on a new connection (so each meets the accept queue): all answered.
fn all_served(addr: SocketAddr, pki: &TestPki, p: &ProxyProcess) {
    for i in 0..6 {
        let mut c = Client::tls(addr, &TlsOptions::new(pki.root_der(), HOST))
            .unwrap_or_else(|e| panic!("request {i}: connect: {e}\n{}", p.output()));
        let r = c.roundtrip(&req::get(HOST, "/bytes/5"));
        assert_eq!(r.status, 200, "request {i}: {}", r.describe());
    }
}

#[test]
fn a_second_run_or_demo_on_the_same_address_is_refused() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let first = pki.dir().join("first.toml");
    std::fs::write(&first, config(&cert, &backend, None)).unwrap();
    let p = ProxyProcess::spawn(&first, 1);
    let addr = p.addrs()[0];
    all_served(addr, &pki, &p);

    let second = pki.dir().join("second.toml");
    std::fs::write(&second, at(&config(&cert, &backend, None), addr)).unwrap();
    let addr_s = addr.to_string();
    let runs: [&[&str]; 2] = [
        &["run", "-c", second.to_str().unwrap()],
        &["demo", "--listen", &addr_s, "--workers", "1"],
    ];
    for args in runs {
        let out = run_cli_bounded(args, pki.dir(), EXIT_GUARD);
        assert!(!out.status.success(), "{args:?}: {}", out.text);
        assert!(
            out.text
                .contains(&format!("listener {addr}: address in use")),
            "{args:?}: {}",
            out.text
        );
        assert!(!out.text.contains("listening on"), "{args:?}: {}", out.text);
        // The first instance still has every connection.
        all_served(addr, &pki, &p);
    }
    assert_eq!(p.output().matches("listening on").count(), 1);
}

#[test]
fn a_second_start_with_the_same_pid_file_is_refused_and_leaves_the_file() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let pid_path = pki.dir().join("ringgate.pid");
    // No [admin], each on its own port: only the pid file is shared.
    let text = config(&cert, &backend, Some("ringgate.pid"));
    let first = pki.dir().join("first.toml");
    let second = pki.dir().join("second.toml");
    std::fs::write(&first, &text).unwrap();
    std::fs::write(&second, &text).unwrap();
    let mut p = ProxyProcess::spawn(&first, 1);
    let pid_text = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(pid_text(&pid_path).trim(), p.pid().to_string());
    assert!(pki.dir().join("ringgate.pid.status").exists());

    let out = run_cli_bounded(
        &["run", "-c", second.to_str().unwrap()],
        pki.dir(),
        EXIT_GUARD,
    );
    assert!(!out.status.success(), "{}", out.text);
    assert!(
        out.text.contains(&format!(
            "pid_file {} is held by pid {}",
            pid_path.display(),
            p.pid()
        )),
        "{}",
        out.text
    );
    assert!(!out.text.contains("listening on"), "{}", out.text);
    // The refused start neither overwrote nor removed the running instance's file.
    assert_eq!(pid_text(&pid_path).trim(), p.pid().to_string());
    all_served(p.addrs()[0], &pki, &p);

    p.signal("TERM");
    let status = p.wait_exit(EXIT_GUARD).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", p.output());
    assert!(
        !pid_path.exists(),
        "the holder removes the pid file at exit"
    );
}
