//! The supervised shell: panicking backend calls and tasks, a destroy that cannot finish,
//! calls from threads without a runtime, and the Drop path through the machine.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use browserpool::testing::{FakeCall, FakeClock, FakeLauncher, MemFs};
use browserpool::{
    AcquireError, Action, Clock, EndReason, OwnerKey, Pool, PoolConfig, SessionError, SessionId,
    TokioClock,
};

use crate::common::{ended, settle};

fn cfg() -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(2)
        .with_idle_timeout(Some(Duration::from_secs(10)))
        .with_reap_interval(Duration::from_secs(1))
        .with_tick(Duration::from_millis(500))
        .with_kill_timeout(Duration::from_secs(5))
        .with_kill_attempts(3)
        .with_root(PathBuf::from("/sim"))
        .with_prefix("bpool-")
}

struct Harness {
    pool: Pool<FakeLauncher>,
    launcher: FakeLauncher,
    fs: MemFs,
}

async fn harness_with(config: PoolConfig, clock: Arc<dyn Clock>) -> Harness {
    let launcher = FakeLauncher::new();
    let fs = MemFs::new();
    let pool = Pool::builder(config, launcher.clone())
        .filesystem(Arc::new(fs.clone()))
        .clock(clock)
        .instance("00000000abcd")
        .build()
        .await
        .unwrap();
    crate::common::watchdog();
    Harness { pool, launcher, fs }
}

async fn harness() -> Harness {
    harness_with(cfg(), Arc::new(TokioClock::new())).await
}

impl Harness {
    fn session_dirs(&self) -> Vec<PathBuf> {
        self.fs.dirs()
    }

    /// The pool still works: a fresh session comes and goes cleanly.
    async fn still_usable(&self) {
        let lease = self.pool.acquire().await.unwrap();
        let _op = lease.begin_op().unwrap();
        drop(_op);
        self.pool.destroy(lease.id()).await.unwrap();
    }

