//! The one socket read every byte stream of the transport goes through, safe to drop
//! mid-way: monoio's owned-buffer I/O hands a buffer to the kernel for the length of a
//! read, and a caller's timeout or `select` may drop the read at any await. Lending the
//! caller's whole buffer (`mem::take`) would lose what it already held — the request
//! bytes read so far, or ciphertext rustls has half processed and still points into.
//! Only the buffer's spare capacity is lent here. Also the plain write, so every
//! stream (and [`super::kernel`] below [`super::Stream`]) reads and writes TCP through
//! this one leaf. No TLS, no HTTP, no status codes.

use std::io;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Reads once from `tcp`, appending at most `max` bytes to `buf` (callers reserve room
/// first); returns how many, `Ok(0)` at end of stream.
///
/// Cancel safety: only the spare capacity of `buf` goes to the kernel (split off and
/// joined back in O(1) once the read completes), so dropping the future leaves `buf`
/// holding exactly the bytes it held. Bytes the kernel had already placed in the dropped
/// read are lost, though (io_uring may complete a read after it was given up): the byte
/// stream then has a gap, so a caller must not read that stream again — every caller
/// closes the connection after a read that timed out, and [`super::Stream`] refuses to.
pub(super) async fn read_spare(
    tcp: &mut impl AsyncReadRent,
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<usize> {
    let spare = buf.split_off(buf.len());
    let end = spare.capacity().min(max);
    if end == 0 {
        buf.unsplit(spare);
        return Err(io::Error::other("read into a buffer without room"));
    }
    let (res, spare) = tcp.read(spare.slice_mut(0..end)).await;
    buf.unsplit(spare.into_inner());
    res
}

/// Appends up to `want` bytes read from `tcp` to `dst`. `Ok(0)` is end of stream.
/// Dropping the future leaves `dst` as it was; the stream itself may have lost bytes then
/// (see [`read_spare`]).
pub async fn read_tcp(
    tcp: &mut impl AsyncReadRent,
    dst: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    let want = want.max(1);
    dst.reserve(want);
    read_spare(tcp, dst, want).await
}

/// Reads and drops what `tcp` already holds, without waiting, at most `max` bytes: before
/// a connection closes with bytes unread — which makes the kernel reset it, and the reset
/// can reach the peer before it read the alert just sent.
pub(super) fn discard_ready(tcp: &monoio::net::TcpStream, max: usize) {
    let fd = crate::listener::socket_fd(tcp);
    let mut buf = [0u8; 4096];
    let mut left = max;
    while left > 0 {
        match crate::listener::recv_queued(fd, &mut buf[..left.min(4096)], false) {
            Ok(n) if n > 0 => left -= n,
            _ => return,
        }
    }
}

/// Writes all of `data` to `tcp`.
pub async fn write_tcp(tcp: &mut impl AsyncWriteRent, data: Bytes) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let (res, _) = tcp.write_all(data).await;
    res.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A read dropped while it waits (a timeout) leaves the buffer's bytes in place, and
    /// the next read appends after them.
    #[test]
    fn a_dropped_read_keeps_the_buffer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async move {
                server.set_nonblocking(true).unwrap();
                let mut tcp = monoio::net::TcpStream::from_std(server).unwrap();
                let mut buf = BytesMut::from(&b"held"[..]);
                buf.reserve(64);
                let wait = Duration::from_millis(20);
                let read = monoio::time::timeout(wait, read_spare(&mut tcp, &mut buf, 64)).await;
                assert!(read.is_err(), "nothing was sent, yet the read completed");
                assert_eq!(&buf[..], b"held");
                std::io::Write::write_all(&mut client, b" more").unwrap();
                buf.reserve(64);
                assert_eq!(read_spare(&mut tcp, &mut buf, 64).await.unwrap(), 5);
                assert_eq!(&buf[..], b"held more");
            });
    }
}
