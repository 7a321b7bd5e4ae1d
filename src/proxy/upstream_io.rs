//! What the exchange's steps share: the upstream's timed reads and writes, their error
//! values, and the request body on its way upstream ([`Upload`]: its framing there, how
//! much went, and the route's body limit). [`super::exchange`], [`super::duplex`] and
//! [`super::splice`] depend on this module; it depends on none of them.
//!
//! Errors: an upstream read or write that fails is [`Kind::UpstreamClosed`] (502), one
//! over its timeout [`Kind::UpstreamTimeout`] (504); a streamed request body over the
//! route's `max_request_body_bytes` is [`Kind::BodyTooLarge`] (413).

use bytes::{Bytes, BytesMut};

use super::BodySource;
use crate::clock::Deadline;
use crate::error::{Kind, ProxyError, Side};
use crate::policy::body_size;
use crate::upstream::Lease;
use crate::upstream::h1::RequestFraming;

/// Upstream read size while streaming a body (two TLS records' worth).
pub(super) const BODY_READ: usize = 32 * 1024;

/// The request body on its way upstream: its framing there, and how much went.
#[derive(Default)]
pub(super) struct Upload {
    pub(super) framing: Option<RequestFraming>,
    /// The end of the body (a last chunk) is queued.
    ended: bool,
    /// Body bytes taken from the session.
    pub(super) bytes: u64,
    /// The route's body limit ([`body_size::limit`]; 0: none).
    pub(super) limit: u64,
}

impl Upload {
    /// Moves every body byte the session has into `out`, framed for the upstream, and
    /// the end of the body once the session has handed out the last byte. A body that
    /// grows over the limit is refused; the bytes that crossed it are not queued.
    pub(super) fn take<S: BodySource>(
        &mut self,
        session: &mut S,
        out: &mut BytesMut,
    ) -> Result<(), ProxyError> {
        let Some(framing) = self.framing else {
            return Ok(());
        };
        let (bytes, limit) = (&mut self.bytes, self.limit);
        let mut over = false;
        session.take(|data| {
            let seen = *bytes + data.len() as u64;
            over |= body_size::over(seen, limit);
            if !over {
                *bytes = seen;
                framing.push(out, data);
            }
        })?;
        if over {
            return Err(BODY_TOO_LARGE);
        }
        if session.is_done() && !self.ended {
            self.ended = true;
            framing.end(out);
        }
        Ok(())
    }
}

/// Reads from the upstream within `read_timeout_ms`. Resets count as closes.
pub(super) async fn upstream_read(
    lease: &mut Lease,
    buf: &mut BytesMut,
    want: usize,
    deadline: &mut Deadline,
) -> Result<usize, ProxyError> {
    let t = lease.upstream().read_timeout;
    let r = deadline.within(t, lease.stream.read(buf, want)).await;
    ProxyError::timed(r, READ_FAILED, READ_TIMED_OUT)
}

/// Writes to the upstream within `write_timeout_ms`.
pub(super) async fn upstream_write(
    lease: &mut Lease,
    data: Bytes,
    deadline: &mut Deadline,
) -> Result<(), ProxyError> {
    let t = lease.upstream().write_timeout;
    let r = deadline.within(t, lease.stream.write(data)).await;
    ProxyError::timed(r, WRITE_FAILED, WRITE_TIMED_OUT)
}

pub(super) const BODY_TOO_LARGE: ProxyError = ProxyError::new(
    Side::Downstream,
    Kind::BodyTooLarge,
    "request body larger than max_request_body_bytes",
);
pub(super) const READ_FAILED: ProxyError =
    ProxyError::new(Side::Upstream, Kind::UpstreamClosed, "upstream read failed");
pub(super) const READ_TIMED_OUT: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamTimeout,
    "upstream did not answer within read_timeout",
);
pub(super) const WRITE_FAILED: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamClosed,
    "upstream write failed",
);
pub(super) const WRITE_TIMED_OUT: ProxyError = ProxyError::new(
    Side::Upstream,
    Kind::UpstreamTimeout,
    "upstream did not read within write_timeout",
);
