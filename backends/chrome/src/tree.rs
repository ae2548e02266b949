//! One browser's process tree: its process group, its exit status and its stderr.
//!
//! ## Why signalling the group is safe
//!
//! A process group id is the PID of its leader (the browser's main process, which we
//! forked with `process_group(0)`). The kernel does not reuse a PID while it names a
//! live process group or an unreaped process. We reap the leader only after the whole
//! group is gone, and we never signal the group after reaping it (both under one lock),
//! so `kill(-pgid)` can never hit a stranger's group.
//!
//! ## Which processes are the session's
//!
//! The group's live members, and every live process the session's
//! [`SessionMatcher`] proves (helpers that left the group, such as the crash handler,
//! which double-forks and calls `setsid`, possibly after the first scan). The tree is
//! gone only when a full `/proc` scan finds neither.
//!
//! ## Why zombies count as gone
//!
//! When the leader dies, the other members are reparented to init (or a subreaper),
//! which may reap them seconds later. A zombie holds no memory and runs no code, so
//! "gone" means "no member of the group is alive", read from `/proc/<pid>/stat`; waiting
//! for the group id to vanish entirely (`kill(-pgid, 0)` failing) would make every
//! teardown look as slow as init's reaping.

use std::io::Read;
use std::path::PathBuf;
use std::process::ChildStderr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitOptions};
use tokio::sync::watch;

use crate::matcher::SessionMatcher;
use crate::procfs;

/// Bytes of the browser's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

pub(crate) struct Tree {
    pid: Pid,
    /// Set once the leader is reaped; from then on the group is never signalled again,
    /// and its id no longer names our processes.
    reaped: Mutex<bool>,
    exit_tx: Arc<watch::Sender<Option<String>>>,
    exit_rx: watch::Receiver<Option<String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Which processes are this session's, beyond the group.
    matcher: Arc<SessionMatcher>,
    /// A forced kill was ordered: every process of the session found from now on is
    /// SIGKILLed, in or out of the group.
    forced: AtomicBool,
}

/// One full `/proc` scan of a session's live processes.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Live members of the browser's process group.
    pub members: Vec<i32>,
    /// Live processes outside the group that the matcher proves are the session's.
    pub strays: Vec<i32>,
}

impl Scan {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.strays.is_empty()
    }

    pub(crate) fn all(&self) -> Vec<i32> {
        let mut v = [self.members.as_slice(), self.strays.as_slice()].concat();
        v.sort_unstable();
        v
    }
}

