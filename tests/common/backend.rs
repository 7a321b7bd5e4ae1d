//! In-process HTTP/1.1 origin servers for the proxy to talk to.
//!
//! One std thread per connection, keep-alive, strict request framing (a request the proxy
//! forwards with bad framing gets a 400 from the backend and is not counted as served).
//! Paths:
//! - `/echo`: 200 with the request body; `x-body-sha256` and `x-request-count` headers.
//! - `/bytes/N`: N bytes of [`pattern`]; `?chunked`: odd-sized chunks; `?close`:
//!   close-delimited.
//! - `/headers`: the request head as received, as the body.
//! - `/slow?ms=M`: answers "slow done" after M ms.
//! - `/gate`: answers "gate open" once the test calls [`Backend::open_gate`].
//! - `/reset-mid-body`: `Content-Length: 100000`, 1000 bytes, then a TCP reset.
//! - `/status/NNN`: that status with an empty body.
//! - `/garbage`: a response head that is not HTTP, then close.
//! - `/close-before-head`: closes without answering.
//!
//! Every response carries `x-backend: NAME`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::sha256_hex;

/// A request as the backend received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub raw_head: Vec<u8>,
    pub body_sha256: String,
}

impl Recorded {
    /// All values of header `name` (case-insensitive), one per field line.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }
}

#[derive(Default)]
struct Shared {
    accepts: AtomicUsize,
    heads: AtomicUsize,
    served: AtomicUsize,
    log: Mutex<Vec<Recorded>>,
    heads_cv: Condvar,
    heads_seen: Mutex<usize>,
    gate: Mutex<bool>,
    gate_cv: Condvar,
}

/// A running backend; stops accepting when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    name: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::named("backend")
    }

    /// A backend whose responses carry `x-backend: name`.
    pub fn named(name: &str) -> Backend {
        Backend::named_at(name, "127.0.0.1:0".parse().expect("an address"))
    }

    /// A backend listening on `at` (e.g. `[::1]:0`).
    pub fn named_at(name: &str, at: SocketAddr) -> Backend {
        let listener =
            TcpListener::bind(at).unwrap_or_else(|e| panic!("bind backend on {at}: {e}"));
        let addr = listener.local_addr().expect("backend local addr");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, n) = (shared.clone(), stop.clone(), name.to_string());
        thread::Builder::new()
            .name(format!("backend-{name}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    s.accepts.fetch_add(1, Ordering::SeqCst);
                    let (s, n) = (s.clone(), n.clone());
                    let _ = thread::Builder::new()
                        .name(format!("backend-{n}-conn"))
                        .spawn(move || serve_connection(conn, &s, &n));
                }
            })
            .expect("spawn backend accept thread");
        Backend {
            addr,
            name: name.to_string(),
            shared,
            stop,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// TCP connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.shared.accepts.load(Ordering::SeqCst)
    }
    /// Request heads received (complete or not).
    pub fn heads(&self) -> usize {
        self.shared.heads.load(Ordering::SeqCst)
    }
    /// Requests received whole (head and body) and answered.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }
    /// The last request received whole.
    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.log.lock().expect("backend log").last().cloned()
    }
    /// Every request received whole, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("backend log").clone()
    }
    /// Blocks until at least `n` request heads have arrived; false after `timeout`.
    pub fn wait_for_heads(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seen = self.shared.heads_seen.lock().expect("heads lock");
        while *seen < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            seen = self
                .shared
                .heads_cv
                .wait_timeout(seen, left)
                .expect("heads lock")
                .0;
        }
        true
    }
    /// Lets every `/gate` request (waiting or future) answer.
    pub fn open_gate(&self) {
        *self.shared.gate.lock().expect("gate lock") = true;
        self.shared.gate_cv.notify_all();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.open_gate();
    }
}

fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend on 127.0.0.1:0");
    let a = l.local_addr().expect("backend local addr");
    (l, a)
}

/// An address where nothing listens: bound once to get a free port, then released.
pub fn refusing_addr() -> SocketAddr {
    bind().1
}

