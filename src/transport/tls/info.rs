//! What a connection's TLS handshake settled, recorded once before any kernel TLS switch
//! (after it rustls no longer holds these facts) and shared read-only by every exchange on
//! the connection: policies (mTLS identity), identity headers and access logs read it.
//! Holds no key material.

use std::time::Duration;

use rustls::{HandshakeKind, ProtocolVersion};
use rustls_pki_types::CertificateDer;

use super::ClientIdentity;
use crate::transport::Role;

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
    /// The client's certificate chain (DER, leaf first) when it sent one.
    pub client_chain: Vec<CertificateDer<'static>>,
    /// The verified client certificate's facts, parsed once at the end of the
    /// handshake ([`TlsInfo::with_client_identity`]); a resumed session has the identity
    /// of the session it resumes (rustls restores its chain).
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
            client_identity: None,
            ktls: false,
        }
    }

    /// Parses the client's verified leaf into [`TlsInfo::client_identity`] (server role
    /// only: on the client role the chain is the server's).
    pub fn with_client_identity(mut self) -> TlsInfo {
        self.client_identity = self
            .client_chain
            .first()
            .and_then(|leaf| ClientIdentity::parse(leaf));
        self
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
