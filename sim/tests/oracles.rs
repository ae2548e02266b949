#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The oracles catch deliberately broken pools, and stay quiet for the real one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use browserpool::{Filesystem, KillStage, ProcessLauncher};
use browserpool_sim::engine::{run, Mode, RunOptions, Sabotage, Shell};
use browserpool_sim::oracle;
use browserpool_sim::scenario::Scenario;
use browserpool_sim::world::backend::SimBackend;
use browserpool_sim::world::{KillBehaviour, Owner, World, WorldConfig};

const SHELLS: [Shell; 2] = [Shell::Machine, Shell::Pool];

fn managed_on(shell: Shell, sc: &Scenario, seed: u64) -> Vec<String> {
    sabotaged_on(shell, sc, seed, Sabotage::default())
}

fn sabotaged_on(shell: Shell, sc: &Scenario, seed: u64, sabotage: Sabotage) -> Vec<String> {
    let out = run(
        sc,
        seed,
        RunOptions {
            sabotage,
            ..RunOptions::new(Mode::Managed).on(shell)
        },
    )
    .unwrap();
    out.report
        .oracle_violations
        .iter()
        .map(|v| v.oracle.clone())
        .collect()
}

fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("simulated backend call waited"),
    }
}

#[test]
fn a_pool_without_a_reaper_fails_idle_bound_and_convergence() {
    let mut sc = Scenario::preset("steady").unwrap();
    sc.duration_hours = 24.0;
    sc.managed.idle_timeout_secs = 0.0; // reaper off
    sc.managed.release_grace_secs = -1.0; // and no owner release
    for shell in SHELLS {
        let v = managed_on(shell, &sc, 1);
        assert!(
            v.contains(&oracle::IDLE_BOUND.to_owned()),
            "{shell:?} {v:?}"
        );
        assert!(
            v.contains(&oracle::CONVERGENCE.to_owned()),
            "{shell:?} {v:?}"
        );
    }
}

#[test]
fn a_pool_that_skips_the_startup_sweep_fails_sweep_clean() {
    let mut sc = Scenario::preset("crashy-server").unwrap();
    sc.duration_hours = 24.0;
    sc.faults.swarm = false; // server crashes on for sure
    sc.faults.crash_during_sweep = 0.0;
    for shell in SHELLS {
        sc.managed.sweep_on_start = false;
        let v = managed_on(shell, &sc, 1);
        assert!(
            v.contains(&oracle::SWEEP_CLEAN.to_owned()),
            "{shell:?} {v:?}"
        );
        assert!(
            v.contains(&oracle::CONVERGENCE.to_owned()),
            "{shell:?} {v:?}"
        );
        // With the sweep on, the same run is clean.
        sc.managed.sweep_on_start = true;
        assert_eq!(managed_on(shell, &sc, 1), Vec::<String>::new(), "{shell:?}");
    }
}

#[test]
fn the_real_pool_passes_every_oracle_on_every_preset() {
    for shell in SHELLS {
        for p in browserpool_sim::scenario::PRESETS {
            let mut sc = Scenario::preset(p).unwrap();
            sc.duration_hours = sc.duration_hours.min(24.0);
            assert_eq!(
                managed_on(shell, &sc, 11),
                Vec::<String>::new(),
                "{shell:?} {p}"
            );
        }
    }
}

#[test]
fn touching_a_neighbour_or_a_stale_pid_is_recorded() {
    let world = Arc::new(Mutex::new(World::new(WorldConfig::default(), 1)));
    let (other, theirs, stale_pid) = {
        let mut w = world.lock().unwrap();
        let other = Path::new("/tmp/chromelambda-other-user").to_owned();
        w.place(&other, browserpool::EntryKind::Dir, 1001, Owner::Neighbour);
        let dir = Path::new("/tmp/chromelambda-0000000a11ce-1").to_owned();
        w.place(&dir, browserpool::EntryKind::Dir, 1000, Owner::Neighbour);
        let theirs = w
            .spawn_tree(&dir, Owner::Neighbour, 12, KillBehaviour::default())
            .unwrap();
        // A legacy dir whose SingletonLock names a PID that is now "postgres".
        let (pg, _) = w.spawn_unrelated("postgres").unwrap();
        (other, theirs, pg)
    };
    let (launcher, fs) = SimBackend::new(world.clone());
    // A correct orphan search never reports the unrelated process.
    let found = ready(launcher.find_orphans(Path::new("/tmp/chromelambda-legacy"))).unwrap();
    assert!(found.is_empty());
    assert!(!world.lock().unwrap().has_violations());
    // Broken behaviour 1: removing another user's directory.
    ready(fs.remove_dir_all(&other)).unwrap();
    // Broken behaviour 2: killing the second pool's browser.
    world
        .lock()
        .unwrap()
        .signal_group(theirs.0, theirs.1, KillStage::Force);
    // Broken behaviour 3: trusting a stale SingletonLock PID.
    world
        .lock()
        .unwrap()
        .signal_group(stale_pid, 0, KillStage::Force);
    let v = world.lock().unwrap().take_violations();
    assert_eq!(v.len(), 3, "{v:#?}");
    assert!(v[0].contains("not ours"));
    assert!(v[1].contains("neighbour"));
    assert!(v[2].contains("postgres"));
}

fn hung_kill() -> Scenario {
    let mut sc = Scenario::preset("hung-kill").unwrap();
    sc.duration_hours = 24.0;
    sc.faults.swarm = false;
    sc
}

