//! The async Pool under tokio's paused time, with the in-crate fake launcher and the real
//! filesystem in a temporary root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use browserpool::testing::FakeLauncher;
use browserpool::{
    AcquireError, CapacityPolicy, ConfigError, EndReason, OwnerKey, Pool, PoolError, RetireCause,
    SessionError, SessionId,
};

use crate::common::{cfg, ended, entries, pool, session_dirs, settle};

#[tokio::test(start_paused = true)]
async fn idle_session_is_reaped_with_its_processes_and_directory() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    let lease = pool.acquire().await.unwrap();
    let id = lease.id();
    assert!(pool.session_dir(id).join("Preferences").exists());
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(pool.session(id).is_ok(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    match ended(pool.session(id)) {
        EndReason::IdleReaped { idle_for } => assert!(idle_for >= Duration::from_secs(10)),
        other => panic!("{other:?}"),
    }
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
    assert!(lease.begin_op().is_err(), "a held lease learns it ended");
    assert_eq!(pool.stats().totals.reaped, 1);
}

#[tokio::test(start_paused = true)]
async fn a_busy_session_survives_its_idle_deadline() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    let lease = pool.acquire().await.unwrap();
    {
        let _op = lease.begin_op().unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(pool.session(lease.id()).is_ok());
        assert_eq!(pool.stats().busy, 1);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        pool.session(lease.id()).is_ok(),
        "idle clock restarts when the op ends"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    settle().await;
    assert!(matches!(
        ended(pool.session(lease.id())),
        EndReason::IdleReaped { .. }
    ));
    assert!(launcher.alive().is_empty());
}

#[tokio::test(start_paused = true)]
async fn touching_keeps_a_session_alive() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _l) = pool(cfg(root.path())).await;
    let lease = pool.acquire().await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        lease.touch();
    }
    assert!(pool.session(lease.id()).is_ok());
}

#[tokio::test(start_paused = true)]
async fn evict_lru_replaces_the_least_recently_used_session() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    let a = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.touch(); // a is now more recent than b
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = pool.acquire().await.unwrap();
    assert_eq!(ended(pool.session(b.id())), EndReason::Evicted);
    assert!(pool.session(a.id()).is_ok());
    assert!(pool.session(c.id()).is_ok());
    settle().await;
    assert_eq!(launcher.alive(), vec![a.id(), c.id()]);
    assert_eq!(session_dirs(root.path()).len(), 2);
    assert_eq!(pool.stats().totals.evicted, 1);
}

#[tokio::test(start_paused = true)]
async fn evict_lru_waits_when_every_session_is_busy_then_errors() {
    let root = tempfile::tempdir().unwrap();
    let config = cfg(root.path()).with_acquire_timeout(Duration::from_secs(3));
    let (pool, _l) = pool(config).await;
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let _ga = a.begin_op().unwrap();
    let _gb = b.begin_op().unwrap();
    let start = tokio::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(
        err,
        AcquireError::WaitTimedOut {
            waited: Duration::from_secs(3)
        }
    );
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert!(pool.session(a.id()).is_ok() && pool.session(b.id()).is_ok());
}

#[tokio::test(start_paused = true)]
async fn reject_policy_refuses_at_capacity() {
    let root = tempfile::tempdir().unwrap();
    let config = cfg(root.path()).with_capacity_policy(CapacityPolicy::Reject);
    let (pool, _l) = pool(config).await;
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    assert_eq!(
        pool.acquire().await.unwrap_err(),
        AcquireError::AtCapacity { max: 2 }
    );
    assert_eq!(pool.stats().totals.rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn wait_policy_queues_until_a_slot_frees_or_times_out() {
    let root = tempfile::tempdir().unwrap();
    let config = cfg(root.path())
        .with_capacity_policy(CapacityPolicy::Wait {
            timeout: Duration::from_secs(5),
        })
        .with_idle_timeout(None);
    let (pool, _l) = pool(config).await;
    let pool = Arc::new(pool);
    let a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    let p2 = pool.clone();
    let waiter = tokio::spawn(async move { p2.acquire().await.map(|l| l.id()) });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pool.stats().waiting, 1);
    pool.destroy(a.id()).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(pool.session(got).is_ok());
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::WaitTimedOut { .. }));
}

