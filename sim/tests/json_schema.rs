#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The `replay --json` schema is stable: exactly the documented keys.

use browserpool_sim::engine::run_pair;
use browserpool_sim::report::{ReplayJson, Runs};
use browserpool_sim::scenario::Scenario;

#[test]
fn replay_json_has_exactly_the_documented_keys() {
    let mut sc = Scenario::preset("burst").unwrap();
    sc.duration_hours = 6.0;
    let out = run_pair(&sc, 2).unwrap();
    let j = ReplayJson {
        scenario: sc.name.clone(),
        seed: 2,
        simulated_seconds: out.managed.simulated_ms as f64 / 1000.0,
        wall_ms: 1.0,
        runs: Runs {
            unmanaged: out.unmanaged.report.clone(),
            managed: out.managed.report.clone(),
        },
    };
    let v = serde_json::to_value(&j).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        ["runs", "scenario", "seed", "simulated_seconds", "wall_ms"]
    );
    assert_eq!(keys(&v["runs"]), ["managed", "unmanaged"]);
    let mut run_keys = vec![
        "peak_browsers",
        "peak_processes",
        "peak_rss_bytes",
        "peak_pss_bytes",
        "memory_budget_bytes",
        "memory_ended",
        "end_browsers",
        "end_processes",
        "orphaned_sessions_end",
        "orphaned_dirs_end",
        "created",
        "reaped",
        "evicted",
        "retired",
        "crashed",
        "rejected",
        "client_errors",
        "oracle_violations",
    ];
    run_keys.sort();
    for side in ["managed", "unmanaged"] {
        assert_eq!(keys(&v["runs"][side]), run_keys, "{side}");
        assert!(v["runs"][side]["oracle_violations"].is_array());
    }
    let un = &v["runs"]["unmanaged"]["oracle_violations"];
    let first = &un.as_array().unwrap()[0];
    assert_eq!(
        keys(first),
        ["count", "event_index", "message", "oracle", "sim_ms"]
    );
    // Round-trips.
    let back: ReplayJson = serde_json::from_value(v).unwrap();
    assert_eq!(back.runs.managed, out.managed.report);
}
