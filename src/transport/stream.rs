//! A TLS-capable byte stream over monoio's owned-buffer I/O: plain TCP, rustls in
//! userspace, kernel TLS after the switch, or ringgate's own record layer after it
//! (where the kernel cannot) — one [`Stream`] whose record layer is one of four
//! variants, for either TLS role ([`ClientStream`]: we are the server;
//! [`UpstreamTlsStream`]: we are the client).
//!
//! Reads append to a caller's `BytesMut`; writes take `Bytes` so plain TCP can hand the
//! buffer to the kernel without a copy.

use std::io;

use bytes::{Bytes, BytesMut};
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;

use super::driver::{CIPHER_READ, HandshakeError, Inspect, NotReady, Role, TlsDriver};
use super::events::TlsEvents;
use super::io::{discard_ready, read_tcp, write_tcp};
use super::kernel::KtlsState;
use super::ktls::{self, Fallback};
use super::seal::SealState;
use super::tls::{ServerConfigs, hello};

/// A connection's plaintext in and out, whatever carries it: plain TCP, rustls, or the
/// kernel after the switch (one `Layer` enum, never two `Option`s). `R` is our TLS role
/// on it.
pub struct Stream<R: Role> {
    pub(super) tcp: TcpStream,
    pub(super) layer: Layer<R>,
    /// Read handshake records one by one, so no byte after the handshake is taken from
    /// the socket before the kernel can (set when kTLS may follow).
    exact_records: bool,
    /// A read was dropped before it completed (a timeout): io_uring may have moved bytes
    /// from the socket into the dropped read, so the byte stream may have a gap and is
    /// not read again.
    read_cut: bool,
    /// A write failed or was dropped before it completed: the peer may hold part of a
    /// response (or of a TLS record), so nothing more is written, close_notify included.
    write_cut: bool,
}

/// Who does the record layer.
pub(super) enum Layer<R: Role> {
    /// Nobody: plain TCP. Also what is left after a kTLS switch that failed once the
    /// secrets left rustls (the caller drops the stream then).
    Plain,
    /// rustls in userspace.
    Rustls(Box<TlsDriver<R>>),
    /// The kernel, after the switch.
    Kernel(Box<KtlsState<R::Data>>),
    /// ringgate's own record layer, after the switch (rustls made the handshake).
    Sealed(Box<SealState<R::Data>>),
}

/// The stream facing a client: we are the TLS server.
pub type ClientStream = Stream<UnbufferedServerConnection>;

/// A TLS stream to an upstream: we are the TLS client.
pub type UpstreamTlsStream = Stream<UnbufferedClientConnection>;

/// Outcome of [`Stream::offload`].
#[derive(Debug)]
pub enum Offload {
    /// The kernel now does the record layer.
    Kernel,
    /// The connection stays in userspace rustls.
    Fallback(Fallback),
    /// The switch failed after the secrets left rustls: the connection must close.
    Failed(String),
}

impl<R: Role> Stream<R> {
    pub fn plain(tcp: TcpStream) -> Self {
        Stream {
            tcp,
            layer: Layer::Plain,
            exact_records: false,
            read_cut: false,
            write_cut: false,
        }
    }

    /// A TLS connection in either role; `exact_records` when another record layer may
    /// follow rustls (the kernel's or ringgate's): handshake records are read one at a
    /// time, so no record after the handshake reaches rustls.
    pub fn tls(tcp: TcpStream, conn: R, exact_records: bool) -> Self {
        Stream {
            tcp,
            layer: Layer::Rustls(Box::new(TlsDriver::new(conn))),
            exact_records,
            read_cut: false,
            write_cut: false,
        }
    }

    /// True once the kernel does the record layer.
    pub fn is_ktls(&self) -> bool {
        matches!(self.layer, Layer::Kernel(_))
    }

    /// The socket, when bytes written to it reach the peer as they are (plain TCP or
    /// kernel TLS): the condition for splicing bodies.
    pub fn splice_socket(&mut self) -> Option<&mut TcpStream> {
        match self.layer {
            Layer::Rustls(_) | Layer::Sealed(_) => None,
            Layer::Plain | Layer::Kernel(_) => Some(&mut self.tcp),
        }
    }

