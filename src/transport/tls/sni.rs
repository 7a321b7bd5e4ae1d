//! Selection by SNI: exact name, then the closest `*.wildcard`, then the listener's
//! default certificate entry (also used when the client sends no SNI). The same rule
//! picks a certificate ([`SniResolver`]) and a certificate entry's `ServerConfig`
//! (its own client-certificate settings, [`super::ServerConfigs`]).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{LoadedCertificate, TlsSettings};

/// SNI names → one value per certificate entry; immutable after load.
#[derive(Debug)]
pub struct SniMap<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix without `*` (`.example.com`).
    wildcard: HashMap<String, T>,
    default: T,
}

impl<T: Clone> SniMap<T> {
    /// The value `of` each certificate entry, under the entry's names.
    pub fn new(settings: &TlsSettings, of: impl Fn(usize, &LoadedCertificate) -> T) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in settings.certificates.iter().enumerate() {
            for n in &c.server_names {
                // First certificate listed for a name wins, like nginx's first server block.
                match n.strip_prefix('*') {
                    Some(suffix) => {
                        wildcard
                            .entry(suffix.to_string())
                            .or_insert_with(|| of(i, c));
                    }
                    None => {
                        exact.entry(n.clone()).or_insert_with(|| of(i, c));
                    }
                }
            }
        }
        let d = settings.default_certificate;
        SniMap {
            exact,
            wildcard,
            default: of(d, &settings.certificates[d]),
        }
    }

    /// The value for `name` (already lower-case, as rustls delivers SNI).
    pub fn lookup(&self, name: Option<&str>) -> &T {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.');
        if let Some(k) = self.exact.get(name) {
            return k;
        }
        // A wildcard covers exactly one label, as in RFC 6125 §6.4.3.
        if let Some(dot) = name.find('.')
            && let Some(k) = self.wildcard.get(&name[dot..])
        {
            return k;
        }
        &self.default
    }
}

/// Maps SNI names to certificates; immutable after load.
#[derive(Debug)]
pub struct SniResolver(SniMap<Arc<CertifiedKey>>);

impl SniResolver {
    pub fn new(settings: &TlsSettings) -> Self {
        SniResolver(SniMap::new(settings, |_, c| c.key.clone()))
    }

    /// The certificate for `name` (already lower-case, as rustls delivers SNI).
    pub fn lookup(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        self.0.lookup(name).clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}
