//! Live configuration: a validated [`Generation`] (config, router, compiled TLS configs,
//! upstream pool slots) behind an atomically swapped pointer ([`Live`]), and the reload
//! that builds the next one.
//!
//! Workers load the current generation once per exchange (`ArcSwap::load_full`, one
//! atomic increment) and keep it to the exchange's end, so an in-flight request finishes
//! on the generation it started with; a TLS handshake loads it once too. Nothing here runs
//! on a worker: [`Live::reload`] reads files, parses certificates and resolves names on the
//! calling thread (the `ringgate-reload` helper, or a test), and only the final pointer
//! swap is seen by workers.
//!
//! A failed reload changes nothing: every error is logged with file, line and field and
//! counted (`reloads_failed`). What cannot change in a running process — listener
//! addresses, backlog, plain vs TLS, session cache size, workers, io_uring, pinning,
//! pid_file — is logged as "needs a restart" and the rest applies. Upstream pools are
//! keyed by (upstream name, server address) through stable *slots*: a reload keeps the
//! idle connections of unchanged servers and the worker sweep closes those of servers
//! that went away. Session-ticket keys and the session cache ([`TlsShared`]) are made once
//! per listener and shared by every generation, so clients resume across reloads.
//!
//! Triggers: `SIGHUP` and `ringgate reload` (which sends it, see `src/main.rs`) read the
//! configuration file again ([`Live::reload`]). A changed certificate or key file, noticed
//! by content on the helper thread every `certificate_check_interval_ms`, rebuilds the
//! *running* configuration with the new certificate material only
//! ([`Live::reload_certificates`]): the TOML file is not read, so an edit to it that was
//! never reloaded does not go live with a certificate renewal. Once the process keeps a
//! status file ([`Live::report_status`]), every reload's outcome is written there too, for
//! `ringgate reload` to wait on.
//!
//! The running listeners' part of a generation (their TLS configurations, accept and
//! per-request settings and connection limits, matched to the new file by address) is
//! built in `generation/listeners.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigErrors, ListenerPolicies, ServerSettings};
use crate::instance::{FileReload, Status};
use crate::policy::conn_limit::ConnTable;
use crate::policy::rate_limit::Limiter;
use crate::route::Router;
use crate::transport::tls::{TlsSetupError, TlsShared};

mod listeners;

pub use listeners::{ConnLimit, ListenerRequests, ListenerTls};
use listeners::{Running, RunningListeners};

/// Where one upstream's state lives in each worker's pools.
#[derive(Debug, Clone)]
pub struct UpstreamSlots {
    /// Index of the balancing state (round-robin cursor), per upstream name.
    pub balancer: usize,
    /// Pool slot of each server, per (upstream name, server address).
    pub servers: Vec<usize>,
}

/// One validated configuration, everything compiled, immutable once built.
pub struct Generation {
    /// 1 for the configuration started with, +1 for each successful reload.
    pub id: u64,
    /// [`Config::hash`].
    pub config_hash: u64,
    pub config: Config,
    pub router: Router,
    /// The policies' compiled state ([`crate::policy::Policies`]).
    pub policies: crate::policy::Policies,
    /// One per running listener, in the order they were bound; `None`: plain HTTP.
    pub listeners: Vec<Option<ListenerTls>>,
    /// One per running listener, in the order they were bound: its client-address
    /// settings (a listener removed from the file keeps its previous ones, like its TLS).
    pub listener_policies: Vec<ListenerPolicies>,
    /// One per running listener, in the order they were bound, like
    /// `listener_policies`: its per-request settings ([`Generation::listener`]).
    pub listener_requests: Vec<ListenerRequests>,
    /// One per `config.upstreams` entry.
    pub upstreams: Vec<UpstreamSlots>,
    /// One per `config.rate_limits` entry; a limit unchanged by a reload keeps its
    /// state ([`Limiter::new`]).
    pub rate_limits: Vec<Arc<Limiter>>,
    /// One per running listener, like `listeners`: its `max_connections_per_ip` and the
    /// listener's connection counts (the same table in every generation).
    pub conn_limits: Vec<Option<ConnLimit>>,
    /// `live_slots[slot]`: this generation routes to that pool slot.
    live_slots: Vec<bool>,
}

