#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The managed pool cleans an old server's `chromelambda-<uuid>` leftovers only when its
//! configuration names them, they are Chrome profiles and they are old enough; and it
//! leaves every neighbour alone (another user's, a symlink, a live second pool, a name
//! that is not ours, a recent legacy profile, a legacy name that is not a profile).

use browserpool_sim::engine::{run, run_pair, Mode, RunOptions};
use browserpool_sim::oracle;
use browserpool_sim::scenario::Scenario;

fn violations(sc: &Scenario, seed: u64) -> Vec<String> {
    let out = run(sc, seed, RunOptions::new(Mode::Managed)).unwrap();
    out.report
        .oracle_violations
        .iter()
        .map(|v| v.oracle.clone())
        .collect()
}

/// kristof5 with the incident's ten orphaned `chromelambda-<uuid>` directories (three
/// days old) on the host when browserpool first starts.
fn kristof5_with_the_incident_leftovers() -> Scenario {
    let mut sc = Scenario::preset("kristof5").unwrap();
    sc.host.legacy_leftovers = 10;
    sc.host.legacy_age_hours = 72.0;
    sc
}

#[test]
fn kristof5s_legacy_directories_are_cleaned_and_every_neighbour_survives() {
    let sc = kristof5_with_the_incident_leftovers();
    let out = run_pair(&sc, sc.seed).unwrap();
    let ma = &out.managed;
    assert!(
        ma.report.oracle_violations.is_empty(),
        "{:#?}",
        ma.report.oracle_violations
    );
    assert_eq!(ma.report.orphaned_dirs_end, 0);
    assert!(ma.extras.sweep_removed >= 10, "{:?}", ma.extras);
    // The old pool never sweeps: it ends with the incident's leftovers on top of its own.
    assert!(out.unmanaged.report.orphaned_dirs_end >= 10);
}

#[test]
fn legacy_directories_stay_without_a_pattern_or_while_recent_and_the_oracle_says_so() {
    // The sweep-clean oracle fires when leftovers of ours survive a start: it proves
    // that the simulated sweep really applies the pattern and the age rule.
    let mut sc = kristof5_with_the_incident_leftovers();
    sc.duration_hours = 12.0;
    assert_eq!(violations(&sc, 1), Vec::<String>::new());
    let mut no_pattern = sc.clone();
    no_pattern.managed.legacy.clear();
    assert!(violations(&no_pattern, 1).contains(&oracle::SWEEP_CLEAN.to_owned()));
    let mut recent = sc.clone();
    recent.host.legacy_age_hours = 0.5; // legacy_min_age is 1 h
    assert!(violations(&recent, 1).contains(&oracle::SWEEP_CLEAN.to_owned()));
    let mut patient = recent.clone();
    patient.managed.legacy_min_age_secs = 600.0; // 10 min: 30 min old is old enough
    assert_eq!(violations(&patient, 1), Vec::<String>::new());
}

#[test]
fn presets_with_legacy_leftovers_name_them() {
    for p in browserpool_sim::scenario::PRESETS {
        let sc = Scenario::preset(p).unwrap();
        if sc.host.legacy_leftovers > 0 || *p == "kristof5" {
            assert!(!sc.managed.legacy.is_empty(), "{p}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_production_sweep_on_the_simulated_host_skips_each_neighbour_for_its_reason() {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use browserpool::sweep::SkipReason;
    use browserpool::testing::startup_sweep;
    use browserpool::{Filesystem, LegacyPattern, PoolConfig};
    use browserpool_sim::world::backend::SimBackend;
    use browserpool_sim::world::{neighbours, World, WorldConfig};

    let world = Arc::new(Mutex::new(World::new(WorldConfig::default(), 5)));
    let root = PathBuf::from("/tmp");
    {
        let mut w = world.lock().unwrap();
        w.set_now(browserpool::Timestamp(3_600_000 * 24 * 10));
        neighbours::place_neighbours(&mut w, &root, "chromelambda-");
        neighbours::place_legacy(
            &mut w,
            &root,
            "chromelambda-",
            2,
            Duration::from_secs(7200),
            &[],
        );
    }
    let (launcher, fs) = SimBackend::new(world.clone());
    let config = PoolConfig::default()
        .with_root(root.clone())
        .with_prefix("chromelambda-")
        .with_legacy(vec![LegacyPattern::uuid("chromelambda-")]);
    let report = startup_sweep(&config, "00000000beef", &launcher, &fs)
        .await
        .unwrap();
    let reason = |name: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.path == root.join(name))
            .map(|s| s.reason.clone())
    };
    assert_eq!(
        reason("chromelambda-notes"),
        Some(SkipReason::UnrecognisedName)
    );
    assert!(matches!(
        reason("chromelambda-0a11ce00-0000-4000-8000-000000000001"),
        Some(SkipReason::TooRecent { .. })
    ));
    assert_eq!(
        reason("chromelambda-0a11ce00-0000-4000-8000-000000000002"),
        Some(SkipReason::NotAProfile)
    );
    assert_eq!(
        reason("chromelambda-other-user"),
        Some(SkipReason::ForeignOwner { uid: 1001 })
    );
    assert_eq!(reason("chromelambda-link"), Some(SkipReason::Symlink));
    assert!(matches!(
        reason("chromelambda-0000000a11ce-1"),
        Some(SkipReason::LivePool { .. })
    ));
    let legacy: Vec<PathBuf> = (0..2)
        .map(|k| root.join(format!("chromelambda-{}", neighbours::legacy_uuid(k))))
        .collect();
    assert_eq!(report.removed, legacy, "{report:#?}");
    assert!(world.lock().unwrap().take_violations().is_empty());
    // Removing any of the new neighbours is recorded (the oracle would fire).
    for n in [
        "chromelambda-notes",
        "chromelambda-0a11ce00-0000-4000-8000-000000000001",
        "chromelambda-0a11ce00-0000-4000-8000-000000000002",
    ] {
        fs.remove_dir_all(Path::new("/tmp").join(n).as_path())
            .await
            .unwrap();
        assert_eq!(world.lock().unwrap().take_violations().len(), 1, "{n}");
    }
}
