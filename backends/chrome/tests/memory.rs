//! The memory budget against real Chromium: idle browsers' PSS is measured first, then a
//! budget that fits two of them but not three makes the pool evict the least recently
//! used idle browser (never a busy one), and `max_session_memory` retires a browser
//! whose page grew; and one round's figures (one batched call, one `/proc` scan for
//! every session) are exactly each session's own. Same rules as `chrome.rs` (see
//! `common/mod.rs`): one at a time, nothing left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use browserpool::{EndReason, MemoryLimit, MemoryUsage, Pool, PoolConfig, ProcessLauncher};
use browserpool_chrome::{procfs, ChromeLauncher, ChromeSession, SessionMatcher};
use common::*;

const MIB: u64 = 1 << 20;

fn mem_config(root: &Path, budget: Option<u64>, per_session: Option<u64>) -> PoolConfig {
    let mut c = config(root);
    c.max_browsers = 4;
    c.memory_budget = budget;
    c.max_session_memory = per_session;
    c.memory_interval = Duration::from_millis(300);
    c
}

/// Wait until the pool has fed `rounds` more sampling rounds' worth of samples.
async fn samples_after(pool: &Pool<ChromeLauncher>, more: u64) {
    let start = pool.stats().totals.memory_samples;
    eventually("memory samples", || {
        pool.stats().totals.memory_samples >= start + more
    })
    .await;
}

/// Settled PSS of one pool of idle browsers: two measurements 1 s apart within 10 % (or
/// the last of ten), summed over its sessions.
async fn settled_sum(pool: &Pool<ChromeLauncher>, n: usize) -> u64 {
    let mut last = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now: Vec<u64> = pool
            .memory()
            .await
            .sessions
            .iter()
            .map(|(_, m)| m.pss_bytes)
            .collect();
        let settled = now.len() == last.len()
            && now
                .iter()
                .zip(&last)
                .all(|(a, b)| a.abs_diff(*b) * 10 <= *b);
        last = now;
        if settled {
            break;
        }
    }
    assert_eq!(last.len(), n, "every browser measured");
    assert!(last.iter().all(|p| *p > 10 * MIB), "{last:?}");
    last.iter().sum()
}

