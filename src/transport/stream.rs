//! Byte streams on a worker: the client side (plain TCP or rustls in userspace) and the
//! upstream side (plain TCP), over monoio's owned-buffer I/O.
//!
//! Reads append to a caller's `BytesMut`; writes take `Bytes` so plain TCP can hand the
//! buffer to the kernel without a copy. TLS records are encrypted and decrypted here, so
//! the HTTP layer above only ever sees plaintext. This module never parses HTTP and never
//! decides a status code; it reports `io::Error`s and lets the proxy map them.

use std::io;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use super::kernel::KtlsState;

/// Ciphertext read size: one maximal TLS record plus header fits.
const CIPHER_READ: usize = 17 * 1024;

/// Appends up to `want` bytes read from `tcp` to `dst`. `Ok(0)` is end of stream.
pub async fn read_tcp(
    tcp: &mut impl AsyncReadRent,
    dst: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    let mut buf = std::mem::take(dst);
    buf.reserve(want);
    let len = buf.len();
    let end = buf.capacity().min(len + want.max(1));
    let (res, slice) = tcp.read(buf.slice_mut(len..end)).await;
    *dst = slice.into_inner();
    res
}

/// Writes all of `data` to `tcp`.
pub async fn write_tcp(tcp: &mut impl AsyncWriteRent, data: Bytes) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let (res, _) = tcp.write_all(data).await;
    res.map(|_| ())
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The socket failed or closed before the handshake finished.
    Io(io::Error),
    /// The peer spoke TLS we refuse (old version, no shared cipher, bad record…).
    Tls(rustls::Error),
    /// The first bytes were plain HTTP; a 400 was sent.
    PlainHttp,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "i/o during handshake: {e}"),
            HandshakeError::Tls(e) => write!(f, "tls: {e}"),
            HandshakeError::PlainHttp => write!(f, "plain HTTP request on a TLS port"),
        }
    }
}

/// A failure on a TLS connection: the socket, or the peer's TLS.
#[derive(Debug)]
enum TlsError {
    Io(io::Error),
    Tls(rustls::Error),
}

impl From<io::Error> for TlsError {
    fn from(e: io::Error) -> Self {
        TlsError::Io(e)
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Io(e) => e,
            TlsError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

impl From<TlsError> for HandshakeError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Io(e) => HandshakeError::Io(e),
            TlsError::Tls(e) => HandshakeError::Tls(e),
        }
    }
}

/// The client's connection: plaintext HTTP in and out, whatever the transport: plain
/// TCP, rustls in userspace (`tls`), or kernel TLS after the switch (`ktls`).
pub struct ClientStream {
    pub(super) tcp: TcpStream,
    tls: Option<Box<TlsState>>,
    pub(super) ktls: Option<Box<KtlsState>>,
    /// Read handshake records one by one, so no byte after the handshake is taken from
    /// the socket before the kernel can (set when kTLS may follow).
    exact_records: bool,
}

/// Outcome of [`ClientStream::offload`].
#[derive(Debug)]
pub enum Offload {
    /// The kernel now does the record layer.
    Kernel,
    /// The connection stays in userspace rustls.
    Fallback(crate::transport::ktls::Fallback),
    /// The switch failed after the secrets left rustls: the connection must close.
    Failed(String),
}

/// rustls' unbuffered connection with buffers this module owns, so an idle connection
/// holds none of them: rustls decrypts in `cin` and encrypts straight into `out`.
struct TlsState {
    conn: UnbufferedServerConnection,
    /// Ciphertext from the socket; `cin[cin_start..]` is not yet consumed by rustls
    /// (a partial record, or records not yet processed).
    cin: Vec<u8>,
    cin_start: usize,
    /// Plaintext decrypted but not yet handed to the caller (`plain[plain_pos..]`).
    plain: Vec<u8>,
    plain_pos: usize,
    /// Ciphertext to send.
    out: Out,
    /// The peer closed TCP.
    eof: bool,
    /// close_notify received.
    peer_closed: bool,
    /// rustls reported an error: its one alert went out and it is never driven again
    /// (no close_notify, no kTLS switch, no re-feeding the record that failed).
    failed: bool,
}

/// Where [`TlsState::drive`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driven {
    /// Handshake done, nothing queued: application data may flow.
    Traffic,
    /// The handshake needs more bytes from the peer.
    Blocked,
    /// Both sides sent close_notify.
    Closed,
}

/// What to do once the connection can carry application data.
enum Action<'a> {
    None,
    Encrypt(&'a [u8]),
    CloseNotify,
}