impl Generation {
    /// Whether pool `slot` belongs to a server of this generation.
    pub fn slot_is_live(&self, slot: usize) -> bool {
        self.live_slots.get(slot).copied().unwrap_or(false)
    }
}

/// Stable pool and balancer slots, by (upstream, server address) and by upstream name.
/// A pool slot no new generation names is freed and handed to a new server by a later
/// reload, so names that resolve to rotating addresses do not grow the tables (each
/// worker's pools check a reused slot's server, [`crate::upstream`]).
#[derive(Default)]
struct Slots {
    servers: HashMap<(String, SocketAddr), usize>,
    /// Pool slots freed by earlier reloads, reusable now.
    free: Vec<usize>,
    /// Pool slots handed out so far (the table length).
    count: usize,
    balancers: HashMap<String, usize>,
}

impl Slots {
    fn server(&mut self, name: &str, addr: SocketAddr) -> usize {
        let key = (name.to_string(), addr);
        if let Some(&slot) = self.servers.get(&key) {
            return slot;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.count += 1;
            self.count - 1
        });
        self.servers.insert(key, slot);
        slot
    }

    /// Frees the slots `live` does not name. Run after the build took its slots, so a
    /// slot is reused no sooner than the next reload, never by the generation that
    /// replaces the one still naming it.
    fn free_unused(&mut self, live: &[bool]) {
        let free = &mut self.free;
        self.servers.retain(|_, slot| {
            let keep = live.get(*slot).copied().unwrap_or(false);
            if !keep {
                free.push(*slot);
            }
            keep
        });
    }
}

/// Reload counters (atomics: written by the reload thread, read by anyone).
#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    generation: AtomicU64,
    config_hash: AtomicU64,
    /// Milliseconds since the Unix epoch of the last reload attempt (0: none yet).
    last_reload_ms: AtomicU64,
}

/// A snapshot of the reload counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadStats {
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Id of the generation serving now.
    pub generation: u64,
    pub config_hash: u64,
    /// Milliseconds since the Unix epoch of the last reload attempt (0: none yet).
    pub last_reload_unix_ms: u64,
}

impl Counters {
    fn snapshot(&self) -> ReloadStats {
        ReloadStats {
            reloads_ok: self.ok.load(Relaxed),
            reloads_failed: self.failed.load(Relaxed),
            generation: self.generation.load(Relaxed),
            config_hash: self.config_hash.load(Relaxed),
            last_reload_unix_ms: self.last_reload_ms.load(Relaxed),
        }
    }
}

/// The process's counters (the last [`Live`] made; one per process outside tests).
static PROCESS: Counters = Counters {
    ok: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    generation: AtomicU64::new(0),
    config_hash: AtomicU64::new(0),
    last_reload_ms: AtomicU64::new(0),
};

/// Reload counters of this process, for the metrics exporter.
pub fn stats() -> ReloadStats {
    PROCESS.snapshot()
}

/// Why a generation could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration file has errors (each with file, line, field).
    Config(ConfigErrors),
    /// A listener's TLS configuration could not be built.
    Tls {
        addr: SocketAddr,
        error: TlsSetupError,
    },
    /// `ktls = "on"` but the kernel cannot do TLS.
    Ktls { addr: SocketAddr, reason: String },
    /// The process was started without a configuration file to read again.
    NoFile,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Config(e) => write!(f, "{e}"),
            BuildError::Tls { addr, error } => write!(f, "listener {addr}: {error}"),
            BuildError::Ktls { addr, reason } => write!(
                f,
                "listener {addr}: ktls = \"on\" but kernel TLS is unavailable: {reason}"
            ),
            BuildError::NoFile => write!(
                f,
                "started without a configuration file: nothing to reload from"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub generation: u64,
    pub config_hash: u64,
    /// Changes that were not applied (one sentence each).
    pub needs_restart: Vec<String>,
}

