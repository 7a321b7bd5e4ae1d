//! ⑥ Policies: checks that run on a routed request before it goes upstream, each saying
//! [`Verdict::Continue`] or refusing with a [`ProxyError`] whose kind the one status
//! mapping ([`ProxyError::status`]) turns into the answer. Policies read the request and
//! the connection's facts; they never do I/O and never choose a status number.
//!
//! Today: [`client_cert`] (a route's `[route.client_cert]` → 403). The gateway policy
//! issue turns these into ordered phases.

pub mod client_cert;
pub mod conn_limit;
pub mod cors;
pub mod headers;
pub mod ip;
pub mod rate_limit;

use crate::error::ProxyError;

/// What a policy decided.
#[derive(Debug)]
pub enum Verdict {
    /// Go on to the next step.
    Continue,
    /// Answer with this failure's status instead of proxying.
    Refuse(ProxyError),
}