impl ClientStream {
    pub fn plain(tcp: TcpStream) -> Self {
        ClientStream {
            tcp,
            tls: None,
            ktls: None,
            exact_records: false,
        }
    }

    /// A TLS connection; `exact_records` when the connection may move to kernel TLS.
    pub fn tls(tcp: TcpStream, conn: UnbufferedServerConnection, exact_records: bool) -> Self {
        ClientStream {
            tcp,
            tls: Some(Box::new(TlsState {
                conn,
                cin: Vec::new(),
                cin_start: 0,
                plain: Vec::new(),
                plain_pos: 0,
                out: Out::default(),
                eof: false,
                peer_closed: false,
                failed: false,
            })),
            ktls: None,
            exact_records,
        }
    }

    /// True once the kernel does the record layer.
    pub fn is_ktls(&self) -> bool {
        self.ktls.is_some()
    }

    /// The socket, when bytes written to it reach the client as they are (plain TCP or
    /// kernel TLS): the condition for splicing bodies.
    pub fn splice_socket(&mut self) -> Option<&mut TcpStream> {
        (self.tls.is_none()).then_some(&mut self.tcp)
    }

    /// Moves the record layer into the kernel after a completed handshake. Plaintext
    /// rustls already decrypted is appended to `plaintext`; the kernel stream counts its
    /// control records (close_notify, KeyUpdates) in `metrics`.
    pub fn offload(
        &mut self,
        plaintext: &mut BytesMut,
        metrics: &crate::observe::Local,
    ) -> Offload {
        use crate::transport::ktls::{self, Fallback};
        let Some(tls) = self.tls.as_mut() else {
            return Offload::Fallback(Fallback::Setup);
        };
        let support = ktls::support();
        if let Some(reason) = support.fallback() {
            return Offload::Fallback(reason);
        }
        match tls.conn.negotiated_cipher_suite() {
            Some(s) if support.offers(s.suite()) => {}
            _ => return Offload::Fallback(Fallback::Cipher),
        }
        if tls.failed {
            return Offload::Failed("the TLS session already failed".into());
        }
        if tls.cin_start < tls.cin.len()
            || tls.out.len > 0
            || tls.conn.is_handshaking()
            || tls.peer_closed
        {
            return Offload::Fallback(Fallback::Buffered);
        }
        if let Err(reason) = ktls::attach_ulp(&self.tcp) {
            return Offload::Fallback(reason);
        }
        let Some(tls) = self.tls.take() else {
            return Offload::Failed("no TLS state".into());
        };
        // Plaintext rustls decrypted before the switch belongs to the HTTP layer.
        plaintext.extend_from_slice(&tls.plain[tls.plain_pos..]);
        let TlsState { conn, .. } = *tls;
        match ktls::install(&self.tcp, conn) {
            Ok(kernel) => {
                self.ktls = Some(Box::new(KtlsState::new(kernel, metrics.clone())));
                Offload::Kernel
            }
            Err(e) => Offload::Failed(e.0),
        }
    }

    /// The rustls connection, for SNI, version and cipher details (userspace TLS only).
    pub fn tls_conn(&self) -> Option<&UnbufferedServerConnection> {
        self.tls.as_ref().map(|t| &t.conn)
    }

