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
//! teardown look as slow as init's reaping. A process whose main thread is a zombie
//! while other threads still exit is *not* gone (see [`procfs::ProcStat::is_live`]):
//! [`Tree::wait_gone`] waits on pidfds, which the kernel makes readable only when the
//! last thread is gone.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ChildStderr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitOptions};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use crate::matcher::SessionMatcher;
use crate::procfs;

/// The nice value given to a session's processes just before SIGKILL (see
/// [`prioritise_exit`]).
const EXIT_NICE: i32 = -20;

/// Best effort: give every thread of the process group `pgid` nice [`EXIT_NICE`], so
/// that the exit a SIGKILL is about to start runs before anything else on the host.
///
/// After SIGKILL each process of the browser still runs its exit in the kernel, unmapping
/// its address space: most of a teardown (~70 ms of CPU for one browser). On a busy host
/// that exit competed with the other browsers and with new launches, and took 3 to 5
/// times longer (measured with 20 clients on 4 browsers on 2 cores: `processes_exit` p50
/// 278 ms, p99 492-592 ms; with this, 85-99 ms and 175-184 ms; crate README). The group is
/// the session's own (the caller holds the `reaped` lock, so its id was not reused).
/// Lowering a nice value needs `CAP_SYS_NICE` (or `RLIMIT_NICE`); without it this does
/// nothing and the kill proceeds unboosted. Helpers outside the group (the crash
/// handler) are not boosted: a PID outside the group could change hands between proof
/// and `setpriority`, which takes no pidfd.
fn prioritise_exit(pgid: Pid) {
    match rustix::process::setpriority_pgrp(Some(pgid), EXIT_NICE) {
        Ok(()) | Err(Errno::SRCH | Errno::ACCESS | Errno::PERM) => {}
        Err(e) => {
            tracing::debug!(pgid = pgid.as_raw_nonzero().get(), error = %e, "raising a dying session's priority failed")
        }
    }
}

/// Bytes of the browser's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

/// The process group ids of every browser this process launched whose leader is not
/// reaped yet (in any pool). While a leader is unreaped its PID, and so its group id,
/// cannot be reused, and every process in that group belongs to that browser: a scan for
/// one session's helpers need not read the command lines of the others' group members.
/// On a host running several browsers that are being torn down, those reads are the slow
/// part of a scan: reading `/proc/<pid>/cmdline` takes the target's memory-map lock, which
/// a dying process holds while it unmaps its memory (measured: 60-110 command lines and
/// up to a second per scan with 20 clients on 4 browsers, before this).
///
/// A group leaves the set *before* its leader is reaped, so the set never names a group
/// id that could have been reused; a scan re-reads the set after it and reads the
/// command lines it skipped for groups that left meanwhile.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live_groups() -> BTreeSet<i32> {
    lock(&LIVE_GROUPS).clone()
}

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
    /// When the main process started (clock ticks since boot, from `/proc`): a process
    /// that started earlier cannot be one of its descendants, so scans never read its
    /// command line. `None` if it could not be read (then every command line is read).
    born: Option<u64>,
    /// When the first forced kill was ordered (for the teardown timing event).
    killed_at: Mutex<Option<Instant>>,
}

/// One full `/proc` scan of a session's live processes.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Live members of the browser's process group.
    pub members: Vec<i32>,
    /// Live processes outside the group that the matcher proves are the session's.
    pub strays: Vec<i32>,
    /// When each of them started (clock ticks since boot), as the scan read it.
    pub started: Vec<(i32, u64)>,
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

/// What one `/proc` scan read, and how long it took.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ScanCost {
    /// Live processes whose `stat` was read.
    pub processes: u32,
    /// Command lines read (to ask the matcher).
    pub cmdlines: u32,
    /// From asking for the scan until it started (the blocking pool's queue).
    pub queued: Duration,
    /// The scan itself.
    pub took: Duration,
}

/// What a `/proc` scan needs to know of one session (see [`Tree::target`]).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The browser's process group id, while it is ours (the leader unreaped).
    pgid: Option<i32>,
    /// When the browser's main process started (clock ticks since boot), if known.
    born: Option<u64>,
    matcher: Arc<SessionMatcher>,
}

