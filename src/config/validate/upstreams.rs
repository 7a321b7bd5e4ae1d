//! An `[upstream.NAME]` table checked: its servers (names resolved here, at load), TLS to
//! the upstream, timeouts, pool and retry settings.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::addr::resolve;
use crate::config::raw::{RawUpstream, RawUpstreamTls};
use crate::config::upstream_tls::{self, UpstreamTls};
use crate::config::{Balance, ResponseLimits, UpstreamConfig, UpstreamProtocol, UpstreamServer};

impl Validator<'_> {
    pub(super) fn upstream(
        &mut self,
        name: &str,
        u: &Spanned<RawUpstream>,
    ) -> Option<UpstreamConfig> {
        let raw = u.get_ref();
        let field = format!("upstream.{}", super::schema::key(name));
        let errors_before = self.errors.len();
        let no_servers = Vec::new();
        let listed = match self.required(&raw.servers, u.span(), &format!("{field}.servers")) {
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    Some(list.span()),
                    &format!("{field}.servers"),
                    "at least one server is needed",
                );
                list.get_ref()
            }
            Some(list) => list.get_ref(),
            None => &no_servers,
        };
        let mut servers = Vec::new();
        for (i, s) in listed.iter().enumerate() {
            match resolve(s.get_ref()) {
                Ok(addr) => servers.push(UpstreamServer {
                    name: s.get_ref().clone(),
                    addr,
                    host_header: s.get_ref().clone(),
                    tls_name: None,
                }),
                Err(e) => self.error(Some(s.span()), &format!("{field}.servers[{i}]"), e),
            }
        }
        let balance = match &raw.balance {
            None => Balance::RoundRobin,
            Some(b) => match b.get_ref().as_str() {
                "round_robin" => Balance::RoundRobin,
                "least_conn" => Balance::LeastConn,
                other => {
                    let msg =
                        format!("unknown balance {other:?}: \"round_robin\" or \"least_conn\"");
                    self.error(Some(b.span()), &format!("{field}.balance"), msg);
                    Balance::RoundRobin
                }
            },
        };
        let protocol = match &raw.protocol {
            None => UpstreamProtocol::Http1,
            Some(p) => match p.get_ref().as_str() {
                "http1" => UpstreamProtocol::Http1,
                "h2" => UpstreamProtocol::H2,
                other => {
                    let msg = format!("unknown protocol {other:?}: \"http1\" or \"h2\"");
                    self.error(Some(p.span()), &format!("{field}.protocol"), msg);
                    UpstreamProtocol::Http1
                }
            },
        };
        let tls = raw.tls.as_ref().and_then(|t| {
            self.upstream_tls(t, &format!("{field}.tls"), protocol, listed, &mut servers)
        });
        let uc = UpstreamConfig {
            name: name.to_string(),
            tls,
            protocol,
            max_concurrent_streams: self.int(
                &raw.max_concurrent_streams,
                &format!("{field}.max_concurrent_streams"),
                100,
                1..=1 << 31,
            ) as usize,
            servers,
            balance,
            connect_timeout: self.millis(
                &raw.connect_timeout_ms,
                &format!("{field}.connect_timeout_ms"),
                Duration::from_secs(5),
            ),
            read_timeout: self.millis(
                &raw.read_timeout_ms,
                &format!("{field}.read_timeout_ms"),
                Duration::from_secs(60),
            ),
            write_timeout: self.millis(
                &raw.write_timeout_ms,
                &format!("{field}.write_timeout_ms"),
                Duration::from_secs(60),
            ),
            keepalive: self.int(
                &raw.keepalive,
                &format!("{field}.keepalive"),
                64,
                0..=100_000,
            ) as usize,
            keepalive_timeout: self.millis(
                &raw.keepalive_timeout_ms,
                &format!("{field}.keepalive_timeout_ms"),
                Duration::from_secs(60),
            ),
            keepalive_requests: self.int(
                &raw.keepalive_requests,
                &format!("{field}.keepalive_requests"),
                1000,
                1..=i64::MAX,
            ) as u64,
            response_limits: ResponseLimits {
                max_head_bytes: self.int(
                    &raw.max_response_header_bytes,
                    &format!("{field}.max_response_header_bytes"),
                    64 * 1024,
                    256..=1 << 24,
                ) as usize,
                max_headers: self.int(
                    &raw.max_response_headers,
                    &format!("{field}.max_response_headers"),
                    4096,
                    1..=65_536,
                ) as usize,
            },
        };
        (self.errors.len() == errors_before).then_some(uc)
    }

    /// `[upstream.NAME.tls]`: the client configuration, and each server's TLS name
    /// (`server_name`, or its host as written in `servers`).
    fn upstream_tls(
        &mut self,
        t: &Spanned<RawUpstreamTls>,
        field: &str,
        protocol: UpstreamProtocol,
        listed: &[Spanned<String>],
        servers: &mut [UpstreamServer],
    ) -> Option<Arc<UpstreamTls>> {
        let raw = t.get_ref();
        if protocol != UpstreamProtocol::H2 {
            self.error(
                Some(t.span()),
                field,
                "TLS to upstreams is spoken with protocol = \"h2\" only (HTTP/2 with ALPN h2, \
                 gRPC over TLS); HTTP/1.1 upstreams are reached in plain TCP",
            );
            return None;
        }
        let (roots, anchors) = match &raw.ca {
            Some(p) => {
                let path = self.path(p.get_ref());
                match upstream_tls::roots_from_file(&path) {
                    Ok(r) => (r, path.display().to_string()),
                    Err(msg) => {
                        self.error(Some(p.span()), &format!("{field}.ca"), msg);
                        return None;
                    }
                }
            }
            None => match upstream_tls::system_roots() {
                Ok(r) => (r, "the system's trust anchors".to_string()),
                Err(msg) => {
                    self.error(Some(t.span()), &format!("{field}.ca"), msg);
                    return None;
                }
            },
        };
        let server_name = match &raw.server_name {
            Some(n) => match upstream_tls::server_name(n.get_ref()) {
                Ok(name) => Some(name),
                Err(msg) => {
                    self.error(Some(n.span()), &format!("{field}.server_name"), msg);
                    return None;
                }
            },
            None => None,
        };
        // Each server resolved (else the upstream is refused already): `servers[i]` is
        // `listed[i]`.
        let mut ok = servers.len() == listed.len();
        for (server, (i, written)) in servers.iter_mut().zip(listed.iter().enumerate()) {
            let name = match &server_name {
                Some(n) => Ok(n.clone()),
                None => upstream_tls::server_name(host_of(written.get_ref())),
            };
            match name {
                Ok(n) => server.tls_name = Some(n),
                Err(msg) => {
                    let msg = format!(
                        "{msg}: no name to verify its certificate against (set {field}.server_name)"
                    );
                    self.error(Some(written.span()), &format!("{field}.servers[{i}]"), msg);
                    ok = false;
                }
            }
        }
        let client = match upstream_tls::client_config(roots) {
            Ok(c) => c,
            Err(msg) => {
                self.error(Some(t.span()), field, msg);
                return None;
            }
        };
        ok.then(|| {
            Arc::new(UpstreamTls {
                client: Arc::new(client),
                anchors,
            })
        })
    }
}

/// The host of a `servers` entry: without its `:port`, an IPv6 address without its
/// brackets.
fn host_of(server: &str) -> &str {
    let host = match server.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => server,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}
