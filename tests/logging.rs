//! What the process writes to stderr, seen from outside: a client cannot make it log a
//! line per handshake (rustls' peer-triggered warnings are debug), and a stderr nobody
//! reads does not stop the proxy from serving — log lines are written by one writer
//! thread, never by a worker — while the lines queued at exit are still written out.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::HOST;
use common::backend::Backend;
use common::child::ChildGuard;
use common::client::{Client, TlsOptions, raw_exchange, req};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, ProxyProcess, binary, listening_addr};

const EXIT_GUARD: Duration = Duration::from_secs(20);

/// PKI, an origin, and a config file for one TLS listener routing `/` to it.
fn setup() -> (TestPki, Backend, std::path::PathBuf) {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let config = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[]);
    let path = pki.dir().join("ringgate.toml");
    std::fs::write(&path, config.build()).expect("write config");
    (pki, backend, path)
}

/// `n` full handshakes with `openssl s_client -servername 127.0.0.1` (an IP address as
/// SNI, as h2load and some real clients send); panics unless each one completed.
fn ip_sni_handshakes(proxy: &ProxyProcess, n: usize) {
    let addr = proxy.addrs()[0];
    for i in 0..n {
        let out = Command::new("openssl")
            .args(["s_client", "-brief", "-connect", &addr.to_string()])
            .args(["-servername", "127.0.0.1"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("openssl s_client: {e} (apt-get install openssl; ./test.sh installs it)")
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("CONNECTION ESTABLISHED"),
            "handshake {i} with an IP address as SNI failed:\n{text}\n{}",
            proxy.output()
        );
    }
}

fn stop(mut proxy: ProxyProcess) -> String {
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(EXIT_GUARD)
        .unwrap_or_else(|| panic!("no exit after SIGTERM\n{}", proxy.output()));
    assert_eq!(status.code(), Some(0), "{}", proxy.output());
    // Everything written before the exit has been read once "stopped" is in.
    assert!(
        proxy.wait_for_output("ringgate: stopped", 1, EXIT_GUARD),
        "{}",
        proxy.output()
    );
    proxy.output()
}

#[test]
fn ip_address_sni_does_not_log_a_line_per_handshake() {
    const HANDSHAKES: usize = 20;
    let (_pki, _backend, config) = setup();

    let quiet = ProxyProcess::spawn(&config, 1);
    ip_sni_handshakes(&quiet, HANDSHAKES);
    let output = stop(quiet);
    let lines = output.matches("Illegal SNI").count();
    assert_eq!(
        lines, 0,
        "a peer-triggered rustls message reached the default log {lines} times\n{output}"
    );

    // The message still exists and an operator can ask for it: at debug, by target.
    let verbose = ProxyProcess::spawn_with(&config, 1, &["--log", "info,rustls=debug"]);
    ip_sni_handshakes(&verbose, HANDSHAKES);
    let output = stop(verbose);
    let demoted = output
        .lines()
        .filter(|l| l.contains("Illegal SNI") && l.contains("DEBUG"))
        .count();
    assert_eq!(
        demoted, HANDSHAKES,
        "--log rustls=debug shows rustls' SNI message once per handshake, at DEBUG\n{output}"
    );
    assert!(
        !output
            .lines()
            .any(|l| l.contains("Illegal SNI") && l.contains("WARN")),
        "{output}"
    );
}

#[test]
fn a_stderr_nobody_reads_does_not_stop_serving() {
    // More than the pipe holds: each refused handshake logs one ~150-byte debug line.
    const BAD_HANDSHAKES: usize = 300;
    const PIPE_BYTES: libc::c_int = 4096;
    let (pki, _backend, config) = setup();
    let (reader, writer) = std::io::pipe().expect("pipe");
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor this test owns; no memory is passed.
    let set = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    assert!(
        set >= PIPE_BYTES,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    let mut child = ChildGuard::spawn(
        Command::new(binary())
            .args(["--log", "debug", "run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer),
        "ringgate (cargo build)",
    );
    // Read up to the listening line, then read nothing more until the end.
    let mut stderr = BufReader::new(reader);
    let mut head = String::new();
    let addr = loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "ringgate exited before listening:\n{head}");
        head.push_str(&line);
        if let Some(a) = listening_addr(&line) {
            break a;
        }
    };

    for i in 0..BAD_HANDSHAKES {
        if let Err(e) = raw_exchange(addr, b"this is not a TLS ClientHello\r\n\r\n") {
            panic!("bad handshake {i} with stderr full: {e}");
        }
    }
    let mut c = Client::tls(addr, &TlsOptions::new(pki.root_der(), HOST))
        .unwrap_or_else(|e| panic!("TLS connect with stderr full: {e}"));
    let resp = c.roundtrip(&req::get(HOST, "/bytes/100"));
    assert_eq!(resp.status, 200, "{}", resp.describe());

    // Now drain stderr: the process stops cleanly and nothing queued was lost.
    let rest = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    child.signal(libc::SIGTERM);
    let status = child.wait();
    let rest = rest.join().expect("stderr reader");
    let output = format!("{head}{rest}");
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(
        rest.len() > PIPE_BYTES as usize,
        "the test must have filled the pipe ({} bytes written after listening)",
        rest.len()
    );
    let logged = output.matches("handshake failed").count();
    assert_eq!(
        logged, BAD_HANDSHAKES,
        "every queued line written\n{output}"
    );
    assert!(
        output.trim_end().ends_with("ringgate: stopped"),
        "the last line is written at exit\n{output}"
    );
}
