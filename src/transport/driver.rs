//! The rustls unbuffered driver: one state machine loop for both TLS roles — the server
//! role facing a client, the client role facing an upstream.
//!
//! rustls' unbuffered API hands out states (encode this, transmit that, here is
//! plaintext, blocked on the peer); [`TlsDriver`] runs them over a socket with buffers it
//! owns, so an idle connection holds none of them. rustls decrypts in place in `cin` and
//! encrypts straight into `out`. What differs between the roles is only which rustls type
//! runs the records and hands over the secrets, and that is the [`Role`] trait. This file
//! does no HTTP, chooses no status and sends nothing but TLS records.

use std::io;
use std::ops::Deref;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::ExtractedSecrets;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedConnectionCommon,
    UnbufferedStatus,
};

use super::io::read_spare;

mod sealed {
    pub trait Sealed {}
    impl Sealed for rustls::server::UnbufferedServerConnection {}
    impl Sealed for rustls::client::UnbufferedClientConnection {}
}

/// A side of a TLS connection rustls' unbuffered API can drive: the server role
/// ([`UnbufferedServerConnection`], facing a client) or the client role
/// ([`UnbufferedClientConnection`], facing an upstream). rustls defines the record
/// processing and the secret hand-over once per role; this names them once, so one
/// driver serves both. Sealed: only these two implement it.
pub trait Role: Deref<Target = UnbufferedConnectionCommon<Self::Data>> + sealed::Sealed {
    /// rustls' per-role connection data (`ServerConnectionData` / `ClientConnectionData`).
    type Data;

    /// Runs rustls over `incoming` until its next state.
    fn process_tls_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// Hands the traffic secrets over for kernel TLS, keeping what rustls needs afterwards
    /// (the TLS 1.3 key schedule). Exposes key material: only for [`super::ktls::install`].
    fn dangerous_into_kernel(
        self,
    ) -> Result<(ExtractedSecrets, KernelConnection<Self::Data>), rustls::Error>;
}

impl Role for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn process_tls_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        // The inherent method of the deref target, not this trait method again.
        (**self).process_tls_records(incoming)
    }

    fn dangerous_into_kernel(
        self,
    ) -> Result<(ExtractedSecrets, KernelConnection<ServerConnectionData>), rustls::Error> {
        self.dangerous_into_kernel_connection()
    }
}

impl Role for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn process_tls_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        (**self).process_tls_records(incoming)
    }

    fn dangerous_into_kernel(
        self,
    ) -> Result<(ExtractedSecrets, KernelConnection<ClientConnectionData>), rustls::Error> {
        self.dangerous_into_kernel_connection()
    }
}

/// Ciphertext read size: one maximal TLS record plus header fits.
pub(super) const CIPHER_READ: usize = 17 * 1024;

/// Largest TLS record on the wire: 2^14 plaintext + 2048 expansion (RFC 8446 §5.2).
const MAX_RECORD: usize = 16 * 1024 + 2048;

/// Ciphertext bytes per record beyond the plaintext, at most: header 5, TLS 1.2 explicit
/// nonce 8, tag 16, TLS 1.3 inner content type 1.
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 1;

