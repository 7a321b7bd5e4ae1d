//! ⑤ Tunnels: a connection after the upstream switched protocols (`101`, a WebSocket or
//! another protocol the route's `upgrade` allows). From here on the bytes are not HTTP:
//! they are copied both ways as they are until both sides have closed.
//!
//! - **Half-close.** When one side sends EOF, the other side's write direction is shut
//!   (`shutdown(SHUT_WR)`; towards a TLS client close_notify first) and the other
//!   direction goes on until its EOF too — a client that shuts its write side still
//!   receives what the upstream sends after it.
//! - **Idle timeout.** No byte either way for the route's (else `[http]`)
//!   `tunnel_idle_timeout_ms` ends the tunnel (nginx: `proxy_read_timeout` on a
//!   WebSocket location). A write that stalls beyond `send_timeout_ms` (client) or the
//!   upstream's `write_timeout_ms` ends it too: a write that failed or timed out always
//!   closes both connections.
//! - **Cap.** A worker holds at most `[http] max_tunnels` tunnels, counting upgrades
//!   admitted and on their way to the upstream ([`TunnelSlot`]); the exchange answers
//!   one more with 503. `ringgate_tunnels_active` is that count;
//!   `ringgate_tunnels_total{outcome}` counts how each ended ([`TunnelEnd`]).
//! - The upstream connection is never pooled again: the [`Lease`] is dropped at the end.
//!
//! Bytes are copied through buffers, also over plain TCP and kernel TLS (where a splice
//! could move them in the kernel: not done yet). Over userspace rustls the client's
//! bytes are decrypted and encrypted by its [`ClientStream`]. No status codes here:
//! once the 101 went out, the only signal left is closing.
//!
//! Cancellation: the upstream read and write futures live until they complete (a read
//! buffer is never lent across an await that may be dropped); the client read runs
//! only after the socket is readable, within the idle timeout. Dropping [`run`] (the
//! worker shutting down) drops both connections.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::OwnedReadHalf;
use monoio::net::TcpStream;

use crate::clock::{self, Deadline};
use crate::context::WorkerCtx;
use crate::observe::{Local, TunnelEnd};
use crate::transport::{ClientStream, read_tcp, write_tcp};
use crate::upstream::{Lease, UpstreamWriter};

/// Bytes read per step either way (two TLS records).
const CHUNK: usize = 32 * 1024;

/// One of the worker's `max_tunnels` places, held from the upgrade's admission to the
/// tunnel's end (dropping it frees the place).
pub struct TunnelSlot {
    metrics: Local,
}

impl TunnelSlot {
    /// A place, unless the worker already holds `max` tunnels.
    pub(super) fn take(ctx: &WorkerCtx, max: u64) -> Option<TunnelSlot> {
        let active = &ctx.metrics.tunnels_active;
        if active.get() >= max {
            return None;
        }
        active.inc();
        Some(TunnelSlot {
            metrics: ctx.metrics.clone(),
        })
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.metrics.tunnels_active.dec();
    }
}

/// An upstream connection that switched protocols, on its way from the exchange to the
/// session's tunnel.
pub struct Upgraded {
    pub(super) lease: Lease,
    /// Bytes the upstream sent after its 101 head (already read).
    pub(super) pending: BytesMut,
    /// The route's (else `[http]`) `tunnel_idle_timeout_ms`.
    pub(super) idle_timeout: Duration,
    pub(super) slot: TunnelSlot,
}

/// An upgraded upstream connection taken apart for a session that copies the bytes
/// itself (HTTP/2: the stream's DATA frames, `crate::http2`): the socket's two halves,
/// what the upstream sent after its `101`, the timeouts. The lease (the connection is
/// never pooled again) and the tunnel's place among `max_tunnels` are held until it is
/// dropped, which counts how the tunnel ended (`ringgate_tunnels_total`): as
/// [`Ends::finish`] said, else (the session dropped the tunnel: the client reset its
/// stream, the connection was lost) `error`.
pub struct Ends {
    pub reader: OwnedReadHalf<TcpStream>,
    pub writer: UpstreamWriter,
    /// Bytes the upstream sent after its 101 head (already read): they go first.
    pub pending: BytesMut,
    /// The route's (else `[http]`) `tunnel_idle_timeout_ms`.
    pub idle_timeout: Duration,
    /// The upstream's `write_timeout_ms`, for each write to it.
    pub write_timeout: Duration,
    end: TunnelEnd,
    _lease: Lease,
    slot: TunnelSlot,
}

impl Upgraded {
    /// The connection taken apart ([`Ends`]); `None` when its stream is not whole (it
    /// is then dropped: closed).
    pub fn into_ends(self) -> Option<Ends> {
        let Upgraded {
            mut lease,
            pending,
            idle_timeout,
            slot,
        } = self;
        let write_timeout = lease.upstream().write_timeout;
        let (reader, writer) = lease.stream.take_halves()?;
        Some(Ends {
            reader,
            writer,
            pending,
            idle_timeout,
            write_timeout,
            end: TunnelEnd::Error,
            _lease: lease,
            slot,
        })
    }
}

