//! The one error type of the request path.
//!
//! Every failure while serving an exchange becomes a [`ProxyError`]: which side failed
//! ([`Side`]), what happened ([`Kind`]), and whether the request may be retried on a fresh
//! upstream connection. [`ProxyError::status`] is the single place that maps a failure to
//! the status the client sees (when a response head has not been sent yet).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::message::{Fault, GatewayResponse};
pub use crate::status::{fault_status, status_text};

/// Which party the failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// The client sent a message the parser refused (what is wrong inside).
    BadRequest(Fault),
    /// The client closed or reset its connection.
    ClientGone,
    /// The client stalled longer than a client timeout.
    ClientTimeout,
    /// The request body exceeded `max_request_body_bytes`.
    BodyTooLarge,
    /// A policy refused the client (a route's `[route.client_cert]` requirement).
    Forbidden,
    /// No route matches the request's host and path.
    NoRoute,
    /// The request names a host this listener does not answer for (a redirect
    /// listener's Host is served by no TLS certificate or named route).
    MisdirectedHost,
    /// The upstream refused or could not be reached.
    ConnectFailed,
    /// Connecting to the upstream took longer than `connect_timeout_ms`.
    ConnectTimeout,
    /// The upstream closed or reset the connection.
    UpstreamClosed,
    /// The upstream stalled longer than its read/write timeout.
    UpstreamTimeout,
    /// The upstream sent something that is not valid HTTP/1.1.
    UpstreamProtocol,
    /// An upgrade (WebSocket) while the worker already holds `max_tunnels` tunnels (503).
    TunnelsFull,
}

/// A failure on the request path.
#[derive(Debug)]
pub struct ProxyError {
    pub side: Side,
    pub kind: Kind,
    /// Nothing of the request reached the upstream application in a way that matters:
    /// sending it again on a fresh connection is safe.
    pub retry: bool,
    pub detail: Option<io::Error>,
    pub reason: &'static str,
    /// The upstream server this failure happened with, when the failing step knows it
    /// and the exchange may not (a connect that failed returns no connection).
    pub server: Option<SocketAddr>,
}

impl ProxyError {
    pub const fn new(side: Side, kind: Kind, reason: &'static str) -> Self {
        ProxyError {
            side,
            kind,
            retry: false,
            detail: None,
            reason,
            server: None,
        }
    }

    pub fn io(side: Side, kind: Kind, reason: &'static str, e: io::Error) -> Self {
        ProxyError {
            detail: Some(e),
            ..ProxyError::new(side, kind, reason)
        }
    }

    /// The result of an I/O step bounded by a timeout: an I/O error becomes `failed`
    /// (with the error as detail), the timeout `timed_out`. The one mapping for timed
    /// reads and writes.
    pub fn timed<T, E>(
        r: Result<io::Result<T>, E>,
        failed: ProxyError,
        timed_out: ProxyError,
    ) -> Result<T, ProxyError> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ProxyError {
                detail: Some(e),
                ..failed
            }),
            Err(_) => Err(timed_out),
        }
    }

    /// The same failure, naming the upstream server it happened with.
    pub fn at(mut self, server: SocketAddr) -> Self {
        self.server = Some(server);
        self
    }

    pub fn retryable(mut self) -> Self {
        self.retry = true;
        self
    }

    /// The status to answer with, if a response can still be sent.
    pub fn status(&self) -> Option<u16> {
        // A local failure (no pipe, a stream that cannot be split) is ours, not the
        // upstream's.
        if self.side == Side::Internal {
            return Some(500);
        }
        match self.kind {
            Kind::BadRequest(f) => Some(fault_status(f)),
            Kind::ClientGone => None,
            Kind::ClientTimeout => Some(408),
            Kind::BodyTooLarge => Some(413),
            Kind::Forbidden => Some(403),
            Kind::NoRoute => Some(404),
            Kind::MisdirectedHost => Some(421),
            Kind::ConnectFailed | Kind::UpstreamClosed | Kind::UpstreamProtocol => Some(502),
            Kind::ConnectTimeout | Kind::UpstreamTimeout => Some(504),
            Kind::TunnelsFull => Some(503),
        }
    }
}

impl ProxyError {
    /// The proxy's own answer to this failure, if a response can still be sent: its
    /// status ([`ProxyError::status`]) with the reason as the body.
    pub fn response(&self) -> Option<GatewayResponse> {
        self.status().map(|s| GatewayResponse::text(s, self.reason))
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}: {}", self.side, self.kind, self.reason)?;
        if let Some(e) = &self.detail {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_from_failure_to_status() {
        let status = |side, kind| ProxyError::new(side, kind, "t").status();
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::Malformed)),
            Some(400)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::LineTooLong)),
            Some(414)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::HeadTooLarge)),
            Some(431)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::Version)),
            Some(505)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::Coding)),
            Some(501)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::Target)),
            Some(400)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::Forwarding)),
            Some(400)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::Method)),
            Some(405)
        );
        assert_eq!(status(Side::Downstream, Kind::ClientGone), None);
        assert_eq!(status(Side::Downstream, Kind::ClientTimeout), Some(408));
        assert_eq!(status(Side::Downstream, Kind::BodyTooLarge), Some(413));
        assert_eq!(status(Side::Downstream, Kind::Forbidden), Some(403));
        assert_eq!(status(Side::Downstream, Kind::NoRoute), Some(404));
        assert_eq!(status(Side::Downstream, Kind::MisdirectedHost), Some(421));
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::PlainHttp)),
            Some(400)
        );
        assert_eq!(status(Side::Upstream, Kind::UpstreamProtocol), Some(502));
        assert_eq!(status(Side::Downstream, Kind::TunnelsFull), Some(503));
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::UpgradeBody)),
            Some(400)
        );
        assert_eq!(
            status(Side::Downstream, Kind::BadRequest(Fault::ConnectProtocol)),
            Some(501)
        );
        assert_eq!(status(Side::Upstream, Kind::UpstreamTimeout), Some(504));
        // A local failure is ours, whatever it looked like.
        assert_eq!(status(Side::Internal, Kind::UpstreamClosed), Some(500));
    }
}
