//! `evict`: acquiring at capacity (`n` sessions, all idle). Group `evict`:
//! - `ours`: `Lifecycle::acquire` under `EvictLru` (victim chosen, teardown begun), then
//!   `Gone` → `Launch` → `Launched` → `DirRemoved`, every action drained;
//! - `naive`: lock the map, scan for the minimum timestamp, remove it, insert the new one;
//! - `moka`: `insert` of a new key into a full LRU cache; each timed batch ends with one
//!   `run_pending_tasks()` so every eviction is carried out inside the timing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use browserpool_benches::moka_cache::MokaEvict;
use browserpool_benches::naive::{self, NaiveEvict};
use browserpool_benches::ours::{self, OursEvict};
use browserpool_benches::{criterion_test_mode, sizes};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("evict");
    for n in sizes(criterion_test_mode()) {
        let mut o = OursEvict::new(n).unwrap();
        g.bench_function(BenchmarkId::new("ours", n), |b| {
            b.iter_custom(|iters| ours::time_evictions(&mut o, iters))
        });
        let mut nv = NaiveEvict::new(n);
        g.bench_function(BenchmarkId::new("naive", n), |b| {
            b.iter_custom(|iters| naive::time_evictions(&mut nv, iters))
        });
        let mut m = MokaEvict::new(n);
        g.bench_function(BenchmarkId::new("moka", n), |b| {
            b.iter_custom(|iters| m.time_evictions(iters))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
