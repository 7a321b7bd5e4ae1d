//! ⑨ Observe: the process's metrics registry, its Prometheus text rendering, and the
//! admin listener that serves it ([`admin`]).
//!
//! One [`Registry`] per server, created before any worker starts. It holds one
//! [`WorkerMetrics`] per worker (written only by that worker, see [`metrics`]) and
//! process-wide metrics registered as closures read at scrape time (build info, the
//! `process_*` families Prometheus users expect ([`process`]), and
//! whatever other modules add with [`Registry::counter_fn`], [`Registry::gauge_fn`] or
//! [`Registry::family_fn`], e.g. config reload stats). A scrape sums the workers; the
//! shutdown report ([`crate::runtime::WorkerReport`]) reads the same counters. Readiness
//! is part of the registry too: every worker's accept loops report that they run.
//!
//! Nothing here runs on the request path except the single-writer stores of
//! [`metrics`]; rendering allocates and locks, on the admin thread only.

pub mod admin;
pub mod metrics;
pub mod process;
pub mod upstream_log;

use std::fmt::Write as _;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub use metrics::{Counter, Gauge, H2Error, Histogram, PolicyRejection, TunnelEnd, WorkerMetrics};
use metrics::{
    HandshakeFailure, HistogramSnapshot, LATENCY_BUCKETS, STATUS_CLASSES, TLS_SUITES,
    UPSTREAM_ERROR_KINDS,
};

use crate::transport::ktls::Fallback;
use crate::transport::tls::{Rejection, TlsInfo};
use crate::transport::{KtlsEvent, TlsEvents};

