//! ③ Kernel TLS: after rustls finishes the handshake, the record layer moves into the
//! kernel (`TCP_ULP "tls"`, `TLS_TX`, `TLS_RX`), and the worker reads and writes plaintext
//! on the socket — which also lets bodies be spliced without entering userspace.
//!
//! This module is the only home of `unsafe` socket calls besides the runtime. It uses
//! ktls-core for the kernel ABI (crypto-info structs, `setsockopt` wrappers and the
//! conversion of rustls' extracted secrets). Its own capability probe ([`support`]) tells
//! "no tls ULP" from "the ULP attaches but TLS_TX refuses every cipher" (AEAD modules
//! missing) from single refused ciphers, with the kernel's error for each. It adds what monoio
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
use std::os::fd::{AsRawFd, BorrowedFd};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroizing;

use ktls_core::{ProtocolVersion, TlsCryptoInfoRx, TlsCryptoInfoTx};
use rustls::CipherSuite;
use rustls::kernel::KernelConnection;

use super::driver::Role;

pub mod records;

/// Why a connection stayed in userspace rustls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The kernel has no `tls` ULP (`TCP_ULP "tls"` fails: no module, CONFIG_TLS off, or
    /// not allowed).
    Unavailable,
    /// The ULP attaches but the kernel refuses every cipher (`TLS_TX` fails: its AEAD
    /// crypto modules are missing).
    NoCiphers,
    /// The negotiated version × cipher suite is not offered by this kernel.
    Cipher,
    /// Setting the ULP on this socket failed.
    Setup,
    /// Handshake bytes were left over that the kernel could not take.
    Buffered,
}

impl Fallback {
    pub const ALL: [Fallback; 5] = [
        Fallback::Unavailable,
        Fallback::NoCiphers,
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
            Fallback::NoCiphers => "kernel_tls_no_ciphers",
            Fallback::Cipher => "cipher_unsupported",
            Fallback::Setup => "setup_failed",
            Fallback::Buffered => "buffered_handshake_bytes",
        }
    }
}

static FALLBACK_SEEN: [AtomicBool; Fallback::ALL.len()] =
    [const { AtomicBool::new(false) }; Fallback::ALL.len()];

/// Logs the first kTLS fallback of each reason in this process (not one per connection).
pub fn log_fallback_once(reason: Fallback) {
    if !FALLBACK_SEEN[reason.index()].swap(true, Ordering::Relaxed) {
        // The probe ran on the main thread at start-up; this only formats its answer.
        tracing::warn!(
            reason = reason.name(),
            kernel = %support().describe(),
            "kernel TLS not used, serving in userspace rustls (logged once per reason; counted per connection)"
        );
    }
}

/// One TLS version × AEAD the probe tries (the ones rustls negotiates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub version: ProtocolVersion,
    pub aead: Aead,
}

/// The AEADs kTLS can take from rustls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Aead {
    /// The kernel crypto algorithm kTLS allocates for it (net/tls: cipher_name).
    pub fn kernel_algorithm(self) -> &'static str {
        match self {
            Aead::Aes128Gcm | Aead::Aes256Gcm => "gcm(aes)",
            Aead::Chacha20Poly1305 => "rfc7539(chacha20,poly1305)",
        }
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = match self.version {
            ProtocolVersion::TLSv1_2 => "TLS1.2",
            _ => "TLS1.3",
        };
        let a = match self.aead {
            Aead::Aes128Gcm => "AES-128-GCM",
            Aead::Aes256Gcm => "AES-256-GCM",
            Aead::Chacha20Poly1305 => "CHACHA20-POLY1305",
        };
        write!(f, "{v} {a}")
    }
}

/// Every case the probe tries, in report order.
pub const CASES: [Case; 6] = {
    use Aead::*;
    use ProtocolVersion::{TLSv1_2, TLSv1_3};
    [
        Case {
            version: TLSv1_2,
            aead: Aes128Gcm,
        },
        Case {
            version: TLSv1_2,
            aead: Aes256Gcm,
        },
        Case {
            version: TLSv1_2,
            aead: Chacha20Poly1305,
        },
        Case {
            version: TLSv1_3,
            aead: Aes128Gcm,
        },
        Case {
            version: TLSv1_3,
            aead: Aes256Gcm,
        },
        Case {
            version: TLSv1_3,
            aead: Chacha20Poly1305,
        },
    ]
};

