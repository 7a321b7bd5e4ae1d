//! The timed step: one I/O step bounded by a timeout, as the request path makes about
//! five per keep-alive request. `monoio_timeout` is what every step did before (a fresh
//! timer entry per step: a clock read, a wheel insert when the step first waits, a
//! remove when it ends); `deadline_within` is the connection's one re-armed
//! `clock::Deadline` (src/clock.rs). The step is pending once and then ready, like an
//! io_uring operation that completes on the next turn.
//!
//! Run: `cargo bench --bench clock`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ringgate::clock::Deadline;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LIMIT: Duration = Duration::from_secs(60);

/// Pending at its first poll (it wakes its task at once), ready at the second.
struct OneTurn(bool);

impl Future for OneTurn {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a monoio runtime")
}

fn bench_timed_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("timed_step");
    g.bench_function("monoio_timeout", |b| {
        let mut rt = runtime();
        b.iter_custom(|n| {
            rt.block_on(async move {
                let started = Instant::now();
                for _ in 0..n {
                    let r = monoio::time::timeout(LIMIT, OneTurn(false)).await;
                    assert!(r.is_ok());
                }
                started.elapsed()
            })
        })
    });
    g.bench_function("deadline_within", |b| {
        let mut rt = runtime();
        b.iter_custom(|n| {
            rt.block_on(async move {
                let mut deadline = Deadline::new();
                let started = Instant::now();
                for _ in 0..n {
                    let r = deadline.within(LIMIT, OneTurn(false)).await;
                    assert!(r.is_ok());
                }
                started.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench_timed_step);
criterion_main!(benches);
