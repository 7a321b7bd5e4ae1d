//! ⑧ The byte stream an upstream HTTP/2 connection ([`super::h2`]) runs on: tokio's
//! `AsyncRead`/`AsyncWrite` (the traits `h2` speaks, no tokio runtime) over monoio's
//! completion-based TCP, with an owned read buffer and an owned write queue.
//!
//! Why not monoio's `poll-io` bridge (`TcpStream::into_poll_io`, which works): the
//! feature makes every turn of every worker's io_uring loop check (and re-arm) an epoll
//! poller, paid by HTTP/1.1 connections too; this adapter costs nothing to connections
//! that do not use it, and is the shape the userspace-TLS upstream stream needs anyway
//! (a write queue the adapter owns). Measured by `loadtest/callgrind_cost.sh`, HTTP/1.1
//! keep-alive: base 33,260 instructions per request; with poll-io 33,632; this adapter
//! on `Bytes` buffers 33,588; on `Vec` buffers (below) 33,407. The rest of the
//! difference is inlining moved by the new code (functions this module never calls,
//! e.g. the TLS driver's read, now outlined), not work on the HTTP/1.1 path.
//!
//! Reads: one io_uring read at a time into the adapter's buffer (its future owns the
//! read half and the buffer), handed to h2 as it asks. Writes: h2's bytes are queued and
//! accepted at once up to [`QUEUE_LIMIT`] (then `Pending`: backpressure); one write at a
//! time sends the queue. A failed write fails every later write and flush: h2 then
//! ends the connection. Dropping the adapter drops the operations in flight (monoio
//! cancels them; the buffers stay with the driver until the kernel is done). Nothing
//! here chooses a status: errors go to h2, which fails the connection's streams.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked of one read: a 16 KiB DATA frame and its header, twice.
const READ_SIZE: usize = 32 * 1024;
/// Written bytes queued before `poll_write` waits for the write in flight.
const QUEUE_LIMIT: usize = 64 * 1024;

type Reader = OwnedReadHalf<TcpStream>;
type Writer = OwnedWriteHalf<TcpStream>;
// The operations own `Vec<u8>` buffers, not the `Bytes`/`BytesMut` of the HTTP/1.1 path:
// their own instantiations of monoio's read and write, so the HTTP/1.1 path's keep
// their inlining (sharing them cost it 181 instructions per request, callgrind).
type ReadFuture = Pin<Box<dyn Future<Output = (Reader, Vec<u8>, io::Result<usize>)>>>;
type WriteFuture = Pin<Box<dyn Future<Output = (Writer, io::Result<()>)>>>;

/// One direction's half: idle (here) or out with its operation.
enum Half<H, F> {
    Idle(H),
    Busy(F),
    /// Only while it changes state, or after the operation's future was lost.
    Gone,
}

/// A TCP connection as h2's byte stream.
pub struct H2Io {
    rd: Half<Reader, ReadFuture>,
    /// Read, not yet handed to h2: `inbuf[inpos..]`.
    inbuf: Vec<u8>,
    inpos: usize,
    eof: bool,
    wr: Half<Writer, WriteFuture>,
    /// Written by h2, not yet handed to a write.
    queue: BytesMut,
    /// A write failed: the stream takes no more.
    failed: Option<io::ErrorKind>,
}

impl H2Io {
    pub fn new(tcp: TcpStream) -> H2Io {
        let (rd, wr) = tcp.into_split();
        H2Io {
            rd: Half::Idle(rd),
            inbuf: Vec::new(),
            inpos: 0,
            eof: false,
            wr: Half::Idle(wr),
            queue: BytesMut::new(),
            failed: None,
        }
    }

    /// Moves the write side along: completes the write in flight, starts the next.
    /// `Ok` with a write still in flight means its completion will wake `cx`.
    fn drive_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if let Some(kind) = self.failed {
                return Err(kind.into());
            }
            match std::mem::replace(&mut self.wr, Half::Gone) {
                Half::Busy(mut w) => match w.as_mut().poll(cx) {
                    Poll::Ready((wr, r)) => {
                        self.wr = Half::Idle(wr);
                        if let Err(e) = r {
                            self.failed = Some(e.kind());
                            return Err(e);
                        }
                    }
                    Poll::Pending => {
                        self.wr = Half::Busy(w);
                        return Ok(());
                    }
                },
                Half::Idle(mut wr) => {
                    if self.queue.is_empty() {
                        self.wr = Half::Idle(wr);
                        return Ok(());
                    }
                    let data = self.queue.split().to_vec();
                    self.wr = Half::Busy(Box::pin(async move {
                        let (r, _) = wr.write_all(data).await;
                        (wr, r.map(|_| ()))
                    }));
                }
                Half::Gone => {
                    self.failed = Some(io::ErrorKind::BrokenPipe);
                }
            }
        }
    }

    fn write_idle(&self) -> bool {
        matches!(self.wr, Half::Idle(_)) && self.queue.is_empty()
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.inpos < this.inbuf.len() {
                let n = (this.inbuf.len() - this.inpos).min(buf.remaining());
                buf.put_slice(&this.inbuf[this.inpos..this.inpos + n]);
                this.inpos += n;
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.rd, Half::Gone) {
                Half::Idle(mut rd) => {
                    let mut b = std::mem::take(&mut this.inbuf);
                    b.clear();
                    b.reserve(READ_SIZE);
                    this.inpos = 0;
                    this.rd = Half::Busy(Box::pin(async move {
                        let (r, b) = rd.read(b).await;
                        (rd, b, r)
                    }));
                }
                Half::Busy(mut f) => match f.as_mut().poll(cx) {
                    Poll::Ready((rd, b, r)) => {
                        this.rd = Half::Idle(rd);
                        this.inbuf = b;
                        match r {
                            Ok(0) => this.eof = true,
                            Ok(_) => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                    Poll::Pending => {
                        this.rd = Half::Busy(f);
                        return Poll::Pending;
                    }
                },
                Half::Gone => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.drive_write(cx)?;
        if this.queue.len() >= QUEUE_LIMIT {
            // The write in flight wakes us (drive_write polled it).
            return Poll::Pending;
        }
        this.queue.extend_from_slice(data);
        // Starts (and polls, so that it is submitted) a write when none is in flight.
        this.drive_write(cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.drive_write(cx)?;
        if this.write_idle() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything queued goes out; the socket closes when the adapter is dropped.
        ready!(self.poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }
}
