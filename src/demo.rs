//! `ringgate demo`: a working proxy with no configuration at all.
//!
//! Generates a self-signed certificate for `localhost`/127.0.0.1/::1 (rcgen), writes it
//! to a private temporary folder (so curl can trust it; removed at exit) or to a folder
//! the user names (kept), starts the built-in upstream ([`start_backend`]) on a loopback
//! port, and builds an ordinary [`Config`] from TOML text pointing at both — the same
//! path a real config file takes.
//!
//! `--print-config` prints a configuration that works as written with `ringgate run`:
//! it names a certificate kept in the folder given (the current one by default) and the
//! built-in upstream at [`ORIGIN_ADDR`], the address `ringgate origin` listens on by
//! default (the printed text says to start it); it starts nothing and leaves no
//! temporary folder behind.
//!
//! The built-in upstream is a small keep-alive HTTP/1.1 origin on its own thread: `/`
//! says hello, `/bytes/N` returns N bytes, POST/PUT/PATCH (or any request with a body)
//! get the body echoed back, and `/ws` is an echo WebSocket ([`ws`]; nothing of it runs
//! for other paths). It doubles as the backend of the load tests.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use monoio::net::{TcpListener, TcpStream};

use crate::config::{Config, ConfigErrors};
use crate::http1::body::{Chunk, ChunkedDecoder, LAST_CHUNK, encode_chunk};
use crate::http1::parse::{self, BodyKind, HeadLimits, Parsed};
use crate::transport::{read_tcp, write_tcp};

mod ws;

/// Where `ringgate origin` listens by default, and the upstream a printed demo
/// configuration names.
pub const ORIGIN_ADDR: &str = "127.0.0.1:9000";

/// Files written for the demo.
#[derive(Debug)]
pub struct DemoFiles {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The folder was made for this run (remove it at exit); else the user named it.
    pub temporary: bool,
}

