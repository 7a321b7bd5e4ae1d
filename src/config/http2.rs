//! `[http2]`: the HTTP/2 session's limits and flood budgets ([`crate::http2`]), and the
//! listener keys that turn HTTP/2 on (`alpn`, `h2c`). Raw serde shape and its check in
//! one place, so the 1,000-line validator does not grow.
//!
//! Each budget is counted in `ringgate_h2_protocol_errors_total{reason}` when it is hit.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// `[http2]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; a
    /// stream the client reset still counts until its upstream work stopped). nginx:
    /// `http2_max_concurrent_streams`; Envoy: `max_concurrent_streams`.
    pub max_concurrent_streams: Option<Spanned<i64>>,
    /// Streams served on one connection before GOAWAY (nginx: `keepalive_requests`,
    /// formerly `http2_max_requests`; Envoy: `max_requests_per_connection`).
    pub max_requests_per_connection: Option<Spanned<i64>>,
    /// Decoded request header list (HPACK bombs, CONTINUATION floods): default
    /// `[http] max_header_bytes`. Envoy: `max_request_headers_kb`.
    pub max_header_list_size: Option<Spanned<i64>>,
    /// The window each request stream starts with: the request body bytes buffered per
    /// stream at most. Envoy: `initial_stream_window_size`.
    pub initial_stream_window_size: Option<Spanned<i64>>,
    /// The connection's receive window. Envoy: `initial_connection_window_size`.
    pub initial_connection_window_size: Option<Spanned<i64>>,
    /// Streams the client may reset (RST_STREAM), or the server may reset for a
    /// malformed frame (MadeYouReset), per second before GOAWAY ENHANCE_YOUR_CALM.
    pub max_reset_streams_per_second: Option<Spanned<i64>>,
    /// Streams reset before they were accepted (h2's
    /// `max_pending_accept_reset_streams`, the rapid-reset guard).
    pub max_pending_accept_reset_streams: Option<Spanned<i64>>,
    /// Streams the server reset because of a client's protocol error, per connection
    /// (h2's `max_local_error_reset_streams`, the MadeYouReset guard).
    pub max_local_error_reset_streams: Option<Spanned<i64>>,
    /// PING, SETTINGS, PRIORITY, RST_STREAM and empty DATA frames per second before
    /// GOAWAY ENHANCE_YOUR_CALM. Envoy: `max_outbound_control_frames`,
    /// `max_consecutive_inbound_frames_with_empty_payload`,
    /// `max_inbound_priority_frames_per_stream`.
    pub max_control_frames_per_second: Option<Spanned<i64>>,
    /// WINDOW_UPDATE frames per second before GOAWAY ENHANCE_YOUR_CALM. Envoy:
    /// `max_inbound_window_update_frames_per_data_frame_sent`.
    pub max_window_update_frames_per_second: Option<Spanned<i64>>,
    /// A connection with no open stream closes (GOAWAY) after this long; default
    /// `[http] keepalive_timeout_ms`. nginx: `keepalive_timeout` (formerly
    /// `http2_idle_timeout`); Envoy: `idle_timeout`.
    pub idle_timeout_ms: Option<Spanned<i64>>,
}

/// `[http2]`, checked. Per-stream reads and writes use `[http]`'s `client_body_timeout_ms`
/// and `send_timeout_ms` (a stream whose client keeps its window at zero is reset after
/// `send_timeout_ms`); the preface and first request must come within
/// `client_header_timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    pub max_requests_per_connection: u64,
    pub max_header_list_size: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_reset_streams_per_second: u32,
    pub max_pending_accept_reset_streams: usize,
    pub max_local_error_reset_streams: usize,
    pub max_control_frames_per_second: u32,
    pub max_window_update_frames_per_second: u32,
    pub idle_timeout: Duration,
}

impl Http2Settings {
    /// The defaults, with `[http]`'s head limit and keep-alive timeout.
    pub fn defaults(max_header_bytes: usize, keepalive_timeout: Duration) -> Http2Settings {
        Http2Settings {
            max_concurrent_streams: 128,
            max_requests_per_connection: 1000,
            max_header_list_size: u32::try_from(max_header_bytes).unwrap_or(u32::MAX),
            // 256 KiB per stream, 1 MiB per connection: a fast upload is not held to one
            // round trip per 64 KiB (the protocol's default), and one connection buffers
            // at most 1 MiB of request bodies.
            initial_stream_window_size: 256 * 1024,
            initial_connection_window_size: 1024 * 1024,
            max_reset_streams_per_second: 100,
            // h2's own defaults.
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            // A browser sends a handful of SETTINGS/PRIORITY frames, a gRPC client a few
            // PINGs a second: 200 leaves room for both, a flood sends thousands.
            max_control_frames_per_second: 200,
            // A client acknowledges about every half window: 10,000 a second is over
            // 600 MB/s at a 128 KiB window.
            max_window_update_frames_per_second: 10_000,
            idle_timeout: keepalive_timeout,
        }
    }
}

/// The ALPN protocols a TLS listener offers when `alpn` is not written: HTTP/2
/// preferred.
pub const DEFAULT_ALPN: [&str; 2] = ["h2", "http/1.1"];

/// The protocol names `alpn` accepts.
pub const KNOWN_ALPN: [&str; 3] = ["h2", "http/1.1", "http/1.0"];
