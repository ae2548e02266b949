//! Prewarmed spares through the async Pool, under tokio's paused time, with the in-crate
//! fake launcher (launches take one second) and the real filesystem in a temporary root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use browserpool::testing::FakeLauncher;
use browserpool::{ConfigError, EndReason, Pool, PoolConfig, PoolError, RetireCause, SessionError};

const LAUNCH: Duration = Duration::from_secs(1);

use crate::common::session_dirs;

fn cfg(root: &Path, spares: usize) -> PoolConfig {
    crate::common::cfg(root)
        .with_max_browsers(3)
        .with_spares(spares)
}

async fn pool(config: PoolConfig) -> (Pool<FakeLauncher>, FakeLauncher) {
    crate::common::pool_with_delay(config, LAUNCH).await
}

fn launches(l: &FakeLauncher) -> u64 {
    l.launches.load(Ordering::Relaxed)
}

async fn wait_ready(pool: &Pool<FakeLauncher>, n: usize) {
    for _ in 0..200 {
        if pool.stats().spares_ready == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} spares never became ready: {:?}", pool.stats());
}

#[tokio::test(start_paused = true)]
async fn config_with_more_spares_than_browsers_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new();
    let err = Pool::new(cfg(root.path(), 4), launcher.clone())
        .await
        .err()
        .unwrap();
    match err {
        PoolError::Config(e @ ConfigError::TooManySpares { .. }) => {
            assert_eq!(e.field(), "spares");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        launches(&launcher),
        0,
        "nothing launched for a refused config"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ready_spare_is_handed_out_without_a_launch_and_replaced_in_the_background() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), 1)).await;
    wait_ready(&pool, 1).await;
    assert_eq!(launches(&launcher), 1);
    let [spare] = launcher.alive()[..] else {
        panic!()
    };
    let before = tokio::time::Instant::now();
    let lease = pool.acquire().await.unwrap();
    assert_eq!(lease.id(), spare);
    assert_eq!(
        tokio::time::Instant::now(),
        before,
        "no launch was waited for (paused time did not move)"
    );
    assert!(pool.session_dir(spare).join("Preferences").exists());
    let st = pool.stats();
    assert_eq!((st.totals.spare_hits, st.totals.spare_misses), (1, 0));
    assert_eq!((st.live, st.spares_launching), (1, 1));
    wait_ready(&pool, 1).await;
    assert_eq!(launches(&launcher), 2, "one replacement");
    let report = pool.shutdown().await;
    assert!(report.dirs_left.is_empty());
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_used_browser_never_comes_back_as_a_spare() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), 1)).await;
    let mut handed = Vec::new();
    for _ in 0..5 {
        wait_ready(&pool, 1).await;
        let lease = pool.acquire().await.unwrap();
        assert!(
            !handed.contains(&lease.id()),
            "{} handed out twice",
            lease.id()
        );
        {
            let _op = lease.begin_op().unwrap();
        }
        handed.push(lease.id());
        pool.destroy(lease.id()).await.unwrap();
    }
    let st = pool.stats();
    assert_eq!(st.totals.spare_hits, 5);
    assert_eq!(st.totals.destroyed, 5);
    pool.shutdown().await;
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_crashed_spare_is_replaced_and_an_old_one_retired() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) =
        pool((cfg(root.path(), 1)).with_spare_max_age(Duration::from_secs(30))).await;
    wait_ready(&pool, 1).await;
    let [spare] = launcher.alive()[..] else {
        panic!()
    };
    assert!(launcher.crash(spare, "killed by signal 9"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        pool.session(spare),
        Err(SessionError::Ended {
            reason: EndReason::Crashed { .. },
            ..
        })
    ));
    wait_ready(&pool, 1).await;
    let [second] = launcher.alive()[..] else {
        panic!()
    };
    assert_ne!(second, spare);
    // Not idle-reaped after 10 s; retired at 30 s and replaced.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(launcher.alive(), vec![second]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    wait_ready(&pool, 1).await;
    assert!(matches!(
        pool.session(second),
        Err(SessionError::Ended {
            reason: EndReason::Retired(RetireCause::SpareMaxAge),
            ..
        })
    ));
    let st = pool.stats();
    assert_eq!(
        (st.totals.crashed, st.totals.retired, st.totals.reaped),
        (1, 1, 0)
    );
    assert_eq!(launches(&launcher), 3);
    pool.shutdown().await;
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn refills_back_off_after_launch_failures() {
    let root = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new();
    launcher.fail_next_launches(3);
    let pool = Pool::new(cfg(root.path(), 1), launcher.clone())
        .await
        .unwrap();
    crate::common::watchdog();
    // Failures at ~0 s, then backoff 1 s, 2 s, 4 s: launches at ~0, ~1, ~3, ~7 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(launches(&launcher), 1);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(launches(&launcher), 2);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(launches(&launcher), 3);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(launches(&launcher), 3, "still backing off");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(launches(&launcher), 4);
    assert_eq!(pool.stats().spares_ready, 1);
    assert_eq!(pool.stats().totals.launch_failed, 3);
    pool.shutdown().await;
    assert!(session_dirs(root.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_tears_spares_down_like_any_session() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), 2)).await;
    wait_ready(&pool, 2).await;
    let report = pool.shutdown().await;
    assert!(report.dirs_left.is_empty());
    assert_eq!(pool.stats().totals.shutdown, 2);
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
}

#[test]
fn dropping_a_pool_with_spares_ready_and_launching_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (pool, launcher) = rt.block_on(async {
        let (pool, launcher) = pool(cfg(root.path(), 2)).await;
        wait_ready(&pool, 1).await;
        assert_eq!(pool.stats().spares_launching, 1);
        (pool, launcher)
    });
    rt.block_on(async move { drop(pool) });
    assert!(launcher.alive().is_empty(), "{:?}", launcher.alive());
    assert!(session_dirs(root.path()).is_empty());
    // The launch that was under way completes later, with the pool gone: the safety
    // net, not the dropped pool's machine, takes its browser and its directory.
    let launched = launcher.launches.load(Ordering::Relaxed);
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(60)).await });
    assert_eq!(launcher.launches.load(Ordering::Relaxed), launched);
    assert!(launcher.alive().is_empty(), "{:?}", launcher.alive());
    assert!(session_dirs(root.path()).is_empty());
}
