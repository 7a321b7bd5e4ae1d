//! Upstream server selection (`upstream::balance::pick`): round robin and least
//! connections over 2, 16 and 128 servers, with uneven lease counts for least_conn.
//!
//! Run: `cargo bench --bench upstream`. See benches/README.md.

use std::cell::Cell;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringgate::config::Balance;
use ringgate::upstream::balance::pick;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("upstream_select");
    for n in [2usize, 16, 128] {
        // Uneven load, as a busy worker sees it: 0–6 leases out per server.
        let active: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % 7).collect();
        for (name, balance) in [
            ("round_robin", Balance::RoundRobin),
            ("least_conn", Balance::LeastConn),
        ] {
            let cursor = Cell::new(0);
            // Once, outside the timing: the choice is a real server.
            assert!(pick(balance, n, &cursor, |i| active[i]) < n);
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| pick(balance, black_box(n), &cursor, |i| active[i]))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
