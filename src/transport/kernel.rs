//! ③ The client stream after the switch to kernel TLS: plaintext through the socket, and
//! the records the kernel will not hand over as data (alerts, KeyUpdates, anything
//! else) read with their type and answered here.
//!
//! Faults end the connection with one fatal alert and no close_notify after it: a record
//! type or handshake message the protocol does not allow there ([`records`]), a record
//! the kernel could not decrypt (`EBADMSG` → bad_record_mac) or refused for its length
//! (`EMSGSIZE` → record_overflow). A peer's own fatal alert closes without an answer.
//! Peer faults are reported as `io::Error`s for the proxy to log at debug level.
//!
//! [`records`]: crate::transport::ktls::records

use std::io;

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::kernel::KernelConnection;

use super::events::{KtlsEvent, TlsEvents};
use super::io::read_tcp;
use super::ktls::{self, ControlRecord, records};
use crate::listener::socket_fd;

/// A connection whose record layer is in the kernel; `D` is rustls' data for our role.
pub(super) struct KtlsState<D> {
    /// What rustls keeps after the switch: the key schedule, for TLS 1.3 KeyUpdates.
    kernel: KernelConnection<D>,
    tls13: bool,
    /// close_notify received.
    eof: bool,
    /// The connection ended on a fault or the peer's fatal alert: no more reads, and no
    /// close_notify after the one fatal alert.
    failed: bool,
    /// Data that arrived through the control-record path.
    pending: Vec<u8>,
    /// A handshake message read in part (its next fragment must be the next record).
    hs: Vec<u8>,
    /// Where close_notify, re-keys and KeyUpdate closes are counted (the worker's
    /// metrics; boxed once per switched connection, beside this boxed state).
    metrics: Box<dyn TlsEvents>,
}

impl<D> KtlsState<D> {
    pub(super) fn new(kernel: KernelConnection<D>, metrics: Box<dyn TlsEvents>) -> KtlsState<D> {
        KtlsState {
            tls13: kernel.protocol_version() == rustls::ProtocolVersion::TLSv1_3,
            kernel,
            eof: false,
            failed: false,
            pending: Vec::new(),
            hs: Vec::new(),
            metrics,
        }
    }

    /// A read can be answered without the socket.
    pub(super) fn has_buffered(&self) -> bool {
        self.eof || self.failed || !self.pending.is_empty()
    }
}

/// Reads that neither returned data nor a record: a kernel problem, not something to
/// spin on. Records themselves (KeyUpdates, empty data records) are progress, never
/// counted: each one the peer sends is one it had to encrypt and send.
const MAX_IDLE_READS: u32 = 8;

fn fault(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl<D> KtlsState<D> {
    /// Reads plaintext from `tcp`, the kTLS socket this state belongs to; control
    /// records (alerts, KeyUpdate) come through as EIO and are read with their type.
    pub(super) async fn read(
        &mut self,
        tcp: &mut TcpStream,
        dst: &mut BytesMut,
        want: usize,
    ) -> io::Result<usize> {
        let mut idle = 0;
        loop {
            if self.failed {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the TLS session ended on an alert",
                ));
            }
            if !self.pending.is_empty() {
                let n = self.pending.len().min(want.max(1));
                dst.extend_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            // While a handshake message is partly read, every record's type matters (a
            // data record between its fragments is a fault), so all go through recvmsg.
            let res = if self.hs.is_empty() {
                read_tcp(tcp, dst, want).await
            } else {
                Err(io::Error::from_raw_os_error(libc::EIO))
            };
            let err = match res {
                Ok(n) => return Ok(n),
                Err(e) => e,
            };
            let record = match err.raw_os_error() {
                Some(libc::EIO) => {
                    ktls::recv_control(socket_fd(tcp), self.tls13, &mut self.pending, &mut self.hs)
                }
                _ => Err(err),
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    self.receive_failed(tcp, e)?;
                    continue;
                }
            };
            match record {
                ControlRecord::CloseNotify => {
                    self.metrics.ktls(KtlsEvent::CloseNotify);
                    self.eof = true;
                }
                ControlRecord::Alert(level, desc) => {
                    // After a fatal alert nothing more is sent (RFC 8446 §6.2).
                    self.failed = level == 2;
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("peer sent TLS alert {desc} (level {level})"),
                    ));
                }
                ControlRecord::KeyUpdate(request) => {
                    match ktls::rekey(socket_fd(tcp), &mut self.kernel, request) {
                        Ok(()) => {
                            self.metrics.ktls(KtlsEvent::Rekey);
                        }
                        Err(e) => {
                            self.metrics.ktls(KtlsEvent::KeyUpdateClose);
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                format!("peer sent a TLS 1.3 KeyUpdate; closing: {e}"),
                            ));
                        }
                    }
                }
                ControlRecord::Renegotiation => {
                    // RFC 5246 §7.2.2: a warning; the connection goes on.
                    let _ = ktls::send_alert(socket_fd(tcp), records::ALERT_NO_RENEGOTIATION);
                }
                ControlRecord::Fatal(desc, why) => {
                    self.failed = true;
                    let _ = ktls::send_fatal_alert(socket_fd(tcp), desc);
                    return Err(fault(why));
                }
                ControlRecord::Fragment | ControlRecord::Data(_) => {}
                ControlRecord::WouldBlock if !self.hs.is_empty() => {
                    // The next fragment is not in yet.
                    tcp.readable(false).await?;
                }
                ControlRecord::WouldBlock => {
                    idle += 1;
                    if idle == MAX_IDLE_READS {
                        return Err(io::Error::other(
                            "kTLS socket keeps failing reads without a control record",
                        ));
                    }
                }
            }
        }
    }

    /// A receive failed. The kernel's record-layer errors are the peer's faults and get
    /// their fatal alert; `EKEYEXPIRED` while a KeyUpdate is half read means the kernel
    /// stopped at its first fragment and the current key goes back in. Anything else is
    /// the socket's own error. `Ok`: read on.
    fn receive_failed(&mut self, tcp: &TcpStream, e: io::Error) -> io::Result<()> {
        if let Some((desc, why)) = records::alert_for_receive_error(&e) {
            self.failed = true;
            let sent = ktls::send_fatal_alert(socket_fd(tcp), desc);
            return Err(fault(match sent {
                Ok(()) => why.to_string(),
                Err(s) => format!("{why}; the alert could not be sent: {s}"),
            }));
        }
        if e.raw_os_error() == Some(libc::EKEYEXPIRED) && !self.hs.is_empty() {
            return ktls::reinstall_rx_key(socket_fd(tcp)).map_err(|r| {
                self.failed = true;
                io::Error::other(format!("reinstalling the receive key: {r}"))
            });
        }
        Err(e)
    }

    /// close_notify through the kernel on `tcp`, unless the session already ended on an
    /// alert.
    pub(super) fn close_notify(&self, tcp: &TcpStream) {
        if !self.failed {
            let _ = ktls::send_alert(socket_fd(tcp), ktls::ALERT_CLOSE_NOTIFY);
        }
    }
}
