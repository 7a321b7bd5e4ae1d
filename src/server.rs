//! Starting and stopping the whole proxy: sockets, TLS configs and worker threads.
//!
//! [`Server::start`] does everything that can fail up front (TLS setup, binding every
//! socket, spawning and readying every worker) and returns a [`ServerHandle`] only when
//! all workers accept. It is used by `ringgate run`, `ringgate demo` and the tests.
//! It is two steps, [`Server::prepare`] (the first configuration generation with its TLS
//! configs, sockets, the `ringgate-reload` helper thread, the metrics registry and the
//! admin listener, which answers `/readyz` 503 from then on) and [`Prepared::start`] (the
//! workers; `/readyz` turns 200 once each one's accept loops run). Reloads run on the
//! reload thread ([`crate::generation`]), never on a worker.

use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use tracing::info;

use crate::config::{Config, KtlsMode};
use crate::generation::{self, BuildError, Live, ReloadTrigger};
use crate::instance::{self, InstanceError, ProbeError};
use crate::observe::admin::Admin;
use crate::observe::{MetricType, Registry};
use crate::runtime::{self, ListenerSpec, WorkerReport, WorkerSpec};

/// Why the server did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A listener's TLS configuration could not be built.
    Tls {
        addr: SocketAddr,
        error: crate::transport::tls::TlsSetupError,
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
    /// Another process listens on a listener's address ([`crate::instance`]).
    Instance(InstanceError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls { addr, error } => write!(f, "listener {addr}: {error}"),
            StartError::Bind { addr, error } => write!(f, "listener {addr}: {error}"),
            StartError::Worker(e) => write!(f, "{e}"),
            StartError::Admin { addr, error } => write!(f, "admin listener {addr}: {error}"),
            StartError::Instance(e) => write!(f, "{e}"),
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
    stops: Vec<runtime::StopSender>,
    threads: Vec<JoinHandle<WorkerReport>>,
    live: Arc<Live>,
    reload: ReloadTrigger,
    registry: Arc<Registry>,
    admin: Option<Admin>,
}

/// Sockets bound, the reload thread and the admin listener up, workers not started yet.
pub struct Prepared {
    workers: usize,
    pin_workers: bool,
    per_worker: Vec<Vec<(std::net::TcpListener, ListenerSpec)>>,
    addrs: Vec<SocketAddr>,
    tls: Vec<bool>,
    live: Arc<Live>,
    reload: ReloadTrigger,
    registry: Arc<Registry>,
    admin: Option<Admin>,
}

impl Server {
    /// Binds every listener, starts every worker, and returns once all accept.
    pub fn start(config: Config) -> Result<ServerHandle, StartError> {
        Server::prepare(config)?.start()
    }

    /// Builds the first generation (TLS configs), binds every listener, starts the reload
    /// thread and the admin listener.
    pub fn prepare(config: Config) -> Result<Prepared, StartError> {
        let workers = config.server.workers;
        let mut per_worker: Vec<Vec<(std::net::TcpListener, ListenerSpec)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        let mut tls_flags = Vec::new();
        // Every address is probed before any is bound: two listeners of this config may
        // overlap (`0.0.0.0:443` and `127.0.0.1:443`), which is no second instance.
        for l in &config.listeners {
            instance::check_address_free(l.addr).map_err(|e| match e {
                ProbeError::InUse(e) => StartError::Instance(e),
                ProbeError::Bind(error) => StartError::Bind {
                    addr: l.addr,
                    error,
                },
            })?;
        }
        for l in &config.listeners {
            if let Some(t) = &l.tls
                && t.ktls != KtlsMode::Off
            {
                // Probed here, on the main thread, so no worker ever blocks on it.
                let support = crate::transport::ktls::support();
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
        // Closes the window between the probe and the bind (see crate::instance).
        let ours: Vec<&std::net::TcpListener> =
            per_worker.iter().flatten().map(|(s, _)| s).collect();
        for a in &addrs {
            instance::check_sole_listener(*a, &ours).map_err(StartError::Instance)?;
        }
        let (pin_workers, listeners, admin_addr) = (
            config.server.pin_workers,
            config.listeners.len(),
            config.admin.as_ref().map(|a| a.addr),
        );
        let live = Live::new(config).map_err(|e| match e {
            BuildError::Tls { addr, error } => StartError::Tls { addr, error },
            other => StartError::Worker(other.to_string()),
        })?;
        let reload = generation::spawn_reloader(live.clone())
            .map_err(|e| StartError::Worker(format!("cannot start the reload thread: {e}")))?;
        let registry = Registry::new(workers, listeners);
        registry.set_config_loaded(true);
        register_reload_metrics(&registry, &live);
        let admin = match admin_addr {
            Some(addr) => Some(
                Admin::start(addr, registry.clone())
                    .map_err(|error| StartError::Admin { addr, error })?,
            ),
            None => None,
        };
        Ok(Prepared {
            workers,
            pin_workers,
            per_worker,
            addrs,
            tls: tls_flags,
            live,
            reload,
            registry,
            admin,
        })
    }
}

/// The reload counters and the loaded generation as process-wide metrics.
fn register_reload_metrics(registry: &Registry, live: &Arc<Live>) {
    let l = live.clone();
    registry.family_fn(
        "ringgate_config_reloads_total",
        "Configuration reloads by result.",
        MetricType::Counter,
        move || {
            let s = l.stats();
            vec![
                (vec![("result", "ok".to_string())], s.reloads_ok as f64),
                (
                    vec![("result", "failed".to_string())],
                    s.reloads_failed as f64,
                ),
            ]
        },
    );
    // One series each, whatever the reloads: the generation as a plain gauge, the hash
    // of the loaded file as the label of an info metric valued 1 (a changed hash replaces
    // the series, it does not add one per reload).
    let l = live.clone();
    registry.gauge_fn(
        "ringgate_config_generation",
        "The configuration generation serving now (1 = as started).",
        move || l.stats().generation as f64,
    );
    let l = live.clone();
    registry.family_fn(
        "ringgate_config_info",
        "The configuration serving now (always 1), labelled with its hash.",
        MetricType::Gauge,
        move || {
            let s = l.stats();
            vec![(
                vec![("config_hash", format!("{:016x}", s.config_hash))],
                1.0,
            )]
        },
    );
    let l = live.clone();
    registry.gauge_fn(
        "ringgate_config_last_reload_timestamp_seconds",
        "Unix time of the last reload attempt (0: none yet).",
        move || l.stats().last_reload_unix_ms as f64 / 1000.0,
    );
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
            workers,
            pin_workers,
            per_worker,
            addrs,
            tls,
            live,
            reload,
            registry,
            admin,
        } = self;
        let cores = if pin_workers {
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
            live: live.clone(),
            reload,
            registry,
            admin,
        };
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let (stop_tx, stop_rx) = match runtime::stop_channel() {
                Ok(pair) => pair,
                Err(e) => {
                    handle.stop_and_join();
                    return Err(StartError::Worker(format!(
                        "worker {id}: cannot make its stop channel: {e}"
                    )));
                }
            };
            let spec = WorkerSpec {
                id,
                core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
                live: live.clone(),
                metrics: handle.registry.local(id),
                listeners,
                stop: stop_rx,
                ready: ready_tx.clone(),
            };
            match runtime::spawn(spec) {
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
            s.send();
        }
        let mut reports = Vec::new();
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(r) => {
                    runtime::log_report(&r);
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
