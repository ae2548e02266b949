//! `reap_tick`: one reaper tick with `k` expired sessions among `n`, without backend kill
//! time. Groups `reap_tick/k<k>`, functions `ours/<n>`, `naive/<n>`, `moka/<n>`:
//! - `ours`: `Lifecycle::handle_timeout(now)` + draining `poll_action()` (one `Reaped`
//!   naming every reaped session with its first kill, an `Ending` when there is one) and
//!   reading out the reaped ids; ticks of successive generations are timed in chunks,
//!   replacements relaunched between chunks unmeasured (see `ReapFixture`);
//! - `naive`: lock the map, scan all `n` entries, remove the `k` expired ones;
//! - `moka`: one `run_pending_tasks()` when exactly `k` entries are past their
//!   time-to-idle (prepared in real time, unmeasured: ~0.4 s per iteration when `k > 0`,
//!   so that function uses flat sampling with 10 samples).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use browserpool_benches::moka_cache::{MokaReap, REAP_TTI};
use browserpool_benches::naive::NaiveReap;
use browserpool_benches::ours::OursReap;
use browserpool_benches::{criterion_test_mode, sizes, time_reaps, EXPIRED};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};

fn bench(c: &mut Criterion) {
    let quick = criterion_test_mode();
    for k in EXPIRED {
        let mut g = c.benchmark_group(format!("reap_tick/k{k}"));
        for n in sizes(quick) {
            let mut ours = OursReap::new(n, k).unwrap();
            g.bench_function(BenchmarkId::new("ours", n), |b| {
                b.iter_custom(|iters| time_reaps(&mut ours, k, iters))
            });
            drop(ours);
            let mut naive = NaiveReap::new(n, k);
            g.bench_function(BenchmarkId::new("naive", n), |b| {
                b.iter_custom(|iters| time_reaps(&mut naive, k, iters))
            });
            drop(naive);
        }
        g.finish();
        // moka's reap needs real time to pass before each tick when k > 0.
        let mut g = c.benchmark_group(format!("reap_tick/k{k}"));
        if k > 0 {
            g.sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_millis(1))
                .measurement_time(Duration::from_secs(5));
        }
        for n in sizes(quick) {
            // The full 400 ms even in test mode: the preparation needs the process not to
            // stall for a good fraction of it, and CI machines are busy.
            let mut moka = MokaReap::new(n, k, REAP_TTI);
            g.bench_function(BenchmarkId::new("moka", n), |b| {
                b.iter_custom(|iters| {
                    let (d, expired) = moka.time_reaps(iters);
                    assert_eq!(expired, k as u64 * iters, "moka expired a wrong count");
                    d
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
