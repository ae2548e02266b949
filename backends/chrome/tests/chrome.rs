//! Integration tests against real Chromium.
//!
//! Chromium is heavy on small machines, so every test takes one global lock: they run
//! one at a time whatever `--test-threads` says. Each test uses its own temporary root,
//! checks that what it started is gone when it ends, and (through `finish`) that no
//! process started by any test so far is still running and that no
//! `/tmp/org.chromium.Chromium.*` scratch exists.
//!
//! When Chromium is missing, the tests fail under `CI=true` and are skipped (with a
//! message) otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::ffi::OsString;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use browserpool::{
    EndReason, Filesystem, LaunchSpec, OsFilesystem, Pool, PoolConfig, ProcessLauncher,
    SessionError, SessionId,
};
use browserpool_chrome::{procfs, ChromeConfig, ChromeError, ChromeLauncher, ChromeSession};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Every browser main PID and every root the tests used, for the final checks.
static STARTED: StdMutex<Vec<i32>> = StdMutex::new(Vec::new());
static ROOTS: StdMutex<Vec<PathBuf>> = StdMutex::new(Vec::new());

const SAFETY: Duration = Duration::from_secs(20);

fn launcher_or_skip() -> Option<ChromeLauncher> {
    match ChromeLauncher::new(ChromeConfig::default()) {
        Ok(l) => Some(l),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("Chromium is required in CI: {e}");
            }
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn root() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("bpc-test-")
        .tempdir()
        .unwrap();
    ROOTS.lock().unwrap().push(d.path().to_owned());
    d
}

fn config(root: &Path) -> PoolConfig {
    PoolConfig {
        max_browsers: 2,
        root: root.to_owned(),
        idle_timeout: None,
        reap_interval: Duration::from_millis(200),
        tick: Duration::from_millis(20),
        launch_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    }
}

fn record(pid: u32) {
    STARTED.lock().unwrap().push(pid as i32);
}

fn group_live(pgid: u32) -> Vec<i32> {
    procfs::live_group_members(pgid as i32)
}

