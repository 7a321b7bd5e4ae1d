//! Starting and stopping the whole proxy: sockets, TLS configs and worker threads.
//!
//! [`Server::start`] does everything that can fail up front (TLS setup, binding every
//! socket, spawning and readying every worker) and returns a [`ServerHandle`] only when
//! all workers accept. It is used by `ringgate run`, `ringgate demo` and the tests.
//! It is two steps, [`Server::prepare`] (TLS, sockets, the metrics registry and the admin
//! listener, which answers `/readyz` 503 from then on) and [`Prepared::start`] (the
//! workers; `/readyz` turns 200 once each one's accept loops run).

use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use futures_channel::oneshot;
use tracing::info;

use crate::config::{Config, KtlsMode};
use crate::observe::Registry;
use crate::observe::admin::Admin;
use crate::route::Router;
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
    /// The admin listener could not be bound or started.
    Admin {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls { addr, error } => write!(f, "listener {addr}: {error}"),
            StartError::Bind { addr, error } => write!(f, "listener {addr}: {error}"),
            StartError::Worker(e) => write!(f, "{e}"),
            StartError::Admin { addr, error } => write!(f, "admin listener {addr}: {error}"),
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
    registry: Arc<Registry>,
    admin: Option<Admin>,
}

/// Sockets bound and the admin listener up, workers not started yet.
pub struct Prepared {
    config: Arc<Config>,
    router: Arc<Router>,
    per_worker: Vec<Vec<(std::net::TcpListener, ListenerSpec)>>,
    addrs: Vec<SocketAddr>,
    tls: Vec<bool>,
    registry: Arc<Registry>,
    admin: Option<Admin>,
}

impl Server {
    /// Binds every listener, starts every worker, and returns once all accept.
    pub fn start(config: Config) -> Result<ServerHandle, StartError> {
        Server::prepare(config)?.start()
    }

    /// Builds the TLS configs, binds every listener and starts the admin listener.
    pub fn prepare(config: Config) -> Result<Prepared, StartError> {
        let config = Arc::new(config);
        let router = Arc::new(Router::new(&config.routes));
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
            let tls = match &l.tls {
                Some(t) => Some(
                    crate::tls::server_config(t).map_err(|error| StartError::Tls {
                        addr: l.addr,
                        error,
                    })?,
                ),
                None => None,
            };
            let handshake_timeout = l
                .tls
                .as_ref()
                .map(|t| t.handshake_timeout)
                .unwrap_or_default();
            let (sockets, bound) = crate::listener::bind_reuseport(l.addr, l.backlog, workers)
                .map_err(|error| StartError::Bind {
                    addr: l.addr,
                    error,
                })?;
            let ktls = l.tls.as_ref().map_or(KtlsMode::Off, |t| t.ktls);
            let spec = ListenerSpec {
                tls,
                handshake_timeout,
                ktls,
                addr: bound,
            };
            for (w, s) in sockets.into_iter().enumerate() {
                per_worker[w].push((s, spec.clone()));
            }
            addrs.push(bound);
            tls_flags.push(l.tls.is_some());
        }
        let registry = Registry::new(workers, config.listeners.len());
        registry.set_config_loaded(true);
        let admin =
            match &config.admin {
                Some(a) => Some(Admin::start(a.addr, registry.clone()).map_err(|error| {
                    StartError::Admin {
                        addr: a.addr,
                        error,
                    }
                })?),
                None => None,
            };
        Ok(Prepared {
            config,
            router,
            per_worker,
            addrs,
            tls: tls_flags,
            registry,
            admin,
        })
    }
}

impl Prepared {
    /// The admin listener's bound address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// The metrics of this server, to register process-wide metrics before workers start.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Starts every worker and returns once all accept.
    pub fn start(self) -> Result<ServerHandle, StartError> {
        let Prepared {
            config,
            router,
            per_worker,
            addrs,
            tls,
            registry,
            admin,
        } = self;
        let workers = config.server.workers;
        let cores = if config.server.pin_workers {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handle = ServerHandle {
            addrs,
            tls,
            stops: Vec::new(),
            threads: Vec::new(),
            registry,
            admin,
        };
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let (stop_tx, stop_rx) = oneshot::channel();
            let spec = WorkerSpec {
                id,
                core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
                config: config.clone(),
                router: router.clone(),
                metrics: handle.registry.local(id),
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

    /// The admin listener's bound address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// The metrics of this server (process-wide metrics are added here).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
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
            let sum = |f: fn(&crate::observe::WorkerMetrics) -> u64| -> u64 {
                self.registry.workers().iter().map(f).sum()
            };
            info!(
                workers = reports.len(),
                ktls_offloaded = sum(|w| w.ktls_offloaded.get()),
                ktls_close_notify_received = sum(|w| w.ktls_close_notify.get()),
                ktls_rekeys = sum(|w| w.ktls_rekeys.get()),
                ktls_keyupdate_closes = sum(|w| w.ktls_keyupdate_closes.get()),
                "all workers stopped"
            );
        }
        if let Some(mut admin) = self.admin.take() {
            admin.stop();
        }
        reports
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
