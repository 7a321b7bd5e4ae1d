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
//! client ─TCP─▶ ① accept      runtime (accept loop, conn.rs), listener  (SO_REUSEPORT, caps, EMFILE backoff)
//!              ② transport   transport, transport::tls             (plain | rustls | kernel stream; one TLS
//!                                                                    driver, server and client role; TlsInfo;
//!                                                                    client certificates, per-SNI configs)
//!              ③ kernel TLS  transport::ktls                       (secrets → TLS_TX/RX, control records, re-keys)
//!              ④ session     http1::server (http1::parse/body/write: no I/O)
//!                                                                   (heads, body framing, 100-continue,
//!                                                                    keep-alive, pipelining, linger)
//!              ⑤ exchange    proxy::exchange                       (message::Request in → BodySource /
//!                                                                    ResponseSink → Outcome; duplex, splice)
//!                            uri, forwarding                       (the path normalised before routing;
//!                                                                    client forwarding fields judged)
//!              ⑥ policy      policy                                (ordered phases, each Continue or Respond:
//!                                                                    redirect_https, client_cert, body_size);
//!                            identity_headers                      (the client's verified certificate as
//!                                                                    X-SSL-Client-* / XFCC; claims removed)
//!              ⑦ route       route                                 (Host + longest prefix)
//!              ⑧ upstream    upstream (pools, balance), upstream::h1 (the upstream's HTTP/1.1 wire)
//!              ⑨ observe     observe                               (per-worker metrics, admin listener)
//! ```
//!
//! Modules depend downwards only: `runtime` → `http1::server` → `proxy` → `upstream`,
//! `route` → `transport`, `message`, `context`, `generation`, `config`, `observe`; the
//! HTTP/1 codec (`http1::{parse, body, write}`) is a leaf both the session and
//! `upstream::h1` use. [`message`] is what the exchange speaks — no HTTP version, no
//! chunked coding, no connection buffer — so an HTTP/2 stream or a tunnel can drive the
//! same [`proxy::exchange`]. [`context::WorkerCtx`] is what every task on a worker can
//! reach (the live generation, pools, counters, drain signal). [`clock`] is a leaf below
//! all of them: the instant the current connection-task poll began, and the one timer
//! entry a connection re-arms for each timed step.
//!
//! [`config`] turns a TOML file into a checked, immutable [`config::Config`] (files read,
//! certificates parsed, names resolved) on the main thread; [`server::Server::start`]
//! binds the sockets and starts the [`runtime`] workers, which share nothing else but the
//! [`generation`]: the current configuration (config, router, TLS configs) behind an
//! atomically swapped pointer, loaded once per exchange and replaced by a reload
//! (SIGHUP, `ringgate reload`, a changed certificate file) built on a helper thread.
//! [`transport`] owns every byte stream (client and upstream; plain, rustls or kernel TLS)
//! and never parses HTTP. [`error`] is the one error type of the request path and the one
//! place a failure becomes a status. [`demo`] is the embedded zero-config setup behind
//! `ringgate demo`. [`instance`] keeps a second process off this one's addresses and
//! `pid_file`; [`control`] is `ringgate reload`, talking to the running one. [`signals`] says what each signal an operator may send means;
//! [`logging`] keeps log writes off the workers (one writer thread, dropped lines
//! counted) and peer-triggered library messages at debug. [`observe`] holds every counter
//! and histogram (per worker, single writer, summed on read) and the admin listener
//! serving `/metrics`, `/healthz` and `/readyz`. [`version`] is what `ringgate --version`
//! prints (commit, rustls, this kernel's TLS support).

#![deny(unsafe_code)]

pub mod alloc;
pub mod clock;
pub mod config;
pub mod context;
pub mod control;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod forwarding;
pub mod generation;
pub mod http1;
pub mod identity_headers;
pub mod instance;
pub mod listener;
pub mod logging;
pub mod message;
pub mod observe;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod server;
pub mod signals;
pub mod transport;
pub mod upstream;
pub mod uri;
pub mod version;
