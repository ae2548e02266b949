#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The incident replay: unmanaged leaks like kristof5 did, managed does not.

use browserpool_sim::engine::{run_pair, run_pair_on, PairOutcome, Shell};
use browserpool_sim::scenario::Scenario;

#[test]
fn kristof5_unmanaged_leaks_like_the_incident_and_managed_stays_clean() {
    let sc = Scenario::preset("kristof5").unwrap();
    check(&run_pair(&sc, sc.seed).unwrap());
}

#[test]
fn kristof5_on_the_production_pool_leaks_and_stays_clean_the_same_way() {
    let sc = Scenario::preset("kristof5").unwrap();
    let pool = run_pair_on(&sc, sc.seed, Shell::Pool).unwrap();
    check(&pool);
    // Same traffic, same outcome as the engine's own shell.
    let machine = run_pair(&sc, sc.seed).unwrap();
    for (p, m) in [
        (&pool.unmanaged, &machine.unmanaged),
        (&pool.managed, &machine.managed),
    ] {
        assert_eq!(p.report.created, m.report.created);
        assert_eq!(p.report.end_processes, m.report.end_processes);
        assert_eq!(
            p.report.orphaned_sessions_end,
            m.report.orphaned_sessions_end
        );
    }
}

fn check(out: &PairOutcome) {
    let un = &out.unmanaged;
    let ma = &out.managed;
    // 15 days 8 hours simulated.
    assert_eq!(un.simulated_ms, (15 * 24 + 8) * 3_600_000);

    // The incident's figures: 10 ± 2 orphaned sessions, 120-140 Chrome processes,
    // 15-19 GB RSS at the end.
    let orphans = un.report.orphaned_sessions_end;
    assert!((8..=12).contains(&orphans), "unmanaged orphans {orphans}");
    assert!(
        (120..=140).contains(&un.report.end_processes),
        "unmanaged processes {}",
        un.report.end_processes
    );
    let gb = un.extras.end_rss_bytes as f64 / 1e9;
    assert!((15.0..=19.0).contains(&gb), "unmanaged RSS {gb:.1} GB");
    assert_eq!(un.report.orphaned_dirs_end, orphans);
    assert_eq!(un.report.reaped, 0);
    // The unmanaged pool fails the leak oracles.
    let names: Vec<&str> = un
        .report
        .oracle_violations
        .iter()
        .map(|v| v.oracle.as_str())
        .collect();
    assert!(names.contains(&"idle-bound"), "{names:?}");
    assert!(names.contains(&"convergence"), "{names:?}");

    // Managed: same traffic, nothing left, no violation.
    assert_eq!(ma.report.created, un.report.created, "same traffic");
    assert_eq!(ma.report.orphaned_sessions_end, 0);
    assert_eq!(ma.report.orphaned_dirs_end, 0);
    assert_eq!(ma.report.end_browsers, 0);
    assert_eq!(ma.report.end_processes, 0);
    assert!(ma.report.reaped > 0, "the reaper did the work");
    assert!(
        ma.report.oracle_violations.is_empty(),
        "{:#?}",
        ma.report.oracle_violations
    );
    assert!(ma.report.peak_processes < un.report.peak_processes);
}
