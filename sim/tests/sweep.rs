#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! 200 seeds per preset, every oracle green, every interesting event covered; and the
//! committed regression seeds.

use browserpool_sim::batch::run_batch;
use browserpool_sim::engine::{replay_command, run_pair, Coverage};
use browserpool_sim::scenario::{Scenario, PRESETS};

const SEEDS: u64 = 200;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[test]
fn two_hundred_seeds_per_preset_are_green_and_cover_every_interesting_event() {
    let mut coverage = Coverage::default();
    let mut report = Vec::new();
    for p in PRESETS {
        let sc = Scenario::preset(p).unwrap();
        let out = run_batch(&sc, 0..SEEDS, threads(), &|| {}).unwrap();
        assert_eq!(out.runs, SEEDS);
        coverage.add(&out.coverage);
        for f in &out.failures {
            report.push(format!(
                "{p} seed {}: {:?}\n  last events:\n    {}\n  replay: {}",
                f.seed,
                f.violations,
                f.context.join("\n    "),
                replay_command(p, f.seed, None)
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
fn regression_seeds_stay_green() {
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
        let out = run_pair(&sc, seed).unwrap();
        assert!(
            out.managed.report.oracle_violations.is_empty(),
            "{line}: {:#?}\nlast events:\n{}",
            out.managed.report.oracle_violations,
            out.managed.failure_context.join("\n")
        );
        n += 1;
    }
    assert!(n > 0);
}