/// The current generation, swapped atomically, and what every generation shares.
pub struct Live {
    current: ArcSwap<Generation>,
    /// `current.id`, readable without touching the pointer.
    current_id: AtomicU64,
    running: Vec<Running>,
    /// `[server]` as started: restart-only settings are compared with these, not with
    /// the last generation's (which may hold a change that was never applied).
    started: ServerSettings,
    slots: Mutex<Slots>,
    /// Serialises reloads (signal, file poll and tests may ask at once).
    reload_lock: Mutex<()>,
    counters: Counters,
    /// Where the process reports itself for `ringgate reload` (written under
    /// `reload_lock`), once [`Live::report_status`] was called.
    status: Mutex<Option<(PathBuf, Status)>>,
}

/// What a reload rebuilds from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The configuration file, read again.
    File,
    /// The running configuration with its certificate files read again.
    Certificates,
    /// A configuration handed in ([`Live::reload_with`]).
    Given,
}

impl Live {
    /// Generation 1 from the configuration the process starts with; makes each TLS
    /// listener's ticket key and session cache.
    pub fn new(config: Config) -> Result<Arc<Live>, BuildError> {
        let mut running = Vec::new();
        for l in &config.listeners {
            let tls = match &l.tls {
                Some(t) => Some(TlsShared::new(t).map_err(|error| BuildError::Tls {
                    addr: l.addr,
                    error,
                })?),
                None => None,
            };
            // Room for every connection the workers may hold, each from its own address.
            let most = config.server.max_connections_per_worker * config.server.workers;
            running.push(Running {
                addr: l.addr,
                backlog: l.backlog,
                tls,
                conns: ConnTable::new(most),
            });
        }
        let mut slots = Slots::default();
        let started = config.server.clone();
        let (generation, _) = build(1, config, &running, None, &mut slots)?;
        let live = Live {
            current_id: AtomicU64::new(1),
            current: ArcSwap::from_pointee(generation),
            running,
            started,
            slots: Mutex::new(slots),
            reload_lock: Mutex::new(()),
            counters: Counters::default(),
            status: Mutex::new(None),
        };
        live.publish_counters();
        Ok(Arc::new(live))
    }

    /// The generation serving now (an `Arc` clone: keep it for one exchange).
    pub fn load_full(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// A short-lived look at the current generation (do not hold it across an await).
    pub fn load(&self) -> arc_swap::Guard<Arc<Generation>> {
        self.current.load()
    }

    /// Id of the generation serving now (one relaxed load).
    pub fn current_id(&self) -> u64 {
        self.current_id.load(Relaxed)
    }

    /// Reload counters of this instance.
    pub fn stats(&self) -> ReloadStats {
        self.counters.snapshot()
    }

    /// Reads the configuration file again and, if it is valid, makes it current. Blocks
    /// on files and DNS: never call it on a worker. Logs the outcome either way.
    pub fn reload(&self, reason: &str) -> Result<Reloaded, BuildError> {
        self.apply(
            Source::File,
            |old| match &old.config.file {
                Some(path) => Config::from_file(path).map_err(BuildError::Config),
                None => Err(BuildError::NoFile),
            },
            reason,
        )
    }

    /// Makes the running configuration current again with every certificate and key file
    /// read anew, and nothing else: the TOML file is not read (an edit to it waits for a
    /// reload). What a changed certificate file triggers. Blocks on files: never call it
    /// on a worker. Logs the outcome either way.
    pub fn reload_certificates(&self, reason: &str) -> Result<Reloaded, BuildError> {
        self.apply(
            Source::Certificates,
            |old| {
                old.config
                    .with_reloaded_certificates()
                    .map_err(BuildError::Config)
            },
            reason,
        )
    }

    /// Makes `config` current (the reload without reading a file; tests use it).
    pub fn reload_with(&self, config: Config, reason: &str) -> Result<Reloaded, BuildError> {
        self.apply(Source::Given, |_| Ok(config), reason)
    }

    /// Builds the next generation from what `next` makes of the current one (both under
    /// the reload lock, so no other reload comes between) and swaps it in.
    fn apply(
        &self,
        source: Source,
        next: impl FnOnce(&Generation) -> Result<Config, BuildError>,
        reason: &str,
    ) -> Result<Reloaded, BuildError> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.build_and_swap(next, reason);
        self.update_status(source, &result);
        result
    }

