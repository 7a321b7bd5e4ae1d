//! ① Runtime — workers: one OS thread per core, pinned, each with its own monoio runtime (io_uring,
//! or epoll where io_uring is unavailable or disabled), its own SO_REUSEPORT sockets,
//! its own upstream pools and counters. Workers share only the configuration generation
//! ([`Live`]: an atomically swapped, immutable [`crate::generation::Generation`], loaded
//! once per exchange); nothing else on the request path crosses threads. A worker's
//! counters live in its slot of the [`crate::observe::Registry`] (single writer; the admin
//! thread reads them on each scrape and [`WorkerReport`] at shutdown).
//!
//! Shutdown: the main thread sends each worker a stop message; the worker closes its
//! listening sockets, wakes idle keep-alive connections so they close, lets in-flight
//! exchanges finish up to `shutdown_timeout_ms`, then drops whatever is left. A worker
//! never blocks on files, DNS or locks; thread spawn failures are errors, not panics.

mod admit;
mod conn;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::context::{LocalSignal, WorkerCtx};
use crate::generation::Live;
use crate::observe::Local;
use crate::transport::ktls::Fallback;
use crate::upstream::Upstreams;

/// A worker's totals, returned when it stops (read from its metrics).
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub id: usize,
    pub driver: &'static str,
    pub accepted: u64,
    pub refused: u64,
    pub requests: u64,
    pub handshake_failed: u64,
    pub upstream_errors: u64,
    pub upstream_opened: u64,
    pub upstream_reused: u64,
    /// Idle upstream connections closed because something arrived on them.
    pub upstream_discarded: u64,
    pub ktls_offloaded: u64,
    /// (reason, count) for every reason with a non-zero count.
    pub ktls_fallback: Vec<(&'static str, u64)>,
    pub ktls_failed: u64,
    pub spliced_bodies: u64,
    /// Connection tasks that panicked (caught; the worker went on).
    pub panics: u64,
    /// Connections still open when the drain deadline passed.
    pub abandoned: usize,
}

/// Everything a worker thread is started with.
pub struct WorkerSpec {
    pub id: usize,
    pub core: Option<core_affinity::CoreId>,
    pub live: Arc<Live>,
    pub metrics: Local,
    pub listeners: Vec<(std::net::TcpListener, ListenerSpec)>,
    pub stop: StopReceiver,
    pub ready: mpsc::Sender<Result<(), String>>,
}

/// The main thread's end of a worker's stop message: [`StopSender::send`] or dropping
/// it stops the worker.
///
/// A socket pair, not a channel: the worker reads its end through its own ring, like any
/// socket. A waker called from another thread would need monoio's `sync` feature, whose
/// cross-thread wake queue is checked at every turn of every worker's loop (1.5% of the
/// instructions per proxied request, measured) for a message that comes once.
pub struct StopSender(std::os::unix::net::UnixStream);

/// The worker's end of its stop message.
pub struct StopReceiver(std::os::unix::net::UnixStream);

/// A stop message for one worker.
pub fn stop_channel() -> io::Result<(StopSender, StopReceiver)> {
    let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
    // Read by the worker's driver (the epoll fallback needs it non-blocking).
    rx.set_nonblocking(true)?;
    Ok((StopSender(tx), StopReceiver(rx)))
}

impl StopSender {
    pub fn send(self) {
        use std::io::Write;
        // One byte into an empty socket buffer never blocks; if the worker is gone, the
        // write fails and there is nothing to stop.
        let _ = (&self.0).write(&[1]);
    }
}

impl StopReceiver {
    /// Completes when the stop byte arrives or the sender is gone.
    async fn wait(self) {
        use monoio::io::AsyncReadRent;
        match monoio::net::UnixStream::from_std(self.0) {
            Ok(mut s) => {
                // A byte, end of stream (the sender dropped) or an error: all mean stop.
                let _ = s.read(vec![0u8; 1]).await;
            }
            Err(e) => {
                // Not expected (a fresh socket in a working driver). Without its stop
                // message the worker would never end: it stops now, loudly.
                tracing::error!(error = %e, "worker cannot watch its stop message; stopping");
            }
        }
    }
}

/// A listener's fixed settings, cloned into each worker and shared by its connections
/// (its TLS settings come from the current generation, at each handshake).
#[derive(Clone)]
pub struct ListenerSpec {
    /// Position in the generation's `listeners`.
    pub index: usize,
    pub tls: bool,
    pub addr: SocketAddr,
}

