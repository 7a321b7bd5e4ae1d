//! The request-path cost of metrics: one counter increment (relaxed load + store), one
//! latency histogram record, the per-request and per-handshake record calls as the
//! worker makes them, and a whole `/metrics` render (admin thread, 2 workers).
//!
//! Run: `cargo bench --bench metrics`. See benches/README.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ringgate::observe::Registry;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_record(c: &mut Criterion) {
    let registry = Registry::new(2, 1);
    let m = registry.local(0);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("counter_inc", |b| b.iter(|| black_box(&m.accepted).inc()));
    g.bench_function("histogram_record", |b| {
        b.iter(|| {
            m.request_duration
                .record(black_box(Duration::from_micros(180)))
        })
    });
    g.bench_function("request_done", |b| {
        b.iter(|| m.request_done(black_box(200), black_box(Duration::from_micros(180))))
    });
    let suite = Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    g.bench_function("handshake_ok", |b| {
        b.iter(|| m.handshake_ok(black_box(suite), false, Duration::from_micros(900)))
    });
    g.bench_function("render_2_workers", |b| b.iter(|| registry.render().len()));
    g.finish();
}

criterion_group!(benches, bench_record);
criterion_main!(benches);
