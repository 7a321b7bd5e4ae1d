//! ⑧ Upstreams: per-worker keep-alive pools, server selection, connect with timeout.
//!
//! Each worker owns an [`Upstreams`] (nothing here is shared between threads): per
//! server, a LIFO stack of idle connections (the warmest first) capped at `keepalive`,
//! closed after `keepalive_timeout_ms` idle or `keepalive_requests` uses. An idle
//! connection on which anything arrived — bytes no request asked for, a close, an error
//! — is closed, never lent: it is checked right before it is reused (one non-blocking
//! `MSG_PEEK` per reuse: the check that matters, since bytes may arrive any time until
//! then) and when the sweep passes, so a stray or late response can never be read as the
//! answer to another client's request. (Bytes already read past a response keep it out
//! of the pool at release.) A [`Lease`] is
//! one connection on loan to one exchange; dropping it without [`Upstreams::release`]
//! closes the connection. Connect refused/unreachable → [`Kind::ConnectFailed`] (502),
//! connect timeout → [`Kind::ConnectTimeout`] (504). Addresses were resolved at load:
//! nothing here does DNS.
//!
//! Pools live in stable *slots*, one per (upstream name, server address), numbered by
//! the configuration generation ([`crate::generation`]): a reload that keeps a server
//! keeps its idle connections; a slot no generation routes to any more is emptied at the
//! next sweep, and a connection to it coming back from an exchange is closed. Each
//! exchange passes the generation it loaded, so it finishes on that generation's
//! settings. The round-robin cursor lives per upstream name.
//!
//! A slot no generation names any more is handed to another server by a later reload
//! (so rotating addresses do not grow the tables): each pool remembers the server it
//! holds ([`PoolKey`]), a lease for another server replaces it (the old idle connections
//! close), and a connection coming back to a pool that was replaced meanwhile closes —
//! an idle connection is only ever lent for the server it was opened to.
//!
//! An upstream with `protocol = "h2"` lends streams instead of connections
//! ([`Upstreams::acquire_h2`], pools in [`h2`]): the same slots, server choice and
//! active counts, multiplexed connections.

pub mod balance;
pub mod h1;
pub mod h2;
mod h2_io;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::clock;
use crate::config::UpstreamConfig;
use crate::error::{Kind, ProxyError, Side};
use crate::generation::{Generation, Live};
use crate::listener::Pending;
use crate::observe::Local;
pub use crate::transport::upstream::{UpstreamStream, UpstreamWriter};

struct Idle {
    stream: TcpStream,
    since: Instant,
    requests: u64,
}

/// The server a pool slot holds now: (balancer slot, one per upstream name; address).
type PoolKey = (usize, std::net::SocketAddr);

/// The pool of one (upstream name, server address) slot.
#[derive(Default)]
struct ServerPool {
    /// The server its connections go to (`None`: a placeholder nothing used yet).
    key: Option<PoolKey>,
    idle: RefCell<Vec<Idle>>,
    /// Leases out right now (for least_conn).
    active: Cell<usize>,
}

const CONNECT_FAILED: ProxyError =
    ProxyError::new(Side::Upstream, Kind::ConnectFailed, "connect failed");
const CONNECT_TIMED_OUT: ProxyError =
    ProxyError::new(Side::Upstream, Kind::ConnectTimeout, "connect timed out");

/// All upstream pools of one worker.
pub struct Upstreams {
    live: Arc<Live>,
    /// By pool slot; grows when a generation brings new servers.
    pools: RefCell<Vec<Rc<ServerPool>>>,
    /// Round-robin cursors, by balancer slot (one per upstream name).
    cursors: RefCell<Vec<Cell<usize>>>,
    /// The worker's metrics: connections opened, reused and discarded are counted here.
    metrics: Local,
    /// The HTTP/2 connections of `protocol = "h2"` upstreams, by the same slots.
    h2: h2::Pools,
}

/// Counts a lease as active on its server until dropped.
struct ActiveToken {
    pool: Rc<ServerPool>,
}

impl Drop for ActiveToken {
    fn drop(&mut self) {
        self.pool.active.set(self.pool.active.get() - 1);
    }
}

/// An upstream connection lent to one exchange.
pub struct Lease {
    token: ActiveToken,
    /// The generation the exchange started with (its upstream settings apply).
    generation: Arc<Generation>,
    group: usize,
    server: usize,
    slot: usize,
    pub stream: UpstreamStream,
    /// Came from the idle pool (may have been closed by the upstream meanwhile).
    pub reused: bool,
    /// Requests already served on this connection before this one.
    pub requests: u64,
}

