//! One accepted connection, from the socket to its session: on a TLS listener the
//! handshake and the kernel TLS switch ([`crate::transport::accept`], which keeps the
//! handshake's facts for every exchange), then the HTTP/1.1 session
//! ([`crate::http1::server`]). ALPN will pick the session once HTTP/2 comes.

use std::net::SocketAddr;
use std::rc::Rc;

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
    // Loaded for the handshake only; each exchange loads the then current one again.
    let tls = ctx.live.load().listeners[listener.index].clone();
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
