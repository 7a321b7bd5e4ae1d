//! ③ Kernel TLS: after rustls finishes the handshake, the record layer moves into the
//! kernel (`TCP_ULP "tls"`, `TLS_TX`, `TLS_RX`), and the worker reads and writes plaintext
//! on the socket — which also lets bodies be spliced without entering userspace.
//!
//! This module is the only home of `unsafe` socket calls besides the runtime. It uses
//! ktls-core for the kernel ABI (crypto-info structs, `setsockopt` wrappers, the cipher
//! probe, and the conversion of rustls' extracted secrets) and adds only what monoio
//! needs: non-blocking control-record I/O (`recvmsg`/`sendmsg` with `SOL_TLS` control
//! messages and `MSG_DONTWAIT`, because monoio leaves accepted sockets blocking) and the
//! switch itself.
//!
//! What it must never do: block a worker, panic on a peer's record, or leave a connection
//! half-switched — a failure before the secrets leave rustls keeps the connection in
//! userspace (a *fallback*, counted by [`Fallback`] reason); a failure after that closes
//! the connection. Key material is never logged.

#![allow(
    unsafe_code,
    reason = "the kTLS kernel interface is setsockopt/recvmsg/sendmsg with raw pointers"
)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::OnceLock;

use ktls_core::probe::{Compatibilities, Compatibility};
use ktls_core::{ProtocolVersion, TlsCryptoInfoRx, TlsCryptoInfoTx};
use rustls::CipherSuite;
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};

pub mod records;

/// Why a connection stayed in userspace rustls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The kernel has no `tls` module (or TCP_ULP is not allowed).
    Unavailable,
    /// The negotiated version × cipher suite is not offered by this kernel.
    Cipher,
    /// Setting the ULP on this socket failed.
    Setup,
    /// Handshake bytes were left over that the kernel could not take.
    Buffered,
}

impl Fallback {
    pub const ALL: [Fallback; 4] = [
        Fallback::Unavailable,
        Fallback::Cipher,
        Fallback::Setup,
        Fallback::Buffered,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Fallback::Unavailable => "kernel_tls_unavailable",
            Fallback::Cipher => "cipher_unsupported",
            Fallback::Setup => "setup_failed",
            Fallback::Buffered => "buffered_handshake_bytes",
        }
    }
}

/// What the kernel offers, probed once per process on loopback sockets.
#[derive(Debug, Clone)]
pub struct Support {
    /// `Err(reason)` when kTLS cannot be used at all.
    pub available: Result<Compatibilities, String>,
}

static SUPPORT: OnceLock<Support> = OnceLock::new();

/// Probes kTLS support (blocking: call at start-up, never on a worker first).
pub fn support() -> &'static Support {
    SUPPORT.get_or_init(|| Support {
        available: match Compatibilities::probe() {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err("the kernel refuses TCP_ULP \"tls\" (no tls module: modprobe tls, or CONFIG_TLS is off)".into()),
            Err(e) => Err(format!("probe failed: {e}")),
        },
    })
}

impl Support {
    pub fn is_available(&self) -> bool {
        self.available.is_ok()
    }

    /// Human-readable list of offloadable version × cipher pairs.
    pub fn describe(&self) -> String {
        match &self.available {
            Err(e) => e.clone(),
            Ok(c) => {
                let list = |v: &str, c: &Compatibility| {
                    let mut s = Vec::new();
                    if c.aes_128_gcm() {
                        s.push(format!("{v} AES-128-GCM"));
                    }
                    if c.aes_256_gcm() {
                        s.push(format!("{v} AES-256-GCM"));
                    }
                    if c.chacha20_poly1305() {
                        s.push(format!("{v} CHACHA20-POLY1305"));
                    }
                    s
                };
                let mut all = list("TLS1.2", &c.tls12);
                all.extend(list("TLS1.3", &c.tls13));
                all.join(", ")
            }
        }
    }

