//! What a connection's TLS handshake settled, recorded once before any kernel TLS switch
//! (after it rustls no longer holds these facts) and shared read-only by every exchange on
//! the connection: policies (mTLS identity), identity headers and access logs read it.
//! Holds no key material.

use std::time::Duration;

use rustls::{HandshakeKind, ProtocolVersion};
use rustls_pki_types::CertificateDer;

use super::identity::ClientIdentity;
use crate::transport::Role;

/// The outcome of client-certificate verification on one connection, as nginx's
/// `$ssl_client_verify` names it (`NONE`, `SUCCESS`, `FAILED:reason`).
///
/// ringgate follows nginx's `ssl_verify_client optional`: a certificate that is presented
/// and fails verification refuses the handshake in both `required` and `optional` modes,
/// so a connection that exists has either no certificate or a verified one. `Failed` is
/// kept for a record-and-continue mode (nginx's `optional_no_ca`), not produced today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientVerify {
    /// No certificate was presented (or none was asked for).
    #[default]
    None,
    /// A certificate chain was presented and verified.
    Success,
    /// A certificate was presented, did not verify, and the connection was let through;
    /// the reason as `X-SSL-Client-Verify: FAILED:reason` shows it.
    Failed(&'static str),
}

impl ClientVerify {
    /// nginx's `$ssl_client_verify` text: `NONE`, `SUCCESS` or `FAILED` (the reason
    /// separately, from the variant).
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientVerify::None => "NONE",
            ClientVerify::Success => "SUCCESS",
            ClientVerify::Failed(_) => "FAILED",
        }
    }
}

/// The facts of one TLS connection.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The SNI host name the client asked for (lower case), if any.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol (`http/1.1`, …), if any.
    pub alpn: Option<Vec<u8>>,
    pub version: Option<ProtocolVersion>,
    /// The negotiated cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: Option<rustls::CipherSuite>,
    /// The session was resumed (ticket or session ID), not a full handshake.
    pub resumed: bool,
    /// From accept to the end of the handshake.
    pub handshake_duration: Duration,
    /// The client's certificate chain (DER, leaf first) when it sent one. Filled only
    /// on listeners with `[listener.tls.client_auth]` (`verify = "required"` or
    /// `"optional"`): otherwise no certificate is requested. On a resumed session rustls
    /// restores the chain of the session resumed.
    pub client_chain: Vec<CertificateDer<'static>>,
    /// What came of the client's certificate: the identity headers and the route
    /// requirement (`[route.client_cert]`) read it.
    pub client_verify: ClientVerify,
    /// The verified leaf's identity (subject, issuer, SANs), parsed once here; `None`
    /// without a verified certificate.
    pub client_identity: Option<ClientIdentity>,
    /// The record layer moved into the kernel after the handshake.
    pub ktls: bool,
}

impl TlsInfo {
    /// Reads the facts off a connection whose handshake just completed (either role; on
    /// the client role `client_chain` is the server's chain); `sni` as the handshake
    /// read it from the ClientHello, or as the client role sent it.
    pub fn of<R: Role>(conn: &R, sni: Option<String>, handshake_duration: Duration) -> TlsInfo {
        TlsInfo {
            sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            handshake_duration,
            client_chain: conn
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            client_verify: ClientVerify::None,
            client_identity: None,
            ktls: false,
        }
        .with_verify_from_chain()
    }

    /// A chain was presented and rustls accepted it (a refused one aborts the
    /// handshake, so no `TlsInfo` exists for it).
    fn with_verify_from_chain(mut self) -> TlsInfo {
        if let Some(leaf) = self.client_chain.first() {
            self.client_verify = ClientVerify::Success;
            self.client_identity = ClientIdentity::parse(leaf);
        }
        self
    }

    /// The verified client certificate (leaf), if any.
    pub fn verified_client_cert(&self) -> Option<&CertificateDer<'static>> {
        match self.client_verify {
            ClientVerify::Success => self.client_chain.first(),
            _ => None,
        }
    }

    /// The version as the access log and metrics name it (`TLSv1.3`).
    pub fn version_name(&self) -> &'static str {
        match self.version {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(_) => "other",
            None => "none",
        }
    }
}
