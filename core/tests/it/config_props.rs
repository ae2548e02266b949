//! No configuration value can make the pool panic: a random config is either refused by
//! `validate()` with a typed error naming the field, or runs a short pool life (acquire,
//! operate, release, idle, measure, destroy, shut down, drop) under paused time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use browserpool::testing::{FakeLauncher, MemFs};
use browserpool::{Backoff, CapacityPolicy, OwnerKey, Pool, PoolConfig, PoolError};
use proptest::prelude::*;

fn dur() -> impl Strategy<Value = Duration> {
    prop_oneof![
        40 => (1u64..20_000).prop_map(Duration::from_millis),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::from_nanos(1)),
        1 => (1u64..400 * 86_400).prop_map(Duration::from_secs),
        1 => Just(PoolConfig::MAX_DURATION),
        1 => Just(PoolConfig::MAX_DURATION + Duration::from_millis(1)),
        1 => Just(Duration::MAX),
        1 => any::<u64>().prop_map(Duration::from_millis),
    ]
}

fn opt_dur() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![1 => Just(None), 4 => dur().prop_map(Some)]
}

fn count() -> impl Strategy<Value = usize> {
    prop_oneof![20 => 1usize..6, 1 => Just(0usize), 1 => Just(usize::MAX)]
}

/// A sampling interval (valid; its zero and too-long values are refused by the unit
/// tests in `config.rs`, so that refusals here do not crowd out the valid configs).
fn mem_interval() -> impl Strategy<Value = Duration> {
    // Not below 100 ms: a 1 ms sampler over the simulated life would wake the test
    // hundreds of thousands of times (the validity rule is the same at any length).
    (100u64..20_000).prop_map(Duration::from_millis)
}

/// A memory limit: mostly none or positive, sometimes the refused zero.
fn mem() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        80 => Just(None),
        1 => Just(Some(0u64)),
        20 => (1u64..u64::MAX).prop_map(Some),
    ]
}

fn config() -> impl Strategy<Value = PoolConfig> {
    let policy = prop_oneof![
        Just(CapacityPolicy::EvictLru),
        Just(CapacityPolicy::Reject),
        dur().prop_map(|timeout| CapacityPolicy::Wait { timeout }),
    ];
    let attempts = prop_oneof![20 => 1u32..5, 1 => Just(0u32), 1 => Just(u32::MAX)];
    let uses = prop_oneof![
        10 => Just(None),
        1 => Just(Some(0u64)),
        5 => (1u64..4).prop_map(Some),
        1 => Just(Some(u64::MAX)),
    ];
    let root = prop_oneof![20 => Just("/sim"), 1 => Just("relative")];
    let prefix = prop_oneof![20 => Just("bpool-"), 1 => Just("x"), 1 => Just("a/b")];
    // Mostly ordered pairs (tick <= reap_interval, initial <= max), sometimes not.
    let ordered = prop_oneof![8 => Just(true), 1 => Just(false)];
    (
        (count(), opt_dur(), dur(), dur(), policy, dur(), count()),
        (opt_dur(), uses, dur(), dur(), dur(), attempts, dur()),
        (dur(), dur(), root, prefix, any::<bool>(), count(), ordered),
        (count(), dur(), mem(), mem(), mem_interval()),
    )
        .prop_map(
            |(
                (
                    max_browsers,
                    idle_timeout,
                    reap_interval,
                    tick,
                    capacity_policy,
                    acquire_timeout,
                    max_waiters,
                ),
                (
                    max_lifetime,
                    max_uses,
                    launch_timeout,
                    kill_grace,
                    kill_timeout,
                    kill_attempts,
                    legacy_min_age,
                ),
                (initial, max, root, prefix, sweep_on_start, tombstones, ordered),
                (spares, spare_max_age, memory_budget, max_session_memory, memory_interval),
            )| {
                let (tick, reap_interval, initial, max) = if ordered {
                    (
                        tick.min(reap_interval),
                        tick.max(reap_interval),
                        initial.min(max),
                        initial.max(max),
                    )
                } else {
                    (tick, reap_interval, initial, max)
                };
                PoolConfig::default()
                    .with_max_browsers(max_browsers)
                    .with_idle_timeout(idle_timeout)
                    .with_reap_interval(reap_interval)
                    .with_tick(tick)
                    .with_capacity_policy(capacity_policy)
                    .with_acquire_timeout(acquire_timeout)
                    .with_max_waiters(max_waiters)
                    .with_max_lifetime(max_lifetime)
                    .with_max_uses(max_uses)
                    .with_launch_timeout(launch_timeout)
                    .with_kill_grace(kill_grace)
                    .with_kill_timeout(kill_timeout)
                    .with_kill_attempts(kill_attempts)
                    .with_remove_backoff(Backoff { initial, max })
                    .with_root(PathBuf::from(root))
                    .with_prefix(prefix.to_owned())
                    .with_sweep_on_start(sweep_on_start)
                    .with_tombstones(tombstones)
                    .with_legacy(Vec::new())
                    .with_legacy_min_age(legacy_min_age)
                    .with_spares(spares)
                    .with_spare_max_age(spare_max_age)
                    .with_memory_budget(memory_budget)
                    .with_max_session_memory(max_session_memory)
                    .with_memory_interval(memory_interval)
            },
        )
}