/// What the kernel offers, probed once per process on loopback sockets.
#[derive(Debug, Clone)]
pub enum Support {
    /// `TCP_ULP "tls"` is refused: no kernel TLS at all.
    NoUlp(String),
    /// The ULP attaches but `TLS_TX` fails for every cipher, with each error.
    NoCiphers(Vec<(Case, String)>),
    /// At least one cipher works; `refused` lists the others with their errors.
    Ready {
        offered: Vec<Case>,
        refused: Vec<(Case, String)>,
    },
    /// The probe could not run (no loopback socket, an unexpected ULP error).
    ProbeFailed(String),
}

static SUPPORT: OnceLock<Support> = OnceLock::new();

/// Probes kTLS support (blocking: call at start-up, never on a worker first).
pub fn support() -> &'static Support {
    SUPPORT.get_or_init(probe)
}

/// Per case: a fresh loopback connection, `TCP_ULP "tls"`, then `TLS_TX` with a zero key.
/// ENOENT from the ULP means no `tls` module; a `TLS_TX` error means the kernel cannot
/// set up that cipher (it loads the AEAD's crypto modules on demand, so a missing module
/// shows here as ENOENT too).
fn probe() -> Support {
    let run = || -> io::Result<Support> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut offered = Vec::new();
        let mut refused = Vec::new();
        for case in CASES {
            let stream = std::net::TcpStream::connect(addr)?;
            let _accepted = listener.accept()?;
            match ktls_core::setup_ulp(&stream) {
                Ok(()) => {}
                Err(e) if e.is_ktls_unsupported() => {
                    return Ok(Support::NoUlp(NO_ULP.into()));
                }
                Err(e) => return Ok(Support::ProbeFailed(format!("TCP_ULP \"tls\": {e}"))),
            }
            let secret = zero_secret(case.aead);
            match TlsCryptoInfoTx::new(case.version, secret, 0).and_then(|i| i.set(&stream)) {
                Ok(()) => offered.push(case),
                Err(e) => refused.push((case, os_error_text(&e))),
            }
        }
        Ok(if offered.is_empty() {
            Support::NoCiphers(refused)
        } else {
            Support::Ready { offered, refused }
        })
    };
    run().unwrap_or_else(|e| Support::ProbeFailed(format!("probe failed: {e}")))
}

const NO_ULP: &str =
    "the kernel refuses TCP_ULP \"tls\" (no tls module: modprobe tls, or CONFIG_TLS is off)";

fn zero_secret(aead: Aead) -> ktls_core::ConnectionTrafficSecrets {
    use ktls_core::{AeadKey, ConnectionTrafficSecrets as S};
    match aead {
        Aead::Aes128Gcm => S::Aes128Gcm {
            key: AeadKey::new(Default::default()),
            iv: Default::default(),
            salt: Default::default(),
        },
        Aead::Aes256Gcm => S::Aes256Gcm {
            key: AeadKey::new(Default::default()),
            iv: Default::default(),
            salt: Default::default(),
        },
        Aead::Chacha20Poly1305 => S::Chacha20Poly1305 {
            key: AeadKey::new(Default::default()),
            iv: Default::default(),
            salt: Default::default(),
        },
    }
}

/// "No such file or directory (os error 2)" from a ktls-core error, without its prefix.
fn os_error_text(e: &ktls_core::Error) -> String {
    use std::error::Error as _;
    match e {
        ktls_core::Error::CryptoMaterial(io) => io.to_string(),
        other => other
            .source()
            .map_or_else(|| other.to_string(), |s| s.to_string()),
    }
}

