//! Running out of file descriptors (EMFILE) makes the accept loop back off, not die or
//! spin, and the proxy serves again once descriptors are free. Uses the real binary
//! under `prlimit` so the limit applies to the proxy alone.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::HOST;
use common::backend::Backend;
use common::child::ChildGuard;
use common::client::{Client, TlsOptions, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, binary};

#[test]
fn emfile_backs_off_and_recovers() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .server("workers", "1")
        .tls_listener(&[&cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    let path = pki.dir().join("emfile.toml");
    std::fs::write(&path, config).unwrap();
    // Enough descriptors to start and serve a few connections, far fewer than we open.
    // A missing prlimit fails here with the package that provides it.
    let mut child = ChildGuard::spawn(
        Command::new("prlimit")
            .arg("--nofile=48:48")
            .arg(binary())
            .args(["run", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "util-linux",
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.take_stderr().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("ringgate did not report listening");
        if let Some(rest) = line.split("listening on https://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Hold far more connections than the proxy can have descriptors for.
    let held: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        held.len() >= 60,
        "could not even queue connections: {}",
        held.len()
    );
    // The warning proves the accept loop met EMFILE and backed off.
    let warned = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("out of resources") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    assert!(warned, "no EMFILE back-off warning in the log");
    assert!(child.try_wait().is_none(), "ringgate died on EMFILE");
    drop(held);
    // Once descriptors are free again, a real request is served.
    let opts = TlsOptions::new(pki.root_der(), HOST);
    let mut served = false;
    for _ in 0..50 {
        match Client::tls(addr, &opts) {
            Ok(mut c) => {
                let r = c.roundtrip(&req::get(HOST, "/bytes/7"));
                assert_eq!(r.status, 200, "{}", r.describe());
                served = true;
                break;
            }
            // Queued connections from the flood are still being accepted and closed.
            Err(_) => continue,
        }
    }
    child.signal(libc::SIGTERM);
    let status = child.wait();
    assert!(served, "no request served after descriptors were freed");
    assert!(status.success(), "exit after SIGTERM: {status}");
}
