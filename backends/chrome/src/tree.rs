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
//! ## Why zombies count as gone
//!
//! When the leader dies, the other members are reparented to init (or a subreaper),
//! which may reap them seconds later. A zombie holds no memory and runs no code, so
//! "gone" means "no member of the group is alive", read from `/proc/<pid>/stat`; waiting
//! for the group id to vanish entirely (`kill(-pgid, 0)` failing) would make every
//! teardown look as slow as init's reaping.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ChildStderr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitOptions};
use tokio::sync::watch;

use crate::procfs;

/// Bytes of the browser's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

pub(crate) struct Tree {
    pid: Pid,
    /// Set once the leader is reaped; from then on the group is never signalled again.
    reaped: Mutex<bool>,
    exit_tx: Arc<watch::Sender<Option<String>>>,
    exit_rx: watch::Receiver<Option<String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The session directory; see [`procfs::session_proof`].
    dir: PathBuf,
    /// Processes of this browser found outside its group (and killed by PID).
    strays: Arc<Mutex<Vec<i32>>>,
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
    /// Take ownership of a freshly forked group leader. From here on, dropping the
    /// `Tree` kills and reaps the whole group (bounded), so a launch that fails or is
    /// cancelled leaves nothing running.
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
            dir,
            strays: Arc::new(Mutex::new(Vec::new())),
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

    /// A job (blocking: scans `/proc`) that kills the processes of this browser that
    /// left its group (Chromium's crash handler calls `setsid`), re-checking the proof
    /// immediately before each signal, and remembers them for [`Tree::wait_gone`].
    pub(crate) fn stray_killer(&self) -> impl FnOnce() + Send + 'static {
        let pgid = self.pid();
        let dir = self.dir.clone();
        let strays = self.strays.clone();
        move || {
            for (s, _) in procfs::live_belonging_to(&dir) {
                if s.pgrp != pgid && kill_if_proven(s.pid, &[dir.as_path()]) {
                    lock(&strays).push(s.pid);
                }
            }
        }
    }

    fn strays_gone(&self) -> bool {
        let mut strays = lock(&self.strays);
        strays.retain(|&p| procfs::proof_for(p, &self.dir).is_some());
        strays.is_empty()
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

    /// Resolves when no live process of the group (and no stray) remains, and the leader
    /// is reaped. Cancel-safe. Polls `/proc`: a full scan, then only the members it
    /// found, then a full scan again to confirm.
    pub(crate) async fn wait_gone(&self) {
        let pgid = self.pid();
        let started = Instant::now();
        let mut watching: Option<Vec<i32>> = None;
        loop {
            match watching.take() {
                None => {
                    let live =
                        tokio::task::spawn_blocking(move || procfs::live_group_members(pgid))
                            .await
                            .unwrap_or_else(|_| vec![pgid]);
                    if live.is_empty() && self.strays_gone() && self.try_reap() {
                        return;
                    }
                    watching = Some(live);
                }
                Some(pids) => {
                    let live = procfs::still_live_in_group(&pids, pgid);
                    if live.is_empty() && !pids.is_empty() {
                        continue; // the last ones just died: confirm with a full scan now
                    }
                    if !live.is_empty() {
                        watching = Some(live);
                    }
                }
            }
            let pause = if started.elapsed() < Duration::from_millis(300) {
                Duration::from_millis(3)
            } else {
                Duration::from_millis(25)
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Synchronous teardown for `Drop` paths: SIGKILL the group and strays, wait up to
    /// `budget` until they are gone, reap the leader. Never panics.
    pub(crate) fn kill_and_wait_sync(&self, budget: Duration) {
        if self.is_reaped() {
            return;
        }
        self.signal_group(Signal::KILL);
        (self.stray_killer())();
        let deadline = Instant::now() + budget;
        let pgid = self.pid();
        loop {
            let live = procfs::live_group_members(pgid);
            if live.is_empty() && self.strays_gone() && self.try_reap() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::error!(pgid, live = ?live, "browser processes still alive after SIGKILL; giving up waiting");
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
        browserpool::dropnet::run_blocking_cleanup(|| {
            self.kill_and_wait_sync(Duration::from_secs(1))
        });
    }
}

/// SIGKILL `pid` only if it is alive and carries a [`procfs::session_proof`] for one of
/// `dirs`. The process is pinned with a pidfd before the check, so the signal reaches
/// the very process that was checked, never a successor that reused its PID.
pub(crate) fn kill_if_proven(pid: i32, dirs: &[&Path]) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::SRCH) => return false,
        Err(_) => None, // kernel without pidfd: fall back to check-then-kill
    };
    if !dirs.iter().any(|d| procfs::proof_for(pid, d).is_some()) {
        return false;
    }
    let sent = match &fd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, Signal::KILL),
        None => rustix::process::kill_process(p, Signal::KILL),
    };
    sent.is_ok()
}
