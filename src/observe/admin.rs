//! The admin listener (`[admin] addr`): `GET /metrics` (Prometheus text format 0.0.4),
//! `GET /healthz` (the process is alive) and `GET /readyz` (every worker accepts and a
//! configuration is loaded; 503 before and while draining).
//!
//! It runs on threads of its own, never on a worker: one accept thread with blocking std
//! sockets, one short-lived thread per connection (at most [`MAX_CONNECTIONS`] at once;
//! more are answered 503). Its HTTP/1.1 is deliberately tiny and strict: one request
//! per connection (`Connection: close`), the head bounded to [`MAX_HEAD_BYTES`] (431) and
//! to [`IO_TIMEOUT`] per read and write so a slow client cannot hold a thread, only
//! `GET` and `HEAD` (405 otherwise), unknown paths 404, a request with a body 400.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Registry;

/// Largest request head accepted (a scraper's head is a few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest a single read or write on an admin connection may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; scrapers hold one each, briefly.
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
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ringgate-admin".into())
            .spawn(move || accept_loop(listener, registry, flag))?;
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

fn accept_loop(listener: TcpListener, registry: Arc<Registry>, stop: Arc<AtomicBool>) {
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut tcp) = conn else { continue };
        let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = write_response(&mut tcp, 503, "too many admin connections\n", TEXT, false);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (registry, counter) = (registry.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("ringgate-admin-conn".into())
            .spawn(move || {
                serve(&mut tcp, &registry);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the one request of an admin connection.
fn serve(tcp: &mut TcpStream, registry: &Registry) {
    let head = match read_head(tcp) {
        Ok(h) => h,
        Err(status) => {
            let _ = write_response(tcp, status, "bad request\n", TEXT, false);
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

/// Reads a request head (until CRLF CRLF). `Err`: the status to answer.
fn read_head(tcp: &mut TcpStream) -> Result<Head, u16> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse_head(&buf[..end]);
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(431);
        }
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(400),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
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
}
