//! Integration tests against real Chromium: a session's life inside one live pool. What
//! happens when the server itself dies is in `server_death.rs`. See `common/mod.rs` for
//! the rules every test follows (one at a time, nothing left behind, checked with the
//! one process matcher).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use browserpool::{
    AcquireError, EndReason, LaunchSpec, Pool, ProcessLauncher, SessionError, SessionId,
};
use browserpool_chrome::{
    procfs, ChromeConfig, ChromeError, ChromeLauncher, ChromeSession, ProcessModel, SessionMatcher,
    DEVTOOLS_LOST, MAX_SESSION_DIR_LEN, WRAPPER_DID_NOT_EXEC,
};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_use_a_page_and_destroy() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let session = ChromeSession::new(pool.acquire().await.unwrap());
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
    assert!(mem.total.processes >= 5, "{mem:?}");
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
    // Destroy returns once every process of the session is gone and the directory too.
    assert_eq!(processes_of_dir(&dir), Vec::<i32>::new());
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
    checks.finish().await;
}

/// `ProcessModel::Lean` runs a working browser in fewer processes: no zygote, GPU or
/// network service process, every process still found by the matcher, and nothing left
/// after a forced teardown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_process_model_runs_fewer_processes_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_with(ChromeConfig {
        no_sandbox: Some(true),
        process_model: ProcessModel::Lean,
        ..ChromeConfig::default()
    }) else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let s = ChromeSession::new(pool.acquire().await.unwrap());
    let page = s.new_page("data:text/html,<p id=x>lean</p>").await.unwrap();
    let text: String = page
        .evaluate("document.querySelector('#x').textContent")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(text, "lean");
    let dir = pool.session_dir(s.id());
    let m = SessionMatcher::new(&dir);
    let pid = s.lease().process().pid() as i32;
    eventually("a crash handler outside the group", || {
        m.live().iter().any(|(st, _)| st.pgrp != pid)
    })
    .await;
    let snapshot = procfs::live_processes();
    let found: BTreeSet<i32> = m.live_in(&snapshot).iter().map(|(st, _)| st.pid).collect();
    let group = group_members(&snapshot, pid);
    assert!(group.is_subset(&found), "{group:?} / {found:?}");
    // Browser, storage service, one renderer; two crash handlers outside the group.
    assert!((3..=4).contains(&group.len()), "group {group:?}");
    let titles: Vec<String> = snapshot
        .iter()
        .filter(|(st, _)| found.contains(&st.pid))
        .map(|(_, cmd)| String::from_utf8_lossy(cmd).replace('\0', " "))
        .collect();
    for kind in [
        "--type=zygote",
        "--type=gpu-process",
        "--utility-sub-type=network.mojom.NetworkService",
    ] {
        assert!(
            titles.iter().all(|t| !t.contains(kind)),
            "a {kind} process in the lean model: {titles:#?}"
        );
    }
    assert!(
        titles.iter().any(|t| t.contains("--type=renderer")),
        "{titles:#?}"
    );
    pool.destroy(s.id()).await.unwrap();
    assert!(m.live().is_empty(), "{:?}", m.live());
    assert!(!dir.exists());
    pool.shutdown().await;
    drop(pool);
    checks.finish().await;
}

