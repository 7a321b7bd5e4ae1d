//! One load-generating connection: TCP (+ rustls client) over monoio, HTTP/1.1 requests
//! written from a prebuilt buffer, responses parsed with ringgate's own head parser and
//! bodies read by Content-Length, chunked, or until close.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringgate::http1::body::{Chunk, ChunkedDecoder};
use ringgate::http1::parse::{BodyKind, Parsed, ResponseLimits, parse_response};

/// Response heads the generator accepts (as generous as the proxy's defaults).
const RESPONSE_LIMITS: ResponseLimits = ResponseLimits {
    max_head_bytes: 64 * 1024,
    max_headers: 4096,
};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;

/// Why a request failed, for the error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Tls,
    Io,
    Protocol,
    Status,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::Connect,
        Failure::Tls,
        Failure::Io,
        Failure::Protocol,
        Failure::Status,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Tls => "tls",
            Failure::Io => "io",
            Failure::Protocol => "protocol",
            Failure::Status => "status_not_2xx_3xx",
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// An open connection.
pub struct Conn {
    tcp: TcpStream,
    tls: Option<ClientConnection>,
    cin: Vec<u8>,
    cout: Vec<u8>,
    buf: BytesMut,
    eof: bool,
    pub resumed: bool,
    /// Request bursts sent on this connection.
    pub bursts: u64,
}

impl Conn {
    pub async fn open(t: &Target) -> Result<Conn, Failure> {
        let tcp = TcpStream::connect_addr(t.addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let tls = match &t.tls {
            Some((cfg, name)) => {
                Some(ClientConnection::new(cfg.clone(), name.clone()).map_err(|_| Failure::Tls)?)
            }
            None => None,
        };
        let mut c = Conn {
            tcp,
            tls,
            cin: Vec::new(),
            cout: Vec::new(),
            buf: BytesMut::with_capacity(16 * 1024),
            eof: false,
            resumed: false,
            bursts: 0,
        };
        if c.tls.is_some() {
            c.handshake().await?;
        }
        Ok(c)
    }

    async fn handshake(&mut self) -> Result<(), Failure> {
        loop {
            self.flush().await.map_err(|_| Failure::Tls)?;
            let Some(tls) = &self.tls else { return Ok(()) };
            if !tls.is_handshaking() {
                self.resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                return Ok(());
            }
            if self.read_cipher().await.map_err(|_| Failure::Tls)? == 0 {
                return Err(Failure::Tls);
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        while let Some(tls) = self.tls.as_mut()
            && tls.wants_write()
        {
            let mut out = std::mem::take(&mut self.cout);
            out.clear();
            tls.write_tls(&mut out)?;
            let (res, out) = self.tcp.write_all(out).await;
            self.cout = out;
            res?;
        }
        Ok(())
    }

    /// Reads ciphertext and processes it; returns the bytes read (0 = EOF).
    async fn read_cipher(&mut self) -> io::Result<usize> {
        let mut b = std::mem::take(&mut self.cin);
        b.clear();
        b.reserve(32 * 1024);
        let cap = b.capacity();
        let (res, slice) = self.tcp.read(b.slice_mut(0..cap)).await;
        self.cin = slice.into_inner();
        let n = res?;
        let tls = self.tls.as_mut().expect("TLS connection");
        let mut input: &[u8] = &self.cin[..n];
        loop {
            // Keep rustls' plaintext buffer empty so it always takes more ciphertext.
            drain_plain(tls, &mut self.buf);
            tls.read_tls(&mut input)?;
            tls.process_new_packets().map_err(io::Error::other)?;
            if input.is_empty() {
                break;
            }
        }
        Ok(n)
    }

    /// Queues a TLS 1.3 KeyUpdate (update_requested); it goes out with the next send.
    pub fn refresh_keys(&mut self) -> Result<(), Failure> {
        match self.tls.as_mut() {
            Some(tls) => tls.refresh_traffic_keys().map_err(|_| Failure::Tls),
            None => Err(Failure::Tls),
        }
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<(), Failure> {
        match self.tls.as_mut() {
            Some(tls) => {
                tls.writer().write_all(data).map_err(|_| Failure::Io)?;
                self.flush().await.map_err(|_| Failure::Io)
            }
            None => {
                let (res, _) = self.tcp.write_all(data.to_vec()).await;
                res.map(|_| ()).map_err(|_| Failure::Io)
            }
        }
    }

    /// Appends more plaintext to `self.buf`; false at end of stream.
    async fn fill(&mut self) -> Result<bool, Failure> {
        if self.eof {
            return Ok(false);
        }
        let before = self.buf.len();
        loop {
            match self.tls.as_mut() {
                Some(tls) => {
                    drain_plain(tls, &mut self.buf);
                    if self.buf.len() > before {
                        return Ok(true);
                    }
                    if self.read_cipher().await.map_err(|_| Failure::Io)? == 0 {
                        self.eof = true;
                        return Ok(false);
                    }
                    self.flush().await.map_err(|_| Failure::Io)?;
                }
                None => {
                    let mut b = std::mem::take(&mut self.buf);
                    b.reserve(32 * 1024);
                    let (len, cap) = (b.len(), b.capacity());
                    let (res, slice) = self.tcp.read(b.slice_mut(len..cap)).await;
                    self.buf = slice.into_inner();
                    if res.map_err(|_| Failure::Io)? == 0 {
                        self.eof = true;
                        return Ok(false);
                    }
                    return Ok(true);
                }
            }
        }
    }

    /// Reads one response; returns (status, body bytes, server keeps the connection).
    pub async fn response(&mut self, head_request: bool) -> Result<(u16, u64, bool), Failure> {
        let head = loop {
            match parse_response(&mut self.buf, &RESPONSE_LIMITS) {
                Parsed::Complete(h, _) if h.status >= 200 => break h,
                Parsed::Complete(_, _) => continue,
                Parsed::Invalid(_) => return Err(Failure::Protocol),
                Parsed::Incomplete => {
                    if !self.fill().await? {
                        return Err(Failure::Io);
                    }
                }
            }
        };
        let kind = if head_request || head.status == 204 || head.status == 304 {
            BodyKind::Empty
        } else {
            head.body
        };
        let mut got = 0u64;
        match kind {
            BodyKind::Empty => {}
            BodyKind::Length(n) => {
                while got < n {
                    if self.buf.is_empty() && !self.fill().await? {
                        return Err(Failure::Io);
                    }
                    let take = (self.buf.len() as u64).min(n - got) as usize;
                    let _ = self.buf.split_to(take);
                    got += take as u64;
                }
            }
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::response();
                loop {
                    match dec.decode(&mut self.buf).map_err(|_| Failure::Protocol)? {
                        Chunk::Data(d) => got += d.len() as u64,
                        Chunk::Done => break,
                        Chunk::NeedMore => {
                            if !self.fill().await? {
                                return Err(Failure::Io);
                            }
                        }
                    }
                }
            }
            BodyKind::UntilClose => loop {
                got += self.buf.len() as u64;
                self.buf.clear();
                if !self.fill().await? {
                    break;
                }
            },
        }
        let keep = head.keep_alive && kind != BodyKind::UntilClose;
        Ok((head.status, got, keep))
    }
}

fn drain_plain(tls: &mut ClientConnection, buf: &mut BytesMut) {
    let mut reader = tls.reader();
    while let Ok(b) = reader.fill_buf() {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        buf.extend_from_slice(b);
        reader.consume(n);
    }
}
