#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The same scenario and seed give a byte-identical trace.

use browserpool_sim::engine::{run, Mode, RunOptions};
use browserpool_sim::scenario::Scenario;

fn trace(preset: &str, hours: f64, seed: u64, mode: Mode) -> (Vec<String>, u64) {
    let mut sc = Scenario::preset(preset).unwrap();
    sc.duration_hours = hours;
    let out = run(
        &sc,
        seed,
        RunOptions {
            mode,
            full_trace: true,
            sabotage: Default::default(),
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
        mode: Mode::Managed,
        full_trace,
        sabotage: Default::default(),
    };
    let a = run(&sc, 3, opts(true)).unwrap();
    let b = run(&sc, 3, opts(false)).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.report, b.report);
}
