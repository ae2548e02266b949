//! Helpers shared by the real-Chromium integration tests.
//!
//! Chromium is heavy on small machines, so every test takes [`SERIAL`]: the tests of
//! one binary run one at a time whatever `--test-threads` says (cargo runs test binaries
//! one after another). Each test uses its own temporary root and ends with
//! [`Checks::finish`], which asserts, with the one [`SessionMatcher`], that no process of
//! any session directory the test used is alive, that those directories are gone, and
//! that no `org.chromium.Chromium.*` scratch appeared in `/tmp` or `/dev/shm` during the
//! test.
//!
//! When Chromium is missing, the tests fail under `CI=true` and are skipped (with a
//! message) otherwise.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browserpool::{EndReason, Pool, PoolConfig, ProcessLauncher, SessionError, SessionId};
use browserpool_chrome::{procfs, ChromeConfig, ChromeLauncher, SessionMatcher};

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Generous bound for things that normally take well under a second: a hang-guard, not
/// a timing assertion.
pub const SAFETY: Duration = Duration::from_secs(30);

/// Session ids of a pool that [`Checks::track_pool`] covers (every test stays far below).
const TRACKED_IDS: u64 = 64;

pub fn launcher_or_skip() -> Option<ChromeLauncher> {
    launcher_with(ChromeConfig::default())
}

pub fn launcher_with(config: ChromeConfig) -> Option<ChromeLauncher> {
    match ChromeLauncher::new(config) {
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

pub fn config(root: &Path) -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(2)
        .with_root(root.to_owned())
        .with_idle_timeout(None)
        .with_reap_interval(Duration::from_millis(200))
        .with_tick(Duration::from_millis(20))
        .with_launch_timeout(Duration::from_secs(30))
}

/// Poll (bounded by [`SAFETY`]) until `cond` holds.
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(SAFETY, what, cond).await;
}

/// Poll until `cond` holds, failing after `limit`.
pub async fn eventually_within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn ended_reason<L: ProcessLauncher>(pool: &Pool<L>, id: SessionId) -> EndReason {
    let deadline = Instant::now() + SAFETY;
    loop {
        match pool.session(id) {
            Err(SessionError::Ended { reason, .. }) => return reason,
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "session {id} never ended");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The members of process group `pgid` in `snapshot` (from [`procfs::live_processes`])
/// whose command line is readable. A process in its exit path has released its memory
/// map, so its command line reads empty and no matcher can attribute it; it is on its
/// way out, not a leak, and is left out.
pub fn group_members(snapshot: &[(procfs::ProcStat, Vec<u8>)], pgid: i32) -> BTreeSet<i32> {
    snapshot
        .iter()
        .filter(|(st, cmd)| st.pgrp == pgid && !cmd.is_empty())
        .map(|(st, _)| st.pid)
        .collect()
}

/// Live processes of the sessions in `dirs`, by the one matcher, from one `/proc`
/// snapshot: `(pid, dir, proof)`.
pub fn processes_of(dirs: &[PathBuf]) -> Vec<(i32, PathBuf, String)> {
    let snapshot = procfs::live_processes();
    let mut out = Vec::new();
    for d in dirs {
        for (st, proof) in SessionMatcher::new(d).live_in(&snapshot) {
            out.push((st.pid, d.clone(), proof));
        }
    }
    out
}

/// Live processes of one session directory, by the matcher.
pub fn processes_of_dir(dir: &Path) -> Vec<i32> {
    SessionMatcher::new(dir)
        .live()
        .into_iter()
        .map(|(s, _)| s.pid)
        .collect()
}

/// Scratch entries Chromium makes when its `TMPDIR` or shared memory escape the
/// session directory.
fn scratch() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for dir in [
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/dev/shm"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.filter_map(|e| e.ok()) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("org.chromium.Chromium.")
                    || n.starts_with(".org.chromium.Chromium.")
                {
                    out.insert(e.path());
                }
            }
        }
    }
    out
}

/// What a test must leave behind: nothing. Create it first thing in a test (after
/// taking [`SERIAL`]); register every session directory the test may have used; call
/// [`Checks::finish`] last.
pub struct Checks {
    dirs: Vec<PathBuf>,
    scratch_before: BTreeSet<PathBuf>,
}

impl Checks {
    pub fn start() -> Checks {
        Checks {
            dirs: Vec::new(),
            scratch_before: scratch(),
        }
    }

    /// A temporary root for this test's pools.
    pub fn root(&self) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("bpc-test-")
            .tempdir()
            .unwrap()
    }

    /// A session directory this test used.
    pub fn track(&mut self, dir: &Path) {
        self.dirs.push(dir.to_owned());
    }

    /// Every session directory `pool` may have used.
    pub fn track_pool<L: ProcessLauncher>(&mut self, pool: &Pool<L>) {
        for n in 1..=TRACKED_IDS {
            self.dirs.push(pool.session_dir(SessionId(n)));
        }
    }

    /// Processes of the tracked sessions alive now, by the matcher.
    pub fn live(&self) -> Vec<(i32, PathBuf, String)> {
        processes_of(&self.dirs)
    }

    /// Wait (bounded) until no process of a tracked session is alive, then assert that
    /// their directories and any new Chromium scratch are gone.
    pub async fn finish(self) {
        let dirs = self.dirs.clone();
        let deadline = Instant::now() + SAFETY;
        loop {
            let left = processes_of(&dirs);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "browser processes left running: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dirs_left: Vec<&PathBuf> = dirs.iter().filter(|d| procfs::exists_nofollow(d)).collect();
        assert!(
            dirs_left.is_empty(),
            "session directories left: {dirs_left:?}"
        );
        let new: Vec<PathBuf> = scratch()
            .difference(&self.scratch_before)
            .cloned()
            .collect();
        assert!(new.is_empty(), "Chromium scratch left behind: {new:?}");
    }
}

/// A stand-in for a helper that left the browser's process group and does not exit by
/// itself (Chromium's own crash handlers leave the group too, but exit within moments of
/// their browser, so they cannot show whether a teardown would wait for them): a shell
/// in a process group of its own whose argv carries the session's `--user-data-dir`.
/// The caller reaps it.
pub fn fake_stray_helper(dir: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let flag = format!("--user-data-dir={}/profile", dir.display());
    let child = std::process::Command::new("sh")
        .args(["-c", "while :; do sleep 1; done", "sh", &flag])
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Until it has exec'd, the child's command line is still this test's.
    let matcher = SessionMatcher::new(dir);
    let deadline = Instant::now() + SAFETY;
    while matcher.proof_for(child.id() as i32).is_none() {
        assert!(
            Instant::now() < deadline,
            "the matcher never saw the stand-in"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// Whether `child` was killed by SIGKILL (reaping it).
pub fn was_sigkilled(child: &mut std::process::Child) -> bool {
    use std::os::unix::process::ExitStatusExt;
    match child.try_wait().unwrap() {
        Some(st) => st.signal() == Some(9),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

impl Drop for Checks {
    /// A test that fails midway must not leave browsers running for the next test (or
    /// the machine): kill every process of its sessions, proven by the matcher.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let snapshot = procfs::live_processes();
            for d in &self.dirs {
                let m = SessionMatcher::new(d);
                if !m.live_in(&snapshot).is_empty() {
                    m.kill_all();
                }
            }
        }
    }
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
