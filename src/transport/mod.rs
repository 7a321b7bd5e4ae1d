//! ②③ Transport: the byte streams on a worker — the client's (plain TCP, rustls in
//! userspace, or kernel TLS after the switch) and the upstream's.
//!
//! Its one responsibility is bytes in and out: reads append plaintext to a caller's
//! `BytesMut`, writes take `Bytes`; TLS records are encrypted and decrypted here (②, the
//! rustls handshake and record layer) or by the kernel once the secrets moved there (③,
//! [`ktls`]). It never parses HTTP and never picks a status code: failures are
//! `io::Error`s (or a [`HandshakeError`]) for the proxy to map.
//!
//! - `stream`: [`Stream`], one enum of plain | rustls | kernel | sealed, for either TLS role
//!   ([`ClientStream`]: we are the server; [`UpstreamTlsStream`]: we are the client).
//! - [`accept`]: a client connection's TLS setup (timeout-bounded handshake, [`TlsInfo`],
//!   metrics, the kTLS switch with its fallback).
//! - `events`: [`TlsEvents`], what the transport reports for the metrics to count (the
//!   worker's metrics implement it: the transport names no counter).
//! - `driver`: the rustls unbuffered driver, one code path for both roles ([`Role`]).
//! - `io`: the socket read all of them use, which a dropped future cannot corrupt.
//! - `kernel`: the stream after the switch to kernel TLS (control records, re-keys).
//! - `seal`: the stream after the switch to ringgate's own record layer, where the
//!   kernel cannot take it (records sealed and opened in place; rustls's key schedule).
//! - [`ktls`]: the kernel interface (probe, switch, control-record I/O).
//! - [`tls`]: rustls `ServerConfig` building, SNI, the handshake's facts ([`TlsInfo`]).
//! - [`upstream`]: an upstream connection's stream (plain TCP, whole or split).
//!
//!
//! Files depend downwards only (`tests/layering.rs` checks it): a file names only files
//! on lines below its own; `accept` and `upstream` use the re-exports at the top.
//!
//! ```text
//! accept upstream
//! stream
//! kernel
//! seal
//! events
//! ktls
//! driver
//! tls
//! io
//! ```
//!
//! [`TlsInfo`]: tls::TlsInfo

mod accept;
mod driver;
mod events;
mod io;
mod kernel;
pub mod ktls;
mod seal;
mod stream;
pub mod tls;
pub mod upstream;

pub use accept::{RecordLayers, accept};
pub use driver::{HandshakeError, Role};
pub use events::{HandshakeFailure, KtlsEvent, TlsEvents};
pub use io::{read_tcp, write_tcp};
pub use stream::{ClientStream, Offload, Stream, UpstreamTlsStream};
