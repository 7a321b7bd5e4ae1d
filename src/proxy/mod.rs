//! ⑧ The proxy: drives one client connection from accept to close.
//!
//! A connection moves through states: TLS handshake (bounded by `handshake_timeout_ms`)
//! → read a request head (`client_header_timeout_ms`; idle keep-alive waits use
//! `keepalive_timeout_ms` and hold no read buffer) → one *exchange* ([`exchange`]:
//! route, upstream, stream both bodies) → back to reading, or close. The exchange is the
//! unit later protocols (HTTP/2 streams, upgraded tunnels) will drive too.
//!
//! Configuration: the handshake takes its TLS config from the generation current at
//! accept; each exchange loads the current generation ([`crate::generation`]) once,
//! when its head has arrived, and runs to its end on it (route, upstream settings,
//! timeouts), so a reload never changes a request in flight.
//!
//! Status mapping for failures before a response head was sent: malformed request → 400
//! (414/431 for limits, 501 unknown transfer coding, 505 version), slow head → 408,
//! too-large body → 413, no route → 404, upstream refused/reset/garbage → 502, upstream
//! timeout → 504. After the head was sent, a failure closes the connection so the client
//! can never mistake a truncated body for a complete one. This module never blocks and
//! never panics on peer input.

mod duplex;
mod exchange;
mod splice;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use monoio::time::Instant;
use tracing::debug;

use crate::config::KtlsMode;
use crate::error::{Kind, ProxyError, Side};
use crate::generation::{Generation, ListenerTls};
use crate::http1::parse::{self, HeadLimits, Parsed, RequestHead, Version};
use crate::http1::write::{self, ClientInfo};
use crate::observe::metrics::HandshakeFailure;
use crate::transport::tls::TlsInfo;
use crate::transport::{ClientStream, HandshakeError, Offload};
use crate::worker::WorkerCtx;

/// Per-listener settings a connection needs (TLS settings are in the generation).
pub struct ListenerCtx {
    /// Position in [`Generation::listeners`].
    pub index: usize,
    /// `"https"` or `"http"`, for X-Forwarded-Proto and Forwarded.
    pub proto: &'static str,
}

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// Read size for request heads; heads grow the buffer only when they need to.
const HEAD_READ: usize = 4096;

/// Serves one accepted connection to the end.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Rc<WorkerCtx>,
    listener: Rc<ListenerCtx>,
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
    let mut conn = Connection {
        generation,
        stream,
        peer,
        client: ClientInfo::new(peer, listener.proto),
        ctx,
        rbuf,
        served: 0,
        linger: false,
        tls,
        status: 0,
    };
    conn.run().await;
}

/// TLS handshake (bounded by `handshake_timeout_ms`), then the move to kernel TLS where
/// the listener wants it; the handshake's facts are kept for every exchange. `None`: the
/// connection is over.
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
    let want_ktls =
        listener.ktls != KtlsMode::Off && crate::transport::ktls::support().is_available();
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

/// One client connection after the handshake.
pub struct Connection {
    /// The generation of the current exchange (loaded when its head arrived).
    pub(crate) generation: Arc<Generation>,
    pub(crate) stream: ClientStream,
    pub(crate) peer: SocketAddr,
    /// The client for the forwarding headers (its address formatted once).
    pub(crate) client: ClientInfo,
    pub(crate) ctx: Rc<WorkerCtx>,
    /// Bytes read from the client and not yet used (pipelined requests, body bytes).
    pub(crate) rbuf: BytesMut,
    pub(crate) served: u64,
    /// The last response went out before the request body was read whole: close with a
    /// lingering close, so the client can read it before the connection goes.
    pub(crate) linger: bool,
    /// What the TLS handshake settled (`None` on a plain listener).
    pub(crate) tls: Option<Rc<TlsInfo>>,
    /// The status of the response head sent for the current request (0: none yet).
    pub(crate) status: u16,
}

