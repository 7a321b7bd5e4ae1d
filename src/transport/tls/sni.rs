//! Certificate selection by SNI: exact name, then the closest `*.wildcard`, then the
//! listener's default certificate (also used when the client sends no SNI).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsSettings;

/// Maps SNI names to certificates; immutable after load.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix without `*` (`.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(settings: &TlsSettings) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for c in &settings.certificates {
            for n in &c.server_names {
                // First certificate listed for a name wins, like nginx's first server block.
                match n.strip_prefix('*') {
                    Some(suffix) => {
                        wildcard
                            .entry(suffix.to_string())
                            .or_insert_with(|| c.key.clone());
                    }
                    None => {
                        exact.entry(n.clone()).or_insert_with(|| c.key.clone());
                    }
                }
            }
        }
        SniResolver {
            exact,
            wildcard,
            default: settings.certificates[settings.default_certificate]
                .key
                .clone(),
        }
    }

    /// The certificate for `name` (already lower-case, as rustls delivers SNI).
    pub fn lookup(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.');
        if let Some(k) = self.exact.get(name) {
            return k.clone();
        }
        // A wildcard covers exactly one label, as in RFC 6125 §6.4.3.
        if let Some(dot) = name.find('.')
            && let Some(k) = self.wildcard.get(&name[dot..])
        {
            return k.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}