impl ListenerSpec {
    /// The scheme clients use on it, for X-Forwarded-Proto and Forwarded.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Starts the worker thread.
pub fn spawn(spec: WorkerSpec) -> io::Result<std::thread::JoinHandle<WorkerReport>> {
    std::thread::Builder::new()
        .name(format!("ringgate-w{}", spec.id))
        .spawn(move || run(spec))
}

fn run(spec: WorkerSpec) -> WorkerReport {
    if let Some(core) = spec.core
        && !core_affinity::set_for_current(core)
    {
        warn!(
            worker = spec.id,
            core = core.id,
            "could not pin worker to its core"
        );
    }
    if spec.live.load().config.server.io_uring {
        // COOP_TASKRUN (Linux 5.19+): completions are handed over when the worker next
        // enters the kernel (it does, every loop turn) instead of by an interrupt that
        // stops it mid-task. Measured: ~20% less CPU per proxied request (see
        // loadtest/README.md). Older kernels refuse the flag: plain ring, then epoll.
        let mut coop = io_uring::IoUring::builder();
        coop.setup_coop_taskrun().setup_taskrun_flag();
        let mut refused = None;
        for urb in [coop, io_uring::IoUring::builder()] {
            match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .enable_timer()
                .build()
            {
                Ok(mut rt) => return rt.block_on(worker_main(spec, "io_uring")),
                Err(e) => refused = Some(e),
            }
        }
        if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
            let error = refused.map(|e| e.to_string()).unwrap_or_default();
            warn!(%error, "io_uring unavailable, falling back to epoll");
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(worker_main(spec, "epoll")),
        Err(e) => {
            let _ = spec.ready.send(Err(format!(
                "worker {}: cannot build runtime: {e}",
                spec.id
            )));
            WorkerReport {
                id: spec.id,
                ..WorkerReport::default()
            }
        }
    }
}

async fn worker_main(spec: WorkerSpec, driver: &'static str) -> WorkerReport {
    let ctx = Rc::new(WorkerCtx {
        id: spec.id,
        upstreams: Upstreams::new(spec.live.clone(), spec.metrics.clone()),
        live: spec.live,
        draining: LocalSignal::default(),
        closed_all: LocalSignal::default(),
        pipes: crate::context::PipePool::new(spec.metrics.clone()),
        metrics: spec.metrics,
    });
    let mut listeners = Vec::new();
    for (std_listener, ls) in spec.listeners {
        match TcpListener::from_std(std_listener) {
            Ok(l) => listeners.push((l, ls)),
            Err(e) => {
                let _ = spec
                    .ready
                    .send(Err(format!("worker {}: listener {}: {e}", ctx.id, ls.addr)));
                return report(&ctx, driver, 0);
            }
        }
    }
    let mut accepting = Vec::new();
    for (l, ls) in listeners {
        let lctx = Rc::new(ls);
        // Readiness (/readyz): this socket listens and its accept loop is spawned, so
        // it runs before the worker next waits; it counts down when it ends (drain).
        ctx.metrics.accepting.inc();
        accepting.push(monoio::spawn(accept_loop(l, lctx, ctx.clone())));
    }
    monoio::spawn(sweep_loop(ctx.clone()));
    monoio::spawn(memory_loop(ctx.clone()));
    let _ = spec.ready.send(Ok(()));
    debug!(worker = ctx.id, driver, "worker started");

    // A dropped sender (the handle went away) stops the worker too.
    spec.stop.wait().await;
    ctx.draining.raise();
    // Every accept loop has stopped listening before the worker reports back: the
    // runtime ending does not run woken tasks, so without this wait a socket could stay
    // open (and accept into a backlog nobody serves) after shutdown returned.
    for l in accepting {
        l.await;
    }
    if ctx.metrics.active.get() > 0 {
        let deadline = ctx.live.load().config.server.shutdown_timeout;
        let _ = monoio::time::timeout(deadline, ctx.closed_all.wait()).await;
    }
    ctx.upstreams.close_idle();
    report(&ctx, driver, ctx.metrics.active.get() as usize)
}

fn report(ctx: &WorkerCtx, driver: &'static str, abandoned: usize) -> WorkerReport {
    let m = &*ctx.metrics;
    WorkerReport {
        id: ctx.id,
        driver,
        accepted: m.accepted.get(),
        refused: m.refused.get(),
        requests: m.requests_total(),
        handshake_failed: m.handshake_failures_total(),
        upstream_errors: m.upstream_errors_total(),
        upstream_opened: m.upstream_opened.get(),
        upstream_reused: m.upstream_reused.get(),
        upstream_discarded: m.upstream_discarded.get(),
        ktls_offloaded: m.ktls_offloaded.get(),
        ktls_fallback: Fallback::ALL
            .iter()
            .map(|r| (r.name(), m.ktls_fallback[r.index()].get()))
            .filter(|(_, n)| *n > 0)
            .collect(),
        ktls_failed: m.ktls_failed.get(),
        spliced_bodies: m.spliced_bodies.get(),
        panics: m.panics.get(),
        abandoned,
    }
}

/// Pause after EMFILE/ENFILE before accepting again (nginx waits 500 ms; a shorter
/// pause recovers faster once descriptors free up, at a few wakeups per second).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn accept_loop(listener: TcpListener, lctx: Rc<ListenerSpec>, ctx: Rc<WorkerCtx>) {
    let mut last_warning: Option<std::time::Instant> = None;
    let m = &ctx.metrics;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = ctx.draining.wait() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let max = ctx.live.load().config.server.max_connections_per_worker as u64;
                if m.active.get() >= max {
                    m.refused.inc();
                    warn_rate_limited(&mut last_warning, || {
                        warn!(
                            worker = ctx.id,
                            max, "max_connections_per_worker reached, refusing connections"
                        )
                    });
                    drop(tcp);
                    continue;
                }
                // ① Connection limits, before any TLS byte (policy::conn_limit); behind
                // PROXY protocol on the header's address, once it is read (admit).
                let counted = {
                    let g = ctx.live.load();
                    let behind_proxy = g.listener_policies[lctx.index].proxy_protocol.is_some();
                    let limit = g.conn_limits[lctx.index].as_ref().filter(|_| !behind_proxy);
                    admit::limit(limit, peer.ip(), m)
                };
                let Some(counted) = counted else {
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                m.accepted.inc();
                m.active.inc();
                let (ctx, lctx) = (ctx.clone(), lctx.clone());
                monoio::spawn(async move {
                    // Counted out when this task ends, however it ends.
                    let _counted = counted;
                    let served =
                        CatchUnwind(Box::pin(conn::serve(tcp, peer, ctx.clone(), lctx))).await;
                    if served.is_err() {
                        // A bug, not an input: this connection is lost, the worker goes on.
                        ctx.metrics.panics.inc();
                        tracing::error!(worker = ctx.id, %peer, "connection task panicked; connection closed");
                    }
                    ctx.metrics.active.dec();
                    if ctx.metrics.active.get() == 0 && ctx.draining.is_raised() {
                        ctx.closed_all.raise();
                    }
                });
            }
            Err(e) if crate::listener::is_resource_exhaustion(&e) => {
                warn_rate_limited(
                    &mut last_warning,
                    || warn!(worker = ctx.id, error = %e, "accept: out of resources, backing off"),
                );
                monoio::select! {
                    _ = monoio::time::sleep(ACCEPT_BACKOFF) => {},
                    _ = ctx.draining.wait() => break,
                }
            }
            // ECONNABORTED and friends concern one connection only.
            Err(e) => debug!(worker = ctx.id, error = %e, "accept failed"),
        }
    }
    // No longer ready (counted up when this loop was spawned).
    m.accepting.dec();
    // This worker's socket stops listening now (not when the kernel gets round to
    // releasing an accept the ring still holds): new connections go elsewhere or are
    // refused once every worker has stopped its own.
    crate::listener::stop_listening(crate::listener::socket_fd(&listener));
    drop(listener);
}