#[tokio::test(start_paused = true)]
async fn destroy_waits_for_processes_and_directory_and_explains_later_calls() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    let lease = pool.acquire().await.unwrap();
    let id = lease.id();
    pool.destroy(id).await.unwrap();
    assert!(launcher.alive().is_empty());
    assert!(!pool.session_dir(id).exists());
    assert_eq!(
        pool.destroy(id).await,
        Err(SessionError::Ended {
            id,
            reason: EndReason::Destroyed
        })
    );
    assert_eq!(
        pool.session(SessionId(9999)).unwrap_err(),
        SessionError::Unknown {
            id: SessionId(9999)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn released_owner_sessions_go_after_grace_unless_used() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path()).with_max_browsers(3)).await;
    let conn = OwnerKey::new("conn-1");
    let other = OwnerKey::new("conn-2");
    let a = pool.acquire_for(conn.clone()).await.unwrap();
    let b = pool.acquire_for(conn.clone()).await.unwrap();
    let c = pool.acquire_for(other).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(pool.release_owner(&conn, Duration::from_secs(3)), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.touch(); // the client came back and used b
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(ended(pool.session(a.id())), EndReason::OwnerReleased);
    assert!(pool.session(b.id()).is_ok());
    assert!(pool.session(c.id()).is_ok());
    assert_eq!(launcher.alive(), vec![b.id(), c.id()]);
}

#[tokio::test(start_paused = true)]
async fn a_reclaimed_session_outlives_its_owners_release() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path()).with_max_browsers(3)).await;
    let conn = OwnerKey::new("conn-1");
    let a = pool.acquire_for(conn.clone()).await.unwrap();
    let b = pool.acquire_for(conn.clone()).await.unwrap();
    let c = pool.acquire().await.unwrap();
    assert!(!pool.reclaim(a.id()), "nothing to reclaim before a release");
    assert_eq!(pool.release_owner(&conn, Duration::from_secs(3)), 2);
    assert!(pool.reclaim(a.id()), "a's release was pending");
    assert!(!pool.reclaim(a.id()), "and is not any more");
    assert!(!pool.reclaim(c.id()), "c was never released");
    tokio::time::sleep(Duration::from_secs(4)).await;
    settle().await;
    assert!(pool.session(a.id()).is_ok());
    assert_eq!(ended(pool.session(b.id())), EndReason::OwnerReleased);
    assert!(
        !pool.reclaim(b.id()),
        "an ended session has nothing to reclaim"
    );
    assert_eq!(launcher.alive(), vec![a.id(), c.id()]);
}

