//! # ringgate
//!
//! An edge HTTPS reverse proxy and API gateway for dedicated Linux hosts: it terminates
//! TLS for the APIs behind it and forwards HTTP/1.1 to keep-alive upstream pools, on
//! shared-nothing workers — one thread per core, pinned, each with its own monoio
//! (io_uring) runtime and its own SO_REUSEPORT socket.
//!
//! ## Data path, and who owns each step
//!
//! ```text
//! client ─TCP─▶ ① accept         worker::accept_loop, listener   (SO_REUSEPORT, caps, EMFILE backoff)
//!              ② TLS handshake   transport, transport::tls      (rustls, server + client role; TlsInfo)
//!              ③ kernel TLS      transport::ktls                (secrets → TLS_TX/RX, control records, re-keys)
//!              ④ HTTP/1 parse    http1::parse / body            (no I/O; strict framing)
//!              ⑤ policy          (to come: rate limits, auth)
//!              ⑥ route           route                          (Host + longest prefix)
//!              ⑦ upstream        upstream                       (per-worker pools, idle checks, balance)
//!              ⑧ response        proxy                          (both bodies at once: full duplex; splice)
//! ```
//!
//! [`config`] turns a TOML file into a checked, immutable [`config::Config`] (files read,
//! certificates parsed, names resolved) on the main thread; [`server::Server::start`]
//! binds the sockets and starts the [`worker`]s, which share nothing else but the
//! [`generation`]: the current configuration (config, router, TLS configs) behind an
//! atomically swapped pointer, loaded once per exchange and replaced by a reload
//! (SIGHUP, `ringgate reload`, a changed certificate file) built on a helper thread.
//! [`transport`] owns every byte stream (client and upstream; plain, rustls or kernel TLS)
//! and never parses HTTP. [`demo`] is the embedded zero-config setup behind `ringgate
//! demo`. [`signals`] says what each signal an operator may send means; [`logging`] keeps
//! log writes off the workers (one writer thread, dropped lines counted) and
//! peer-triggered library messages at debug.
//! [`observe`] holds every counter and histogram (per worker, single writer, summed on
//! read) and the admin listener serving `/metrics`, `/healthz` and `/readyz`.

#![deny(unsafe_code)]

pub mod alloc;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod generation;
pub mod http1;
pub mod listener;
pub mod logging;
pub mod observe;
pub mod proxy;
pub mod route;
pub mod server;
pub mod signals;
pub mod transport;
pub mod upstream;
pub mod worker;