/// The matcher sees every process of a live browser (its whole group, at least five,
/// and its crash handlers outside the group) and none of another session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matcher_finds_every_process_of_a_session_and_no_other() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let a = ChromeSession::new(pool.acquire().await.unwrap());
    let b = ChromeSession::new(pool.acquire().await.unwrap());
    for s in [&a, &b] {
        s.new_page("data:text/html,<p>renderer</p>").await.unwrap();
    }
    let ma = SessionMatcher::new(&pool.session_dir(a.id()));
    let mb = SessionMatcher::new(&pool.session_dir(b.id()));
    let (pa, pb) = (
        a.lease().process().pid() as i32,
        b.lease().process().pid() as i32,
    );
    // The crash handlers start a moment after the browser: wait for them to be seen.
    eventually("a crash handler outside A's group", || {
        ma.live().iter().any(|(s, _)| s.pgrp != pa)
    })
    .await;

    let snapshot = procfs::live_processes();
    let found_a: BTreeSet<i32> = ma.live_in(&snapshot).iter().map(|(s, _)| s.pid).collect();
    let found_b: BTreeSet<i32> = mb.live_in(&snapshot).iter().map(|(s, _)| s.pid).collect();
    let (group_a, group_b) = (group_members(&snapshot, pa), group_members(&snapshot, pb));
    assert!(group_a.len() >= 5, "A's group: {group_a:?}");
    assert!(
        group_a.is_subset(&found_a),
        "the matcher missed members of A's group: {:?}",
        group_a.difference(&found_a).collect::<Vec<_>>()
    );
    assert!(
        group_b.is_subset(&found_b),
        "the matcher missed members of B's group: {:?}",
        group_b.difference(&found_b).collect::<Vec<_>>()
    );
    assert!(found_a.is_disjoint(&found_b), "{found_a:?} / {found_b:?}");
    assert!(found_a.is_disjoint(&group_b) && found_b.is_disjoint(&group_a));
    // What lies outside A's group is its crash handlers, proven by their database.
    for (st, proof) in ma.live_in(&snapshot) {
        if st.pgrp != pa {
            assert!(proof.starts_with("--database="), "{}: {proof}", st.pid);
        }
    }
    // The process handle reports the same set, and memory is summed over it.
    let listed: BTreeSet<i32> = a
        .lease()
        .process()
        .live_processes()
        .into_iter()
        .map(|p| p as i32)
        .collect();
    assert!(group_a.is_subset(&listed), "{listed:?}");
    pool.shutdown().await;
    drop(pool);
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_reaped() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let cfg = config(root.path()).with_idle_timeout(Some(Duration::from_millis(600)));
    let pool = Pool::new(cfg, launcher).await.unwrap();
    checks.track_pool(&pool);
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let dir = pool.session_dir(session.id());
    session.version().await.unwrap();
    // Abandon it: no destroy. The reaper must tear it down.
    let reason = ended_reason(&pool, session.id()).await;
    assert!(matches!(reason, EndReason::IdleReaped { .. }), "{reason:?}");
    eventually("reaped session's dir removed", || !dir.exists()).await;
    eventually("reaped session's processes gone", || {
        processes_of_dir(&dir).is_empty()
    })
    .await;
    assert_eq!(pool.stats().totals.reaped, 1);
    let err = session.version().await.unwrap_err();
    assert!(err.to_string().contains("without activity"), "{err}");
    pool.shutdown().await;
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_eviction_at_capacity_two() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let old = ChromeSession::new(pool.acquire().await.unwrap());
    let recent = ChromeSession::new(pool.acquire().await.unwrap());
    // `recent` was launched after `old` and is used now: `old` is least recently active.
    recent.version().await.unwrap();
    let old_dir = pool.session_dir(old.id());

    let third = ChromeSession::new(pool.acquire().await.unwrap());
    assert_eq!(
        pool.session(old.id()).unwrap_err(),
        SessionError::Ended {
            id: old.id(),
            reason: EndReason::Evicted
        }
    );
    // The new browser was launched only after every process of the victim was gone.
    assert_eq!(processes_of_dir(&old_dir), Vec::<i32>::new());
    assert!(!old_dir.exists());
    recent.version().await.unwrap();
    third.version().await.unwrap();
    let st = pool.stats();
    assert_eq!((st.totals.evicted, st.live), (1, 2));
    pool.shutdown().await;
    checks.finish().await;
}

