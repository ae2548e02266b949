//! `pool_cycle`: `Pool::acquire`, `Lease::touch`, `Pool::destroy` awaited to completion,
//! through the async `Pool` with a no-op backend (NullLauncher + NullFs) on a
//! current-thread tokio runtime, while the pool holds `n` other live sessions. There is
//! no baseline: neither the naive map nor moka launches or tears anything down.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use browserpool_benches::ours::OursPool;
use browserpool_benches::{criterion_test_mode, sizes};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_cycle");
    for n in sizes(criterion_test_mode()) {
        let pool = OursPool::new(n).unwrap();
        g.bench_function(BenchmarkId::new("ours", n), |b| {
            b.iter_custom(|iters| pool.time_cycles(iters).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
