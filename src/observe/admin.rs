//! The admin listener (`[admin] addr`): `GET /metrics` (Prometheus text format 0.0.4),
//! `GET /healthz` (the process is alive) and `GET /readyz` (every worker accepts and a
//! configuration is loaded; 503 before and while draining).
//!
//! It runs on threads of its own, never on a worker: one accept thread with blocking std
//! sockets, one short-lived thread per connection (at most [`MAX_CONNECTIONS`] at once).
//! Its HTTP/1.1 is deliberately tiny and strict: one request per connection
//! (`Connection: close`), the head bounded to [`MAX_HEAD_BYTES`] (431), only `GET` and
//! `HEAD` (405 otherwise), unknown paths 404, a request with a body 400.
//!
//! Slow clients cannot hold it, so health probes stay answerable:
//! - the whole request head must arrive within [`HEAD_TIMEOUT`] of the accept — one
//!   deadline, not one per read, so a byte at a time does not keep a slot (408, closed);
//!   each write of the response may block at most [`IO_TIMEOUT`];
//! - when all [`MAX_CONNECTIONS`] slots are taken, a new connection closes the *oldest*
//!   one to take its slot. Any request a client sends at once is answered in
//!   milliseconds, so the oldest connection is the slowest client, never a health probe:
//!   a `/healthz` or `/readyz` probe is served even while slow clients keep every slot
//!   busy, and an orchestrator does not restart a healthy process for them.
//!
//! Nothing here blocks a worker or panics on a client's input.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Registry;

/// Largest request head accepted (a scraper's head is a few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long the whole request head may take to arrive, from the accept (a scraper or
/// probe sends its head in one packet; 2 s leaves room for a slow link).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a single write on an admin connection may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; scrapers hold one each, briefly. A new connection
/// beyond it closes the oldest.
pub const MAX_CONNECTIONS: usize = 16;

/// A running admin listener; dropping it stops it.
pub struct Admin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves it from a new thread.
    pub fn start(addr: SocketAddr, registry: Arc<Registry>) -> io::Result<Admin> {
        Admin::start_with(addr, registry, HEAD_TIMEOUT)
    }

    /// [`Admin::start`] with another head deadline (tests use a short one).
    fn start_with(
        addr: SocketAddr,
        registry: Arc<Registry>,
        head_timeout: Duration,
    ) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ringgate-admin".into())
            .spawn(move || accept_loop(listener, registry, flag, head_timeout))?;
        Ok(Admin {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for the accept thread.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), IO_TIMEOUT);
        let _ = thread.join();
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address is
/// reached on loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

/// The connections being served, oldest first: each a handle on its socket, so the
/// accept thread can close it to make room.
#[derive(Default)]
struct Slots {
    open: Mutex<Vec<(u64, TcpStream)>>,
}

impl Slots {
    /// Takes a slot for `tcp` (id `id`), closing the oldest connection when all are
    /// taken. `false`: the socket could not be shared (the connection is dropped).
    fn take(&self, id: u64, tcp: &TcpStream) -> bool {
        let Ok(handle) = tcp.try_clone() else {
            return false;
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while open.len() >= MAX_CONNECTIONS {
            let (_, oldest) = open.remove(0);
            // Wakes its thread's blocked read or write, which then ends; the slot is
            // free from now on (that thread's `release` finds nothing).
            let _ = oldest.shutdown(std::net::Shutdown::Both);
        }
        open.push((id, handle));
        true
    }

    fn release(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(i, _)| *i != id);
    }
}

fn accept_loop(
    listener: TcpListener,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
    head_timeout: Duration,
) {
    let slots = Arc::new(Slots::default());
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut tcp) = conn else { continue };
        let deadline = Instant::now() + head_timeout;
        let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
        next_id += 1;
        let id = next_id;
        if !slots.take(id, &tcp) {
            continue;
        }
        let (registry, slots2) = (registry.clone(), slots.clone());
        let spawned = std::thread::Builder::new()
            .name("ringgate-admin-conn".into())
            .spawn(move || {
                serve(&mut tcp, &registry, deadline);
                slots2.release(id);
            });
        if spawned.is_err() {
            slots.release(id);
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the one request of an admin connection; its head must be in by `deadline`.
fn serve(tcp: &mut TcpStream, registry: &Registry, deadline: Instant) {
    let head = match read_head(tcp, deadline) {
        Ok(h) => h,
        Err(status) => {
            let body = match status {
                408 => "request head timed out\n",
                431 => "request head too large\n",
                _ => "bad request\n",
            };
            let _ = write_response(tcp, status, body, TEXT, false);
            return;
        }
    };
    let (status, body, kind) = answer(&head, registry);
    let _ = write_response(tcp, status, &body, kind, head.method == "HEAD");
}

/// A parsed admin request head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
}

/// Reads a request head (until CRLF CRLF) that must be complete by `deadline`. `Err`:
/// the status to answer (408 when the deadline passed).
fn read_head(tcp: &mut TcpStream, deadline: Instant) -> Result<Head, u16> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse_head(&buf[..end]);
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(431);
        }
        // Each read may wait only for what is left of the head's one deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return Err(400),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(408);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(400),
        }
    }
}