/// One `evaluate` that runs far longer than the idle timeout: the session is busy
/// meanwhile, so the reaper leaves it alone; once idle it is reaped as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_evaluate_outlives_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let cfg = config(root.path())
        .with_idle_timeout(Some(Duration::from_millis(300)))
        .with_reap_interval(Duration::from_millis(100));
    let pool = Pool::new(cfg, launcher).await.unwrap();
    checks.track_pool(&pool);
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let page = session.new_page("about:blank").await.unwrap();
    let v: i64 = page
        .evaluate("new Promise(resolve => setTimeout(() => resolve(42), 2000))")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(v, 42);
    assert!(session.lease().check().is_ok(), "busy session was reaped");
    assert_eq!(pool.stats().totals.reaped, 0);
    // Once idle, it is reaped as usual.
    let reason = ended_reason(&pool, session.id()).await;
    assert!(matches!(reason, EndReason::IdleReaped { .. }), "{reason:?}");
    pool.shutdown().await;
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_kill_is_detected_as_a_crash() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let pid = session.lease().process().pid();
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
        processes_of_dir(&dir).is_empty()
    })
    .await;
    assert_eq!(pool.stats().totals.crashed, 1);
    // The slot is free again.
    let next = ChromeSession::new(pool.acquire().await.unwrap());
    next.version().await.unwrap();
    pool.shutdown().await;
    checks.finish().await;
}

/// Close the browser's end of the DevTools connection from outside (a duplicate of the
/// browser's socket descriptor, taken with `pidfd_getfd`, shut down): the process lives
/// on, but the session is unusable, so the pool must end it, kill it and remove it.
fn shut_down_devtools_socket(browser_pid: u32, ws_url: &str) {
    let port: u16 = ws_url
        .strip_prefix("ws://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    // Established connections whose local end is the DevTools port: the pool's, seen
    // from the browser's side.
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().unwrap();
            if u16::from_str_radix(local_port, 16).unwrap() == port && f[3] == "01" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    assert!(
        !inodes.is_empty(),
        "no established DevTools connection on port {port}"
    );
    let mut fds = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{browser_pid}/fd")).unwrap() {
        let e = e.unwrap();
        if let Ok(target) = std::fs::read_link(e.path()) {
            if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                fds.push(e.file_name().to_string_lossy().parse::<i32>().unwrap());
            }
        }
    }
    assert!(!fds.is_empty(), "the browser holds none of {inodes:?}");
    let pid = rustix::process::Pid::from_raw(browser_pid as i32).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    for fd in fds {
        let dup =
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
                .unwrap();
        std::net::TcpStream::from(dup)
            .shutdown(std::net::Shutdown::Both)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_devtools_connection_ends_the_session() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let session = ChromeSession::new(pool.acquire().await.unwrap());
    let process = session.lease().process();
    let (pid, dir) = (process.pid(), pool.session_dir(session.id()));
    session.version().await.unwrap();
    assert!(process.devtools_connected());

    shut_down_devtools_socket(pid, process.ws_url());

    let reason = ended_reason(&pool, session.id()).await;
    assert_eq!(
        reason,
        EndReason::Crashed {
            exit: DEVTOOLS_LOST.to_owned()
        }
    );
    let err = session.version().await.unwrap_err();
    assert!(err.to_string().contains(DEVTOOLS_LOST), "{err}");
    // The browser was alive when the connection went: the pool killed it.
    eventually("session's processes killed", || {
        processes_of_dir(&dir).is_empty()
    })
    .await;
    eventually("session's dir removed", || !dir.exists()).await;
    assert_eq!(pool.stats().totals.crashed, 1);
    pool.shutdown().await;
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pool_without_shutdown_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let a = ChromeSession::new(pool.acquire().await.unwrap());
    let b = ChromeSession::new(pool.acquire().await.unwrap());
    let dirs = [pool.session_dir(a.id()), pool.session_dir(b.id())];
    a.new_page("about:blank").await.unwrap();
    assert!(processes_of(&dirs).len() >= 10);
    drop((a, b));
    drop(pool);
    // The safety net is synchronous: everything is gone when drop returns.
    assert_eq!(processes_of(&dirs), vec![]);
    for d in &dirs {
        assert!(!d.exists(), "{} survived the pool's drop", d.display());
    }
    assert!(
        entries(root.path()).is_empty(),
        "{:?}",
        entries(root.path())
    );
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_launches_leave_nothing() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(real) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    // A "browser" that exits at once: the error says how, and when it arrives nothing
    // is left.
    let bad = ChromeLauncher::new(ChromeConfig {
        executable: Some(PathBuf::from("/bin/false")),
        ..ChromeConfig::default()
    })
    .unwrap();
    let pool = Pool::new(config(root.path()), bad).await.unwrap();
    checks.track_pool(&pool);
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::LaunchFailed { .. }), "{err}");
    assert!(err.to_string().contains("exit code 1"), "{err}");
    assert!(
        entries(root.path()).iter().all(|n| n.ends_with(".lock")),
        "{:?}",
        entries(root.path())
    );
    pool.shutdown().await;
    drop(pool);

    // Launches whose futures are dropped midway, at several points of the browser's
    // start-up (helpers, including the crash handler's double fork, appear throughout).
    // A launch that finishes first (a fast machine) is killed through the launcher
    // instead; 10 ms is far below any Chromium start, so at least that one is cancelled.
    let mut cancelled = 0;
    for (n, ms) in [10u64, 60, 150, 250].into_iter().enumerate() {
        let dir = root.path().join(format!("cancelled-{n}"));
        std::fs::create_dir(&dir).unwrap();
        checks.track(&dir);
        let spec = LaunchSpec {
            id: SessionId(n as u64 + 1),
            dir: dir.clone(),
        };
        match tokio::time::timeout(Duration::from_millis(ms), real.launch(&spec)).await {
            Err(_elapsed) => cancelled += 1,
            Ok(Ok(p)) => {
                real.kill(&p, browserpool::KillStage::Force).await.unwrap();
                real.wait_gone(&p).await;
            }
            Ok(Err(e)) => panic!("launch failed: {e}"),
        }
        // Cancelled while forking, the spawner thread kills the child on its own time;
        // cancelled later, the dropped launch kills before the drop returns.
        eventually(
            &format!("launch cancelled at {ms} ms leaves nothing"),
            || processes_of_dir(&dir).is_empty(),
        )
        .await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(cancelled >= 1, "no launch was cancelled, not even at 10 ms");
    checks.finish().await;
}

