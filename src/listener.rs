//! ① Listening sockets: one SO_REUSEPORT socket per worker per listener (socket2).
//!
//! All sockets are made on the main thread before any worker starts, so a bad address or
//! a port in use is an error at start-up, and port 0 is resolved once: the first socket
//! binds, the others bind to the port it got. IPv6 listeners are IPv6-only, so `[::]:443`
//! and `0.0.0.0:443` can both be configured. This module never accepts connections; the
//! worker's accept loop does. It also lends a monoio socket's descriptor
//! ([`socket_fd`]) to the socket calls monoio lacks (here and in kTLS), so nothing else
//! turns a raw descriptor into a borrowed one.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Creates `count` listening sockets sharing `addr` with SO_REUSEPORT. Returns them and
/// the bound address (port 0 resolved).
pub fn bind_reuseport(
    addr: SocketAddr,
    backlog: i32,
    count: usize,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let s = bind_one(bound, backlog)?;
        bound = s.local_addr()?;
        sockets.push(s);
    }
    Ok((sockets, bound))
}

fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    // Nonblocking for the epoll fallback; io_uring does not care.
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Accept errors that mean "out of a resource, try again shortly" rather than "this
/// connection failed".
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    )
}

// Linux errno values (stable ABI), spelled out to avoid a libc dependency here.
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_sockets() {
        let (socks, addr) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 16, 3).unwrap();
        assert_ne!(addr.port(), 0);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
    }

    #[test]
    fn busy_port_is_an_error_naming_the_address() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let err = bind_reuseport(addr, 16, 1).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn emfile_is_resource_exhaustion() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            EMFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(104)));
    }
}

/// What a non-blocking look at an idle connection's receive queue found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing queued: the connection is quiet.
    Nothing,
    /// Bytes are queued that no request asked for.
    Bytes,
    /// The peer closed (FIN).
    Eof,
    /// The socket reports an error (reset, …).
    Error,
}

/// The descriptor of a monoio socket, borrowed for as long as the socket is: the one
/// safe way to a [`BorrowedFd`] for the socket calls monoio does not offer (its
/// `TcpStream` and `TcpListener` implement `AsRawFd` but not `AsFd`). Taking the socket
/// type, not any `AsRawFd`, keeps a bare `RawFd` (which owns nothing) out.
#[allow(
    unsafe_code,
    reason = "monoio's sockets have no AsFd; this is the one place their fd is borrowed"
)]
pub fn socket_fd<S: MonoioSocket>(socket: &S) -> BorrowedFd<'_> {
    // SAFETY: every `MonoioSocket` owns its descriptor and closes it only when dropped;
    // the returned borrow is tied to `&S`, so the socket (and its fd) outlives it.
    unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) }
}

/// A monoio socket that owns its descriptor (sealed: only the types below).
pub trait MonoioSocket: AsRawFd + sealed::Sealed {}
impl MonoioSocket for monoio::net::TcpStream {}
impl MonoioSocket for monoio::net::TcpListener {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for monoio::net::TcpStream {}
    impl Sealed for monoio::net::TcpListener {}
}

/// Peeks (`MSG_PEEK | MSG_DONTWAIT`: never blocks, consumes nothing) at what is queued on
/// a socket nobody is reading: how an idle pooled upstream connection is checked before
/// it is reused, like nginx closing a cached connection on any byte or close.
pub fn pending(fd: BorrowedFd<'_>) -> Pending {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(&fd)
        .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    {
        Ok(0) => Pending::Eof,
        Ok(_) => Pending::Bytes,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pending::Nothing,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Pending::Nothing,
        Err(_) => Pending::Error,
    }
}

/// Reads what is queued on a socket without waiting (`MSG_DONTWAIT`): with `peek`, a
/// look that consumes nothing (`MSG_PEEK`); without, the bytes are taken. A socket with
/// nothing queued is `WouldBlock`. For the few bytes read before anything else owns the
/// stream (a PROXY protocol header), so exactly the header is taken and no byte after it.
#[allow(
    unsafe_code,
    reason = "recv(2) into an initialised buffer through socket2's MaybeUninit interface"
)]
pub fn recv_queued(fd: BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the view only
    // ever receives initialised bytes: recv(2) writes data, never uninitialised memory,
    // so `buf` stays initialised for its owner.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    socket2::SockRef::from(&fd).recv_with_flags(uninit, flags)
}

/// Stops a listening socket now: `shutdown(2)` on a listening TCP socket makes the kernel
/// refuse new connections and fail pending accepts at once. Closing the fd alone is not
/// enough under io_uring: an accept still in flight holds a reference to the socket until
/// the ring has cancelled it, which the kernel finishes asynchronously after the ring is
/// dropped, so for a moment a closed listener could still complete handshakes.
pub fn stop_listening(fd: BorrowedFd<'_>) {
    // ENOTCONN and friends: the socket is already not listening; nothing to do.
    let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
}