/// Poll (bounded by a generous safety timeout) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SAFETY;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ended_reason<L: ProcessLauncher>(pool: &Pool<L>, id: SessionId) -> EndReason {
    let deadline = Instant::now() + SAFETY;
    loop {
        match pool.session(id) {
            Err(SessionError::Ended { reason, .. }) => return reason,
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "session {id} never ended");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn chromium_scratch_in_tmp() -> Vec<String> {
    std::fs::read_dir("/tmp")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with("org.chromium.Chromium.")
                        || n.starts_with(".org.chromium.Chromium.")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line has a `--user-data-dir` under one of the tests' roots.
fn processes_under_test_roots() -> Vec<(i32, String)> {
    let roots = ROOTS.lock().unwrap().clone();
    let mut out = Vec::new();
    for pid in procfs::all_pids() {
        let Some(st) = procfs::stat(pid) else {
            continue;
        };
        if !st.is_live() {
            continue;
        }
        let Some(args) = procfs::cmdline(pid) else {
            continue;
        };
        for a in args {
            let a = String::from_utf8_lossy(&a).into_owned();
            if let Some(p) = a.strip_prefix("--user-data-dir=") {
                if roots.iter().any(|r| Path::new(p).starts_with(r)) {
                    out.push((pid, a.clone()));
                }
            }
        }
    }
    out
}

/// The checks every test ends with.
async fn finish() {
    let started = STARTED.lock().unwrap().clone();
    for pid in started {
        eventually(&format!("browser group {pid} gone"), || {
            group_live(pid as u32).is_empty()
        })
        .await;
    }
    let left = processes_under_test_roots();
    assert!(left.is_empty(), "browser processes left running: {left:?}");
    let scratch = chromium_scratch_in_tmp();
    assert!(
        scratch.is_empty(),
        "Chromium scratch left in /tmp: {scratch:?}"
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_use_a_page_and_destroy() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let pid = session.lease().process().pid();
    record(pid);
    let dir = pool.session_dir(session.id());
    assert!(dir.join("profile").is_dir() && dir.join("tmp").is_dir());

    let page = session
        .new_page("data:text/html,<title>pooled</title><p id=x>hello</p>")
        .await
        .unwrap();
    let html = page.content().await.unwrap();
    assert!(html.contains("hello"), "{html}");
    let sum: i64 = page
        .evaluate("20 + 22")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(sum, 42);
    page.goto("data:text/html,<p>second</p>").await.unwrap();
    assert!(page.content().await.unwrap().contains("second"));
    assert!(session.version().await.unwrap().contains("Chrome"));
    assert!(session.lease().activity().uses() >= 5);
    page.close().await.unwrap();

    let mem = pool.memory().await;
    assert_eq!(mem.sessions.len(), 1);
    assert!(mem.total.processes >= 2, "{mem:?}");
    assert!(
        mem.total.rss_bytes > 10 << 20 && mem.total.pss_bytes > 0,
        "{mem:?}"
    );

    // Scratch went to the session's private TMPDIR.
    let tmp_entries = entries(&dir.join("tmp"));
    assert!(
        tmp_entries
            .iter()
            .any(|n| n.starts_with("org.chromium.Chromium.")),
        "{tmp_entries:?}"
    );

    pool.destroy(session.id()).await.unwrap();
    assert!(group_live(pid).is_empty(), "processes left after destroy");
    assert!(!dir.exists(), "directory left after destroy");
    let err = session.new_page("about:blank").await.unwrap_err();
    assert!(
        matches!(
            err,
            ChromeError::Session(SessionError::Ended {
                reason: EndReason::Destroyed,
                ..
            })
        ),
        "{err}"
    );
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    drop(pool);
    assert_eq!(
        entries(root.path())
            .iter()
            .filter(|n| !n.ends_with(".lock"))
            .count(),
        0
    );
    finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_reaped() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let cfg = PoolConfig {
        idle_timeout: Some(Duration::from_millis(600)),
        ..config(root.path())
    };
    let pool = Pool::new(cfg, launcher).await.unwrap();
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let pid = session.lease().process().pid();
    record(pid);
    let dir = pool.session_dir(session.id());
    session.version().await.unwrap();
    // Abandon it: no destroy. The reaper must tear it down.
    let reason = ended_reason(&pool, session.id()).await;
    assert!(matches!(reason, EndReason::IdleReaped { .. }), "{reason:?}");
    eventually("reaped session's dir removed", || !dir.exists()).await;
    eventually("reaped session's processes gone", || {
        group_live(pid).is_empty()
    })
    .await;
    assert_eq!(pool.stats().totals.reaped, 1);
    let err = session.version().await.unwrap_err();
    assert!(err.to_string().contains("without activity"), "{err}");
    pool.shutdown().await;
    finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_eviction_at_capacity_two() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    let old = ChromeSession::new(pool.acquire().await.unwrap());
    let recent = ChromeSession::new(pool.acquire().await.unwrap());
    record(old.lease().process().pid());
    record(recent.lease().process().pid());
    // `recent` was launched after `old` and is used now: `old` is least recently active.
    recent.version().await.unwrap();
    let old_pid = old.lease().process().pid();
    let old_dir = pool.session_dir(old.id());

    let third = ChromeSession::new(pool.acquire().await.unwrap());
    record(third.lease().process().pid());
    assert_eq!(
        pool.session(old.id()).unwrap_err(),
        SessionError::Ended {
            id: old.id(),
            reason: EndReason::Evicted
        }
    );
    assert!(
        group_live(old_pid).is_empty(),
        "evicted browser still running"
    );
    assert!(!old_dir.exists());
    recent.version().await.unwrap();
    third.version().await.unwrap();
    let st = pool.stats();
    assert_eq!((st.totals.evicted, st.live), (1, 2));
    pool.shutdown().await;
    finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_session_survives_its_idle_deadline() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let cfg = PoolConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        reap_interval: Duration::from_millis(100),
        ..config(root.path())
    };
    let pool = Pool::new(cfg, launcher).await.unwrap();
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    record(session.lease().process().pid());
    // One long client operation, far longer than the idle timeout plus reap interval.
    let product = session
        .run(|b| async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(b.version().await?.product)
        })
        .await
        .unwrap();
    assert!(product.contains("Chrome"));
    assert!(session.lease().check().is_ok(), "busy session was reaped");
    assert_eq!(pool.stats().totals.reaped, 0);
    // Once idle, it is reaped as usual.
    let reason = ended_reason(&pool, session.id()).await;
    assert!(matches!(reason, EndReason::IdleReaped { .. }), "{reason:?}");
    pool.shutdown().await;
    finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_kill_is_detected_as_a_crash() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let pid = session.lease().process().pid();
    record(pid);
    let dir = pool.session_dir(session.id());
    session.version().await.unwrap();

    // kill -9 of the main process only, from outside.
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let reason = ended_reason(&pool, session.id()).await;
    assert_eq!(
        reason,
        EndReason::Crashed {
            exit: "killed by signal 9".to_owned()
        }
    );
    let err = session.version().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("browser exited by itself (killed by signal 9)"),
        "{err}"
    );
    eventually("crashed session's dir removed", || !dir.exists()).await;
    eventually("crashed session's helpers gone", || {
        group_live(pid).is_empty()
    })
    .await;
    assert_eq!(pool.stats().totals.crashed, 1);
    // The slot is free again.
    let next = ChromeSession::new(pool.acquire().await.unwrap());
    record(next.lease().process().pid());
    next.version().await.unwrap();
    pool.shutdown().await;
    finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pool_without_shutdown_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    let a = ChromeSession::new(pool.acquire().await.unwrap());
    let b = ChromeSession::new(pool.acquire().await.unwrap());
    let pids = [a.lease().process().pid(), b.lease().process().pid()];
    pids.iter().for_each(|&p| record(p));
    let dirs = [pool.session_dir(a.id()), pool.session_dir(b.id())];
    a.new_page("about:blank").await.unwrap();
    drop((a, b));
    drop(pool);
    // The safety net is synchronous: everything is gone when drop returns.
    for p in pids {
        assert!(
            group_live(p).is_empty(),
            "browser {p} survived the pool's drop"
        );
    }
    for d in &dirs {
        assert!(!d.exists(), "{} survived the pool's drop", d.display());
    }
    assert!(
        entries(root.path()).is_empty(),
        "{:?}",
        entries(root.path())
    );
    finish().await;
}

