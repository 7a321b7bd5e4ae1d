//! ① The accept phase of one connection, before any TLS byte: the PROXY protocol header
//! (`proxy_protocol`, only from `proxy_protocol_from`), then the listener's `allow` /
//! `deny` on the address the header gave (or the peer's), then — behind PROXY protocol —
//! `max_connections_per_ip` on that address ([`limit`]; without PROXY protocol the accept
//! loop counts the peer before spawning a task). What it returns is the client address
//! every later step uses: forwarding fields, policies, logs.
//!
//! A refusal closes the connection with nothing written (no protocol has been spoken
//! yet, so there is no status to send) and is counted in
//! `ringgate_policy_rejections_total` — `{policy="proxy_protocol",
//! reason="untrusted_source"|"malformed"|"timeout"}`, `{policy="ip",reason="denied"}`,
//! `{policy="conn_limit",reason="max_connections_per_ip"}` — and logged at debug.
//!
//! The header is read by peeking at the socket and then taking exactly the bytes the
//! parser ([`crate::proxy_protocol`]) says are header ([`crate::listener::recv_queued`]),
//! so the TLS layer's first read starts at the ClientHello's first byte and nothing is
//! handed over between the two. Bounded: a header is at most
//! [`proxy_protocol::MAX_HEADER`] bytes, and must be whole within the listener's handshake
//! timeout (`client_header_timeout_ms` on a plain listener).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use monoio::net::TcpStream;
use tracing::debug;

use crate::config::ListenerPolicies;
use crate::generation::ConnLimit;
use crate::listener::{recv_queued, socket_fd};
use crate::observe::Local;
use crate::observe::metrics::PolicyRejection;
use crate::policy::conn_limit::{Admission, ConnGuard};
use crate::proxy_protocol::{self, Malformed, Parsed, Source};

/// The connection limit for a connection from `ip`: `Some(guard)` to serve it (the
/// guard counts it out when dropped; `None` inside: no limit), `None` to close it
/// (counted and logged here).
pub(super) fn limit(
    limit: Option<&ConnLimit>,
    ip: IpAddr,
    metrics: &Local,
) -> Option<Option<ConnGuard>> {
    match limit.map(|l| l.table.admit(ip, l.max)) {
        None => Some(None),
        Some(Admission::Admit(guard)) => Some(guard),
        Some(Admission::Refuse) => {
            metrics.policy_rejections[PolicyRejection::ConnLimitPerIp.index()].inc();
            debug!(client = %ip, "max_connections_per_ip reached: closed");
            None
        }
    }
}

/// Runs the accept phase's policies; `Some((client, guard))` to go on with that client
/// address, holding `guard` to the connection's end (`conn_limit`: counted here behind
/// PROXY protocol only), `None` when the connection is to be closed (counted and logged
/// here).
///
/// Cancel safety: dropping it mid-header leaves part of the header read; the caller
/// closes the connection then (a timeout does).
pub(super) async fn admit(
    tcp: &TcpStream,
    peer: SocketAddr,
    policies: &ListenerPolicies,
    conn_limit: Option<&ConnLimit>,
    header_timeout: Duration,
    metrics: &Local,
) -> Option<(SocketAddr, Option<ConnGuard>)> {
    let refuse = |r: PolicyRejection| metrics.policy_rejections[r as usize].inc();
    let mut client = peer;
    if let Some(from) = &policies.proxy_protocol {
        if !from.allows(peer.ip()) {
            refuse(PolicyRejection::ProxyUntrusted);
            debug!(%peer, "PROXY protocol listener: peer not in proxy_protocol_from; closed");
            return None;
        }
        // Boxed: the header buffer lives only while the header is read.
        let read = Box::pin(read_header(tcp));
        match monoio::time::timeout(header_timeout, read).await {
            Ok(Ok(Source::Address(a))) => client = a,
            Ok(Ok(Source::Peer)) => {}
            Ok(Err(e)) => {
                refuse(PolicyRejection::ProxyMalformed);
                debug!(%peer, error = %e, "PROXY protocol header refused; closed");
                return None;
            }
            Err(_) => {
                refuse(PolicyRejection::ProxyTimeout);
                debug!(%peer, "no whole PROXY protocol header in time; closed");
                return None;
            }
        }
    }
    if let Some(list) = &policies.ip
        && !list.allows(client.ip())
    {
        refuse(PolicyRejection::IpDenied);
        debug!(%peer, %client, "client address denied on this listener; closed");
        return None;
    }
    // Behind a balancer every peer is the balancer: the limit is the client's.
    if policies.proxy_protocol.is_some() {
        return limit(conn_limit, client.ip(), metrics).map(|guard| (client, guard));
    }
    Some((client, None))
}

/// Why no header was read.
#[derive(Debug)]
enum HeaderError {
    Malformed(Malformed),
    /// The peer closed before the header was whole.
    Truncated,
    Io(io::Error),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Malformed(m) => f.write_str(m.as_str()),
            HeaderError::Truncated => f.write_str("closed before the header was whole"),
            HeaderError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads one PROXY header and nothing after it: peek at what is queued, parse, take
/// the header's bytes (or, while incomplete, all the bytes peeked: they are all header),
/// wait for more.
async fn read_header(tcp: &TcpStream) -> Result<Source, HeaderError> {
    let mut buf = [0u8; proxy_protocol::MAX_HEADER];
    let mut have = 0;
    loop {
        let fd = socket_fd(tcp);
        // `have` stays below MAX_HEADER: a header that long is Complete or Invalid.
        let n = match recv_queued(fd, &mut buf[have..], true) {
            Ok(0) => return Err(HeaderError::Truncated),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tcp.readable(false).await.map_err(HeaderError::Io)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeaderError::Io(e)),
        };
        let (take, done) = match proxy_protocol::parse(&buf[..have + n]) {
            Parsed::Complete { len, source } => (len - have, Some(source)),
            Parsed::Incomplete => (n, None),
            Parsed::Invalid(m) => return Err(HeaderError::Malformed(m)),
        };
        let end = have + take;
        while have < end {
            // Queued (just peeked), so never a wait; a short read only goes round again.
            match recv_queued(fd, &mut buf[have..end], false) {
                Ok(0) => return Err(HeaderError::Truncated),
                Ok(k) => have += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(HeaderError::Io(e)),
            }
        }
        if let Some(source) = done {
            return Ok(source);
        }
    }
}
