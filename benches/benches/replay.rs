//! `replay`: the simulation's 15-day 8-hour `kristof5` replay (browserpool-sim), the
//! scenario's own seed, traces not kept. Group `replay`:
//! - `kristof5/managed`: browserpool (the scenario's `[managed]` spec) alone;
//! - `kristof5/pair`: `run_pair`, the old unmanaged pool and browserpool on the same
//!   traffic, which is what `browserpool-sim replay kristof5` does.
//!
//! Each iteration is a whole replay (tens of thousands of events), so the group uses
//! flat sampling with 10 samples.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use browserpool_sim::engine::{run, run_pair, Mode, RunOptions};
use browserpool_sim::scenario::Scenario;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

fn bench(c: &mut Criterion) {
    let scenario = Scenario::preset("kristof5").unwrap();
    let seed = scenario.seed;
    let mut g = c.benchmark_group("replay");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("kristof5/managed", |b| {
        b.iter(|| {
            let out = run(&scenario, seed, RunOptions::new(Mode::Managed)).unwrap();
            assert!(out.report.oracle_violations.is_empty());
            out.simulated_ms
        })
    });
    g.bench_function("kristof5/pair", |b| {
        b.iter(|| run_pair(&scenario, seed).unwrap().managed.simulated_ms)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