/// A backend that accepts and reads but never answers.
pub struct SilentBackend {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

impl SilentBackend {
    pub fn start() -> SilentBackend {
        let (listener, addr) = bind();
        let accepts = Arc::new(AtomicUsize::new(0));
        let a = accepts.clone();
        thread::Builder::new()
            .name("silent-backend".into())
            .spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    a.fetch_add(1, Ordering::SeqCst);
                    let _ = thread::Builder::new().spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
                        let mut buf = [0u8; 4096];
                        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    });
                }
            })
            .expect("spawn silent backend");
        SilentBackend { addr, accepts }
    }
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// N deterministic, non-repeating-looking bytes seeded by `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(&(state ^ (state >> 29)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Chunk sizes used for chunked responses: deliberately odd.
const CHUNK_SIZES: [usize; 6] = [1, 7, 4093, 333, 65_537, 2];

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }
    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                if i == 0 || self.buf[i - 1] != b'\r' {
                    return Err(bad("bare LF"));
                }
                return Ok(self.buf.drain(..=i).take(i - 1).collect());
            }
            if self.buf.len() > 8192 || self.fill()? == 0 {
                return Err(bad("no line"));
            }
        }
    }
    fn chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
            if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad("chunk size"));
            }
            let size = usize::from_str_radix(std::str::from_utf8(size).unwrap_or("x"), 16)
                .map_err(|_| bad("chunk size"))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            self.need(size + 2)?;
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(bad("chunk CRLF"));
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn serve_connection(stream: TcpStream, shared: &Shared, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    let mut count = 0usize;
    loop {
        match serve_one(&mut conn, shared, name, &mut count) {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let msg = format!("backend {name}: bad request framing: {e}");
                let _ = conn.stream.write_all(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nx-backend: {name}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{msg}",
                        msg.len()
                    )
                    .as_bytes(),
                );
                return;
            }
            Err(_) => return,
        }
    }
}