    /// From now on, writes this process's [`Status`] (pid, `config_path`, generation, the
    /// outcome of the last reload of the configuration file) to `path` at once and after
    /// every reload: what `ringgate reload` reads. A write that fails is logged.
    pub fn report_status(&self, path: PathBuf, config_path: PathBuf) {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let status = Status {
            pid: std::process::id(),
            config: config_path,
            generation: self.current_id(),
            file_reloads: 0,
            last: None,
        };
        write_status(&path, &status);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some((path, status));
    }

    fn update_status(&self, source: Source, result: &Result<Reloaded, BuildError>) {
        let mut guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let Some((path, status)) = guard.as_mut() else {
            return;
        };
        status.generation = self.current_id();
        if source == Source::File {
            status.file_reloads += 1;
            status.last = Some(match result {
                Ok(r) => FileReload::Ok {
                    generation: r.generation,
                    needs_restart: r.needs_restart.clone(),
                },
                Err(e) => FileReload::Failed {
                    error: e.to_string(),
                },
            });
        }
        write_status(path, status);
    }

    fn build_and_swap(
        &self,
        next: impl FnOnce(&Generation) -> Result<Config, BuildError>,
        reason: &str,
    ) -> Result<Reloaded, BuildError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.counters.last_reload_ms.store(now_ms, Relaxed);
        let old = self.load_full();
        let built = next(&old).and_then(|c| {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let mut needs_restart = Vec::new();
            restart_only_changes(&self.started, &c.server, &mut needs_restart);
            build(old.id + 1, c, &self.running, Some(&old), &mut slots).map(|(g, more)| {
                needs_restart.extend(more);
                (g, needs_restart)
            })
        });
        match built {
            Ok((generation, needs_restart)) => {
                let (id, hash) = (generation.id, generation.config_hash);
                self.current.store(Arc::new(generation));
                self.current_id.store(id, Relaxed);
                self.counters.ok.fetch_add(1, Relaxed);
                self.publish_counters();
                for what in &needs_restart {
                    warn!(generation = id, "needs a restart: {what} (not applied)");
                }
                info!(
                    generation = id,
                    config_hash = format_args!("{hash:016x}"),
                    reason,
                    needs_restart = needs_restart.len(),
                    "configuration reloaded"
                );
                Ok(Reloaded {
                    generation: id,
                    config_hash: hash,
                    needs_restart,
                })
            }
            Err(e) => {
                let failed = self.counters.failed.fetch_add(1, Relaxed) + 1;
                self.publish_counters();
                match &e {
                    BuildError::Config(errors) => {
                        for one in &errors.0 {
                            error!("reload: {one}");
                        }
                    }
                    other => error!("reload: {other}"),
                }
                error!(
                    generation = old.id,
                    reason,
                    reloads_failed = failed,
                    "reload failed: nothing changed, still serving generation {}",
                    old.id
                );
                Err(e)
            }
        }
    }

    fn publish_counters(&self) {
        let g = self.load();
        for c in [&self.counters, &PROCESS] {
            c.generation.store(g.id, Relaxed);
            c.config_hash.store(g.config_hash, Relaxed);
        }
        PROCESS.ok.store(self.counters.ok.load(Relaxed), Relaxed);
        PROCESS
            .failed
            .store(self.counters.failed.load(Relaxed), Relaxed);
        PROCESS
            .last_reload_ms
            .store(self.counters.last_reload_ms.load(Relaxed), Relaxed);
    }
}