    /// Moves the record layer into the kernel after a completed handshake (the layer
    /// goes from rustls to kernel in place). Plaintext rustls already decrypted is
    /// appended to `plaintext`; the kernel stream counts its control records
    /// (close_notify, KeyUpdates) in `metrics`.
    pub fn offload(
        &mut self,
        plaintext: &mut BytesMut,
        metrics: &(impl TlsEvents + Clone + 'static),
    ) -> Offload {
        let Layer::Rustls(tls) = &self.layer else {
            return Offload::Fallback(Fallback::Setup);
        };
        let support = ktls::support();
        if let Some(reason) = support.fallback() {
            return Offload::Fallback(reason);
        }
        match tls.conn().negotiated_cipher_suite() {
            Some(s) if support.offers(s.suite()) => {}
            _ => return Offload::Fallback(Fallback::Cipher),
        }
        match tls.ready_for_kernel() {
            Ok(()) => {}
            Err(NotReady::Failed) => {
                return Offload::Failed("the TLS session already failed".into());
            }
            Err(NotReady::Buffered) => return Offload::Fallback(Fallback::Buffered),
        }
        if let Err(reason) = ktls::attach_ulp(crate::listener::socket_fd(&self.tcp)) {
            return Offload::Fallback(reason);
        }
        let Layer::Rustls(tls) = std::mem::replace(&mut self.layer, Layer::Plain) else {
            return Offload::Failed("no TLS state".into());
        };
        let conn = tls.into_conn(plaintext);
        match ktls::install(crate::listener::socket_fd(&self.tcp), conn) {
            Ok(kernel) => {
                self.layer =
                    Layer::Kernel(Box::new(KtlsState::new(kernel, Box::new(metrics.clone()))));
                Offload::Kernel
            }
            Err(e) => Offload::Failed(e.0),
        }
    }

    /// Moves the record layer from rustls to ringgate's own ([`SealState`]) after a
    /// completed handshake: rustls hands over the secrets and keeps its key schedule.
    /// Plaintext rustls already decrypted is appended to `plaintext`; ciphertext it had
    /// not processed goes along. `Ok(false)`: the connection stays in rustls (not at a
    /// point where it can move: bytes to send, the peer closed). `Err`: the switch
    /// failed after the secrets left rustls, and the connection must close.
    pub fn seal_in_userspace(&mut self, plaintext: &mut BytesMut) -> Result<bool, String> {
        let Layer::Rustls(tls) = &self.layer else {
            return Ok(false);
        };
        match tls.ready_for_userspace() {
            Ok(()) => {}
            Err(NotReady::Failed) => return Err("the TLS session already failed".into()),
            Err(NotReady::Buffered) => return Ok(false),
        }
        let Layer::Rustls(tls) = std::mem::replace(&mut self.layer, Layer::Plain) else {
            return Err("no TLS state".into());
        };
        let (conn, cin) = tls.into_parts(plaintext);
        let (secrets, kernel) = conn
            .dangerous_into_kernel()
            .map_err(|e| format!("extracting secrets: {e}"))?;
        let sealed = SealState::new(kernel, secrets, cin).map_err(|e| e.to_string())?;
        self.layer = Layer::Sealed(Box::new(sealed));
        Ok(true)
    }

    /// True once ringgate's own record layer runs the connection.
    pub fn is_sealed_here(&self) -> bool {
        matches!(self.layer, Layer::Sealed(_))
    }

    /// The rustls connection, for SNI, version and cipher details (userspace TLS only).
    pub fn tls_conn(&self) -> Option<&R> {
        match &self.layer {
            Layer::Rustls(tls) => Some(tls.conn()),
            _ => None,
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
        match &self.layer {
            Layer::Plain => false,
            Layer::Rustls(tls) => tls.has_buffered(),
            Layer::Kernel(k) => k.has_buffered(),
            Layer::Sealed(s) => s.has_buffered(),
        }
    }

    /// Appends up to `want` plaintext bytes to `dst`; `Ok(0)` is end of stream.
    ///
    /// Cancel safety: dropping the future keeps what `dst` holds and what the TLS layer
    /// buffered, but the socket may have lost bytes, so every later read fails.
    pub async fn read(&mut self, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
        if self.read_cut {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "an earlier read on this connection was cut off",
            ));
        }
        self.read_cut = true;
        let res = match &mut self.layer {
            Layer::Plain => read_tcp(&mut self.tcp, dst, want).await,
            Layer::Rustls(tls) => tls.read(&mut self.tcp, dst, want).await,
            Layer::Kernel(k) => k.read(&mut self.tcp, dst, want).await,
            Layer::Sealed(s) => s.read(&mut self.tcp, dst, want).await,
        };
        self.read_cut = false;
        res
    }

