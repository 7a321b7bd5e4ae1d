//! TLS termination setup: one rustls `ServerConfig` per listener, shared by all workers.
//!
//! Built for every configuration generation from checked [`TlsSettings`]: TLS 1.2 and
//! 1.3 only, AEAD suites only (the aws-lc-rs provider offers nothing else), ALPN
//! `http/1.1`, certificates chosen by SNI ([`SniResolver`]), resumption by tickets and by
//! a server-side session cache. The ticketer and the cache ([`TlsShared`]) are made once
//! per listener and put into every generation's `ServerConfig`, so any worker resumes any
//! session, before and after a reload. This module never touches a socket; the handshake
//! itself runs in [`crate::transport`] ([`crate::transport::accept`]).

pub mod hello;
mod identity;
mod info;
mod sni;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerSessionMemoryCache;

use crate::config::{TlsMinVersion, TlsSettings};

pub use identity::{ClientIdentity, uri_sans};
pub use info::TlsInfo;
pub use sni::SniResolver;

/// Why a TLS listener could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The crypto provider refused the protocol versions.
    Versions(rustls::Error),
    /// The ticket encryption key could not be generated.
    Ticketer(rustls::Error),
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::Versions(e) => write!(f, "TLS protocol versions: {e}"),
            TlsSetupError::Ticketer(e) => write!(f, "session ticket key: {e}"),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// The resumption state of one listener, made once at start and shared by every
/// generation's `ServerConfig` (so a reload does not forget sessions).
#[derive(Clone)]
pub struct TlsShared {
    /// Session-ticket encryption keys (rotated by rustls every 6 hours).
    pub ticketer: Arc<dyn rustls::server::ProducesTickets>,
    /// TLS 1.2 session IDs (and TLS 1.3 stateful resumption when tickets are off).
    pub cache: Arc<dyn rustls::server::StoresServerSessions>,
    /// The cache size it was made with (changing it needs a restart).
    pub cache_entries: usize,
}

impl std::fmt::Debug for TlsShared {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsShared")
            .field("cache_entries", &self.cache_entries)
            .finish_non_exhaustive()
    }
}

impl TlsShared {
    /// A fresh ticket key and an empty session cache of `settings.session_cache_entries`.
    pub fn new(settings: &TlsSettings) -> Result<TlsShared, TlsSetupError> {
        let cache: Arc<dyn rustls::server::StoresServerSessions> =
            if settings.session_cache_entries > 0 {
                ServerSessionMemoryCache::new(settings.session_cache_entries)
            } else {
                Arc::new(rustls::server::NoServerSessionStorage {})
            };
        Ok(TlsShared {
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(TlsSetupError::Ticketer)?,
            cache,
            cache_entries: settings.session_cache_entries,
        })
    }
}

/// Builds the listener's rustls configuration around its shared resumption state.
pub fn server_config(
    settings: &TlsSettings,
    shared: &TlsShared,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !settings.cipher_suites.is_empty() {
        // The configured order is the server's preference.
        provider.cipher_suites = settings.cipher_suites.clone();
    }
    let provider = Arc::new(provider);
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(TlsSetupError::Versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(settings)));
    // HTTP/1.1 first; HTTP/1.0-only clients are served too. A client offering only
    // protocols we lack (h2 alone) gets the no_application_protocol alert (RFC 7301).
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    config.session_storage = shared.cache.clone();
    if settings.session_tickets {
        config.ticketer = shared.ticketer.clone();
        // Two tickets, like most servers: one for a parallel connection.
        config.send_tls13_tickets = 2;
    } else {
        config.send_tls13_tickets = 0;
    }
    config.ignore_client_order = !settings.cipher_suites.is_empty();
    // Kernel TLS needs the traffic secrets after the handshake.
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}
