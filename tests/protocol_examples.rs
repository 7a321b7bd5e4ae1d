//! `examples/grpc.toml` and `examples/realtime.toml` as written (`common::example`:
//! only addresses, certificate paths and upstream servers replaced), driven by real
//! clients: the Python grpcio client against the grpcio service over TLS and h2c — every
//! call kind, a deadline, the allow-list and rate-limit routes as gRPC codes — and the
//! Python `websockets` client (Origin checked on the chat route, `wss://` and `ws://`)
//! plus curl over HTTP/2 (ALPN h2 and h2c prior knowledge).
//!
//! Needs python3 with grpcio and websockets, and curl (`./test.sh` installs them); a
//! missing one fails the test with its install hint.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::backend::Backend;
use common::example::as_written;
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::Proxy;
use common::python::{GrpcioService, WS_CLIENT, grpc_client};
use common::websocket::{EchoServer, python};

/// The name both examples serve.
const HOST: &str = "api.example.test";

/// The proxy running an example, the PKI its certificate is from.
struct Running {
    proxy: Proxy,
    pki: TestPki,
}

impl Running {
    fn start(example: &str, servers: &[(&str, SocketAddr)]) -> Running {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let text = as_written(example, &cert, servers);
        let proxy = Proxy::start(&text, pki.dir());
        Running { proxy, pki }
    }

    /// The TLS listener (each example's first).
    fn tls(&self) -> SocketAddr {
        self.proxy.addrs()[0]
    }

    /// The plain listener with `h2c = true` (each example's second).
    fn plain(&self) -> SocketAddr {
        self.proxy.addrs()[1]
    }

    fn ca(&self) -> String {
        self.pki.root_pem_path().to_string_lossy().into_owned()
    }

    /// `tests/grpc/client.py SCENARIO` for [`HOST`] over TLS or h2c, `METHOD` if given.
    fn grpc(&self, tls: bool, scenario: &str, method: Option<&str>) -> String {
        let ca = self.ca();
        let mut env = vec![("HOST", HOST)];
        if let Some(m) = method {
            env.push(("METHOD", m));
        }
        if tls {
            env.push(("CA", &ca));
            grpc_client(self.tls(), scenario, &env)
        } else {
            grpc_client(self.plain(), scenario, &env)
        }
    }

    /// The `websockets` client in `mode` on `path` of [`HOST`], over TLS or plain TCP.
    fn ws(&self, tls: bool, mode: &str, path: &str, origin: Option<&str>) -> String {
        let (scheme, addr) = if tls {
            ("wss", self.tls())
        } else {
            ("ws", self.plain())
        };
        let uri = format!("{scheme}://{HOST}:{}{path}", addr.port());
        let (ca, connect) = (self.ca(), addr.to_string());
        let mut env = vec![
            ("CA", ca.as_str()),
            ("HOST", HOST),
            ("CONNECT", connect.as_str()),
            ("BIG", "1048576"),
        ];
        if let Some(o) = origin {
            env.push(("ORIGIN", o));
        }
        python(WS_CLIENT, &[mode, &uri], &env)
    }

    /// curl over HTTP/2 (ALPN h2 over TLS, prior knowledge over plain TCP): the HTTP
    /// version it reports and the body's length.
    fn curl_http2(&self, tls: bool, path: &str) -> (String, usize) {
        let dir = tempfile::tempdir().expect("temp dir");
        let body = dir.path().join("body");
        let addr = if tls { self.tls() } else { self.plain() };
        let (flag, scheme) = if tls {
            ("--http2", "https")
        } else {
            ("--http2-prior-knowledge", "http")
        };
        let out = Command::new("curl")
            .args(["-sS", flag, "--max-time", "60", "-w", "%{http_version}"])
            .arg("--cacert")
            .arg(self.pki.root_pem_path())
            .arg("--resolve")
            .arg(format!("{HOST}:{}:127.0.0.1", addr.port()))
            .arg("-o")
            .arg(&body)
            .arg(format!("{scheme}://{HOST}:{}{path}", addr.port()))
            .output()
            .expect("curl must be installed: apt-get install curl (./test.sh installs it)");
        assert!(out.status.success(), "curl {path}: {out:?}");
        let len = std::fs::read(&body).map(|b| b.len()).unwrap_or(0);
        (String::from_utf8_lossy(&out.stdout).into_owned(), len)
    }
}

#[test]
fn grpc_example_serves_a_grpcio_client_over_tls_and_h2c() {
    let service = GrpcioService::start();
    let g = Running::start("grpc.toml", &[("grpc_api", service.addr)]);
    for tls in [true, false] {
        assert_eq!(g.grpc(tls, "echo", None), "echo ok", "tls={tls}");
        assert_eq!(
            g.grpc(tls, "fail", None),
            "FAILED_PRECONDITION 'failed' 'on purpose' 090102",
            "tls={tls}"
        );
    }
    assert_eq!(
        g.grpc(true, "deadline", None),
        "DEADLINE_EXCEEDED then after"
    );
}

#[test]
fn grpc_example_policies_answer_with_grpc_codes() {
    let service = GrpcioService::start();
    let g = Running::start("grpc.toml", &[("grpc_api", service.addr)]);
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    for tls in [true, false] {
        assert_eq!(
            g.grpc(tls, "code", Some(reflection)),
            "PERMISSION_DENIED",
            "tls={tls}"
        );
    }
    // One a minute per client plus a burst of 5: six reach the service (which has no
    // such method), the seventh is refused by the proxy.
    let export = "/shop.v1.Reports/Export";
    for i in 0..6 {
        assert_eq!(
            g.grpc(i % 2 == 0, "code", Some(export)),
            "UNIMPLEMENTED",
            "call {i}"
        );
    }
    assert_eq!(g.grpc(true, "code", Some(export)), "RESOURCE_EXHAUSTED");
}

#[test]
fn realtime_example_tunnels_websockets_and_checks_the_chat_origin() {
    let echo = EchoServer::start();
    let web = Backend::named("web");
    let r = Running::start(
        "realtime.toml",
        &[("realtime", echo.addr), ("web", web.addr)],
    );
    let app = Some("https://app.example.test");
    assert_eq!(
        r.ws(true, "echo", "/chat/room-1", app),
        "echo ok, closed 4000 client done"
    );
    assert_eq!(
        r.ws(true, "status", "/chat/room-1", Some("https://evil.example")),
        "status 403"
    );
    assert_eq!(r.ws(true, "status", "/chat/room-1", None), "status 403");
    // The feed takes any client, also on the plain (h2c) listener.
    for tls in [true, false] {
        assert_eq!(
            r.ws(tls, "echo", "/feed/prices", None),
            "echo ok, closed 4000 client done",
            "tls={tls}"
        );
    }
}

#[test]
fn realtime_example_serves_http2_to_curl() {
    let echo = EchoServer::start();
    let web = Backend::named("web");
    let r = Running::start(
        "realtime.toml",
        &[("realtime", echo.addr), ("web", web.addr)],
    );
    for tls in [true, false] {
        assert_eq!(
            r.curl_http2(tls, "/bytes/100000"),
            ("2".to_string(), 100_000),
            "tls={tls}"
        );
    }
    assert!(web.served() >= 2, "the web upstream served them");
}