    /// Drives the rustls handshake to completion (callers bound it with a timeout).
    /// Returns the SNI host name the client sent (rustls' unbuffered connection does not
    /// expose it): read from a copy of the first flight, dropped once it is known.
    pub async fn handshake(&mut self) -> Result<Option<String>, HandshakeError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(None);
        };
        let mut first = true;
        let mut hello = Some(Vec::new());
        let mut sni = None;
        loop {
            match tls.drive(&mut self.tcp, None, Action::None).await? {
                Driven::Traffic if !tls.conn.is_handshaking() => {
                    tls.compact();
                    return Ok(sni);
                }
                Driven::Closed => {
                    return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Driven::Traffic | Driven::Blocked => {}
            }
            let before = tls.cin.len() - tls.cin_start;
            let n = if self.exact_records {
                tls.read_record(&mut self.tcp).await
            } else {
                tls.read_more(&mut self.tcp).await
            }
            .map_err(HandshakeError::Io)?;
            if n == 0 {
                return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(flight) = hello.as_mut() {
                flight.extend_from_slice(&tls.cin[tls.cin.len() - n..]);
                if let crate::transport::tls::hello::Sni::Done(name) =
                    crate::transport::tls::hello::sni(flight)
                {
                    sni = name;
                    hello = None;
                }
            }
            if first && before == 0 && looks_like_plain_http(&tls.cin[tls.cin_start..]) {
                let msg: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: ringgate\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\nThe plain HTTP request was sent to an HTTPS port\n";
                let _ = write_tcp(&mut self.tcp, Bytes::from_static(msg)).await;
                return Err(HandshakeError::PlainHttp);
            }
            first = false;
        }
    }

    /// Waits until the socket has bytes (or EOF) without holding a read buffer.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable(false).await
    }

    /// True when a read can be served without waiting on the socket: ciphertext not yet
    /// processed, plaintext already decrypted (a request that arrived with the client's
    /// Finished), or a close_notify/EOF already seen.
    pub fn has_buffered(&self) -> bool {
        if let Some(k) = &self.ktls {
            return k.has_buffered();
        }
        let Some(tls) = self.tls.as_ref() else {
            return false;
        };
        tls.plain_pos < tls.plain.len()
            || tls.cin_start < tls.cin.len()
            || tls.eof
            || tls.peer_closed
    }

    /// Appends up to `want` plaintext bytes to `dst`; `Ok(0)` is end of stream.
    pub async fn read(&mut self, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
        if self.ktls.is_some() {
            return self.read_ktls(dst, want).await;
        }
        let Some(tls) = self.tls.as_mut() else {
            return read_tcp(&mut self.tcp, dst, want).await;
        };
        let want = want.max(1);
        loop {
            // Plaintext already decrypted comes first.
            if tls.plain_pos < tls.plain.len() {
                let n = (tls.plain.len() - tls.plain_pos).min(want);
                dst.extend_from_slice(&tls.plain[tls.plain_pos..tls.plain_pos + n]);
                tls.plain_pos += n;
                if tls.plain_pos == tls.plain.len() {
                    tls.plain.clear();
                    tls.plain_pos = 0;
                }
                return Ok(n);
            }
            let before = dst.len();
            let driven = tls
                .drive(&mut self.tcp, Some((&mut *dst, want)), Action::None)
                .await?;
            if dst.len() > before {
                return Ok(dst.len() - before);
            }
            if tls.plain_pos < tls.plain.len() {
                continue;
            }
            // close_notify received, or both sides closed: clean end of stream. The peer
            // closing TCP without close_notify is treated as end of stream too.
            if tls.peer_closed || driven == Driven::Closed || tls.eof {
                return Ok(0);
            }
            if tls.read_more(&mut self.tcp).await? == 0 {
                tls.eof = true;
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return write_tcp(&mut self.tcp, data).await;
        };
        if data.is_empty() {
            return Ok(());
        }
        match tls
            .drive(&mut self.tcp, None, Action::Encrypt(&data))
            .await?
        {
            Driven::Traffic => Ok(()),
            Driven::Blocked => Err(io::Error::other("write before the TLS handshake ended")),
            Driven::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Ends the stream politely: close_notify for TLS, then FIN.
    pub async fn shutdown(&mut self) {
        self.ktls_close_notify();
        if let Some(tls) = self.tls.as_mut().filter(|t| !t.failed) {
            let _ = tls.drive(&mut self.tcp, None, Action::CloseNotify).await;
        }
        let _ = self.tcp.shutdown().await;
    }

    /// After the last response went out with request bytes still unread: sends
    /// close_notify and FIN, then reads and drops what the client still sends until it
    /// closes, a read waits longer than `per_read`, or `total` passes — so the close does
    /// not reset the connection before the client has read the response (nginx:
    /// `lingering_close`). The bytes are never decrypted.
    pub async fn linger(&mut self, per_read: std::time::Duration, total: std::time::Duration) {
        self.shutdown().await;
        let deadline = monoio::time::Instant::now() + total;
        let mut scratch = BytesMut::new();
        loop {
            let step =
                per_read.min(deadline.saturating_duration_since(monoio::time::Instant::now()));
            if step.is_zero() {
                return;
            }
            scratch.clear();
            match monoio::time::timeout(step, read_tcp(&mut self.tcp, &mut scratch, CIPHER_READ))
                .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }

    /// Drops idle buffers (keep-alive wait).
    pub fn release_buffers(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.compact();
            if tls.cin.is_empty() {
                tls.cin = Vec::new();
            }
            if tls.plain_pos == tls.plain.len() {
                tls.plain = Vec::new();
                tls.plain_pos = 0;
            }
            if tls.out.len == 0 {
                tls.out = Out::default();
            }
        }
    }
}

/// The first byte of a plain HTTP request (an upper-case method letter) rather than a
/// TLS record, whose first byte is a content type from 20 to 23.
fn looks_like_plain_http(b: &[u8]) -> bool {
    b.first().is_some_and(u8::is_ascii_uppercase)
}

/// Largest TLS record on the wire: 2^14 plaintext + 2048 expansion (RFC 8446 §5.2).
const MAX_RECORD: usize = 16 * 1024 + 2048;

/// Ciphertext bytes per record beyond the plaintext, at most: header 5, TLS 1.2 explicit
/// nonce 8, tag 16, TLS 1.3 inner content type 1.
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 1;

/// Largest plaintext fragment rustls puts in one record.
const MAX_FRAGMENT: usize = 16 * 1024;

impl TlsState {
    /// Runs rustls until application data can flow (`Traffic`), it needs bytes from the
    /// peer (`Blocked`) or the session is closed: sends what it queues (handshake
    /// flights, tickets, KeyUpdate answers, alerts), moves decrypted plaintext to `sink`
    /// (up to its limit; the rest is kept in `plain`), then performs `action`.
    async fn drive(
        &mut self,
        tcp: &mut TcpStream,
        mut sink: Option<(&mut BytesMut, usize)>,
        action: Action<'_>,
    ) -> Result<Driven, TlsError> {
        if self.failed {
            return Err(TlsError::Io(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the TLS session failed earlier",
            )));
        }
        let mut action = Some(action);
        // Every turn either consumes a record, sends, or stops; a peer cannot keep this
        // loop going without sending bytes, which it must do through the socket.
        loop {
            let start = self.cin_start;
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.cin[start..]);
            let stop = match state {
                Err(e) => {
                    self.cin_start += discard;
                    self.fail(tcp).await;
                    return Err(TlsError::Tls(e));
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    let mut failed = None;
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                deliver(record.payload, &mut sink, &mut self.plain);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        self.cin_start += discard;
                        self.fail(tcp).await;
                        return Err(TlsError::Tls(e));
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(encode)) => {
                    if let Err(e) = self.out.encode(encode, 4096) {
                        self.failed = true;
                        return Err(TlsError::Tls(rustls::Error::General(e.to_string())));
                    }
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    self.out.flush(tcp).await?;
                    transmit.done();
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Driven::Closed),
                Ok(ConnectionState::BlockedHandshake) => Some(Driven::Blocked),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    match action.take() {
                        Some(Action::Encrypt(data)) => {
                            let records = data.len().div_ceil(MAX_FRAGMENT).max(1);
                            let mut need = data.len() + records * RECORD_OVERHEAD;
                            loop {
                                match traffic.encrypt(data, self.out.spare(need)) {
                                    Ok(n) => {
                                        self.out.len += n;
                                        break;
                                    }
                                    Err(EncryptError::InsufficientSize(e)) => {
                                        need = e.required_size;
                                    }
                                    Err(e) => {
                                        return Err(TlsError::Io(io::Error::other(e.to_string())));
                                    }
                                }
                            }
                        }
                        Some(Action::CloseNotify) => {
                            if let Ok(n) = traffic.queue_close_notify(self.out.spare(64)) {
                                self.out.len += n;
                            }
                        }
                        Some(Action::None) | None => {}
                    }
                    Some(Driven::Traffic)
                }
                Ok(_) => {
                    // Early data (never enabled here) or a state added by a newer rustls.
                    return Err(TlsError::Tls(rustls::Error::General(
                        "unexpected TLS connection state".into(),
                    )));
                }
            };
            self.cin_start += discard;
            if let Some(driven) = stop {
                if self.out.len > 0 {
                    self.out.flush(tcp).await?;
                }
                if self.cin_start == self.cin.len() {
                    self.cin.clear();
                    self.cin_start = 0;
                }
                return Ok(driven);
            }
        }
    }

    /// rustls reported an error: the session is over. Sends what rustls queued for the
    /// peer (its one fatal alert, if it has one) and marks the state failed, so rustls is
    /// never driven again. `process_tls_records` hands out queued records before it looks
    /// at any input, and it is given the same unconsumed ciphertext as before (its
    /// handshake deframer may still point into it): an empty slice would make it index
    /// out of bounds when a handshake message was partly buffered.
    async fn fail(&mut self, tcp: &mut TcpStream) {
        self.failed = true;
        // Each call pops one queued record; the queue is finite and nothing is deframed
        // while it is not empty.
        while self.conn.wants_write() {
            let start = self.cin_start.min(self.cin.len());
            let UnbufferedStatus { state, .. } =
                self.conn.process_tls_records(&mut self.cin[start..]);
            let Ok(ConnectionState::EncodeTlsData(encode)) = state else {
                break;
            };
            // An alert is a few bytes; a failure to encode it leaves nothing to send.
            let _ = self.out.encode(encode, 64);
        }
        let _ = self.out.flush(tcp).await;
        // The record that failed (decrypted in place, perhaps) is never fed again.
        self.cin = Vec::new();
        self.cin_start = 0;
    }

    /// Moves unconsumed ciphertext to the front of `cin`.
    fn compact(&mut self) {
        if self.cin_start > 0 {
            self.cin.drain(..self.cin_start);
            self.cin_start = 0;
        }
    }

    /// Appends what the socket has (up to about one record) to `cin`; 0 at EOF.
    async fn read_more(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        self.compact();
        let mut buf = std::mem::take(&mut self.cin);
        buf.reserve(CIPHER_READ);
        let len = buf.len();
        let cap = buf.capacity();
        let (res, slice) = tcp.read(buf.slice_mut(len..cap)).await;
        self.cin = slice.into_inner();
        res
    }

    /// Appends exactly one TLS record (header + body) to `cin`, so no byte beyond the
    /// handshake leaves the socket. Returns the bytes read, 0 at EOF. A header rustls
    /// rejects by itself (a content type it does not know, not a 3.x version, a length
    /// over its limit: also plain HTTP) is returned alone, for rustls or the caller to
    /// refuse at once instead of waiting for a body that may never come.
    async fn read_record(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        self.compact();
        let mut buf = std::mem::take(&mut self.cin);
        let base = buf.len();
        buf.reserve(5 + MAX_RECORD);
        let res = read_exact(tcp, &mut buf, base + 5).await;
        let res = match res {
            Ok(n) if n == base + 5 => match record_body_len(&buf[base..base + 5]) {
                Some(len) => read_exact(tcp, &mut buf, base + 5 + len).await,
                None => Ok(n),
            },
            other => other,
        };
        self.cin = buf;
        res.map(|n| n - base)
    }
}