/// Scan `/proc` for the live processes of a session: members of group `pgid` (if the
/// group id is still ours) and processes the matcher proves.
fn scan(pgid: Option<i32>, matcher: &SessionMatcher) -> Scan {
    let mut out = Scan::default();
    // Group members are known from their stat: their command lines are not read (they
    // are the processes dying right now).
    for (st, cmd) in procfs::scan_live(|st| pgid != Some(st.pgrp)) {
        match cmd {
            None => out.members.push(st.pid),
            Some(cmd) if matcher.matches(&cmd) => out.strays.push(st.pid),
            Some(_) => {}
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// "exit code N" / "killed by signal N" from a `waitid` status.
fn describe_waitid(st: &rustix::process::WaitIdStatus) -> String {
    if let Some(code) = st.exit_status() {
        format!("exit code {code}")
    } else if let Some(sig) = st.terminating_signal() {
        if st.dumped() {
            format!("killed by signal {sig} (core dumped)")
        } else {
            format!("killed by signal {sig}")
        }
    } else {
        "exited (status unknown)".to_owned()
    }
}

fn describe_wait(st: rustix::process::WaitStatus) -> String {
    if let Some(code) = st.exit_status() {
        format!("exit code {code}")
    } else if let Some(sig) = st.terminating_signal() {
        format!("killed by signal {sig}")
    } else {
        "exited (status unknown)".to_owned()
    }
}

fn publish(tx: &watch::Sender<Option<String>>, status: String) {
    tx.send_if_modified(|cur| {
        if cur.is_none() {
            *cur = Some(status);
            true
        } else {
            false
        }
    });
}

impl Tree {
    /// Take ownership of a freshly forked group leader whose browser uses session
    /// directory `dir`. From here on, dropping the `Tree` kills and reaps every process
    /// of the session (bounded), so a launch that fails or is cancelled leaves nothing
    /// running.
    pub(crate) fn new(
        pid: Pid,
        stderr: Option<ChildStderr>,
        dir: PathBuf,
    ) -> std::io::Result<Tree> {
        let (tx, rx) = watch::channel(None);
        let tree = Tree {
            pid,
            reaped: Mutex::new(false),
            exit_tx: Arc::new(tx),
            exit_rx: rx,
            stderr: Arc::new(Mutex::new(Vec::new())),
            matcher: Arc::new(SessionMatcher::new(&dir)),
            forced: AtomicBool::new(false),
        };
        // Waiter: learns the exit status without reaping (WNOWAIT), so the group id
        // stays pinned until `try_reap` decides the group is gone. A thread (not a
        // runtime task) so that exit detection works in any runtime or none.
        let tx = tree.exit_tx.clone();
        std::thread::Builder::new()
            .name("browserpool-chrome-wait".into())
            .spawn(move || {
                let status = loop {
                    match rustix::process::waitid(
                        WaitId::Pid(pid),
                        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                    ) {
                        Ok(Some(st)) => break describe_waitid(&st),
                        Ok(None) | Err(Errno::INTR) => continue,
                        Err(e) => break format!("exited (status unknown: {e})"),
                    }
                };
                publish(&tx, status);
            })?;
        // Drainer: keeps reading stderr so a chatty browser never blocks on a full pipe,
        // keeping only the tail for error messages. Ends at EOF, when every process of
        // the tree has closed its copy.
        if let Some(mut pipe) = stderr {
            let tail = tree.stderr.clone();
            std::thread::Builder::new()
                .name("browserpool-chrome-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match pipe.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                let mut t = lock(&tail);
                                t.extend_from_slice(&buf[..n]);
                                if t.len() > STDERR_TAIL {
                                    let cut = t.len() - STDERR_TAIL;
                                    t.drain(..cut);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                })?;
        }
        Ok(tree)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid.as_raw_pid()
    }

    /// The session's matcher.
    pub(crate) fn matcher(&self) -> &SessionMatcher {
        &self.matcher
    }

    /// The last few KiB the browser wrote to stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// How the main process exited, if it has.
    pub(crate) fn exit_status(&self) -> Option<String> {
        self.exit_rx.borrow().clone()
    }

    /// Resolves when the main process has exited. Cancel-safe.
    pub(crate) async fn exited(&self) -> String {
        let mut rx = self.exit_rx.clone();
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                // Cannot happen (we hold a sender), but never hang on it.
                return rx
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "exited (status unknown)".to_owned());
            }
        }
    }

    /// Send `sig` to the whole group, unless the leader was already reaped (then the
    /// group is known to be gone and its id may belong to someone else).
    pub(crate) fn signal_group(&self, sig: Signal) {
        let reaped = lock(&self.reaped);
        if !*reaped {
            match rustix::process::kill_process_group(self.pid, sig) {
                Ok(()) | Err(Errno::SRCH) => {}
                Err(e) => {
                    tracing::warn!(pgid = self.pid(), error = %e, "signalling the browser's process group failed")
                }
            }
        }
    }

    /// A blocking job (it scans `/proc`) that finds the session's live processes: the
    /// group's members while the group id is ours, and every process the matcher proves.
    pub(crate) fn scanner(&self) -> impl FnOnce() -> Scan + Send + 'static {
        let pgid = (!self.is_reaped()).then(|| self.pid());
        let matcher = self.matcher.clone();
        move || scan(pgid, &matcher)
    }

    /// The forced kill: SIGKILL the group now, and from now on every process of the
    /// session that a scan finds outside the group (the crash handler calls `setsid`),
    /// re-checking the proof immediately before each signal. [`Tree::wait_gone`]'s
    /// first scan, right after, is the one that finds them: one `/proc` scan, not two.
    pub(crate) fn kill_forced(&self) {
        self.forced.store(true, Ordering::Release);
        self.signal_group(Signal::KILL);
    }

    /// Whether `pid`, found by a scan, is still a live process of this session.
    fn still_ours(&self, pid: i32) -> bool {
        match procfs::stat(pid) {
            Some(s) if s.is_live() => {
                (s.pgrp == self.pid() && !self.is_reaped()) || self.matcher.proof_for(pid).is_some()
            }
            _ => false,
        }
    }

    /// Reap the leader if it has exited. Returns whether it is reaped (now or before).
    /// Call only when no live member of the group remains.
    fn try_reap(&self) -> bool {
        let mut reaped = lock(&self.reaped);
        if *reaped {
            return true;
        }
        // Reap every exited child of ours in the group: the leader and, when this
        // process is a child subreaper, members that were reparented to it.
        loop {
            match rustix::process::waitpgid(self.pid, WaitOptions::NOHANG) {
                Ok(Some((p, st))) => {
                    if p == self.pid {
                        publish(&self.exit_tx, describe_wait(st));
                        *reaped = true;
                    }
                }
                Err(Errno::INTR) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if *reaped {
            return true;
        }
        match rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => {
                publish(&self.exit_tx, describe_wait(st));
                *reaped = true;
            }
            Ok(None) => {}
            Err(Errno::CHILD) => {
                // Reaped by someone else (a foreign SIGCHLD handler): gone all the same.
                publish(&self.exit_tx, "exited (reaped elsewhere)".to_owned());
                *reaped = true;
            }
            Err(e) => {
                tracing::warn!(pid = self.pid(), error = %e, "waitpid on the browser failed")
            }
        }
        *reaped
    }

    pub(crate) fn is_reaped(&self) -> bool {
        *lock(&self.reaped)
    }

    /// Kill the strays of a scan after a forced kill, or once the main process has
    /// exited: the session is over, and a helper outside the group, even one that
    /// appeared after the kill (the crash handler's double fork), must not outlive it.
    /// Before that (a graceful close in progress) nothing is signalled.
    fn kill_strays(&self, strays: &[i32]) {
        if self.forced.load(Ordering::Acquire) || self.exit_status().is_some() {
            for &pid in strays {
                kill_if_proven(pid, &self.matcher);
            }
        }
    }

    /// Resolves when no live process of the session remains (no live group member and
    /// nothing the matcher proves, by a full `/proc` scan) and the leader is reaped.
    /// Cancel-safe. Between full scans it polls only the processes the last scan found.
    pub(crate) async fn wait_gone(&self) {
        let started = Instant::now();
        let mut watching: Vec<i32> = Vec::new();
        loop {
            if watching.is_empty() {
                let scanner = self.scanner();
                let found = match tokio::task::spawn_blocking(scanner).await {
                    Ok(found) => found,
                    Err(_) => Scan {
                        members: vec![self.pid()],
                        strays: Vec::new(),
                    },
                };
                if found.is_empty() && self.try_reap() {
                    return;
                }
                self.kill_strays(&found.strays);
                watching = found.all();
            } else {
                watching.retain(|&p| self.still_ours(p));
                if watching.is_empty() {
                    continue; // the last ones just died: confirm with a full scan now
                }
            }
            // Processes normally die within tens of milliseconds of SIGKILL, but on a
            // loaded host the kernel may take hundreds to schedule their exit: poll the
            // watched PIDs (one stat each) often for the first seconds.
            let pause = if !watching.is_empty() && started.elapsed() < Duration::from_secs(2) {
                Duration::from_millis(2)
            } else {
                Duration::from_millis(20)
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Synchronous teardown for `Drop` paths: SIGKILL the group and every process the
    /// matcher proves, wait up to `budget` until they are gone, reap the leader. Never
    /// panics.
    pub(crate) fn kill_and_wait_sync(&self, budget: Duration) {
        if self.is_reaped() && self.matcher.live().is_empty() {
            return;
        }
        self.kill_forced();
        let deadline = Instant::now() + budget;
        loop {
            let found = (self.scanner())();
            for &pid in &found.strays {
                kill_if_proven(pid, &self.matcher);
            }
            if found.is_empty() && self.try_reap() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::error!(pgid = self.pid(), live = ?found.all(), "browser processes still alive after SIGKILL; giving up waiting");
                return;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if self.is_reaped() {
            return;
        }
        browserpool::run_blocking_cleanup(|| self.kill_and_wait_sync(Duration::from_secs(1)));
    }
}

/// SIGKILL `pid` only if it is alive and `matcher` proves it belongs to the session. The
/// process is pinned with a pidfd before the check, so the signal reaches the very
/// process that was checked, never a successor that reused its PID.
pub(crate) fn kill_if_proven(pid: i32, matcher: &SessionMatcher) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::SRCH) => return false,
        Err(_) => None, // kernel without pidfd: fall back to check-then-kill
    };
    if matcher.proof_for(pid).is_none() {
        return false;
    }
    let sent = match &fd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, Signal::KILL),
        None => rustix::process::kill_process(p, Signal::KILL),
    };
    sent.is_ok()
}