    /// Whether this suite can be offloaded.
    pub fn offers(&self, suite: CipherSuite) -> bool {
        let Ok(c) = &self.available else {
            return false;
        };
        use CipherSuite as S;
        match suite {
            S::TLS13_AES_128_GCM_SHA256 => c.tls13.aes_128_gcm(),
            S::TLS13_AES_256_GCM_SHA384 => c.tls13.aes_256_gcm(),
            S::TLS13_CHACHA20_POLY1305_SHA256 => c.tls13.chacha20_poly1305(),
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => c.tls12.aes_128_gcm(),
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => c.tls12.aes_256_gcm(),
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => c.tls12.chacha20_poly1305(),
            _ => false,
        }
    }
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: callers pass the descriptor of a TcpStream they hold for the duration of
    // the call; the borrow is used only inside that call and never stored.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Step 1: attach the `tls` ULP. Reversible in effect: until TLS_TX/RX are set the
/// socket still carries bytes unchanged, so a failure here keeps userspace TLS working.
pub fn attach_ulp(fd: &impl AsRawFd) -> Result<(), Fallback> {
    ktls_core::setup_ulp(&borrow(fd.as_raw_fd())).map_err(|_| Fallback::Setup)
}

/// Why the switch failed after the secrets left rustls (the connection must close).
#[derive(Debug)]
pub struct SwitchError(pub String);

/// Step 2: move the traffic secrets from rustls into the kernel. Consumes the rustls
/// connection and returns what rustls keeps afterwards (the TLS 1.3 key schedule, for
/// KeyUpdates); on error the connection cannot continue.
pub fn install(
    fd: &impl AsRawFd,
    conn: UnbufferedServerConnection,
) -> Result<KernelConnection<ServerConnectionData>, SwitchError> {
    let (secrets, kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(|e| SwitchError(format!("extracting secrets: {e}")))?;
    let version = kernel_version(&kernel).map_err(SwitchError)?;
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    set_key(fd, version, Direction::Tx, tx_seq, tx).map_err(SwitchError)?;
    set_key(fd, version, Direction::Rx, rx_seq, rx).map_err(SwitchError)?;
    Ok(kernel)
}

fn kernel_version(
    kernel: &KernelConnection<ServerConnectionData>,
) -> Result<ProtocolVersion, String> {
    match kernel.protocol_version() {
        rustls::ProtocolVersion::TLSv1_3 => Ok(ProtocolVersion::TLSv1_3),
        rustls::ProtocolVersion::TLSv1_2 => Ok(ProtocolVersion::TLSv1_2),
        other => Err(format!("unsupported protocol {other:?}")),
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Tx,
    Rx,
}

/// Installs one direction's traffic key (`TLS_TX` or `TLS_RX`) with its first sequence
/// number; used for the switch and again for every re-key.
fn set_key(
    fd: &impl AsRawFd,
    version: ProtocolVersion,
    direction: Direction,
    seq: u64,
    secret: rustls::ConnectionTrafficSecrets,
) -> Result<(), String> {
    let secret = ktls_core::ConnectionTrafficSecrets::try_from(secret)
        .map_err(|e| format!("converting secrets: {e}"))?;
    let sock = borrow(fd.as_raw_fd());
    match direction {
        Direction::Tx => TlsCryptoInfoTx::new(version, secret, seq)
            .and_then(|info| info.set(&sock))
            .map_err(|e| format!("TLS_TX: {e}")),
        Direction::Rx => TlsCryptoInfoRx::new(version, secret, seq)
            .and_then(|info| info.set(&sock))
            .map_err(|e| format!("TLS_RX: {e}")),
    }
}

/// A peer's TLS 1.3 KeyUpdate arrived (`request`: 1 when it asks for ours too). Installs
/// the peer's next receive key, and when asked, sends our KeyUpdate under the current key
/// and then installs our next send key (RFC 8446 §4.6.3). Kernels before 6.14 refuse to
/// replace a key (EBUSY): the error tells the caller to close the connection.
pub fn rekey(
    fd: &impl AsRawFd,
    kernel: &mut KernelConnection<ServerConnectionData>,
    request: u8,
) -> io::Result<()> {
    let refused = |e: String| io::Error::other(format!("re-key refused by the kernel: {e}"));
    let version = kernel_version(kernel).map_err(io::Error::other)?;
    let (seq, rx) = kernel
        .update_rx_secret()
        .map_err(|e| io::Error::other(format!("next receive key: {e}")))?;
    set_key(fd, version, Direction::Rx, seq, rx).map_err(refused)?;
    if request == records::KEY_UPDATE_REQUESTED {
        // Our KeyUpdate(update_not_requested) goes out under the old key.
        let mut msg = [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0];
        send_record(fd, CONTENT_HANDSHAKE, &mut msg)?;
        let (seq, tx) = kernel
            .update_tx_secret()
            .map_err(|e| io::Error::other(format!("next send key: {e}")))?;
        set_key(fd, version, Direction::Tx, seq, tx).map_err(refused)?;
    }
    Ok(())
}

pub use records::{ALERT_CLOSE_NOTIFY, ControlRecord};
use records::{CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, HANDSHAKE_KEY_UPDATE};

const CMSG_SPACE: usize = 64;

/// A msghdr with one iovec and a control buffer. The header holds raw pointers to `iov`
/// and `control`: the caller keeps both alive and unmoved until the syscall returns.
fn msghdr(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is a valid empty header (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    msg
}

/// Reads one record with its type (after a plain read failed with EIO, or while a
/// handshake message is partly read into `hs`). Never blocks (`MSG_DONTWAIT`);
/// application data is appended to `data`.
pub fn recv_control(
    fd: &impl AsRawFd,
    tls13: bool,
    data: &mut Vec<u8>,
    hs: &mut Vec<u8>,
) -> io::Result<ControlRecord> {
    let mut payload = [0u8; 16 * 1024 + 256];
    let mut control = [0u8; CMSG_SPACE];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut msg = msghdr(&mut iov, &mut control);
    // SAFETY: fd is an open socket owned by the caller; msg points at `iov` (→ `payload`)
    // and `control`, all alive on this stack frame until the call returns.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(ControlRecord::WouldBlock);
        }
        return Err(e);
    }
    let n = n as usize;
    let mut record_type = CONTENT_APPLICATION_DATA;
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR walk only within
    // msg_controllen, and CMSG_DATA of a SOL_TLS/TLS_GET_RECORD_TYPE header holds one byte.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_TLS && (*cmsg).cmsg_type == libc::TLS_GET_RECORD_TYPE
            {
                record_type = *libc::CMSG_DATA(cmsg);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(records::classify(
        tls13,
        record_type,
        &payload[..n],
        data,
        hs,
    ))
}

/// Sends an alert through the kernel (`close_notify` and `no_renegotiation` are
/// warnings, every other alert fatal). Never blocks; a full send buffer just means the
/// peer gets a FIN without it.
pub fn send_alert(fd: &impl AsRawFd, description: u8) -> io::Result<()> {
    let level = records::alert_level(description);
    send_record(fd, records::CONTENT_ALERT, &mut [level, description])
}

/// Sends a fatal alert after a fault, including one the kernel's receive path reported:
/// a failed receive (EBADMSG, EMSGSIZE) leaves its errno in the socket's pending error,
/// and the kernel refuses every send while one is pending, so it is read (and so
/// cleared) first. An error means the alert could not go out; the caller closes anyway.
pub fn send_fatal_alert(fd: &impl AsRawFd, description: u8) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd is an open socket owned by the caller; `err` and `len` are live locals
    // of the sizes passed.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        );
    }
    send_alert(fd, description)
}

/// Installs the current receive key again, unchanged. Kernels that re-key (>= 6.14)
/// stop decrypting after any record whose first byte is a KeyUpdate's type
/// (EKEYEXPIRED) until a new key is set; when that record held only the first fragment
/// of the KeyUpdate, the rest is still under the current key, so that key goes back in
/// (read with getsockopt(TLS_RX), with the kernel's next sequence number).
pub fn reinstall_rx_key(fd: &impl AsRawFd) -> io::Result<()> {
    use std::mem::size_of;
    // The kernel hands out a crypto_info only into a buffer of its exact size: first the
    // common header (version, cipher type), then the whole struct for that cipher.
    let mut info = [0u8; 64];
    let get = |info: &mut [u8], len: usize| -> io::Result<()> {
        let mut optlen = len as libc::socklen_t;
        // SAFETY: fd is an open socket owned by the caller; `info` is at least `len`
        // bytes long and `optlen` a live local, both valid until the call returns.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_TLS,
                libc::TLS_RX,
                info.as_mut_ptr().cast(),
                &mut optlen,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    get(&mut info, size_of::<libc::tls_crypto_info>())?;
    let cipher = u16::from_ne_bytes([info[2], info[3]]);
    let len = match cipher {
        libc::TLS_CIPHER_AES_GCM_128 => size_of::<libc::tls12_crypto_info_aes_gcm_128>(),
        libc::TLS_CIPHER_AES_GCM_256 => size_of::<libc::tls12_crypto_info_aes_gcm_256>(),
        libc::TLS_CIPHER_CHACHA20_POLY1305 => {
            size_of::<libc::tls12_crypto_info_chacha20_poly1305>()
        }
        other => return Err(io::Error::other(format!("cipher type {other}"))),
    };
    let result = get(&mut info, len).and_then(|()| {
        // SAFETY: as above; the kernel reads the `len` bytes it just wrote.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_TLS,
                libc::TLS_RX,
                info.as_ptr().cast(),
                len as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    });
    info.fill(0);
    result
}

/// Sends one record of `content_type` through the kernel (`TLS_SET_RECORD_TYPE`), never
/// blocking: a record that cannot be queued whole is an error, not a wait.
fn send_record(fd: &impl AsRawFd, content_type: u8, payload: &mut [u8]) -> io::Result<()> {
    let mut control = [0u8; CMSG_SPACE];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut msg = msghdr(&mut iov, &mut control);
    // SAFETY: CMSG_SPACE(1) is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: `control` is CMSG_SPACE bytes long (≥ CMSG_SPACE(1)), so the first header
    // and its one data byte lie inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = content_type;
    }
    // SAFETY: fd is an open socket owned by the caller; msg describes `payload` and
    // `control`, both alive until the call returns.
    let n = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != payload.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "control record sent in part",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_gives_an_answer_and_never_panics() {
        let s = support();
        // On this CI host CONFIG_TLS is off; elsewhere it may be on. Either way there is
        // a description, and the suite check agrees with availability.
        assert!(!s.describe().is_empty());
        if !s.is_available() {
            assert!(!s.offers(CipherSuite::TLS13_AES_128_GCM_SHA256));
        }
    }

    #[test]
    fn control_io_on_a_plain_socket_fails_cleanly() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut data = Vec::new();
        // Nothing sent yet: would block, never blocks.
        assert_eq!(
            recv_control(&s, true, &mut data, &mut Vec::new()).unwrap(),
            ControlRecord::WouldBlock
        );
        std::io::Write::write_all(&mut &c, b"hi").unwrap();
        // Without kTLS there is no record type: plain data.
        loop {
            match recv_control(&s, true, &mut data, &mut Vec::new()).unwrap() {
                ControlRecord::WouldBlock => continue,
                r => {
                    assert_eq!(r, ControlRecord::Data(2));
                    break;
                }
            }
        }
        // Without the tls ULP the kernel ignores the record-type control message and the
        // two alert bytes go out as they are: the call itself never blocks or fails.
        send_alert(&s, ALERT_CLOSE_NOTIFY).unwrap();
        let mut got = [0u8; 2];
        std::io::Read::read_exact(&mut &c, &mut got).unwrap();
        assert_eq!(got, [1, 0]);
    }
}