impl Target {
    /// Whether this session's matcher must judge `st` (from its command line): not a
    /// member of the session's own group, not older than its browser, and not a member
    /// of another browser's live group (`skip`).
    fn asks(&self, st: &procfs::ProcStat, skip: &BTreeSet<i32>) -> bool {
        self.pgid != Some(st.pgrp)
            && self.born.is_none_or(|b| st.start_ticks >= b)
            && !skip.contains(&st.pgrp)
    }
}

/// One `/proc` scan for the live processes of every session of `targets`, one [`Scan`]
/// per target in the same order. For each target it finds what a scan for that session
/// alone would find on the same snapshot: the live members of its group `pgid` (if the
/// group id is still ours) and the processes its matcher proves among those that started
/// no earlier than its main process (`born`). Each process's `stat` is read once, and its
/// command line at most once however many sessions ask about it; so measuring N sessions
/// costs one pass over `/proc`, not N.
///
/// Which sessions a process is found for follows from the matcher: session directories
/// are unique and never nested, and live groups are disjoint, so a process is found for
/// at most one session.
pub(crate) fn scan_sessions(targets: &[Target]) -> (Vec<Scan>, ScanCost) {
    let started = Instant::now();
    let mut out: Vec<Scan> = targets.iter().map(|_| Scan::default()).collect();
    let mut cost = ScanCost::default();
    if targets.is_empty() {
        return (out, cost);
    }
    // Group members are known from their stat: their command lines are not read (they
    // are the processes dying right now). Neither are those of processes older than the
    // browser: every process of the session descends from its main process, so it
    // started at or after it (the same clock tick counts). On a host running other
    // browsers, that skips most command-line reads, each of which has to lock the
    // target's memory map.
    //
    // Nor are those of members of other browsers' live groups (see `LIVE_GROUPS`).
    let others = live_groups();
    let mut live = procfs::scan_live(|st| {
        cost.processes += 1;
        let read = targets.iter().any(|t| t.asks(st, &others));
        cost.cmdlines += u32::from(read);
        read
    });
    // A group that left the set during the scan may have had its id reused: read the
    // command lines skipped for it after all. Groups in the set before and after are
    // the ones skipped.
    let now = live_groups();
    let both: BTreeSet<i32> = others.intersection(&now).copied().collect();
    for (st, cmd) in &mut live {
        if cmd.is_none() && targets.iter().any(|t| t.asks(st, &both)) {
            cost.cmdlines += 1;
            *cmd = procfs::cmdline_raw(st.pid);
        }
    }
    for (st, cmd) in &live {
        for (t, found) in targets.iter().zip(&mut out) {
            if t.pgid == Some(st.pgrp) {
                found.members.push(st.pid);
            } else if cmd
                .as_ref()
                .is_some_and(|cmd| t.asks(st, &both) && t.matcher.matches(cmd))
            {
                found.strays.push(st.pid);
            } else {
                continue;
            }
            found.started.push((st.pid, st.start_ticks));
        }
    }
    cost.took = started.elapsed();
    (out, cost)
}