impl Lease {
    pub fn upstream(&self) -> &UpstreamConfig {
        &self.generation.config.upstreams[self.group]
    }

    pub fn server(&self) -> usize {
        self.server
    }

    pub fn server_addr(&self) -> std::net::SocketAddr {
        self.upstream().servers[self.server].addr
    }
}

impl Upstreams {
    pub fn new(live: Arc<Live>, metrics: Local) -> Rc<Self> {
        Rc::new(Upstreams {
            live,
            pools: RefCell::new(Vec::new()),
            cursors: RefCell::new(Vec::new()),
            metrics,
            h2: h2::Pools::default(),
        })
    }

    /// The pool of `slot` for server `key`; a pool the slot held for another server
    /// (freed by a reload, reused since) is replaced, closing its idle connections.
    fn pool(&self, slot: usize, key: PoolKey) -> Rc<ServerPool> {
        let mut pools = self.pools.borrow_mut();
        if pools.len() <= slot {
            pools.resize_with(slot + 1, Rc::default);
        }
        if pools[slot].key != Some(key) {
            pools[slot] = Rc::new(ServerPool {
                key: Some(key),
                ..ServerPool::default()
            });
        }
        pools[slot].clone()
    }

    fn active(&self, slot: usize, key: PoolKey) -> usize {
        self.pools
            .borrow()
            .get(slot)
            .filter(|p| p.key == Some(key))
            .map_or(0, |p| p.active.get())
    }

    /// Pool slots this worker has a table entry for (bounded by the generation's slots).
    pub fn pool_slots(&self) -> usize {
        self.pools.borrow().len()
    }

    /// A stream to a server of `protocol = "h2"` upstream `group` of `generation`, on
    /// a pooled HTTP/2 connection with room, else a new one ([`h2`]).
    pub async fn acquire_h2(
        self: &Rc<Self>,
        generation: &Arc<Generation>,
        group: usize,
    ) -> Result<h2::Stream, ProxyError> {
        let cfg = &generation.config.upstreams[group];
        let slots = &generation.upstreams[group];
        let server = self.pick(generation, group);
        let slot = slots.servers[server];
        let key = (slots.balancer, cfg.servers[server].addr);
        let pool = self.pool(slot, key);
        pool.active.set(pool.active.get() + 1);
        let token = ActiveToken { pool };
        self.h2.stream(slot, key, cfg, token, &self.metrics).await
    }

    /// The server of upstream `group` the balancer picks next.
    fn pick(&self, generation: &Generation, group: usize) -> usize {
        let cfg = &generation.config.upstreams[group];
        let slots = &generation.upstreams[group];
        let mut cursors = self.cursors.borrow_mut();
        if cursors.len() <= slots.balancer {
            cursors.resize_with(slots.balancer + 1, Cell::default);
        }
        let cursor = &cursors[slots.balancer];
        balance::pick(cfg.balance, slots.servers.len(), cursor, |i| {
            self.active(slots.servers[i], (slots.balancer, cfg.servers[i].addr))
        })
    }

    /// A connection to a server of upstream `group` of `generation`: pooled if one is
    /// warm, else new. `fresh` skips the pool (the retry after a stale pooled connection
    /// failed).
    pub async fn acquire(
        self: &Rc<Self>,
        generation: &Arc<Generation>,
        group: usize,
        fresh: bool,
        prefer_server: Option<usize>,
    ) -> Result<Lease, ProxyError> {
        let cfg = &generation.config.upstreams[group];
        let slots = &generation.upstreams[group];
        let server = match prefer_server {
            Some(s) => s,
            None => {
                let mut cursors = self.cursors.borrow_mut();
                if cursors.len() <= slots.balancer {
                    cursors.resize_with(slots.balancer + 1, Cell::default);
                }
                let cursor = &cursors[slots.balancer];
                balance::pick(cfg.balance, slots.servers.len(), cursor, |i| {
                    self.active(slots.servers[i], (slots.balancer, cfg.servers[i].addr))
                })
            }
        };
        let slot = slots.servers[server];
        let addr = cfg.servers[server].addr;
        let pool = self.pool(slot, (slots.balancer, addr));
        pool.active.set(pool.active.get() + 1);
        // Counted as active from here; dropping the token (or the lease) undoes it.
        let token = ActiveToken { pool: pool.clone() };
        let lease = |token, stream, reused, requests| Lease {
            token,
            generation: generation.clone(),
            group,
            server,
            slot,
            stream: UpstreamStream::new(stream),
            reused,
            requests,
        };
        if !fresh {
            let now = clock::now();
            let mut idle = pool.idle.borrow_mut();
            while let Some(c) = idle.pop() {
                if now.duration_since(c.since) >= cfg.keepalive_timeout {
                    continue;
                }
                if !self.quiet(&c.stream) {
                    continue;
                }
                drop(idle);
                self.metrics.upstream_reused.inc();
                return Ok(lease(token, c.stream, true, c.requests));
            }
        }
        // Boxed: a connect (and its timer) is not what a keep-alive request's future
        // should carry room for.
        let connect = Box::pin(monoio::time::timeout(
            cfg.connect_timeout,
            TcpStream::connect_addr(addr),
        ));
        let stream = ProxyError::timed(connect.await, CONNECT_FAILED, CONNECT_TIMED_OUT)
            .map_err(|e| e.at(addr))?;
        let _ = stream.set_nodelay(true);
        self.metrics.upstream_opened.inc();
        Ok(lease(token, stream, false, 0))
    }

