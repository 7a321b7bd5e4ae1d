//! ④ HTTP/1.1: the codec without I/O — [`parse`] reads heads, [`body`] decodes and
//! encodes chunked bodies, [`mod@write`] serialises heads for the other side — and the
//! session on top of it, [`server`], which owns the client connection's I/O.
//!
//! The codec works on byte buffers and returns values (`Complete`, `Incomplete`,
//! `Invalid` with a typed reason, never a status); it is a leaf that both the session
//! and the upstream side ([`crate::upstream::h1`]) use. Decisions about routes and
//! upstreams live in [`crate::proxy`], which knows no HTTP/1 type.

pub mod body;
pub mod parse;
pub mod server;
pub mod write;
