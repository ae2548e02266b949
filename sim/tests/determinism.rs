#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The same scenario and seed give a byte-identical trace.

use browserpool_sim::engine::{run, Mode, RunOptions, Shell};
use browserpool_sim::scenario::Scenario;

fn trace(preset: &str, hours: f64, seed: u64, mode: Mode) -> (Vec<String>, u64) {
    trace_on(Shell::Machine, preset, hours, seed, mode)
}

fn trace_on(shell: Shell, preset: &str, hours: f64, seed: u64, mode: Mode) -> (Vec<String>, u64) {
    let mut sc = Scenario::preset(preset).unwrap();
    sc.duration_hours = hours;
    let out = run(
        &sc,
        seed,
        RunOptions {
            full_trace: true,
            ..RunOptions::new(mode).on(shell)
        },
    )
    .unwrap();
    (out.trace, out.trace_hash)
}

#[test]
fn same_seed_same_trace_byte_for_byte() {
    for (preset, hours) in [
        ("kristof5", 72.0),
        ("crashy-server", 24.0),
        ("hung-kill", 12.0),
    ] {
        for mode in [Mode::Managed, Mode::Unmanaged] {
            let (a, ha) = trace(preset, hours, 7, mode);
            let (b, hb) = trace(preset, hours, 7, mode);
            assert!(a.len() > 100, "{preset}: trace too short to mean anything");
            assert_eq!(a.join("\n"), b.join("\n"), "{preset} {mode:?}");
            assert_eq!(ha, hb);
        }
    }
}

#[test]
fn different_seeds_differ() {
    let (_, a) = trace("steady", 12.0, 1, Mode::Managed);
    let (_, b) = trace("steady", 12.0, 2, Mode::Managed);
    assert_ne!(a, b);
}

#[test]
fn hash_only_runs_match_full_trace_runs() {
    let mut sc = Scenario::preset("crashy-server").unwrap();
    sc.duration_hours = 24.0;
    let opts = |full_trace| RunOptions {
        full_trace,
        ..RunOptions::new(Mode::Managed)
    };
    let a = run(&sc, 3, opts(true)).unwrap();
    let b = run(&sc, 3, opts(false)).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.report, b.report);
}

#[test]
fn the_production_pool_gives_the_same_trace_byte_for_byte() {
    // Crashes (also during the sweep), kill escalations, hung launches, full disk: every
    // path through the pool's tasks, timers and supervision, on a paused runtime.
    for (preset, hours) in [
        ("crashy-server", 24.0),
        ("hung-kill", 12.0),
        ("full-disk", 12.0),
        ("burst", 12.0),
    ] {
        for mode in [Mode::Managed, Mode::Unmanaged] {
            let (a, ha) = trace_on(Shell::Pool, preset, hours, 7, mode);
            let (b, hb) = trace_on(Shell::Pool, preset, hours, 7, mode);
            assert!(a.len() > 100, "{preset}: trace too short to mean anything");
            assert!(
                a.iter().any(|l| l.contains("finished")),
                "{preset}: the pool's own actions are traced"
            );
            assert_eq!(a.join("\n"), b.join("\n"), "{preset} {mode:?}");
            assert_eq!(ha, hb);
        }
    }
    let (_, a) = trace_on(Shell::Pool, "steady", 12.0, 1, Mode::Managed);
    let (_, b) = trace_on(Shell::Pool, "steady", 12.0, 2, Mode::Managed);
    assert_ne!(a, b);
}
