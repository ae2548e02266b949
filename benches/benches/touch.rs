//! `touch`: stamping activity through the handle a server holds.
//!
//! In each group (`touch/<pattern>/<n>`):
//! - `ours`: `browserpool::Lease::touch` on leases from a real `Pool` (NullLauncher +
//!   NullFs): one relaxed load of the coarse clock, one relaxed store;
//! - `naive`: `Instant::now()` and a relaxed store into the `Arc<Instance>`'s `AtomicU64`;
//! - `moka`: `moka::sync::Cache::get` (stamps the entry, logs the read, clones the `Arc`);
//! - `floor`: a bare relaxed store into a `Vec<AtomicU64>` with the same access pattern.
//!
//! Patterns: `same` (session 0 repeatedly), `round_robin` (0..n in order), `two_threads`
//! (two threads at once on sessions 0 and n/2; time per touch per thread).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use browserpool_benches::floor::Floor;
use browserpool_benches::moka_cache::MokaTouch;
use browserpool_benches::naive::NaiveTouch;
use browserpool_benches::ours::OursPool;
use browserpool_benches::{criterion_test_mode, run_touches, sizes, Pattern, Touch};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    for n in sizes(criterion_test_mode()) {
        let ours = OursPool::new(n).unwrap();
        let naive = NaiveTouch::new(n);
        let moka = MokaTouch::new(n);
        let floor = Floor::new(n);
        for pattern in Pattern::ALL {
            let mut g = c.benchmark_group(format!("touch/{}", pattern.name()));
            one(&mut g, "ours", n, &ours, pattern);
            one(&mut g, "naive", n, &naive, pattern);
            one(&mut g, "moka", n, &moka, pattern);
            one(&mut g, "floor", n, &floor, pattern);
            g.finish();
        }
    }
}

/// Monomorphised per implementation, so no touch goes through a vtable.
fn one<T: Touch>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, n: usize, t: &T, p: Pattern) {
    g.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_custom(|iters| run_touches(t, p, iters))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
