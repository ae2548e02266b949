//! The memory budget through the async Pool: the sampler measures every session with the
//! fake launcher's settable figures, and the machine's decisions are carried out.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// PoolConfig is being made #[non_exhaustive]: code outside core builds it from
// default() and assigns fields, which this lint would turn into a struct literal.
#![allow(clippy::field_reassign_with_default)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use browserpool::testing::{FakeCall, FakeLauncher};
use browserpool::{
    AcquireError, CapacityPolicy, EndReason, MemoryLimit, Pool, PoolConfig, SessionError,
};

const MIB: u64 = 1 << 20;

fn cfg(root: &Path, budget_mib: Option<u64>, per_session_mib: Option<u64>) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.max_browsers = 8;
    c.idle_timeout = None;
    c.tick = Duration::from_millis(500);
    c.reap_interval = Duration::from_secs(1);
    c.root = root.to_owned();
    c.prefix = "bpx-".into();
    c.memory_budget = budget_mib.map(|m| m * MIB);
    c.max_session_memory = per_session_mib.map(|m| m * MIB);
    c.memory_interval = Duration::from_secs(1);
    c
}

async fn pool(config: PoolConfig) -> (Pool<FakeLauncher>, FakeLauncher) {
    let launcher = FakeLauncher::new();
    let pool = Pool::new(config, launcher.clone()).await.unwrap();
    crate::common::watchdog();
    (pool, launcher)
}

/// Let one sampling round (1 s) pass, and the teardowns it causes.
async fn one_round() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

fn ended(r: Result<impl std::fmt::Debug, SessionError>) -> EndReason {
    match r {
        Err(SessionError::Ended { reason, .. }) => reason,
        other => panic!("expected Ended, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_third_browser_past_the_budget_evicts_the_least_recently_used_idle_one() {
    let root = tempfile::tempdir().unwrap();
    // The fake reports 80 MiB per browser: two fit in 200, three do not.
    let (pool, launcher) = pool(cfg(root.path(), Some(200), None)).await;
    let a = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let b = pool.acquire().await.unwrap();
    b.touch();
    one_round().await;
    let st = pool.stats();
    assert_eq!(st.memory_used, 160 * MIB);
    assert_eq!(st.memory_budget, Some(200 * MIB));
    let c = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        ended(pool.session(a.id())),
        EndReason::Memory {
            limit: MemoryLimit::Budget,
            pss_bytes: 80 * MIB
        }
    );
    assert!(pool.session(b.id()).is_ok() && pool.session(c.id()).is_ok());
    assert_eq!(launcher.alive(), vec![b.id(), c.id()]);
    assert_eq!(pool.stats().totals.memory, 1);
    assert_eq!(pool.stats().totals.evicted, 0);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn growth_past_the_budget_evicts_idle_sessions_never_the_busy_one() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), Some(300), None)).await;
    let busy = pool.acquire().await.unwrap();
    let idle = pool.acquire().await.unwrap();
    let op = busy.begin_op().unwrap();
    one_round().await;
    // The busy (and least recently active) session grows: the idle one must go.
    launcher.set_memory(busy.id(), 250 * MIB);
    one_round().await;
    assert!(matches!(
        ended(pool.session(idle.id())),
        EndReason::Memory {
            limit: MemoryLimit::Budget,
            ..
        }
    ));
    // Still over the budget with one session left: it is kept, and stats say so.
    launcher.set_memory(busy.id(), 400 * MIB);
    one_round().await;
    assert!(pool.session(busy.id()).is_ok());
    let st = pool.stats();
    assert!(st.totals.over_budget_with_one_session >= 1, "{st:?}");
    assert_eq!(st.memory_used, 400 * MIB);
    drop(op);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_session_over_max_session_memory_is_retired_once_its_operation_ends() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), None, Some(200))).await;
    let grown = pool.acquire().await.unwrap();
    let other = pool.acquire().await.unwrap();
    let op = grown.begin_op().unwrap();
    launcher.set_memory(grown.id(), 250 * MIB);
    one_round().await;
    one_round().await;
    assert!(pool.session(grown.id()).is_ok(), "never mid-operation");
    drop(op);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        ended(pool.session(grown.id())),
        EndReason::Memory {
            limit: MemoryLimit::Session,
            pss_bytes: 250 * MIB
        }
    );
    assert!(pool.session(other.id()).is_ok());
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn with_every_session_busy_a_reject_pool_says_memory_was_the_limit() {
    let root = tempfile::tempdir().unwrap();
    let mut c = cfg(root.path(), Some(200), None);
    c.capacity_policy = CapacityPolicy::Reject;
    let (pool, _launcher) = pool(c).await;
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let _ops = (a.begin_op().unwrap(), b.begin_op().unwrap());
    one_round().await;
    match pool.acquire().await {
        Err(e @ AcquireError::MemoryBudget { .. }) => {
            assert!(e.to_string().contains("memory, not max_browsers"), "{e}")
        }
        other => panic!("expected the memory error, got {:?}", other.map(|l| l.id())),
    }
    assert_eq!(pool.stats().totals.memory_blocked, 1);
}