/// Summed settled PSS of 1, 2, ..., `n` idle browsers launched one after another in a
/// pool without limits. The sum is not `k` times one browser's: browsers share library
/// pages, whose PSS is split among all of them.
async fn idle_sums(checks: &mut Checks, root: &Path, n: usize) -> Vec<u64> {
    let launcher = launcher_or_skip().expect("Chromium");
    let pool = Pool::new(mem_config(root, None, None), launcher)
        .await
        .unwrap();
    checks.track_pool(&pool);
    let mut leases = Vec::new();
    let mut sums = Vec::new();
    for k in 1..=n {
        leases.push(pool.acquire().await.unwrap());
        sums.push(settled_sum(&pool, k).await);
    }
    drop(leases);
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_for_two_idle_browsers_evicts_the_lru_idle_one_for_a_third_never_a_busy_one() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    if launcher_or_skip().is_none() {
        return;
    }
    let root = checks.root();
    let probe_root = checks.root();
    let sums = idle_sums(&mut checks, probe_root.path(), 2).await;
    // What one more browser adds once the shared pages are split: sum2 - sum1.
    let added = sums[1].saturating_sub(sums[0]);
    assert!(added > 10 * MIB, "{sums:?}");
    // Two settled idle browsers fit with a quarter to spare. A third does not: the pool
    // projects the two's PSS plus its estimate for a new browser (the median of first
    // samples, each at least a browser's share), which is more than that quarter.
    let budget = sums[1] + sums[1] / 4;
    eprintln!("idle PSS sums for 1 and 2 browsers: {sums:?} bytes; budget {budget} bytes");
    let mut c = mem_config(root.path(), Some(budget), None);
    c.memory_interval = Duration::from_secs(1);
    let pool = Pool::new(c, launcher_or_skip().unwrap()).await.unwrap();
    checks.track_pool(&pool);
    assert_eq!(pool.stats().memory_budget, Some(budget));

    // A browser's PSS peaks while it starts: both are kept busy until they settled (a
    // busy session is never evicted, whatever the sum).
    let a = ChromeSession::new(pool.acquire().await.unwrap());
    let op_a = a.lease().begin_op().unwrap();
    let b = ChromeSession::new(pool.acquire().await.unwrap());
    let op_b = b.lease().begin_op().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    samples_after(&pool, 4).await;
    // a goes idle (and is the least recently used); b stays busy. Two fit: a stays.
    drop(op_a);
    samples_after(&pool, 4).await;
    assert!(
        pool.session(a.id()).is_ok(),
        "two idle browsers should fit: {:?}",
        pool.stats()
    );
    assert!(pool.stats().memory_used <= budget, "{:?}", pool.stats());

    // A third: a, the least recently used idle session, is evicted for memory; b, busy,
    // is not, however the new browser's start-up peaks. (The third itself is idle for an
    // instant after its hand-out: if a sampling round falls right then, during its
    // start-up peak, it may be evicted too, which is the budget doing its job.)
    let third = ChromeSession::new(pool.acquire().await.unwrap());
    let op_c = third.lease().begin_op().ok();
    match ended_reason(&pool, a.id()).await {
        EndReason::Memory {
            limit: MemoryLimit::Budget,
            pss_bytes,
        } => assert!(pss_bytes > 10 * MIB, "{pss_bytes}"),
        other => panic!("a ended for {other}, not for memory"),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    samples_after(&pool, 4).await;
    assert!(pool.session(b.id()).is_ok(), "the busy session was evicted");
    if op_c.is_some() {
        assert!(pool.session(third.id()).is_ok(), "a busy third was evicted");
    }
    let st = pool.stats();
    assert!(st.totals.memory >= 1 && st.totals.evicted == 0, "{st:?}");
    drop((op_b, op_c));

    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    drop(pool);
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_whose_page_grew_past_max_session_memory_is_retired() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    if launcher_or_skip().is_none() {
        return;
    }
    let root = checks.root();
    let probe_root = checks.root();
    let idle = idle_sums(&mut checks, probe_root.path(), 1).await[0];
    // A page that keeps 200 MiB adds about that much PSS; the limit sits halfway.
    let limit = idle + 100 * MIB;
    let pool = Pool::new(
        mem_config(root.path(), None, Some(limit)),
        launcher_or_skip().unwrap(),
    )
    .await
    .unwrap();
    checks.track_pool(&pool);
    let grown = ChromeSession::new(pool.acquire().await.unwrap());
    let other = ChromeSession::new(pool.acquire().await.unwrap());
    let page = grown.new_page("about:blank").await.unwrap();
    samples_after(&pool, 4).await;
    assert!(pool.session(grown.id()).is_ok(), "retired before it grew");
    // 200 MiB in typed arrays, every page written so it is resident, kept alive.
    let kept: i64 = page
        .evaluate(
            "window.keep = []; for (let i = 0; i < 200; i++) { \
             window.keep.push(new Uint8Array(1 << 20).fill(i % 255 + 1)); } \
             window.keep.length",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(kept, 200);
    match ended_reason(&pool, grown.id()).await {
        EndReason::Memory {
            limit: MemoryLimit::Session,
            pss_bytes,
        } => assert!(pss_bytes > limit, "{pss_bytes} <= {limit}"),
        other => panic!("ended for {other}, not for memory"),
    }
    assert!(pool.session(other.id()).is_ok(), "the small one stays");
    assert_eq!(pool.stats().totals.memory, 1);
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    drop(pool);
    checks.finish().await;
}

/// Which live processes are the session's, computed here independently of the launcher:
/// its process group's live members plus every process the one matcher proves.
fn processes_by_proof(pgid: i32, dir: &Path) -> BTreeSet<i32> {
    let mut set: BTreeSet<i32> = procfs::live_group_members(pgid).into_iter().collect();
    set.extend(
        SessionMatcher::new(dir)
            .live()
            .into_iter()
            .map(|(s, _)| s.pid),
    );
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rounds_batched_figures_are_each_sessions_own() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(mem_config(root.path(), None, None), launcher)
        .await
        .unwrap();
    checks.track_pool(&pool);
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(pool.acquire().await.unwrap());
    }
    // A helper outside the second browser's process group that its matcher proves (as
    // Chromium's crash handlers are): only the matcher can attribute it.
    let dirs: Vec<PathBuf> = leases.iter().map(|l| pool.session_dir(l.id())).collect();
    let mut stray = fake_stray_helper(&dirs[1]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Browsers start and stop helpers now and then: retry until the per-session figures
    // and the independent attribution agree before and after the batched round.
    let mut attempt = 0;
    let (each, batched, proven) = loop {
        attempt += 1;
        let proven: Vec<BTreeSet<i32>> = leases
            .iter()
            .zip(&dirs)
            .map(|(l, d)| processes_by_proof(l.process().pid() as i32, d))
            .collect();
        let mut each: Vec<MemoryUsage> = Vec::new();
        for l in &leases {
            each.push(pool.launcher().memory(l.process()).await.unwrap());
        }
        let batched = pool.memory().await;
        let after: Vec<u32> = {
            let mut v = Vec::new();
            for l in &leases {
                v.push(pool.launcher().memory(l.process()).await.unwrap().processes);
            }
            v
        };
        let counts: Vec<u32> = each.iter().map(|m| m.processes).collect();
        let proven_counts: Vec<u32> = proven.iter().map(|s| s.len() as u32).collect();
        if (counts == after && counts == proven_counts) || attempt == 10 {
            break (each, batched, proven);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "attempt {attempt}: per session {each:?}; batched {:?}",
        batched.sessions
    );

    // One figure per session, in id order.
    let ids: Vec<_> = batched.sessions.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, leases.iter().map(|l| l.id()).collect::<Vec<_>>());
    // No process belongs to two sessions, and the stray is the second session's.
    let mut all = BTreeSet::new();
    for set in &proven {
        assert!(set.is_disjoint(&all), "a process proven for two sessions");
        all.extend(set.iter().copied());
    }
    assert!(proven[1].contains(&(stray.id() as i32)));
    for (i, ((_, b), e)) in batched.sessions.iter().zip(&each).enumerate() {
        // The same processes: exactly as many as the session's own call counts, and as
        // the independent attribution proves.
        assert_eq!(b.processes, e.processes, "session {i}: {b:?} vs {e:?}");
        assert_eq!(
            b.processes as usize,
            proven[i].len(),
            "session {i} counted {} processes, {} are proven its own: {:?}",
            b.processes,
            proven[i].len(),
            proven[i]
        );
        // PSS moves a little between two reads (the browsers are alive).
        let tolerance = e.pss_bytes / 10 + 2 * MIB;
        assert!(
            b.pss_bytes.abs_diff(e.pss_bytes) <= tolerance,
            "session {i}: batched PSS {} vs its own {}",
            b.pss_bytes,
            e.pss_bytes
        );
        assert!(
            b.pss_bytes > 10 * MIB && b.rss_bytes >= b.pss_bytes,
            "{b:?}"
        );
    }
    // Nothing counted twice or left out: the round counts every proven process once.
    assert_eq!(batched.total.processes as usize, all.len());

    drop(leases);
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    assert!(was_sigkilled(&mut stray), "the stray went with its session");
    drop(pool);
    checks.finish().await;
}
