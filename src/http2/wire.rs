//! The bytes between h2 and the client's [`ClientStream`]: two in-memory queues h2 reads
//! and writes through tokio's `AsyncRead`/`AsyncWrite` traits ([`WireIo`]), and the
//! [`Driver`] that moves them over the stream with its ordinary owned-buffer reads and
//! writes (plain TCP, userspace rustls or kernel TLS alike), one at a time.
//!
//! The driver owns the write queue: h2 appends frames to `out` (up to [`OUT_LIMIT`],
//! then h2 waits), the driver writes them within `send_timeout_ms`; a write that failed
//! or timed out ends the connection (the stream refuses every later write). Reads wait
//! for readiness without a buffer, so a response that becomes ready while the client is
//! silent cancels the wait and goes out; the read itself then runs to its end. With no
//! stream at work ([`Driver::lean`]) that wait first drops the inbound queue's buffer,
//! the spent write queue's and the TLS layer's, as an idle HTTP/1.1 keep-alive
//! connection does (an idle connection then holds what h2 keeps, nothing more). Every
//! inbound byte passes the [`FrameScan`], which counts control frames per second —
//! h2 has no budget of its own for PING, SETTINGS, PRIORITY, RST_STREAM, WINDOW_UPDATE
//! or empty DATA — and raises [`Wire::flood`] beyond the configured budget.
//!
//! Never panics on peer input; no I/O happens in the scanner.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use monoio::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock;
use crate::observe::H2Error;
use crate::transport::ClientStream;

/// Bytes h2 may queue for the client before it waits for the driver's write: two TLS
/// records' worth, so one write carries several frames.
const OUT_LIMIT: usize = 32 * 1024;
/// One read from the client: a TLS record's worth of frames.
const READ_SIZE: usize = 16 * 1024;
/// The client's connection preface (RFC 9113 §3.4), which the scanner skips.
const PREFACE_LEN: usize = 24;
/// The window the frame budgets count over.
const BUDGET_WINDOW: Duration = Duration::from_secs(1);

/// The two queues and what the scanner found.
pub(super) struct Wire {
    /// Plaintext read from the client, not yet taken by h2.
    inbound: BytesMut,
    /// Frames h2 wrote, not yet sent.
    out: BytesMut,
    /// The client closed its side (or a read failed): h2 reads end of stream.
    eof: bool,
    /// h2 shut its side down: nothing more will be written after `out`.
    shutdown: bool,
    /// Nothing more is read from the client (a flood budget was broken).
    halted: bool,
    scan: FrameScan,
    /// How often h2 was polled: a stream that queued frames at poll `n` sees them
    /// handed to the driver once `polls > n` and the driver is idle.
    polls: u64,
    /// The driver is writing (bytes taken from `out` are on their way).
    writing: bool,
    /// Stream tasks waiting for everything queued to be written ([`Wire::poll_sent`]).
    sent_waiters: Vec<Waker>,
}

impl Wire {
    /// `preread`: plaintext already read from the client (the preface that told h2c from
    /// HTTP/1.1, or bytes rustls decrypted before a kernel TLS switch).
    pub(super) fn new(preread: BytesMut, budgets: Budgets) -> Rc<RefCell<Wire>> {
        let mut scan = FrameScan::new(budgets);
        let mut preread = preread;
        let halted = match scan.feed(&preread) {
            Some(at) => {
                preread.truncate(at);
                true
            }
            None => false,
        };
        Rc::new(RefCell::new(Wire {
            inbound: preread,
            out: BytesMut::new(),
            eof: false,
            shutdown: false,
            halted,
            scan,
            polls: 0,
            writing: false,
            sent_waiters: Vec::new(),
        }))
    }

    /// A frame budget that was exceeded: the connection gets GOAWAY ENHANCE_YOUR_CALM.
    pub(super) fn flood(&self) -> Option<H2Error> {
        self.scan.flood
    }

    /// How often h2 has been polled so far (see [`Wire::poll_sent`]).
    pub(super) fn polls(&self) -> u64 {
        self.polls
    }

