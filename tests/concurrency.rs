//! Many clients at once, and upstream keep-alive: connections to the origin are pooled and
//! reused instead of opened per request.

mod common;

use std::thread;

use common::backend::pattern;
use common::client::{Client, req};
use common::{Fixture, HOST, sha256_hex};

const WORKERS: usize = 2;

#[test]
fn two_hundred_keepalive_clients_fifty_requests_each() {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 50;
    let f = Fixture::with(|c| c.http("keepalive_requests", 1000));
    let (addr, opts) = (f.addr(), f.tls_options());
    let mut threads = Vec::new();
    for id in 0..CLIENTS {
        let opts = opts.clone();
        threads.push(
            thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || -> Result<(), String> {
                    let mut c = Client::tls(addr, &opts)
                        .map_err(|e| format!("client {id}: connect: {e}"))?;
                    for i in 0..REQUESTS {
                        let seed = (id * REQUESTS + i) as u64;
                        // A different size each time, up to 12 KiB, sometimes 0.
                        let len = (seed as usize * 977) % (12 * 1024);
                        let (request, expected) = match i % 3 {
                            0 => {
                                let body = pattern(seed, len);
                                (req::post(HOST, "/echo", &body), body)
                            }
                            1 => {
                                let body = pattern(seed, len);
                                (req::post_chunked(HOST, "/echo", &body, 1500), body)
                            }
                            _ => (
                                req::get(HOST, &format!("/bytes/{len}?chunked")),
                                pattern(len as u64, len),
                            ),
                        };
                        c.send(&request)
                            .map_err(|e| format!("client {id} request {i}: send: {e}"))?;
                        let resp = c
                            .read_response(false)
                            .map_err(|e| format!("client {id} request {i}: {e}"))?;
                        if resp.status != 200 || sha256_hex(&resp.body) != sha256_hex(&expected)
                        {
                            return Err(format!(
                                "client {id} request {i}: wrong response ({} body bytes, {} expected)\n{}",
                                resp.body.len(),
                                expected.len(),
                                resp.describe()
                            ));
                        }
                        if i % 3 != 2 && resp.header("x-body-sha256") != Some(&sha256_hex(&expected)) {
                            return Err(format!(
                                "client {id} request {i}: origin received a different body"
                            ));
                        }
                    }
                    Ok(())
                })
                .expect("spawn client thread"),
        );
    }
    let failures: Vec<String> = threads
        .into_iter()
        .filter_map(|t| match t.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("client thread panicked".to_string()),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed; first few:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    assert_eq!(f.backend.served(), CLIENTS * REQUESTS);
}

#[test]
fn sequential_requests_on_one_connection_reuse_upstream_connections() {
    const N: usize = 100;
    let f = Fixture::new();
    let mut c = f.client();
    for i in 0..N {
        let body = pattern(i as u64, i * 10);
        let resp = c.roundtrip(&req::post(HOST, "/echo", &body));
        assert_eq!(resp.status, 200, "request {i}\n{}", resp.describe());
        assert_eq!(resp.body, body, "request {i} body");
    }
    assert_eq!(f.backend.served(), N);
    let accepts = f.backend.accepts();
    assert!(
        accepts <= WORKERS,
        "{N} sequential requests opened {accepts} upstream connections; keep-alive should \
         need at most one per worker ({WORKERS})"
    );
}

#[test]
fn sequential_client_connections_share_the_upstream_pool() {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 5;
    let f = Fixture::new();
    for i in 0..CLIENTS {
        let mut c = f.client();
        for j in 0..PER_CLIENT {
            let resp = c.roundtrip(&req::get(HOST, "/bytes/100?chunked"));
            assert_eq!(
                resp.status,
                200,
                "client {i} request {j}\n{}",
                resp.describe()
            );
            assert_eq!(resp.body, pattern(100, 100));
        }
    }
    let accepts = f.backend.accepts();
    // One pool per worker; one spare for a client whose request lands while the previous
    // response's connection is being handed back.
    assert!(
        accepts <= WORKERS + 1,
        "{} requests from {CLIENTS} sequential clients opened {accepts} upstream connections",
        CLIENTS * PER_CLIENT
    );
}

#[test]
fn x_request_count_shows_reuse_from_the_origin_side() {
    let f = Fixture::new();
    let mut c = f.client();
    let mut max_count = 0usize;
    for _ in 0..10 {
        let resp = c.roundtrip(&req::post(HOST, "/echo", b"x"));
        let n: usize = resp
            .header("x-request-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("x-request-count missing\n{}", resp.describe()));
        max_count = max_count.max(n);
    }
    assert!(
        max_count >= 5,
        "the origin never saw more than {max_count} requests on one connection out of 10"
    );
}
