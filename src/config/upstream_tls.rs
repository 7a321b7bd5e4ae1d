//! TLS to an upstream's servers (`[upstream.NAME.tls]`): the rustls client
//! configuration, built at load time from the trust anchors (`ca`, or the system's) so
//! that a worker only clones an `Arc` per connection; ALPN `h2` (the only upstream wire
//! that speaks TLS so far: `protocol = "h2"`).
//!
//! Errors name the file and the field: an unreadable or empty `ca`, a certificate that
//! is no usable trust anchor, a `server_name` that is neither a DNS name nor an IP
//! address, no system trust anchors at all.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;

/// TLS settings of one upstream, ready for connections.
#[derive(Debug)]
pub struct UpstreamTls {
    /// rustls' client configuration: the trust anchors, ALPN `h2`.
    pub client: Arc<rustls::ClientConfig>,
    /// Where the trust anchors came from (`ca`'s path, or the system's), for messages.
    pub anchors: String,
}

/// The trust anchors in a PEM bundle (`ca`), each checked usable: read as the client
/// CAs are ([`super::client_auth::load_ca`], the same errors).
pub(crate) fn roots_from_file(path: &Path) -> Result<rustls::RootCertStore, String> {
    let ca = super::client_auth::load_ca(path)?;
    let mut roots = rustls::RootCertStore::empty();
    // Every certificate was added to a store once already, in load_ca.
    roots.add_parsable_certificates(ca.certs);
    Ok(roots)
}

/// The system's trust anchors (rustls-native-certs: the OpenSSL directories, or
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`), read once at load.
pub(crate) fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no `ca` given and no system trust anchors found{why}: name a PEM file of the CAs the servers' certificates chain to"
        ));
    }
    Ok(roots)
}

/// A `server_name` as rustls takes it: a DNS name or an IP address.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is neither a DNS name nor an IP address"))
}

/// The client configuration for `roots`: TLS 1.2 and 1.3 with the aws-lc-rs provider,
/// ALPN `h2`.
pub(crate) fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(c)
}