/// Creates the self-signed certificate and key as `demo-cert.pem` / `demo-key.pem` in
/// `dir` (created if missing; files of those names are replaced), or in a fresh private
/// temporary folder when `dir` is `None`.
pub fn write_certificate(dir: Option<&Path>) -> Result<DemoFiles, String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate certificate: {e}"))?;
    let temporary = dir.is_none();
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("ringgate-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Absolute, so the printed configuration works from any folder.
    let dir = std::fs::canonicalize(&dir)
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    let files = DemoFiles {
        cert: dir.join("demo-cert.pem"),
        key: dir.join("demo-key.pem"),
        dir,
        temporary,
    };
    write_private(&files.cert, cert.cert.pem().as_bytes())?;
    write_private(&files.key, cert.signing_key.serialize_pem().as_bytes())?;
    Ok(files)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    io::Write::write_all(&mut f, data).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// What the demo runs: where it listens, where its upstream is, and its files.
#[derive(Debug)]
pub struct DemoSetup<'a> {
    pub listen: SocketAddr,
    pub backend: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`); port 0 for any.
    pub admin: SocketAddr,
    pub files: &'a DemoFiles,
    /// `None`: one per core.
    pub workers: Option<usize>,
}

/// The demo's configuration, as TOML text (shown by `ringgate demo --print-config`).
pub fn config_text(d: &DemoSetup<'_>) -> String {
    let workers = d.workers.map_or("\"auto\"".to_string(), |n| n.to_string());
    let admin_note = if d.admin.port() == 0 {
        "on a free loopback port (printed at start)"
    } else {
        "(ringgate demo --admin ADDR)"
    };
    format!(
        r#"# ringgate demo configuration
[server]
workers = {workers}
shutdown_timeout_ms = 5000

[[listener]]
addr = "{listen}"
[listener.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[route]]
path_prefix = "/"
upstream = "demo"

# The upstream's echo WebSocket: the upgrade is forwarded and, after its 101, bytes are
# copied both ways; a tunnel idle for 10 minutes is closed.
[[route]]
path_prefix = "/ws"
upstream = "demo"
upgrade = ["websocket"]
tunnel_idle_timeout_ms = 600000

[upstream.demo]
servers = ["{backend}"]

# /metrics, /healthz, /readyz {admin_note}.
[admin]
addr = "{admin}"
"#,
        listen = d.listen,
        backend = d.backend,
        admin = d.admin,
        cert = d.files.cert.display(),
        key = d.files.key.display(),
    )
}

/// What `ringgate demo --print-config` prints: [`config_text`] for the built-in upstream
/// at [`ORIGIN_ADDR`], under a header saying how to run it as written.
pub fn printed_config(d: &DemoSetup<'_>) -> String {
    let port = match d.listen.port() {
        0 => "PORT".to_string(),
        p => p.to_string(),
    };
    format!(
        "# Written by `ringgate demo --print-config`. To run it as written:\n\
         #   ringgate origin --listen {backend} &   # the built-in upstream it names\n\
         #   ringgate run -c THIS_FILE\n\
         # The self-signed certificate is kept in {dir}\n\
         #   curl --cacert {cert} https://localhost:{port}/\n\
         #   curl --http2 -sI --cacert {cert} https://localhost:{port}/   # HTTP/2\n\
         #   SSL_CERT_FILE={cert} python3 -m websockets wss://localhost:{port}/ws   # echo WebSocket\n{text}",
        backend = d.backend,
        dir = d.files.dir.display(),
        cert = d.files.cert.display(),
        text = config_text(d),
    )
}

/// Builds the demo [`Config`].
pub fn config(d: &DemoSetup<'_>) -> Result<Config, ConfigErrors> {
    crate::config::from_toml_str(&config_text(d), "<demo>", &d.files.dir)
}

/// Starts the built-in upstream on `addr` (port 0 for any) on its own thread.
pub fn start_backend(addr: SocketAddr) -> io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("ringgate-demo-upstream".into())
        .spawn(move || {
            let run = |l: std::net::TcpListener| async move {
                match TcpListener::from_std(l) {
                    Ok(listener) => backend_accept(listener).await,
                    Err(e) => tracing::error!(error = %e, "demo upstream cannot listen"),
                }
            };
            match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => rt.block_on(run(std_listener)),
                Err(_) => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                {
                    Ok(mut rt) => rt.block_on(run(std_listener)),
                    Err(e) => tracing::error!(error = %e, "demo upstream cannot start a runtime"),
                },
            }
        })?;
    Ok(bound)
}

async fn backend_accept(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                monoio::spawn(backend_conn(tcp));
            }
            Err(e) => {
                tracing::debug!(error = %e, "demo upstream accept failed");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Shared filler for `/bytes/N` responses.
static FILLER: [u8; 65536] = {
    let mut b = [0u8; 65536];
    let mut i = 0;
    while i < b.len() {
        b[i] = b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37];
        i += 1;
    }
    b
};

/// Largest `/bytes/N` served.
const MAX_BYTES: u64 = 1 << 32;

async fn backend_conn(mut tcp: TcpStream) {
    let limits = HeadLimits {
        max_request_line: 8192,
        max_head_bytes: 65536,
        max_headers: 128,
    };
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse::parse_request(&buf, &limits) {
                    Parsed::Complete(raw, used) => match parse::take_request(&mut buf, raw, used) {
                        Ok(h) => break h,
                        Err(_) => return,
                    },
                    Parsed::Incomplete => {}
                    Parsed::Invalid(_) => return,
                }
            }
            match read_tcp(&mut tcp, &mut buf, 8192).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let path = head.path();
        if path.as_ref() == b"/ws" {
            // The echo WebSocket: the connection is its own from here on.
            return ws::serve(&mut tcp, &mut buf, &head).await;
        }
        let has_body = matches!(head.body, BodyKind::Length(_) | BodyKind::Chunked);
        let ok = if has_body || matches!(head.method.as_ref(), b"POST" | b"PUT" | b"PATCH") {
            echo(&mut tcp, &mut buf, head.body).await
        } else {
            answer_get(&mut tcp, &path, head.is_head()).await
        };
        if !ok || !head.keep_alive {
            return;
        }
    }
}

async fn answer_get(tcp: &mut TcpStream, path: &[u8], head_only: bool) -> bool {
    let n = path
        .strip_prefix(b"/bytes/")
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= MAX_BYTES);
    let (body, len): (Bytes, u64) = match n {
        Some(n) => (Bytes::new(), n),
        None => {
            let text = Bytes::from_static(b"hello from the ringgate demo upstream\n");
            let len = text.len() as u64;
            (text, len)
        }
    };
    let mut out = BytesMut::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if head_only {
        return write_tcp(tcp, out.freeze()).await.is_ok();
    }
    if n.is_none() {
        out.extend_from_slice(&body);
        return write_tcp(tcp, out.freeze()).await.is_ok();
    }
    let mut remaining = len;
    let first = (remaining as usize).min(FILLER.len() - out.len().min(FILLER.len()));
    out.extend_from_slice(&FILLER[..first]);
    remaining -= first as u64;
    if write_tcp(tcp, out.freeze()).await.is_err() {
        return false;
    }
    while remaining > 0 {
        let take = (remaining as usize).min(FILLER.len());
        if write_tcp(tcp, Bytes::from_static(&FILLER[..take]))
            .await
            .is_err()
        {
            return false;
        }
        remaining -= take as u64;
    }
    true
}

/// Echoes the request body back with the same framing.
async fn echo(tcp: &mut TcpStream, buf: &mut BytesMut, kind: BodyKind) -> bool {
    let mut out = BytesMut::with_capacity(128);
    match kind {
        BodyKind::Empty | BodyKind::UntilClose => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n");
            write_tcp(tcp, out.freeze()).await.is_ok()
        }
        BodyKind::Length(n) => {
            out.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ",
            );
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            let mut remaining = n;
            loop {
                let take = (buf.len() as u64).min(remaining) as usize;
                out.extend_from_slice(&buf.split_to(take));
                remaining -= take as u64;
                if !out.is_empty() && write_tcp(tcp, out.split().freeze()).await.is_err() {
                    return false;
                }
                if remaining == 0 {
                    return true;
                }
                match read_tcp(tcp, buf, 65536).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
        }
        _ => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
            let mut dec = ChunkedDecoder::request();
            loop {
                loop {
                    match dec.decode(buf) {
                        Ok(Chunk::Data(d)) => encode_chunk(&mut out, &d),
                        Ok(Chunk::NeedMore) => break,
                        Ok(Chunk::Done) => {
                            out.extend_from_slice(LAST_CHUNK);
                            return write_tcp(tcp, out.freeze()).await.is_ok();
                        }
                        Err(_) => return false,
                    }
                }
                if !out.is_empty() && write_tcp(tcp, out.split().freeze()).await.is_err() {
                    return false;
                }
                match read_tcp(tcp, buf, 65536).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
        }
    }
}
