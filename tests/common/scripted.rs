//! An origin that misbehaves on purpose: every connection runs the test's script, which
//! reads requests and writes whatever bytes it likes (stray responses, early answers,
//! closes without a word). Every request read whole is logged, so a test can count how
//! often the upstream application really received it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the scripted origin read it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which accepted connection (0, 1, …) it came on.
    pub conn: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct ScriptedBackend {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    accepts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// One accepted connection, handed to the script.
pub struct ScriptConn {
    pub stream: TcpStream,
    /// 0 for the first connection accepted, 1 for the next, …
    pub index: usize,
    buf: Vec<u8>,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedBackend {
    pub fn start(script: impl Fn(ScriptConn) + Send + Sync + 'static) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted backend");
        let addr = listener.local_addr().expect("scripted backend addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let accepts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (l, a, st) = (log.clone(), accepts.clone(), stop.clone());
        thread::Builder::new()
            .name("scripted-backend".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let index = a.fetch_add(1, Ordering::SeqCst);
                    let (script, log) = (script.clone(), l.clone());
                    let _ = thread::Builder::new().spawn(move || {
                        script(ScriptConn {
                            stream,
                            index,
                            buf: Vec::new(),
                            log,
                        })
                    });
                }
            })
            .expect("spawn scripted backend");
        ScriptedBackend {
            addr,
            log,
            accepts,
            stop,
        }
    }

    /// Every request read whole so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().expect("scripted log").clone()
    }

    /// How many requests with `method` and `path` the origin received.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

impl ScriptConn {
    /// Reads one request head; `None` at EOF. The body (if any) stays unread.
    pub fn read_head(&mut self) -> Option<Seen> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let seen = Seen {
                    conn: self.index,
                    method: r.method.unwrap_or("").to_string(),
                    path: r.path.unwrap_or("").to_string(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                self.buf.drain(..n);
                return Some(seen);
            }
            if self.fill().ok()? == 0 {
                return None;
            }
        }
    }

    /// Reads one whole request (Content-Length or chunked body) and logs it; `None` at EOF.
    pub fn read_request(&mut self) -> Option<Seen> {
        let mut seen = self.read_head()?;
        let header = |name: &str| {
            seen.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if let Some(len) = header("content-length") {
            let len: usize = len.trim().parse().ok()?;
            seen.body = self.read_exact(len)?;
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let line = self.read_line()?;
                let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                let data = self.read_exact(size + 2)?;
                seen.body.extend_from_slice(&data[..size]);
            }
        }
        self.log.lock().expect("scripted log").push(seen.clone());
        Some(seen)
    }

    /// Logs a request whose body the script consumed itself.
    pub fn log(&self, seen: Seen) {
        self.log.lock().expect("scripted log").push(seen);
    }

    /// Body bytes already read past the head, then up to `max` more from the socket.
    pub fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.buf.is_empty() {
            self.fill_up_to(max)?;
        }
        let n = self.buf.len().min(max);
        Ok(self.buf.drain(..n).collect())
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// A 200 whose body is `body`, keep-alive.
    pub fn ok(&mut self, body: &[u8]) {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        self.write(head.as_bytes());
        self.write(body);
    }

    pub fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().ok()? == 0 {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    pub fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Some(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            if self.fill().ok()? == 0 {
                return None;
            }
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        self.fill_up_to(64 * 1024)
    }

    fn fill_up_to(&mut self, max: usize) -> io::Result<usize> {
        let mut chunk = vec![0u8; max.max(1)];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}
