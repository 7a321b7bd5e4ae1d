//! `ringgate-load`: an HTTP/1.1 (over TLS or plain TCP) load generator on monoio + rustls,
//! recording latencies in HdrHistogram.
//!
//! Modes: closed loop (N keep-alive connections, optional pipelining depth), open loop at
//! a constant total rate with coordinated-omission correction (latency is measured from
//! when a request *should* have been sent, as wrk2 does), and handshake mode (a new TLS
//! connection per request, with or without resumption). It always stops by itself: at
//! `--duration-secs` or `--requests`, whichever comes first. Output: a table, optional
//! JSON (`--json`), and an SVG percentile plot of one or more runs (`--plot`).

mod client;
mod report;

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use client::{Conn, Failure, Target};
use report::Summary;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Clone)]
#[command(
    name = "ringgate-load",
    version,
    about = "HTTP/1.1 + TLS load generator with HdrHistogram latencies"
)]
struct Args {
    /// Target, e.g. https://127.0.0.1:8443/bytes/12 (http:// for plain TCP).
    #[arg(long)]
    url: Option<String>,
    /// Open connections (closed/open loop).
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,
    /// Threads, each with its own monoio runtime.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,
    /// The generator's own event loop: `uring` (a plain io_uring), `uring-coop` (with
    /// COOP_TASKRUN) or `epoll` — to see whether a peer's figures depend on how the
    /// generator waits (loadtest/README.md: they did not, measurably).
    #[arg(long, value_enum, default_value_t = Driver::Uring)]
    driver: Driver,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Stop after this many requests in total (0 = no limit).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Open loop: total requests per second (0 = closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Closed loop: requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// One request per new connection (measures handshakes).
    #[arg(long)]
    handshake: bool,
    /// With --handshake: disable TLS session resumption.
    #[arg(long)]
    no_resume: bool,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Send a request body of this many bytes (Content-Length).
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// "1.2" or "1.3" (default: both offered).
    #[arg(long)]
    tls_version: Option<String>,
    /// Offer only this cipher suite (rustls name, e.g. TLS13_AES_128_GCM_SHA256).
    #[arg(long)]
    cipher: Option<String>,
    /// Trust this PEM root instead of accepting any certificate.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Accept any server certificate (signatures are still checked).
    #[arg(long)]
    insecure: bool,
    /// Present this client certificate chain (PEM, leaf first; with --key): mTLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// SNI / Host name (default: the URL's host).
    #[arg(long)]
    sni: Option<String>,
    /// Name of this run in the table, JSON and plot.
    #[arg(long, default_value = "run")]
    label: String,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG percentile plot here: of this run, or of the JSON files given.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// JSON summaries to plot together (with --plot and no --url).
    inputs: Vec<PathBuf>,
    /// No progress line.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// TLS 1.3: before every Nth request burst on a connection, send a KeyUpdate asking
    /// the server to rotate its keys too (0 = never). Exercises re-keying under load.
    #[arg(long, default_value_t = 0)]
    key_update_every: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringgate-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let Some(url) = args.url.clone() else {
        // Plot-only mode.
        let plot = args
            .plot
            .as_ref()
            .ok_or("give --url to run, or --plot OUT.svg with JSON inputs")?;
        let mut runs = Vec::new();
        for p in &args.inputs {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            runs.push(
                serde_json::from_str::<Summary>(&text)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            );
        }
        if runs.is_empty() {
            return Err("no JSON inputs to plot".into());
        }
        std::fs::write(plot, report::svg(&runs)).map_err(|e| format!("{}: {e}", plot.display()))?;
        return Ok(ExitCode::SUCCESS);
    };
    if args.connections == 0 || args.threads == 0 || args.pipeline == 0 {
        return Err("--connections, --threads and --pipeline must be at least 1".into());
    }
    if args.key_update_every > 0 && args.tls_version.as_deref() != Some("1.3") {
        return Err(
            "--key-update-every needs --tls-version 1.3 (KeyUpdate is TLS 1.3 only)".into(),
        );
    }
    if !(args.duration_secs > 0.0 && args.duration_secs <= 3600.0) {
        return Err("--duration-secs must be in (0, 3600]".into());
    }
    let parsed = parse_url(&url)?;
    let addr = (parsed.host.as_str(), parsed.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", parsed.host))?
        .next()
        .ok_or("no address")?;
    let host = args.sni.clone().unwrap_or_else(|| parsed.host.clone());
    let tls = if parsed.tls {
        Some(tls_config(&args, &host)?)
    } else {
        None
    };
    let target = Target { addr, tls };
    let request = Arc::new(build_request(&args, &host, &parsed.path));
    let shared = Arc::new(Shared::default());
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration_secs);
    let started = Instant::now();
    let threads = args.threads.min(args.connections);
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns = args.connections / threads + usize::from(t < args.connections % threads);
        let (args, target, request, shared) = (
            args.clone(),
            target.clone(),
            request.clone(),
            shared.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || thread_main(args, target, request, shared, conns, deadline))
            .map_err(|e| format!("cannot spawn a thread: {e}"))?;
        handles.push(h);
    }
    let progress = !args.quiet;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if progress {
            let n = shared.requests.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            eprint!(
                "\r[{secs:5.1}s] {n} requests, {:.0} req/s, {} errors   ",
                n as f64 / secs.max(1e-9),
                shared.errors()
            );
        }
    }
    if progress {
        eprintln!();
    }
    let mut hist = new_hist();
    let mut totals = ThreadTotals::default();
    for h in handles {
        let (th, tt) = h.join().map_err(|_| "a load thread panicked")?;
        hist.add(&th)
            .map_err(|e| format!("merging histograms: {e}"))?;
        totals.bytes += tt.bytes;
        totals.resumed += tt.resumed;
        totals.key_updates += tt.key_updates;
    }
    let duration = started.elapsed().as_secs_f64();
    let requests = hist.len();
    let mode = if args.handshake {
        format!(
            "handshake, resumption {}",
            if args.no_resume { "off" } else { "on" }
        )
    } else if args.rate > 0.0 {
        format!("open loop {} req/s", args.rate)
    } else {
        format!("closed loop, pipeline {}", args.pipeline)
    };
    let summary = Summary {
        label: args.label.clone(),
        url,
        mode,
        connections: args.connections,
        requests,
        errors: shared.errors(),
        errors_by_kind: Failure::ALL
            .iter()
            .map(|f| {
                (
                    f.name().to_string(),
                    shared.failures[*f as usize].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect(),
        duration_s: duration,
        rps: requests as f64 / duration,
        throughput_bps: totals.bytes as f64 / duration,
        resumed_handshakes: totals.resumed,
        key_updates: totals.key_updates,
        latency_us: report::latency(&hist),
        spectrum: report::spectrum(&hist),
    };
    print!("{}", report::table(&summary));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &args.plot {
        std::fs::write(p, report::svg(std::slice::from_ref(&summary)))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(if summary.requests == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "{url:?}: the URL must start with https:// or http://"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(['[', ']']),
            p.parse().map_err(|_| format!("bad port in {url:?}"))?,
        ),
        _ => (
            authority.trim_matches(['[', ']']),
            if tls { 443 } else { 80 },
        ),
    };
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

fn build_request(args: &Args, host: &str, path: &str) -> Vec<u8> {
    let mut r = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringgate-load\r\n",
        args.method
    );
    for h in &args.headers {
        r += h;
        r += "\r\n";
    }
    if args.handshake {
        r += "Connection: close\r\n";
    }
    if args.body_bytes > 0 || matches!(args.method.as_str(), "POST" | "PUT" | "PATCH") {
        r += &format!("Content-Length: {}\r\n", args.body_bytes);
    }
    r += "\r\n";
    let mut bytes = r.into_bytes();
    bytes.extend((0..args.body_bytes).map(|i| b"0123456789abcdef"[i % 16]));
    bytes
}

fn tls_config(
    args: &Args,
    host: &str,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(name) = &args.cipher {
        provider
            .cipher_suites
            .retain(|s| format!("{:?}", s.suite()) == *name);
        if provider.cipher_suites.is_empty() {
            return Err(format!(
                "unknown cipher suite {name:?} (rustls names, e.g. TLS13_AES_128_GCM_SHA256)"
            ));
        }
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match args.tls_version.as_deref()
    {
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        Some("1.3") => vec![&rustls::version::TLS13],
        Some("1.2") => vec![&rustls::version::TLS12],
        Some(v) => return Err(format!("--tls-version {v:?}: 1.2 or 1.3")),
    };
    let provider = Arc::new(provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let builder = if let Some(ca) = &args.cacert {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        for c in <CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem) {
            roots
                .add(c.map_err(|e| format!("{}: {e}", ca.display()))?)
                .map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots)
    } else if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
    } else {
        return Err("give --cacert FILE or --insecure".into());
    };
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            use rustls::pki_types::PrivateKeyDer;
            use rustls::pki_types::pem::PemObject;
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if args.no_resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))?;
    Ok((Arc::new(config), name))
}