/// Largest plaintext fragment rustls puts in one record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Why a TLS handshake did not complete.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The socket failed or closed before the handshake finished.
    Io(io::Error),
    /// The peer spoke TLS we refuse (old version, no shared cipher, bad record, a
    /// certificate we do not trust…).
    Tls(rustls::Error),
    /// The first bytes were plain HTTP; a 400 was sent (server role only).
    PlainHttp,
    /// The ClientHello came in more records than [`super::tls::hello::MAX_HELLO_RECORDS`]
    /// (server role only): refused before rustls worked through them.
    FragmentedHello,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "i/o during handshake: {e}"),
            HandshakeError::Tls(e) => write!(f, "tls: {e}"),
            HandshakeError::PlainHttp => write!(f, "plain HTTP request on a TLS port"),
            HandshakeError::FragmentedHello => write!(
                f,
                "ClientHello split into more than {} records",
                super::tls::hello::MAX_HELLO_RECORDS
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

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

/// What a handshake's inspector (the server role's SNI copy and plain-HTTP check) says
/// after a read.
pub(super) enum Inspect<R> {
    Continue,
    /// Read more before rustls sees anything (the ClientHello is not whole yet and the
    /// configuration depends on its SNI).
    Hold,
    /// Run this connection instead (made for the ClientHello's SNI; rustls has seen no
    /// byte yet), then continue.
    Replace(R),
    /// The replacement could not be made.
    Fail(rustls::Error),
    /// The peer is not speaking TLS at all: stop without driving rustls.
    PlainHttp,
    /// The ClientHello is spread over too many records: stop without driving rustls.
    FragmentedHello,
}

/// Why a connection cannot move to the kernel now.
pub(super) enum NotReady {
    /// rustls reported an error earlier.
    Failed,
    /// Bytes are buffered (ciphertext not consumed, records not sent), the handshake is
    /// not over, or close_notify arrived.
    Buffered,
}

/// rustls' unbuffered connection (either role) with buffers this driver owns.
pub(super) struct TlsDriver<R: Role> {
    conn: R,
    /// Ciphertext from the socket; `cin[cin_start..]` is not yet consumed by rustls
    /// (a partial record, or records not yet processed). rustls remembers how far into
    /// it a partly received handshake message reaches, so these bytes are never lost:
    /// reads lend the kernel only its spare capacity ([`read_spare`]).
    cin: BytesMut,
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

/// Where [`TlsDriver::drive`] stopped.
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

impl<R: Role> TlsDriver<R> {
    pub(super) fn new(conn: R) -> Self {
        TlsDriver {
            conn,
            cin: BytesMut::new(),
            cin_start: 0,
            plain: Vec::new(),
            plain_pos: 0,
            out: Out::default(),
            eof: false,
            peer_closed: false,
            failed: false,
        }
    }

    pub(super) fn conn(&self) -> &R {
        &self.conn
    }

    /// Drives the handshake to completion (callers bound it with a timeout). After each
    /// read, `inspect` sees the bytes just read, all ciphertext not yet consumed, and
    /// whether this was the connection's first read: the server role copies the
    /// ClientHello for its SNI there and spots plain HTTP. `exact_records`: read one
    /// record at a time, so no byte after the handshake leaves the socket (kTLS may
    /// follow).
    pub(super) async fn handshake(
        &mut self,
        tcp: &mut TcpStream,
        exact_records: bool,
        mut inspect: impl FnMut(&[u8], &[u8], bool) -> Inspect<R>,
    ) -> Result<(), HandshakeError> {
        let mut first = true;
        let mut hold = false;
        loop {
            if !hold {
                match self.drive(tcp, None, Action::None).await? {
                    Driven::Traffic if !self.conn.is_handshaking() => {
                        self.compact();
                        return Ok(());
                    }
                    Driven::Closed => {
                        return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
                    }
                    Driven::Traffic | Driven::Blocked => {}
                }
            }
            let before = self.cin.len() - self.cin_start;
            let n = if exact_records {
                self.read_record(tcp).await
            } else {
                self.read_more(tcp).await
            }
            .map_err(HandshakeError::Io)?;
            if n == 0 {
                return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let fresh = &self.cin[self.cin.len() - n..];
            let pending = &self.cin[self.cin_start..];
            match inspect(fresh, pending, first && before == 0) {
                Inspect::Continue => hold = false,
                Inspect::Hold => hold = true,
                Inspect::Replace(conn) => {
                    // Only before rustls processed a byte: it has no state to lose, and
                    // the ciphertext stays in `cin` for the new connection.
                    debug_assert!(hold || before == 0);
                    self.conn = conn;
                    hold = false;
                }
                Inspect::Fail(e) => return Err(HandshakeError::Tls(e)),
                Inspect::PlainHttp => return Err(HandshakeError::PlainHttp),
                Inspect::FragmentedHello => return Err(HandshakeError::FragmentedHello),
            }
            first = false;
        }
    }

    /// True when a read can be served without waiting on the socket: ciphertext not yet
    /// processed, plaintext already decrypted (data that arrived with the peer's
    /// Finished), or a close_notify/EOF already seen.
    pub(super) fn has_buffered(&self) -> bool {
        self.plain_pos < self.plain.len()
            || self.cin_start < self.cin.len()
            || self.eof
            || self.peer_closed
    }

    /// Appends up to `want` plaintext bytes to `dst`; `Ok(0)` is end of stream.
    pub(super) async fn read(
        &mut self,
        tcp: &mut TcpStream,
        dst: &mut BytesMut,
        want: usize,
    ) -> io::Result<usize> {
        let want = want.max(1);
        loop {
            // Plaintext already decrypted comes first.
            if self.plain_pos < self.plain.len() {
                let n = (self.plain.len() - self.plain_pos).min(want);
                dst.extend_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
                self.plain_pos += n;
                if self.plain_pos == self.plain.len() {
                    self.plain.clear();
                    self.plain_pos = 0;
                }
                return Ok(n);
            }
            let before = dst.len();
            let driven = self
                .drive(tcp, Some((&mut *dst, want)), Action::None)
                .await?;
            if dst.len() > before {
                return Ok(dst.len() - before);
            }
            if self.plain_pos < self.plain.len() {
                continue;
            }
            // close_notify received, or both sides closed: clean end of stream. The peer
            // closing TCP without close_notify is treated as end of stream too.
            if self.peer_closed || driven == Driven::Closed || self.eof {
                return Ok(0);
            }
            if self.read_more(tcp).await? == 0 {
                self.eof = true;
            }
        }
    }

    /// Encrypts and sends all of `data`.
    pub(super) async fn write(&mut self, tcp: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match self.drive(tcp, None, Action::Encrypt(data)).await? {
            Driven::Traffic => Ok(()),
            Driven::Blocked => Err(io::Error::other("write before the TLS handshake ended")),
            Driven::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Sends close_notify, unless the session already failed.
    pub(super) async fn close_notify(&mut self, tcp: &mut TcpStream) {
        if !self.failed {
            let _ = self.drive(tcp, None, Action::CloseNotify).await;
        }
    }

    /// Drops idle buffers (keep-alive wait).
    pub(super) fn release_buffers(&mut self) {
        self.compact();
        if self.cin.is_empty() {
            self.cin = BytesMut::new();
        }
        if self.plain_pos == self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
        self.out.release();
    }

    /// Whether the record layer can move to the kernel now: as
    /// [`Self::ready_for_userspace`], and no ciphertext waits in `cin` (the kernel reads
    /// only what is still in the socket).
    pub(super) fn ready_for_kernel(&self) -> Result<(), NotReady> {
        self.ready_for_userspace()?;
        if self.cin_start < self.cin.len() {
            return Err(NotReady::Buffered);
        }
        Ok(())
    }

    /// Gives up the driver for the kernel switch: the rustls connection, with plaintext it
    /// already decrypted appended to `plaintext` (it belongs to the reader).
    pub(super) fn into_conn(self, plaintext: &mut BytesMut) -> R {
        self.into_parts(plaintext).0
    }

    /// [`Self::into_conn`], and the ciphertext rustls has not processed yet (records
    /// after the handshake, whole or in part), for a record layer in userspace.
    pub(super) fn into_parts(mut self, plaintext: &mut BytesMut) -> (R, BytesMut) {
        plaintext.extend_from_slice(&self.plain[self.plain_pos..]);
        self.compact();
        (self.conn, self.cin)
    }

    /// Whether the record layer can leave rustls for ringgate's own: handshake over,
    /// nothing queued to send, no close_notify, the session intact. Ciphertext not yet
    /// processed may wait in `cin` (it goes along).
    pub(super) fn ready_for_userspace(&self) -> Result<(), NotReady> {
        if self.failed || self.out.cut {
            return Err(NotReady::Failed);
        }
        if self.out.len > 0 || self.conn.is_handshaking() || self.peer_closed {
            return Err(NotReady::Buffered);
        }
        Ok(())
    }

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
                    Box::pin(self.fail(tcp)).await;
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
                        Box::pin(self.fail(tcp)).await;
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
                    // Consumed before the await: a dropped flush must not leave rustls
                    // handed the same records again.
                    self.cin_start += std::mem::take(&mut discard);
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
        self.cin = BytesMut::new();
        self.cin_start = 0;
    }

    /// Drops consumed ciphertext from the front of `cin` (the space is reused when `cin`
    /// next reserves room).
    fn compact(&mut self) {
        if self.cin_start > 0 {
            self.cin.advance(self.cin_start);
            self.cin_start = 0;
        }
    }

    /// Appends what the socket has (up to about one record) to `cin`; 0 at EOF.
    /// Cancel safety: dropping the future leaves `cin` as it was (see [`read_spare`]).
    async fn read_more(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        self.compact();
        self.cin.reserve(CIPHER_READ);
        read_spare(tcp, &mut self.cin, usize::MAX).await
    }

    /// Appends exactly one TLS record (header + body) to `cin`, so no byte beyond the
    /// handshake leaves the socket. Returns the bytes read, 0 at EOF. A header rustls
    /// rejects by itself (a content type it does not know, not a 3.x version, a length
    /// over its limit: also plain HTTP) is returned alone, for rustls or the caller to
    /// refuse at once instead of waiting for a body that may never come.
    /// Cancel safety: dropping the future leaves in `cin` what it had plus the part of
    /// the record read so far.
    async fn read_record(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        self.compact();
        let base = self.cin.len();
        self.cin.reserve(5 + MAX_RECORD);
        let res = read_exact(tcp, &mut self.cin, base + 5).await;
        let res = match res {
            Ok(n) if n == base + 5 => match record_body_len(&self.cin[base..base + 5]) {
                Some(len) => read_exact(tcp, &mut self.cin, base + 5 + len).await,
                None => Ok(n),
            },
            other => other,
        };
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
pub(super) struct Out {
    buf: Vec<u8>,
    pub(super) len: usize,
    /// A flush failed or was dropped mid-write: the peer may hold part of a record, and
    /// `buf` went with the write. Nothing is sent again — any later record would follow
    /// half a record (or the zeros of a regrown `buf`) and corrupt the stream.
    cut: bool,
}

impl Out {
    /// Appends the handshake or alert record rustls wants to send (either role),
    /// growing the buffer from `first` bytes as rustls asks.
    fn encode<Data>(
        &mut self,
        mut encode: EncodeTlsData<'_, Data>,
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
    pub(super) fn spare(&mut self, need: usize) -> &mut [u8] {
        let want = self.len + need;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.len..]
    }

    /// Grows the free tail to at least `need` bytes at once (before several records).
    pub(super) fn reserve(&mut self, need: usize) {
        self.spare(need);
    }

    /// Drops the buffer while nothing waits in it (keep-alive wait).
    pub(super) fn release(&mut self) {
        if self.len == 0 {
            self.buf = Vec::new();
        }
    }

    /// Writes `buf[..len]` to the socket.
    ///
    /// Cancel safety: the buffer is lent to the kernel for the write, so a dropped flush
    /// loses it — and may have sent part of it. `cut` is set until the write completes,
    /// so after a failed or dropped flush every later one fails instead of sending.
    pub(super) async fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        if self.cut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier TLS write on this connection did not complete",
            ));
        }
        if self.len == 0 {
            return Ok(());
        }
        self.cut = true;
        let buf = std::mem::take(&mut self.buf);
        let (res, buf) = tcp.write_all(buf.slice(0..self.len)).await;
        self.buf = buf.into_inner();
        self.len = 0;
        res?;
        self.cut = false;
        Ok(())
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
/// Cancel safety: dropping the future keeps every byte appended so far.
async fn read_exact(tcp: &mut TcpStream, buf: &mut BytesMut, target: usize) -> io::Result<usize> {
    while buf.len() < target {
        let want = target - buf.len();
        buf.reserve(want);
        if read_spare(tcp, buf, want).await? == 0 {
            break;
        }
    }
    Ok(buf.len())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    /// A flush dropped while the peer does not read (a timeout) may have sent part of
    /// the buffer and lost the rest with the dropped write: the next flush must fail, not
    /// send the next bytes — nor the zeros of a buffer grown again from nothing — after
    /// half a record.
    #[test]
    fn a_flush_dropped_mid_write_sends_nothing_more() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async move {
                server.set_nonblocking(true).unwrap();
                let mut tcp = TcpStream::from_std(server).unwrap();
                let mut out = Out::default();
                // Flushes of ones until one cannot complete: the client reads nothing.
                let mut sent = 0;
                loop {
                    out.spare(64 * 1024).fill(1);
                    out.len += 64 * 1024;
                    let wait = Duration::from_millis(50);
                    match monoio::time::timeout(wait, out.flush(&mut tcp)).await {
                        Ok(r) => r.unwrap(),
                        Err(_) => break,
                    }
                    sent += 1;
                    assert!(sent < 10_000, "the socket never filled");
                }
                let reader = std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut client = client;
                    client
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let _ = client.read_to_end(&mut got);
                    got
                });
                out.spare(5).copy_from_slice(b"after");
                out.len += 5;
                let again = out.flush(&mut tcp).await;
                drop(tcp);
                let got = reader.join().unwrap();
                assert!(again.is_err(), "a flush after a dropped one went out");
                assert!(
                    got.iter().all(|b| *b == 1),
                    "bytes other than the flushed ones reached the peer"
                );
            });
    }
}
