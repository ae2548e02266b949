//! Two pools on one root and prefix, starting and stopping concurrently: each start
//! sweeps while the other pool is starting, running or stopping. Neither may ever fail
//! to start or lose a live session to the other's sweep (the marker protocol of
//! `browserpool::sweep`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use browserpool::testing::FakeLauncher;
use browserpool::{Backoff, Filesystem, OsFilesystem, Pool, PoolConfig};

const ROUNDS: u32 = 200;
/// Threads probing markers meanwhile (standing for more pools starting on that root).
const PROBERS: usize = 3;

/// Shutdown budgets of about 10 s instead of the default 110 s (launch 30 s, kills
/// 3 x 5 s and one more, a 60 s removal retry): the fake's launches and kills take no
/// time, so a shutdown that is still waiting after 10 s is stuck, and this real-time
/// test then fails at the first one instead of after minutes.
fn cfg(root: &Path) -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(2)
        .with_root(root.to_owned())
        .with_prefix("bpx-")
        .with_launch_timeout(Duration::from_secs(5))
        .with_kill_timeout(Duration::from_secs(1))
        .with_remove_backoff(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        })
}

async fn churn(root: Arc<PathBuf>, who: u32) {
    for round in 0..ROUNDS {
        let launcher = FakeLauncher::new();
        launcher.write_files.store(true, Ordering::Relaxed);
        let pool = Pool::new(cfg(&root), launcher.clone())
            .await
            .unwrap_or_else(|e| panic!("pool {who} failed to start in round {round}: {e}"));
        let a = pool.acquire().await.unwrap();
        let b = pool.acquire().await.unwrap();
        let dirs = [pool.session_dir(a.id()), pool.session_dir(b.id())];
        // Give the other pool time to start (and sweep) while these sessions are live.
        for _ in 0..(round % 7) {
            tokio::task::yield_now().await;
        }
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        for (d, id) in dirs.iter().zip([a.id(), b.id()]) {
            assert!(
                d.join("Preferences").exists(),
                "pool {who} round {round}: live session {id} lost its directory {d:?}"
            );
            assert!(pool.session(id).is_ok(), "pool {who} round {round}: {id}");
        }
        assert_eq!(launcher.alive().len(), 2, "pool {who} round {round}");
        drop((a, b));
        if round % 2 == 0 {
            let r = pool.shutdown().await;
            assert!(r.unfinished.is_empty() && r.dirs_left.is_empty(), "{r:?}");
        }
        drop(pool); // the other half: the Drop safety net cleans up
        assert!(launcher.alive().is_empty());
    }
}

/// Probe every marker under `root` over and over until `stop`, as many sweeping pools
/// would: this makes a probe land between a starting pool's creation of its marker and
/// its locking of it far more often than two pools alone would.
fn prober(root: PathBuf, stop: Arc<AtomicBool>, probes: Arc<AtomicU64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fs = OsFilesystem::new();
    rt.block_on(async {
        while !stop.load(Ordering::Relaxed) {
            let Ok(entries) = fs.list_prefixed(&root, "bpx-").await else {
                continue;
            };
            for e in entries.iter().filter(|e| e.name.ends_with(".lock")) {
                let _ = fs.probe_marker(&e.path).await;
                probes.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

#[test]
fn two_pools_starting_and_stopping_together_never_sweep_each_other() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let path = Arc::new(root.path().to_owned());
    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicU64::new(0));
    let probing: Vec<_> = (0..PROBERS)
        .map(|_| {
            let (root, stop, probes) = (root.path().to_owned(), stop.clone(), probes.clone());
            std::thread::spawn(move || prober(root, stop, probes))
        })
        .collect();
    let result = rt.block_on(async {
        let one = tokio::spawn(churn(path.clone(), 1));
        let two = tokio::spawn(churn(path.clone(), 2));
        let (one, two) = (one.await, two.await);
        one.and(two)
    });
    stop.store(true, Ordering::Relaxed);
    for p in probing {
        p.join().unwrap();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
    assert!(probes.load(Ordering::Relaxed) > 0, "the prober never ran");
    // Each pool removed what it made (shutdown or Drop).
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