    /// Nothing alive, no directory, no slot.
    fn clean(&self) {
        assert_eq!(self.launcher.alive(), Vec::<SessionId>::new());
        assert_eq!(self.session_dirs(), Vec::<PathBuf>::new());
        let s = self.pool.stats();
        assert_eq!(
            (s.launching, s.live, s.stopping, s.removing),
            (0, 0, 0, 0),
            "{s:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_launch_fails_that_request_and_leaks_nothing() {
    let h = harness().await;
    h.launcher.panic_next(FakeCall::Launch, 1);
    match h.pool.acquire().await {
        Err(AcquireError::LaunchFailed { id, reason }) => {
            assert!(reason.contains("panicked"), "{reason}");
            settle().await;
            assert!(matches!(
                ended(h.pool.session(id)),
                EndReason::LaunchFailed { .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    settle().await;
    let s = h.pool.stats();
    assert_eq!(s.panics, 1);
    assert_eq!(s.totals.launch_failed, 1);
    h.clean();
    h.still_usable().await;
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_create_dir_fails_that_request_and_leaks_nothing() {
    let h = harness().await;
    h.fs.panic_next(FakeCall::CreateDir, 1);
    assert!(matches!(
        h.pool.acquire().await,
        Err(AcquireError::LaunchFailed { .. })
    ));
    settle().await;
    assert_eq!(h.pool.stats().panics, 1);
    h.clean();
    h.still_usable().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_kill_is_escalated_and_the_teardown_completes() {
    let h = harness().await;
    let lease = h.pool.acquire().await.unwrap();
    h.launcher.panic_next(FakeCall::Kill, 1);
    h.pool.destroy(lease.id()).await.unwrap();
    let s = h.pool.stats();
    assert_eq!(s.panics, 1);
    assert_eq!(s.totals.kill_escalations, 1);
    assert_eq!(s.totals.destroyed, 1);
    h.clean();
    h.still_usable().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_wait_gone_counts_as_a_timed_out_attempt() {
    let h = harness().await;
    let lease = h.pool.acquire().await.unwrap();
    h.launcher.panic_next(FakeCall::WaitGone, 1);
    let start = tokio::time::Instant::now();
    h.pool.destroy(lease.id()).await.unwrap();
    // The attempt whose wait panicked waited its kill_timeout, then the next one proved
    // the tree gone.
    assert!(start.elapsed() >= Duration::from_secs(5));
    let s = h.pool.stats();
    assert_eq!((s.panics, s.totals.kill_escalations), (1, 1));
    h.clean();
    h.still_usable().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_exit_watch_tears_the_session_down_as_crashed() {
    let h = harness().await;
    h.launcher.panic_next(FakeCall::Exited, 1);
    // The watcher may panic before the requester is woken: then the request is told why.
    let id = match h.pool.acquire().await {
        Ok(lease) => lease.id(),
        Err(AcquireError::EndedBeforeHandout { id, .. }) => id,
        Err(e) => panic!("{e}"),
    };
    settle().await;
    match ended(h.pool.session(id)) {
        EndReason::Crashed { exit } => assert!(exit.contains("panicked"), "{exit}"),
        other => panic!("{other:?}"),
    }
    let s = h.pool.stats();
    assert_eq!((s.panics, s.totals.crashed), (1, 1));
    h.clean();
    h.still_usable().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_memory_measurement_tears_that_session_down() {
    let h = harness().await;
    let a = h.pool.acquire().await.unwrap();
    let b = h.pool.acquire().await.unwrap();
    // The first session's measurement panics in the batch (which measures `a` first) and
    // again when the round falls back to one call per session.
    h.launcher.panic_next(FakeCall::Memory, 2);
    let m = h.pool.memory().await;
    // Left out, torn down as crashed; the other session is measured.
    assert_eq!(m.sessions.len(), 1);
    assert_eq!(m.sessions[0].0, b.id());
    settle().await;
    assert!(matches!(
        ended(h.pool.session(a.id())),
        EndReason::Crashed { .. }
    ));
    assert!(h.pool.session(b.id()).is_ok());
    // The batch's panic and the session's own.
    assert_eq!(h.pool.stats().panics, 2);
    assert_eq!(h.launcher.memory_batches.load(Ordering::Relaxed), 1);
    h.pool.destroy(b.id()).await.unwrap();
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batched_measurement_is_measured_again_one_session_at_a_time() {
    let h = harness().await;
    let a = h.pool.acquire().await.unwrap();
    let b = h.pool.acquire().await.unwrap();
    // Only the batch itself panics (as a broken batched path of a backend would): no
    // session is to blame, every session still gets its figure.
    h.launcher.panic_next(FakeCall::MemoryOfAll, 1);
    let before = h.launcher.memory_calls.load(Ordering::Relaxed);
    let m = h.pool.memory().await;
    let ids: Vec<_> = m.sessions.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![a.id(), b.id()], "both measured, in id order");
    assert_eq!(h.launcher.memory_calls.load(Ordering::Relaxed) - before, 2);
    settle().await;
    assert!(h.pool.session(a.id()).is_ok());
    assert!(h.pool.session(b.id()).is_ok());
    assert_eq!(h.pool.stats().panics, 1);
    assert_eq!(h.pool.stats().totals.crashed, 0);
    h.pool.destroy(a.id()).await.unwrap();
    h.pool.destroy(b.id()).await.unwrap();
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_removal_is_retried_like_a_failed_one() {
    let h = harness().await;
    let lease = h.pool.acquire().await.unwrap();
    h.fs.panic_next(FakeCall::RemoveDir, 1);
    h.pool.destroy(lease.id()).await.unwrap();
    assert_eq!(h.pool.stats().totals.remove_failures, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = h.pool.stats();
    assert_eq!((s.panics, s.totals.dirs_recovered), (1, 1));
    h.clean();
    h.still_usable().await;
}

#[tokio::test(start_paused = true)]
async fn a_kill_that_always_panics_keeps_its_slot_and_the_pool_serves_others() {
    let h = harness().await;
    let stuck = h.pool.acquire().await.unwrap();
    h.launcher.panic_next(FakeCall::Kill, u32::MAX);
    h.launcher.panic_next(FakeCall::WaitGone, u32::MAX);
    assert!(matches!(
        h.pool.destroy(stuck.id()).await,
        Err(SessionError::TeardownPending { .. })
    ));
    settle().await;
    // Never forgotten: still stopping, still counted against max_browsers.
    let s = h.pool.stats();
    assert_eq!(s.stopping, 1);
    assert!(s.totals.kill_stuck >= 1);
    assert!(s.panics >= 3);
    // The other slot still serves.
    let other = h.pool.acquire().await.unwrap();
    assert_ne!(other.id(), stuck.id());
}

#[tokio::test(start_paused = true)]
async fn destroy_returns_within_the_kill_budget_naming_a_session_that_will_not_die() {
    let h = harness().await;
    h.launcher.set_stubborn_kills(1_000);
    let lease = h.pool.acquire().await.unwrap();
    let id = lease.id();
    let start = tokio::time::Instant::now();
    // A hang-guard far beyond the budget: without the bound, destroy never returns.
    let r = tokio::time::timeout(Duration::from_secs(3600), h.pool.destroy(id))
        .await
        .expect("destroy did not return");
    let budget = h.pool.config().kill_budget();
    assert_eq!(r, Err(SessionError::TeardownPending { id, waited: budget }));
    let took = start.elapsed();
    assert!(
        took >= budget && took < budget + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(r.unwrap_err().to_string().contains(&id.to_string()));
    // The teardown goes on in the background: once the tree dies it finishes.
    assert_eq!(h.pool.stats().stopping, 1);
    h.launcher.crash(id, "finally died");
    tokio::time::sleep(Duration::from_secs(10)).await;
    h.clean();
}

#[test]
fn release_owner_from_a_thread_without_a_runtime_tears_down_on_the_pools_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let h = rt.block_on(harness());
    let owner = OwnerKey::new("conn-1");
    let lease = rt.block_on(h.pool.acquire_for(owner.clone())).unwrap();
    let n = std::thread::scope(|s| {
        s.spawn(|| h.pool.release_owner(&owner, Duration::ZERO))
            .join()
            .expect("release_owner panicked on a thread without a runtime")
    });
    assert_eq!(n, 1);
    rt.block_on(settle());
    assert_eq!(ended(h.pool.session(lease.id())), EndReason::OwnerReleased);
    h.clean();
}

#[test]
// The request future is handed out of `block_on` on purpose, to be dropped elsewhere.
#[allow(clippy::async_yields_async)]
fn an_acquire_dropped_on_another_thread_destroys_its_session_at_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let config = cfg()
        // Long ticks: the reaper's own dispatch must not be what performs the teardown.
        .with_tick(Duration::from_secs(60))
        .with_reap_interval(Duration::from_secs(60))
        .with_idle_timeout(Some(Duration::from_secs(600)));
    let h = rt.block_on(harness_with(config, Arc::new(TokioClock::new())));
    let acquire = Box::pin(h.pool.acquire());
    // Poll the request once, let the launch complete and the reply arrive, then drop the
    // request without polling it again, on a thread with no runtime.
    let acquire = rt.block_on(async move {
        let mut acquire = acquire;
        assert!(futures_poll_once(acquire.as_mut()).await.is_none());
        settle().await;
        acquire
    });
    assert_eq!(h.launcher.alive().len(), 1);
    std::thread::scope(|s| {
        s.spawn(move || drop(acquire)).join().unwrap();
    });
    rt.block_on(settle());
    assert_eq!(h.launcher.alive(), Vec::<SessionId>::new());
    assert_eq!(h.pool.stats().totals.destroyed, 1);
    h.clean();
}

/// Poll a future once; `Some` if it completed.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(move |cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_tears_sessions_down_through_the_machine() {
    let actions: Arc<Mutex<Vec<Action>>> = Arc::default();
    let log = actions.clone();
    let launcher = FakeLauncher::new();
    let fs = MemFs::new();
    let pool = Pool::builder(cfg(), launcher.clone())
        .filesystem(Arc::new(fs.clone()))
        .instance("00000000abcd")
        .observe(move |a| log.lock().unwrap().push(a.clone()))
        .build()
        .await
        .unwrap();
    crate::common::watchdog();
    let a = pool.acquire().await.unwrap().id();
    let b = pool.acquire().await.unwrap().id();
    actions.lock().unwrap().clear();
    drop(pool);
    let seen = actions.lock().unwrap().clone();
    for id in [a, b] {
        assert!(
            seen.iter().any(|a| matches!(
                a,
                Action::Ending { id: e, reason: EndReason::Shutdown, .. } if *e == id
            )),
            "{seen:#?}"
        );
        assert!(
            seen.contains(&Action::Finished {
                id,
                reason: EndReason::Shutdown,
                dir_removed: true
            }),
            "{seen:#?}"
        );
    }
    assert_eq!(launcher.alive(), Vec::<SessionId>::new());
    assert_eq!(launcher.drop_kills.load(Ordering::Relaxed), 2);
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
}

#[tokio::test(start_paused = true)]
async fn a_failed_launch_goes_through_removal_finished_and_a_tombstone() {
    let actions: Arc<Mutex<Vec<Action>>> = Arc::default();
    let log = actions.clone();
    let launcher = FakeLauncher::new();
    let pool = Pool::builder(cfg(), launcher.clone())
        .filesystem(Arc::new(MemFs::new()))
        .observe(move |a| log.lock().unwrap().push(a.clone()))
        .build()
        .await
        .unwrap();
    crate::common::watchdog();
    launcher.fail_next_launches(1);
    let Err(AcquireError::LaunchFailed { id, reason }) = pool.acquire().await else {
        panic!("expected a launch failure")
    };
    settle().await;
    let seen = actions.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|a| matches!(a, Action::RemoveDir { id: i, .. } if *i == id)));
    assert!(seen.contains(&Action::Finished {
        id,
        reason: EndReason::LaunchFailed {
            reason: reason.clone()
        },
        dir_removed: true
    }));
    assert_eq!(pool.stats().totals.launch_failed, 1);
    assert_eq!(ended(pool.session(id)), EndReason::LaunchFailed { reason });
    drop(pool);
    // Dropping a pool with nothing live emits no teardown.
    assert!(!actions
        .lock()
        .unwrap()
        .iter()
        .any(|a| a.endings().next().is_some()));
}

#[test]
fn a_panicking_kill_on_drop_does_not_abort_the_drop() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let h = rt.block_on(harness());
    rt.block_on(h.pool.acquire()).unwrap();
    h.launcher.panic_next(FakeCall::KillOnDrop, 1);
    h.fs.panic_next(FakeCall::RemoveDirSync, 1);
    let Harness { pool, fs, .. } = h;
    drop(pool);
    // The removal that panicked left the directory for the next start's sweep; the
    // marker is gone.
    assert_eq!(fs.entries().len(), 1, "{:?}", fs.entries());
}

#[tokio::test(start_paused = true)]
async fn a_reaper_that_panics_is_restarted_and_still_reaps() {
    let clock = Arc::new(FakeClock::new());
    let h = harness_with(cfg(), clock.clone()).await;
    let lease = h.pool.acquire().await.unwrap();
    settle().await;
    // Only the reaper sleeps on the clock now: its next sleep panics.
    clock.panic_next_sleeps.store(1, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let s = h.pool.stats();
    assert_eq!((s.reaper_restarts, s.panics, s.unhealthy), (1, 1, None));
    assert!(h.pool.reaper_running());
    assert!(matches!(
        ended(h.pool.session(lease.id())),
        EndReason::IdleReaped { .. }
    ));
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn panics_with_reaper_rounds_between_them_never_make_the_pool_unhealthy() {
    let (_guard, logs) = crate::common::capture(tracing::Level::ERROR);
    let clock = Arc::new(FakeClock::new());
    let h = harness_with(cfg(), clock.clone()).await;
    let lease = h.pool.acquire().await.unwrap();
    settle().await;
    for n in 1..=7 {
        // One panic, then rounds that complete: each restart is the first in a row.
        clock.panic_next_sleeps.store(1, Ordering::Release);
        tokio::time::sleep(Duration::from_secs(2)).await;
        lease.touch();
        let s = h.pool.stats();
        assert_eq!((s.reaper_restarts, s.unhealthy), (n, None));
        assert!(
            crate::common::captured(&logs).contains(&format!("restarts={n}")),
            "the log counts restart {n}"
        );
    }
    assert!(h.pool.reaper_running());
    h.pool.destroy(lease.id()).await.unwrap();
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn a_reaper_that_always_panics_makes_the_pool_unhealthy_and_it_says_so() {
    let clock = Arc::new(FakeClock::new());
    let h = harness_with(cfg(), clock.clone()).await;
    let lease = h.pool.acquire().await.unwrap();
    settle().await;
    // 50 panics, then the clock works again: a supervisor that kept restarting the
    // reaper would use them all and go on (this test then fails instead of hanging).
    clock.panic_next_sleeps.store(50, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = h.pool.stats();
    assert_eq!(s.reaper_restarts, 5);
    assert_eq!(clock.panic_next_sleeps.load(Ordering::Acquire), 50 - 5);
    let reason = s.unhealthy.expect("unhealthy");
    assert!(reason.contains("reaper"), "{reason}");
    assert!(!h.pool.reaper_running());
    assert!(matches!(
        h.pool.acquire().await,
        Err(AcquireError::Unhealthy { .. })
    ));
    assert!(matches!(
        h.pool.session(lease.id()),
        Err(SessionError::PoolUnhealthy { .. })
    ));
    // Destroying still works (it only makes the pool smaller).
    clock.panic_next_sleeps.store(0, Ordering::Release);
    h.pool.destroy(lease.id()).await.unwrap();
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn an_acquire_served_after_the_pool_turned_unhealthy_says_so_and_leaks_nothing() {
    let clock = Arc::new(FakeClock::new());
    let h = harness_with(cfg(), clock.clone()).await;
    // A live session keeps the reaper sleeping on the clock (with none it parks).
    let first = h.pool.acquire().await.unwrap();
    settle().await;
    h.launcher.set_launch_delay(Duration::from_secs(5));
    let mut acquire = Box::pin(h.pool.acquire());
    assert!(futures_poll_once(&mut acquire).await.is_none(), "launching");
    // Let the launch worker start (and start its launch timeout on the clock).
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The reaper dies for good while the launch is under way.
    clock.panic_next_sleeps.store(50, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.pool.stats().unhealthy.is_some());
    assert_eq!(h.pool.stats().launching, 1, "{:?}", h.pool.stats());
    // The launch completes and the session is handed to the request, which is told the
    // pool is unhealthy (as a later `session()` call would be), and the session it will
    // never get a lease on is torn down instead of waiting for a reaper that is gone.
    assert!(matches!(
        acquire.await,
        Err(AcquireError::Unhealthy { reason }) if reason.contains("reaper")
    ));
    settle().await;
    assert_eq!(h.launcher.alive(), vec![first.id()]);
    clock.panic_next_sleeps.store(0, Ordering::Release);
    h.pool.destroy(first.id()).await.unwrap();
    h.clean();
}

#[tokio::test(start_paused = true)]
async fn a_clock_that_wakes_early_makes_the_pool_unhealthy_instead_of_spinning() {
    // Clock::sleep_until must never return early; one that does would make the reaper
    // loop without ever waiting (a full core, and under paused time a hung test).
    let clock = Arc::new(FakeClock::new());
    let h = harness_with(cfg(), clock.clone()).await;
    let lease = h.pool.acquire().await.unwrap();
    settle().await;
    // 1000 early wakes, then the clock keeps its contract again (so that a reaper that
    // does not notice ends up sleeping, and this test fails instead of hanging).
    clock.wake_early_next.store(1000, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = h.pool.stats();
    let reason = s.unhealthy.expect("unhealthy");
    assert!(reason.contains("before the deadline"), "{reason}");
    assert_eq!(s.reaper_restarts, 5);
    assert!(!h.pool.reaper_running());
    assert_eq!(
        clock.wake_early_next.load(Ordering::Acquire),
        1000 - 5,
        "one early wake per reaper run, then it gave up instead of spinning"
    );
    clock.wake_early_next.store(0, Ordering::Release);
    h.pool.destroy(lease.id()).await.unwrap();
    h.clean();
}