/// Prometheus metric types the registry renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// One sample of a process-wide family: label pairs and a value.
pub type Sample = (Vec<(&'static str, String)>, f64);

type ReadFn = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

struct ProcessMetric {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    read: ReadFn,
}

/// Every metric of one server.
pub struct Registry {
    workers: Box<[WorkerMetrics]>,
    /// Listening sockets per worker: a worker is ready when all of them accept.
    listeners: u64,
    config_loaded: AtomicBool,
    process: Mutex<Vec<ProcessMetric>>,
}

impl Registry {
    /// Metrics for `workers` workers with `listeners` listening sockets each, with the
    /// build info registered.
    pub fn new(workers: usize, listeners: usize) -> Arc<Registry> {
        let r = Registry {
            workers: (0..workers).map(|_| WorkerMetrics::default()).collect(),
            listeners: listeners as u64,
            config_loaded: AtomicBool::new(false),
            process: Mutex::new(Vec::new()),
        };
        r.family_fn(
            "ringgate_build_info",
            "Build of the running binary (always 1).",
            MetricType::Gauge,
            || {
                vec![(
                    vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                    1.0,
                )]
            },
        );
        process::register(&r);
        Arc::new(r)
    }

    /// The metrics worker `index` writes.
    pub fn local(self: &Arc<Self>, index: usize) -> Local {
        assert!(index < self.workers.len(), "worker index out of range");
        Local {
            registry: self.clone(),
            index,
        }
    }

    pub fn workers(&self) -> &[WorkerMetrics] {
        &self.workers
    }

    /// A process-wide counter read at each scrape, e.g.
    /// `registry.counter_fn("ringgate_config_reloads_failed_total", "…", || stats().failed)`.
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.family_fn(name, help, MetricType::Counter, move || {
            vec![(Vec::new(), read() as f64)]
        });
    }

    /// A process-wide gauge read at each scrape.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.family_fn(name, help, MetricType::Gauge, move || {
            vec![(Vec::new(), read())]
        });
    }

    /// A process-wide family with labels, e.g. reloads by `result`, or an info gauge
    /// carrying the loaded config hash as a label.
    pub fn family_fn(
        &self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        read: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) {
        let metric = ProcessMetric {
            name,
            help,
            kind,
            read: Box::new(read),
        };
        let mut p = self.process.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|m| m.name != name);
        p.push(metric);
    }

    /// The configuration is loaded (readiness needs it).
    pub fn set_config_loaded(&self, loaded: bool) {
        self.config_loaded.store(loaded, Relaxed);
    }

    /// Every worker accepts on every listener and a configuration is loaded.
    pub fn is_ready(&self) -> bool {
        self.config_loaded.load(Relaxed)
            && self
                .workers
                .iter()
                .all(|w| w.accepting.get() >= self.listeners)
    }

    fn sum(&self, f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
        self.workers.iter().map(f).sum()
    }

    fn histogram(&self, f: impl Fn(&WorkerMetrics) -> &Histogram) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        for w in self.workers.iter() {
            f(w).merge_into(&mut s);
        }
        s
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric, workers summed.
    pub fn render(&self) -> String {
        let mut o = Exposition(String::with_capacity(16 * 1024));
        use MetricType::{Counter as C, Gauge as G};
        o.header("ringgate_workers", "Worker threads.", G);
        o.sample("ringgate_workers", &[], self.workers.len() as f64);
        o.header(
            "ringgate_ready",
            "1 when every worker accepts and a configuration is loaded (as /readyz).",
            G,
        );
        o.sample("ringgate_ready", &[], u8::from(self.is_ready()) as f64);

        o.single(
            "ringgate_connections_accepted_total",
            "Client connections accepted.",
            C,
            self.sum(|w| w.accepted.get()),
        );
        o.single(
            "ringgate_connections_refused_total",
            "Client connections closed at once: max_connections_per_worker reached.",
            C,
            self.sum(|w| w.refused.get()),
        );
        let name = "ringgate_policy_rejections_total";
        o.header(
            name,
            "Requests and connections a gateway policy refused, by policy and reason.",
            C,
        );
        for r in PolicyRejection::ALL {
            let n = self.sum(|w| w.policy_rejections[r.index()].get());
            let (policy, reason) = r.labels();
            o.sample(name, &[("policy", policy), ("reason", reason)], n as f64);
        }
        let name = "ringgate_h2_protocol_errors_total";
        o.header(
            name,
            "HTTP/2 connections (GOAWAY) and streams (reset) ended for a protocol error or a flood budget, by reason.",
            C,
        );
        for r in H2Error::ALL {
            let n = self.sum(|w| w.h2_protocol_errors[r.index()].get());
            o.sample(name, &[("reason", r.label())], n as f64);
        }
        o.single(
            "ringgate_h2_connections_total",
            "HTTP/2 connections served (after the connection preface).",
            C,
            self.sum(|w| w.h2_connections.get()),
        );
        o.single(
            "ringgate_h2_streams_total",
            "HTTP/2 streams (requests) served.",
            C,
            self.sum(|w| w.h2_streams.get()),
        );
        o.single(
            "ringgate_rate_limit_delayed_total",
            "Requests a rate limit admitted after a delay (nginx: delaying request).",
            C,
            self.sum(|w| w.rate_limit_delayed.get()),
        );
        o.single(
            "ringgate_connections_active",
            "Client connections open now.",
            G,
            self.sum(|w| w.active.get()),
        );

        let name = "ringgate_tls_handshakes_total";
        o.header(name, "TLS handshakes by outcome: ok, or why it failed.", C);
        let ok = self.sum(|w| w.handshakes.iter().flatten().map(Counter::get).sum());
        o.sample(name, &[("outcome", "ok")], ok as f64);
        for (i, r) in HandshakeFailure::ALL.iter().enumerate() {
            let n = self.sum(|w| w.handshake_failures[i].get());
            o.sample(name, &[("outcome", r.name())], n as f64);
        }
        let name = "ringgate_tls_client_cert_rejections_total";
        o.header(
            name,
            "Client certificates refused in the handshake, by reason.",
            C,
        );
        for (i, r) in Rejection::ALL.iter().enumerate() {
            let n = self.sum(|w| w.client_cert_rejections[i].get());
            o.sample(name, &[("reason", r.name())], n as f64);
        }
        let name = "ringgate_tls_handshakes_completed_total";
        o.header(
            name,
            "Completed TLS handshakes by version, cipher suite and mode (full or resumed).",
            C,
        );
        for i in 0..=TLS_SUITES.len() {
            let (version, suite) = TLS_SUITES.get(i).map_or(("other", "other"), |s| (s.1, s.2));
            for (m, mode) in ["full", "resumed"].iter().enumerate() {
                let n = self.sum(|w| w.handshakes[i][m].get());
                let labels = [("version", version), ("suite", suite), ("mode", mode)];
                o.sample(name, &labels, n as f64);
            }
        }
        let name = "ringgate_tls_handshakes_by_group_total";
        o.header(
            name,
            "Completed TLS handshakes by key-exchange group (none: a TLS 1.2 resumption).",
            C,
        );
        for i in 0..metrics::KX_GROUP_LABELS {
            let n = self.sum(|w| w.handshakes_by_group[i].get());
            o.sample(name, &[("group", WorkerMetrics::group_label(i))], n as f64);
        }
        o.histogram(
            "ringgate_tls_handshake_duration_seconds",
            "Duration of completed TLS handshakes.",
            &self.histogram(|w| &w.handshake_duration),
        );

        o.single(
            "ringgate_ktls_offloaded_total",
            "Connections whose TLS record layer moved into the kernel.",
            C,
            self.sum(|w| w.ktls_offloaded.get()),
        );
        let name = "ringgate_ktls_fallback_total";
        o.header(name, "Connections left in userspace TLS, by reason.", C);
        for r in Fallback::ALL {
            let n = self.sum(|w| w.ktls_fallback[r.index()].get());
            o.sample(name, &[("reason", r.name())], n as f64);
        }
        o.single(
            "ringgate_ktls_failed_total",
            "Connections closed because the switch to kernel TLS failed midway.",
            C,
            self.sum(|w| w.ktls_failed.get()),
        );
        o.single(
            "ringgate_ktls_rekeys_total",
            "Peer TLS 1.3 KeyUpdates installed in the kernel.",
            C,
            self.sum(|w| w.ktls_rekeys.get()),
        );
        o.single(
            "ringgate_ktls_keyupdate_closes_total",
            "kTLS connections closed on a peer KeyUpdate (kernel cannot re-key).",
            C,
            self.sum(|w| w.ktls_keyupdate_closes.get()),
        );
        o.single(
            "ringgate_ktls_close_notify_received_total",
            "close_notify alerts read on kTLS connections.",
            C,
            self.sum(|w| w.ktls_close_notify.get()),
        );

        let name = "ringgate_requests_total";
        o.header(
            name,
            "Requests by response status class (none: no response was sent).",
            C,
        );
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            let n = self.sum(|w| w.requests[i].get());
            o.sample(name, &[("class", class)], n as f64);
        }
        o.histogram(
            "ringgate_request_duration_seconds",
            "From a parsed request head to the end of its response.",
            &self.histogram(|w| &w.request_duration),
        );

        o.single(
            "ringgate_upstream_connections_opened_total",
            "Upstream connections opened.",
            C,
            self.sum(|w| w.upstream_opened.get()),
        );
        o.single(
            "ringgate_upstream_connections_reused_total",
            "Requests sent on a pooled upstream connection.",
            C,
            self.sum(|w| w.upstream_reused.get()),
        );
        o.single(
            "ringgate_upstream_connections_discarded_total",
            "Idle pooled upstream connections closed because something arrived on them.",
            C,
            self.sum(|w| w.upstream_discarded.get()),
        );
        let name = "ringgate_upstream_errors_total";
        o.header(name, "Upstream failures by kind.", C);
        for (i, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
            let n = self.sum(|w| w.upstream_errors[i].get());
            o.sample(name, &[("kind", kind)], n as f64);
        }
        o.single(
            "ringgate_spliced_bodies_total",
            "Response bodies moved upstream to client with splice.",
            C,
            self.sum(|w| w.spliced_bodies.get()),
        );
        o.single(
            "ringgate_splice_pipes_spare",
            "Spare splice pipes kept for reuse (two descriptors each; capped per worker, \
             closed when idle).",
            G,
            self.sum(|w| w.splice_pipes_spare.get()),
        );
        o.single(
            "ringgate_tunnels_active",
            "Upgraded connections (WebSocket tunnels) open now (at most [http] max_tunnels \
             per worker).",
            G,
            self.sum(|w| w.tunnels_active.get()),
        );
        let name = "ringgate_tunnels_total";
        o.header(name, "Tunnels ended, by how they ended.", C);
        for (i, end) in metrics::TunnelEnd::ALL.iter().enumerate() {
            let n = self.sum(|w| w.tunnels[i].get());
            o.sample(name, &[("outcome", end.label())], n as f64);
        }
        o.single(
            "ringgate_panics_total",
            "Connection tasks that panicked (a bug; each lost one connection).",
            C,
            self.sum(|w| w.panics.get()),
        );

        let process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        for m in process.iter() {
            o.header(m.name, m.help, m.kind);
            for (labels, value) in (m.read)() {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                o.sample(m.name, &labels, value);
            }
        }
        o.0
    }
}

