//! What the transport reports for the metrics to count, without knowing the counters:
//! [`TlsEvents`] is implemented by the worker's metrics ([`crate::observe::Local`]), so
//! `transport` sits below `observe` and the reasons it reports ([`HandshakeFailure`],
//! [`super::ktls::Fallback`], [`super::tls::Rejection`]) are defined here, where they
//! happen, and only labelled there. No I/O, no status codes.

use super::ktls::Fallback;
use super::tls::{Rejection, TlsInfo};

/// The events of a client connection's TLS setup and of a kernel TLS stream, each
/// counted by the implementor. Called on the worker, once per event: no allocation, no
/// blocking.
pub trait TlsEvents {
    /// A handshake did not complete.
    fn handshake_failed(&self, reason: HandshakeFailure);
    /// A client certificate was refused (`verify = "required"`: the handshake fails too;
    /// `"optional"`: the connection goes on unverified).
    fn client_cert_rejected(&self, reason: Rejection);
    /// A handshake completed: suite, resumption, duration and key-exchange group.
    fn handshake_done(&self, info: &TlsInfo);
    /// Something happened on the way to, or on, kernel TLS.
    fn ktls(&self, event: KtlsEvent);
}

/// What happened on the way to, or on, a kernel TLS stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KtlsEvent {
    /// The record layer moved into the kernel.
    Offloaded,
    /// The connection stayed in userspace rustls, for this reason.
    Fallback(Fallback),
    /// The switch failed after the secrets left rustls: the connection closes.
    Failed,
    /// The peer's close_notify arrived.
    CloseNotify,
    /// A TLS 1.3 KeyUpdate was followed (new receive key installed).
    Rekey,
    /// A KeyUpdate could not be followed: the connection closed.
    KeyUpdateClose,
}

/// Why a TLS handshake did not complete (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not finished within `handshake_timeout_ms`.
    Timeout,
    /// The peer closed or reset the connection, or the socket failed.
    Io,
    /// Plain HTTP on a TLS port (answered 400).
    PlainHttp,
    /// A ClientHello split into more records than allowed (answered with an alert).
    FragmentedHello,
    /// No common version, cipher suite, group or signature scheme.
    PeerIncompatible,
    /// The peer sent a fatal alert.
    AlertReceived,
    /// Malformed or unexpected TLS messages, bad records.
    Protocol,
    /// A client certificate problem.
    Certificate,
    /// Anything else rustls refused, or the session could not be set up.
    Other,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 9] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Io,
        HandshakeFailure::PlainHttp,
        HandshakeFailure::FragmentedHello,
        HandshakeFailure::PeerIncompatible,
        HandshakeFailure::AlertReceived,
        HandshakeFailure::Protocol,
        HandshakeFailure::Certificate,
        HandshakeFailure::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Io => "io",
            HandshakeFailure::PlainHttp => "plain_http",
            HandshakeFailure::FragmentedHello => "hello_fragmented",
            HandshakeFailure::PeerIncompatible => "peer_incompatible",
            HandshakeFailure::AlertReceived => "alert_received",
            HandshakeFailure::Protocol => "protocol_error",
            HandshakeFailure::Certificate => "certificate",
            HandshakeFailure::Other => "other",
        }
    }

    /// The reason for a rustls error.
    pub fn of_tls(e: &rustls::Error) -> HandshakeFailure {
        use rustls::Error as E;
        match e {
            E::PeerIncompatible(_) => HandshakeFailure::PeerIncompatible,
            E::AlertReceived(_) => HandshakeFailure::AlertReceived,
            E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::InvalidMessage(_)
            | E::PeerMisbehaved(_)
            | E::DecryptError => HandshakeFailure::Protocol,
            E::NoCertificatesPresented | E::InvalidCertificate(_) => HandshakeFailure::Certificate,
            _ => HandshakeFailure::Other,
        }
    }
}
