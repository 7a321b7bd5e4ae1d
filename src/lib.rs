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
//!                            runtime::admit, proxy_protocol, policy::ip (PROXY header → client address;
//!                                                                    IP allow/deny; before any TLS byte)
//!              ② transport   transport, transport::tls             (plain | rustls | kernel stream; one TLS
//!                                                                    driver, server and client role; TlsInfo;
//!                                                                    client certificates, per-SNI configs)
//!              ③ kernel TLS  transport::ktls                       (secrets → TLS_TX/RX, control records, re-keys)
//!              ④ session     http1::server (http1::parse/body/write: no I/O);
//!                            http2 (h2 over in-memory queues; streams, flood budgets)
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
//!              ⑧ upstream    upstream (pools, balance), upstream::h1 (the upstream's HTTP/1.1 wire), upstream::h2 (HTTP/2: multiplexed h2c pools, gRPC)
//!              ⑨ observe     observe                               (per-worker metrics, admin listener)
//! ```
//!
//! ## Layers
//!
//! Modules depend downwards only: a module names only modules on lines below its own
//! (`tests/layering.rs` checks every `crate::` path against this block). The HTTP/1
//! codec (`http1::{parse, body, write}`) is a leaf the session and `upstream::h1` both
//! use; the session (`http1::server`) sits above the exchange it drives. The transport
//! reports what it counts through a trait the metrics implement
//! (`transport::TlsEvents`), so `observe` sits above it; settings types live in
//! `config`, and the modules that act on them re-export them.
//!
//! ```text
//! server control demo doctor version  | the process: start, reload, the CLI commands
//! runtime                             | ① workers, accept loop, connection tasks
//! http1::server http2                 | ④ the HTTP/1.1 and HTTP/2 sessions
//! proxy                               | ⑤ the exchange
//! context                             | what every task on a worker reaches
//! upstream                            | ⑧ pools, balance, the upstream's HTTP/1.1 and HTTP/2
//! http1 observe                       | ④ the codec (no I/O); ⑨ metrics, admin, logs
//! forwarding                          | forwarding fields judged
//! generation                          | the live config, with the shared limiter tables
//! policy identity_headers             | ⑥ request steps after routing (and their state)
//! error                               | the one status mapping
//! route                               | ⑦ the routing table (host, path, methods, headers)
//! message                             | what the exchange speaks
//! transport                           | ②③ byte streams, TLS, kTLS
//! config                              | checked settings (types every layer reads)
//! uri listener instance signals profile logging clock alloc proxy_protocol field status websocket | leaves
//! ```
//!
//! [`message`] is what the exchange speaks — no HTTP version, no chunked coding, no
//! connection buffer — so an HTTP/2 stream or a tunnel can drive the same
//! [`proxy::exchange`]. [`context::WorkerCtx`] is what every task on a worker can reach
//! (the live generation, pools, counters, drain signal). [`clock`] is a leaf below all of
//! them: the instant the current connection-task poll began, and the one timer entry a
//! connection re-arms for each timed step.
//!
//! ## Module map
//!
//! ```text
//! src/config/     TOML → checked Config (files, certificates, DNS at load; errors with line)
//! src/generation.rs the live configuration: generations behind an ArcSwap, reload, cert polling
//! src/runtime/    pinned threads, monoio runtimes (io_uring / epoll), accept loop, drain; conn.rs: socket → handshake → session
//! src/context/    WorkerCtx (what every task on a worker reaches: live generation, pools, counters, drain signal)
//! src/clock.rs    the time read once per connection-task poll; Deadline, the one timer a connection re-arms per timed step
//! src/listener.rs SO_REUSEPORT sockets (socket2)
//! src/transport/  the byte streams: one Stream (plain | rustls | kernel TLS) for client and upstream, the rustls driver for both roles, accept (handshake, TlsInfo, kTLS switch)
//!   tls/          rustls ServerConfig, SNI certificate selection, TlsInfo (the handshake facts), ClientHello SNI reader
//!   ktls/         kernel TLS: ULP + secrets (ktls-core), record classification, alerts, probe
//! src/message.rs  protocol-neutral Request / ResponseHead / BodyLength / Header: what the exchange speaks
//! src/http1/      server.rs (the HTTP/1.1 session: heads, body framing, 100-continue, keep-alive, pipelining, linger);
//!                 parse.rs (no I/O), body.rs (chunked), write.rs (head rewriting)
//! src/http2/      the HTTP/2 session: mod.rs (connection task, GOAWAY, reset budget), stream.rs (one stream = one exchange; RFC 9113 §8 checks), wire.rs (h2 over in-memory queues; frame budgets), tunnel.rs (RFC 8441: an extended CONNECT's DATA ↔ the upgraded upstream)
//! src/proxy/      the exchange (Request → BodySource / ResponseSink → Outcome), full-duplex body pump, splice
//! src/route.rs    Host + longest prefix
//! src/websocket.rs the WebSocket handshake keys (RFC 6455 §4): the key an RFC 8441 stream sends upstream, its accept value
//! src/upstream/   per-worker keep-alive pools (idle checks), round robin / least connections; h1.rs: the upstream's HTTP/1.1 wire; h2.rs: multiplexed HTTP/2 pools for `protocol = "h2"` (h2c, or TLS with ALPN h2 via tokio-rustls)
//! src/demo.rs     `ringgate demo` and its built-in upstream; demo/ws.rs: its echo WebSocket at /ws
//! src/doctor.rs   `ringgate doctor`: host capabilities and tuning-profile deviations
//! src/signals.rs  what each signal means (TERM/INT stop, HUP reloads; USR1, USR2, WINCH, PIPE do not)
//! src/logging.rs  stderr through one writer thread; peer-triggered rustls messages at debug
//! src/observe/    per-worker metrics (single writer), Prometheus rendering, the admin listener
//! ```
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
pub mod field;
pub mod forwarding;
pub mod generation;
pub mod http1;
pub mod http2;
pub mod identity_headers;
pub mod instance;
pub mod listener;
pub mod logging;
pub mod message;
pub mod observe;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod proxy_protocol;
pub mod route;
pub mod runtime;
pub mod server;
pub mod signals;
pub mod status;
pub mod transport;
pub mod upstream;
pub mod uri;
pub mod version;
pub mod websocket;