#[tokio::test(start_paused = true)]
async fn the_pool_reports_its_instance_and_the_config_it_was_given() {
    let root = tempfile::tempdir().unwrap();
    let config = cfg(root.path()).with_max_browsers(3).with_max_uses(Some(7));
    let (pool, _launcher) = pool(config.clone()).await;
    assert_eq!(pool.config(), &config);
    let instance = pool.instance().to_owned();
    assert_eq!(instance.len(), 12, "{instance}");
    assert!(
        instance
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{instance}"
    );
    let lease = pool.acquire().await.unwrap();
    let name = format!("bpx-{instance}-{}", lease.id().0);
    assert_eq!(pool.session_dir(lease.id()), root.path().join(&name));
    assert!(root.path().join(&name).join("Preferences").exists());
    assert_eq!(
        entries(root.path()),
        vec![name, format!("bpx-{instance}.lock")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_browser_is_cleaned_up_and_explained() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    let lease = pool.acquire().await.unwrap();
    assert!(launcher.crash(lease.id(), "killed by signal 9"));
    settle().await;
    let err = lease.begin_op().err().unwrap();
    assert_eq!(
        err,
        SessionError::Ended {
            id: lease.id(),
            reason: EndReason::Crashed {
                exit: "killed by signal 9".into()
            }
        }
    );
    assert!(err
        .to_string()
        .contains("exited by itself (killed by signal 9)"));
    assert!(session_dirs(root.path()).is_empty());
    assert_eq!(pool.stats().totals.crashed, 1);
    // The slot is free again.
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    assert_eq!(pool.stats().totals.evicted, 0);
}

#[tokio::test(start_paused = true)]
async fn max_uses_retires_after_the_last_operation() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _l) = pool(cfg(root.path()).with_max_uses(Some(3))).await;
    let lease = pool.acquire().await.unwrap();
    for _ in 0..3 {
        let _op = lease.begin_op().unwrap();
    }
    settle().await;
    assert_eq!(
        ended(pool.session(lease.id())),
        EndReason::Retired(RetireCause::MaxUses)
    );
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_retires_an_idle_session() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _l) = pool(
        cfg(root.path())
            .with_max_lifetime(Some(Duration::from_secs(5)))
            .with_idle_timeout(None),
    )
    .await;
    let lease = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        ended(pool.session(lease.id())),
        EndReason::Retired(RetireCause::MaxLifetime)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_launch_leaves_nothing_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    launcher.fail_next_launches(1);
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::LaunchFailed { .. }), "{err}");
    settle().await;
    assert!(session_dirs(root.path()).is_empty());
    assert!(pool.acquire().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_launch_that_hangs_times_out() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path()).with_launch_timeout(Duration::from_secs(2))).await;
    launcher.set_launch_delay(Duration::from_secs(3600));
    let err = pool.acquire().await.unwrap_err();
    assert!(
        err.to_string().contains("no usable browser within"),
        "{err}"
    );
    settle().await;
    assert!(session_dirs(root.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stubborn_kill_is_escalated_without_blocking_other_acquires() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path()).with_kill_timeout(Duration::from_secs(5))).await;
    let pool = Arc::new(pool);
    launcher.set_stubborn_kills(1);
    let a = pool.acquire().await.unwrap();
    launcher.set_stubborn_kills(0);
    let p2 = pool.clone();
    let id = a.id();
    let destroying = tokio::spawn(async move { p2.destroy(id).await });
    settle().await;
    // The first SIGKILL did not take; meanwhile another request is served at once.
    let t0 = tokio::time::Instant::now();
    let b = pool.acquire().await.unwrap();
    assert_eq!(t0.elapsed(), Duration::ZERO);
    destroying.await.unwrap().unwrap();
    assert_eq!(launcher.alive(), vec![b.id()]);
    assert!(pool.stats().totals.kill_escalations >= 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_destroys_everything_and_refuses_new_requests() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path()).with_max_browsers(3)).await;
    for _ in 0..3 {
        pool.acquire().await.unwrap();
    }
    let started = tokio::time::Instant::now();
    let report = pool.shutdown().await;
    // Paused time: this is the runtime's clock, not the wall clock. The fake's kills
    // take none of it, so a shutdown that took any waited for its budget instead of
    // returning when everything was torn down.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown took {:?} of paused time",
        started.elapsed()
    );
    assert_eq!(report.torn_down, 3);
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
    assert_eq!(
        pool.acquire().await.unwrap_err(),
        AcquireError::ShuttingDown
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!pool.reaper_running(), "the reaper stops with the pool");
    let again = pool.shutdown().await;
    assert_eq!(
        again.torn_down, 0,
        "a second shutdown has nothing to tear down"
    );
    assert_eq!(pool.stats().totals.shutdown, 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_acquire_does_not_leak_its_session() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path())).await;
    launcher.set_launch_delay(Duration::from_secs(2));
    let r = tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await;
    assert!(r.is_err(), "gave up before the launch finished");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(launcher.alive().is_empty());
    assert!(session_dirs(root.path()).is_empty());
    assert_eq!(pool.stats().totals.abandoned, 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_config_is_refused_before_anything_happens() {
    let root = tempfile::tempdir().unwrap();
    // A dead pool's leftover (no marker) that a sweep would remove.
    let leftover = "bpx-00000000dead-1";
    std::fs::create_dir(root.path().join(leftover)).unwrap();
    let err = Pool::new(cfg(root.path()).with_max_browsers(0), FakeLauncher::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(
        err,
        PoolError::Config(ConfigError::ZeroMaxBrowsers)
    ));
    assert_eq!(entries(root.path()), vec![leftover], "nothing swept");
}

// ----------------------------------------------------------------- drop safety net

fn acquire_two(rt: &tokio::runtime::Runtime, root: &Path) -> (Pool<FakeLauncher>, FakeLauncher) {
    rt.block_on(async {
        let (pool, launcher) = pool(cfg(root)).await;
        pool.acquire().await.unwrap();
        pool.acquire().await.unwrap();
        assert_eq!(launcher.alive().len(), 2);
        assert_eq!(session_dirs(root).len(), 2);
        (pool, launcher)
    })
}

fn assert_clean(root: &Path, launcher: &FakeLauncher) {
    assert!(
        launcher.alive().is_empty(),
        "browsers left: {:?}",
        launcher.alive()
    );
    assert_eq!(launcher.drop_kills.load(Ordering::Relaxed), 2);
    assert!(
        entries(root).is_empty(),
        "left under root: {:?}",
        entries(root)
    );
}

#[test]
fn dropping_the_pool_in_a_multi_thread_runtime_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (pool, launcher) = acquire_two(&rt, root.path());
    // Drop on a worker thread, inside a task.
    rt.block_on(async move {
        tokio::spawn(async move { drop(pool) }).await.unwrap();
    });
    assert_clean(root.path(), &launcher);
}

#[test]
fn dropping_the_pool_in_a_current_thread_runtime_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pool, launcher) = acquire_two(&rt, root.path());
    rt.block_on(async move { drop(pool) });
    assert_clean(root.path(), &launcher);
}

#[test]
fn dropping_the_pool_outside_any_runtime_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pool, launcher) = acquire_two(&rt, root.path());
    drop(rt);
    drop(pool);
    assert_clean(root.path(), &launcher);
}

#[test]
fn dropping_the_pool_while_unwinding_from_a_panic_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (pool, launcher) = acquire_two(&rt, root.path());
    let joined = rt.block_on(async move {
        tokio::spawn(async move {
            let _owned = pool;
            panic!("handler bug while holding the pool");
        })
        .await
    });
    assert!(joined.unwrap_err().is_panic());
    assert_clean(root.path(), &launcher);
}

