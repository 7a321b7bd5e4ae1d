//! Client-certificate settings (`[listener.tls.client_auth]`, a certificate entry's
//! `client_auth = { ... }`, `[route.client_cert]`) and the files they name: a CA bundle
//! and CRL files, read, decoded and checked here so that a listener's verifier can be
//! built without failing.
//!
//! Each problem is said in plain words with the file it is about ("no certificate in
//! file", "not a CRL", "cannot read"). Used by validation and by the certificate-only
//! reload (a changed CA or CRL file builds a new generation like a changed certificate).
//! It reads files: never call it on a worker.

use std::fmt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use super::{FNV_SEED, fnv1a};

/// `verify`: whether a client certificate is asked for and needed. nginx:
/// `ssl_verify_client on | optional | off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// A verified certificate is needed to complete the handshake.
    Required,
    /// Asked for; a client without one proceeds (a presented certificate that fails
    /// verification still refuses the handshake, as in nginx's `optional`).
    Optional,
    /// Not asked for.
    Off,
}

/// `crl_expired`: what a CRL past its `nextUpdate` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlExpired {
    /// Fail closed: certificates it covers are refused until a fresh CRL is in place.
    Refuse,
    /// Use it anyway.
    Ignore,
}

/// A CA bundle as loaded.
#[derive(Clone)]
pub struct ClientCa {
    pub path: PathBuf,
    /// Trust anchors (every certificate in the bundle, roots and intermediates).
    pub certs: Vec<CertificateDer<'static>>,
    /// FNV-1a of the file's content as loaded.
    pub hash: u64,
}

/// A CRL file as loaded (PEM may hold several CRLs).
#[derive(Clone)]
pub struct ClientCrl {
    pub path: PathBuf,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub hash: u64,
}

/// Client-certificate verification of a listener or of one certificate entry.
#[derive(Clone)]
pub struct ClientAuth {
    pub verify: VerifyClient,
    /// Absent only with `verify = "off"`.
    pub ca: Option<ClientCa>,
    pub crls: Vec<ClientCrl>,
    /// Most certificates below the trust anchor, the leaf included.
    pub depth: usize,
    pub crl_expired: CrlExpired,
}

impl ClientAuth {
    /// No client certificate asked for (the default of a listener).
    pub fn off() -> ClientAuth {
        ClientAuth {
            verify: VerifyClient::Off,
            ca: None,
            crls: Vec::new(),
            depth: 2,
            crl_expired: CrlExpired::Refuse,
        }
    }

