//! Client-certificate verification (mTLS): one rustls [`ClientCertVerifier`] per
//! `client_auth` setting, built on rustls' own [`WebPkiClientVerifier`] (path
//! validation, signatures, validity, extended key usage, CRLs), with a chain-length
//! limit (`depth`) on top. This module never re-implements path validation, touches no
//! socket and reads no file (the CA and CRL files were read by [`crate::config`]).
//!
//! With `verify = "required"` a refused certificate aborts the handshake with the alert
//! rustls chooses (certificate_required, unknown_ca, certificate_expired,
//! certificate_revoked, unsupported_certificate, …); [`Rejection::of`] names the reason
//! the metrics count. With `"optional"` the handshake lets any certificate through (its
//! signature over the handshake is still checked: the client holds the key) and the
//! connection checks the chain once the handshake is done ([`ClientVerifier::check`]):
//! a failure makes the connection unverified, `X-SSL-Client-Verify: FAILED:reason`,
//! instead of refusing it (nginx's `$ssl_client_verify` with `optional_no_ca`). A resumed
//! session's chain is checked the same way in both modes, against today's CAs and CRLs:
//! rustls does not ask the verifier on resumption, and the session may come from an
//! `optional` connection whose certificate failed, or from before a revocation.
//!
//! Revocation, a documented choice: with `crl` set, only the leaf's revocation is
//! checked (`only_check_end_entity_revocation`), and a leaf whose issuer has no CRL in
//! the list is refused (rustls' default: unknown status fails closed). So list the CRL
//! of every CA that issues client certificates; an intermediate CA is revoked by
//! removing it from `ca` (or by its issuer's CRL once full-chain checking is wanted).
//! A CRL past its next update is refused (`crl_expired = "refuse"`) or used
//! (`"ignore"`).
//!
//! [`WebPkiClientVerifier`]: rustls::server::WebPkiClientVerifier

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

pub use crate::config::VerifierError;
use crate::config::{ClientAuth, VerifyClient};

/// The verifier for `auth`: none for `verify = "off"` (or without a `ca`). rustls'
/// WebPKI verifier ([`ClientAuth::webpki_verifier`], which `config` also builds to check
/// the files at load) with the chain-length limit on top.
pub fn client_verifier(auth: &ClientAuth) -> Result<Option<Arc<ClientVerifier>>, VerifierError> {
    let (Some(inner), Some(ca)) = (auth.webpki_verifier()?, auth.ca.as_ref()) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(ClientVerifier {
        inner,
        depth: auth.depth,
        anchors: ca.certs.clone(),
        optional: auth.verify == VerifyClient::Optional,
    })))
}

/// The chain is longer than `depth` allows (the verifier's own error, so the metrics
/// can tell it from the others).
#[derive(Debug)]
pub struct ChainTooDeep {
    pub below_anchor: usize,
    pub depth: usize,
}

impl std::fmt::Display for ChainTooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client chain has {} certificates below its trust anchor, depth allows {}",
            self.below_anchor, self.depth
        )
    }
}

impl std::error::Error for ChainTooDeep {}

/// rustls' verifier, then the length limit: the leaf plus the intermediates the client
/// sent that are not themselves trust anchors must be at most `depth`. Counting what
/// was sent (rustls does not hand out the path it built) is strict: a client sending
/// unrelated extra certificates is refused too, never let through.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    depth: usize,
    anchors: Vec<CertificateDer<'static>>,
    /// `verify = "optional"`: the handshake takes any certificate; the connection calls
    /// [`ClientVerifier::check`] after it.
    optional: bool,
}

impl ClientVerifier {
    /// Verifies a chain (leaf first) as the handshake would have, at the current time:
    /// for an `optional` connection with a certificate and for every resumed session.
    pub fn check(&self, chain: &[CertificateDer<'static>]) -> Result<(), rustls::Error> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(rustls::Error::NoCertificatesPresented);
        };
        self.verify(leaf, intermediates, UnixTime::now())
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| log_refused(end_entity, e))?;
        let below_anchor = 1 + intermediates
            .iter()
            .filter(|i| !self.anchors.iter().any(|a| a.as_ref() == i.as_ref()))
            .count();
        if below_anchor > self.depth {
            let e = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(ChainTooDeep {
                    below_anchor,
                    depth: self.depth,
                }),
            )));
            log_refused(end_entity, &e);
            return Err(e);
        }
        Ok(())
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !self.optional {
            self.verify(end_entity, intermediates, now)?;
        }
        // Optional: checked once the handshake is done, where a failure makes the
        // connection unverified instead of refusing it.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Logs a refused certificate's subject at debug level (parsed only when that level is