/// Chromium aborts when its singleton socket path (under `TMPDIR`, inside the session
/// directory) exceeds 107 bytes: a directory of exactly [`MAX_SESSION_DIR_LEN`] bytes
/// starts, one byte more is refused before anything is spawned, with an error that
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_directories_up_to_the_socket_limit_start_and_longer_ones_are_refused() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let base = root.path().as_os_str().len() + 1;
    assert!(base + 8 < MAX_SESSION_DIR_LEN, "test root too long: {base}");
    for (n, len) in [MAX_SESSION_DIR_LEN, MAX_SESSION_DIR_LEN + 1]
        .into_iter()
        .enumerate()
    {
        let dir = root.path().join("d".repeat(len - base));
        assert_eq!(dir.as_os_str().len(), len);
        std::fs::create_dir(&dir).unwrap();
        checks.track(&dir);
        let spec = LaunchSpec {
            id: SessionId(n as u64 + 1),
            dir: dir.clone(),
        };
        match launcher.launch(&spec).await {
            Ok(p) => {
                assert_eq!(len, MAX_SESSION_DIR_LEN);
                launcher
                    .kill(&p, browserpool::KillStage::Force)
                    .await
                    .unwrap();
                launcher.wait_gone(&p).await;
            }
            Err(e) => {
                assert_eq!(len, MAX_SESSION_DIR_LEN + 1, "{e}");
                assert!(e.to_string().contains("PoolConfig::root"), "{e}");
                assert!(
                    entries(&dir).is_empty(),
                    "something was made: {:?}",
                    entries(&dir)
                );
            }
        }
        assert_eq!(processes_of_dir(&dir), Vec::<i32>::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }
    checks.finish().await;
}