/// What a [`Tree::wait_gone`] did, for its timing event.
#[derive(Debug, Default)]
struct GoneCost {
    scans: u32,
    processes: u32,
    cmdlines: u32,
    queued: Duration,
    scanning: Duration,
    /// Processes waited for through a pidfd, and by polling `/proc` (no pidfd).
    pidfd_waits: u32,
    polled: u32,
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
            born: procfs::stat(pid.as_raw_pid()).map(|s| s.start_ticks),
            killed_at: Mutex::new(None),
        };
        lock(&LIVE_GROUPS).insert(pid.as_raw_pid());
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
            if sig == Signal::KILL {
                prioritise_exit(self.pid);
            }
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
        let job = self.costed_scanner();
        move || job().0
    }

    /// [`Tree::scanner`], also telling what the scan read and how long it took.
    fn costed_scanner(&self) -> impl FnOnce() -> (Scan, ScanCost) + Send + 'static {
        let target = self.target();
        move || {
            let (mut found, cost) = scan_sessions(std::slice::from_ref(&target));
            (found.pop().unwrap_or_default(), cost)
        }
    }

    /// What a scan for this session needs, as of now (the group id only while the
    /// leader is unreaped), for [`scan_sessions`].
    pub(crate) fn target(&self) -> Target {
        Target {
            pgid: (!self.is_reaped()).then(|| self.pid()),
            born: self.born,
            matcher: self.matcher.clone(),
        }
    }

    /// The forced kill: SIGKILL the group now, and from now on every process of the
    /// session that a scan finds outside the group (the crash handler calls `setsid`),
    /// re-checking the proof immediately before each signal. [`Tree::wait_gone`]'s
    /// first scan, right after, is the one that finds them: one `/proc` scan, not two.
    pub(crate) fn kill_forced(&self) {
        lock(&self.killed_at).get_or_insert_with(Instant::now);
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
        // Out of the live groups before the leader can be reaped (its id may be reused
        // from then on); back in if it was not.
        lock(&LIVE_GROUPS).remove(&self.pid());
        *reaped = self.reap_now();
        if !*reaped {
            lock(&LIVE_GROUPS).insert(self.pid());
        }
        *reaped
    }

    /// The reaping proper, under the `reaped` lock: whether the leader is reaped now.
    fn reap_now(&self) -> bool {
        // Reap every exited child of ours in the group: the leader and, when this
        // process is a child subreaper, members that were reparented to it.
        let mut reaped = false;
        loop {
            match rustix::process::waitpgid(self.pid, WaitOptions::NOHANG) {
                Ok(Some((p, st))) => {
                    if p == self.pid {
                        publish(&self.exit_tx, describe_wait(st));
                        reaped = true;
                    }
                }
                Err(Errno::INTR) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if reaped {
            return true;
        }
        match rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => {
                publish(&self.exit_tx, describe_wait(st));
                true
            }
            Ok(None) => false,
            Err(Errno::CHILD) => {
                // Reaped by someone else (a foreign SIGCHLD handler): gone all the same.
                publish(&self.exit_tx, "exited (reaped elsewhere)".to_owned());
                true
            }
            Err(e) => {
                tracing::warn!(pid = self.pid(), error = %e, "waitpid on the browser failed");
                false
            }
        }
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
    /// Cancel-safe.
    ///
    /// Between full scans it does not poll: each process the last scan found is pinned
    /// with a pidfd (re-checked as the session's after pinning, so a PID that changed
    /// hands is never waited for), and the wait is for every pidfd to become readable,
    /// which the kernel signals when the process's *last thread* is gone (its memory
    /// unmapped). Then one more full scan catches helpers that appeared meanwhile (the
    /// crash handler's double fork). Processes that cannot be pinned (a kernel without
    /// pidfds, a runtime without an I/O driver) are polled through `/proc` instead.
    ///
    /// Emits a `debug` event (target `browserpool_chrome::teardown`, message
    /// `"session processes gone"`) with what the wait cost: full scans, processes and
    /// command lines read, time queued for and spent in scans, and the time since the
    /// forced kill.
    pub(crate) async fn wait_gone(&self) {
        let started = Instant::now();
        let mut cost = GoneCost::default();
        loop {
            let asked = Instant::now();
            let job = self.costed_scanner();
            let found = match tokio::task::spawn_blocking(move || {
                let queued = asked.elapsed();
                let (scan, mut c) = job();
                c.queued = queued;
                (scan, c)
            })
            .await
            {
                Ok((found, c)) => {
                    cost.scans += 1;
                    cost.processes += c.processes;
                    cost.cmdlines += c.cmdlines;
                    cost.queued += c.queued;
                    cost.scanning += c.took;
                    found
                }
                Err(_) => Scan {
                    members: vec![self.pid()],
                    ..Scan::default()
                },
            };
            if found.is_empty() && self.try_reap() {
                let killed_at = *lock(&self.killed_at);
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                tracing::debug!(
                    target: "browserpool_chrome::teardown",
                    pgid = self.pid(),
                    dir = %self.matcher.dir().display(),
                    since_kill_ms = killed_at.map_or(f64::NAN, |k| ms(k.elapsed())),
                    wait_ms = ms(started.elapsed()),
                    scans = cost.scans,
                    processes_read = cost.processes,
                    cmdlines_read = cost.cmdlines,
                    scan_queued_ms = ms(cost.queued),
                    scanning_ms = ms(cost.scanning),
                    pidfd_waits = cost.pidfd_waits,
                    polled = cost.polled,
                    "session processes gone"
                );
                return;
            }
            self.kill_strays(&found.strays);
            let mut pids: Vec<(i32, Option<u64>)> =
                found.all().into_iter().map(|p| (p, None)).collect();
            for (pid, start) in &mut pids {
                *start = found
                    .started
                    .iter()
                    .find(|(p, _)| p == pid)
                    .map(|&(_, s)| s);
            }
            self.wait_exits(&pids, &mut cost).await;
        }
    }

    /// Wait until none of `pids` (found by a scan, with the start time it read) is a
    /// live process of the session.
    async fn wait_exits(&self, pids: &[(i32, Option<u64>)], cost: &mut GoneCost) {
        let mut pinned = Vec::new();
        let mut polled = Vec::new();
        for &(pid, start) in pids {
            let Some(p) = Pid::from_raw(pid) else {
                continue;
            };
            match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
                Ok(fd) => {
                    // Pinned first, checked second: if the PID changed hands before the
                    // pin, the check sees the stranger and we do not wait for it. The
                    // check is the scan's (group or matcher), or the same PID with the
                    // same start time as the scan read: a dying helper outside the group
                    // whose main thread is already gone has no command line left for the
                    // matcher, but its last threads still hold its memory. (Waiting is
                    // all this decides; nothing is signalled on this check.)
                    let same = start.is_some()
                        && procfs::stat(pid)
                            .is_some_and(|s| s.is_live() && Some(s.start_ticks) == start);
                    if !same && !self.still_ours(pid) {
                        continue;
                    }
                    // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open and
                    // names the same pidfd for as long as it is registered.
                    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                        Ok(fd) => pinned.push((pid, fd)),
                        Err(_) => polled.push(pid),
                    }
                }
                Err(Errno::SRCH) => {}
                Err(_) => polled.push(pid),
            }
        }
        cost.pidfd_waits += pinned.len() as u32;
        cost.polled += polled.len() as u32;
        let pinned = futures::future::join_all(pinned.iter().map(|(pid, fd)| async move {
            if fd.readable().await.is_err() {
                // The I/O driver is shutting down: fall back to polling this one.
                self.poll_exit(vec![*pid]).await;
            }
        }));
        futures::join!(pinned, self.poll_exit(polled));
    }

    /// Poll `/proc` until none of `pids` is a live process of the session: every 2 ms
    /// for the first two seconds (processes normally die within tens of milliseconds of
    /// SIGKILL, hundreds on a loaded host), then every 20 ms.
    async fn poll_exit(&self, mut pids: Vec<i32>) {
        let started = Instant::now();
        loop {
            pids.retain(|&p| self.still_ours(p));
            if pids.is_empty() {
                return;
            }
            let pause = if started.elapsed() < Duration::from_secs(2) {
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
        if !self.is_reaped() {
            browserpool::run_blocking_cleanup(|| self.kill_and_wait_sync(Duration::from_secs(1)));
        }
        // Reaped, or given up on (then the unreaped leader keeps pinning its id, and
        // scans simply read its members' command lines again).
        lock(&LIVE_GROUPS).remove(&self.pid());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_dying_group_is_prioritised_when_the_process_may() {
        // A group of two processes: the shell (leader) and its `sleep` child.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & exec sleep 31"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(child.id() as i32).unwrap();
        let members = || procfs::live_group_members(pgid.as_raw_nonzero().get());
        let deadline = Instant::now() + Duration::from_secs(10);
        while members().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let found = members();
        let before: Vec<i32> = found
            .iter()
            .map(|&p| rustix::process::getpriority_process(Pid::from_raw(p)).unwrap())
            .collect();
        prioritise_exit(pgid);
        let after: Vec<i32> = found
            .iter()
            .map(|&p| rustix::process::getpriority_process(Pid::from_raw(p)).unwrap())
            .collect();
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        let _ = child.wait();
        assert_eq!(found.len(), 2, "both members found: {found:?}");
        if rustix::process::geteuid().is_root() {
            assert_eq!(after, vec![EXIT_NICE; 2], "every member is urgent");
        } else {
            assert_eq!(after, before, "without the privilege nothing changes");
        }
    }
}