#[ignore = "fails in CI: a failed launch's error does not carry the exit code (issue 4 left open)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_launches_leave_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(real) = launcher_or_skip() else {
        return;
    };
    let root = root();
    // A "browser" that exits at once: the error says how, nothing is left.
    let bad = ChromeLauncher::new(ChromeConfig {
        executable: Some(PathBuf::from("/bin/false")),
        ..ChromeConfig::default()
    })
    .unwrap();
    let pool = Pool::new(config(root.path()), bad).await.unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert!(err.to_string().contains("exit code 1"), "{err}");
    assert!(entries(root.path()).iter().all(|n| n.ends_with(".lock")));
    pool.shutdown().await;
    drop(pool);

    // A launch whose future is dropped midway (before DevTools is up).
    let dir = root.path().join("cancelled");
    std::fs::create_dir(&dir).unwrap();
    let spec = LaunchSpec {
        id: SessionId(1),
        dir: dir.clone(),
    };
    let r = tokio::time::timeout(Duration::from_millis(60), real.launch(&spec)).await;
    assert!(r.is_err(), "launch unexpectedly finished within 60 ms");
    let arg = ChromeLauncher::user_data_dir_arg(&dir);
    eventually("cancelled launch's processes gone", || {
        procfs::live_with_arg(&arg).is_empty()
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    finish().await;
}

/// Spawn Chromium the way a pool does but without the launcher's ownership (no death
/// signal): a browser left running by a pool that was SIGKILLed.
struct Stray {
    child: std::process::Child,
}

impl Drop for Stray {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        unsafe_kill_group(pgid);
        let _ = self.child.wait();
    }
}

fn unsafe_kill_group(pgid: i32) {
    // Only used on a child we have not reaped yet, so the group id is ours.
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status();
}