impl Ends {
    /// The tunnel ended this way: counted, the upstream connection closed and the
    /// tunnel's place freed.
    pub fn finish(mut self, end: TunnelEnd) {
        self.end = end;
    }
}

impl Drop for Ends {
    fn drop(&mut self) {
        self.slot.metrics.tunnels[self.end as usize].inc();
    }
}

/// What a tunnel carried, and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    pub end: TunnelEnd,
    /// Bytes from the client to the upstream.
    pub to_upstream: u64,
    /// Bytes from the upstream to the client.
    pub to_client: u64,
}

type UpstreamWrite = Pin<Box<dyn Future<Output = (UpstreamWriter, io::Result<()>)>>>;

/// Copies bytes both ways between `client` and the upgraded upstream until both sides
/// closed, one failed or stalled, or the tunnel was idle for its timeout; `client_pending`
/// holds client bytes the session read past the request head (they go first).
/// `send_timeout` bounds each write to the client.
pub async fn run(
    ctx: &WorkerCtx,
    send_timeout: Duration,
    client: &mut ClientStream,
    client_pending: &mut BytesMut,
    up: Upgraded,
) -> Carried {
    let Upgraded {
        mut lease,
        pending,
        idle_timeout,
        slot,
    } = up;
    let mut t = Tunnel {
        carried: Carried {
            end: TunnelEnd::Error,
            to_upstream: 0,
            to_client: 0,
        },
        idle_timeout,
        send_timeout,
        write_timeout: lease.upstream().write_timeout,
        last: clock::now(),
        deadline: Deadline::new(),
    };
    t.carried.end = t.copy(&mut lease, client, client_pending, pending).await;
    ctx.metrics.tunnels[t.carried.end as usize].inc();
    drop(slot);
    t.carried
}

struct Tunnel {
    carried: Carried,
    idle_timeout: Duration,
    send_timeout: Duration,
    write_timeout: Duration,
    /// When a byte last moved either way.
    last: monoio::time::Instant,
    /// The client side's timer (its reads, writes and readiness waits, one at a time):
    /// the same kind of step the session takes, so the same code serves both.
    deadline: Deadline,
}

/// Which side closed first, once one has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum First {
    Nobody,
    Client,
    Upstream,
}

impl First {
    /// How a tunnel that both sides closed ended.
    fn end(self) -> TunnelEnd {
        match self {
            First::Upstream => TunnelEnd::ClosedUpstream,
            First::Client | First::Nobody => TunnelEnd::ClosedClient,
        }
    }
}

/// What the client side did in one wait.
enum ClientStep {
    /// Bytes (or EOF: empty) to pass on.
    Read(Bytes),
    /// Nothing within the idle timeout from the last byte either way.
    Idle,
    /// A read failed.
    Failed,
    /// Nothing yet; look again.
    Again,
}