    /// Ready once every frame h2 had queued when it was polled for the `since`-th time
    /// is written to the client: h2 was polled since, and left nothing to write (`out`
    /// empty, no write in flight). A stream that answered early waits for this before
    /// h2 resets its unfinished request side, so that its response and the
    /// RST_STREAM(NO_ERROR) go in separate writes (TLS records): curl 7.88 fails a
    /// transfer whose reset it reads together with the response it has not yet taken.
    pub(super) fn poll_sent(&mut self, since: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.polls > since && self.out.is_empty() && !self.writing || self.shutdown {
            return Poll::Ready(());
        }
        self.sent_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// Stops reading: after a flood, nothing more the client sends is looked at.
    pub(super) fn stop_reading(&mut self) {
        self.halted = true;
        self.inbound.clear();
    }
}

/// h2's side of the queues.
pub(super) struct WireIo(pub(super) Rc<RefCell<Wire>>);

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut w = self.0.borrow_mut();
        if w.inbound.is_empty() {
            // End of stream, or wait: the driver polls h2 again after every read, in
            // this same task.
            return if w.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = w.inbound.len().min(buf.remaining());
        buf.put_slice(&w.inbound[..n]);
        w.inbound.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = self.0.borrow_mut();
        if w.shutdown {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = OUT_LIMIT.saturating_sub(w.out.len());
        if room == 0 {
            // The driver's write completing polls h2 again, in this same task.
            return Poll::Pending;
        }
        let n = room.min(data.len());
        if w.out.capacity() == 0 {
            // The first frame since the last write took the queue's buffer: one buffer
            // of the queue's whole size, not a string of doublings that copy what was
            // queued (callgrind, h2load -m10 over TLS: a 64 KiB response 502k → 431k
            // instructions; starting at 4 KiB instead, 485k — frame headers come first).
            w.out.reserve(OUT_LIMIT);
        }
        w.out.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued is as good as flushed: the driver writes `out` whenever it is not empty.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().shutdown = true;
        Poll::Ready(Ok(()))
    }
}

type Op<T> = Pin<Box<dyn Future<Output = T>>>;

/// What the driver's one stream operation is doing.
enum Io {
    Idle,
    /// Waiting for the client to send (no buffer held; dropped when output is ready).
    Readable(Op<io::Result<()>>),
    /// Reading into the inbound queue's buffer (owned by the read until it completes).
    Read(Op<io::Result<BytesMut>>),
    /// Writing `out`'s bytes (a failure or a timeout ends the connection).
    Write(Op<io::Result<()>>),
}

/// Moves the queues' bytes over the client's stream.
pub(super) struct Driver {
    stream: Rc<RefCell<ClientStream>>,
    wire: Rc<RefCell<Wire>>,
    io: Io,
    /// An operation failed: the stream is not used again.
    broken: bool,
    /// No stream is at work (the connection task says so): a wait for the client drops
    /// the read buffers first, as an idle HTTP/1.1 keep-alive connection does.
    pub(super) lean: bool,
    send_timeout: Duration,
    read_timeout: Duration,
}

impl Driver {
    pub(super) fn new(
        stream: ClientStream,
        wire: Rc<RefCell<Wire>>,
        send_timeout: Duration,
        read_timeout: Duration,
    ) -> Driver {
        Driver {
            stream: Rc::new(RefCell::new(stream)),
            wire,
            io: Io::Idle,
            broken: false,
            lean: false,
            send_timeout,
            read_timeout,
        }
    }

