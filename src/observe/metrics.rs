//! Per-worker counters and histograms, and the label sets they are indexed by.
//!
//! Single writer: each [`WorkerMetrics`] is written only by its own worker thread, with a
//! relaxed load and a relaxed store (no locked read-modify-write on the request path),
//! and read by the admin thread (scrapes) and by the shutdown report with relaxed loads.
//! A reader may see one counter a few increments behind another; each value on its own
//! is exact and never goes backwards. The struct is aligned to 128 bytes (two cache lines:
//! the adjacent-line prefetcher pairs them) so no two workers ever write the same line.
//! Labelled families are fixed arrays indexed by enums: nothing here allocates, hashes
//! or locks. Must never be written from a thread other than its worker's.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::kx::KX_GROUPS;
use crate::error::Kind;
pub use crate::policy::Rejection as PolicyRejection;
pub use crate::transport::HandshakeFailure;
use crate::transport::ktls::Fallback;
use crate::transport::tls::Rejection;

/// A monotonic counter with one writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`: a plain load and store, correct because only the owning worker writes.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A gauge with one writer (connections open on this worker, listeners accepting).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_add(1), Relaxed);
    }

    #[inline]
    pub fn dec(&self) {
        self.0
            .store(self.0.load(Relaxed).saturating_sub(1), Relaxed);
    }

    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`), 100 µs to 10 s:
/// a TLS handshake on loopback is ~1 ms, a proxied small request ~100 µs, a slow
/// upstream seconds. `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// [`LATENCY_BUCKETS`] in nanoseconds, for the comparison on the request path.
const BUCKET_NANOS: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// A latency histogram with fixed buckets (non-cumulative counts; the last is `+Inf`)
/// and the sum in nanoseconds. The count is the sum of the buckets, so a scrape always
/// sees `_count` equal to the `+Inf` bucket.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; LATENCY_BUCKETS.len() + 1],
    sum_nanos: Counter,
}

impl Histogram {
    #[inline]
    pub fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NANOS.partition_point(|&b| b < nanos);
        self.buckets[i].inc();
        self.sum_nanos.add(nanos);
    }

    /// Adds this histogram's buckets into `into` (for merging workers).
    pub fn merge_into(&self, into: &mut HistogramSnapshot) {
        for (acc, b) in into.buckets.iter_mut().zip(&self.buckets) {
            *acc += b.get();
        }
        into.sum_nanos += self.sum_nanos.get();
    }
}

