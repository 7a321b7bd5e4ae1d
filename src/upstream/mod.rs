//! ⑦ Upstreams: per-worker keep-alive pools, server selection, connect with timeout.
//!
//! Each worker owns an [`Upstreams`] (nothing here is shared between threads): per
//! server, a LIFO stack of idle connections (the warmest first) capped at `keepalive`,
//! closed after `keepalive_timeout_ms` idle or `keepalive_requests` uses. An idle
//! connection on which anything arrived — bytes no request asked for, a close, an error
//! — is closed, never lent: it is checked when it is returned, when the sweep passes and
//! again right before it is reused, so a stray or late response can never be read as the
//! answer to another client's request. A [`Lease`] is
//! one connection on loan to one exchange; dropping it without [`Upstreams::release`]
//! closes the connection. Connect refused/unreachable → [`Kind::ConnectFailed`] (502),
//! connect timeout → [`Kind::ConnectTimeout`] (504). Addresses were resolved at load:
//! nothing here does DNS.

pub mod balance;
pub mod stream;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::config::{Config, UpstreamConfig};
use crate::error::{Kind, ProxyError, Side};
use crate::listener::Pending;
use crate::observe::Local;
pub use stream::{UpstreamStream, UpstreamWriter};

struct Idle {
    stream: TcpStream,
    since: Instant,
    requests: u64,
}

#[derive(Default)]
struct ServerState {
    idle: RefCell<Vec<Idle>>,
    /// Leases out right now (for least_conn).
    active: Cell<usize>,
}

struct Group {
    servers: Vec<ServerState>,
    cursor: Cell<usize>,
}

/// All upstream pools of one worker.
pub struct Upstreams {
    config: Arc<Config>,
    groups: Vec<Group>,
    /// The worker's metrics: connections opened, reused and discarded are counted here.
    metrics: Local,
}

/// Counts a lease as active on its server until dropped.
struct ActiveToken {
    pools: Rc<Upstreams>,
    group: usize,
    server: usize,
}

impl Drop for ActiveToken {
    fn drop(&mut self) {
        let s = &self.pools.groups[self.group].servers[self.server];
        s.active.set(s.active.get() - 1);
    }
}

/// An upstream connection lent to one exchange.
pub struct Lease {
    token: ActiveToken,
    pub stream: UpstreamStream,
    /// Came from the idle pool (may have been closed by the upstream meanwhile).
    pub reused: bool,
    /// Requests already served on this connection before this one.
    pub requests: u64,
}

impl Lease {
    pub fn upstream(&self) -> &UpstreamConfig {
        &self.token.pools.config.upstreams[self.token.group]
    }

    pub fn server(&self) -> usize {
        self.token.server
    }

    pub fn server_addr(&self) -> std::net::SocketAddr {
        self.upstream().servers[self.token.server].addr
    }
}

impl Upstreams {
    pub fn new(config: Arc<Config>, metrics: Local) -> Rc<Self> {
        let groups = config
            .upstreams
            .iter()
            .map(|u| Group {
                servers: u.servers.iter().map(|_| ServerState::default()).collect(),
                cursor: Cell::new(0),
            })
            .collect();
        Rc::new(Upstreams {
            config,
            groups,
            metrics,
        })
    }

    /// A connection to a server of upstream `group`: pooled if one is warm, else new.
    /// `fresh` skips the pool (the retry after a stale pooled connection failed).
    pub async fn acquire(
        self: &Rc<Self>,
        group: usize,
        fresh: bool,
        prefer_server: Option<usize>,
    ) -> Result<Lease, ProxyError> {
        let cfg = &self.config.upstreams[group];
        let g = &self.groups[group];
        let server = prefer_server.unwrap_or_else(|| {
            balance::pick(cfg.balance, g.servers.len(), &g.cursor, |i| {
                g.servers[i].active.get()
            })
        });
        let state = &g.servers[server];
        state.active.set(state.active.get() + 1);
        // Counted as active from here; dropping the token (or the lease) undoes it.
        let token = ActiveToken {
            pools: self.clone(),
            group,
            server,
        };
        let lease = |token, stream, reused, requests| Lease {
            token,
            stream: UpstreamStream::new(stream),
            reused,
            requests,
        };
        if !fresh {
            let now = Instant::now();
            let mut idle = state.idle.borrow_mut();
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
        let addr = cfg.servers[server].addr;
        let stream =
            match monoio::time::timeout(cfg.connect_timeout, TcpStream::connect_addr(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(ProxyError::io(
                        Side::Upstream,
                        Kind::ConnectFailed,
                        "connect failed",
                        e,
                    ));
                }
                Err(_) => {
                    return Err(ProxyError::new(
                        Side::Upstream,
                        Kind::ConnectTimeout,
                        "connect timed out",
                    ));
                }
            };
        let _ = stream.set_nodelay(true);
        self.metrics.upstream_opened.inc();
        Ok(lease(token, stream, false, 0))
    }

    /// Returns a connection whose last exchange ended cleanly to the idle pool.
    pub fn release(&self, lease: Lease) {
        let Lease {
            token,
            stream,
            requests,
            ..
        } = lease;
        let cfg = &self.config.upstreams[token.group];
        let requests = requests + 1;
        let Some(stream) = stream.into_tcp() else {
            return;
        };
        if requests >= cfg.keepalive_requests || cfg.keepalive == 0 || !self.quiet(&stream) {
            return;
        }
        let mut idle = self.groups[token.group].servers[token.server]
            .idle
            .borrow_mut();
        if idle.len() >= cfg.keepalive {
            // The coldest goes, like nginx's upstream keepalive cache.
            idle.remove(0);
        }
        idle.push(Idle {
            stream,
            since: Instant::now(),
            requests,
        });
    }

    /// Closes idle connections older than their upstream's keepalive timeout.
    pub fn sweep(&self) {
        let now = Instant::now();
        for (g, cfg) in self.groups.iter().zip(&self.config.upstreams) {
            for s in &g.servers {
                s.idle.borrow_mut().retain(|c| {
                    now.duration_since(c.since) < cfg.keepalive_timeout && self.quiet(&c.stream)
                });
            }
        }
    }

    /// True when nothing arrived on an idle connection; counts the ones that must close.
    fn quiet(&self, stream: &TcpStream) -> bool {
        let quiet = crate::listener::pending(stream) == Pending::Nothing;
        if !quiet {
            self.metrics.upstream_discarded.inc();
        }
        quiet
    }

    /// Drops every idle connection (shutdown).
    pub fn close_idle(&self) {
        for g in &self.groups {
            for s in &g.servers {
                s.idle.borrow_mut().clear();
            }
        }
    }

    /// How often [`Upstreams::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        self.config
            .upstreams
            .iter()
            .map(|u| u.keepalive_timeout / 2)
            .min()
            .unwrap_or(Duration::from_secs(30))
            .clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}
