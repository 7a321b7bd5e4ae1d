//! Body size: a route's `max_request_body_bytes` (else `[http] max_request_body_bytes`;
//! 0 = unlimited). nginx: `client_max_body_size` in a `location`.
//!
//! A Content-Length over the limit is refused here, before a body byte is read
//! ([`Kind::BodyTooLarge`] → 413; the connection closes, as the body is never read). A
//! body of unknown length (chunked) is counted by the exchange as it streams, against
//! the same [`limit`]: the chunk that crosses it never reaches the upstream (→ 413, or
//! the connection closed once a response has started).

use super::{Rejection, Verdict};
use crate::config::{HttpSettings, RouteConfig};
use crate::error::Kind;
use crate::message::BodyLength;

/// The body limit on `route` (0: none).
#[inline]
pub fn limit(route: &RouteConfig, http: &HttpSettings) -> u64 {
    route
        .max_request_body_bytes
        .unwrap_or(http.max_request_body_bytes)
}

/// Refuses a declared length over `limit`.
#[inline]
pub fn check_declared(body: BodyLength, limit: u64) -> Verdict {
    match body {
        BodyLength::Known(n) if limit > 0 && n > limit => Verdict::refuse(
            Rejection::BodyDeclaredTooLarge,
            Kind::BodyTooLarge,
            "request body larger than allowed",
        ),
        _ => Verdict::Continue,
    }
}

/// Whether `seen` body bytes are over `limit` (a streamed body).
#[inline]
pub fn over(seen: u64, limit: u64) -> bool {
    limit > 0 && seen > limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_lengths_over_the_limit_are_413() {
        let refused = |body, limit| match check_declared(body, limit) {
            Verdict::Continue => None,
            Verdict::Respond(r, resp) => Some((r, resp.status)),
        };
        let too_large = Some((Rejection::BodyDeclaredTooLarge, 413));
        assert_eq!(refused(BodyLength::Known(11), 10), too_large);
        assert_eq!(refused(BodyLength::Known(10), 10), None);
        assert_eq!(
            refused(BodyLength::Known(u64::MAX), 0),
            None,
            "0: unlimited"
        );
        assert_eq!(
            refused(BodyLength::Unknown, 1),
            None,
            "counted as it streams"
        );
        assert!(over(11, 10) && !over(10, 10) && !over(u64::MAX, 0));
    }
}