    /// Polls `h2` (which reads `inbound` and writes `out`) and moves bytes until `h2` is
    /// ready or both wait. `Err`: the stream failed (the connection is over).
    pub(super) fn drive<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut h2: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            self.wire.borrow_mut().polls += 1;
            if let Poll::Ready(v) = h2(cx) {
                return Poll::Ready(Ok(v));
            }
            if !self.step(cx)? {
                return Poll::Pending;
            }
        }
    }

    /// Writes what h2 queued until nothing is left, without polling h2 (the
    /// connection's last frames, after h2 is done). A read in flight runs to its end
    /// first (the stream does one thing at a time); its bytes are dropped.
    pub(super) fn poll_flushed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let progressed = match self.io {
                Io::Write(_) => self.step(cx)?,
                Io::Read(_) => {
                    let p = self.step(cx)?;
                    self.wire.borrow_mut().inbound.clear();
                    p
                }
                Io::Idle | Io::Readable(_) => {
                    self.io = Io::Idle;
                    if self.wire.borrow().out.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    self.start_write();
                    true
                }
            };
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    /// Closes the client's side (TLS close_notify, then FIN) within `send_timeout_ms`,
    /// then drops what the client still sends for `per_read`/`total` (its frames in
    /// flight): closing with unread bytes would reset the connection, and the client
    /// could lose the GOAWAY (nginx: `lingering_close`).
    pub(super) async fn close(mut self, per_read: Duration, total: Duration) {
        // The operation's future holds the stream: dropped first (a read's bytes are
        // not wanted any more; a write still in flight means the peer may hold half a
        // frame, and the stream then sends no close_notify).
        self.io = Io::Idle;
        let Ok(stream) = Rc::try_unwrap(self.stream) else {
            return;
        };
        let mut stream = stream.into_inner();
        let linger = Box::pin(stream.linger(per_read, total));
        let _ = monoio::time::timeout(self.send_timeout + total, linger).await;
    }

    /// One step of the stream operation; `Ok(true)`: something changed, poll h2 again.
    /// After a failure every step fails (the failed operation is never polled again).
    fn step(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let r = self.step_once(cx);
        if r.is_err() {
            self.broken = true;
            self.io = Io::Idle;
            // Nothing more is written: h2's later writes fail, and streams waiting
            // for their frames to go out stop waiting.
            let mut w = self.wire.borrow_mut();
            w.writing = false;
            w.shutdown = true;
            for waker in w.sent_waiters.drain(..) {
                waker.wake();
            }
        }
        r
    }

    #[allow(
        clippy::await_holding_refcell_ref,
        reason = "one stream operation at a time (`Io` is one enum): nothing else borrows the stream while it runs"
    )]
    fn step_once(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let out_ready = !self.wire.borrow().out.is_empty();
        match &mut self.io {
            Io::Idle => {
                if out_ready {
                    self.start_write();
                    return Ok(true);
                }
                let w = self.wire.borrow();
                if w.eof || w.halted || !w.inbound.is_empty() {
                    // h2 has what there is to read and waits for something else (a
                    // stream's data, its own wakers).
                    return Ok(false);
                }
                drop(w);
                if self.stream.borrow().has_buffered() {
                    self.start_read();
                } else {
                    if self.lean {
                        self.release_buffers();
                    }
                    let stream = self.stream.clone();
                    self.io = Io::Readable(Box::pin(async move {
                        let s = stream.borrow();
                        s.readable().await
                    }));
                }
                Ok(true)
            }
            Io::Readable(op) => {
                if out_ready {
                    // Output first: the wait holds no bytes, dropping it loses nothing.
                    self.io = Io::Idle;
                    return Ok(true);
                }
                match op.as_mut().poll(cx) {
                    Poll::Pending => Ok(false),
                    Poll::Ready(Ok(())) => {
                        self.start_read();
                        Ok(true)
                    }
                    Poll::Ready(Err(e)) => Err(e),
                }
            }
            Io::Read(op) => match op.as_mut().poll(cx) {
                Poll::Pending => Ok(false),
                Poll::Ready(r) => {
                    self.io = Io::Idle;
                    let mut w = self.wire.borrow_mut();
                    match r {
                        Ok(buf) if buf.is_empty() => w.eof = true,
                        Ok(mut buf) => {
                            if let Some(at) = w.scan.feed(&buf) {
                                // h2 sees nothing past the frame that broke the budget
                                // (its own budgets must not answer first), and the
                                // connection task is polled again to send GOAWAY.
                                buf.truncate(at);
                                w.halted = true;
                                cx.waker().wake_by_ref();
                            }
                            w.inbound = buf;
                        }
                        Err(e) => {
                            w.eof = true;
                            return Err(e);
                        }
                    }
                    Ok(true)
                }
            },
            Io::Write(_) => self.poll_write(cx),
        }
    }

    /// Drops the buffers an idle connection does not need (both queues are empty and no
    /// operation holds the stream): the inbound queue's, the spent write queue's, and
    /// the TLS layer's. The next read allocates them again.
    fn release_buffers(&mut self) {
        let mut w = self.wire.borrow_mut();
        if w.inbound.is_empty() {
            w.inbound = BytesMut::new();
        }
        if w.out.is_empty() {
            // `out` shares its allocation with the last write's bytes: let it go.
            w.out = BytesMut::new();
        }
        drop(w);
        self.stream.borrow_mut().release_buffers();
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let Io::Write(op) = &mut self.io else {
            return Ok(true);
        };
        let done = match op.as_mut().poll(cx) {
            Poll::Pending => return Ok(false),
            Poll::Ready(r) => r,
        };
        self.io = Io::Idle;
        let mut w = self.wire.borrow_mut();
        w.writing = false;
        for waker in w.sent_waiters.drain(..) {
            waker.wake();
        }
        drop(w);
        done.map(|()| true)
    }

    #[allow(
        clippy::await_holding_refcell_ref,
        reason = "one stream operation at a time (`Io` is one enum): nothing else borrows the stream while it runs"
    )]
    fn start_write(&mut self) {
        let data = {
            let mut w = self.wire.borrow_mut();
            w.writing = true;
            // The whole buffer goes with the write (and is freed after it): an idle
            // connection holds no queue buffer.
            std::mem::take(&mut w.out).freeze()
        };
        let (stream, t) = (self.stream.clone(), self.send_timeout);
        self.io = Io::Write(Box::pin(async move {
            let mut s = stream.borrow_mut();
            match monoio::time::timeout(t, s.write(data)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client did not read within send_timeout",
                )),
            }
        }));
    }

    #[allow(
        clippy::await_holding_refcell_ref,
        reason = "one stream operation at a time (`Io` is one enum): nothing else borrows the stream while it runs"
    )]
    fn start_read(&mut self) {
        // The inbound queue is empty here: its buffer goes with the read and comes back.
        let mut buf = std::mem::take(&mut self.wire.borrow_mut().inbound);
        buf.clear();
        let (stream, t) = (self.stream.clone(), self.read_timeout);
        self.io = Io::Read(Box::pin(async move {
            let mut s = stream.borrow_mut();
            match monoio::time::timeout(t, s.read(&mut buf, READ_SIZE)).await {
                Ok(Ok(_)) => Ok(buf),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a started read did not complete within client_body_timeout",
                )),
            }
        }));
    }
}

