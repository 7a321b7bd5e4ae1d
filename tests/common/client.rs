//! Blocking HTTP/1.1 test client over TLS (rustls) or plain TCP.
//!
//! Responses are parsed strictly: a bad `Content-Length`, a malformed chunk, a body cut
//! short, or a close-delimited body that ends without TLS `close_notify` is an error, so
//! framing bugs in the proxy show up as test failures instead of odd bodies. Every read
//! has a timeout ([`READ_TIMEOUT`]) so a hung proxy fails a test instead of the suite.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore,
    StreamOwned,
};

use super::pki::TestPki;

/// Longest wait for any single read or write; generous, it only guards against hangs.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head accepted.
const MAX_HEAD: usize = 1 << 20;

/// TLS protocol versions the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    Both,
    Tls12Only,
    Tls13Only,
}

/// How to connect and what to check.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    root: CertificateDer<'static>,
    name: String,
    send_sni: bool,
    verify: bool,
    alpn: Vec<Vec<u8>>,
    versions: Versions,
    /// Cipher suites offered, in this order (empty: the provider's default list).
    suites: Vec<rustls::CipherSuite>,
    /// A client certificate chain (leaf first) and its PKCS#8 key, sent when asked.
    client_cert: Option<(Vec<CertificateDer<'static>>, Vec<u8>)>,
}

impl TlsOptions {
    /// Verify against `root` for `name`, which is also sent as SNI.
    pub fn new(root: CertificateDer<'static>, name: &str) -> TlsOptions {
        TlsOptions {
            root,
            name: name.to_string(),
            send_sni: true,
            verify: true,
            alpn: Vec::new(),
            versions: Versions::Both,
            suites: Vec::new(),
            client_cert: None,
        }
    }
    /// Present this chain (leaf first) and PKCS#8 key when the server asks for one.
    pub fn client_cert(mut self, chain: Vec<CertificateDer<'static>>, pkcs8: Vec<u8>) -> Self {
        self.client_cert = Some((chain, pkcs8));
        self
    }
    /// Send no SNI extension (the name is still used to verify the certificate).
    pub fn no_sni(mut self) -> Self {
        self.send_sni = false;
        self
    }
    /// Skip chain and name checks (handshake signatures are still verified); for tests that
    /// look at which certificate was served rather than whether it fits the name.
    pub fn accept_any_cert(mut self) -> Self {
        self.verify = false;
        self
    }
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }
    pub fn versions(mut self, v: Versions) -> Self {
        self.versions = v;
        self
    }
    /// Offer only these cipher suites, in this order.
    pub fn suites(mut self, suites: &[rustls::CipherSuite]) -> Self {
        self.suites = suites.to_vec();
        self
    }

    pub fn client_config(&self) -> Result<ClientConfig, rustls::Error> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if !self.suites.is_empty() {
            provider.cipher_suites = self
                .suites
                .iter()
                .filter_map(|want| {
                    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
                        .iter()
                        .find(|s| s.suite() == *want)
                        .copied()
                })
                .collect();
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = match self.versions {
            Versions::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
            Versions::Tls12Only => &[&rustls::version::TLS12],
            Versions::Tls13Only => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = if self.verify {
            let mut roots = RootCertStore::empty();
            roots.add(self.root.clone())?;
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        };
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(
                chain.clone(),
                rustls_pki_types::PrivatePkcs8KeyDer::from(key.clone()).into(),
            )?,
        };
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.send_sni;
        Ok(config)
    }
}

/// What the TLS handshake settled on.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: rustls::ProtocolVersion,
    pub alpn: Option<Vec<u8>>,
    pub suite: Option<rustls::CipherSuite>,
    /// DER of the certificate the server presented first.
    pub peer_leaf: Vec<u8>,
}