/// Runs a connection future, turning a panic inside it into an `Err` so one bad
/// connection cannot take the worker (and every other connection on it) down.
struct CatchUnwind<F: Future>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.get_mut().0;
        // Every step of the connection reads the time the poll began (crate::clock).
        let polled = crate::clock::polled(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
        });
        match polled {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

fn warn_rate_limited(last: &mut Option<std::time::Instant>, log: impl FnOnce()) {
    let now = std::time::Instant::now();
    if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
        *last = Some(now);
        log();
    }
}

async fn sweep_loop(ctx: Rc<WorkerCtx>) {
    loop {
        // Read each time: a reload may change the keepalive timeouts.
        let every = ctx.upstreams.sweep_interval();
        monoio::select! {
            _ = monoio::time::sleep(every) => ctx.upstreams.sweep(),
            _ = ctx.draining.wait() => return,
        }
    }
}

/// Once a second, hands pages freed on this worker back to the OS (see [`crate::alloc`])
/// and closes the spare splice pipes no exchange needed since the last time
/// ([`crate::context::PipePool::trim`]): without it a quiet worker keeps the memory and
/// descriptors of its last burst.
async fn memory_loop(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {
                crate::alloc::release_free_memory();
                ctx.pipes.trim();
            }
            _ = ctx.draining.wait() => return,
        }
    }
}

/// `reason:count,reason:count` (or `0`): one plain token for a log field.
struct Reasons<'a>(&'a [(&'static str, u64)]);

impl std::fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("0");
        }
        for (i, (reason, n)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{reason}:{n}")?;
        }
        Ok(())
    }
}

/// Logs a worker's totals at shutdown.
pub fn log_report(r: &WorkerReport) {
    info!(
        worker = r.id,
        driver = r.driver,
        accepted = r.accepted,
        refused = r.refused,
        requests = r.requests,
        handshake_failed = r.handshake_failed,
        upstream_errors = r.upstream_errors,
        upstream_opened = r.upstream_opened,
        upstream_reused = r.upstream_reused,
        upstream_discarded = r.upstream_discarded,
        ktls_offloaded = r.ktls_offloaded,
        ktls_fallback = %Reasons(&r.ktls_fallback),
        ktls_failed = r.ktls_failed,
        spliced_bodies = r.spliced_bodies,
        panics = r.panics,
        abandoned = r.abandoned,
        "worker stopped"
    );
}
