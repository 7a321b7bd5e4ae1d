//! One accepted connection, from the socket to its session: the accept phase's policies
//! ([`super::admit`]: PROXY protocol, IP allow/deny; the client's address), on a TLS
//! listener the handshake and the kernel TLS switch ([`crate::transport::accept`], which
//! keeps the handshake's facts for every exchange), then the session: HTTP/2
//! ([`crate::http2`]) when ALPN chose `h2`, or on an `h2c = true` plain listener when the
//! connection opens with the HTTP/2 preface; HTTP/1.1 ([`crate::http1::server`])
//! otherwise.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::ListenerSpec;
use crate::context::WorkerCtx;
use crate::transport::{self, ClientStream};

/// Serves one accepted connection to the end.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Rc<WorkerCtx>,
    listener: Rc<ListenerSpec>,
) {
    let mut rbuf = BytesMut::new();
    // Loaded for the accept phase and the handshake only; each exchange loads the then
    // current one again.
    let (tls, at_accept, h2c) = {
        let g = ctx.live.load();
        let h2c = g
            .config
            .listeners
            .get(listener.index)
            .is_some_and(|l| l.h2c);
        let at_accept = g
            .listener_policies
            .get(listener.index)
            .is_some_and(|p| p.at_accept())
            .then(|| Arc::clone(&g));
        (g.listeners[listener.index].clone(), at_accept, h2c)
    };
    // `_counted`: the connection limit's count, held to the connection's end.
    let (peer, _counted) = match at_accept {
        None => (peer, None),
        Some(g) => {
            let timeout = match &tls {
                Some(t) => t.handshake_timeout,
                None => g.config.http.client_header_timeout,
            };
            let policies = &g.listener_policies[listener.index];
            let limit = g.conn_limits[listener.index].as_ref();
            match super::admit::admit(&tcp, peer, policies, limit, timeout, &ctx.metrics).await {
                Some(admitted) => admitted,
                None => return,
            }
        }
    };
    let (stream, info) = match tls {
        Some(tls) => {
            // Boxed, like the exchange: the handshake's state is freed once it is done,
            // instead of sizing every connection's future for it.
            let accepted = Box::pin(transport::accept(
                tcp,
                peer,
                tls.server_configs,
                transport::RecordLayers {
                    ktls: tls.ktls,
                    userspace: tls.record_layer,
                },
                tls.handshake_timeout,
                &mut rbuf,
                &ctx.metrics,
            ))
            .await;
            match accepted {
                Some((s, info)) => (s, Some(info)),
                None => return,
            }
        }
        None => (ClientStream::plain(tcp), None),
    };
    let (scheme, index) = (listener.scheme(), listener.index);
    let mut stream = stream;
    let h2 = match &info {
        Some(i) => i.alpn.as_deref() == Some(b"h2"),
        None => h2c && Box::pin(sniff_preface(&mut stream, &mut rbuf, &ctx)).await,
    };
    if h2 {
        // Boxed: the HTTP/1.1 path keeps its future (and its poll) as it was.
        Box::pin(crate::http2::serve(
            stream, info, peer, scheme, index, ctx, rbuf,
        ))
        .await;
        return;
    }
    crate::http1::server::serve(stream, info, peer, scheme, index, ctx, rbuf).await;
}

/// Reads until `rbuf` holds the HTTP/2 preface or bytes that cannot begin it (within
/// `client_header_timeout_ms`); whatever was read stays in `rbuf` for the session.
/// `true`: HTTP/2 with prior knowledge.
async fn sniff_preface(stream: &mut ClientStream, rbuf: &mut BytesMut, ctx: &WorkerCtx) -> bool {
    use crate::http2::PREFACE;
    let timeout = ctx.live.load().config.http.client_header_timeout;
    let until = crate::clock::now() + timeout;
    while rbuf.len() < PREFACE.len() && PREFACE.starts_with(rbuf) {
        let left = until.saturating_duration_since(crate::clock::now());
        // The preface is 24 bytes: read no more than it, so an HTTP/1.1 request's bytes
        // stay on the socket as they would have.
        match monoio::time::timeout(left, stream.read(rbuf, PREFACE.len() - rbuf.len())).await {
            Ok(Ok(n)) if n > 0 => {}
            // A close or a timeout: the HTTP/1.1 session sees the same and ends.
            _ => return false,
        }
    }
    rbuf.starts_with(PREFACE)
}
