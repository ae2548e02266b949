#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Seeds per preset on both shells, every oracle green, every interesting event covered;
//! and the committed regression seeds on both shells.

use browserpool_sim::batch::run_batch_on;
use browserpool_sim::engine::{replay_command_on, run_pair_on, Coverage, Shell};
use browserpool_sim::scenario::{Scenario, PRESETS};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn sweep(shell: Shell, seeds: u64) {
    let mut coverage = Coverage::default();
    let mut report = Vec::new();
    for p in PRESETS {
        let sc = Scenario::preset(p).unwrap();
        let out = run_batch_on(&sc, 0..seeds, threads(), shell, &|| {}).unwrap();
        assert_eq!(out.runs, seeds);
        coverage.add(&out.coverage);
        for f in &out.failures {
            report.push(format!(
                "{p} seed {}: {:?}\n  last events:\n    {}\n  replay: {}",
                f.seed,
                f.violations,
                f.context.join("\n    "),
                replay_command_on(p, f.seed, None, shell)
            ));
        }
    }
    assert!(report.is_empty(), "failing seeds:\n{}", report.join("\n"));
    assert!(
        coverage.missing().is_empty(),
        "the batch never exercised: {:?} ({coverage:?})",
        coverage.missing()
    );
}

#[test]
fn two_hundred_seeds_per_preset_are_green_and_cover_every_interesting_event() {
    sweep(Shell::Machine, 200);
}

#[test]
fn fifty_seeds_per_preset_on_the_production_pool_are_green_and_cover_every_interesting_event() {
    sweep(Shell::Pool, 50);
}

fn regressions(shell: Shell) {
    let text = include_str!("../regressions.txt");
    let mut n = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        // Files are named relative to the workspace root, as in the replay commands.
        let mut sc = if PRESETS.contains(&parts[0]) {
            Scenario::preset(parts[0]).unwrap()
        } else {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(parts[0]);
            Scenario::load(path.to_str().unwrap()).unwrap()
        };
        let seed: u64 = parts[1].parse().unwrap();
        if let Some(h) = parts.get(2) {
            sc.duration_hours = h.parse().unwrap();
        }
        let out = run_pair_on(&sc, seed, shell).unwrap();
        assert!(
            out.managed.report.oracle_violations.is_empty(),
            "{line} ({} shell): {:#?}\nlast events:\n{}",
            shell.label(),
            out.managed.report.oracle_violations,
            out.managed.failure_context.join("\n")
        );
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn regression_seeds_stay_green() {
    regressions(Shell::Machine);
}

#[test]
fn regression_seeds_stay_green_on_the_production_pool() {
    regressions(Shell::Pool);
}
