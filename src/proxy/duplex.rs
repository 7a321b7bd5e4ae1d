//! Full duplex: the request body keeps flowing to the upstream while its response is
//! already being read and relayed.
//!
//! An upstream may answer before it has read the whole request body — an echo that
//! streams as it reads, or an early 413 — and then stop reading once its send buffer is
//! full. A proxy that first writes the whole body and only then reads would wait on a
//! write that never completes. So while the body is not all sent, every read of the
//! response goes through [`pumped_read`], which keeps moving body bytes
//! (session's [`BodySource`] → [`Pump`] queue → upstream write half) as it waits. Nothing
//! here is ever cancelled with bytes in flight: the upstream read future lives until it
//! completes, the write future lives in the pump, and the client is read only when the
//! source says it is ready.
//!
//! When the upstream stops reading (a write fails or exceeds `write_timeout_ms`), the
//! pump stops: the rest of the body stays unread, the response is still relayed, then
//! both connections close (the client's with a lingering close). Client-side failures
//! (closed or stalled mid-body, bad chunk framing, too large) are returned as
//! downstream errors and answered like on the sequential path (400/408/413).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::time::error::Elapsed;

use super::upstream_io::{
    BODY_READ, READ_FAILED, READ_TIMED_OUT, Upload, WRITE_FAILED, WRITE_TIMED_OUT, upstream_read,
};
use super::{BodySource, ResponseSink};
use crate::error::ProxyError;
use crate::transport::write_tcp;
use crate::upstream::{Lease, UpstreamWriter};

/// Body bytes queued for the upstream before the client is read again (backpressure).
const QUEUE_LIMIT: usize = 2 * BODY_READ;

type WriteFuture = Pin<Box<dyn Future<Output = (UpstreamWriter, Result<(), ProxyError>)>>>;

/// The request body on its way upstream while the response is read.
pub(super) struct Pump {
    /// The upstream's write half while no write is in flight.
    wr: Option<UpstreamWriter>,
    /// Body bytes in the upstream's framing, not yet handed to a write.
    queue: BytesMut,
    writing: Option<WriteFuture>,
    /// The upstream stopped reading: nothing more is sent.
    stopped: bool,
    write_timeout: Duration,
}

impl Pump {
    /// Takes the lease's write half; `first` is body bytes already read from the client.
    pub(super) fn start(lease: &mut Lease, first: Bytes) -> Option<Pump> {
        let write_timeout = lease.upstream().write_timeout;
        let wr = lease.stream.take_writer()?;
        let mut pump = Pump {
            wr: Some(wr),
            queue: BytesMut::from(&first[..]),
            writing: None,
            stopped: false,
            write_timeout,
        };
        pump.start_write();
        Some(pump)
    }

    /// Hands the queued bytes to a write when none is in flight.
    fn start_write(&mut self) {
        if self.writing.is_some() || self.stopped || self.queue.is_empty() {
            return;
        }
        let Some(mut wr) = self.wr.take() else {
            return;
        };
        let data = self.queue.split().freeze();
        let t = self.write_timeout;
        self.writing = Some(Box::pin(async move {
            let r = monoio::time::timeout(t, write_tcp(&mut wr, data)).await;
            (wr, ProxyError::timed(r, WRITE_FAILED, WRITE_TIMED_OUT))
        }));
    }

    /// Completes with the write in flight (never, when there is none).
    async fn write_done(&mut self) -> (UpstreamWriter, Result<(), ProxyError>) {
        match self.writing.as_mut() {
            Some(w) => w.await,
            None => std::future::pending().await,
        }
    }

    fn wrote(&mut self, (wr, r): (UpstreamWriter, Result<(), ProxyError>)) {
        self.writing = None;
        match r {
            Ok(()) => self.wr = Some(wr),
            Err(e) => {
                // The upstream may still answer (e.g. 413): keep reading, send no more.
                tracing::debug!(error = %e, "upstream stopped reading the request body");
                self.stopped = true;
                self.queue.clear();
            }
        }
    }

    /// Nothing more will be sent: the body is all written, or the upstream stopped.
    fn finished(&self, body_done: bool) -> bool {
        self.stopped || (body_done && self.queue.is_empty() && self.writing.is_none())
    }
}

/// Reads response bytes from the upstream into `ubuf` while the request body keeps
/// flowing through `pump`; `Ok(0)` is the upstream closing. When the pump finishes
/// (the body all sent, or the upstream stopped reading) it is removed from `slot`
/// (`sent_all` says which) and the lease's stream is joined again.
pub(super) async fn pumped_read<S: BodySource + ResponseSink>(
    upload: &mut Upload,
    lease: &mut Lease,
    ubuf: &mut BytesMut,
    slot: &mut Option<Pump>,
    sent_all: &mut bool,
    body: &mut S,
    want: usize,
) -> Result<usize, ProxyError> {
    let Some(pump) = slot.as_mut() else {
        return upstream_read(lease, ubuf, want, body.deadline()).await;
    };
    // Boxed: the common case (no body left to send) does not carry its room.
    let read = Box::pin(read_pumping(upload, lease, ubuf, pump, body, want)).await?;
    if pump.finished(body.is_done()) {
        *sent_all = !pump.stopped;
        if let Some(wr) = pump.wr.take()
            && !pump.stopped
        {
            lease.stream.give_writer(wr);
        }
        *slot = None;
    }
    ProxyError::timed(read, READ_FAILED, READ_TIMED_OUT)
}

/// The response read of [`pumped_read`], moving body bytes through `pump`
/// while it waits. `Err` is a client-side failure; the read's own outcome is `Ok`.
async fn read_pumping<S: BodySource>(
    upload: &mut Upload,
    lease: &mut Lease,
    ubuf: &mut BytesMut,
    pump: &mut Pump,
    body: &mut S,
    want: usize,
) -> Result<Result<io::Result<usize>, Elapsed>, ProxyError> {
    let read_timeout = lease.upstream().read_timeout;
    let read = lease.stream.read(ubuf, want);
    let mut read = std::pin::pin!(read);
    let done = loop {
        pump.start_write();
        if pump.finished(body.is_done()) {
            break None;
        }
        let want_client = !body.is_done() && !pump.stopped && pump.queue.len() < QUEUE_LIMIT;
        let writing = pump.writing.is_some();
        monoio::select! {
            biased;
            r = &mut read => break Some(r),
            w = pump.write_done(), if writing => pump.wrote(w),
            ready = body.ready(), if want_client => {
                ready?;
                body.receive().await?;
                upload.take(body, &mut pump.queue)?;
            }
        }
    };
    // With nothing left to send, the read waits like any other response read.
    Ok(match done {
        Some(r) => Ok(r),
        None => monoio::time::timeout(read_timeout, read).await,
    })
}
