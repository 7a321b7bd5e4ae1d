//! A reload that reorders the listeners in the file: each running listener keeps its own
//! per-request settings — security headers, client identity headers, the HTTPS redirect
//! — found by its address like its TLS and accept policies, never by its position in the
//! new file.

mod common;

use std::net::SocketAddr;

use common::HOST;
use common::backend::Backend;
use common::client::{Client, Response, TlsOptions, req};
use common::pki::{CertFiles, KeyEncoding, KeyType, TestPki};
use common::proxy::{Proxy, toml_str};

/// A TLS listener on 127.0.0.2 that forwards the client's XFCC unchanged and says
/// `X-Frame-Options: DENY`.
fn tls_listener(cert: &CertFiles) -> String {
    format!(
        "[[listener]]\naddr = \"127.0.0.2:0\"\n\
         [listener.security_headers]\nframe_options = \"DENY\"\n\
         [listener.tls]\n\
         client_identity_headers = {{ forward_client_cert = \"always_forward_only\" }}\n\
         [[listener.tls.certificates]]\ncert = {}\nkey = {}\n",
        toml_str(&cert.cert.to_string_lossy()),
        toml_str(&cert.key.to_string_lossy())
    )
}

/// A plain listener on 127.0.0.3 that says `X-Frame-Options: SAMEORIGIN`.
const PLAIN: &str = "[[listener]]\naddr = \"127.0.0.3:0\"\n\
    [listener.security_headers]\nframe_options = \"SAMEORIGIN\"\n";

/// A plain listener on 127.0.0.4 that redirects to HTTPS.
const REDIRECT: &str = "[[listener]]\naddr = \"127.0.0.4:0\"\nredirect_https = true\n";

fn config(listeners: &[&str], backend: SocketAddr) -> String {
    let mut text = String::from("[server]\nworkers = 2\npin_workers = false\n\n");
    for l in listeners {
        text += l;
        text += "\n";
    }
    text += &format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n\n\
         [upstream.backend]\nservers = [{}]\n",
        toml_str(&backend.to_string())
    );
    text
}

/// What each listener does: the TLS one, the plain one, the redirecting one.
fn check_each_listener(proxy: &Proxy, pki: &TestPki, backend: &Backend, when: &str) {
    let addrs = proxy.addrs();
    let opts = TlsOptions::new(pki.root_der(), HOST);
    let mut c = Client::tls(addrs[0], &opts).expect("TLS listener");
    let r: Response = c.roundtrip(
        format!(
            "GET /headers HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Client-Cert: By=claimed\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{when}: TLS listener\n{}", r.describe());
    assert_eq!(
        r.header("x-frame-options"),
        Some("DENY"),
        "{when}: TLS listener\n{}",
        r.describe()
    );
    let seen = backend
        .last_request()
        .expect("the TLS request went upstream");
    assert_eq!(
        seen.header("x-forwarded-client-cert"),
        Some("By=claimed"),
        "{when}: the TLS listener's always_forward_only"
    );
    let r = Client::plain(addrs[1])
        .expect("plain listener")
        .roundtrip(&req::get(HOST, "/bytes/1"));
    assert_eq!(r.status, 200, "{when}: plain listener\n{}", r.describe());
    assert_eq!(
        r.header("x-frame-options"),
        Some("SAMEORIGIN"),
        "{when}: plain listener\n{}",
        r.describe()
    );
    let r = Client::plain(addrs[2])
        .expect("redirect listener")
        .roundtrip(&req::get(HOST, "/p"));
    assert_eq!(r.status, 308, "{when}: redirect listener\n{}", r.describe());
    assert_eq!(r.header("location"), Some("https://app.test/p"), "{when}");
}

#[test]
fn a_reload_that_reorders_listeners_keeps_each_listeners_own_settings() {
    let pki = TestPki::new();
    let cert = pki.leaf(&[HOST], KeyType::EcdsaP256, KeyEncoding::Pkcs8);
    let backend = Backend::start();
    let tls = tls_listener(&cert);
    let proxy = Proxy::start(&config(&[&tls, PLAIN, REDIRECT], backend.addr), pki.dir());
    check_each_listener(&proxy, &pki, &backend, "at start");
    // The same listeners, the other way round (and the running ones keep their sockets).
    let reversed = config(&[REDIRECT, PLAIN, &tls], backend.addr);
    let next = ringgate::config::from_toml_str(&reversed, "test.toml", pki.dir())
        .unwrap_or_else(|e| panic!("{e}\n{reversed}"));
    let r = proxy.live().reload_with(next, "test").expect("reload");
    assert_eq!(r.generation, 2);
    check_each_listener(&proxy, &pki, &backend, "after the reordering reload");
}