/// Outcome of [`Client::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEvent {
    Data,
    Closed,
    Silent,
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Whether a `Connection` header lists `close`.
    pub fn connection_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
    /// Status line and headers, for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = format!("HTTP {}", self.status);
        for (k, v) in &self.headers {
            s += &format!("\n  {k}: {v}");
        }
        s + &format!("\n  ({} body bytes)", self.body.len())
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A client connection to the proxy.
pub struct Client {
    stream: Stream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
    read_timeout: Duration,
    /// `None` for plain TCP.
    pub tls: Option<TlsInfo>,
}

/// A TCP connection to `addr` from the local address `from` (e.g. 127.0.0.2: the whole
/// of 127.0.0.0/8 is the loopback's), with the usual timeouts.
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&addr.into(), READ_TIMEOUT)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn tcp_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

impl Client {
    /// Plain TCP connection (for `http://` listeners).
    pub fn plain(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client {
            stream: Stream::Plain(tcp_connect(addr)?),
            buf: Vec::new(),
            read_timeout: READ_TIMEOUT,
            tls: None,
        })
    }

    /// Plain TCP connection from the local address `from` (e.g. 127.0.0.2: another
    /// client address on loopback).
    pub fn plain_from(addr: SocketAddr, from: std::net::IpAddr) -> io::Result<Client> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(from, 0).into())?;
        socket.connect_timeout(&addr.into(), READ_TIMEOUT)?;
        let s: TcpStream = socket.into();
        s.set_read_timeout(Some(READ_TIMEOUT))?;
        s.set_write_timeout(Some(READ_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(Client {
            stream: Stream::Plain(s),
            buf: Vec::new(),
            read_timeout: READ_TIMEOUT,
            tls: None,
        })
    }

    /// TLS connection with the handshake completed.
    pub fn tls(addr: SocketAddr, opts: &TlsOptions) -> io::Result<Client> {
        Client::tls_over(tcp_connect(addr)?, opts)
    }

    /// Plain HTTP over a socket the test connected itself ([`connect_from`]).
    pub fn plain_over(sock: TcpStream) -> Client {
        Client {
            stream: Stream::Plain(sock),
            buf: Vec::new(),
            read_timeout: READ_TIMEOUT,
            tls: None,
        }
    }

    /// TLS over a socket the test connected itself (after whatever it sent first, e.g. a
    /// PROXY protocol header), the handshake completed.
    pub fn tls_over(mut sock: TcpStream, opts: &TlsOptions) -> io::Result<Client> {
        let addr = sock.peer_addr()?;
        let config = opts
            .client_config()
            .map_err(|e| io::Error::other(format!("client TLS config: {e}")))?;
        let name = ServerName::try_from(opts.name.clone())
            .map_err(|e| io::Error::other(format!("bad server name {:?}: {e}", opts.name)))?;
        let mut conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| io::Error::other(format!("client TLS connection: {e}")))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| {
                io::Error::new(e.kind(), format!("TLS handshake with {addr} failed: {e}"))
            })?;
        }
        let info = TlsInfo {
            version: conn
                .protocol_version()
                .ok_or_else(|| io::Error::other("handshake done but no protocol version"))?,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            peer_leaf: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .ok_or_else(|| io::Error::other("server sent no certificate"))?,
        };
        Ok(Client {
            stream: Stream::Tls(Box::new(StreamOwned::new(conn, sock))),
            buf: Vec::new(),
            read_timeout: READ_TIMEOUT,
            tls: Some(info),
        })
    }

    /// Changes the per-read timeout (default [`READ_TIMEOUT`]).
    pub fn set_read_timeout(&mut self, t: Duration) -> io::Result<()> {
        self.read_timeout = t;
        self.stream.tcp().set_read_timeout(Some(t))
    }

    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Sends `request` and reads one final response, panicking with context on failure.
    pub fn roundtrip(&mut self, request: &[u8]) -> Response {
        let head = request.starts_with(b"HEAD ");
        self.send(request)
            .unwrap_or_else(|e| panic!("sending {}: {e}", first_line(request)));
        self.read_response(head)
            .unwrap_or_else(|e| panic!("response to {}: {e}", first_line(request)))
    }

    /// Reads bytes into the buffer; `Ok(0)` is a clean end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no data from the proxy within {:?} ({} unconsumed bytes buffered)",
                        self.read_timeout,
                        self.buf.len()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    fn fill_or_eof(&mut self, what: &str) -> io::Result<()> {
        if self.fill()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed {what}"),
            ));
        }
        Ok(())
    }

    /// Reads one response (a 1xx too). `head_request`: the request was HEAD, so no body.
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let (status, headers) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 1024];
            let mut r = httparse::Response::new(&mut hs);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    break (status, headers);
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                    return Err(invalid("response head larger than 1 MiB".into()));
                }
                Ok(httparse::Status::Partial) => {
                    let what = if self.buf.is_empty() {
                        "before any response byte".to_string()
                    } else {
                        format!(
                            "inside the response head: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        )
                    };
                    self.fill_or_eof(&what)?;
                }
                Err(e) => {
                    return Err(invalid(format!(
                        "unparsable response head ({e}): {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
                    )));
                }
            }
        };
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te: Vec<&str> = values(&resp, "transfer-encoding");
        let cl: Vec<&str> = values(&resp, "content-length");
        if !te.is_empty() {
            if !cl.is_empty() {
                return Err(invalid(format!(
                    "response has both Transfer-Encoding and Content-Length\n{}",
                    resp.describe()
                )));
            }
            if te.len() != 1 || !te[0].eq_ignore_ascii_case("chunked") {
                return Err(invalid(format!("unexpected Transfer-Encoding {te:?}")));
            }
            resp.body = self.read_chunked()?;
        } else if !cl.is_empty() {
            let n = cl[0];
            if cl.iter().any(|v| *v != n) || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid(format!("bad Content-Length {cl:?}")));
            }
            let n: usize = n
                .parse()
                .map_err(|_| invalid(format!("Content-Length {n} too large")))?;
            while self.buf.len() < n {
                let what = format!("after {} of {n} body bytes", self.buf.len());
                self.fill_or_eof(&what)?;
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            // Close-delimited: only a clean end (TLS close_notify) proves the body complete.
            loop {
                match self.fill() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "close-delimited body ({} bytes) ended by TCP EOF without TLS \
                                 close_notify, so truncation is undetectable: {e}",
                                self.buf.len()
                            ),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Strict chunked decoding: hex size (≤ 16 digits), optional `;ext`, CRLF everywhere.
    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line("chunk size line")?;
            let size_part = line.split(|b| *b == b';').next().unwrap_or(&[]);
            if size_part.is_empty()
                || size_part.len() > 16
                || !size_part.iter().all(u8::is_ascii_hexdigit)
            {
                return Err(invalid(format!(
                    "bad chunk size line {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
            let size = usize::from_str_radix(std::str::from_utf8(size_part).unwrap_or("x"), 16)
                .map_err(|e| invalid(format!("chunk size: {e}")))?;
            if size == 0 {
                // Trailer section, then the empty line.
                while !self.read_line("trailer section")?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                let what = format!("inside a {size}-byte chunk");
                self.fill_or_eof(&what)?;
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(invalid(format!(
                    "chunk of {size} bytes not followed by CRLF"
                )));
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// One CRLF-terminated line, without the CRLF; a bare LF is an error.
    fn read_line(&mut self, what: &str) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                if i == 0 || self.buf[i - 1] != b'\r' {
                    return Err(invalid(format!("bare LF in {what}")));
                }
                let line: Vec<u8> = self.buf.drain(..=i).take(i - 1).collect();
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(invalid(format!("{what} longer than 4 KiB")));
            }
            self.fill_or_eof(&format!("in the {what}"))?;
        }
    }

    /// One read with the current timeout: did data arrive, did the server close, or was it
    /// silent? Data stays buffered for [`Client::read_response`] / [`Client::expect_closed`].
    pub fn poll(&mut self) -> ReadEvent {
        match self.fill() {
            Ok(0) => ReadEvent::Closed,
            Ok(_) => ReadEvent::Data,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => ReadEvent::Silent,
            Err(_) => ReadEvent::Closed,
        }
    }

    /// Bytes received but not consumed by a parsed response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Waits for the server to close the connection (EOF, close_notify, reset, or a TLS
    /// alert). Returns the bytes that arrived first; `Err` if it stays open for the whole
    /// read timeout.
    pub fn expect_closed(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match self.fill() {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(format!(
                        "connection still open after {:?} of silence; received meanwhile: {:?}",
                        self.read_timeout,
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
                // EOF without close_notify, RST, or a fatal alert: closed all the same.
                Err(_) => return Ok(std::mem::take(&mut self.buf)),
            }
        }
    }
}

fn values<'a>(resp: &'a Response, name: &str) -> Vec<&'a str> {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The request line of `request`, for messages.
pub fn first_line(request: &[u8]) -> String {
    let end = request
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(request.len())
        .min(120);
    String::from_utf8_lossy(&request[..end]).into_owned()
}

/// Writes `data` on a fresh TCP connection and collects everything until the server closes.
/// `Err` if the connection is still open after [`READ_TIMEOUT`] of silence.
pub fn raw_exchange(addr: SocketAddr, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = tcp_connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    // A server that closes early may reset the write; what it sent is still read below.
    let _ = s.write_all(data);
    let mut out = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "connection still open after {READ_TIMEOUT:?} of silence; got {out:02x?}"
                ));
            }
            Err(_) => return Ok(out),
        }
    }
}

