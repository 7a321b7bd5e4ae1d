//! An upstream connection's byte stream: plain TCP, whole or split in two halves.
//!
//! While a request body is still flowing upstream and the response is already being
//! read (full duplex, [`crate::proxy`]), the write half travels with the body pump and
//! the read half stays here; once the body is sent the halves are joined again, so the
//! connection can be spliced or pooled. A stream whose write half was given up (the
//! upstream stopped reading) can still be read, never pooled. This module does no
//! framing and chooses no status.

use std::io;

use bytes::{Bytes, BytesMut};
use monoio::io::{OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use crate::transport::{read_tcp, write_tcp};

/// The write half of a split upstream stream.
pub type UpstreamWriter = OwnedWriteHalf<TcpStream>;

pub struct UpstreamStream {
    io: Io,
}

enum Io {
    Whole(TcpStream),
    /// The write half is out with a request-body pump (or was given up).
    Split(OwnedReadHalf<TcpStream>),
    /// Only while the stream changes shape.
    Moving,
}

impl UpstreamStream {
    pub fn new(tcp: TcpStream) -> Self {
        UpstreamStream { io: Io::Whole(tcp) }
    }

    /// Appends up to `want` bytes to `dst`; `Ok(0)` is end of stream.
    pub async fn read(&mut self, dst: &mut BytesMut, want: usize) -> io::Result<usize> {
        match &mut self.io {
            Io::Whole(tcp) => read_tcp(tcp, dst, want).await,
            Io::Split(rd) => read_tcp(rd, dst, want).await,
            Io::Moving => Err(moving()),
        }
    }

    /// Writes all of `data` (the stream must be whole).
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        match &mut self.io {
            Io::Whole(tcp) => write_tcp(tcp, data).await,
            Io::Split(_) | Io::Moving => Err(moving()),
        }
    }

    /// The socket, while the stream is whole (splice, pooling).
    pub fn tcp(&mut self) -> Option<&mut TcpStream> {
        match &mut self.io {
            Io::Whole(tcp) => Some(tcp),
            _ => None,
        }
    }

    /// The socket for the pool: `None` when the stream is split (its write half may
    /// have stopped mid-request).
    pub fn into_tcp(self) -> Option<TcpStream> {
        match self.io {
            Io::Whole(tcp) => Some(tcp),
            _ => None,
        }
    }

    /// Splits off the write half; `None` unless the stream is whole.
    pub fn take_writer(&mut self) -> Option<UpstreamWriter> {
        match std::mem::replace(&mut self.io, Io::Moving) {
            Io::Whole(tcp) => {
                let (rd, wr) = tcp.into_split();
                self.io = Io::Split(rd);
                Some(wr)
            }
            other => {
                self.io = other;
                None
            }
        }
    }

    /// Takes the whole socket out as its two halves (a tunnel after an upgrade: the
    /// stream is never read, written or pooled again); `None` unless it is whole.
    pub fn take_halves(&mut self) -> Option<(OwnedReadHalf<TcpStream>, UpstreamWriter)> {
        match std::mem::replace(&mut self.io, Io::Moving) {
            Io::Whole(tcp) => Some(tcp.into_split()),
            other => {
                self.io = other;
                None
            }
        }
    }

    /// Joins the write half back (after the request body was sent whole).
    pub fn give_writer(&mut self, wr: UpstreamWriter) {
        self.io = match std::mem::replace(&mut self.io, Io::Moving) {
            Io::Split(rd) => match rd.reunite(wr) {
                Ok(tcp) => Io::Whole(tcp),
                Err(e) => Io::Split(e.0),
            },
            other => other,
        };
    }
}

fn moving() -> io::Error {
    io::Error::other("upstream stream is split: its write half is with the request body")
}