fn list(cases: &[Case]) -> String {
    cases
        .iter()
        .map(Case::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refused cases grouped by error: "TLS1.2 CHACHA20-POLY1305, TLS1.3 CHACHA20-POLY1305
/// (rfc7539(chacha20,poly1305): No such file or directory (os error 2))".
fn refusals(refused: &[(Case, String)]) -> String {
    let mut groups: Vec<(&'static str, &str, Vec<Case>)> = Vec::new();
    for (case, err) in refused {
        let alg = case.aead.kernel_algorithm();
        match groups.iter_mut().find(|(a, e, _)| *a == alg && *e == err) {
            Some(g) => g.2.push(*case),
            None => groups.push((alg, err, vec![*case])),
        }
    }
    groups
        .iter()
        .map(|(alg, err, cases)| format!("{} ({alg}: {err})", list(cases)))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Support {
    /// At least one cipher can be offloaded.
    pub fn is_available(&self) -> bool {
        matches!(self, Support::Ready { .. })
    }

    /// Why a connection cannot be offloaded at all (`None` when some cipher works).
    pub fn fallback(&self) -> Option<Fallback> {
        match self {
            Support::Ready { .. } => None,
            Support::NoCiphers(_) => Some(Fallback::NoCiphers),
            Support::NoUlp(_) | Support::ProbeFailed(_) => Some(Fallback::Unavailable),
        }
    }

    /// One sentence for logs, `ringgate doctor` and start-up errors: what works, and for
    /// what does not, which step failed and with which error.
    pub fn describe(&self) -> String {
        match self {
            Support::NoUlp(why) | Support::ProbeFailed(why) => why.clone(),
            Support::NoCiphers(refused) => format!(
                "TCP_ULP \"tls\" attaches, but the kernel refuses every cipher (TLS_TX failed for {}): \
                 its AEAD crypto modules are missing or cannot load",
                refusals(refused)
            ),
            Support::Ready { offered, refused } if refused.is_empty() => list(offered),
            Support::Ready { offered, refused } => format!(
                "{}; refused by the kernel: {}",
                list(offered),
                refusals(refused)
            ),
        }
    }

    /// The refused cases (empty when kTLS is unavailable altogether or all work).
    pub fn refused(&self) -> &[(Case, String)] {
        match self {
            Support::NoCiphers(r) | Support::Ready { refused: r, .. } => r,
            _ => &[],
        }
    }

    /// Whether this suite can be offloaded.
    pub fn offers(&self, suite: CipherSuite) -> bool {
        let Support::Ready { offered, .. } = self else {
            return false;
        };
        use CipherSuite as S;
        use ProtocolVersion::{TLSv1_2, TLSv1_3};
        let case = match suite {
            S::TLS13_AES_128_GCM_SHA256 => (TLSv1_3, Aead::Aes128Gcm),
            S::TLS13_AES_256_GCM_SHA384 => (TLSv1_3, Aead::Aes256Gcm),
            S::TLS13_CHACHA20_POLY1305_SHA256 => (TLSv1_3, Aead::Chacha20Poly1305),
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => (TLSv1_2, Aead::Aes128Gcm),
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => (TLSv1_2, Aead::Aes256Gcm),
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => (TLSv1_2, Aead::Chacha20Poly1305),
            _ => return false,
        };
        offered.iter().any(|c| (c.version, c.aead) == case)
    }
}

/// Step 1: attach the `tls` ULP. Reversible in effect: until TLS_TX/RX are set the
/// socket still carries bytes unchanged, so a failure here keeps userspace TLS working.
pub fn attach_ulp(fd: BorrowedFd<'_>) -> Result<(), Fallback> {
    ktls_core::setup_ulp(&fd).map_err(|_| Fallback::Setup)
}

/// Why the switch failed after the secrets left rustls (the connection must close).
#[derive(Debug)]
pub struct SwitchError(pub String);

/// Step 2: move the traffic secrets from rustls into the kernel. Consumes the rustls
/// connection (either role: server facing a client, client facing an upstream) and
/// returns what rustls keeps afterwards (the TLS 1.3 key schedule, for KeyUpdates); on
/// error the connection cannot continue.
pub fn install<R: Role>(
    fd: BorrowedFd<'_>,
    conn: R,
) -> Result<KernelConnection<R::Data>, SwitchError> {
    let (secrets, kernel) = conn
        .dangerous_into_kernel()
        .map_err(|e| SwitchError(format!("extracting secrets: {e}")))?;
    let version = kernel_version(&kernel).map_err(SwitchError)?;
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    set_key(fd, version, Direction::Tx, tx_seq, tx).map_err(SwitchError)?;
    set_key(fd, version, Direction::Rx, rx_seq, rx).map_err(SwitchError)?;
    Ok(kernel)
}

fn kernel_version<D>(kernel: &KernelConnection<D>) -> Result<ProtocolVersion, String> {
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
    fd: BorrowedFd<'_>,
    version: ProtocolVersion,
    direction: Direction,
    seq: u64,
    secret: rustls::ConnectionTrafficSecrets,
) -> Result<(), String> {
    let secret = ktls_core::ConnectionTrafficSecrets::try_from(secret)
        .map_err(|e| format!("converting secrets: {e}"))?;
    match direction {
        Direction::Tx => TlsCryptoInfoTx::new(version, secret, seq)
            .and_then(|info| info.set(&fd))
            .map_err(|e| format!("TLS_TX: {e}")),
        Direction::Rx => TlsCryptoInfoRx::new(version, secret, seq)
            .and_then(|info| info.set(&fd))
            .map_err(|e| format!("TLS_RX: {e}")),
    }
}

/// A peer's TLS 1.3 KeyUpdate arrived (`request`: 1 when it asks for ours too). Installs
/// the peer's next receive key, and when asked, sends our KeyUpdate under the current key
/// and then installs our next send key (RFC 8446 §4.6.3). Kernels before 6.14 refuse to
/// replace a key (EBUSY): the error tells the caller to close the connection.
pub fn rekey<D>(
    fd: BorrowedFd<'_>,
    kernel: &mut KernelConnection<D>,
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

/// Bytes of control-message space: one `cmsghdr` with a one-byte record type needs
/// `CMSG_SPACE(1)` (24 on 64-bit Linux); 64 leaves room for a header the kernel adds.
const CMSG_SPACE: usize = 64;

/// A control-message buffer aligned for `cmsghdr`: `CMSG_FIRSTHDR`/`CMSG_NXTHDR` return
/// pointers into it that are dereferenced as `cmsghdr`, which a `[u8; N]` (alignment 1)
/// does not allow. The union gives the bytes `cmsghdr`'s alignment.
#[repr(C)]
union CmsgBuf {
    _align: libc::cmsghdr,
    bytes: [u8; CMSG_SPACE],
}

impl CmsgBuf {
    fn new() -> CmsgBuf {
        CmsgBuf {
            bytes: [0; CMSG_SPACE],
        }
    }
}

/// A msghdr with one iovec and a control buffer. The header holds raw pointers to `iov`
/// and `control`: the caller keeps both alive and unmoved until the syscall returns.
fn msghdr(iov: &mut libc::iovec, control: &mut CmsgBuf) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is a valid empty header (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (control as *mut CmsgBuf).cast();
    msg.msg_controllen = CMSG_SPACE as _;
    msg
}

/// Reads one record with its type (after a plain read failed with EIO, or while a
/// handshake message is partly read into `hs`). Never blocks (`MSG_DONTWAIT`);
/// application data is appended to `data`.
pub fn recv_control(
    fd: BorrowedFd<'_>,
    tls13: bool,
    data: &mut Vec<u8>,
    hs: &mut Vec<u8>,
) -> io::Result<ControlRecord> {
    let mut payload = [0u8; 16 * 1024 + 256];
    let mut control = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut msg = msghdr(&mut iov, &mut control);
    // SAFETY: fd is a socket borrowed from its owner (open for the call); msg points at `iov` (→ `payload`)
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
    // msg_controllen of `control`, whose `CmsgBuf` type aligns it for `cmsghdr` (and the
    // kernel pads each header to that alignment), so every `cmsg` read here is an aligned
    // `cmsghdr`; CMSG_DATA of a SOL_TLS/TLS_GET_RECORD_TYPE header holds one byte.
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
pub fn send_alert(fd: BorrowedFd<'_>, description: u8) -> io::Result<()> {
    let level = records::alert_level(description);
    send_record(fd, records::CONTENT_ALERT, &mut [level, description])
}

/// Sends a fatal alert after a fault, including one the kernel's receive path reported:
/// a failed receive (EBADMSG, EMSGSIZE) leaves its errno in the socket's pending error,
/// and the kernel refuses every send while one is pending, so it is read (and so
/// cleared) first. An error means the alert could not go out; the caller closes anyway.
pub fn send_fatal_alert(fd: BorrowedFd<'_>, description: u8) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd is a socket borrowed from its owner (open for the call); `err` and `len` are live locals
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
pub fn reinstall_rx_key(fd: BorrowedFd<'_>) -> io::Result<()> {
    use std::mem::size_of;
    // The kernel hands out a crypto_info only into a buffer of its exact size: first the
    // common header (version, cipher type), then the whole struct for that cipher.
    // Zeroizing: the buffer holds the receive key read back from the kernel, and a plain
    // `fill(0)` before it goes out of scope is a dead store the compiler may drop.
    let mut info = Zeroizing::new([0u8; 64]);
    let get = |info: &mut [u8], len: usize| -> io::Result<()> {
        let mut optlen = len as libc::socklen_t;
        // SAFETY: fd is a socket borrowed from its owner (open for the call); `info` is at least `len`
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
    get(&mut info[..], size_of::<libc::tls_crypto_info>())?;
    let cipher = u16::from_ne_bytes([info[2], info[3]]);
    let len = match cipher {
        libc::TLS_CIPHER_AES_GCM_128 => size_of::<libc::tls12_crypto_info_aes_gcm_128>(),
        libc::TLS_CIPHER_AES_GCM_256 => size_of::<libc::tls12_crypto_info_aes_gcm_256>(),
        libc::TLS_CIPHER_CHACHA20_POLY1305 => {
            size_of::<libc::tls12_crypto_info_chacha20_poly1305>()
        }
        other => return Err(io::Error::other(format!("cipher type {other}"))),
    };
    get(&mut info[..], len)?;
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
    // `info` is zeroed when dropped, on this and every early return.
    Ok(())
}

/// Sends one record of `content_type` through the kernel (`TLS_SET_RECORD_TYPE`), never
/// blocking: a record that cannot be queued whole is an error, not a wait.
fn send_record(fd: BorrowedFd<'_>, content_type: u8, payload: &mut [u8]) -> io::Result<()> {
    let mut control = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut msg = msghdr(&mut iov, &mut control);
    // SAFETY: CMSG_SPACE(1) is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: `control` is CMSG_SPACE bytes long (≥ CMSG_SPACE(1)), so the first header
    // and its one data byte lie inside it, and it is a `CmsgBuf`, aligned for `cmsghdr`,
    // so writing through the header pointer is an aligned write.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = content_type;
    }
    // SAFETY: fd is a socket borrowed from its owner (open for the call); msg describes `payload` and
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
    use std::os::fd::AsFd;

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
    fn control_buffer_is_aligned_for_cmsghdr() {
        // CMSG_FIRSTHDR returns the buffer's start, read and written as a cmsghdr.
        assert!(std::mem::align_of::<CmsgBuf>() >= std::mem::align_of::<libc::cmsghdr>());
        let mut control = CmsgBuf::new();
        let mut iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let msg = msghdr(&mut iov, &mut control);
        assert_eq!(
            msg.msg_control as usize % std::mem::align_of::<libc::cmsghdr>(),
            0
        );
        // SAFETY: a size computation.
        assert!(CMSG_SPACE >= unsafe { libc::CMSG_SPACE(1) } as usize);
    }

    #[test]
    fn control_io_on_a_plain_socket_fails_cleanly() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut data = Vec::new();
        // Nothing sent yet: would block, never blocks.
        assert_eq!(
            recv_control(s.as_fd(), true, &mut data, &mut Vec::new()).unwrap(),
            ControlRecord::WouldBlock
        );
        std::io::Write::write_all(&mut &c, b"hi").unwrap();
        // Without kTLS there is no record type: plain data.
        loop {
            match recv_control(s.as_fd(), true, &mut data, &mut Vec::new()).unwrap() {
                ControlRecord::WouldBlock => continue,
                r => {
                    assert_eq!(r, ControlRecord::Data(2));
                    break;
                }
            }
        }
        // Without the tls ULP the kernel ignores the record-type control message and the
        // two alert bytes go out as they are: the call itself never blocks or fails.
        send_alert(s.as_fd(), ALERT_CLOSE_NOTIFY).unwrap();
        let mut got = [0u8; 2];
        std::io::Read::read_exact(&mut &c, &mut got).unwrap();
        assert_eq!(got, [1, 0]);
    }
}