/// Serves one request; `Ok(true)` to keep the connection open.
fn serve_one(conn: &mut Conn, shared: &Shared, name: &str, count: &mut usize) -> io::Result<bool> {
    // Head.
    let (rec_head, head_len, version) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 256];
        let mut r = httparse::Request::new(&mut hs);
        match r.parse(&conn.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let rec = Recorded {
                    method: r.method.unwrap_or("").to_string(),
                    target: r.path.unwrap_or("").to_string(),
                    headers,
                    raw_head: conn.buf[..n].to_vec(),
                    body_sha256: String::new(),
                };
                break (rec, n, r.version.unwrap_or(1));
            }
            Ok(httparse::Status::Partial) => {
                if conn.buf.len() > 1 << 20 {
                    return Err(bad("head too large"));
                }
                if conn.fill()? == 0 {
                    return if conn.buf.is_empty() {
                        Ok(false)
                    } else {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    };
                }
            }
            Err(e) => return Err(bad(&format!("unparsable head: {e}"))),
        }
    };
    conn.buf.drain(..head_len);
    shared.heads.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = shared.heads_seen.lock().expect("heads lock");
        *seen += 1;
        shared.heads_cv.notify_all();
    }
    let mut rec = rec_head;

    if rec
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    // Body, strictly framed.
    let te = rec.header_all("transfer-encoding");
    let cl = rec.header_all("content-length");
    let body = match (te.is_empty(), cl.is_empty()) {
        (false, false) => return Err(bad("both Transfer-Encoding and Content-Length")),
        (false, true) => {
            if te.len() != 1 || !te[0].trim().eq_ignore_ascii_case("chunked") {
                return Err(bad("Transfer-Encoding other than chunked"));
            }
            conn.chunked_body()?
        }
        (true, false) => {
            if cl.len() != 1 || cl[0].is_empty() || !cl[0].bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("Content-Length"));
            }
            let n: usize = cl[0].parse().map_err(|_| bad("Content-Length"))?;
            conn.need(n)?;
            conn.buf.drain(..n).collect()
        }
        (true, true) => Vec::new(),
    };
    rec.body_sha256 = sha256_hex(&body);
    *count += 1;
    shared.served.fetch_add(1, Ordering::SeqCst);
    shared.log.lock().expect("backend log").push(rec.clone());

    let is_head = rec.method == "HEAD";
    let wants_close = version == 0
        || rec
            .header_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
    let (path, query) = rec
        .target
        .split_once('?')
        .unwrap_or((rec.target.as_str(), ""));

    let mut extra = format!("x-backend: {name}\r\nx-request-count: {count}\r\n");
    if wants_close {
        extra += "Connection: close\r\n";
    }
    let respond = |conn: &mut Conn, status: &str, extra: &str, body: &[u8]| -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !is_head {
            out.extend_from_slice(body);
        }
        conn.stream.write_all(&out)
    };

    if path == "/echo" {
        let e = format!("{extra}x-body-sha256: {}\r\n", rec.body_sha256);
        respond(conn, "200 OK", &e, &body)?;
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().map_err(|_| bad("bytes count"))?;
        let data = pattern(n as u64, n);
        match query {
            "chunked" => {
                let mut out =
                    format!("HTTP/1.1 200 OK\r\n{extra}Transfer-Encoding: chunked\r\n\r\n")
                        .into_bytes();
                if !is_head {
                    let mut rest = &data[..];
                    for size in CHUNK_SIZES.iter().cycle() {
                        if rest.is_empty() {
                            break;
                        }
                        let (piece, tail) = rest.split_at((*size).min(rest.len()));
                        out.extend(format!("{:x}\r\n", piece.len()).into_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                        rest = tail;
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                conn.stream.write_all(&out)?;
            }
            "close" => {
                let mut out =
                    format!("HTTP/1.1 200 OK\r\nx-backend: {name}\r\nConnection: close\r\n\r\n")
                        .into_bytes();
                if !is_head {
                    out.extend_from_slice(&data);
                }
                conn.stream.write_all(&out)?;
                let _ = conn.stream.shutdown(Shutdown::Write);
                return Ok(false);
            }
            _ => respond(conn, "200 OK", &extra, &data)?,
        }
    } else if path == "/headers" {
        respond(conn, "200 OK", &extra, &rec.raw_head)?;
    } else if path == "/slow" {
        let ms: u64 = query
            .strip_prefix("ms=")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("slow needs ?ms=N"))?;
        // A slow origin is the scenario under test, not synchronisation.
        thread::sleep(Duration::from_millis(ms));
        respond(conn, "200 OK", &extra, b"slow done")?;
    } else if path == "/gate" {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut open = shared.gate.lock().expect("gate lock");
        while !*open && Instant::now() < deadline {
            open = shared
                .gate_cv
                .wait_timeout(open, Duration::from_secs(1))
                .expect("gate lock")
                .0;
        }
        drop(open);
        respond(conn, "200 OK", &extra, b"gate open")?;
    } else if path == "/reset-mid-body" {
        let mut out =
            format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 100000\r\n\r\n").into_bytes();
        out.extend(pattern(7, 1000));
        conn.stream.write_all(&out)?;
        conn.stream.flush()?;
        // Give the proxy a moment to forward the head and the first bytes, so the reset
        // usually lands mid-body rather than before the head was read.
        thread::sleep(Duration::from_millis(200));
        let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        return Ok(false);
    } else if path == "/garbage" {
        conn.stream
            .write_all(b"HELLO THERE\r\nthis is not http\r\n\r\n")?;
        return Ok(false);
    } else if path == "/close-before-head" {
        return Ok(false);
    } else if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().map_err(|_| bad("status code"))?;
        let head = if code == 204 || code == 304 || (100..200).contains(&code) {
            format!("HTTP/1.1 {code} Status\r\n{extra}\r\n")
        } else {
            format!("HTTP/1.1 {code} Status\r\n{extra}Content-Length: 0\r\n\r\n")
        };
        conn.stream.write_all(head.as_bytes())?;
    } else {
        respond(conn, "404 Not Found", &extra, b"backend: no such path")?;
    }
    Ok(!wants_close)
}