/// Accepts any certificate chain but still checks handshake signatures.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

/// Counters every thread adds to (rarely: batched).
#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    failures: [AtomicU64; 5],
    /// Set when `--requests` is reached.
    stop: AtomicBool,
}

impl Shared {
    fn errors(&self) -> u64 {
        self.failures
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .sum()
    }

    fn fail(&self, f: Failure) {
        self.failures[f as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct ThreadTotals {
    bytes: u64,
    resumed: u64,
    key_updates: u64,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

fn thread_main(
    args: Args,
    target: Target,
    request: Arc<Vec<u8>>,
    shared: Arc<Shared>,
    conns: usize,
    deadline: Instant,
) -> (Histogram<u64>, ThreadTotals) {
    let driver = args.driver;
    let work = async move {
        let hist = std::rc::Rc::new(std::cell::RefCell::new(new_hist()));
        let totals = std::rc::Rc::new(std::cell::RefCell::new(ThreadTotals::default()));
        let mut tasks = Vec::new();
        let per_conn_rate = if args.rate > 0.0 {
            args.rate / args.connections as f64
        } else {
            0.0
        };
        for i in 0..conns {
            let ctx = ConnCtx {
                args: args.clone(),
                target: target.clone(),
                request: request.clone(),
                shared: shared.clone(),
                hist: hist.clone(),
                totals: totals.clone(),
                deadline,
                per_conn_rate,
                // Spread the open-loop schedules so connections don't fire together.
                phase: if per_conn_rate > 0.0 {
                    i as f64 / (conns as f64 * per_conn_rate)
                } else {
                    0.0
                },
            };
            tasks.push(monoio::spawn(connection_loop(ctx)));
        }
        for t in tasks {
            t.await;
        }
        let h = hist.borrow().clone();
        let t = std::mem::take(&mut *totals.borrow_mut());
        (h, t)
    };
    let mut ring = io_uring::IoUring::builder();
    if driver == Driver::UringCoop {
        ring.setup_coop_taskrun().setup_taskrun_flag();
    }
    let uring = match driver {
        Driver::Epoll => None,
        _ => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(ring)
            .enable_timer()
            .build()
            .ok(),
    };
    match uring {
        Some(mut rt) => rt.block_on(work),
        None => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("an epoll runtime")
            .block_on(work),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Driver {
    UringCoop,
    Uring,
    Epoll,
}

struct ConnCtx {
    args: Args,
    target: Target,
    request: Arc<Vec<u8>>,
    shared: Arc<Shared>,
    hist: std::rc::Rc<std::cell::RefCell<Histogram<u64>>>,
    totals: std::rc::Rc<std::cell::RefCell<ThreadTotals>>,
    deadline: Instant,
    per_conn_rate: f64,
    phase: f64,
}

impl ConnCtx {
    fn running(&self) -> bool {
        Instant::now() < self.deadline && !self.shared.stop.load(Ordering::Relaxed)
    }

    /// Counts one finished request; false when the request budget is used up.
    fn count(&self, latency: Duration, bytes: u64) -> bool {
        let us = (latency.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.hist.borrow_mut().record(us);
        self.totals.borrow_mut().bytes += bytes;
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if self.args.requests > 0 && n >= self.args.requests {
            self.shared.stop.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Time to back off after a failed connect, so a dead target is not hammered in a loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

async fn connection_loop(ctx: ConnCtx) {
    let head_request = ctx.args.method == "HEAD";
    let start = Instant::now() + Duration::from_secs_f64(ctx.phase);
    let mut sent: u64 = 0;
    let mut conn: Option<Conn> = None;
    while ctx.running() {
        // Open loop: the request's intended start time; latency counts from it, so a
        // stalled server is charged for the requests it delayed (no coordinated omission).
        let intended = if ctx.per_conn_rate > 0.0 {
            let at = start + Duration::from_secs_f64(sent as f64 / ctx.per_conn_rate);
            let now = Instant::now();
            if at > now {
                monoio::time::sleep(at - now).await;
            }
            at
        } else {
            Instant::now()
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(&ctx.target).await {
                Ok(c) => {
                    if c.resumed {
                        ctx.totals.borrow_mut().resumed += 1;
                    }
                    conn.insert(c)
                }
                Err(f) => {
                    ctx.shared.fail(f);
                    monoio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let depth = if ctx.per_conn_rate > 0.0 || ctx.args.handshake {
            1
        } else {
            ctx.args.pipeline
        };
        let every = ctx.args.key_update_every;
        if every > 0 && c.bursts > 0 && c.bursts % every == 0 {
            if let Err(f) = c.refresh_keys() {
                ctx.shared.fail(f);
                conn = None;
                continue;
            }
            ctx.totals.borrow_mut().key_updates += 1;
        }
        c.bursts += 1;
        let mut burst = Vec::with_capacity(ctx.request.len() * depth);
        for _ in 0..depth {
            burst.extend_from_slice(&ctx.request);
        }
        if let Err(f) = c.send(&burst).await {
            ctx.shared.fail(f);
            conn = None;
            continue;
        }
        let mut keep = true;
        for _ in 0..depth {
            sent += 1;
            match c.response(head_request).await {
                Ok((status, bytes, k)) => {
                    if !(200..400).contains(&status) {
                        ctx.shared.fail(Failure::Status);
                    }
                    keep &= k;
                    if !ctx.count(intended.elapsed(), bytes) {
                        return;
                    }
                }
                Err(f) => {
                    ctx.shared.fail(f);
                    keep = false;
                    break;
                }
            }
        }
        if !keep || ctx.args.handshake {
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = parse_url("https://127.0.0.1:8443/bytes/12").unwrap();
        assert!(u.tls && u.host == "127.0.0.1" && u.port == 8443 && u.path == "/bytes/12");
        let u = parse_url("http://localhost").unwrap();
        assert!(!u.tls && u.port == 80 && u.path == "/");
        let u = parse_url("https://[::1]:9443/x").unwrap();
        assert!(u.host == "::1" && u.port == 9443);
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("https://h:notaport/").is_err());
    }

    #[test]
    fn requests_are_well_formed_http() {
        let args = Args::parse_from([
            "ringgate-load",
            "--method",
            "POST",
            "--body-bytes",
            "5",
            "-H",
            "X-A: b",
        ]);
        let r = build_request(&args, "h.test", "/echo");
        let mut buf = bytes::BytesMut::from(&r[..]);
        let limits = ringgate::http1::parse::HeadLimits {
            max_request_line: 8192,
            max_head_bytes: 32768,
            max_headers: 100,
        };
        let ringgate::http1::parse::Parsed::Complete(raw, used) =
            ringgate::http1::parse::parse_request(&buf, &limits)
        else {
            panic!("not a complete request: {:?}", String::from_utf8_lossy(&r));
        };
        let head = ringgate::http1::parse::take_request(&mut buf, raw, used).unwrap();
        assert_eq!(head.body, ringgate::http1::parse::BodyKind::Length(5));
        assert_eq!(&buf[..], b"01234");
    }
}