    /// Returns a connection whose last exchange ended cleanly to the idle pool (unless
    /// a reload since removed its server: then it closes).
    pub fn release(&self, lease: Lease) {
        let Lease {
            token,
            generation,
            group,
            slot,
            stream,
            requests,
            ..
        } = lease;
        let cfg = &generation.config.upstreams[group];
        let requests = requests + 1;
        let Some(stream) = stream.into_tcp() else {
            return;
        };
        if requests >= cfg.keepalive_requests || cfg.keepalive == 0 {
            return;
        }
        if generation.id != self.live.current_id() && !self.live.load().slot_is_live(slot) {
            return;
        }
        // The slot went to another server since this lease began: its pool was replaced.
        if !self
            .pools
            .borrow()
            .get(slot)
            .is_some_and(|p| Rc::ptr_eq(p, &token.pool))
        {
            return;
        }
        let mut idle = token.pool.idle.borrow_mut();
        if idle.len() >= cfg.keepalive {
            // The coldest goes, like nginx's upstream keepalive cache.
            idle.remove(0);
        }
        idle.push(Idle {
            stream,
            since: clock::now(),
            requests,
        });
    }

    /// Closes idle connections older than their upstream's keepalive timeout, and every
    /// idle connection of a server the current generation no longer routes to.
    pub fn sweep(&self) {
        let now = Instant::now();
        let generation = self.live.load_full();
        let pools = self.pools.borrow();
        // Per slot: the server the current generation gives it and its keepalive timeout.
        let mut keep: Vec<Option<(PoolKey, Duration)>> = vec![None; pools.len()];
        for (u, cfg) in generation
            .upstreams
            .iter()
            .zip(&generation.config.upstreams)
        {
            for (&slot, server) in u.servers.iter().zip(&cfg.servers) {
                if let Some(k) = keep.get_mut(slot) {
                    *k = Some(((u.balancer, server.addr), cfg.keepalive_timeout));
                }
            }
        }
        self.h2.sweep(now, &keep);
        for (pool, keep) in pools.iter().zip(keep) {
            let mut idle = pool.idle.borrow_mut();
            match keep {
                Some((key, t)) if pool.key == Some(key) => {
                    idle.retain(|c| now.duration_since(c.since) < t && self.quiet(&c.stream))
                }
                // Not routed to, or the slot now belongs to another server.
                _ => idle.clear(),
            }
        }
    }

    /// True when nothing arrived on an idle connection; counts the ones that must close.
    fn quiet(&self, stream: &TcpStream) -> bool {
        let quiet =
            crate::listener::pending(crate::listener::socket_fd(stream)) == Pending::Nothing;
        if !quiet {
            self.metrics.upstream_discarded.inc();
        }
        quiet
    }

    /// Drops every idle connection (shutdown).
    pub fn close_idle(&self) {
        for p in self.pools.borrow().iter() {
            p.idle.borrow_mut().clear();
        }
        self.h2.close_idle();
    }

    /// How often [`Upstreams::sweep`] should run (from the current generation).
    pub fn sweep_interval(&self) -> Duration {
        self.live
            .load()
            .config
            .upstreams
            .iter()
            .map(|u| u.keepalive_timeout / 2)
            .min()
            .unwrap_or(Duration::from_secs(30))
            .clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests;
