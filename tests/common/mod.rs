//! Shared harness for the integration tests: a test PKI ([`pki`]), a strict blocking
//! HTTP/1.1 client over TLS or TCP ([`client`]), in-process origin servers ([`backend`]),
//! and ways to start the proxy in-process or as the real binary ([`proxy`]), a raw TLS
//! record layer ([`records`]) and the record sequences tested with it ([`record_cases`]);
//! every child process a test starts goes through a kill-on-drop guard ([`child`]); the
//! Python peers (grpcio service and client, scripts run to their end) are in [`python`];
//! a file under `examples/` is loaded as written by [`example`].
//!
//! Everything binds `127.0.0.1:0`; readiness is waited on, never slept for; every socket
//! read has a timeout so a proxy bug fails a test instead of hanging the suite.

#![allow(
    dead_code,
    reason = "each test binary includes this module and uses a different part of it"
)]

pub mod backend;
pub mod child;
pub mod client;
pub mod example;
pub mod pki;
pub mod proxy;
pub mod python;
pub mod record_cases;
pub mod records;
pub mod scripted;
pub mod websocket;

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use backend::Backend;
use client::{Client, TlsOptions};
use pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use proxy::{ConfigBuilder, Proxy};

/// The host name the usual fixture's certificate is for.
pub const HOST: &str = "app.test";

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// PKI + one backend + the proxy with a TLS listener for [`HOST`] routing `/` to it.
pub struct Fixture {
    pub proxy: Proxy,
    pub backend: Backend,
    pub cert: CertFiles,
    pub pki: TestPki,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with(|c| c)
    }

    /// The usual fixture with extra settings applied to its config.
    pub fn with(tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Fixture {
        Fixture::with_upstream(&[], tweak)
    }

    /// Like [`Fixture::with`], with extra `[upstream.backend]` settings (TOML values).
    pub fn with_upstream(
        upstream: &[(&str, &str)],
        tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Fixture {
        let pki = TestPki::new();
        let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
        let backend = Backend::start();
        let config = tweak(
            ConfigBuilder::new()
                .tls_listener(&[&cert])
                .route(None, "/", false, "backend")
                .upstream("backend", &[backend.addr], upstream),
        );
        let proxy = Proxy::start(&config.build(), pki.dir());
        Fixture {
            proxy,
            backend,
            cert,
            pki,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions::new(self.pki.root_der(), HOST)
    }

    /// A TLS client connected to the proxy for [`HOST`].
    pub fn client(&self) -> Client {
        Client::tls(self.addr(), &self.tls_options())
            .unwrap_or_else(|e| panic!("connect to proxy {}: {e}", self.addr()))
    }
}

/// `ringgate_h2_protocol_errors_total{reason}` scraped from the admin listener's
/// `/metrics`; panics when the series is missing.
pub fn h2_errors(admin: SocketAddr, reason: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).expect("connect to admin");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let key = format!("ringgate_h2_protocol_errors_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {key} in /metrics")) as u64
}
