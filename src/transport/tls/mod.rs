//! ② TLS termination setup: one rustls `ServerConfig` per listener, shared by all workers.
//!
//! Built for every configuration generation from checked [`TlsSettings`]: TLS 1.2 and
//! 1.3 only, AEAD suites only (the aws-lc-rs provider offers nothing else), the
//! key-exchange groups `kx_groups` allows (default: the provider's, X25519MLKEM768 among
//! them; the client's order picks), ALPN
//! `http/1.1`, certificates chosen by SNI ([`SniResolver`]), resumption by tickets and by
//! a server-side session cache. Client certificates ([`client_auth`]): a certificate
//! entry with its own `client_auth` gets its own `ServerConfig`, chosen by the SNI of the
//! ClientHello before rustls reads it ([`ServerConfigs`]). The ticketer and the cache ([`TlsShared`]) are made once
//! per listener and put into every generation's `ServerConfig`, so any worker resumes any
//! session, before and after a reload. With `session_ticket_keys`, the ticketer is instead
//! made from the fleet's key files for each generation ([`tickets::FileTicketer`]), so a
//! changed key file takes effect with the generation it reloads; tickets stay valid across
//! reloads and hosts for as long as their key is listed. This module never touches a
//! socket; the handshake itself runs in [`crate::transport`] ([`crate::transport::accept`]).

pub mod client_auth;
pub mod hello;
mod identity;
mod info;
mod sni;
pub mod tickets;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerSessionMemoryCache;

use rustls::server::danger::ClientCertVerifier;

use crate::config::{TlsMinVersion, TlsSettings, VerifyClient};

pub use client_auth::{ClientVerifier, Rejection, client_verifier};
pub use identity::{ClientIdentity, uri_sans};
pub use info::{ClientVerify, TlsInfo};
pub use sni::{SniMap, SniResolver};

/// Why a TLS listener could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The crypto provider refused the protocol versions.
    Versions(rustls::Error),
    /// The ticket encryption key could not be generated.
    Ticketer(rustls::Error),
    /// A `session_ticket_keys` file's key was refused by the crypto library.
    TicketKey(tickets::KeyRefused),
    /// The client-certificate verifier could not be built.
    ClientAuth(client_auth::VerifierError),
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::Versions(e) => write!(f, "TLS protocol versions: {e}"),
            TlsSetupError::Ticketer(e) => write!(f, "session ticket key: {e}"),
            TlsSetupError::TicketKey(e) => write!(f, "{e}"),
            TlsSetupError::ClientAuth(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// The resumption state of one listener, made once at start and shared by every
/// generation's `ServerConfig` (so a reload does not forget sessions).
#[derive(Clone)]
pub struct TlsShared {
    /// Session-ticket encryption keys (rotated by rustls every 6 hours), used unless the
    /// listener names `session_ticket_keys`.
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

/// A listener's rustls configurations: the listener's, and one per certificate entry
/// with its own `client_auth`, chosen by SNI like the certificate.
#[derive(Debug, Clone)]
pub struct ServerConfigs {
    /// Per SNI name: the configuration and the verify mode it enforces. `None` when
    /// every entry uses the listener's settings (then nothing waits for the SNI).
    by_name: Option<Arc<SniMap<Selected>>>,
    listener: Selected,
}

/// One of a listener's configurations and the client-certificate mode it enforces.
#[derive(Debug, Clone)]
pub struct Selected {
    pub config: Arc<ServerConfig>,
    pub verify: VerifyClient,
    /// The verifier inside `config`, for the checks after the handshake (`optional`
    /// certificates, resumed sessions); `None` when no certificate is asked for.
    pub verifier: Option<Arc<ClientVerifier>>,
}

impl ServerConfigs {
    /// Every configuration of a listener, around its shared resumption state.
    pub fn new(settings: &TlsSettings, shared: &TlsShared) -> Result<Self, TlsSetupError> {
        let build = |auth: &crate::config::ClientAuth| -> Result<Selected, TlsSetupError> {
            let verifier = client_verifier(auth).map_err(TlsSetupError::ClientAuth)?;
            let in_rustls: Arc<dyn ClientCertVerifier> = match &verifier {
                Some(v) => v.clone(),
                None => rustls::server::WebPkiClientVerifier::no_client_auth(),
            };
            Ok(Selected {
                config: server_config(settings, shared, in_rustls)?,
                verify: if verifier.is_some() {
                    auth.verify
                } else {
                    VerifyClient::Off
                },
                verifier,
            })
        };
        let listener = build(&settings.client_auth)?;
        let mut own = Vec::new();
        for c in &settings.certificates {
            own.push(c.client_auth.as_ref().map(build).transpose()?);
        }
        let by_name = own.iter().any(Option::is_some).then(|| {
            Arc::new(SniMap::new(settings, |i, _| {
                own[i].clone().unwrap_or_else(|| listener.clone())
            }))
        });
        Ok(ServerConfigs { by_name, listener })
    }

    /// One configuration for every connection, enforcing nothing beyond what its own
    /// verifier does (tests and tools that build a `ServerConfig` themselves).
    pub fn single(config: Arc<ServerConfig>) -> Self {
        ServerConfigs {
            by_name: None,
            listener: Selected {
                config,
                verify: VerifyClient::Off,
                verifier: None,
            },
        }
    }

    /// The configuration is chosen by SNI: the handshake must read the whole ClientHello
    /// before rustls sees it.
    pub fn by_sni(&self) -> bool {
        self.by_name.is_some()
    }

    /// The configuration for the ClientHello's SNI `name` (`None`: no SNI).
    pub fn select(&self, name: Option<&str>) -> &Selected {
        match &self.by_name {
            Some(map) => map.lookup(name),
            None => &self.listener,
        }
    }
}

/// Builds one rustls configuration of a listener around its shared resumption state,
/// verifying client certificates with `verifier`.
pub fn server_config(
    settings: &TlsSettings,
    shared: &TlsShared,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if !settings.cipher_suites.is_empty() {
        // The configured order is the server's preference.
        provider.cipher_suites = settings.cipher_suites.clone();
    }
    if !settings.kx_groups.is_empty() {
        // Only these groups; among them rustls takes the client's first (its preference).
        provider.kx_groups = settings.kx_groups.clone();
    }
    let provider = Arc::new(provider);
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(TlsSetupError::Versions)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SniResolver::new(settings)));
    // The listener's `alpn` in its order (default h2, then HTTP/1.1); HTTP/1.0-only
    // clients are served whenever HTTP/1.1 is. A client offering only protocols we lack
    // gets the no_application_protocol alert (RFC 7301).
    config.alpn_protocols = settings.alpn.clone();
    if settings.alpn.iter().any(|p| p == b"http/1.1")
        && !settings.alpn.iter().any(|p| p == b"http/1.0")
    {
        config.alpn_protocols.push(b"http/1.0".to_vec());
    }
    config.session_storage = shared.cache.clone();
    if settings.session_tickets {
        config.ticketer = ticketer(settings, shared)?;
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

/// The listener's ticketer: one over the fleet's `session_ticket_keys` files (made anew
/// for each generation, so a changed file replaces the keys), else the random key made
/// once per listener (kept across generations, so clients resume across reloads).
fn ticketer(
    settings: &TlsSettings,
    shared: &TlsShared,
) -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsSetupError> {
    match tickets::FileTicketer::new(&settings.session_ticket_keys) {
        Ok(Some(from_files)) => Ok(Arc::new(from_files)),
        Ok(None) => Ok(shared.ticketer.clone()),
        Err(e) => Err(TlsSetupError::TicketKey(e)),
    }
}
