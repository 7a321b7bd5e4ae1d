//! gRPC with a real gRPC client (issue 23): Python grpcio (`tests/grpc/client.py`)
//! calling the grpcio service of `tests/grpc/echo_server.py` through ringgate, over h2c
//! (an `h2c = true` listener) and over TLS (ALPN h2, the test CA as the channel's root,
//! the certificate's name as the target name): every call kind with hash-checked
//! payloads, an error status with its message and custom trailing metadata, and the
//! proxy's own answers as the codes a client acts on — upstream down UNAVAILABLE, a
//! client deadline DEADLINE_EXCEEDED, a route allow-list PERMISSION_DENIED, a rate limit
//! RESOURCE_EXHAUSTED — and the service itself behind TLS (`[upstream.NAME.tls]`,
//! grpcio's own TLS server, ALPN h2).
//!
//! Needs python3 and grpcio (`./test.sh` installs them); a missing one fails the test.

mod common;

use std::net::SocketAddr;

use common::backend::refusing_addr;
use common::pki::{KeyEncoding, KeyType, TestPki};
use common::proxy::{ConfigBuilder, Proxy, toml_str};
use common::python::{GrpcioService, grpc_client};

/// The names the proxy's certificate is for; each picks a route below.
const NAMES: [&str; 4] = ["app.test", "denied.test", "limited.test", "down.test"];

/// The grpcio service behind ringgate on a TLS and an h2c listener.
struct Grpc {
    proxy: Proxy,
    pki: TestPki,
    _service: GrpcioService,
}

impl Grpc {
    fn start() -> Grpc {
        Grpc::start_with(false)
    }

    /// `upstream_tls`: the service is reached over TLS (`[upstream.grpc.tls]`, the test
    /// CA), not h2c.
    fn start_with(upstream_tls: bool) -> Grpc {
        let pki = TestPki::new();
        let service = if upstream_tls {
            let c = pki.leaf(&["127.0.0.1"], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
            GrpcioService::start_tls(&c.cert, &c.key)
        } else {
            GrpcioService::start()
        };
        let cert = pki.leaf(&NAMES, KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        // One worker: the rate limit's admitted and refused calls meet on it.
        let mut text = ConfigBuilder::new()
            .server("workers", "1")
            .tls_listener(&[&cert])
            .h2c_listener()
            .build();
        text += &format!(
            "\n[rate_limit.one]\nkey = \"client_ip\"\nrate = \"1r/m\"\n\
             \n[[route]]\npath_prefix = \"/\"\nupstream = \"grpc\"\n\
             \n[[route]]\nhost = \"denied.test\"\npath_prefix = \"/\"\nupstream = \"grpc\"\n\
             allow = [\"192.0.2.0/24\"]\n\
             \n[[route]]\nhost = \"limited.test\"\npath_prefix = \"/\"\nupstream = \"grpc\"\n\
             rate_limit = [\"one\"]\n\
             \n[[route]]\nhost = \"down.test\"\npath_prefix = \"/\"\nupstream = \"down\"\n\
             \n[upstream.grpc]\nservers = [{}]\nprotocol = \"h2\"\nread_timeout_ms = 30000\n\
             \n[upstream.down]\nservers = [{}]\nprotocol = \"h2\"\n",
            toml_str(&service.addr.to_string()),
            toml_str(&refusing_addr().to_string()),
        );
        if upstream_tls {
            text += &format!(
                "\n[upstream.grpc.tls]\nca = {}\n",
                toml_str(&pki.root_pem_path().to_string_lossy())
            );
        }
        let proxy = Proxy::start(&text, pki.dir());
        Grpc {
            proxy,
            pki,
            _service: service,
        }
    }

    fn tls(&self) -> SocketAddr {
        self.proxy.addrs()[0]
    }

    fn h2c(&self) -> SocketAddr {
        self.proxy.addrs()[1]
    }

    /// Runs `scenario` over TLS (`tls`) or h2c with `host` as :authority.
    fn call(&self, tls: bool, host: &str, scenario: &str) -> String {
        let ca = self.pki.root_pem_path().to_string_lossy().into_owned();
        if tls {
            grpc_client(self.tls(), scenario, &[("CA", &ca), ("HOST", host)])
        } else {
            grpc_client(self.h2c(), scenario, &[("HOST", host)])
        }
    }
}

#[test]
fn every_call_kind_is_hash_checked_over_h2c_and_tls() {
    let g = Grpc::start();
    for tls in [false, true] {
        assert_eq!(g.call(tls, "app.test", "echo"), "echo ok", "tls={tls}");
    }
}

/// The service behind TLS (`[upstream.grpc.tls]`): the same calls and statuses, from
/// clients over h2c and over TLS.
#[test]
fn a_grpcio_service_over_upstream_tls_answers_every_call_and_status() {
    let g = Grpc::start_with(true);
    for tls in [false, true] {
        assert_eq!(g.call(tls, "app.test", "echo"), "echo ok", "tls={tls}");
        assert_eq!(
            g.call(tls, "app.test", "fail"),
            "FAILED_PRECONDITION 'failed' 'on purpose' 090102",
            "tls={tls}"
        );
    }
}

#[test]
fn an_error_status_keeps_its_message_and_custom_trailing_metadata() {
    let g = Grpc::start();
    for tls in [false, true] {
        assert_eq!(
            g.call(tls, "app.test", "fail"),
            "FAILED_PRECONDITION 'failed' 'on purpose' 090102",
            "tls={tls}"
        );
    }
}

#[test]
fn upstream_down_is_unavailable() {
    let g = Grpc::start();
    for tls in [false, true] {
        assert_eq!(g.call(tls, "down.test", "code"), "UNAVAILABLE", "tls={tls}");
    }
}

#[test]
fn a_client_deadline_on_a_stalled_method_is_deadline_exceeded() {
    let g = Grpc::start();
    for tls in [false, true] {
        assert_eq!(
            g.call(tls, "app.test", "deadline"),
            "DEADLINE_EXCEEDED then after",
            "tls={tls}"
        );
    }
}

#[test]
fn policy_rejections_are_the_grpc_codes_a_client_acts_on() {
    let g = Grpc::start();
    // The route's allow-list leaves loopback out.
    for tls in [false, true] {
        assert_eq!(
            g.call(tls, "denied.test", "code"),
            "PERMISSION_DENIED",
            "tls={tls}"
        );
    }
    // 1 request a minute per client: the first is served, the next refused.
    assert_eq!(g.call(false, "limited.test", "code"), "OK");
    for tls in [false, true] {
        assert_eq!(
            g.call(tls, "limited.test", "code"),
            "RESOURCE_EXHAUSTED",
            "tls={tls}"
        );
    }
}