/// One worker's handle on its own metrics (cheap to deref; cloned per worker, not per
/// request).
#[derive(Clone)]
pub struct Local {
    registry: Arc<Registry>,
    index: usize,
}

/// The transport's events, counted in this worker's metrics.
impl TlsEvents for Local {
    fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures[reason as usize].inc();
    }

    fn client_cert_rejected(&self, reason: Rejection) {
        self.client_cert_rejections[reason as usize].inc();
    }

    fn handshake_done(&self, info: &TlsInfo) {
        self.handshake_ok(info.cipher_suite, info.resumed, info.handshake_duration);
        self.handshake_group(info.kx_group);
    }

    fn ktls(&self, event: KtlsEvent) {
        match event {
            KtlsEvent::Offloaded => self.ktls_offloaded.inc(),
            KtlsEvent::Fallback(reason) => self.ktls_fallback[reason.index()].inc(),
            KtlsEvent::Failed => self.ktls_failed.inc(),
            KtlsEvent::CloseNotify => self.ktls_close_notify.inc(),
            KtlsEvent::Rekey => self.ktls_rekeys.inc(),
            KtlsEvent::KeyUpdateClose => self.ktls_keyupdate_closes.inc(),
        }
    }
}

impl Deref for Local {
    type Target = WorkerMetrics;

