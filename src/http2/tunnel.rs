//! ④ An RFC 8441 tunnel: one HTTP/2 stream whose extended CONNECT the upstream switched
//! (`101`, [`crate::proxy::exchange`]), its DATA copied both ways with the upgraded
//! HTTP/1.1 upstream connection until both sides closed.
//!
//! - **Client → upstream.** Each DATA frame is written upstream (within the upstream's
//!   `write_timeout_ms`) and only then its bytes released to the stream's receive
//!   window: a slow upstream holds the client's window, not the proxy's memory. The
//!   client's END_STREAM shuts the upstream's write side (half-close).
//! - **Upstream → client.** One upstream read (at most [`CHUNK`]) at a time, sent as
//!   DATA only as the stream's send window allows ([`super::stream::send_windowed`],
//!   each wait within `send_timeout_ms`): a client that stops reading holds the upstream
//!   read, not memory; a window held shut longer ends the tunnel (counted by the session
//!   as `zero_window`). The upstream's EOF becomes END_STREAM.
//! - **Ends.** Both directions closed → the tunnel ends in order; no byte either way
//!   for the route's (else `[http]`) `tunnel_idle_timeout_ms`, a failed or stalled
//!   write, a client RST_STREAM or the connection's loss → it ends at once: the upstream
//!   connection is closed (never pooled) and the session resets the stream (CANCEL)
//!   unless it ended. Counted in `ringgate_tunnels_total{outcome}` like HTTP/1.1's.
//!
//! No status codes here: the `200` went out before. Cancellation: dropping [`run`] (the
//! session does when the client resets the stream) drops both directions and the
//! upstream connection with them, counted as `error`; nothing outlives it.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use monoio::io::{AsyncWriteRent, OwnedReadHalf};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::stream::{Out, Stop, send_windowed};
use crate::clock::{self, Deadline};
use crate::context::WorkerCtx;
use crate::observe::TunnelEnd;
use crate::proxy::Upgraded;
use crate::proxy::tunnel::{Carried, Ends};
use crate::transport::{read_tcp, write_tcp};
use crate::upstream::UpstreamWriter;

/// Bytes read from the upstream per step (at most this much waits for window).
const CHUNK: usize = 32 * 1024;

/// Copies the stream's DATA (`recv`, `out`) and the upgraded upstream connection both
/// ways to the end (see the module doc); `send_timeout` bounds each wait for window.
/// Returns what it carried, and whether it ended because the window stayed shut.
pub(super) async fn run(
    ctx: &WorkerCtx,
    up: Upgraded,
    recv: &RefCell<RecvStream>,
    out: &RefCell<Out>,
    send_timeout: Duration,
) -> (Carried, bool) {
    let mut carried = Carried {
        end: TunnelEnd::Error,
        to_upstream: 0,
        to_client: 0,
    };
    let Some(mut ends) = up.into_ends() else {
        ctx.metrics.tunnels[TunnelEnd::Error as usize].inc();
        return (carried, false);
    };
    let shut = Cell::new(false);
    let last = Cell::new(clock::now());
    let (carried_up, carried_down) = (Cell::new(0u64), Cell::new(0u64));
    let end = {
        let Ends {
            reader,
            writer,
            pending,
            idle_timeout,
            write_timeout,
            ..
        } = &mut ends;
        let pending = std::mem::take(pending);
        let mut down = std::pin::pin!(to_client(
            reader,
            pending,
            out,
            send_timeout,
            &last,
            &carried_down,
            &shut
        ));
        let mut up = std::pin::pin!(to_upstream(
            writer,
            recv,
            *write_timeout,
            &last,
            &carried_up
        ));
        let mut idle = std::pin::pin!(idle(&last, *idle_timeout));
        let (mut down_done, mut up_done) = (false, false);
        let mut first: Option<TunnelEnd> = None;
        loop {
            if down_done && up_done {
                break first.unwrap_or(TunnelEnd::ClosedClient);
            }
            monoio::select! {
                r = &mut down, if !down_done => match r {
                    Ok(()) => {
                        down_done = true;
                        first.get_or_insert(TunnelEnd::ClosedUpstream);
                    }
                    Err(()) => break TunnelEnd::Error,
                },
                r = &mut up, if !up_done => match r {
                    Ok(()) => {
                        up_done = true;
                        first.get_or_insert(TunnelEnd::ClosedClient);
                    }
                    Err(()) => break TunnelEnd::Error,
                },
                _ = &mut idle => break TunnelEnd::IdleTimeout,
            }
        }
    };
    ends.finish(end);
    carried.end = end;
    carried.to_upstream = carried_up.get();
    carried.to_client = carried_down.get();
    (carried, shut.get())
}

