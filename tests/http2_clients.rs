//! HTTP/2 bodies with clients none of us wrote: the Python `h2` package
//! (`tests/h2/bodies.py`) and curl, over TLS (ALPN h2) and h2c (prior knowledge): GET and
//! POST bodies from 0 B to 16 MiB on one connection, hash-checked (the Rust h2 client's
//! run of the same sizes is tests/http2.rs).
//!
//! Needs python3 with `h2` and curl with HTTP/2 (`./test.sh` installs them); a missing
//! one fails the test with that hint.

mod common;

use std::process::Command;

use common::backend::{Backend, pattern};
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy};
use common::python::{run, test_file};
use common::{HOST, sha256_hex};

const SIZES: [usize; 7] = [0, 1, 16_383, 16_384, 65_537, 1 << 20, 16 << 20];

/// A proxy with a TLS listener (first) and an h2c one in front of `backend`.
fn proxy(pki: &TestPki, backend: &Backend) -> Proxy {
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let text = ConfigBuilder::new()
        .tls_listener(&[&cert])
        .h2c_listener()
        .route(None, "/", false, "backend")
        .upstream("backend", &[backend.addr], &[])
        .build();
    Proxy::start(&text, pki.dir())
}

#[test]
fn python_h2_bodies_from_0_to_16_mib_over_tls_and_h2c() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let p = proxy(&pki, &backend);
    let ca = pki.root_pem_path().to_string_lossy().into_owned();
    let script = test_file("h2/bodies.py");
    for (addr, env) in [
        (p.addrs()[0], vec![("CA", ca.as_str()), ("HOST", HOST)]),
        (p.addrs()[1], vec![]),
    ] {
        let mut args = vec![
            script.to_string_lossy().into_owned(),
            "127.0.0.1".to_string(),
            addr.port().to_string(),
        ];
        args.extend(SIZES.iter().map(|n| n.to_string()));
        let out = run(&args, &env, "pip install h2 (./test.sh does)");
        let want: Vec<String> = SIZES
            .iter()
            .flat_map(|&n| {
                [
                    format!("GET {n} {}", sha256_hex(&pattern(n as u64, n))),
                    format!("POST {n} ok"),
                ]
            })
            .collect();
        assert_eq!(out.lines().collect::<Vec<_>>(), want, "{addr}");
    }
}

#[test]
fn curl_over_http2_gets_and_posts_16_mib_intact() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let p = proxy(&pki, &backend);
    let dir = tempfile::tempdir().expect("tempdir");
    let upload = dir.path().join("upload.bin");
    let sent = pattern(99, 16 << 20);
    std::fs::write(&upload, &sent).expect("write upload");
    let (tls, h2c) = (p.addrs()[0], p.addrs()[1]);
    let tls_args = |path: &str| -> Vec<String> {
        vec![
            "--http2".into(),
            "--cacert".into(),
            pki.root_pem_path().to_string_lossy().into_owned(),
            "--resolve".into(),
            format!("{HOST}:{}:127.0.0.1", tls.port()),
            format!("https://{HOST}:{}{path}", tls.port()),
        ]
    };
    let h2c_args = |path: &str| -> Vec<String> {
        vec![
            "--http2-prior-knowledge".into(),
            format!("http://127.0.0.1:{}{path}", h2c.port()),
        ]
    };
    for (name, args) in [
        ("tls", &tls_args as &dyn Fn(&str) -> Vec<String>),
        ("h2c", &h2c_args),
    ] {
        let n = 16usize << 20;
        let got = curl(&args(&format!("/bytes/{n}")), &[]);
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(&pattern(n as u64, n)),
            "{name} GET"
        );
        let data = format!("@{}", upload.display());
        let echoed = curl(&args("/echo"), &["--data-binary", &data]);
        assert_eq!(sha256_hex(&echoed), sha256_hex(&sent), "{name} POST");
    }
}

/// curl's body (`-sS`, HTTP/2 required by `-w` check); panics with its stderr.
fn curl(args: &[String], extra: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(extra)
        .args(args)
        .output()
        .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let at = body
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("curl's -w line");
    let tail = String::from_utf8_lossy(&body[at + 1..]).into_owned();
    assert_eq!(tail, "2 200", "curl {args:?}: HTTP version and status");
    body.truncate(at);
    body
}