/// Histogram values summed over workers.
#[derive(Debug, Default, Clone)]
pub struct HistogramSnapshot {
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The TLS version × cipher suites rustls negotiates (labels `version`, `suite`), and
/// `Other` for anything else a future rustls may add.
pub const TLS_SUITES: [(rustls::CipherSuite, &str, &str); 9] = {
    use rustls::CipherSuite as C;
    [
        (
            C::TLS13_AES_128_GCM_SHA256,
            "1.3",
            "TLS13_AES_128_GCM_SHA256",
        ),
        (
            C::TLS13_AES_256_GCM_SHA384,
            "1.3",
            "TLS13_AES_256_GCM_SHA384",
        ),
        (
            C::TLS13_CHACHA20_POLY1305_SHA256,
            "1.3",
            "TLS13_CHACHA20_POLY1305_SHA256",
        ),
        (
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "1.2",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        (
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "1.2",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "1.2",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            "1.2",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ]
};

/// Index into [`TLS_SUITES`], or `TLS_SUITES.len()` for a suite not listed.
pub fn suite_index(suite: rustls::CipherSuite) -> usize {
    TLS_SUITES
        .iter()
        .position(|(s, _, _)| *s == suite)
        .unwrap_or(TLS_SUITES.len())
}

/// Values of the `group` label: each of [`KX_GROUPS`], then `other`, then `none`.
pub const KX_GROUP_LABELS: usize = KX_GROUPS.len() + 2;

/// Status classes of requests (`class` label): 1xx–5xx, `other` for an upstream's
/// 600–999, and `none` for requests that got no response (the client went away, or the
/// connection had to close before a head could be sent).
pub const STATUS_CLASSES: [&str; 7] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The [`STATUS_CLASSES`] index of a status (0: none sent).
#[inline]
pub fn status_class(status: u16) -> usize {
    match status {
        0 => 0,
        100..=599 => (status / 100) as usize,
        _ => 6,
    }
}

/// Upstream failure kinds (`kind` label), from the request-path error [`Kind`].
pub const UPSTREAM_ERROR_KINDS: [&str; 6] = [
    "connect_failed",
    "connect_timeout",
    "closed",
    "timeout",
    "protocol",
    "other",
];

/// The [`UPSTREAM_ERROR_KINDS`] index of an upstream-side error.
pub fn upstream_error_index(kind: Kind) -> usize {
    match kind {
        Kind::ConnectFailed => 0,
        Kind::ConnectTimeout => 1,
        Kind::UpstreamClosed => 2,
        Kind::UpstreamTimeout => 3,
        Kind::UpstreamProtocol => 4,
        _ => 5,
    }
}

/// Why an HTTP/2 connection got GOAWAY or a stream a reset from the proxy
/// (`ringgate_h2_protocol_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum H2Error {
    /// Too many streams reset by the client, or by the server for a malformed frame
    /// (rapid reset, MadeYouReset): GOAWAY ENHANCE_YOUR_CALM.
    ResetFlood,
    /// Too many PING/SETTINGS/PRIORITY/RST_STREAM/empty DATA frames per second.
    ControlFlood,
    /// Too many WINDOW_UPDATE frames per second.
    WindowUpdateFlood,
    /// A new stream while `max_concurrent_streams` streams (reset ones whose upstream
    /// work has not stopped included) are at work: REFUSED_STREAM.
    StreamRefused,
    /// A request head RFC 9113 §8 refuses, beyond what h2 checks (PROTOCOL_ERROR reset).
    MalformedRequest,
    /// The client kept a stream's window shut beyond `send_timeout_ms`: reset.
    ZeroWindow,
    /// h2's own budgets ended the connection with ENHANCE_YOUR_CALM: resets before
    /// accept (`max_pending_accept_reset_streams`), local error resets
    /// (`max_local_error_reset_streams`), empty DATA frames, CONTINUATION frames.
    H2Budget,
    /// Any other connection error h2 reported (a malformed frame, a header list over
    /// `max_header_list_size`, h2's own reset and CONTINUATION budgets).
    Protocol,
}

impl H2Error {
    pub const ALL: [H2Error; 8] = [
        H2Error::ResetFlood,
        H2Error::ControlFlood,
        H2Error::WindowUpdateFlood,
        H2Error::StreamRefused,
        H2Error::MalformedRequest,
        H2Error::ZeroWindow,
        H2Error::H2Budget,
        H2Error::Protocol,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            H2Error::ResetFlood => "reset_flood",
            H2Error::ControlFlood => "control_frame_flood",
            H2Error::WindowUpdateFlood => "window_update_flood",
            H2Error::StreamRefused => "stream_refused",
            H2Error::MalformedRequest => "malformed_request",
            H2Error::ZeroWindow => "zero_window",
            H2Error::H2Budget => "h2_budget",
            H2Error::Protocol => "protocol_error",
        }
    }
}

/// Every counter, gauge and histogram of one worker. Written only by that worker.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerMetrics {
    /// Connections accepted (and served).
    pub accepted: Counter,
    /// Closed at once because `max_connections_per_worker` was reached.
    pub refused: Counter,
    /// Connections open now.
    pub active: Gauge,
    /// Requests and connections refused by a gateway policy, by [`PolicyRejection`].
    pub policy_rejections: [Counter; PolicyRejection::ALL.len()],
    /// Requests a rate limit admitted after a delay.
    pub rate_limit_delayed: Counter,
    /// HTTP/2 connections and streams ended for a protocol error or a flood budget, by
    /// [`H2Error`].
    pub h2_protocol_errors: [Counter; H2Error::ALL.len()],
    /// HTTP/2 connections served (after the preface).
    pub h2_connections: Counter,
    /// HTTP/2 streams served.
    pub h2_streams: Counter,
    /// Listening sockets whose accept loop is running (readiness).
    pub accepting: Gauge,
    /// Completed handshakes by [`TLS_SUITES`] index (+ other) and resumed (1) vs full (0).
    pub handshakes: [[Counter; 2]; TLS_SUITES.len() + 1],
    /// Completed handshakes by [`KX_GROUPS`] index, then other, then none (a TLS 1.2
    /// resumption exchanges no key).
    pub handshakes_by_group: [Counter; KX_GROUP_LABELS],
    /// Failed handshakes by [`HandshakeFailure`].
    pub handshake_failures: [Counter; HandshakeFailure::ALL.len()],
    /// Client certificates refused, by [`Rejection`] (also counted in
    /// `handshake_failures` as `certificate`).
    pub client_cert_rejections: [Counter; Rejection::ALL.len()],
    /// Duration of completed handshakes.
    pub handshake_duration: Histogram,
    /// Connections whose record layer moved into the kernel.
    pub ktls_offloaded: Counter,
    /// Connections that stayed in userspace TLS, by [`Fallback`] reason.
    pub ktls_fallback: [Counter; Fallback::ALL.len()],
    /// Connections closed because the switch failed midway.
    pub ktls_failed: Counter,
    /// Peer KeyUpdates the kernel took (new keys installed).
    pub ktls_rekeys: Counter,
    /// Peer KeyUpdates that closed the connection (kernels before 6.14 cannot re-key).
    pub ktls_keyupdate_closes: Counter,
    /// close_notify alerts read through the kTLS control-record path.
    pub ktls_close_notify: Counter,
    /// Requests by [`STATUS_CLASSES`] index.
    pub requests: [Counter; STATUS_CLASSES.len()],
    /// From a parsed request head to the end of its exchange.
    pub request_duration: Histogram,
    pub upstream_opened: Counter,
    pub upstream_reused: Counter,
    /// Idle upstream connections closed because bytes, a close or an error arrived.
    pub upstream_discarded: Counter,
    /// Upstream failures by [`UPSTREAM_ERROR_KINDS`] index.
    pub upstream_errors: [Counter; UPSTREAM_ERROR_KINDS.len()],
    /// Response bodies moved upstream → client with splice.
    pub spliced_bodies: Counter,
    /// Spare splice pipes kept for reuse (two descriptors each).
    pub splice_pipes_spare: Gauge,
    /// Connection tasks that panicked (a bug: each lost one connection).
    pub panics: Counter,
    /// Upgraded connections (WebSocket tunnels) open now.
    pub tunnels_active: Gauge,
    /// Tunnels ended, by [`TunnelEnd`].
    pub tunnels: [Counter; TunnelEnd::ALL.len()],
}