/// Every way a session ends kills every process the matcher attributes to it: graceful
/// close, forced kill, a launch that times out at several points of start-up, and
/// shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exit_path_kills_every_process_of_the_session() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();

    // Graceful close (Browser.close), then the forced kill of whatever remains.
    let graceful = config(root.path()).with_kill_grace(Duration::from_secs(2));
    let pool = Pool::new(graceful, launcher).await.unwrap();
    checks.track_pool(&pool);
    let s = ChromeSession::new(pool.acquire().await.unwrap());
    s.new_page("about:blank").await.unwrap();
    let dir = pool.session_dir(s.id());
    assert!(processes_of_dir(&dir).len() >= 5);
    // A helper outside the group that would outlive its browser: a graceful close never
    // signals the group, so only the wait for "no process of the session" can find it.
    let mut stray = fake_stray_helper(&dir);
    pool.destroy(s.id()).await.unwrap();
    assert!(
        was_sigkilled(&mut stray),
        "graceful close left a stray helper"
    );
    assert_eq!(processes_of_dir(&dir), Vec::<i32>::new(), "graceful close");
    assert!(!dir.exists());
    drop(pool);

    // Forced kill (SIGKILL to the group and to every proven stray).
    let pool = Pool::new(config(root.path()), launcher_or_skip().unwrap())
        .await
        .unwrap();
    checks.track_pool(&pool);
    let s = ChromeSession::new(pool.acquire().await.unwrap());
    s.new_page("about:blank").await.unwrap();
    let dir = pool.session_dir(s.id());
    let mut stray = fake_stray_helper(&dir);
    pool.destroy(s.id()).await.unwrap();
    assert!(was_sigkilled(&mut stray), "forced kill left a stray helper");
    assert_eq!(processes_of_dir(&dir), Vec::<i32>::new(), "forced kill");
    assert!(!dir.exists());

    // Shutdown of a session with pages open.
    let s = ChromeSession::new(pool.acquire().await.unwrap());
    s.new_page("about:blank").await.unwrap();
    let dir = pool.session_dir(s.id());
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty(), "{report:?}");
    assert_eq!(processes_of_dir(&dir), Vec::<i32>::new(), "shutdown");
    drop(pool);

    // Launches that time out: the launcher kills what it started before answering. A
    // launch that beats its timeout (a fast machine) is torn down by the launcher's own
    // kill instead; either way nothing of it may remain. 30 ms is far below any Chromium
    // start (the bare-spawn floor is 200+ ms), so at least that one times out.
    let mut timed_out = 0;
    for ms in [30u64, 120, 250] {
        let launcher = launcher_with(ChromeConfig {
            launch_timeout: Duration::from_millis(ms),
            ..ChromeConfig::default()
        })
        .unwrap();
        let dir = root.path().join(format!("timed-out-{ms}"));
        std::fs::create_dir(&dir).unwrap();
        checks.track(&dir);
        let spec = LaunchSpec {
            id: SessionId(1),
            dir: dir.clone(),
        };
        match launcher.launch(&spec).await {
            Err(err) => {
                assert!(err.to_string().contains("within"), "{err}");
                timed_out += 1;
            }
            Ok(p) => {
                launcher
                    .kill(&p, browserpool::KillStage::Force)
                    .await
                    .unwrap();
                launcher.wait_gone(&p).await;
            }
        }
        assert_eq!(
            processes_of_dir(&dir),
            Vec::<i32>::new(),
            "timed out at {ms} ms"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(timed_out >= 1, "no launch timed out, not even at 30 ms");
    checks.finish().await;
}

/// With `spares: 1`, the pool keeps one launched, never-used browser: `acquire` hands it
/// out without a launch (the session, its directory and its browser were there before
/// the request), a replacement is launched in the background, and a browser that served
/// a client never comes back, as a spare or otherwise (checked by session id, by
/// `--user-data-dir` and by browser pid). Nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_is_handed_out_without_a_launch_and_a_used_browser_never_returns() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let cfg = config(root.path()).with_spares(1);
    let pool = Pool::new(cfg, launcher).await.unwrap();
    checks.track_pool(&pool);
    let mut used: Vec<(SessionId, PathBuf, u32)> = Vec::new();
    for round in 0..3 {
        eventually("a spare is ready", || pool.stats().spares_ready == 1).await;
        let before = pool.sessions();
        let spare = before
            .iter()
            .find(|s| s.owner.is_none() && !used.iter().any(|u| u.0 == s.id))
            .map(|s| s.id)
            .expect("the spare is listed");
        let spare_dir = pool.session_dir(spare);
        assert!(
            spare_dir.join("profile").is_dir(),
            "launched before the request"
        );
        let spare_pids = processes_of_dir(&spare_dir);
        assert!(
            !spare_pids.is_empty(),
            "its browser runs before the request"
        );
        let created = pool.stats().totals.created;

        let session = ChromeSession::new(pool.acquire().await.unwrap());
        let st = pool.stats();
        assert_eq!(session.id(), spare, "round {round}: the ready spare");
        assert_eq!(st.totals.spare_hits, round + 1);
        assert_eq!(st.totals.created, created, "no launch was waited for");
        let process = session.lease().process();
        assert_eq!(process.dir(), spare_dir.as_path());
        assert!(spare_pids.contains(&(process.pid() as i32)));
        for (id, dir, pid) in &used {
            assert_ne!(session.id(), *id, "a used session came back");
            assert_ne!(process.dir(), dir.as_path(), "a used profile came back");
            assert_ne!(process.pid(), *pid, "a used browser came back");
        }
        // Use it: this browser is now dirty and must never be handed out again.
        let page = session
            .new_page("data:text/html,<title>used</title><p>client data</p>")
            .await
            .unwrap();
        page.close().await.unwrap();
        used.push((session.id(), spare_dir.clone(), process.pid()));
        // A replacement is launched in the background (a different session and dir).
        eventually("a replacement spare is ready", || {
            pool.stats().spares_ready == 1
        })
        .await;
        pool.destroy(session.id()).await.unwrap();
        assert_eq!(processes_of_dir(&spare_dir), Vec::<i32>::new());
        assert!(!spare_dir.exists(), "a used browser's directory is removed");
    }
    let st = pool.stats();
    assert_eq!((st.totals.spare_hits, st.totals.spare_misses), (3, 0));
    assert_eq!(st.totals.destroyed, 3);
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
    assert_eq!(
        pool.stats().totals.shutdown,
        1,
        "the last spare ends like any session"
    );
    drop(pool);
    checks.finish().await;
}