    /// Writes all of `data`.
    ///
    /// Cancel safety: a write that fails or is dropped may have sent part of `data`;
    /// every later write fails then (and [`Stream::shutdown`] sends no close_notify), so
    /// nothing ever follows half a message.
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if self.write_cut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write on this connection did not complete",
            ));
        }
        self.write_cut = true;
        let res = match &mut self.layer {
            Layer::Rustls(tls) => tls.write(&mut self.tcp, &data).await,
            Layer::Sealed(s) => s.write(&mut self.tcp, &data).await,
            // The kernel encrypts what goes through the socket.
            Layer::Plain | Layer::Kernel(_) => write_tcp(&mut self.tcp, data).await,
        };
        self.write_cut = res.is_err();
        res
    }

    /// Ends the stream politely: close_notify for TLS (unless a write was cut off), then
    /// FIN.
    pub async fn shutdown(&mut self) {
        if !self.write_cut {
            match &mut self.layer {
                Layer::Plain => {}
                Layer::Rustls(tls) => tls.close_notify(&mut self.tcp).await,
                Layer::Kernel(k) => k.close_notify(&self.tcp),
                Layer::Sealed(s) => s.close_notify(&mut self.tcp).await,
            }
        }
        let _ = self.tcp.shutdown().await;
    }

    /// After the last response went out with request bytes still unread: sends
    /// close_notify and FIN, then reads and drops what the peer still sends until it
    /// closes, a read waits longer than `per_read`, or `total` passes — so the close does
    /// not reset the connection before the peer has read the response (nginx:
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

    /// Before the close of a handshake that failed (after its 400 or alert): with
    /// `exact_records` the rest of what the peer sent may still wait in the socket, and
    /// closing with it unread resets the connection — which can destroy the answer
    /// before the peer reads it.
    fn discard_unread(&self) {
        if self.exact_records {
            discard_ready(&self.tcp, 64 * 1024);
        }
    }

    /// Drops idle buffers (keep-alive wait).
    pub fn release_buffers(&mut self) {
        match &mut self.layer {
            Layer::Rustls(tls) => tls.release_buffers(),
            Layer::Sealed(s) => s.release_buffers(),
            Layer::Plain | Layer::Kernel(_) => {}
        }
    }
}

impl Stream<UnbufferedServerConnection> {
    /// Drives the server-role handshake to completion (callers bound it with a timeout).
    /// Returns the SNI host name the client sent (rustls' unbuffered connection does not
    /// expose it): read as the first flight arrives ([`hello::HelloReader`]). A first
    /// flight that is plain HTTP gets a 400 and [`HandshakeError::PlainHttp`]; a
    /// ClientHello in too many records a handshake_failure alert and
    /// [`HandshakeError::FragmentedHello`].
    pub async fn handshake(&mut self) -> Result<Option<String>, HandshakeError> {
        self.handshake_with(None).await
    }

