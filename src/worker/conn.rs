//! One accepted connection, from the socket to its session: the TLS handshake and the
//! kernel TLS switch on a TLS listener (the handshake's facts kept for every exchange),
//! then the HTTP/1.1 session ([`crate::http1::server`]). ALPN picks the session once
//! HTTP/2 comes.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use monoio::net::TcpStream;
use monoio::time::Instant;
use tracing::debug;

use super::ListenerSpec;
use crate::config::KtlsMode;
use crate::conn::{ClientStream, HandshakeError, Offload};
use crate::context::WorkerCtx;
use crate::generation::ListenerTls;
use crate::observe::metrics::HandshakeFailure;
use crate::tls::TlsInfo;

/// Serves one accepted connection to the end.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Rc<WorkerCtx>,
    listener: Rc<ListenerSpec>,
) {
    let mut rbuf = BytesMut::new();
    // Loaded once for the handshake; each exchange loads the then current one again.
    let generation = ctx.live.load_full();
    let (stream, tls) = match &generation.listeners[listener.index] {
        Some(tls) => match handshake(tcp, peer, tls, &ctx, &mut rbuf).await {
            Some((s, info)) => (s, Some(info)),
            None => return,
        },
        None => (ClientStream::plain(tcp), None),
    };
    drop(generation);
    crate::http1::server::serve(stream, tls, peer, listener.scheme(), ctx, rbuf).await;
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &ListenerTls,
    ctx: &WorkerCtx,
    rbuf: &mut BytesMut,
) -> Option<(ClientStream, Rc<TlsInfo>)> {
    let m = &ctx.metrics;
    let started = Instant::now();
    let conn = match rustls::server::UnbufferedServerConnection::new(listener.server_config.clone())
    {
        Ok(c) => c,
        Err(e) => {
            m.handshake_failures[HandshakeFailure::Other as usize].inc();
            debug!(%peer, error = %e, "cannot start TLS session");
            return None;
        }
    };
    let want_ktls = listener.ktls != KtlsMode::Off && crate::ktls::support().is_available();
    let mut s = ClientStream::tls(tcp, conn, want_ktls);
    let sni = match monoio::time::timeout(listener.handshake_timeout, s.handshake()).await {
        Ok(Ok(sni)) => sni,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "handshake failed");
            let reason = match &e {
                HandshakeError::Tls(t) => HandshakeFailure::of_tls(t),
                HandshakeError::PlainHttp => HandshakeFailure::PlainHttp,
                _ => HandshakeFailure::Io,
            };
            m.handshake_failures[reason as usize].inc();
            return None;
        }
        Err(_) => {
            debug!(%peer, "handshake timed out");
            m.handshake_failures[HandshakeFailure::Timeout as usize].inc();
            return None;
        }
    };
    // Read before any kernel TLS switch: afterwards rustls no longer holds these facts.
    let mut info = TlsInfo::of(s.tls_conn()?, sni, started.elapsed());
    m.handshake_ok(info.cipher_suite, info.resumed, info.handshake_duration);
    if listener.ktls == KtlsMode::Off {
        return Some((s, log_tls(peer, info)));
    }
    match s.offload(rbuf, &ctx.metrics) {
        Offload::Kernel => {
            info.ktls = true;
            m.ktls_offloaded.inc();
        }
        Offload::Fallback(reason) => {
            m.ktls_fallback[reason.index()].inc();
            crate::worker::log_fallback_once(reason);
        }
        Offload::Failed(e) => {
            m.ktls_failed.inc();
            tracing::warn!(%peer, error = %e, "switch to kernel TLS failed after the handshake; connection closed");
            return None;
        }
    }
    Some((s, log_tls(peer, info)))
}
fn log_tls(peer: SocketAddr, info: TlsInfo) -> Rc<TlsInfo> {
    debug!(
        %peer,
        sni = info.sni.as_deref().unwrap_or("-"),
        alpn = %String::from_utf8_lossy(info.alpn.as_deref().unwrap_or(b"-")),
        version = info.version_name(),
        suite = ?info.cipher_suite,
        resumed = info.resumed,
        handshake_us = info.handshake_duration.as_micros() as u64,
        client_certs = info.client_chain.len(),
        ktls = info.ktls,
        "tls handshake done"
    );
    Rc::new(info)
}
