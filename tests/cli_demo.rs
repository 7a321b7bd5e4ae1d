//! First use with the real binary: `--help` and `--version` say what a newcomer needs,
//! `ringgate demo --print-config` prints a configuration that works as written (run next
//! to `ringgate origin`), leaving no temporary folder behind, and `ringgate demo` answers
//! curl over HTTP/2 and a Python `websockets` client on its echo WebSocket (`/ws`).

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::child::ChildGuard;
use common::client::{Client, TlsOptions, req};
use common::proxy::{ProxyProcess, binary, listening_addr, run_cli};
use common::python::WS_CLIENT;
use common::websocket::python;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[test]
fn help_gives_the_config_a_description_and_default_and_names_the_env_var_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["run", "check", "reload"] {
        let out = run_cli(&[sub, "--help"], dir.path());
        assert!(out.status.success(), "{}", out.text);
        let line = out
            .text
            .lines()
            .find(|l| l.contains("--config"))
            .unwrap_or_else(|| panic!("no --config in:\n{}", out.text));
        assert!(line.contains("Configuration file"), "{line}");
        assert!(
            line.contains("[default: /etc/ringgate/ringgate.toml]"),
            "{line}"
        );
    }
    let out = run_cli(&["--help"], dir.path());
    assert_eq!(
        out.text.matches("RINGGATE_LOG").count(),
        1,
        "the env var once:\n{}",
        out.text
    );
}