impl Connection {
    async fn run(&mut self) {
        loop {
            let head = match self.read_head().await {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "request head refused");
                    if let Some(status) = e.status() {
                        let started = Instant::now();
                        self.respond(status, e.reason, Version::Http11, false).await;
                        self.ctx.metrics.request_done(status, started.elapsed());
                    }
                    break;
                }
            };
            self.served += 1;
            // The exchange starts: it runs to its end on the generation current now.
            self.generation = self.ctx.live.load_full();
            self.status = 0;
            let started = Instant::now();
            let next = self.exchange(head).await;
            self.ctx
                .metrics
                .request_done(self.status, started.elapsed());
            if next == Next::Close {
                break;
            }
        }
        let http = &self.generation.config.http;
        if self.linger {
            let (per_read, total) = (http.lingering_timeout, http.lingering_time);
            let _ =
                monoio::time::timeout(http.send_timeout, self.stream.linger(per_read, total)).await;
        } else {
            let _ = monoio::time::timeout(http.send_timeout, self.stream.shutdown()).await;
        }
    }

    /// Reads the next request head. `Ok(None)`: the connection ended quietly (client
    /// closed, idle timeout, or the worker is draining).
    async fn read_head(&mut self) -> Result<Option<RequestHead>, ProxyError> {
        // Between exchanges the limits come from the current generation, not the last
        // exchange's (a short look at the pointer, not held across the reads).
        let (limits, header_timeout, keepalive_timeout) = {
            let generation = self.ctx.live.load();
            let http = &generation.config.http;
            let limits = HeadLimits {
                max_request_line: http.max_request_line_bytes,
                max_head_bytes: http.max_header_bytes,
                max_headers: http.max_headers,
            };
            (limits, http.client_header_timeout, http.keepalive_timeout)
        };
        if self.rbuf.is_empty() && !self.stream.has_buffered() {
            if self.served > 0 {
                // Idle keep-alive: hold no read buffer while nothing arrives.
                self.rbuf = BytesMut::new();
                self.stream.release_buffers();
            }
            if self.ctx.draining.is_raised() {
                return Ok(None);
            }
            let idle = if self.served == 0 {
                header_timeout
            } else {
                keepalive_timeout
            };
            let ready = monoio::select! {
                r = monoio::time::timeout(idle, self.stream.readable()) => r,
                _ = self.ctx.draining.wait() => return Ok(None),
            };
            match ready {
                Ok(Ok(())) => {}
                // Idle too long, or the socket failed: close without a word, like nginx.
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
        let deadline = Instant::now() + header_timeout;
        loop {
            if !self.rbuf.is_empty() {
                match parse::parse_request(&self.rbuf, &limits) {
                    Parsed::Complete(raw, used) => {
                        return parse::take_request(&mut self.rbuf, raw, used)
                            .map(Some)
                            .map_err(|r| {
                                ProxyError::new(
                                    Side::Downstream,
                                    Kind::BadRequest(r.fault),
                                    r.reason,
                                )
                            });
                    }
                    Parsed::Incomplete => {}
                    Parsed::Invalid(r) => {
                        return Err(ProxyError::new(
                            Side::Downstream,
                            Kind::BadRequest(r.fault),
                            r.reason,
                        ));
                    }
                }
            }
            let read =
                monoio::time::timeout_at(deadline, self.stream.read(&mut self.rbuf, HEAD_READ))
                    .await;
            match read {
                Ok(Ok(0)) if self.rbuf.is_empty() => return Ok(None),
                Ok(Ok(0)) => {
                    return Err(ProxyError::new(
                        Side::Downstream,
                        Kind::ClientGone,
                        "closed mid-head",
                    ));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(ProxyError::io(
                        Side::Downstream,
                        Kind::ClientGone,
                        "read failed",
                        e,
                    ));
                }
                Err(_) if self.rbuf.is_empty() => return Ok(None),
                Err(_) => {
                    return Err(ProxyError::new(
                        Side::Downstream,
                        Kind::ClientTimeout,
                        "request head not received within client_header_timeout",
                    ));
                }
            }
        }
    }

    /// Sends a response generated by the proxy.
    pub(crate) async fn respond(
        &mut self,
        status: u16,
        reason: &str,
        version: Version,
        keep_alive: bool,
    ) {
        let mut out = BytesMut::with_capacity(256);
        write::simple_response(&mut out, status, reason, version, keep_alive);
        self.status = status;
        let _ = self.write_client(out.freeze()).await;
    }

    /// Writes to the client within `send_timeout_ms`.
    pub(crate) async fn write_client(&mut self, data: Bytes) -> Result<(), ProxyError> {
        let t = self.generation.config.http.send_timeout;
        match monoio::time::timeout(t, self.stream.write(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProxyError::io(
                Side::Downstream,
                Kind::ClientGone,
                "write failed",
                e,
            )),
            Err(_) => Err(ProxyError::new(
                Side::Downstream,
                Kind::ClientTimeout,
                "client did not read within send_timeout",
            )),
        }
    }

    /// Reads more of the request body within `client_body_timeout_ms`; 0 means EOF.
    pub(crate) async fn read_client_body(&mut self, want: usize) -> Result<usize, ProxyError> {
        let t = self.generation.config.http.client_body_timeout;
        match monoio::time::timeout(t, self.stream.read(&mut self.rbuf, want)).await {
            Ok(Ok(0)) => Err(ProxyError::new(
                Side::Downstream,
                Kind::ClientGone,
                "closed mid-body",
            )),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ProxyError::io(
                Side::Downstream,
                Kind::ClientGone,
                "body read failed",
                e,
            )),
            Err(_) => Err(ProxyError::new(
                Side::Downstream,
                Kind::ClientTimeout,
                "request body stalled beyond client_body_timeout",
            )),
        }
    }
}
