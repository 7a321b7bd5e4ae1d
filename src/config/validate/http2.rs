//! `[http2]`, and a listener's `alpn` and `h2c` (the HTTP/2 session: [`crate::http2`]).

use toml::Spanned;

use super::Validator;
use crate::config::HttpSettings;
use crate::config::raw::RawListener;

impl Validator<'_> {
    /// `[http2]` (see [`super::http2`]).
    pub(super) fn http2(
        &mut self,
        h: &crate::config::http2::RawHttp2,
        http: &HttpSettings,
    ) -> crate::config::http2::Http2Settings {
        let d = crate::config::http2::Http2Settings::defaults(
            http.max_header_bytes,
            http.keepalive_timeout,
        );
        let window = 65_535..=(1i64 << 31) - 1;
        crate::config::http2::Http2Settings {
            max_concurrent_streams: self.int(
                &h.max_concurrent_streams,
                "http2.max_concurrent_streams",
                d.max_concurrent_streams.into(),
                1..=100_000,
            ) as u32,
            max_requests_per_connection: self.int(
                &h.max_requests_per_connection,
                "http2.max_requests_per_connection",
                d.max_requests_per_connection as i64,
                1..=i64::MAX,
            ) as u64,
            max_header_list_size: self.int(
                &h.max_header_list_size,
                "http2.max_header_list_size",
                d.max_header_list_size.into(),
                256..=1 << 24,
            ) as u32,
            initial_stream_window_size: self.int(
                &h.initial_stream_window_size,
                "http2.initial_stream_window_size",
                d.initial_stream_window_size.into(),
                window.clone(),
            ) as u32,
            initial_connection_window_size: self.int(
                &h.initial_connection_window_size,
                "http2.initial_connection_window_size",
                d.initial_connection_window_size.into(),
                window,
            ) as u32,
            max_reset_streams_per_second: self.int(
                &h.max_reset_streams_per_second,
                "http2.max_reset_streams_per_second",
                d.max_reset_streams_per_second.into(),
                1..=1_000_000,
            ) as u32,
            max_pending_accept_reset_streams: self.int(
                &h.max_pending_accept_reset_streams,
                "http2.max_pending_accept_reset_streams",
                d.max_pending_accept_reset_streams as i64,
                1..=1_000_000,
            ) as usize,
            max_local_error_reset_streams: self.int(
                &h.max_local_error_reset_streams,
                "http2.max_local_error_reset_streams",
                d.max_local_error_reset_streams as i64,
                1..=1_000_000,
            ) as usize,
            max_control_frames_per_second: self.int(
                &h.max_control_frames_per_second,
                "http2.max_control_frames_per_second",
                d.max_control_frames_per_second.into(),
                1..=10_000_000,
            ) as u32,
            max_window_update_frames_per_second: self.int(
                &h.max_window_update_frames_per_second,
                "http2.max_window_update_frames_per_second",
                d.max_window_update_frames_per_second.into(),
                1..=10_000_000,
            ) as u32,
            idle_timeout: self.millis(&h.idle_timeout_ms, "http2.idle_timeout_ms", d.idle_timeout),
        }
    }

    /// A TLS listener's `alpn` (default h2, then http/1.1).
    pub(super) fn alpn(
        &mut self,
        field: &str,
        value: &Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Vec<Vec<u8>> {
        use crate::config::http2::{DEFAULT_ALPN, KNOWN_ALPN};
        let Some(list) = value else {
            return DEFAULT_ALPN.iter().map(|p| p.as_bytes().to_vec()).collect();
        };
        if list.get_ref().is_empty() {
            self.error(
                Some(list.span()),
                &format!("{field}.alpn"),
                "at least one protocol is needed",
            );
        }
        let mut out: Vec<Vec<u8>> = Vec::new();
        for p in list.get_ref() {
            let name = p.get_ref().as_str();
            if !KNOWN_ALPN.contains(&name) {
                let msg = format!(
                    "unknown protocol {name:?} (known: {})",
                    KNOWN_ALPN.join(", ")
                );
                self.error(Some(p.span()), &format!("{field}.alpn"), msg);
            } else if out.iter().any(|o| o == name.as_bytes()) {
                let msg = format!("{name:?} is listed twice");
                self.error(Some(p.span()), &format!("{field}.alpn"), msg);
            } else {
                out.push(name.as_bytes().to_vec());
            }
        }
        out
    }

    /// A listener's `h2c` (plain listeners only).
    pub(super) fn h2c(&mut self, field: &str, l: &RawListener, tls: bool) -> bool {
        let Some(v) = &l.h2c else {
            return false;
        };
        if tls && *v.get_ref() {
            let msg = "h2c is for plain listeners (a TLS listener offers h2 through alpn)";
            self.error(Some(v.span()), &format!("{field}.h2c"), msg);
            return false;
        }
        *v.get_ref()
    }
}