/// How a tunnel (an upgraded connection, [`crate::proxy`]) ended: the `outcome` label
/// of `ringgate_tunnels_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// The client closed first (its EOF, then the upstream's).
    ClosedClient,
    /// The upstream closed first.
    ClosedUpstream,
    /// No byte either way within `tunnel_idle_timeout_ms`.
    IdleTimeout,
    /// A read or write failed, or a write stalled beyond its timeout.
    Error,
}

impl TunnelEnd {
    pub const ALL: [TunnelEnd; 4] = [
        TunnelEnd::ClosedClient,
        TunnelEnd::ClosedUpstream,
        TunnelEnd::IdleTimeout,
        TunnelEnd::Error,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            TunnelEnd::ClosedClient => "closed_client",
            TunnelEnd::ClosedUpstream => "closed_upstream",
            TunnelEnd::IdleTimeout => "idle_timeout",
            TunnelEnd::Error => "error",
        }
    }
}

impl WorkerMetrics {
    /// Records a completed handshake.
    #[inline]
    pub fn handshake_ok(&self, suite: Option<rustls::CipherSuite>, resumed: bool, d: Duration) {
        let i = suite.map_or(TLS_SUITES.len(), suite_index);
        self.handshakes[i][resumed as usize].inc();
        self.handshake_duration.record(d);
    }

    /// Counts a completed handshake by its key-exchange group (`TlsInfo::kx_group`).
    #[inline]
    pub fn handshake_group(&self, group: Option<&str>) {
        let i = match group {
            Some(name) => KX_GROUPS
                .iter()
                .position(|g| g.name == name)
                .unwrap_or(KX_GROUPS.len()),
            None => KX_GROUPS.len() + 1,
        };
        self.handshakes_by_group[i].inc();
    }

    /// The `group` label of [`Self::handshakes_by_group`]`[i]`.
    pub fn group_label(i: usize) -> &'static str {
        match KX_GROUPS.get(i) {
            Some(g) => g.name,
            None if i == KX_GROUPS.len() => "other",
            None => "none",
        }
    }

    /// Records a finished request (`status` 0: no response was sent).
    #[inline]
    pub fn request_done(&self, status: u16, d: Duration) {
        self.requests[status_class(status)].inc();
        self.request_duration.record(d);
    }

    #[inline]
    pub fn policy_rejection(&self, r: PolicyRejection) {
        self.policy_rejections[r.index()].inc();
    }

    #[inline]
    pub fn upstream_error(&self, kind: Kind) {
        self.upstream_errors[upstream_error_index(kind)].inc();
    }

    /// Requests of every class (the shutdown report's `requests`).
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().map(Counter::get).sum()
    }

    pub fn handshake_failures_total(&self) -> u64 {
        self.handshake_failures.iter().map(Counter::get).sum()
    }

    pub fn upstream_errors_total(&self) -> u64 {
        self.upstream_errors.iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.record(Duration::from_micros(100)); // le=0.0001 (inclusive)
        h.record(Duration::from_micros(101)); // le=0.00025
        h.record(Duration::from_secs(11)); // +Inf
        let mut s = HistogramSnapshot::default();
        h.merge_into(&mut s);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[LATENCY_BUCKETS.len()], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_nanos, 100_000 + 101_000 + 11_000_000_000);
    }

    #[test]
    fn status_classes() {
        assert_eq!(STATUS_CLASSES[status_class(101)], "1xx");
        assert_eq!(STATUS_CLASSES[status_class(204)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(599)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(0)], "none");
        assert_eq!(STATUS_CLASSES[status_class(999)], "other");
    }

    #[test]
    fn workers_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
        assert_eq!(std::mem::size_of::<WorkerMetrics>() % 128, 0);
    }
}