    /// Reads the CA and CRL files again; each problem as (field under `client_auth`,
    /// message naming the file).
    pub(crate) fn reload(&mut self) -> Result<(), Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        if let Some(ca) = &mut self.ca {
            match load_ca(&ca.path) {
                Ok(new) => *ca = new,
                Err(e) => errors.push(("ca", e)),
            }
        }
        for crl in &mut self.crls {
            match load_crl(&crl.path) {
                Ok(new) => *crl = new,
                Err(e) => errors.push(("crl", e)),
            }
        }
        if errors.is_empty() {
            for (i, msg) in self.verifier_problems() {
                errors.push((if i.is_some() { "crl" } else { "ca" }, msg));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// rustls' WebPKI verifier for these settings: none for `verify = "off"` (or without
    /// a `ca`). Built here so that loading the config proves rustls takes the CA and CRL
    /// files; the transport wraps it with the chain-length limit
    /// ([`crate::transport::tls::client_verifier`]).
    pub fn webpki_verifier(&self) -> Result<Option<Arc<dyn ClientCertVerifier>>, VerifierError> {
        let Some(ca) = self
            .ca
            .as_ref()
            .filter(|_| self.verify != VerifyClient::Off)
        else {
            return Ok(None);
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in &ca.certs {
            roots.add(c.clone()).map_err(VerifierError::Ca)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(self.crls.iter().flat_map(|c| c.crls.iter().cloned()))
            .only_check_end_entity_revocation();
        if self.crl_expired == CrlExpired::Refuse {
            b = b.enforce_revocation_expiration();
        }
        if self.verify == VerifyClient::Optional {
            b = b.allow_unauthenticated();
        }
        b.build().map(Some).map_err(VerifierError::Build)
    }

    /// Whether rustls builds a verifier from this: each problem with the index of the
    /// CRL it is about (each CRL is tried alone to name the file rustls refuses), or
    /// `None` when it is about the whole.
    pub(crate) fn verifier_problems(&self) -> Vec<(Option<usize>, String)> {
        let Err(e) = self.webpki_verifier() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, crl) in self.crls.iter().enumerate() {
            let alone = ClientAuth {
                crls: vec![crl.clone()],
                ..self.clone()
            };
            if let Err(e) = alone.webpki_verifier() {
                out.push((Some(i), format!("{}: {e}", crl.path.display())));
            }
        }
        if out.is_empty() {
            out.push((None, e.to_string()));
        }
        out
    }

    /// The files this depends on, with the hash of the content loaded.
    pub(crate) fn files(&self) -> impl Iterator<Item = (&Path, u64)> {
        self.ca
            .iter()
            .map(|c| (c.path.as_path(), c.hash))
            .chain(self.crls.iter().map(|c| (c.path.as_path(), c.hash)))
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("verify", &self.verify)
            .field("ca", &self.ca.as_ref().map(|c| &c.path))
            .field(
                "crl",
                &self.crls.iter().map(|c| &c.path).collect::<Vec<_>>(),
            )
            .field("depth", &self.depth)
            .field("crl_expired", &self.crl_expired)
            .finish()
    }
}

/// `[route.client_cert]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteClientCert {
    /// A verified client certificate is needed.
    pub required: bool,
    /// Subject DNs or SAN values allowed (exact, or a prefix when written with a trailing
    /// `*`); empty: any verified certificate.
    pub allow: Vec<AllowPattern>,
}

/// One entry of `allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowPattern {
    Exact(String),
    /// Written with a trailing `*`: the part before it.
    Prefix(String),
}

impl AllowPattern {
    pub fn parse(s: &str) -> AllowPattern {
        match s.strip_suffix('*') {
            Some(p) => AllowPattern::Prefix(p.to_string()),
            None => AllowPattern::Exact(s.to_string()),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            AllowPattern::Exact(e) => e == value,
            AllowPattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

/// Reads a PEM bundle of CAs (client CAs; an upstream's `ca`); every certificate must be
/// a usable trust anchor.
pub(crate) fn load_ca(path: &Path) -> Result<ClientCa, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem) {
        certs.push(item.map_err(|e| format!("{shown}: bad PEM: {e}"))?);
    }
    if certs.is_empty() {
        return Err(format!(
            "{shown}: no certificate in file (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        roots
            .add(c.clone())
            .map_err(|e| format!("{shown}: certificate {} is not a usable CA: {e}", i + 1))?;
    }
    Ok(ClientCa {
        path: path.to_path_buf(),
        certs,
        hash: fnv1a(FNV_SEED, &pem),
    })
}

/// Reads a CRL file, PEM (`-----BEGIN X509 CRL-----`, one or more) or DER; each must
/// parse as an X.509 CRL.
pub(crate) fn load_crl(path: &Path) -> Result<ClientCrl, String> {
    let shown = path.display();
    let data = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if data.starts_with(b"-----") {
        let mut out = Vec::new();
        for item in CertificateRevocationListDer::pem_slice_iter(&data) {
            out.push(item.map_err(|e| format!("{shown}: bad PEM: {e}"))?);
        }
        if out.is_empty() {
            return Err(format!(
                "{shown}: not a CRL (expected a \"-----BEGIN X509 CRL-----\" block or DER)"
            ));
        }
        out
    } else {
        vec![CertificateRevocationListDer::from(data.clone())]
    };
    for (i, crl) in crls.iter().enumerate() {
        if x509_parser::parse_x509_crl(crl.as_ref()).is_err() {
            return Err(format!(
                "{shown}: CRL {} is not a CRL (cannot parse it)",
                i + 1
            ));
        }
    }
    Ok(ClientCrl {
        path: path.to_path_buf(),
        crls,
        hash: fnv1a(FNV_SEED, &data),
    })
}

/// Why a verifier could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifierError {
    /// A CA certificate is not a usable trust anchor.
    Ca(rustls::Error),
    /// rustls refused the roots or a CRL.
    Build(VerifierBuilderError),
}

impl std::fmt::Display for VerifierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifierError::Ca(e) => write!(f, "client CA: {e}"),
            VerifierError::Build(e) => write!(f, "client certificate verifier: {e}"),
        }
    }
}

impl std::error::Error for VerifierError {}