/// Builds generation `id` from `config` for the `running` listeners; with `old`, also
/// lists what differs from it but cannot change without a restart.
fn build(
    id: u64,
    config: Config,
    running: &[Running],
    old: Option<&Generation>,
    slots: &mut Slots,
) -> Result<(Generation, Vec<String>), BuildError> {
    let mut needs_restart = Vec::new();
    let RunningListeners {
        tls: listeners,
        policies: listener_policies,
        requests: listener_requests,
        conn_limits,
    } = listeners::build(&config, running, old, &mut needs_restart)?;
    let mut upstreams = Vec::new();
    let mut live_slots = Vec::new();
    for u in &config.upstreams {
        let next = slots.balancers.len();
        let balancer = *slots.balancers.entry(u.name.clone()).or_insert(next);
        let mut servers = Vec::new();
        for s in &u.servers {
            servers.push(slots.server(&u.name, s.addr));
        }
        upstreams.push(UpstreamSlots { balancer, servers });
    }
    live_slots.resize(slots.count, false);
    for u in &upstreams {
        for &s in &u.servers {
            live_slots[s] = true;
        }
    }
    slots.free_unused(&live_slots);
    let router = Router::new(&config.routes);
    let rate_limits = config
        .rate_limits
        .iter()
        .map(|c| {
            let previous = old.and_then(|o| o.rate_limits.iter().find(|p| p.config.name == c.name));
            Arc::new(Limiter::new(c, previous.map(|p| &**p)))
        })
        .collect();
    let policies = crate::policy::Policies::build(&config);
    let generation = Generation {
        id,
        config_hash: config.hash,
        config,
        router,
        policies,
        listeners,
        listener_policies,
        listener_requests,
        upstreams,
        rate_limits,
        conn_limits,
        live_slots,
    };
    Ok((generation, needs_restart))
}

/// `[server]` settings a running process cannot take over.
fn restart_only_changes(o: &ServerSettings, n: &ServerSettings, out: &mut Vec<String>) {
    if o.workers != n.workers {
        out.push(format!("server.workers {} -> {}", o.workers, n.workers));
    }
    if o.io_uring != n.io_uring {
        out.push("server.io_uring changed".into());
    }
    if o.pin_workers != n.pin_workers {
        out.push("server.pin_workers changed".into());
    }
    if o.pid_file != n.pid_file {
        out.push("server.pid_file changed".into());
    }
}

/// Asks the reload thread for a reload.
#[derive(Clone)]
pub struct ReloadTrigger(mpsc::Sender<String>);

impl ReloadTrigger {
    /// Queues a reload (`reason` is logged); returns at once.
    pub fn reload(&self, reason: &str) {
        let _ = self.0.send(reason.to_string());
    }
}

/// Starts the `ringgate-reload` helper thread: it reloads on every [`ReloadTrigger`] and,
/// every `certificate_check_interval_ms` of the current generation, when a certificate or
/// key file's content differs from what is loaded. It ends when every trigger is dropped.
pub fn spawn_reloader(live: Arc<Live>) -> std::io::Result<ReloadTrigger> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("ringgate-reload".into())
        .spawn(move || reload_thread(&live, &rx))?;
    Ok(ReloadTrigger(tx))
}

