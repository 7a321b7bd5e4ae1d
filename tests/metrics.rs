//! The admin listener: `/metrics` parsed by a validating Prometheus text-format parser
//! (the `openmetrics-parser` dev-dependency; no outside tool) must count
//! exactly what the test sent; `/readyz` is 503 until the workers accept; `/healthz`,
//! unknown paths (404) and methods (405); `[admin] addr` is checked at load.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustls::HandshakeKind;

use common::backend::refusing_addr;
use common::child::ChildGuard;
use common::client::{Client, Versions, client_config, raw_exchange, req, request_with_suite};
use common::proxy::{ConfigBuilder, Proxy};
use common::{Fixture, HOST};

/// The status and body of one admin request.
fn admin_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read admin response");
    let text = String::from_utf8(out).expect("utf-8 admin response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    assert!(head.contains("Connection: close"), "{head}");
    if path == "/metrics" && status == 200 {
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    (status, body.to_string())
}

/// Label pairs of a sample, sorted by name.
type Labels = Vec<(String, String)>;

/// Samples of a scrape: (name, labels) → value.
type Samples = BTreeMap<(String, Labels), f64>;

/// Scrapes `/metrics` and parses it with a validating Prometheus text-format parser
/// (`openmetrics-parser`: the exposition grammar, one label set per family, cumulative
/// buckets with a `+Inf` one, no duplicate series); a scrape it rejects fails the test.
fn scrape(addr: SocketAddr) -> Samples {
    let (status, text) = admin_request(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{text}");
    let samples = parse_exposition(&text).unwrap_or_else(|e| {
        panic!("/metrics is not valid Prometheus text format: {e}\n--- scrape ---\n{text}")
    });
    assert!(!samples.is_empty(), "no samples in\n{text}");
    samples
}

/// The samples of a Prometheus text exposition, flattened the way they are written:
/// histograms as `_bucket{le}`, `_count` and `_sum`; summaries as `{quantile}`, `_count`
/// and `_sum`.
fn parse_exposition(text: &str) -> Result<Samples, String> {
    use openmetrics_parser::PrometheusValue as V;
    let exposition =
        openmetrics_parser::prometheus::parse_prometheus(text).map_err(|e| format!("{e:?}"))?;
    let mut out = Samples::new();
    let mut put = |name: String, labels: &Labels, extra: Option<(&str, String)>, v: f64| {
        let mut labels = labels.clone();
        labels.extend(extra.map(|(k, v)| (k.to_string(), v)));
        labels.sort();
        let key = (name, labels);
        if out.contains_key(&key) {
            return Err(format!("duplicate series {key:?}"));
        }
        out.insert(key, v);
        Ok(())
    };
    let bound = |b: f64| {
        if b == f64::INFINITY {
            "+Inf".to_string()
        } else {
            b.to_string()
        }
    };
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labels: Labels = sample
                .get_labelset()
                .map_err(|e| format!("{name}: {e:?}"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match &sample.value {
                V::Unknown(n) | V::Gauge(n) => put(name.clone(), &labels, None, n.as_f64())?,
                V::Counter(c) => put(name.clone(), &labels, None, c.value.as_f64())?,
                V::Histogram(h) => {
                    for b in &h.buckets {
                        let le = Some(("le", bound(b.upper_bound)));
                        put(format!("{name}_bucket"), &labels, le, b.count.as_f64())?;
                    }
                    let count = h
                        .count
                        .ok_or(format!("{name}: a histogram without _count"))?;
                    put(format!("{name}_count"), &labels, None, count as f64)?;
                    let sum = h.sum.ok_or(format!("{name}: a histogram without _sum"))?;
                    put(format!("{name}_sum"), &labels, None, sum.as_f64())?;
                }
                V::Summary(s) => {
                    for q in &s.quantiles {
                        let quantile = Some(("quantile", q.quantile.to_string()));
                        put(name.clone(), &labels, quantile, q.value.as_f64())?;
                    }
                    if let Some(count) = s.count {
                        put(format!("{name}_count"), &labels, None, count as f64)?;
                    }
                    if let Some(sum) = s.sum {
                        put(format!("{name}_sum"), &labels, None, sum.as_f64())?;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The value of one sample; panics if the scrape lacks it.
fn value(m: &Samples, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut key: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    key.sort();
    let v = m
        .get(&(name.to_string(), key))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {m:#?}"));
    *v as u64
}

/// Sum of every sample of `name` (over all its labels).
fn total(m: &Samples, name: &str) -> u64 {
    m.iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| *v as u64)
        .sum()
}

#[test]
fn metrics_count_what_the_test_sent() {
    let dead = refusing_addr();
    let f = Fixture::with(|c| {
        c.admin()
            .route(None, "/dead/", false, "dead")
            .upstream("dead", &[dead], &[])
    });
    let admin = f.proxy.admin_addr();

    // Three TLS 1.3 connections: one full handshake, two resumed. One 2xx each.
    let config = client_config(&f.pki, &rustls::version::TLS13);
    let (kind, suite13) = request_with_suite(&config, f.addr());
    assert_eq!(kind, HandshakeKind::Full);
    for _ in 0..2 {
        assert_eq!(
            request_with_suite(&config, f.addr()).0,
            HandshakeKind::Resumed
        );
    }

    // One TLS 1.2 connection with a chosen suite: statuses of every class but 1xx.
    let suite12 = rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
    let opts = f
        .tls_options()
        .versions(Versions::Tls12Only)
        .suites(&[suite12]);
    let mut c = Client::tls(f.addr(), &opts).expect("TLS 1.2 connection");
    for (path, status) in [
        ("/bytes/10", 200),
        ("/bytes/10", 200),
        ("/bytes/10", 200),
        ("/status/302", 302),
        ("/status/404", 404),
        ("/status/503", 503),
        ("/dead/x", 502),
    ] {
        let r = c.roundtrip(&req::get(HOST, path));
        assert_eq!(r.status, status, "{path}: {}", r.describe());
    }
    drop(c);

    // Plain HTTP on the TLS port: a failed handshake.
    let plain = raw_exchange(f.addr(), b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
    assert!(plain.starts_with(b"HTTP/1.1 400"));

    // Every connection is closed on the client side; wait until the proxy saw it too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(admin);
        if value(&m, "ringgate_connections_active", &[]) == 0 || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(value(&m, "ringgate_connections_active", &[]), 0);
    assert_eq!(value(&m, "ringgate_connections_accepted_total", &[]), 5);
    assert_eq!(value(&m, "ringgate_connections_refused_total", &[]), 0);
    assert_eq!(value(&m, "ringgate_workers", &[]), 2);
    assert_eq!(value(&m, "ringgate_ready", &[]), 1);
    assert_eq!(
        value(
            &m,
            "ringgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1
    );

    // Handshakes: by outcome, and by version × suite × mode.
    let hs = "ringgate_tls_handshakes_total";
    assert_eq!(value(&m, hs, &[("outcome", "ok")]), 4);
    assert_eq!(value(&m, hs, &[("outcome", "plain_http")]), 1);
    assert_eq!(total(&m, hs), 5, "no other failure");
    let done = "ringgate_tls_handshakes_completed_total";
    let v13 = |mode| {
        [
            ("version", "1.3"),
            ("suite", suite13.as_str()),
            ("mode", mode),
        ]
    };
    assert_eq!(value(&m, done, &v13("full")), 1);
    assert_eq!(value(&m, done, &v13("resumed")), 2);
    let s12 = suite12.as_str().unwrap();
    let v12 = [("version", "1.2"), ("suite", s12), ("mode", "full")];
    assert_eq!(value(&m, done, &v12), 1);
    assert_eq!(total(&m, done), 4);
    let hd = "ringgate_tls_handshake_duration_seconds";
    assert_eq!(value(&m, &format!("{hd}_count"), &[]), 4);
    assert_eq!(value(&m, &format!("{hd}_bucket"), &[("le", "+Inf")]), 4);

    // Requests by status class, and their durations.
    let rq = "ringgate_requests_total";
    for (class, n) in [
        ("1xx", 0),
        ("2xx", 6),
        ("3xx", 1),
        ("4xx", 1),
        ("5xx", 2),
        ("none", 0),
    ] {
        assert_eq!(value(&m, rq, &[("class", class)]), n, "class {class}");
    }
    assert_eq!(total(&m, rq), 10);
    let rd = "ringgate_request_duration_seconds";
    assert_eq!(value(&m, &format!("{rd}_count"), &[]), 10);
    assert_eq!(value(&m, &format!("{rd}_bucket"), &[("le", "+Inf")]), 10);

    // Upstream: every request the origin received came on an opened or a reused
    // connection, and each opened one is a connection the origin accepted.
    let opened = value(&m, "ringgate_upstream_connections_opened_total", &[]);
    let reused = value(&m, "ringgate_upstream_connections_reused_total", &[]);
    assert_eq!(f.backend.heads(), 9);
    assert_eq!(opened + reused, 9);
    assert_eq!(opened, f.backend.accepts() as u64);
    assert!(
        (1..=2).contains(&opened),
        "one per worker that served: {opened}"
    );
    let ue = "ringgate_upstream_errors_total";
    assert_eq!(value(&m, ue, &[("kind", "connect_failed")]), 1);
    assert_eq!(total(&m, ue), 1);
    assert_eq!(value(&m, "ringgate_panics_total", &[]), 0);

    // The shutdown report reads the same counters.
    let Fixture { proxy, .. } = f;
    let reports = proxy.shutdown_reports();
    let sum = |g: fn(&ringgate::runtime::WorkerReport) -> u64| reports.iter().map(g).sum::<u64>();
    assert_eq!(sum(|r| r.accepted), 5);
    assert_eq!(sum(|r| r.requests), 10);
    assert_eq!(sum(|r| r.handshake_failed), 1);
    assert_eq!(sum(|r| r.upstream_errors), 1);
    assert_eq!(sum(|r| r.upstream_opened), opened);
    assert_eq!(sum(|r| r.upstream_reused), reused);
}

#[test]
fn readyz_is_not_ready_before_the_workers_accept() {
    let f = Fixture::new();
    let toml = ConfigBuilder::new()
        .tls_listener(&[&f.cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[f.backend.addr], &[])
        .admin()
        .build();
    let config = ringgate::config::from_toml_str(&toml, "test.toml", f.pki.dir()).unwrap();
    let prepared = ringgate::server::Server::prepare(config).expect("prepare");
    let admin = prepared.admin_addr().expect("admin listener");
    // Sockets bound, admin up, no worker running: alive but not ready.
    assert_eq!(
        admin_request(admin, "GET", "/healthz"),
        (200, "ok\n".into())
    );
    assert_eq!(admin_request(admin, "GET", "/readyz").0, 503);
    assert_eq!(value(&scrape(admin), "ringgate_ready", &[]), 0);

    let proxy = Proxy::from_handle(prepared.start().expect("start"));
    // Server::start returns once every worker accepts: ready from then on.
    assert_eq!(
        admin_request(admin, "GET", "/readyz"),
        (200, "ready\n".into())
    );
    assert_eq!(value(&scrape(admin), "ringgate_ready", &[]), 1);
    let r = Client::tls(proxy.addr(), &f.tls_options())
        .unwrap()
        .roundtrip(&req::get(HOST, "/bytes/3"));
    assert_eq!(r.status, 200);
    proxy.shutdown();
    // The admin listener stops with the proxy.
    assert!(TcpStream::connect_timeout(&admin, Duration::from_secs(5)).is_err());
}

#[test]
fn admin_answers_only_its_paths_and_methods() {
    let f = Fixture::with(|c| c.admin());
    let admin = f.proxy.admin_addr();
    assert_eq!(admin_request(admin, "GET", "/").0, 404);
    assert_eq!(admin_request(admin, "GET", "/metricsx").0, 404);
    assert_eq!(admin_request(admin, "POST", "/metrics").0, 405);
    assert_eq!(admin_request(admin, "DELETE", "/readyz").0, 405);
    let (status, body) = admin_request(admin, "HEAD", "/metrics");
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(admin_request(admin, "GET", "/healthz?probe=1").0, 200);
    // Not HTTP: 400; a head larger than the limit: 431.
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"HELLO\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    // The proxy may close before reading it all; the answer is what matters.
    let _ = s.write_all(big.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn admin_addr_is_checked_at_load() {
    let f = Fixture::new();
    let toml = ConfigBuilder::new()
        .tls_listener(&[&f.cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[f.backend.addr], &[])
        .build()
        + "\n[admin]\naddr = \"localhost:99999\"\n";
    let e = ringgate::config::from_toml_str(&toml, "test.toml", f.pki.dir())
        .expect_err("a bad admin address is refused")
        .to_string();
    let line = toml.lines().position(|l| l.contains("99999")).unwrap() + 1;
    assert!(e.contains("admin.addr"), "{e}");
    assert!(e.contains(&format!("test.toml:{line}:")), "{e}");
}

/// `ringgate demo` as a child process, killed and reaped when dropped.
struct Demo {
    child: ChildGuard,
    admin: SocketAddr,
    /// What it printed up to the metrics URL.
    seen: String,
}

/// Starts `ringgate demo` and waits for the metrics URL it prints.
fn start_demo() -> Demo {
    use std::io::BufRead;
    let mut child = ChildGuard::spawn(
        Command::new(common::proxy::binary())
            .args(["demo", "--listen", "127.0.0.1:0", "--workers", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "ringgate (cargo build)",
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for r in [
        Box::new(child.take_stdout().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.take_stderr().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("ringgate demo printed no metrics URL; output:\n{seen}");
        };
        seen += &line;
        seen.push('\n');
        if let Some(rest) = line.trim().strip_prefix("curl http://")
            && let Some(addr) = rest.strip_suffix("/metrics")
        {
            let admin = addr.parse().expect("admin address");
            return Demo { child, admin, seen };
        }
    }
}

#[test]
fn demo_serves_metrics_and_prints_their_url() {
    let mut demo = start_demo();
    let seen = demo.seen.clone();
    assert_eq!(admin_request(demo.admin, "GET", "/readyz").0, 200, "{seen}");
    let m = scrape(demo.admin);
    assert_eq!(value(&m, "ringgate_workers", &[]), 1);
    assert_eq!(value(&m, "ringgate_ready", &[]), 1);
    demo.child.signal(libc::SIGTERM);
    let status = demo.child.wait();
    assert!(
        status.success(),
        "demo exited with {status}; output:\n{seen}"
    );
}

/// A test that fails after starting `ringgate demo` leaves no process behind (once, a
/// failed scrape left one running for half an hour): the guard kills and reaps it while the
/// panic unwinds.
#[test]
fn a_failing_test_leaves_no_demo_running() {
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let demo = start_demo();
        tx.send(demo.child.id()).unwrap();
        panic!("a test failing with ringgate demo running (on purpose)");
    })
    .join();
    assert!(failed.is_err(), "the test body panicked");
    let pid = rx.recv().expect("the demo started");
    // Reaped, not only killed: a zombie would still answer kill(pid, 0).
    // SAFETY: kill(2) with signal 0 only checks whether the pid exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let err = std::io::Error::last_os_error();
    assert!(
        rc == -1 && err.raw_os_error() == Some(libc::ESRCH),
        "ringgate demo (pid {pid}) still exists after its test panicked"
    );
}

/// The parser behind [`scrape`] rejects what is not the Prometheus text format, so a
/// malformed `/metrics` fails these tests instead of being skipped over line by line.
#[test]
fn the_exposition_parser_validates() {
    let good = "# HELP r_total Requests.\n# TYPE r_total counter\nr_total{class=\"2xx\"} 3\n\
                # TYPE d histogram\nd_bucket{le=\"0.1\"} 1\nd_bucket{le=\"+Inf\"} 2\n\
                d_sum 0.3\nd_count 2\n";
    let m = parse_exposition(good).expect("a valid exposition");
    assert_eq!(value(&m, "r_total", &[("class", "2xx")]), 3);
    assert_eq!(value(&m, "d_bucket", &[("le", "+Inf")]), 2);
    assert_eq!(value(&m, "d_count", &[]), 2);
    for bad in [
        // an unescaped quote in a label value
        "# TYPE g gauge\ng{a=\"x\"y\"} 1\n",
        // no value
        "# TYPE g gauge\ng{a=\"x\"}\n",
        // not a number
        "# TYPE g gauge\ng 1x\n",
        // buckets that are not cumulative
        "# TYPE d histogram\nd_bucket{le=\"0.1\"} 3\nd_bucket{le=\"+Inf\"} 2\nd_sum 1\nd_count 2\n",
        // no +Inf bucket
        "# TYPE d histogram\nd_bucket{le=\"0.1\"} 1\nd_sum 1\nd_count 1\n",
        // one series twice
        "# TYPE g gauge\ng{a=\"x\"} 1\ng{a=\"x\"} 2\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted:\n{bad}");
    }
}

#[test]
fn reloads_and_the_loaded_generation_are_on_metrics() {
    let f = Fixture::with(|c| c.admin());
    let admin = f.proxy.admin_addr();
    let m = scrape(admin);
    assert_eq!(
        value(&m, "ringgate_config_reloads_total", &[("result", "ok")]),
        0
    );
    assert_eq!(
        value(&m, "ringgate_config_reloads_total", &[("result", "failed")]),
        0
    );
    assert_eq!(total(&m, "ringgate_config_generation"), 1);

    // A good reload, then one that cannot be applied (this in-process proxy was started
    // from a string: there is no file to read again).
    let good = ConfigBuilder::new()
        .admin()
        .tls_listener(&[&f.cert])
        .route(None, "/", false, "backend")
        .upstream("backend", &[f.backend.addr], &[])
        .build();
    let parse = |text: &str| ringgate::config::from_toml_str(text, "test.toml", f.pki.dir());
    let live = f.proxy.live();
    live.reload_with(parse(&good).expect("good config"), "test")
        .expect("reload applies");
    assert!(live.reload("test").is_err(), "no file to reload from");

    let m = scrape(admin);
    assert_eq!(
        value(&m, "ringgate_config_reloads_total", &[("result", "ok")]),
        1
    );
    assert_eq!(
        value(&m, "ringgate_config_reloads_total", &[("result", "failed")]),
        1
    );
    assert_eq!(
        total(&m, "ringgate_config_generation"),
        2,
        "the failed one changed nothing"
    );
    let hashes: Vec<_> = m
        .keys()
        .filter(|(n, _)| n == "ringgate_config_info")
        .flat_map(|(_, labels)| labels.iter().filter(|(k, _)| k == "config_hash"))
        .collect();
    assert_eq!(hashes.len(), 1, "one config_hash label: {hashes:?}");
    assert!(
        total(&m, "ringgate_config_last_reload_timestamp_seconds") > 0,
        "the reload time is set"
    );
}
