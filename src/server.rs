//! Starting and stopping the whole proxy: sockets, TLS configs and worker threads.
//!
//! [`Server::start`] does everything that can fail up front (TLS setup, binding every
//! socket, spawning and readying every worker) and returns a [`ServerHandle`] only when
//! all workers accept. It is used by `ringgate run`, `ringgate demo` and the tests. It
//! also starts the `ringgate-reload` helper thread ([`crate::generation`]): reloads run
//! there, never on a worker.

use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use futures_channel::oneshot;
use tracing::info;

use crate::config::{Config, KtlsMode};
use crate::generation::{self, BuildError, Live, ReloadTrigger};
use crate::worker::{self, ListenerSpec, WorkerReport, WorkerSpec};

/// Why the server did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A listener's TLS configuration could not be built.
    Tls {
        addr: SocketAddr,
        error: crate::tls::TlsSetupError,
    },
    /// A socket could not be created or bound.
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// A worker thread could not be spawned or could not set up.
    Worker(String),
    /// `ktls = "on"` but the kernel cannot do TLS.
    Ktls { addr: SocketAddr, reason: String },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls { addr, error } => write!(f, "listener {addr}: {error}"),
            StartError::Bind { addr, error } => write!(f, "listener {addr}: {error}"),
            StartError::Worker(e) => write!(f, "{e}"),
            StartError::Ktls { addr, reason } => {
                write!(
                    f,
                    "listener {addr}: ktls = \"on\" but kernel TLS is unavailable: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for StartError {}

/// Entry point for running the proxy.
pub struct Server;

/// A running proxy. Dropping it stops it (gracefully, like [`ServerHandle::shutdown`]).
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    tls: Vec<bool>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<WorkerReport>>,
    live: Arc<Live>,
    reload: ReloadTrigger,
}

impl Server {
    /// Binds every listener, starts every worker, and returns once all accept.
    pub fn start(config: Config) -> Result<ServerHandle, StartError> {
        let workers = config.server.workers;
        let mut per_worker: Vec<Vec<(std::net::TcpListener, ListenerSpec)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        let mut tls_flags = Vec::new();
        for l in &config.listeners {
            if let Some(t) = &l.tls
                && t.ktls != KtlsMode::Off
            {
                // Probed here, on the main thread, so no worker ever blocks on it.
                let support = crate::ktls::support();
                if t.ktls == KtlsMode::On && !support.is_available() {
                    return Err(StartError::Ktls {
                        addr: l.addr,
                        reason: support.describe(),
                    });
                }
            }
            let (sockets, bound) = crate::listener::bind_reuseport(l.addr, l.backlog, workers)
                .map_err(|error| StartError::Bind {
                    addr: l.addr,
                    error,
                })?;
            let spec = ListenerSpec {
                index: addrs.len(),
                tls: l.tls.is_some(),
                addr: bound,
            };
            for (w, s) in sockets.into_iter().enumerate() {
                per_worker[w].push((s, spec.clone()));
            }
            addrs.push(bound);
            tls_flags.push(l.tls.is_some());
        }
        let cores = if config.server.pin_workers {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let live = Live::new(config).map_err(|e| match e {
            BuildError::Tls { addr, error } => StartError::Tls { addr, error },
            other => StartError::Worker(other.to_string()),
        })?;
        let reload = generation::spawn_reloader(live.clone())
            .map_err(|e| StartError::Worker(format!("cannot start the reload thread: {e}")))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handle = ServerHandle {
            addrs,
            tls: tls_flags,
            stops: Vec::new(),
            threads: Vec::new(),
            live: live.clone(),
            reload,
        };
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let (stop_tx, stop_rx) = oneshot::channel();
            let spec = WorkerSpec {
                id,
                core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
                live: live.clone(),
                listeners,
                stop: stop_rx,
                ready: ready_tx.clone(),
            };
            match worker::spawn(spec) {
                Ok(t) => {
                    handle.stops.push(stop_tx);
                    handle.threads.push(t);
                }
                Err(e) => {
                    handle.stop_and_join();
                    return Err(StartError::Worker(format!("cannot spawn worker {id}: {e}")));
                }
            }
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    handle.stop_and_join();
                    return Err(StartError::Worker(e));
                }
                Err(_) => {
                    handle.stop_and_join();
                    return Err(StartError::Worker("a worker exited during start-up".into()));
                }
            }
        }
        Ok(handle)
    }
}

impl ServerHandle {
    /// The bound address of each listener, in config order (port 0 resolved).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Asks the reload thread to read the configuration file again (SIGHUP does this);
    /// returns at once, the outcome is logged.
    pub fn reload_trigger(&self) -> ReloadTrigger {
        self.reload.clone()
    }

    /// The live configuration (current generation, reload counters, reload on the
    /// calling thread — never a worker's).
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// `https://addr` or `http://addr` per listener, for start-up messages.
    pub fn urls(&self) -> Vec<String> {
        self.addrs
            .iter()
            .zip(&self.tls)
            .map(|(a, tls)| format!("{}://{a}", if *tls { "https" } else { "http" }))
            .collect()
    }

    /// Stops accepting, lets in-flight requests finish (up to `shutdown_timeout_ms`),
    /// waits for every worker, and returns their totals.
    pub fn shutdown(mut self) -> Vec<WorkerReport> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Vec<WorkerReport> {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        let mut reports = Vec::new();
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(r) => {
                    worker::log_report(&r);
                    reports.push(r);
                }
                Err(_) => tracing::error!("a worker thread panicked"),
            }
        }
        if !reports.is_empty() {
            use std::sync::atomic::Ordering::Relaxed;
            info!(
                workers = reports.len(),
                ktls_offloaded = reports.iter().map(|r| r.ktls_offloaded).sum::<u64>(),
                ktls_close_notify_received = crate::conn::KTLS_CLOSE_NOTIFY.load(Relaxed),
                ktls_rekeys = crate::conn::KTLS_REKEYS.load(Relaxed),
                ktls_keyupdate_closes = crate::conn::KTLS_KEYUPDATE_CLOSES.load(Relaxed),
                "all workers stopped"
            );
        }
        reports
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
