//! One accepted connection, from the socket to its session: the accept phase's policies
//! ([`super::admit`]: PROXY protocol, IP allow/deny; the client's address), on a TLS
//! listener the handshake and the kernel TLS switch ([`crate::transport::accept`], which
//! keeps the handshake's facts for every exchange), then the HTTP/1.1 session
//! ([`crate::http1::server`]). ALPN will pick the session once HTTP/2 comes.

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
    let (tls, at_accept) = {
        let g = ctx.live.load();
        let at_accept = g
            .listener_policies
            .get(listener.index)
            .is_some_and(|p| p.at_accept())
            .then(|| Arc::clone(&g));
        (g.listeners[listener.index].clone(), at_accept)
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
                tls.ktls,
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
    crate::http1::server::serve(stream, info, peer, scheme, index, ctx, rbuf).await;
}
