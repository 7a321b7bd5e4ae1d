//! One rate-limit check (`RateLimitStore::charge` on the shared lock-free table) at one
//! million keys, with 1 and 2 threads contending on (a) distinct keys — each thread
//! walking its own half of a million client IPs — and (b) one hot key every thread
//! charges. Reported: ns per check as each thread sees it (wall time of the run divided
//! by the checks one thread made; with 2 threads both run at once), the clock read
//! included.
//!
//! Run: `cargo bench --bench rate_limit`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ringgate::policy::rate_limit::algo::Params;
use ringgate::policy::rate_limit::{LocalStore, RateLimitStore, now_ms};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: u32 = 1_000_000;

/// 10r/s, burst 20, nodelay: the seed example's limit.
const PARAMS: Params = Params {
    rate: 10_000,
    burst: 20_000,
    delay: u64::MAX,
};

fn ip(i: u32) -> [u8; 4] {
    (0x0a00_0000 + i).to_be_bytes()
}

/// A store holding a million keys already (every slot segment touched).
fn full_store() -> Arc<LocalStore> {
    let store = Arc::new(LocalStore::new(KEYS as usize));
    let now = now_ms();
    for i in 0..KEYS {
        store.charge(&ip(i), now, &PARAMS);
    }
    store
}

/// `threads` threads making `n` checks each, at once; the wall time.
fn run(store: &Arc<LocalStore>, threads: u32, n: u64, hot: bool) -> Duration {
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let half = KEYS / threads;
                let mut k = t * half;
                for _ in 0..n {
                    let key = if hot { ip(7) } else { ip(k) };
                    k = if k + 1 == (t + 1) * half {
                        t * half
                    } else {
                        k + 1
                    };
                    // The clock read as the request path reads it: once per check.
                    std::hint::black_box(store.charge(&key, now_ms(), &PARAMS));
                }
                began.elapsed()
            })
        })
        .collect();
    start.wait();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let store = full_store();
    let mut g = c.benchmark_group("rate_limit_check_1M_keys");
    for threads in [1u32, 2] {
        for (name, hot) in [("distinct_keys", false), ("hot_key", true)] {
            g.bench_function(format!("{name}/{threads}_threads"), |b| {
                b.iter_custom(|n| run(&store, threads, n, hot))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