    /// [`Self::handshake`], and when `configs` chooses the configuration by SNI
    /// ([`ServerConfigs::by_sni`]), rustls sees no byte until the ClientHello is whole;
    /// then the connection is made anew with the configuration for its SNI.
    pub async fn handshake_with(
        &mut self,
        configs: Option<&ServerConfigs>,
    ) -> Result<Option<String>, HandshakeError> {
        let Layer::Rustls(tls) = &mut self.layer else {
            return Ok(None);
        };
        let by_sni = configs.filter(|c| c.by_sni());
        let mut hello = Some(hello::HelloReader::default());
        let mut sni = None;
        let res = tls
            .handshake(
                &mut self.tcp,
                self.exact_records,
                |fresh, pending, first| {
                    if first && looks_like_plain_http(pending) {
                        return Inspect::PlainHttp;
                    }
                    let Some(reader) = hello.as_mut() else {
                        return Inspect::Continue;
                    };
                    match reader.feed(fresh) {
                        hello::Sni::NeedMore if by_sni.is_some() => Inspect::Hold,
                        hello::Sni::NeedMore => Inspect::Continue,
                        hello::Sni::Done(name) => {
                            hello = None;
                            let next = by_sni.map(|c| {
                                let config = c.select(name.as_deref()).config.clone();
                                UnbufferedServerConnection::new(config)
                            });
                            sni = name;
                            match next {
                                None => Inspect::Continue,
                                Some(Ok(conn)) => Inspect::Replace(conn),
                                Some(Err(e)) => Inspect::Fail(e),
                            }
                        }
                        hello::Sni::TooManyRecords => Inspect::FragmentedHello,
                    }
                },
            )
            .await;
        let e = match res {
            Ok(()) => return Ok(sni),
            Err(e) => e,
        };
        match e {
            HandshakeError::PlainHttp => {
                let _ = write_tcp(&mut self.tcp, plain_http_answer()).await;
            }
            HandshakeError::FragmentedHello => {
                // A plaintext fatal handshake_failure alert (RFC 8446 §6): rustls has not
                // answered yet, so nothing is encrypted.
                let alert: &[u8] = &[21, 3, 3, 0, 2, 2, 40];
                let _ = write_tcp(&mut self.tcp, Bytes::from_static(alert)).await;
            }
            // rustls's own alert, if it had one, went out already.
            _ => {}
        }
        self.discard_unread();
        Err(e)
    }
}

impl Stream<UnbufferedClientConnection> {
    /// A client-role TLS connection (to an upstream); `exact_records` when it may move
    /// to kernel TLS.
    pub fn tls_client(
        tcp: TcpStream,
        conn: UnbufferedClientConnection,
        exact_records: bool,
    ) -> Self {
        Stream::tls(tcp, conn, exact_records)
    }

    /// Drives the client-role handshake to completion (callers bound it with a timeout):
    /// sends the ClientHello, verifies the server's certificate as the `ClientConfig`
    /// says. A refused certificate is [`HandshakeError::Tls`], after the alert went out.
    pub async fn connect_handshake(&mut self) -> Result<(), HandshakeError> {
        let Layer::Rustls(tls) = &mut self.layer else {
            return Ok(());
        };
        tls.handshake(&mut self.tcp, self.exact_records, |_, _, _| {
            Inspect::Continue
        })
        .await
    }
}

/// The first byte of a plain HTTP request (an upper-case method letter) rather than a
/// TLS record, whose first byte is a content type from 20 to 23.
/// The plain-text answer to plain HTTP on a TLS port, its status from the one mapping
/// ([`crate::status::fault_status`]). Sent once per such connection: formatted here.
fn plain_http_answer() -> Bytes {
    const REASON: &str = "The plain HTTP request was sent to an HTTPS port";
    let status = crate::status::fault_status(crate::status::Fault::PlainHttp);
    let text = crate::status::status_text(status);
    let len = REASON.len() + 1;
    Bytes::from(format!(
        "HTTP/1.1 {status} {text}\r\nServer: ringgate\r\nContent-Type: text/plain\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{REASON}\n"
    ))
}

fn looks_like_plain_http(b: &[u8]) -> bool {
    b.first().is_some_and(u8::is_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_on_a_tls_port_gets_the_mapped_400_as_before() {
        assert_eq!(
            super::plain_http_answer().as_ref(),
            b"HTTP/1.1 400 Bad Request\r\nServer: ringgate\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\nThe plain HTTP request was sent to an HTTPS port\n"
        );
    }
}