/// A wrapper script that runs the browser as its child instead of `exec`ing it would put
/// the browser out of reach of kill-on-parent-death and crash detection (both watch the
/// started process): the launch is refused, and nothing of it is left. Debian's
/// `/usr/bin/chromium-headless-shell` is such a wrapper; this test writes its own, so it
/// needs nothing beyond `chromium`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapper_that_does_not_exec_the_browser_is_refused_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(real) = launcher_or_skip() else {
        return;
    };
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("chromium-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\n{} \"$@\"\n", real.executable().display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chrome = ChromeConfig {
        executable: Some(wrapper.clone()),
        ..ChromeConfig::default()
    };
    let launcher = ChromeLauncher::new(chrome).unwrap();
    let root = checks.root();
    let pool = Pool::new(config(root.path()), launcher).await.unwrap();
    checks.track_pool(&pool);
    let err = pool.acquire().await.unwrap_err();
    let AcquireError::LaunchFailed { reason, .. } = &err else {
        panic!("expected LaunchFailed, got {err:?}");
    };
    assert!(reason.contains(WRAPPER_DID_NOT_EXEC), "{reason}");
    assert!(reason.contains(&*wrapper.to_string_lossy()), "{reason}");
    // Nothing of the refused launch is left: no process (by the matcher), no directory.
    let dir = pool.session_dir(SessionId(1));
    assert_eq!(processes_of_dir(&dir), Vec::<i32>::new());
    assert!(!dir.exists());
    pool.shutdown().await;
    drop(pool);
    checks.finish().await;
}
