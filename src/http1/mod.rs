//! ④ HTTP/1.1 messages without I/O: [`parse`] reads heads, [`body`] decodes and encodes
//! chunked bodies, [`write`] serialises heads for the other side.
//!
//! Everything here works on byte buffers and returns values (`Complete`, `Incomplete`,
//! `Invalid` with a status); sockets, timeouts and decisions live in [`crate::proxy`].

pub mod body;
pub mod parse;
pub mod server;
pub mod write;
