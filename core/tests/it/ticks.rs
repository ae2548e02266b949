//! The reaper's heartbeat: it ticks only while the coarse activity clock is read, and a
//! stamp taken after a pause reads the real time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use browserpool::testing::{FakeClock, FakeLauncher};
use browserpool::{CapacityPolicy, EndReason, Pool, PoolConfig};

use crate::common::{ended, settle};

const MIN: Duration = Duration::from_secs(60);

/// Idle timeout 30 min, reap interval 60 s, tick 1 s: the defaults.
async fn pool(root: &std::path::Path) -> (Pool<FakeLauncher>, Arc<FakeClock>) {
    pool_with(root, |c| c).await
}

/// [`pool`] with `change` applied to its configuration.
async fn pool_with(
    root: &std::path::Path,
    change: impl FnOnce(PoolConfig) -> PoolConfig,
) -> (Pool<FakeLauncher>, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new());
    let config = PoolConfig::default()
        .with_max_browsers(2)
        .with_root(root)
        .with_prefix("bpt-");
    assert_eq!(config.tick, Duration::from_secs(1));
    assert_eq!(config.reap_interval, MIN);
    assert_eq!(config.idle_timeout, Some(30 * MIN));
    let config = change(config);
    let pool = Pool::builder(config, FakeLauncher::new())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    crate::common::watchdog();
    (pool, clock)
}