#[ignore = "fails in CI: find_orphans does not prove the stray Chromium (issue 4 left open)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_sweep_kills_proven_orphans_and_spares_the_rest() {
    let _serial = SERIAL.lock().await;
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = root();
    let r = root.path();
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let fs = OsFilesystem::new();

    // A dead pool (its marker exists but nobody holds its lock) whose browser still runs.
    let dead = "0123456789ab";
    std::fs::write(r.join(format!("browserpool-{dead}.lock")), b"").unwrap();
    let orphan_dir = r.join(format!("browserpool-{dead}-1"));
    std::fs::create_dir(&orphan_dir).unwrap();
    ChromeLauncher::prepare_dir(&orphan_dir).unwrap();
    let mut cmd = launcher.command(&orphan_dir);
    cmd.stderr(std::process::Stdio::null()).process_group(0);
    let stray = Stray {
        child: cmd.spawn().unwrap(),
    };
    let stray_pid = stray.child.id();
    record(stray_pid);
    let lock = orphan_dir.join("profile/SingletonLock");
    eventually("orphan browser up", || {
        orphan_dir.join("profile/DevToolsActivePort").exists() && lock.symlink_metadata().is_ok()
    })
    .await;
    assert_eq!(
        std::fs::read_link(&lock).unwrap(),
        PathBuf::from(format!("{host}-{stray_pid}"))
    );

    // Same dead pool: a directory whose SingletonLock names live processes that are not
    // its browser (this test process, and a `sleep`).
    let mut sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let decoy_dirs = [
        (r.join(format!("browserpool-{dead}-2")), std::process::id()),
        (r.join(format!("browserpool-{dead}-3")), sleeper.id()),
    ];
    for (d, pid) in &decoy_dirs {
        std::fs::create_dir_all(d.join("profile")).unwrap();
        std::os::unix::fs::symlink(format!("{host}-{pid}"), d.join("profile/SingletonLock"))
            .unwrap();
    }

    // A live pool: its marker is locked and its directory must be left alone.
    let live = "aaaaaaaaaaaa";
    let live_lock = fs
        .lock_marker(&r.join(format!("browserpool-{live}.lock")))
        .await
        .unwrap();
    let live_dir = r.join(format!("browserpool-{live}-1"));
    std::fs::create_dir_all(live_dir.join("profile")).unwrap();
    std::fs::write(live_dir.join("profile/keep"), b"x").unwrap();

    // A symlink with our prefix, pointing at a directory that must survive.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"x").unwrap();
    let link = r.join("browserpool-link");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();

    // What the launcher proves, before the pool acts on it.
    let found = launcher.find_orphans(&orphan_dir).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].pid, stray_pid);
    assert!(
        found[0].proof.contains("SingletonLock"),
        "{}",
        found[0].proof
    );
    for (d, _) in &decoy_dirs {
        assert!(launcher.find_orphans(d).await.unwrap().is_empty());
    }

    let pool = Pool::new(config(r), launcher).await.unwrap();
    let report = pool.sweep_report().clone();
    assert_eq!(report.killed.len(), 1, "{report:?}");
    assert_eq!(report.killed[0].pid, stray_pid);
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.removed.contains(&orphan_dir), "{report:?}");
    assert!(
        group_live(stray_pid).is_empty(),
        "orphan browser survived the sweep"
    );
    assert!(!orphan_dir.exists());
    // Spared: the processes named by decoy locks, the live pool's dir, the symlink.
    assert!(procfs::stat(sleeper.id() as i32).is_some_and(|s| s.is_live()));
    assert!(live_dir.join("profile/keep").exists());
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(outside.path().join("precious").exists());
    assert!(!r.join(format!("browserpool-{dead}.lock")).exists());

    pool.shutdown().await;
    drop(pool);
    drop(live_lock);
    drop(stray);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    finish().await;
}

const PDEATH_ENV: &str = "BROWSERPOOL_CHROME_PDEATH_CHILD_DIR";

/// The child role of `browser_dies_with_its_parent`: launch a browser from a
/// short-lived thread (which exits at once, as a tokio blocking thread would), check it
/// survives that thread, report its PID, then wait to be SIGKILLed.
fn pdeath_child(dir: &Path) -> ! {
    let launcher = ChromeLauncher::new(ChromeConfig::default()).unwrap();
    let spec = LaunchSpec {
        id: SessionId(1),
        dir: dir.to_owned(),
    };
    let pid = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let p = rt.block_on(launcher.launch(&spec)).unwrap();
        let pid = p.pid();
        std::mem::forget(p); // keep it running: only the death signal may kill it
        pid
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        procfs::stat(pid as i32).is_some_and(|s| s.is_live()),
        "browser died with the thread that launched it"
    );
    println!("CHROME_PID={pid}");
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

#[ignore = "fails in CI: the re-executed parent never reports its browser PID (issue 4 left open)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_dies_with_its_parent() {
    if let Some(dir) = std::env::var_os(PDEATH_ENV) {
        pdeath_child(Path::new(&dir));
    }
    let _serial = SERIAL.lock().await;
    if launcher_or_skip().is_none() {
        return;
    }
    let root = root();
    let dir = root.path().join("browserpool-0000000000aa-1");
    std::fs::create_dir(&dir).unwrap();
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "browser_dies_with_its_parent",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PDEATH_ENV, OsString::from(&dir))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = parent.stdout.take().unwrap();
    let pid: u32 = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some(p) = line.strip_prefix("CHROME_PID=") {
                return p.trim().parse().unwrap();
            }
        }
        panic!("the child never reported a browser PID");
    })
    .await
    .unwrap();
    record(pid);
    assert!(
        !group_live(pid).is_empty(),
        "browser not running before its parent died"
    );

    parent.kill().unwrap(); // SIGKILL: no destructor, no handler runs in the parent
    parent.wait().unwrap();
    eventually("browser killed with its parent", || {
        group_live(pid).is_empty()
    })
    .await;
    let arg = ChromeLauncher::user_data_dir_arg(&dir);
    assert!(procfs::live_with_arg(&arg).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
    finish().await;
}
