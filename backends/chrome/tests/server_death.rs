//! Integration tests against real Chromium: what happens when the server dies. The
//! server is a child process (this test binary, re-executed to run only the test that
//! started it, in a "child role" chosen by an environment variable); it reports what it
//! started through a file, never through stdout (which libtest shares), and is then
//! SIGKILLed: no destructor, no handler runs in it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use browserpool::{Filesystem, LaunchSpec, OsFilesystem, Pool, ProcessLauncher, SessionId};
use browserpool_chrome::{procfs, ChromeConfig, ChromeLauncher, ChromeSession, SessionMatcher};
use common::*;

/// Set in a re-executed child: the file to report to.
const CHILD_OUT: &str = "BROWSERPOOL_CHROME_CHILD_OUT";
/// Set in a re-executed child: its pool's root.
const CHILD_ROOT: &str = "BROWSERPOOL_CHROME_CHILD_ROOT";
/// Set in a re-executed child: "0" to turn kill-on-parent-death off.
const CHILD_PDEATH: &str = "BROWSERPOOL_CHROME_CHILD_PDEATH";

const PREFIX: &str = "bpc-srv-";

/// How long a child waits to be killed before it exits by itself (only if the parent
/// test died first).
const CHILD_LIFETIME: Duration = Duration::from_secs(90);