#[tokio::test(start_paused = true)]
async fn sessions_are_measured_concurrently_once_per_interval() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), Some(10_000), None)).await;
    let mut leases = Vec::new();
    for _ in 0..6 {
        leases.push(pool.acquire().await.unwrap());
    }
    launcher.set_memory_delay(Duration::from_millis(300));
    let before = launcher.memory_calls.load(Ordering::Relaxed);
    let batches_before = launcher.memory_batches.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let calls = launcher.memory_calls.load(Ordering::Relaxed) - before;
    assert!(
        (12..=24).contains(&calls),
        "6 sessions x about 3 rounds: {calls} calls"
    );
    let batches = launcher.memory_batches.load(Ordering::Relaxed) - batches_before;
    assert_eq!(
        calls,
        6 * batches,
        "one batched call per round, for all six"
    );
    assert_eq!(
        launcher.peak_memory_calls.load(Ordering::Relaxed),
        6,
        "all six at once"
    );
    // The pool's lock is free while measurements run: stats answer at once.
    let _ = pool.stats();
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_measurement_tears_that_session_down_and_sampling_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), Some(10_000), None)).await;
    let a = pool.acquire().await.unwrap();
    // In the round's batch, then in the per-session call the round falls back to.
    launcher.panic_next(FakeCall::Memory, 2);
    one_round().await;
    assert!(matches!(
        ended(pool.session(a.id())),
        EndReason::Crashed { .. }
    ));
    assert_eq!(pool.stats().panics, 2);
    let b = pool.acquire().await.unwrap();
    let samples = pool.stats().totals.memory_samples;
    one_round().await;
    assert!(
        pool.stats().totals.memory_samples > samples,
        "still sampling"
    );
    assert!(pool.session(b.id()).is_ok());
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_memory_limit_nothing_is_measured() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), None, None)).await;
    let _a = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(launcher.memory_calls.load(Ordering::Relaxed), 0);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_round_unfinished_at_its_deadline_is_abandoned_and_the_pool_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), Some(10_000), None)).await;
    let _a = pool.acquire().await.unwrap();
    // Each measurement takes longer than the 1 s interval: every round is abandoned.
    launcher.set_memory_delay(Duration::from_millis(1500));
    let samples = pool.stats().totals.memory_samples;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pool.stats().totals.memory_samples, samples, "no figures");
    assert!(
        launcher.memory_batches.load(Ordering::Relaxed) >= 4,
        "rounds go on"
    );
    // The pool serves meanwhile, and figures come back once measuring is fast again.
    let b = pool.acquire().await.unwrap();
    launcher.set_memory_delay(Duration::ZERO);
    one_round().await;
    one_round().await;
    assert!(pool.stats().totals.memory_samples > samples);
    drop(b);
    pool.shutdown().await;
}

/// A backend whose `memory_of_all` answers fewer figures than it was asked for: the
/// sessions it left out read as unmeasured, and the operator is told (a `warn` event).
#[tokio::test(start_paused = true)]
async fn a_backend_that_miscounts_memory_figures_is_survived_and_reported() {
    let (_guard, logs) = crate::common::capture_warnings();
    let root = tempfile::tempdir().unwrap();
    let (pool, launcher) = pool(cfg(root.path(), None, None)).await;
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    launcher.set_memory(a.id(), 30 << 20);
    launcher.set_memory(b.id(), 50 << 20);
    let m = pool.memory().await;
    assert_eq!(m.sessions.len(), 2);
    // The total is the sum of the sessions' figures (the fake: RSS twice the PSS, 11
    // processes per tree).
    assert_eq!(
        (m.total.pss_bytes, m.total.rss_bytes, m.total.processes),
        (80 << 20, 160 << 20, 22)
    );
    assert!(!crate::common::captured(&logs).contains("different number of figures"));
    launcher.short_memory_answers.store(true, Ordering::Relaxed);
    let m = pool.memory().await;
    assert_eq!(
        m.sessions.len(),
        1,
        "the session left out reads as unmeasured"
    );
    let logs = crate::common::captured(&logs);
    assert!(
        logs.contains("WARN") && logs.contains("different number of figures"),
        "{logs}"
    );
    drop((a, b));
    pool.shutdown().await;
}