/// on; the handshake's own debug line with the peer address follows).
fn log_refused(end_entity: &CertificateDer<'_>, e: &rustls::Error) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let identity = super::ClientIdentity::parse(end_entity);
        tracing::debug!(
            subject = identity.as_ref().map_or("-", |i| i.subject_str()),
            error = %e,
            "client certificate refused"
        );
    }
}

/// Why a client certificate was refused, as `ringgate_tls_client_cert_rejections_total`
/// labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// `verify = "required"` and the client sent none (alert certificate_required).
    NoCertificate,
    /// Not issued by a configured CA (unknown_ca).
    UnknownCa,
    /// Past its notAfter (certificate_expired).
    Expired,
    /// Before its notBefore (certificate_expired).
    NotYetValid,
    /// Listed in a CRL (certificate_revoked).
    Revoked,
    /// Its issuer has no CRL in the list (unknown_ca).
    RevocationUnknown,
    /// The CRL that covers it is past its next update (unknown_ca).
    CrlExpired,
    /// Not for client authentication, e.g. a serverAuth-only EKU
    /// (unsupported_certificate).
    BadUsage,
    /// A signature did not verify or uses an unsupported algorithm (decrypt_error).
    BadSignature,
    /// Longer than `depth` (certificate_unknown).
    ChainTooDeep,
    /// Anything else about the certificate (bad_certificate, certificate_unknown).
    Other,
}

impl Rejection {
    pub const ALL: [Rejection; 11] = [
        Rejection::NoCertificate,
        Rejection::UnknownCa,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::Revoked,
        Rejection::RevocationUnknown,
        Rejection::CrlExpired,
        Rejection::BadUsage,
        Rejection::BadSignature,
        Rejection::ChainTooDeep,
        Rejection::Other,
    ];

    /// The reason after `FAILED:` in `X-SSL-Client-Verify`, in OpenSSL's words (what
    /// nginx's `$ssl_client_verify` says for the same failure).
    pub fn verify_text(self) -> &'static str {
        match self {
            Rejection::NoCertificate => "no certificate",
            Rejection::UnknownCa => "unable to get local issuer certificate",
            Rejection::Expired => "certificate has expired",
            Rejection::NotYetValid => "certificate is not yet valid",
            Rejection::Revoked => "certificate revoked",
            Rejection::RevocationUnknown => "unable to get certificate CRL",
            Rejection::CrlExpired => "CRL has expired",
            Rejection::BadUsage => "unsupported certificate purpose",
            Rejection::BadSignature => "certificate signature failure",
            Rejection::ChainTooDeep => "certificate chain too long",
            Rejection::Other => "certificate verify failed",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Rejection::NoCertificate => "no_certificate",
            Rejection::UnknownCa => "unknown_ca",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Revoked => "revoked",
            Rejection::RevocationUnknown => "revocation_unknown",
            Rejection::CrlExpired => "crl_expired",
            Rejection::BadUsage => "bad_usage",
            Rejection::BadSignature => "bad_signature",
            Rejection::ChainTooDeep => "chain_too_deep",
            Rejection::Other => "other",
        }
    }

    /// The reason for a handshake error, when it is about the client's certificate.
    pub fn of(e: &rustls::Error) -> Option<Rejection> {
        use CertificateError as C;
        let c = match e {
            rustls::Error::NoCertificatesPresented => return Some(Rejection::NoCertificate),
            rustls::Error::InvalidCertificate(c) => c,
            _ => return None,
        };
        Some(match c {
            C::UnknownIssuer => Rejection::UnknownCa,
            C::Expired | C::ExpiredContext { .. } => Rejection::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => Rejection::NotYetValid,
            C::Revoked => Rejection::Revoked,
            C::UnknownRevocationStatus => Rejection::RevocationUnknown,
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                Rejection::CrlExpired
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => Rejection::BadUsage,
            C::BadSignature
            | C::UnsupportedSignatureAlgorithmContext { .. }
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Rejection::BadSignature,
            C::Other(o) if o.0.downcast_ref::<ChainTooDeep>().is_some() => Rejection::ChainTooDeep,
            _ => Rejection::Other,
        })
    }
}