    #[inline]
    fn deref(&self) -> &WorkerMetrics {
        &self.registry.workers[self.index]
    }
}

/// The text format being written.
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, help: &str, kind: MetricType) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {}", kind.name());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, help: &str, kind: MetricType, value: u64) {
        self.header(name, help, kind);
        self.sample(name, &[], value as f64);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b:?}"));
            self.sample(&bucket, &[("le", &le)], cumulative as f64);
        }
        self.sample(
            &format!("{name}_sum"),
            &[],
            h.sum_nanos as f64 / 1_000_000_000.0,
        );
        self.sample(&format!("{name}_count"), &[], h.count() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sums_workers_and_includes_process_metrics() {
        let r = Registry::new(2, 1);
        r.workers()[0].accepted.add(3);
        r.workers()[1].accepted.add(4);
        r.workers()[1].request_done(204, std::time::Duration::from_millis(1));
        r.gauge_fn("ringgate_test_gauge", "A test gauge.", || 2.5);
        let text = r.render();
        assert!(
            text.contains("\nringgate_connections_accepted_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("ringgate_requests_total{class=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ringgate_request_duration_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ringgate_request_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.contains("\nringgate_test_gauge 2.5\n"), "{text}");
        assert!(text.contains("ringgate_build_info{version=\""), "{text}");
    }

    #[test]
    fn ready_only_when_every_worker_accepts_and_config_loaded() {
        let r = Registry::new(2, 1);
        r.set_config_loaded(true);
        assert!(!r.is_ready());
        r.workers()[0].accepting.inc();
        assert!(!r.is_ready());
        r.workers()[1].accepting.inc();
        assert!(r.is_ready());
        r.set_config_loaded(false);
        assert!(!r.is_ready());
    }
}