/// A short life of a pool with this (valid) config, bounded in simulated time by a
/// multiple of the shortest period anything in the pool wakes at: the tick (the reaper)
/// and the memory sampler's interval. So a 1 ms tick does not make the test wake millions
/// of times, and neither does a 100 ms sampler under a tick of months (paused time still
/// costs real time per wake: about 2 µs here, and 200 days of 100 ms samples took
/// minutes in one CI run before the sampler's interval was part of the bound).
fn short_life(config: PoolConfig, idle_for: Duration, grace: Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let bound = config.tick.min(config.memory_interval).saturating_mul(200);
    rt.block_on(async move {
        let within = |d: Duration| d.min(bound);
        let pool = Pool::builder(config, FakeLauncher::new())
            .filesystem(Arc::new(MemFs::new()))
            .instance("00000000abcd")
            .build()
            .await
            .expect("a valid config builds");
        let owner = OwnerKey::new("c");
        let first = tokio::time::timeout(bound, pool.acquire_for(owner.clone())).await;
        let id = match first {
            Ok(Ok(lease)) => {
                lease.touch();
                if let Ok(op) = lease.begin_op() {
                    drop(op);
                }
                Some(lease.id())
            }
            _ => None,
        };
        let _ = tokio::time::timeout(bound, pool.acquire()).await;
        pool.release_owner(&owner, grace);
        tokio::time::sleep(within(idle_for)).await;
        let _ = pool.memory().await;
        let _ = pool.stats();
        if let Some(id) = id {
            let _ = tokio::time::timeout(bound, pool.destroy(id)).await;
        }
        let _ = tokio::time::timeout(bound, pool.shutdown()).await;
        drop(pool);
    });
}

#[test]
fn every_config_is_refused_with_its_field_or_runs_without_panicking() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1000,
        ..ProptestConfig::default()
    });
    let valid = std::cell::Cell::new(0u32);
    let result = runner.run(&(config(), dur(), dur()), |(config, idle_for, grace)| {
        match config.validate() {
            Err(e) => {
                prop_assert!(
                    e.to_string().contains(e.field()),
                    "{e} does not name {}",
                    e.field()
                );
                // The pool refuses it the same way before touching anything.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let built = rt.block_on(
                    Pool::builder(config, FakeLauncher::new())
                        .filesystem(Arc::new(MemFs::new()))
                        .build(),
                );
                prop_assert!(matches!(built, Err(PoolError::Config(ref c)) if *c == e));
            }
            Ok(()) => {
                valid.set(valid.get() + 1);
                short_life(config, idle_for, grace);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The strategy must exercise both sides, not only refusals. About 85 of the 1000
    // random configs are valid (70 to 90 seen); 40 is five standard deviations below,
    // so this fails only when the strategy stops producing valid configs.
    eprintln!("{} valid configs ran", valid.get());
    assert!(valid.get() >= 40, "only {} valid configs ran", valid.get());
}

#[test]
fn durations_and_sums_past_a_year_are_refused_by_name() {
    let year = PoolConfig::MAX_DURATION;
    let ok = PoolConfig::default().with_root(PathBuf::from("/sim"));
    let long = ok
        .clone()
        .with_launch_timeout(year + Duration::from_secs(1));
    assert_eq!(long.validate().unwrap_err().field(), "launch_timeout");
    let long = ok.clone().with_idle_timeout(Some(Duration::MAX));
    assert_eq!(long.validate().unwrap_err().field(), "idle_timeout");
    let sum = ok
        .clone()
        .with_kill_timeout(Duration::from_secs(86_400))
        .with_kill_attempts(400);
    assert_eq!(
        sum.validate().unwrap_err().field(),
        "kill_grace + kill_timeout * kill_attempts"
    );
    let huge = ok
        .clone()
        .with_max_browsers(usize::MAX)
        .with_spares(usize::MAX);
    assert_eq!(huge.validate().unwrap_err().field(), "max_browsers");
    let limit = ok.clone().with_max_browsers(PoolConfig::MAX_BROWSERS);
    assert_eq!(limit.validate(), Ok(()));
    let overflow = ok
        .clone()
        .with_kill_timeout(year)
        .with_kill_attempts(u32::MAX);
    assert!(overflow.validate().is_err());
    let edge = ok
        .with_launch_timeout(year / 4)
        .with_kill_grace(year / 4)
        .with_kill_timeout(year / 8)
        .with_kill_attempts(2)
        .with_remove_backoff(Backoff {
            initial: Duration::from_millis(100),
            max: year / 8,
        });
    assert_eq!(edge.validate(), Ok(()));
}