#[test]
fn version_names_commit_rustls_and_kernel_tls_support() {
    let dir = tempfile::tempdir().expect("temp dir");
    for flag in ["--version", "-V"] {
        let out = run_cli(&[flag], dir.path());
        assert!(out.status.success(), "{}", out.text);
        let t = &out.text;
        assert!(
            t.starts_with(&format!("ringgate {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{t}"
        );
        assert!(t.contains("rustls 0.23."), "{t}");
        assert!(
            t.contains("kernel TLS yes") || t.contains("kernel TLS no"),
            "{t}"
        );
    }
}

/// `ringgate origin --listen 127.0.0.1:0`, and the address it printed.
fn start_origin() -> (ChildGuard, SocketAddr) {
    let mut child = ChildGuard::spawn(
        Command::new(binary())
            .args(["origin", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "ringgate (cargo build)",
    );
    let stderr = child.take_stderr().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = listening_addr(&line) {
                let _ = tx.send(a);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("ringgate origin printed its address");
    (child, addr)
}

fn demo_print_config(cwd: &Path, tmp: &Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(["demo", "--print-config"])
        .args(args)
        .current_dir(cwd)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .output()
        .expect("run ringgate demo --print-config");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn printed_demo_config_runs_as_written_and_leaves_no_temporary_folder() {
    let work = tempfile::tempdir().expect("temp dir");
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    let (_origin, upstream) = start_origin();

    let text = demo_print_config(
        work.path(),
        &tmp,
        &[
            "--upstream",
            &upstream.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ],
    );
    assert_eq!(
        entries(&tmp),
        Vec::<String>::new(),
        "nothing left in TMPDIR"
    );
    assert!(
        text.contains(&format!("ringgate origin --listen {upstream}")),
        "{text}"
    );
    // The certificate is kept in the current folder (no --cert-dir) and named by path.
    let cert = work
        .path()
        .canonicalize()
        .expect("path")
        .join("demo-cert.pem");
    assert!(cert.is_file(), "{text}");
    assert!(text.contains(&cert.display().to_string()), "{text}");

    let config = work.path().join("ringgate.toml");
    std::fs::write(&config, &text).expect("write config");
    let proxy = ProxyProcess::spawn(&config, 1);
    assert!(proxy.output().contains("(1 worker)"), "{}", proxy.output());
    let root = CertificateDer::from_pem_file(&cert).expect("read demo certificate");
    let mut client =
        Client::tls(proxy.addrs()[0], &TlsOptions::new(root, "localhost")).expect("TLS connect");
    let resp = client.roundtrip(&req::get("localhost", "/bytes/10"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.body.len(), 10);
}

#[test]
fn demo_admin_address_and_certificate_folder_can_be_chosen() {
    let work = tempfile::tempdir().expect("temp dir");
    let tmp = work.path().join("tmp");
    let certs = work.path().join("certs");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    let text = demo_print_config(
        work.path(),
        &tmp,
        &["--admin", "127.0.0.1:19901", "--cert-dir", "certs"],
    );
    assert!(
        text.contains("[admin]\naddr = \"127.0.0.1:19901\"\n"),
        "{text}"
    );
    assert!(certs.join("demo-cert.pem").is_file());
    assert!(certs.join("demo-key.pem").is_file());
    assert_eq!(entries(&tmp), Vec::<String>::new());
    assert_eq!(entries(work.path()).len(), 2, "only tmp and certs");
}

/// `ringgate demo` on a free port with one worker, its certificate kept in `dir`;
/// the process and the certificate's path.
fn start_demo(dir: &Path) -> (ProxyProcess, std::path::PathBuf) {
    let args = [
        OsStr::new("demo"),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--workers"),
        OsStr::new("1"),
        OsStr::new("--cert-dir"),
        dir.as_os_str(),
    ];
    let demo = ProxyProcess::spawn_args(&args, 1);
    (demo, dir.join("demo-cert.pem"))
}

#[test]
fn the_demo_answers_curl_over_http2() {
    let work = tempfile::tempdir().expect("temp dir");
    let (demo, cert) = start_demo(work.path());
    let port = demo.addrs()[0].port();
    assert!(
        demo.wait_for_output("  curl --http2 ", 1, Duration::from_secs(30)),
        "the help shows HTTP/2:\n{}",
        demo.output()
    );
    for (path, len) in [("/", 38usize), ("/bytes/300000", 300_000)] {
        let body = work.path().join("body");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "--max-time",
                "60",
                "-w",
                "%{http_version}",
            ])
            .arg("--cacert")
            .arg(&cert)
            .arg("--resolve")
            .arg(format!("localhost:{port}:127.0.0.1"))
            .arg("-o")
            .arg(&body)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "2",
            "{path} over HTTP/2: {out:?}"
        );
        let got = std::fs::read(&body).expect("curl wrote the body");
        assert_eq!(got.len(), len, "{path}");
    }
}

#[test]
fn the_demo_echo_websocket_answers_a_python_client_over_wss() {
    let work = tempfile::tempdir().expect("temp dir");
    let (demo, cert) = start_demo(work.path());
    let port = demo.addrs()[0].port();
    assert!(
        demo.wait_for_output(
            &format!("wss://localhost:{port}/ws"),
            1,
            Duration::from_secs(30)
        ),
        "the help shows the WebSocket path:\n{}",
        demo.output()
    );
    let ca = cert.to_string_lossy().into_owned();
    let uri = format!("wss://127.0.0.1:{port}/ws");
    // Text, binary, fragmented, a 1 MiB message and a ping, then a clean close whose
    // code and reason come back.
    let out = python(
        WS_CLIENT,
        &["echo", &uri],
        &[("CA", &ca), ("HOST", "localhost"), ("BIG", "1048576")],
    );
    assert_eq!(out, "echo ok, closed 4000 client done");
    // One byte over the 16 MiB message cap: closed with 1009, the close frame read by
    // the client (not lost to a reset).
    let over = ((16 << 20) + 1).to_string();
    let out = python(
        WS_CLIENT,
        &["too-big", &uri],
        &[("CA", &ca), ("HOST", "localhost"), ("BIG", &over)],
    );
    assert_eq!(out, "closed 1009");
}

/// The built-in origin's `/ws`, over a raw socket: a frame head over the message cap is
/// answered with close 1009 at once, and that close frame reaches a client still
/// sending the frame's payload (before the reset its unread bytes cause).
#[test]
fn the_origin_closes_an_oversized_message_with_1009_that_the_client_reads() {
    use std::io::{Read, Write};
    let origin = ringgate::demo::start_backend("127.0.0.1:0".parse().expect("an address"))
        .expect("start the built-in origin");
    let mut tcp = std::net::TcpStream::connect(origin).expect("connect to the origin");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("send the handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("read the 101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    // A binary frame of 16 MiB + 1, masked; 4 MiB of its payload follow its head.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&frame).expect("send the frame head");
    let payload = vec![0u8; 64 * 1024];
    for _ in 0..64 {
        if tcp.write_all(&payload).is_err() {
            break;
        }
    }
    let mut close = [0u8; 4];
    tcp.read_exact(&mut close)
        .expect("the close frame arrives, not a reset");
    assert_eq!(close, [0x88, 0x02, 0x03, 0xF1], "close 1009");
}