/// Write `text` to `path` atomically (the parent polls for the file).
fn report(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A child server, SIGKILLed and reaped when dropped (so that a failing test does not
/// leave it, and its browsers, running).
struct ChildServer(std::process::Child);

impl ChildServer {
    /// SIGKILL: no destructor, no handler runs in the child.
    fn sigkill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-execute this test binary to run only `test` in the child role.
fn spawn_child(test: &str, envs: &[(&str, &Path)], log: &Path) -> ChildServer {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    ChildServer(cmd.spawn().unwrap())
}

/// Wait for the child's report, failing with its log if it exits first.
async fn read_report(child: &mut ChildServer, out: &Path, log: &Path) -> String {
    let deadline = std::time::Instant::now() + SAFETY * 2;
    loop {
        if let Ok(text) = std::fs::read_to_string(out) {
            return text;
        }
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!(
                "the child exited ({st}) without reporting; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----------------------------------------------------------------------------------

/// The child role of `browser_dies_with_its_parent`: launch a browser from a
/// short-lived thread (which exits at once, as a tokio blocking thread would), check it
/// survives that thread, report its PID, then wait to be SIGKILLed.
fn pdeath_child(dir: &Path, out: &Path) -> ! {
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
        procfs::is_live(pid as i32),
        "browser died with the thread that launched it"
    );
    report(out, &pid.to_string());
    std::thread::sleep(CHILD_LIFETIME);
    std::process::exit(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_dies_with_its_parent() {
    if let (Some(dir), Some(out)) = (std::env::var_os(CHILD_ROOT), std::env::var_os(CHILD_OUT)) {
        pdeath_child(Path::new(&dir), Path::new(&out));
    }
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    if launcher_or_skip().is_none() {
        return;
    }
    let root = checks.root();
    let dir = root.path().join("browserpool-0000000000aa-1");
    std::fs::create_dir(&dir).unwrap();
    checks.track(&dir);
    let (out, log) = (root.path().join("pid"), root.path().join("child.log"));
    let mut parent = spawn_child(
        "browser_dies_with_its_parent",
        &[(CHILD_ROOT, &dir), (CHILD_OUT, &out)],
        &log,
    );
    let pid: i32 = read_report(&mut parent, &out, &log)
        .await
        .trim()
        .parse()
        .unwrap();
    let before = processes_of_dir(&dir);
    assert!(before.contains(&pid), "{before:?}");
    assert!(before.len() >= 5, "{before:?}");

    parent.sigkill();
    eventually_within(
        Duration::from_secs(2),
        "browser killed with its parent",
        || processes_of_dir(&dir).is_empty(),
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    checks.finish().await;
}

// ----------------------------------------------------------------------------------

/// The child role of the SIGKILLed-server tests: a pool with three live browsers, each
/// with a page open; reports `<main pid> <dir>` per line, then waits to be killed.
async fn server_child(root: &Path, out: &Path, kill_on_parent_death: bool) -> ! {
    let launcher = ChromeLauncher::new(ChromeConfig {
        kill_on_parent_death,
        ..ChromeConfig::default()
    })
    .unwrap();
    let pool = Pool::new(
        config(root).with_max_browsers(3).with_prefix(PREFIX),
        launcher,
    )
    .await
    .unwrap();
    let mut lines = String::new();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let s = ChromeSession::new(pool.acquire().await.unwrap());
        s.new_page("data:text/html,<p>server</p>").await.unwrap();
        lines.push_str(&format!(
            "{} {}\n",
            s.lease().process().pid(),
            pool.session_dir(s.id()).display()
        ));
        sessions.push(s);
    }
    report(out, &lines);
    tokio::time::sleep(CHILD_LIFETIME).await;
    std::process::exit(3);
}

/// Run a server child, let it start three browsers, SIGKILL it. Returns the browsers'
/// main PIDs and session directories.
async fn start_and_kill_server(
    test: &str,
    root: &Path,
    kill_on_parent_death: bool,
) -> Vec<(i32, PathBuf)> {
    let (out, log) = (root.join("report"), root.join("child.log"));
    let pdeath = Path::new(if kill_on_parent_death { "1" } else { "0" });
    let mut child = spawn_child(
        test,
        &[
            (CHILD_ROOT, root),
            (CHILD_OUT, &out),
            (CHILD_PDEATH, pdeath),
        ],
        &log,
    );
    let text = read_report(&mut child, &out, &log).await;
    let browsers: Vec<(i32, PathBuf)> = text
        .lines()
        .map(|l| {
            let (pid, dir) = l.split_once(' ').unwrap();
            (pid.parse().unwrap(), PathBuf::from(dir))
        })
        .collect();
    assert_eq!(browsers.len(), 3, "{text}");
    for (pid, dir) in &browsers {
        let procs = processes_of_dir(dir);
        assert!(
            procs.contains(pid) && procs.len() >= 5,
            "{dir:?}: {procs:?}"
        );
    }
    child.sigkill();
    browsers
}

fn child_role() -> Option<(PathBuf, PathBuf, bool)> {
    let root = std::env::var_os(CHILD_ROOT)?;
    let out = std::env::var_os(CHILD_OUT)?;
    let pdeath = std::env::var(CHILD_PDEATH).map_or(true, |v| v != "0");
    Some((root.into(), out.into(), pdeath))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_server_takes_its_browsers_and_the_next_pool_removes_their_dirs() {
    if let Some((root, out, pdeath)) = child_role() {
        server_child(&root, &out, pdeath).await;
    }
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let browsers = start_and_kill_server(
        "a_sigkilled_server_takes_its_browsers_and_the_next_pool_removes_their_dirs",
        root.path(),
        true,
    )
    .await;
    let dirs: Vec<PathBuf> = browsers.iter().map(|(_, d)| d.clone()).collect();
    dirs.iter().for_each(|d| checks.track(d));
    // The death signal takes every main process; helpers and crash handlers follow.
    // (2 s is a hang-guard: they are normally gone within a few hundred ms.)
    eventually_within(
        Duration::from_secs(2),
        "no process of the dead server's sessions",
        || processes_of(&dirs).is_empty(),
    )
    .await;
    assert!(dirs.iter().all(|d| d.exists()), "nothing removed them yet");

    // The next pool on the same root and prefix: its sweep removes the directories.
    let pool = Pool::new(config(root.path()).with_prefix(PREFIX), launcher)
        .await
        .unwrap();
    let report = pool.sweep_report().clone();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.killed.is_empty(), "{report:?}");
    for d in &dirs {
        assert!(report.removed.contains(d), "{d:?} not in {report:?}");
        assert!(!d.exists());
    }
    pool.shutdown().await;
    drop(pool);
    checks.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_death_signal_the_next_sweep_kills_the_survivors_first() {
    if let Some((root, out, pdeath)) = child_role() {
        server_child(&root, &out, pdeath).await;
    }
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let browsers = start_and_kill_server(
        "without_the_death_signal_the_next_sweep_kills_the_survivors_first",
        root.path(),
        false,
    )
    .await;
    let dirs: Vec<PathBuf> = browsers.iter().map(|(_, d)| d.clone()).collect();
    dirs.iter().for_each(|d| checks.track(d));
    // The browsers outlive their server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (pid, dir) in &browsers {
        let procs = processes_of_dir(dir);
        assert!(
            procs.contains(pid) && procs.len() >= 5,
            "{dir:?}: {procs:?}"
        );
    }

    let pool = Pool::new(config(root.path()).with_prefix(PREFIX), launcher)
        .await
        .unwrap();
    let report = pool.sweep_report().clone();
    assert!(report.failed.is_empty(), "{report:?}");
    for (pid, dir) in &browsers {
        let killed = report
            .killed
            .iter()
            .find(|o| o.pid as i32 == *pid)
            .unwrap_or_else(|| panic!("{pid} not killed: {report:?}"));
        assert_eq!(&killed.dir, dir);
        assert!(
            killed.proof.contains("SingletonLock") && killed.proof.contains("--user-data-dir="),
            "{}",
            killed.proof
        );
        assert!(report.removed.contains(dir), "{dir:?} not in {report:?}");
        assert!(!dir.exists());
    }
    // Killed before their directories were removed, and all of them.
    assert_eq!(processes_of(&dirs), vec![]);
    pool.shutdown().await;
    drop(pool);
    checks.finish().await;
}

// ----------------------------------------------------------------------------------

/// Spawn Chromium the way a pool does but without the launcher's ownership (no death
/// signal): a browser left running by a pool that was SIGKILLed.
struct Stray {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Stray {
    fn drop(&mut self) {
        // Only used on a child we have not reaped yet, so the group id is ours.
        let pgid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        SessionMatcher::new(&self.dir).kill_all();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_sweep_kills_proven_orphans_and_spares_the_rest() {
    let _serial = SERIAL.lock().await;
    let mut checks = Checks::start();
    let Some(launcher) = launcher_or_skip() else {
        return;
    };
    let root = checks.root();
    let r = root.path();
    let host = hostname();
    let fs = OsFilesystem::new();

    // A dead pool (its marker exists but nobody holds its lock) whose browser still runs.
    let dead = "0123456789ab";
    std::fs::write(r.join(format!("browserpool-{dead}.lock")), b"").unwrap();
    let orphan_dir = r.join(format!("browserpool-{dead}-1"));
    std::fs::create_dir(&orphan_dir).unwrap();
    checks.track(&orphan_dir);
    ChromeLauncher::prepare_dir(&orphan_dir).unwrap();
    let mut cmd = launcher.command(&orphan_dir);
    cmd.stderr(Stdio::null()).process_group(0);
    let stray = Stray {
        child: cmd.spawn().unwrap(),
        dir: orphan_dir.clone(),
    };
    let stray_pid = stray.child.id() as i32;
    let lock = orphan_dir.join("profile/SingletonLock");
    eventually("orphan browser up", || {
        orphan_dir.join("profile/DevToolsActivePort").exists() && lock.symlink_metadata().is_ok()
    })
    .await;
    assert_eq!(
        std::fs::read_link(&lock).unwrap(),
        PathBuf::from(format!("{host}-{stray_pid}"))
    );
    let matcher = SessionMatcher::new(&orphan_dir);
    eventually("the orphan's crash handlers up", || {
        matcher.live().iter().any(|(s, _)| s.pgrp != stray_pid)
    })
    .await;

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
        checks.track(d);
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

    // What the launcher proves, before the pool acts on it: the browser (through its
    // SingletonLock, as its group's leader, which stands for the whole group) and its
    // crash handlers, which left the group (through their database).
    let found = launcher.find_orphans(&orphan_dir).await.unwrap();
    let main = found
        .iter()
        .find(|o| o.pid as i32 == stray_pid)
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(main.proof.contains("SingletonLock"), "{}", main.proof);
    assert!(main.proof.contains("leads process group"), "{}", main.proof);
    for o in &found {
        if o.pid as i32 != stray_pid {
            let st = procfs::stat(o.pid as i32).unwrap();
            assert_ne!(
                st.pgrp, stray_pid,
                "{o:?}: a group member reported on its own"
            );
            assert!(o.proof.contains("--database="), "{o:?}");
        }
    }
    assert!(found.len() >= 2, "no crash handler found: {found:?}");
    for (d, _) in &decoy_dirs {
        assert!(launcher.find_orphans(d).await.unwrap().is_empty());
    }

    let pool = Pool::new(config(r), launcher).await.unwrap();
    let report = pool.sweep_report().clone();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        report.killed.iter().any(|o| o.pid as i32 == stray_pid),
        "{report:?}"
    );
    assert!(
        report.killed.iter().all(|o| o.dir == orphan_dir),
        "{report:?}"
    );
    assert!(report.removed.contains(&orphan_dir), "{report:?}");
    assert_eq!(matcher.live(), vec![], "orphan browser survived the sweep");
    assert!(!orphan_dir.exists());
    // Spared: the processes named by decoy locks, the live pool's dir, the symlink.
    assert!(procfs::is_live(sleeper.id() as i32));
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
    std::fs::remove_dir_all(&live_dir).unwrap();
    checks.finish().await;
}