// ----------------------------------------------------------------- concurrency

#[test]
fn concurrent_clients_never_exceed_max_browsers_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let launcher = rt.block_on(async {
        let (pool, launcher) = pool(
            cfg(root.path())
                .with_max_browsers(3)
                .with_acquire_timeout(Duration::from_secs(30)),
        )
        .await;
        let pool = Arc::new(pool);
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..8u64 {
            let pool = pool.clone();
            tasks.spawn(async move {
                let mut served = 0;
                for round in 0..40u64 {
                    let Ok(lease) = pool.acquire().await else {
                        continue;
                    };
                    served += 1;
                    if let Ok(op) = lease.begin_op() {
                        tokio::task::yield_now().await;
                        drop(op);
                    }
                    // A third of the clients forget their sessions; the rest destroy.
                    // A destroy may find its session evicted already, but the fake's
                    // trees always die: a teardown still pending after the kill budget
                    // is a stuck pool (and failing here beats waiting out every
                    // client's acquire timeouts).
                    if (client + round) % 3 != 0 {
                        if let Err(e @ SessionError::TeardownPending { .. }) =
                            pool.destroy(lease.id()).await
                        {
                            panic!("client {client} round {round}: {e}");
                        }
                    }
                }
                served
            });
        }
        let mut served = 0;
        // In the order they finish, so that the first client to fail fails the test.
        while let Some(t) = tasks.join_next().await {
            served += t.unwrap();
        }
        assert!(served > 0);
        let st = pool.stats();
        assert!(
            st.totals.evicted > 0,
            "forgotten sessions were evicted: {st:?}"
        );
        assert!(st.live <= 3);
        let report = pool.shutdown().await;
        assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
        launcher
    });
    let peak = launcher.peak_alive.load(Ordering::Relaxed);
    assert!((1..=3).contains(&peak), "peak of {peak} live browsers");
    assert!(launcher.alive().is_empty());
    assert!(
        session_dirs(root.path()).is_empty(),
        "{:?}",
        entries(root.path())
    );
}

#[tokio::test(start_paused = true)]
async fn sessions_snapshot_lists_owner_busy_and_uses_and_forgets_finished_sessions() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _l) = pool(cfg(root.path())).await;
    let a = pool.acquire_for(OwnerKey::new("conn-a")).await.unwrap();
    let b = pool.acquire().await.unwrap();
    let op = a.begin_op().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snap = pool.sessions();
    assert_eq!(
        snap.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a.id(), b.id()]
    );
    assert_eq!(snap[0].owner, Some(OwnerKey::new("conn-a")));
    assert!(snap[0].is_busy());
    assert_eq!(snap[0].uses, 1);
    assert_eq!(snap[1].owner, None);
    assert!(!snap[1].is_busy());
    assert!(snap[1].idle_for >= Duration::from_secs(1), "{:?}", snap[1]);
    assert_eq!(snap[1].dir, pool.session_dir(b.id()));
    drop(op);
    pool.destroy(b.id()).await.unwrap();
    settle().await;
    let snap = pool.sessions();
    assert_eq!(snap.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a.id()]);
    assert!(!snap[0].is_busy());
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn owned_op_guards_keep_a_session_busy_across_tasks_until_the_last_is_dropped() {
    let root = tempfile::tempdir().unwrap();
    let (pool, _l) = pool(cfg(root.path()).with_max_browsers(1).with_max_uses(Some(3))).await;
    let lease = pool.acquire().await.unwrap();
    let id = lease.id();
    // Two commands in flight, held by another task past the idle timeout (10 s).
    let g1 = lease.begin_op_owned().unwrap();
    let g2 = lease.begin_op_owned().unwrap();
    assert_eq!(lease.activity().in_flight(), 2);
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(g1);
        g2
    });
    tokio::time::sleep(Duration::from_secs(31)).await;
    let g2 = holder.await.unwrap();
    assert!(
        pool.session(id).is_ok(),
        "reaped while an operation was in flight"
    );
    assert!(pool.sessions()[0].is_busy());
    // Not evicted either while busy: a second request waits instead.
    let waiter = tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await;
    assert!(waiter.is_err(), "the busy session was evicted");
    drop(g2);
    assert_eq!(lease.activity().in_flight(), 0);
    assert_eq!(lease.activity().uses(), 2);
    // The third use reaches max_uses: the owned guard sends the same retire hint.
    drop(lease.begin_op_owned().unwrap());
    settle().await;
    assert_eq!(
        ended(pool.session(id)),
        EndReason::Retired(RetireCause::MaxUses)
    );
    assert!(lease.begin_op_owned().is_err());
}
