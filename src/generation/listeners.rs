//! The running listeners' side of a [`Generation`]: what a listener is for the process's
//! life ([`Running`]: address, backlog, TLS session state, connection counts) and what
//! each generation gives it — its TLS configurations, accept policies, per-request
//! settings and connection limit — matched by address, so that a reload that reorders,
//! adds or removes listeners in the file never hands a running listener another's
//! settings. Runs on the reload thread only, never on a worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{BuildError, Generation};
use crate::config::{
    Config, HeaderPolicy, IdentityHeaders, KtlsMode, ListenerConfig, ListenerPolicies, RecordLayer,
    RedirectHttps,
};
use crate::policy::conn_limit::ConnTable;
use crate::transport::tls::{ServerConfigs, TlsShared};

/// The TLS side of one running listener in one generation.
#[derive(Clone)]
pub struct ListenerTls {
    /// The listener's rustls configurations (one per certificate entry with its own
    /// `client_auth`).
    pub server_configs: ServerConfigs,
    pub handshake_timeout: Duration,
    pub ktls: KtlsMode,
    pub record_layer: RecordLayer,
}

/// A running listener's per-request settings in one generation: what its exchanges
/// read by the listener's running position (`config.listeners` is in the file's order,
/// which a reload may change).
#[derive(Debug, Clone, Default)]
pub struct ListenerRequests {
    /// `security_headers`, `request_headers`, `response_headers`.
    pub headers: HeaderPolicy,
    /// `client_identity_headers` of a TLS listener; `None`: a plain listener.
    pub identity: Option<IdentityHeaders>,
    /// `redirect_https = true`: every request is redirected.
    pub redirect_https: Option<RedirectHttps>,
}

/// A listener that was never configured (a test's generation without listeners).
static NO_LISTENER: ListenerRequests = ListenerRequests {
    headers: HeaderPolicy {
        security: None,
        request: Vec::new(),
        response: Vec::new(),
    },
    identity: None,
    redirect_https: None,
};

impl ListenerRequests {
    fn of(l: &ListenerConfig) -> ListenerRequests {
        ListenerRequests {
            headers: l.headers.clone(),
            identity: l.tls.as_ref().map(|t| t.identity_headers.clone()),
            redirect_https: l.redirect_https,
        }
    }
}

impl Generation {
    /// The per-request settings of running listener `index` (the position a
    /// connection's [`crate::message::ClientInfo::listener`] names).
    pub fn listener(&self, index: usize) -> &ListenerRequests {
        self.listener_requests.get(index).unwrap_or(&NO_LISTENER)
    }
}

/// A listener's `max_connections_per_ip` in one generation.
#[derive(Clone)]
pub struct ConnLimit {
    pub max: u32,
    /// Open connections per address: one table per running listener for the process's
    /// life (connections outlive generations).
    pub table: Arc<ConnTable>,
}

/// What a running listener is, fixed for the process's life.
#[derive(Clone)]
pub(super) struct Running {
    /// The address as configured (port 0 stays 0: that is what a new config repeats).
    pub addr: SocketAddr,
    pub backlog: i32,
    pub tls: Option<TlsShared>,
    /// Open connections per client address (used when a generation sets a limit).
    pub conns: Arc<ConnTable>,
}

/// The running listeners' settings in a new generation, one per running listener in
/// the order they were bound.
pub(super) struct RunningListeners {
    pub tls: Vec<Option<ListenerTls>>,
    pub policies: Vec<ListenerPolicies>,
    pub requests: Vec<ListenerRequests>,
    pub conn_limits: Vec<Option<ConnLimit>>,
}

/// Each running listener takes the new config's listener with the same address (a
/// listener removed from the file keeps its previous settings); what differs but cannot
/// change without a restart goes to `needs_restart`.
pub(super) fn build(
    config: &Config,
    running: &[Running],
    old: Option<&Generation>,
    needs_restart: &mut Vec<String>,
) -> Result<RunningListeners, BuildError> {
    let mut taken = vec![false; config.listeners.len()];
    let mut listeners = Vec::new();
    let mut conn_limits = Vec::new();
    let mut listener_policies = Vec::new();
    let mut listener_requests = Vec::new();
    for (i, r) in running.iter().enumerate() {
        let found = config
            .listeners
            .iter()
            .enumerate()
            .find(|(j, l)| !taken[*j] && l.addr == r.addr);
        let previous = || old.and_then(|o| o.listeners[i].as_ref()).cloned();
        let Some((j, l)) = found else {
            needs_restart.push(format!(
                "listener {} removed (still serving it with its previous settings)",
                r.addr
            ));
            listeners.push(previous());
            conn_limits.push(old.and_then(|o| o.conn_limits[i].clone()));
            let kept = old.and_then(|o| o.listener_policies.get(i));
            listener_policies.push(kept.cloned().unwrap_or_default());
            let kept = old.and_then(|o| o.listener_requests.get(i));
            listener_requests.push(kept.cloned().unwrap_or_default());
            continue;
        };
        taken[j] = true;
        conn_limits.push(l.max_connections_per_ip.map(|max| ConnLimit {
            max,
            table: r.conns.clone(),
        }));
        listener_policies.push(l.policies.clone());
        listener_requests.push(ListenerRequests::of(l));
        if l.backlog != r.backlog {
            needs_restart.push(format!("listener {} backlog changed", r.addr));
        }
        listeners.push(listener_tls(l, r, needs_restart, previous)?);
    }
    for (j, l) in config.listeners.iter().enumerate() {
        if !taken[j] {
            needs_restart.push(format!("listener {} added", l.addr));
        }
    }
    Ok(RunningListeners {
        tls: listeners,
        policies: listener_policies,
        requests: listener_requests,
        conn_limits,
    })
}

/// The running listener `r`'s TLS side in the new generation, from its new config `l`.
fn listener_tls(
    l: &ListenerConfig,
    r: &Running,
    needs_restart: &mut Vec<String>,
    previous: impl Fn() -> Option<ListenerTls>,
) -> Result<Option<ListenerTls>, BuildError> {
    let (Some(t), Some(shared)) = (&l.tls, &r.tls) else {
        if l.tls.is_some() != r.tls.is_some() {
            needs_restart.push(format!(
                "listener {} switched between plain HTTP and TLS",
                r.addr
            ));
        }
        return Ok(previous());
    };
    if t.session_cache_entries != shared.cache_entries {
        needs_restart.push(format!("listener {} session_cache_entries changed", r.addr));
    }
    if t.ktls == KtlsMode::On {
        // Probed once per process and cached: no kernel call after the first.
        let support = crate::transport::ktls::support();
        if !support.is_available() {
            return Err(BuildError::Ktls {
                addr: l.addr,
                reason: support.describe(),
            });
        }
    }
    let server_configs = ServerConfigs::new(t, shared).map_err(|error| BuildError::Tls {
        addr: l.addr,
        error,
    })?;
    Ok(Some(ListenerTls {
        server_configs,
        handshake_timeout: t.handshake_timeout,
        ktls: t.ktls,
        record_layer: t.record_layer,
    }))
}