/// The frame budgets per [`BUDGET_WINDOW`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Budgets {
    /// PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA and empty CONTINUATION frames.
    pub(super) control: u32,
    /// WINDOW_UPDATE frames.
    pub(super) window_update: u32,
}

/// Reads frame headers off the inbound byte stream (RFC 9113 §4.1) and counts the
/// frames a flood is made of. No I/O, no allocation.
pub(super) struct FrameScan {
    budgets: Budgets,
    /// Preface bytes still to skip.
    preface: usize,
    /// The frame header being read, and how much of it is here.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    window_start: Option<Instant>,
    control: u32,
    window_update: u32,
    flood: Option<H2Error>,
}

impl FrameScan {
    pub(super) fn new(budgets: Budgets) -> FrameScan {
        FrameScan {
            budgets,
            preface: PREFACE_LEN,
            header: [0; 9],
            have: 0,
            skip: 0,
            window_start: None,
            control: 0,
            window_update: 0,
            flood: None,
        }
    }

    /// Scans `bytes`, the next bytes of the client's stream. `Some(n)`: a budget was
    /// broken by the frame whose header ends at `bytes[n]` (only the first time).
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Option<usize> {
        let total = bytes.len();
        let flooded = self.flood.is_some();
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.header;
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                self.skip = len;
                self.count(h[3], h[4], len);
                if !flooded && self.flood.is_some() {
                    return Some(total - bytes.len());
                }
            }
        }
        None
    }

    fn count(&mut self, kind: u8, flags: u8, len: usize) {
        const DATA: u8 = 0;
        const PRIORITY: u8 = 2;
        const RST_STREAM: u8 = 3;
        const SETTINGS: u8 = 4;
        const PING: u8 = 6;
        const WINDOW_UPDATE: u8 = 8;
        const CONTINUATION: u8 = 9;
        const END_STREAM: u8 = 0x1;
        let control = match kind {
            PRIORITY | RST_STREAM | SETTINGS | PING => true,
            DATA => len == 0 && flags & END_STREAM == 0,
            CONTINUATION => len == 0,
            WINDOW_UPDATE => {
                self.roll();
                self.window_update += 1;
                if self.window_update > self.budgets.window_update {
                    self.flood.get_or_insert(H2Error::WindowUpdateFlood);
                }
                false
            }
            _ => false,
        };
        if control {
            self.roll();
            self.control += 1;
            if self.control > self.budgets.control {
                self.flood.get_or_insert(H2Error::ControlFlood);
            }
        }
    }

    /// Starts a new counting window when the last one is over.
    fn roll(&mut self) {
        let now = clock::now();
        match self.window_start {
            Some(t) if now.saturating_duration_since(t) < BUDGET_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.control = 0;
                self.window_update = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::io::Write;

    use super::*;

    /// With no stream at work (`lean`), the wait for the client's next bytes holds no
    /// queue buffers: what the last read and write used is given back (an idle HTTP/2
    /// connection costs what h2 keeps, not two queues' worth more).
    #[test]
    fn a_lean_wait_for_the_client_holds_no_queue_buffers() {
        crate::clock::test_runtime().block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let mut client =
                std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            let (s, _) = l.accept().expect("accept");
            let stream =
                ClientStream::plain(monoio::net::TcpStream::from_std(s).expect("monoio tcp"));
            let budgets = Budgets {
                control: 100,
                window_update: 100,
            };
            let wire = Wire::new(BytesMut::new(), budgets);
            let mut driver = Driver::new(
                stream,
                wire.clone(),
                Duration::from_secs(10),
                Duration::from_secs(10),
            );
            driver.lean = true;
            client.write_all(&[7u8; 3000]).expect("client write");
            // A stand-in for h2: takes what was read, answers, then waits until the
            // driver waits for the client again — with both queues' buffers dropped.
            let mut answered = false;
            let idle = poll_fn(|cx| {
                driver.drive(cx, |_| {
                    let mut w = wire.borrow_mut();
                    if !answered && w.inbound.len() == 3000 {
                        w.inbound.clear();
                        w.out.extend_from_slice(&[9u8; 2000]);
                        answered = true;
                    }
                    let released = w.inbound.capacity() == 0 && w.out.capacity() == 0;
                    if answered && released {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
            });
            // A bound on failure only: without the release the wait never ends.
            let r = monoio::time::timeout(Duration::from_secs(10), idle).await;
            assert!(matches!(r, Ok(Ok(()))), "the idle wait kept buffers: {r:?}");
        });
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn scan(budget: u32, input: &[u8], split: usize) -> FrameScan {
        let mut s = FrameScan::new(Budgets {
            control: budget,
            window_update: budget,
        });
        for piece in input.chunks(split.max(1)) {
            s.feed(piece);
        }
        s
    }

    /// PINGs over the budget raise the flood, whatever the reads' boundaries; DATA with
    /// a payload and the preface's bytes are not counted.
    #[test]
    fn control_frames_over_the_budget_are_a_flood_at_every_split() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(0, 0, &[6; 300]));
        for _ in 0..5 {
            input.extend(frame(6, 0, &[0; 8]));
        }
        for split in 1..input.len() {
            assert_eq!(scan(5, &input, split).flood, None, "split {split}");
            let mut more = input.clone();
            more.extend(frame(6, 0, &[0; 8]));
            assert_eq!(
                scan(5, &more, split).flood,
                Some(H2Error::ControlFlood),
                "split {split}"
            );
        }
    }

    /// Empty DATA frames without END_STREAM count; the stream's last empty DATA does not.
    #[test]
    fn empty_data_counts_unless_it_ends_the_stream() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for _ in 0..3 {
            input.extend(frame(0, 1, &[]));
        }
        assert_eq!(scan(2, &input, 7).flood, None);
        input.extend(frame(0, 0, &[]));
        input.extend(frame(0, 0, &[]));
        input.extend(frame(0, 0, &[]));
        assert_eq!(scan(2, &input, 7).flood, Some(H2Error::ControlFlood));
    }

    #[test]
    fn window_updates_have_their_own_budget() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for _ in 0..4 {
            input.extend(frame(8, 0, &[0, 0, 0, 1]));
        }
        assert_eq!(scan(3, &input, 5).flood, Some(H2Error::WindowUpdateFlood));
    }
}
