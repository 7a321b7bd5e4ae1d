//! What every task on one worker can reach: the live configuration, the worker's
//! upstream pools, its counters, its drain signal and its spare splice pipes.
//!
//! Built by [`crate::runtime`] for each worker thread and shared by `Rc` among that
//! worker's tasks only (nothing here crosses threads except [`Live`], the atomically
//! swapped generation). It sits below every request-path module — the sessions
//! ([`crate::http1::server`]), the exchange ([`crate::proxy`]) and the worker's accept loop
//! all read it — so none of them has to import another to reach it.

pub mod pipes;
pub mod signal;

use std::rc::Rc;
use std::sync::Arc;

use crate::generation::Live;
use crate::observe::Local;
use crate::upstream::Upstreams;
pub use pipes::PipePool;
pub use signal::LocalSignal;

/// What every connection task of a worker can reach.
pub struct WorkerCtx {
    pub id: usize,
    /// The current configuration generation.
    pub live: Arc<Live>,
    pub upstreams: Rc<Upstreams>,
    /// Raised when the worker stops accepting; idle connections close on it.
    pub draining: LocalSignal,
    /// Raised when draining and the last connection has closed.
    pub closed_all: LocalSignal,
    /// This worker's counters, gauges and histograms (it is their only writer).
    pub metrics: Local,
    /// Spare pipes for splicing bodies, reused across exchanges (capped, trimmed).
    pub pipes: PipePool,
}

#[cfg(test)]
impl WorkerCtx {
    /// A worker context for unit tests: one worker on the configuration `toml`.
    pub(crate) fn for_test(toml: &str) -> Rc<WorkerCtx> {
        let config = crate::config::from_toml_str(toml, "t.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let live = Live::new(config).unwrap_or_else(|e| panic!("{e}"));
        let metrics = crate::observe::Registry::new(1, 1).local(0);
        Rc::new(WorkerCtx {
            id: 0,
            upstreams: Upstreams::new(live.clone(), metrics.clone()),
            live,
            draining: LocalSignal::default(),
            closed_all: LocalSignal::default(),
            pipes: PipePool::new(metrics.clone()),
            metrics,
        })
    }
}
