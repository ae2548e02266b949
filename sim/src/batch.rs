//! Many seeds on all cores: the engine behind `sweep` and the CI sweep tests.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::{run, Coverage, Mode, RunOptions, Shell, SimError};
use crate::oracle::Violation;
use crate::scenario::Scenario;

/// One failing seed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Its violations (managed pool).
    pub violations: Vec<Violation>,
    /// The trace lines before the first violation.
    pub context: Vec<String>,
}

/// What a batch found.
#[derive(Clone, Debug, Default)]
pub struct BatchOutcome {
    /// Seeds run.
    pub runs: u64,
    /// Failing seeds, in seed order.
    pub failures: Vec<Failure>,
    /// Coverage summed over the batch.
    pub coverage: Coverage,
    /// Events processed over the batch.
    pub events: u64,
    /// Wall time.
    pub wall: Duration,
}

/// Run the managed pool of `scenario` for every seed in `seeds` on `threads` threads,
/// on the machine shell. `progress` is called after each seed (from worker threads).
pub fn run_batch(
    scenario: &Scenario,
    seeds: Range<u64>,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<BatchOutcome, SimError> {
    run_batch_on(scenario, seeds, threads, Shell::Machine, progress)
}

/// The same on `shell`.
pub fn run_batch_on(
    scenario: &Scenario,
    seeds: Range<u64>,
    threads: usize,
    shell: Shell,
    progress: &(dyn Fn() + Sync),
) -> Result<BatchOutcome, SimError> {
    let start = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let out = Mutex::new(BatchOutcome::default());
    let error: Mutex<Option<SimError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let r = run(scenario, seed, RunOptions::new(Mode::Managed).on(shell));
                let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                match r {
                    Ok(r) => {
                        o.runs += 1;
                        o.events += r.extras.events;
                        o.coverage.add(&r.coverage);
                        if !r.report.oracle_violations.is_empty() {
                            o.failures.push(Failure {
                                seed,
                                violations: r.report.oracle_violations,
                                context: r.failure_context,
                            });
                        }
                    }
                    Err(e) => {
                        *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                }
                drop(o);
                progress();
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut o = out.into_inner().unwrap_or_else(|p| p.into_inner());
    o.failures.sort_by_key(|f| f.seed);
    o.wall = start.elapsed();
    Ok(o)
}