impl Tunnel {
    /// The copy loop; returns how it ended.
    async fn copy(
        &mut self,
        lease: &mut Lease,
        client: &mut ClientStream,
        client_pending: &mut BytesMut,
        up_pending: BytesMut,
    ) -> TunnelEnd {
        let Some((mut reader, writer)) = lease.stream.take_halves() else {
            return TunnelEnd::Error;
        };
        let mut writer = Some(writer);
        let mut writing: Option<UpstreamWrite> = None;
        let mut first = First::Nobody;
        let (mut client_eof, mut up_eof) = (false, false);
        // Bytes either side sent along with the switch go first.
        if !up_pending.is_empty() && !self.send_client(client, up_pending.freeze()).await {
            return TunnelEnd::Error;
        }
        let mut cbuf = std::mem::take(client_pending);
        if !cbuf.is_empty() {
            let data = cbuf.split().freeze();
            self.carried.to_upstream += data.len() as u64;
            writing = start_write(&mut writer, data, self.write_timeout, false);
        }
        let mut ubuf = BytesMut::new();
        loop {
            // One upstream read per round, alive until it completes (never dropped
            // mid-way: its buffer is `ubuf`, which nothing else touches meanwhile).
            let got = {
                let read = async {
                    if up_eof {
                        std::future::pending().await
                    } else {
                        read_tcp(&mut reader, &mut ubuf, CHUNK).await
                    }
                };
                let mut read = std::pin::pin!(read);
                loop {
                    if client_eof && up_eof && writing.is_none() {
                        return first.end();
                    }
                    let want_client = !client_eof && writing.is_none();
                    let idle_at = self.last + self.idle_timeout;
                    monoio::select! {
                        biased;
                        r = &mut read => break r,
                        w = wait_write(&mut writing) => {
                            writing = None;
                            match w {
                                (wr, Ok(())) => writer = Some(wr),
                                (_, Err(e)) => {
                                    tracing::debug!(error = %e, "tunnel: upstream write failed");
                                    return TunnelEnd::Error;
                                }
                            }
                        }
                        ready = self.client_ready(client), if want_client => {
                            // The read runs in the branch, never dropped by the select:
                            // a read cut off mid-way would leave a gap in the stream.
                            let step = match ready {
                                ClientStep::Again => continue,
                                ClientStep::Read(_) => self.read_client(client, &mut cbuf).await,
                                other => other,
                            };
                            match step {
                                ClientStep::Read(data) if data.is_empty() => {
                                    client_eof = true;
                                    if first == First::Nobody {
                                        first = First::Client;
                                    }
                                    // Passed on as the upstream's EOF (an empty write,
                                    // then the shutdown).
                                    writing =
                                        start_write(&mut writer, data, self.write_timeout, true);
                                }
                                ClientStep::Read(data) => {
                                    self.carried.to_upstream += data.len() as u64;
                                    writing =
                                        start_write(&mut writer, data, self.write_timeout, false);
                                }
                                ClientStep::Idle => return TunnelEnd::IdleTimeout,
                                ClientStep::Failed => return TunnelEnd::Error,
                                ClientStep::Again => {}
                            }
                        }
                        _ = monoio::time::sleep_until(idle_at), if !want_client => {
                            if clock::now() >= self.last + self.idle_timeout {
                                return TunnelEnd::IdleTimeout;
                            }
                        }
                    }
                }
            };
            match got {
                Ok(0) => {
                    up_eof = true;
                    if first == First::Nobody {
                        first = First::Upstream;
                    }
                    // The upstream's EOF, passed on: close_notify (TLS) and FIN.
                    let shutdown = Box::pin(client.shutdown());
                    let _ = self.deadline.within(self.send_timeout, shutdown).await;
                }
                Ok(_) => {
                    self.last = clock::now();
                    let data = ubuf.split().freeze();
                    if !self.send_client(client, data).await {
                        return TunnelEnd::Error;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel: upstream read failed");
                    return TunnelEnd::Error;
                }
            }
        }
    }

    /// Completes when the client has bytes (or EOF) to read — `Read` with nothing in
    /// it — or the tunnel has been idle for its timeout. Cancel-safe: the wait holds no
    /// buffer.
    async fn client_ready(&mut self, client: &ClientStream) -> ClientStep {
        if client.has_buffered() {
            return ClientStep::Read(Bytes::new());
        }
        let left = (self.last + self.idle_timeout).saturating_duration_since(clock::now());
        match self.deadline.within(left, client.readable()).await {
            Ok(Ok(())) => ClientStep::Read(Bytes::new()),
            Ok(Err(_)) => ClientStep::Failed,
            // Bytes may have moved the other way meanwhile.
            Err(_) if clock::now() < self.last + self.idle_timeout => ClientStep::Again,
            Err(_) => ClientStep::Idle,
        }
    }

    /// Reads what the client sent (after [`Tunnel::client_ready`]), within the idle
    /// timeout; `Read` with nothing in it is its EOF.
    async fn read_client(&mut self, client: &mut ClientStream, cbuf: &mut BytesMut) -> ClientStep {
        match self
            .deadline
            .within(self.idle_timeout, client.read(cbuf, CHUNK))
            .await
        {
            Ok(Ok(_)) => {
                self.last = clock::now();
                ClientStep::Read(cbuf.split().freeze())
            }
            Ok(Err(_)) => ClientStep::Failed,
            Err(_) => ClientStep::Idle,
        }
    }

    /// Writes `data` to the client within `send_timeout`; `false`: it failed or stalled.
    async fn send_client(&mut self, client: &mut ClientStream, data: Bytes) -> bool {
        let n = data.len() as u64;
        match self
            .deadline
            .within(self.send_timeout, client.write(data))
            .await
        {
            Ok(Ok(())) => {
                self.carried.to_client += n;
                self.last = clock::now();
                true
            }
            _ => false,
        }
    }
}

/// Hands `data` to an upstream write that owns the write half until it completes (within
/// `timeout`), then shuts the write side when `eof`.
fn start_write(
    writer: &mut Option<UpstreamWriter>,
    data: Bytes,
    timeout: Duration,
    eof: bool,
) -> Option<UpstreamWrite> {
    let mut wr = writer.take()?;
    Some(Box::pin(async move {
        let r = monoio::time::timeout(timeout, write_tcp(&mut wr, data)).await;
        let r = match r {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "upstream did not read within write_timeout",
            )),
        };
        if r.is_ok() && eof {
            let _ = monoio::io::AsyncWriteRent::shutdown(&mut wr).await;
        }
        (wr, r)
    }))
}

/// Completes with the upstream write in flight (never, when there is none).
async fn wait_write(writing: &mut Option<UpstreamWrite>) -> (UpstreamWriter, io::Result<()>) {
    match writing.as_mut() {
        Some(w) => w.await,
        None => std::future::pending().await,
    }
}