/// Accepts any certificate chain, but still checks the handshake signatures against it.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Request builders.
pub mod req {
    /// `GET path` with `Host: host`.
    pub fn get(host: &str, path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
    }
    pub fn head(host: &str, path: &str) -> Vec<u8> {
        format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
    }
    /// `POST` with a `Content-Length` body.
    pub fn post(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }
    /// `POST` with a chunked body cut into `chunk`-byte pieces.
    pub fn post_chunked(host: &str, path: &str, body: &[u8], chunk: usize) -> Vec<u8> {
        let mut r =
            format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
                .into_bytes();
        for piece in body.chunks(chunk.max(1)) {
            r.extend(format!("{:x}\r\n", piece.len()).into_bytes());
            r.extend_from_slice(piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    }
}

/// A rustls client config for the test PKI with one protocol version; its session store
/// keeps tickets across connections.
pub fn client_config(
    pki: &TestPki,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.root_der()).expect("test root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One request on a new connection that reuses `config`'s session store; returns how the
/// handshake went.
pub fn request_with(config: &Arc<ClientConfig>, addr: SocketAddr) -> HandshakeKind {
    request_with_suite(config, addr).0
}

/// Sends `GET /bytes/5` and reads the whole response (head and the 5-byte body). With TLS
/// 1.3 the session tickets arrive before it, so the store is filled once it is read.
fn read_small_response(tls: &mut StreamOwned<ClientConnection, TcpStream>) {
    tls.write_all(&req::get(super::HOST, "/bytes/5")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() >= end + 4 + 5
        {
            break;
        }
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the whole response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Like [`request_with`], also naming the negotiated cipher suite.
pub fn request_with_suite(config: &Arc<ClientConfig>, addr: SocketAddr) -> (HandshakeKind, String) {
    let conn =
        ClientConnection::new(config.clone(), ServerName::try_from(super::HOST).unwrap()).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    read_small_response(&mut tls);
    let suite = tls.conn.negotiated_cipher_suite().expect("a suite").suite();
    let name = suite.as_str().expect("a named suite").to_string();
    (tls.conn.handshake_kind().expect("handshake finished"), name)
}