/// The body length a record header announces, when rustls would read that body: a
/// content type it knows (20..=24: change_cipher_spec, alert, handshake, application
/// data, heartbeat), version 3.x and a length under its limit. `None`: rustls rejects
/// the record from its header alone.
fn record_body_len(header: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    ((20..=24).contains(&header[0]) && header[1] == 3 && len < MAX_RECORD).then_some(len)
}

/// Ciphertext waiting to be sent: `buf[..len]`; the rest of `buf` is scratch space
/// rustls encrypts into (kept initialised, so it is zero-filled only when it grows).
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    len: usize,
}

impl Out {
    /// Appends the handshake or alert record rustls wants to send, growing the buffer
    /// from `first` bytes as rustls asks.
    fn encode(
        &mut self,
        mut encode: rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
        first: usize,
    ) -> Result<(), EncodeError> {
        let mut need = first;
        loop {
            match encode.encode(self.spare(need)) {
                Ok(n) => {
                    self.len += n;
                    return Ok(());
                }
                Err(EncodeError::InsufficientSize(e)) => need = e.required_size,
                Err(e) => return Err(e),
            }
        }
    }

    /// The free tail, at least `need` bytes long.
    fn spare(&mut self, need: usize) -> &mut [u8] {
        let want = self.len + need;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.len..]
    }

    /// Writes `buf[..len]` to the socket.
    async fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let (res, buf) = tcp.write_all(buf.slice(0..self.len)).await;
        self.buf = buf.into_inner();
        self.len = 0;
        res.map(|_| ())
    }
}

/// Hands decrypted bytes to the reader: into `sink` up to its limit, the rest to `plain`.
fn deliver(payload: &[u8], sink: &mut Option<(&mut BytesMut, usize)>, plain: &mut Vec<u8>) {
    let mut rest = payload;
    if let Some((dst, room)) = sink.as_mut() {
        let n = rest.len().min(*room);
        dst.extend_from_slice(&rest[..n]);
        *room -= n;
        rest = &rest[n..];
    }
    plain.extend_from_slice(rest);
}

/// Reads until `buf` holds `target` bytes; returns its length (short only at EOF).
async fn read_exact(tcp: &mut TcpStream, buf: &mut Vec<u8>, target: usize) -> io::Result<usize> {
    while buf.len() < target {
        let b = std::mem::take(buf);
        let len = b.len();
        let (res, slice) = tcp.read(b.slice_mut(len..target)).await;
        *buf = slice.into_inner();
        if res? == 0 {
            break;
        }
    }
    Ok(buf.len())
}