fn parse_head(head: &[u8]) -> Result<Head, u16> {
    if head.len() > MAX_HEAD_BYTES {
        return Err(431);
    }
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let mut lines = text.split("\r\n");
    let line = lines.next().ok_or(400u16)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(400);
    }
    for field in lines {
        let Some((name, value)) = field.split_once(':') else {
            return Err(400);
        };
        if name.is_empty() || name.ends_with(' ') || name.contains('\t') {
            return Err(400);
        }
        let name = name.to_ascii_lowercase();
        let value = value.trim();
        // No request to the admin listener has a body.
        if (name == "content-length" && value != "0") || name == "transfer-encoding" {
            return Err(400);
        }
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// The status, body and content type for a request.
fn answer(head: &Head, registry: &Registry) -> (u16, String, &'static str) {
    let known = matches!(head.path.as_str(), "/metrics" | "/healthz" | "/readyz");
    if !known {
        return (404, "not found\n".into(), TEXT);
    }
    if head.method != "GET" && head.method != "HEAD" {
        return (405, "method not allowed\n".into(), TEXT);
    }
    match head.path.as_str() {
        "/metrics" => (200, registry.render(), METRICS),
        "/healthz" => (200, "ok\n".into(), TEXT),
        _ if registry.is_ready() => (200, "ready\n".into(), TEXT),
        _ => (503, "not ready\n".into(), TEXT),
    }
}

fn write_response(
    tcp: &mut TcpStream,
    status: u16,
    body: &str,
    content_type: &str,
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        408 => "Request Timeout",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: ringgate\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes())?;
    if !head_only {
        tcp.write_all(body.as_bytes())?;
    }
    tcp.flush()?;
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        let h = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a").unwrap();
        assert_eq!(h.path, "/metrics");
        assert_eq!(h.method, "GET");
        assert_eq!(parse_head(b"GET /metrics HTTP/2"), Err(400));
        assert_eq!(parse_head(b"GET  /metrics HTTP/1.1"), Err(400));
        assert_eq!(parse_head(b"get /metrics HTTP/1.1"), Err(400));
        assert_eq!(parse_head(b"GET metrics HTTP/1.1"), Err(400));
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nBad Header"), Err(400));
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\nContent-Length: 5"),
            Err(400)
        );
    }

    #[test]
    fn answers_by_path_and_method() {
        let r = Registry::new(1, 1);
        let head = |m: &str, p: &str| Head {
            method: m.into(),
            path: p.into(),
        };
        assert_eq!(answer(&head("GET", "/nope"), &r).0, 404);
        assert_eq!(answer(&head("POST", "/metrics"), &r).0, 405);
        assert_eq!(answer(&head("GET", "/healthz"), &r).0, 200);
        assert_eq!(answer(&head("GET", "/readyz"), &r).0, 503);
        let (status, body, kind) = answer(&head("GET", "/metrics"), &r);
        assert_eq!((status, kind), (200, METRICS));
        assert!(body.contains("# TYPE ringgate_requests_total counter"));
    }

    /// Reads what the server sends until it closes (or `limit` passes: then `None`).
    fn read_to_close(c: &mut TcpStream, limit: Duration) -> Option<String> {
        c.set_read_timeout(Some(limit)).unwrap();
        let mut got = Vec::new();
        match c.read_to_end(&mut got) {
            Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => None,
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .unwrap();
        // A guard against a hang, not a timing assertion.
        read_to_close(&mut c, Duration::from_secs(30)).expect("an answer")
    }

    #[test]
    fn health_probes_answer_while_slow_clients_hold_every_slot() {
        let registry = Registry::new(1, 1);
        let admin = Admin::start("127.0.0.1:0".parse().unwrap(), registry).unwrap();
        // More slow clients than slots, each sending its head a byte at a time and
        // never finishing it (within the head deadline, which is far away).
        let mut slow: Vec<TcpStream> = (0..MAX_CONNECTIONS + 4)
            .map(|_| TcpStream::connect(admin.addr()).unwrap())
            .collect();
        for byte in b"GET /metr" {
            for c in &mut slow {
                // A client the server closed to make room may fail here; fine.
                let _ = c.write_all(&[*byte]);
            }
        }
        // Accepted after all of them (one accept queue): every slot is held.
        let r = get(admin.addr(), "/healthz");
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        let r = get(admin.addr(), "/readyz");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("not ready\n"), "{r}");
        // The oldest slow clients were closed to make room.
        let closed = read_to_close(&mut slow[0], Duration::from_secs(30));
        assert_eq!(
            closed.as_deref(),
            Some(""),
            "the oldest was closed, unanswered"
        );
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_meets_one_deadline() {
        let deadline = Duration::from_millis(300);
        let registry = Registry::new(1, 1);
        let addr = "127.0.0.1:0".parse().unwrap();
        let admin = Admin::start_with(addr, registry, deadline).unwrap();
        let mut c = TcpStream::connect(admin.addr()).unwrap();
        // A byte every 50 ms (each read well within any per-read limit) for up to 20×
        // the deadline; the server must close the connection long before the end.
        let head = b"GET /metrics HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter());
        let bytes = (deadline * 20).as_millis() / 50;
        let mut answer = None;
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        for byte in head.take(bytes as usize) {
            if c.write_all(&[*byte]).is_err() {
                answer = Some(String::new());
                break;
            }
            // Waits for the server's answer up to 50 ms: that is the pace.
            let mut got = [0u8; 512];
            match c.read(&mut got) {
                Ok(n) => {
                    answer = Some(String::from_utf8_lossy(&got[..n]).into_owned());
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    answer = Some(String::new());
                    break;
                }
            }
        }
        let answer = answer.expect("the server kept a head that never ends");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
            "{answer}"
        );
    }
}
