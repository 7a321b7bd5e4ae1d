//! Zero-copy response bodies: upstream socket → pipe → client socket with io_uring
//! splice, for Content-Length bodies of at least `splice_threshold_bytes` when the client
//! side carries bytes as they are (plain TCP, or kernel TLS after the switch — the kernel
//! encrypts on the way out). The bytes never enter userspace. Request bodies are copied:
//! they flow while the response is read (full duplex, [`super::duplex`]), which a
//! blocking socket-to-socket splice cannot do.
//!
//! Timeouts are the same as on the copying path: the upstream side by its read timeout,
//! the client side by `send_timeout_ms`. A pipe that
//! ends an exchange empty goes back to the worker's pool ([`crate::context::PipePool`]:
//! capped and trimmed when idle); after an error it is dropped, because it may still
//! hold bytes.

use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::net::{Pipe, TcpStream};
use std::time::Duration;

use crate::config::HttpSettings;
use crate::context::WorkerCtx;
use crate::error::{Kind, ProxyError, Side};
use crate::upstream::Lease;

/// Bytes moved per splice: the default pipe capacity (16 pages).
const PIPE_CHUNK: u64 = 64 * 1024;

/// Whether a body of `len` bytes should travel by splice (when the sink's socket
/// allows).
pub(super) fn wanted(http: &HttpSettings, len: u64) -> bool {
    let threshold = http.splice_threshold_bytes;
    threshold > 0 && len >= threshold
}

fn take_pipe(ctx: &WorkerCtx) -> Result<(Pipe, Pipe), ProxyError> {
    if let Some(p) = ctx.pipes.take() {
        return Ok(p);
    }
    monoio::net::unix::new_pipe().map_err(|e| {
        ProxyError::io(
            Side::Internal,
            Kind::UpstreamClosed,
            "cannot create a pipe",
            e,
        )
    })
}

/// Moves `remaining` response body bytes from the upstream to the client's socket,
/// which takes each write within `send_timeout`.
pub(super) async fn to_client(
    ctx: &WorkerCtx,
    send_timeout: Duration,
    lease: &mut Lease,
    client: &mut TcpStream,
    remaining: u64,
) -> Result<(), ProxyError> {
    let timeouts = (lease.upstream().read_timeout, send_timeout);
    let mut pipe = take_pipe(ctx)?;
    let Some(upstream) = lease.stream.tcp() else {
        return Err(ProxyError::new(
            Side::Internal,
            Kind::UpstreamClosed,
            "upstream stream is split (request body still flowing)",
        ));
    };
    pump(upstream, client, &mut pipe, remaining, timeouts).await?;
    ctx.pipes.put(pipe);
    ctx.metrics.spliced_bodies.inc();
    Ok(())
}

/// Splices exactly `remaining` bytes from the upstream `src` to the client `dst`.
async fn pump(
    src: &mut TcpStream,
    dst: &mut TcpStream,
    pipe: &mut (Pipe, Pipe),
    mut remaining: u64,
    (src_timeout, dst_timeout): (Duration, Duration),
) -> Result<(), ProxyError> {
    while remaining > 0 {
        let chunk = remaining.min(PIPE_CHUNK) as u32;
        let read = monoio::time::timeout(src_timeout, src.splice_to_pipe(&mut pipe.1, chunk));
        let n = ProxyError::timed(read.await, UPSTREAM_FAILED, UPSTREAM_STALLED)?;
        if n == 0 {
            return Err(UPSTREAM_CLOSED);
        }
        let mut out = 0;
        while out < n {
            let write =
                monoio::time::timeout(dst_timeout, dst.splice_from_pipe(&mut pipe.0, n - out));
            match ProxyError::timed(write.await, CLIENT_FAILED, CLIENT_STALLED)? {
                0 => return Err(CLIENT_CLOSED),
                m => out += m,
            }
        }
        remaining -= u64::from(n);
    }
    Ok(())
}

const UPSTREAM_FAILED: ProxyError =
    ProxyError::new(Side::Upstream, Kind::UpstreamClosed, "splice read failed");
const UPSTREAM_STALLED: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamTimeout,
    "upstream stalled (splice)",
);
const UPSTREAM_CLOSED: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamClosed,
    "closed mid-body (splice)",
);
const CLIENT_FAILED: ProxyError =
    ProxyError::new(Side::Downstream, Kind::ClientGone, "splice write failed");
const CLIENT_STALLED: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientTimeout,
    "client stalled (splice)",
);
const CLIENT_CLOSED: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::ClientGone,
    "closed while receiving (splice)",
);