/// On each of `shells`: with `sabotage` switched on, every one of `oracles` fires on
/// `sc` at `seed`; and, when `clean_first`, the same run without sabotage is clean, so the
/// violation is the sabotage's doing.
fn assert_sabotage_fires(
    shells: &[Shell],
    sc: &Scenario,
    seed: u64,
    clean_first: bool,
    sabotage: Sabotage,
    oracles: &[&str],
) {
    for &shell in shells {
        if clean_first {
            assert_eq!(
                managed_on(shell, sc, seed),
                Vec::<String>::new(),
                "{shell:?}"
            );
        }
        let v = sabotaged_on(shell, sc, seed, sabotage);
        for o in oracles {
            assert!(v.contains(&(*o).to_owned()), "{shell:?} {o}: {v:?}");
        }
    }
}

#[test]
fn a_shell_that_reports_gone_too_early_fails_exactly_once() {
    let sabotage = Sabotage {
        premature_gone: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(
        &[Shell::Machine],
        &hung_kill(),
        2,
        true,
        sabotage,
        &[oracle::EXACTLY_ONCE],
    );
}

#[test]
fn a_shell_whose_kills_do_nothing_fails_capacity_and_convergence() {
    let sabotage = Sabotage {
        kill_does_nothing: true,
        ..Sabotage::default()
    };
    let oracles = [oracle::EXACTLY_ONCE, oracle::CAPACITY, oracle::CONVERGENCE];
    assert_sabotage_fires(
        &[Shell::Machine],
        &hung_kill(),
        2,
        false,
        sabotage,
        &oracles,
    );
}

#[test]
fn a_sweep_that_trusts_singleton_lock_pids_fails_foreign_touch() {
    let mut sc = Scenario::preset("crashy-server").unwrap();
    sc.duration_hours = 12.0;
    let sabotage = Sabotage {
        trust_singleton_lock: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(&SHELLS, &sc, 1, false, sabotage, &[oracle::FOREIGN_TOUCH]);
}

#[test]
fn lost_replies_fail_answered() {
    let mut sc = Scenario::preset("steady").unwrap();
    sc.duration_hours = 6.0;
    let sabotage = Sabotage {
        lose_replies: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(&SHELLS, &sc, 1, false, sabotage, &[oracle::ANSWERED]);
}

#[test]
fn refusing_at_capacity_under_evict_lru_fails_no_refusal_while_idle() {
    let mut sc = Scenario::preset("burst").unwrap();
    sc.duration_hours = 12.0;
    let sabotage = Sabotage {
        refuse_when_full: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(
        &SHELLS,
        &sc,
        1,
        true,
        sabotage,
        &[oracle::NO_REFUSAL_WHILE_IDLE],
    );
}

/// Steady traffic where one operation in five outlasts the idle timeout.
fn long_ops() -> Scenario {
    let mut sc = Scenario::preset("steady").unwrap();
    sc.duration_hours = 24.0;
    sc.workload.long_op_probability = 0.2;
    sc.workload.long_op_secs_min = 1900.0;
    sc.workload.long_op_secs_max = 2400.0;
    sc
}

#[test]
fn a_server_that_does_not_mark_operations_in_flight_fails_never_mid_operation() {
    // Marked operations are never cut short, however long they run; stamped but not
    // marked, a long operation looks idle and is reaped under it.
    let sabotage = Sabotage {
        ops_not_marked: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(
        &SHELLS,
        &long_ops(),
        3,
        true,
        sabotage,
        &[oracle::NEVER_MID_OPERATION],
    );
}

#[test]
fn handing_out_a_used_browser_fails_spare_once() {
    let mut sc = Scenario::preset("spares").unwrap();
    sc.duration_hours = 6.0;
    let sabotage = Sabotage {
        hand_out_used: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(&SHELLS, &sc, 1, true, sabotage, &[oracle::SPARE_ONCE]);
}

#[test]
fn the_memory_budget_holds_on_memory_pressure_and_a_pool_without_it_fails_memory_budget() {
    let mut sc = Scenario::preset("memory-pressure").unwrap();
    sc.duration_hours = 24.0;
    let sabotage = Sabotage {
        memory_budget_dropped: true,
        ..Sabotage::default()
    };
    assert_sabotage_fires(&SHELLS, &sc, 2, true, sabotage, &[oracle::MEMORY_BUDGET]);
}

#[test]
fn memory_evictions_of_unmarked_operations_fail_never_mid_operation() {
    // Only the budget ends sessions by itself here: no reaper, no owner release (so
    // idle-bound and convergence fire too; what matters is never-mid-operation).
    let mut sc = Scenario::preset("memory-pressure").unwrap();
    sc.duration_hours = 24.0;
    sc.managed.idle_timeout_secs = 0.0;
    sc.managed.release_grace_secs = -1.0;
    sc.workload.long_op_probability = 0.3;
    for shell in SHELLS {
        let out = run(
            &sc,
            4,
            RunOptions {
                sabotage: Sabotage {
                    ops_not_marked: true,
                    ..Sabotage::default()
                },
                ..RunOptions::new(Mode::Managed).on(shell)
            },
        )
        .unwrap();
        let v = out
            .report
            .oracle_violations
            .iter()
            .find(|v| v.oracle == oracle::NEVER_MID_OPERATION)
            .unwrap_or_else(|| panic!("{shell:?} {:?}", out.report.oracle_violations));
        assert!(
            v.message.contains("memory_budget"),
            "{shell:?} {}",
            v.message
        );
    }
}