#[tokio::test(start_paused = true)]
async fn an_untouched_session_does_not_make_the_reaper_tick_every_second() {
    let root = tempfile::tempdir().unwrap();
    let (pool, clock) = pool(root.path()).await;
    let lease = pool.acquire().await.unwrap();
    let before = clock.sleeps.load(Ordering::Relaxed);
    tokio::time::sleep(20 * MIN).await;
    let sleeps = clock.sleeps.load(Ordering::Relaxed) - before;
    // Ticking every second would be 1200 sleeps; one per reap deadline or change is a
    // handful.
    assert!(sleeps < 60, "the reaper slept {sleeps} times in 20 minutes");
    assert!(pool.session(lease.id()).is_ok());
    tokio::time::sleep(11 * MIN).await;
    settle().await;
    match ended(pool.session(lease.id())) {
        EndReason::IdleReaped { idle_for } => assert!(idle_for >= 30 * MIN, "{idle_for:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_touch_after_a_pause_is_stamped_with_the_real_time() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _clock) = pool(root.path()).await;
    let lease = pool.acquire().await.unwrap();
    // Long enough for the reaper to stop ticking: its coarse clock is now ~20 min stale.
    tokio::time::sleep(20 * MIN).await;
    lease.touch();
    // A stale stamp would put the last activity at ~0 min and reap at ~31 min.
    tokio::time::sleep(29 * MIN).await;
    settle().await;
    assert!(
        pool.session(lease.id()).is_ok(),
        "reaped before 30 minutes after the touch"
    );
    tokio::time::sleep(3 * MIN).await;
    settle().await;
    assert!(matches!(
        ended(pool.session(lease.id())),
        EndReason::IdleReaped { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_session_in_use_keeps_the_clock_within_a_tick() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _clock) = pool(root.path()).await;
    let lease = pool.acquire().await.unwrap();
    tokio::time::sleep(10 * MIN).await;
    // A client that works steadily: a touch every 300 ms for 40 minutes keeps the
    // session alive well past its idle timeout.
    for _ in 0..(40 * 60 * 10 / 3) {
        lease.touch();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    settle().await;
    assert!(pool.session(lease.id()).is_ok());
    // 2400 ticks in a row that each waited: no spin guard fired on them.
    let s = pool.stats();
    assert_eq!((s.reaper_restarts, s.panics, s.unhealthy), (0, 0, None));
    tokio::time::sleep(32 * MIN).await;
    settle().await;
    assert!(matches!(
        ended(pool.session(lease.id())),
        EndReason::IdleReaped { .. }
    ));
}

/// While a client reads the coarse clock within every tick, the reaper ticks once per
/// tick without parking in between: a reaper that parked after each tick and was woken
/// by the next read would sleep twice per tick and take the pool's lock each time.
#[tokio::test(start_paused = true)]
async fn a_steadily_read_clock_costs_one_reaper_sleep_per_tick() {
    let root = tempfile::tempdir().unwrap();
    let (pool, clock) = pool(root.path()).await;
    let lease = pool.acquire().await.unwrap();
    settle().await;
    let before = clock.sleeps.load(Ordering::Relaxed);
    // 100 s of a touch every 300 ms (100 ticks of 1 s).
    for _ in 0..(100 * 10 / 3) {
        lease.touch();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sleeps = clock.sleeps.load(Ordering::Relaxed) - before;
    assert!(
        (90..=110).contains(&sleeps),
        "the reaper slept {sleeps} times in 100 ticks of steady use"
    );
    assert!(pool.session(lease.id()).is_ok());
}

/// When no stamp can matter, the reaper does not tick at all: with no live session, or
/// with live sessions whose stamps nothing reads (no idle timeout, `Reject` at capacity
/// and no owner release running). It sleeps until its next deadline, if any.
#[tokio::test(start_paused = true)]
async fn the_reaper_does_not_tick_while_no_stamp_can_matter() {
    let root = tempfile::tempdir().unwrap();
    let (_empty, clock) = pool(root.path()).await;
    settle().await;
    let before = clock.sleeps.load(Ordering::Relaxed);
    tokio::time::sleep(10 * MIN).await;
    let sleeps = clock.sleeps.load(Ordering::Relaxed) - before;
    assert_eq!(
        sleeps, 0,
        "an empty pool's reaper slept {sleeps} times in 10 min"
    );

    let root = tempfile::tempdir().unwrap();
    let (pool, clock) = pool_with(root.path(), |c| {
        c.with_idle_timeout(None)
            .with_capacity_policy(CapacityPolicy::Reject)
    })
    .await;
    let lease = pool.acquire().await.unwrap();
    settle().await;
    let before = clock.sleeps.load(Ordering::Relaxed);
    for _ in 0..(10 * 60 * 10 / 3) {
        lease.touch();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sleeps = clock.sleeps.load(Ordering::Relaxed) - before;
    assert_eq!(
        sleeps, 0,
        "the reaper slept {sleeps} times in 10 min of unread stamps"
    );
    assert!(pool.session(lease.id()).is_ok());
}

/// Sleeps of the reaper on the pool's clock during `secs` seconds of a client touching
/// `lease` every 300 ms.
async fn sleeps_while_touching(
    clock: &FakeClock,
    lease: &browserpool::Lease<FakeLauncher>,
    secs: u64,
) -> u64 {
    let before = clock.sleeps.load(Ordering::Relaxed);
    for _ in 0..(secs * 10 / 3) {
        lease.touch();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    clock.sleeps.load(Ordering::Relaxed) - before
}

/// Each reader of the stamps alone keeps the reaper ticking (about once per tick while
/// a client touches its session steadily): idle reaping, LRU eviction, and an owner's
/// grace period while it runs (and not after it).
#[tokio::test(start_paused = true)]
async fn each_reader_of_the_stamps_alone_keeps_the_reaper_ticking() {
    let ticking = 90..=110;
    // LRU eviction without an idle timeout; an idle timeout without LRU eviction.
    type Change = fn(PoolConfig) -> PoolConfig;
    let alone: [(&str, Change); 2] = [
        ("EvictLru", |c| c.with_idle_timeout(None)),
        ("idle timeout", |c| {
            c.with_capacity_policy(CapacityPolicy::Reject)
        }),
    ];
    for (what, change) in alone {
        let root = tempfile::tempdir().unwrap();
        let (pool, clock) = pool_with(root.path(), change).await;
        let lease = pool.acquire().await.unwrap();
        settle().await;
        let n = sleeps_while_touching(&clock, &lease, 100).await;
        assert!(ticking.contains(&n), "{what}: {n} sleeps in 100 s");
    }

    // Neither: only an owner's grace period, while it runs.
    let root = tempfile::tempdir().unwrap();
    let (pool, clock) = pool_with(root.path(), |c| {
        c.with_idle_timeout(None)
            .with_capacity_policy(CapacityPolicy::Reject)
    })
    .await;
    let owner = browserpool::OwnerKey::new("conn");
    let lease = pool.acquire_for(owner.clone()).await.unwrap();
    settle().await;
    assert_eq!(pool.release_owner(&owner, Duration::from_secs(200)), 1);
    let n = sleeps_while_touching(&clock, &lease, 100).await;
    assert!(ticking.contains(&n), "grace period: {n} sleeps in 100 s");
    // Past the grace (the session was used, so it stays): no reader is left.
    tokio::time::sleep(Duration::from_secs(110)).await;
    assert!(pool.session(lease.id()).is_ok());
    let n = sleeps_while_touching(&clock, &lease, 100).await;
    assert!(n <= 2, "after the grace period: {n} sleeps in 100 s");
}