fn reload_thread(live: &Live, rx: &mpsc::Receiver<String>) {
    // The file contents last tried and failed, so a broken file is reported once, not
    // every interval; a further change is tried again.
    let mut last_failed: Option<Vec<u64>> = None;
    loop {
        let interval = live.load().config.server.certificate_check_interval;
        let asked = if interval.is_zero() {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(interval)
        };
        match asked {
            Ok(reason) => {
                let _ = live.reload(&reason);
                last_failed = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let watched = live.load().config.watched_files();
                let now: Vec<u64> = watched.iter().map(|(p, _)| content_hash(p)).collect();
                let loaded: Vec<u64> = watched.iter().map(|(_, h)| *h).collect();
                if now == loaded || last_failed.as_ref() == Some(&now) {
                    continue;
                }
                // A file serving as cert and key, or on several listeners, is named once.
                let mut changed: Vec<String> = Vec::new();
                for ((path, _), _) in watched.iter().zip(&now).filter(|((_, h), n)| h != *n) {
                    let shown = path.display().to_string();
                    if !changed.contains(&shown) {
                        changed.push(shown);
                    }
                }
                info!(files = %changed.join(", "), "certificate files changed on disk");
                match live.reload_certificates("certificate files changed") {
                    Ok(_) => last_failed = None,
                    Err(_) => last_failed = Some(now),
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn write_status(path: &std::path::Path, status: &Status) {
    if let Err(e) = status.write(path) {
        warn!(file = %path.display(), error = %e, "cannot write the status file `ringgate reload` reads");
    }
}

/// FNV-1a of a file's content; a file that cannot be read hashes as 0 (a change).
fn content_hash(path: &std::path::Path) -> u64 {
    match std::fs::read(path) {
        Ok(data) => crate::config::fnv1a(crate::config::FNV_SEED, &data),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::from_toml_str(text, "t.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = "[server]\nworkers = 2\n[[listener]]\naddr = \"127.0.0.1:0\"\n\
        [[route]]\nupstream = \"a\"\n[upstream.a]\nservers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n";

    #[test]
    fn pool_slots_follow_name_and_address() {
        let live = Live::new(config(BASE)).unwrap();
        let g1 = live.load_full();
        assert_eq!(g1.upstreams[0].servers, [0, 1]);
        let next =
            BASE.replace("\"127.0.0.1:1\", ", "") + "[upstream.b]\nservers = [\"127.0.0.1:1\"]\n";
        let r = live.reload_with(config(&next), "test").unwrap();
        assert!(r.needs_restart.is_empty(), "{:?}", r.needs_restart);
        let g2 = live.load_full();
        assert_eq!(g2.id, 2);
        // a/127.0.0.1:2 kept its slot; a/127.0.0.1:1 is gone; b/127.0.0.1:1 is a new pool.
        assert_eq!(g2.upstreams[0].servers, [1]);
        assert_eq!(g2.upstreams[1].servers, [2]);
        assert!(!g2.slot_is_live(0) && g2.slot_is_live(1) && g2.slot_is_live(2));
        assert_ne!(g2.upstreams[0].balancer, g2.upstreams[1].balancer);
        // The first generation is untouched for whoever still holds it.
        assert!(g1.slot_is_live(0));
    }

    #[test]
    fn slots_of_servers_no_generation_names_are_reused() {
        let text = |port: u16| BASE.replace("\"127.0.0.1:1\"", &format!("\"127.0.0.1:{port}\""));
        let live = Live::new(config(&text(1000))).unwrap();
        // A name that resolves to a new address at every reload.
        for port in 1001..1100 {
            live.reload_with(config(&text(port)), "test").unwrap();
        }
        let g = live.load_full();
        // a/127.0.0.1:2 all along, the current rotating address, and the one before it
        // (freed by the last reload, reused by the next).
        assert!(g.live_slots.len() <= 3, "{} pool slots", g.live_slots.len());
        assert_eq!(g.upstreams[0].servers.len(), 2);
        assert_eq!(
            g.upstreams[0].servers[1], 1,
            "the unchanged server kept its slot"
        );
        let slots = live.slots.lock().unwrap();
        assert_eq!(
            slots.servers.len(),
            2,
            "only the servers named now are kept"
        );
    }

    #[test]
    fn restart_only_changes_are_reported_and_the_rest_applies() {
        let live = Live::new(config(BASE)).unwrap();
        let next = BASE
            .replace("workers = 2", "workers = 3")
            .replace("\"127.0.0.1:0\"", "\"127.0.0.1:0\"\nbacklog = 7")
            + "[[listener]]\naddr = \"127.0.0.1:9\"\n";
        let next = next.replace("[[route]]\n", "[[route]]\npath_prefix = \"/x/\"\n");
        let r = live.reload_with(config(&next), "test").unwrap();
        assert_eq!(r.needs_restart.len(), 3, "{:?}", r.needs_restart);
        assert!(
            r.needs_restart[0].contains("workers"),
            "{:?}",
            r.needs_restart
        );
        let g = live.load_full();
        assert_eq!(g.config.routes[0].path_prefix, "/x/");
        assert_eq!(g.listeners.len(), 1);
        // Still not applied: the next reload says so again.
        let again = live.reload_with(config(&next), "test").unwrap();
        assert_eq!(again.needs_restart, r.needs_restart);
    }

    #[test]
    fn a_failed_reload_keeps_the_generation_and_counts() {
        let live = Live::new(config(BASE)).unwrap();
        assert!(matches!(live.reload("test"), Err(BuildError::NoFile)));
        let s = live.stats();
        assert_eq!((s.reloads_ok, s.reloads_failed, s.generation), (0, 1, 1));
        assert_eq!(live.current_id(), 1);
    }
}
