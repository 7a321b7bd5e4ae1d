//! Byte streams on a worker: the client side (plain TCP or rustls in userspace) and the
//! upstream side (plain TCP), over monoio's owned-buffer I/O.
//!
//! Reads append to a caller's `BytesMut`; writes take `Bytes` so plain TCP can hand the
//! buffer to the kernel without a copy. TLS records are encrypted and decrypted here, so
//! the HTTP layer above only ever sees plaintext. This module never parses HTTP and never
//! decides a status code; it reports `io::Error`s and lets the proxy map them.

use std::io::{self, BufRead, Write};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::ServerConnection;

/// Ciphertext read size: one maximal TLS record plus header fits.
const CIPHER_READ: usize = 17 * 1024;

/// Appends up to `want` bytes read from `tcp` to `dst`. `Ok(0)` is end of stream.
pub async fn read_tcp(tcp: &mut TcpStream, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
    let mut buf = std::mem::take(dst);
    buf.reserve(want);
    let len = buf.len();
    let end = buf.capacity().min(len + want.max(1));
    let (res, slice) = tcp.read(buf.slice_mut(len..end)).await;
    *dst = slice.into_inner();
    res
}

/// Writes all of `data` to `tcp`.
pub async fn write_tcp(tcp: &mut TcpStream, data: Bytes) -> io::Result<()> {
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

/// The client's connection: plaintext HTTP in and out, whatever the transport: plain
/// TCP, rustls in userspace (`tls`), or kernel TLS after the switch (`ktls`).
pub struct ClientStream {
    tcp: TcpStream,
    tls: Option<Box<TlsState>>,
    ktls: Option<KtlsState>,
    /// Read handshake records one by one, so no byte after the handshake is taken from
    /// the socket before the kernel can (set when kTLS may follow).
    exact_records: bool,
}

/// A connection whose record layer is in the kernel.
#[derive(Default)]
struct KtlsState {
    /// close_notify received.
    eof: bool,
    /// Data that arrived through the control-record path.
    pending: Vec<u8>,
}

/// Outcome of [`ClientStream::offload`].
#[derive(Debug)]
pub enum Offload {
    /// The kernel now does the record layer.
    Kernel,
    /// The connection stays in userspace rustls.
    Fallback(crate::ktls::Fallback),
    /// The switch failed after the secrets left rustls: the connection must close.
    Failed(String),
}

/// close_notify alerts received on kTLS connections (process-wide; read at shutdown).
pub static KTLS_CLOSE_NOTIFY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Peer KeyUpdates that closed a kTLS connection (the kernel here cannot re-key).
pub static KTLS_KEYUPDATE_CLOSES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

struct TlsState {
    conn: ServerConnection,
    /// Ciphertext read buffer; allocated while reading, released when idle.
    cipher_in: Vec<u8>,
    /// How much of `cipher_in` rustls has taken.
    cipher_pos: usize,
    /// The peer closed TCP.
    eof: bool,
    /// Ciphertext waiting to be written.
    cipher_out: Vec<u8>,
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
    pub fn tls(tcp: TcpStream, conn: ServerConnection, exact_records: bool) -> Self {
        ClientStream {
            tcp,
            tls: Some(Box::new(TlsState {
                conn,
                cipher_in: Vec::new(),
                cipher_pos: 0,
                eof: false,
                cipher_out: Vec::new(),
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
    /// rustls already decrypted is appended to `plaintext`.
    pub fn offload(&mut self, plaintext: &mut BytesMut) -> Offload {
        use crate::ktls::{self, Fallback};
        let Some(tls) = self.tls.as_mut() else {
            return Offload::Fallback(Fallback::Setup);
        };
        let support = ktls::support();
        if !support.is_available() {
            return Offload::Fallback(Fallback::Unavailable);
        }
        match tls.conn.negotiated_cipher_suite() {
            Some(s) if support.offers(s.suite()) => {}
            _ => return Offload::Fallback(Fallback::Cipher),
        }
        if tls.pending() > 0 || tls.conn.wants_write() || tls.conn.is_handshaking() {
            return Offload::Fallback(Fallback::Buffered);
        }
        // Plaintext rustls decrypted before the switch belongs to the HTTP layer.
        loop {
            let mut reader = tls.conn.reader();
            match reader.fill_buf() {
                Ok(b) if !b.is_empty() => {
                    let n = b.len();
                    plaintext.extend_from_slice(b);
                    reader.consume(n);
                }
                _ => break,
            }
        }
        if let Err(reason) = ktls::attach_ulp(&self.tcp) {
            return Offload::Fallback(reason);
        }
        let Some(tls) = self.tls.take() else {
            return Offload::Failed("no TLS state".into());
        };
        match ktls::install_secrets(&self.tcp, tls.conn) {
            Ok(()) => {
                self.ktls = Some(KtlsState::default());
                Offload::Kernel
            }
            Err(e) => Offload::Failed(e.0),
        }
    }

    /// The rustls connection, for SNI, version and cipher details.
    pub fn tls_conn(&self) -> Option<&ServerConnection> {
        self.tls.as_ref().map(|t| &t.conn)
    }

    /// Drives the rustls handshake to completion (callers bound it with a timeout).
    pub async fn handshake(&mut self) -> Result<(), HandshakeError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        let mut first = true;
        loop {
            flush_tls(&mut self.tcp, tls)
                .await
                .map_err(HandshakeError::Io)?;
            if !tls.conn.is_handshaking() {
                if tls.pending() == 0 {
                    tls.cipher_in = Vec::new();
                    tls.cipher_pos = 0;
                }
                return Ok(());
            }
            if tls.pending() == 0 {
                let n = if self.exact_records {
                    read_record(&mut self.tcp, tls).await
                } else {
                    read_cipher(&mut self.tcp, tls).await
                }
                .map_err(HandshakeError::Io)?;
                if n == 0 {
                    return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                if first && looks_like_plain_http(&tls.cipher_in[..n]) {
                    let msg: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: ringgate\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\nThe plain HTTP request was sent to an HTTPS port\n";
                    let _ = write_tcp(&mut self.tcp, Bytes::from_static(msg)).await;
                    return Err(HandshakeError::PlainHttp);
                }
                first = false;
            }
            if let Err(e) = tls.feed() {
                // Send the alert rustls queued, then give up.
                let _ = flush_tls(&mut self.tcp, tls).await;
                return Err(HandshakeError::Tls(e));
            }
        }
    }

    /// Waits until the socket has bytes (or EOF) without holding a read buffer.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable(false).await
    }

    /// True when a read can be served without waiting on the socket: ciphertext not yet
    /// processed, plaintext rustls already decrypted (a request that arrived with the
    /// client's Finished), or a close_notify/EOF already seen.
    pub fn has_buffered(&mut self) -> bool {
        if let Some(k) = &self.ktls {
            return k.eof || !k.pending.is_empty();
        }
        let Some(tls) = self.tls.as_mut() else {
            return false;
        };
        if tls.pending() > 0 || tls.eof {
            return true;
        }
        !matches!(tls.conn.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Appends up to `want` plaintext bytes to `dst`; `Ok(0)` is end of stream.
    pub async fn read(&mut self, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
        if self.ktls.is_some() {
            return self.read_ktls(dst, want).await;
        }
        let Some(tls) = self.tls.as_mut() else {
            return read_tcp(&mut self.tcp, dst, want).await;
        };
        loop {
            // Plaintext rustls already decrypted comes first.
            let mut reader = tls.conn.reader();
            match reader.fill_buf() {
                Ok(plain) if !plain.is_empty() => {
                    let n = plain.len().min(want.max(1));
                    dst.extend_from_slice(&plain[..n]);
                    reader.consume(n);
                    return Ok(n);
                }
                // close_notify received: clean end of stream.
                Ok(_) => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: treat as end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if tls.eof {
                return Ok(0);
            }
            if tls.pending() == 0 {
                let n = read_cipher(&mut self.tcp, tls).await?;
                if n == 0 {
                    tls.eof = true;
                }
            }
            if let Err(e) = tls.feed() {
                let _ = flush_tls(&mut self.tcp, tls).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // A KeyUpdate or alert may need an answer.
            flush_tls(&mut self.tcp, tls).await?;
        }
    }

    /// Reads plaintext from a kTLS socket; control records (alerts, KeyUpdate) come
    /// through as EIO and are read with their type.
    async fn read_ktls(&mut self, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
        use crate::ktls::{self, ControlRecord};
        const EIO: i32 = 5;
        // A record that keeps failing without a control message is a kernel problem,
        // not something to spin on.
        for _ in 0..8 {
            let Some(k) = self.ktls.as_mut() else {
                return Ok(0);
            };
            if !k.pending.is_empty() {
                let n = k.pending.len().min(want.max(1));
                dst.extend_from_slice(&k.pending[..n]);
                k.pending.drain(..n);
                return Ok(n);
            }
            if k.eof {
                return Ok(0);
            }
            match read_tcp(&mut self.tcp, dst, want).await {
                Err(e) if e.raw_os_error() == Some(EIO) => {
                    let Some(k) = self.ktls.as_mut() else {
                        return Ok(0);
                    };
                    match ktls::recv_control(&self.tcp, &mut k.pending)? {
                        ControlRecord::CloseNotify => {
                            KTLS_CLOSE_NOTIFY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            k.eof = true;
                        }
                        ControlRecord::Alert(level, desc) => {
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                format!("peer sent TLS alert {desc} (level {level})"),
                            ));
                        }
                        ControlRecord::KeyUpdate => {
                            KTLS_KEYUPDATE_CLOSES
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                "peer sent a TLS 1.3 KeyUpdate; this kernel path cannot re-key, closing",
                            ));
                        }
                        ControlRecord::Handshake(_)
                        | ControlRecord::Data(_)
                        | ControlRecord::WouldBlock => {}
                    }
                }
                other => return other,
            }
        }
        Err(io::Error::other(
            "kTLS socket keeps failing reads without a control record",
        ))
    }

    /// Writes all of `data`.
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return write_tcp(&mut self.tcp, data).await;
        };
        let mut rest: &[u8] = &data;
        while !rest.is_empty() {
            let n = tls.conn.writer().write(rest)?;
            rest = &rest[n..];
            flush_tls(&mut self.tcp, tls).await?;
        }
        Ok(())
    }

    /// Ends the stream politely: close_notify for TLS, then FIN.
    pub async fn shutdown(&mut self) {
        if self.ktls.is_some() {
            let _ = crate::ktls::send_close_notify(&self.tcp);
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.conn.send_close_notify();
            let _ = flush_tls(&mut self.tcp, tls).await;
        }
        let _ = self.tcp.shutdown().await;
    }

    /// Drops idle buffers (keep-alive wait).
    pub fn release_buffers(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            if tls.pending() == 0 {
                tls.cipher_in = Vec::new();
                tls.cipher_pos = 0;
            }
            tls.cipher_out = Vec::new();
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

/// Reads exactly one TLS record (header + body) into the (empty) input buffer, so no
/// byte beyond the handshake leaves the socket. Returns the byte count, 0 at EOF. A
/// first byte that is not a TLS content type returns the 5 bytes read, for the caller
/// to reject.
async fn read_record(tcp: &mut TcpStream, tls: &mut TlsState) -> io::Result<usize> {
    let mut buf = std::mem::take(&mut tls.cipher_in);
    buf.clear();
    buf.reserve(5 + MAX_RECORD);
    tls.cipher_pos = 0;
    let res = read_exact(tcp, &mut buf, 5).await;
    let res = match res {
        Ok(5) if (20..=23).contains(&buf[0]) => {
            let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
            // An oversized length is rustls' to reject; read no further than a record.
            read_exact(tcp, &mut buf, 5 + len.min(MAX_RECORD)).await
        }
        other => other,
    };
    tls.cipher_in = buf;
    res
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

/// Reads ciphertext into the (empty) input buffer; returns the byte count, 0 at EOF.
async fn read_cipher(tcp: &mut TcpStream, tls: &mut TlsState) -> io::Result<usize> {
    let mut buf = std::mem::take(&mut tls.cipher_in);
    buf.clear();
    buf.reserve(CIPHER_READ);
    let cap = buf.capacity();
    let (res, slice) = tcp.read(buf.slice_mut(0..cap)).await;
    tls.cipher_in = slice.into_inner();
    tls.cipher_pos = 0;
    res
}

impl TlsState {
    /// Ciphertext read but not yet taken by rustls.
    fn pending(&self) -> usize {
        self.cipher_in.len() - self.cipher_pos
    }

    /// Gives rustls what it will take of the pending ciphertext (or the EOF) and
    /// processes it. rustls takes less when its plaintext buffer is full; the rest waits
    /// until the caller has drained plaintext.
    fn feed(&mut self) -> Result<(), rustls::Error> {
        let mut input: &[u8] = &self.cipher_in[self.cipher_pos..];
        if !input.is_empty() || self.eof {
            match self.conn.read_tls(&mut input) {
                Ok(n) => self.cipher_pos += n,
                // The plaintext buffer is full: process, and let the caller drain it.
                Err(e) if e.kind() == io::ErrorKind::Other => {}
                Err(e) => return Err(rustls::Error::General(format!("tls input: {e}"))),
            }
        }
        self.conn.process_new_packets()?;
        Ok(())
    }
}

async fn flush_tls(tcp: &mut TcpStream, tls: &mut TlsState) -> io::Result<()> {
    while tls.conn.wants_write() {
        let mut out = std::mem::take(&mut tls.cipher_out);
        out.clear();
        tls.conn.write_tls(&mut out)?;
        let (res, out) = tcp.write_all(out).await;
        tls.cipher_out = out;
        res?;
    }
    Ok(())
}

/// An upstream connection: plain TCP with its own read buffer.
pub struct UpstreamStream {
    pub tcp: TcpStream,
}

impl UpstreamStream {
    pub async fn read(&mut self, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
        read_tcp(&mut self.tcp, dst, want).await
    }

    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        write_tcp(&mut self.tcp, data).await
    }
}