/// Upstream → client: reads, then sends as DATA within the window; the upstream's EOF
/// ends the stream. `Err`: a read failed, the stream is gone or its window stayed shut
/// (then `shut` is set).
async fn to_client(
    reader: &mut OwnedReadHalf<TcpStream>,
    pending: BytesMut,
    out: &RefCell<Out>,
    send_timeout: Duration,
    last: &Cell<Instant>,
    sent: &Cell<u64>,
    shut: &Cell<bool>,
) -> Result<(), ()> {
    let mut deadline = Deadline::new();
    let mut send = async |data: Bytes, eos: bool| {
        let n = data.len() as u64;
        let sent_whole = send_windowed(out, &mut deadline, send_timeout, data, eos).await;
        if let Err(stop) = sent_whole {
            shut.set(matches!(stop, Stop::WindowShut));
            return Err(());
        }
        sent.set(sent.get() + n);
        last.set(clock::now());
        Ok::<(), ()>(())
    };
    if !pending.is_empty() {
        send(pending.freeze(), false).await?;
    }
    let mut buf = BytesMut::new();
    loop {
        match read_tcp(reader, &mut buf, CHUNK).await {
            Ok(0) => return send(Bytes::new(), true).await,
            Ok(_) => {
                last.set(clock::now());
                send(buf.split().freeze(), false).await?;
            }
            Err(e) => {
                tracing::debug!(error = %e, "RFC 8441 tunnel: upstream read failed");
                return Err(());
            }
        }
    }
}

/// Client → upstream: writes each DATA frame upstream, then releases its window; the
/// client's END_STREAM shuts the upstream's write side. `Err`: the stream was reset (or
/// the connection lost), or a write failed or stalled beyond `write_timeout`.
async fn to_upstream(
    writer: &mut UpstreamWriter,
    recv: &RefCell<RecvStream>,
    write_timeout: Duration,
    last: &Cell<Instant>,
    sent: &Cell<u64>,
) -> Result<(), ()> {
    loop {
        match poll_fn(|cx| recv.borrow_mut().poll_data(cx)).await {
            None => {
                let _ = monoio::time::timeout(write_timeout, writer.shutdown()).await;
                return Ok(());
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "RFC 8441 tunnel: client stream ended");
                return Err(());
            }
            Some(Ok(data)) => {
                let n = data.len();
                last.set(clock::now());
                match monoio::time::timeout(write_timeout, write_tcp(writer, data)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "RFC 8441 tunnel: upstream write failed");
                        return Err(());
                    }
                    Err(_) => {
                        tracing::debug!(
                            "RFC 8441 tunnel: upstream did not read within write_timeout"
                        );
                        return Err(());
                    }
                }
                // The upstream took the bytes: the client may send as many more.
                let _ = recv.borrow_mut().flow_control().release_capacity(n);
                sent.set(sent.get() + n as u64);
                last.set(clock::now());
            }
        }
    }
}

/// Completes once no byte moved either way for `timeout` (`last`: when one last did).
async fn idle(last: &Cell<Instant>, timeout: Duration) {
    loop {
        monoio::time::sleep_until(last.get() + timeout).await;
        if clock::now() >= last.get() + timeout {
            return;
        }
    }
}
