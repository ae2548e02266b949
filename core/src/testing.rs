//! Test doubles, all in one place: a scriptable in-process [`ProcessLauncher`]
//! ([`FakeLauncher`]), an in-memory [`Filesystem`] with `flock`-like markers ([`MemFs`]),
//! a [`Clock`] that counts its sleeps and can be told to panic in them ([`FakeClock`]),
//! and a no-op launcher and filesystem for benchmarks ([`NullLauncher`], [`NullFs`]). The
//! fake launcher and filesystem can be told to panic in a given call ([`FakeCall`]), to
//! test the pool's supervision.
//!
//! They exist for this crate's tests, for benchmarks that must measure the pool without
//! a browser, for the turmoil harness of `browserpool-sim`, and for server authors who
//! want to unit-test their own code against a [`Pool`](crate::Pool) without Chromium. The
//! full simulated world (PIDs, process trees, injected faults) lives in
//! `browserpool-sim`; the real backend in `browserpool-chrome`.
//!
//! Only with the crate feature `testing`. Nothing here is covered by semver: it follows
//! the crate's internals. It also re-exports [`startup_sweep`], which a [`Pool`](crate::Pool)
//! runs by itself while holding its marker; simulations call it directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::backend::{
    DirEntryInfo, EntryKind, Filesystem, KillStage, LaunchSpec, MarkerLock, MarkerState,
    MemoryUsage, Orphan, ProcessLauncher, ProfileProbe,
};
use crate::error::{BackendError, BackendErrorKind};
use crate::session::SessionId;
use crate::time::{Clock, Timestamp, TokioClock};

pub use crate::sweep::exec::startup_sweep;

/// Tokio's clock (so it follows paused time), counting `sleep_until` calls (the pool's
/// reaper is what sleeps on a pool's clock) and panicking in the next
/// [`FakeClock::panic_next_sleeps`] of them.
#[derive(Debug, Default)]
pub struct FakeClock {
    inner: TokioClock,
    /// `sleep_until` calls so far.
    pub sleeps: AtomicU64,
    /// How many of the next `sleep_until` calls panic.
    pub panic_next_sleeps: AtomicU32,
    /// How many of the next `sleep_until` calls return at once, breaking [`Clock`]'s
    /// contract (a broken clock, for the pool's defence against one).
    pub wake_early_next: AtomicU32,
}

impl FakeClock {
    /// A clock whose epoch is now, that never panics until told to.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        self.sleeps.fetch_add(1, Ordering::Relaxed);
        let panics = self
            .panic_next_sleeps
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if panics {
            panic!("scripted clock panic");
        }
        let early = self
            .wake_early_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if early {
            return;
        }
        self.inner.sleep_until(deadline).await
    }
}

/// A backend call that a test double can be told to panic in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FakeCall {
    /// [`ProcessLauncher::launch`].
    Launch,
    /// [`ProcessLauncher::kill`].
    Kill,
    /// [`ProcessLauncher::wait_gone`].
    WaitGone,
    /// [`ProcessLauncher::exited`].
    Exited,
    /// [`ProcessLauncher::memory`].
    Memory,
    /// [`ProcessLauncher::memory_of_all`] itself, before it measures anything (a panic
    /// in one of the `memory` calls it makes is scripted with [`FakeCall::Memory`]).
    MemoryOfAll,
    /// [`ProcessLauncher::kill_on_drop`].
    KillOnDrop,
    /// [`Filesystem::create_dir`].
    CreateDir,
    /// [`Filesystem::remove_dir_all`].
    RemoveDir,
    /// [`Filesystem::remove_dir_all_sync`].
    RemoveDirSync,
}

/// How many more times each call panics. Clones share the script.
#[derive(Clone, Debug, Default)]
struct PanicScript(Arc<Mutex<BTreeMap<FakeCall, u32>>>);

impl PanicScript {
    fn arm(&self, call: FakeCall, times: u32) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call, times);
    }

    /// Panic if `call` is armed (and count it down).
    fn check(&self, call: FakeCall) {
        let fire = {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match m.get_mut(&call) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if fire {
            panic!("scripted panic in {call:?}");
        }
    }
}

/// A fake browser: alive until killed (or crashed by the test).
#[derive(Debug)]
pub struct FakeProcess(Arc<FakeProc>);

impl std::ops::Deref for FakeProcess {
    type Target = FakeProc;
    fn deref(&self) -> &FakeProc {
        &self.0
    }
}

/// The shared state of a [`FakeProcess`].
#[derive(Debug)]
pub struct FakeProc {
    /// The session it was launched for.
    pub id: SessionId,
    /// Its directory.
    pub dir: PathBuf,
    alive: watch::Sender<Option<String>>,
    kills_to_die: AtomicU32,
    live_count: Arc<AtomicU64>,
}

impl FakeProc {
    /// Whether it is still alive.
    pub fn is_alive(&self) -> bool {
        self.alive.borrow().is_none()
    }

    fn die(&self, how: &str) {
        let died = self.alive.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(how.to_owned());
                true
            } else {
                false
            }
        });
        if died {
            self.live_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct FakeState {
    processes: BTreeMap<SessionId, Arc<FakeProc>>,
    fail_launches: u32,
    stubborn_kills: u32,
    orphans: BTreeMap<PathBuf, Vec<Orphan>>,
    killed_orphans: Vec<Orphan>,
    fail_orphan_kills: bool,
    /// PSS reported per session, where a test set one (80 MiB otherwise).
    memory: BTreeMap<SessionId, u64>,
    memory_delay: Duration,
}

/// A scriptable launcher. Clones share state, so a test keeps one clone to steer and
/// inspect while the pool owns another.
#[derive(Clone, Default)]
pub struct FakeLauncher {
    state: Arc<Mutex<FakeState>>,
    launch_delay: Arc<Mutex<Duration>>,
    /// Number of `launch` calls.
    pub launches: Arc<AtomicU64>,
    /// Number of `kill_on_drop` calls that found a live process.
    pub drop_kills: Arc<AtomicU64>,
    /// The most fake browsers ever alive at once.
    pub peak_alive: Arc<AtomicU64>,
    live_count: Arc<AtomicU64>,
    /// Whether the launcher should write a file into each session directory at launch
    /// (to prove removal works on a non-empty directory).
    pub write_files: Arc<AtomicBool>,
    /// Number of `memory` calls (including those `memory_of_all` makes).
    pub memory_calls: Arc<AtomicU64>,
    /// Number of `memory_of_all` calls (one per sampling round).
    pub memory_batches: Arc<AtomicU64>,
    /// The most `memory` calls ever in flight at once.
    pub peak_memory_calls: Arc<AtomicU64>,
    /// Whether `memory_of_all` answers one figure fewer than it was asked for (a
    /// backend bug the pool must survive and report).
    pub short_memory_answers: Arc<AtomicBool>,
    memory_in_flight: Arc<AtomicU64>,
    panics: PanicScript,
}

impl FakeLauncher {
    /// A launcher whose launches succeed at once.
    pub fn new() -> Self {
        Self::default()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the next `n` launches fail.
    pub fn fail_next_launches(&self, n: u32) {
        self.st().fail_launches = n;
    }

    /// Make the next `times` calls of `call` panic (launcher calls only; see
    /// [`MemFs::panic_next`] for the filesystem's).
    pub fn panic_next(&self, call: FakeCall, times: u32) {
        self.panics.arm(call, times);
    }

    /// Make each launch take `d` (on tokio's clock, so paused time applies).
    pub fn set_launch_delay(&self, d: Duration) {
        *self.launch_delay.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    /// Processes launched from now on survive the first `n` forced kills.
    pub fn set_stubborn_kills(&self, n: u32) {
        self.st().stubborn_kills = n;
    }

    /// Simulate the browser of `id` exiting by itself.
    pub fn crash(&self, id: SessionId, how: &str) -> bool {
        match self.st().processes.get(&id) {
            Some(p) if p.is_alive() => {
                p.die(how);
                true
            }
            _ => false,
        }
    }

    /// Sessions whose fake browser is alive, in id order.
    pub fn alive(&self) -> Vec<SessionId> {
        self.st()
            .processes
            .iter()
            .filter(|(_, p)| p.is_alive())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Declare processes that `find_orphans(dir)` will report.
    pub fn add_orphans(&self, dir: &Path, orphans: Vec<Orphan>) {
        self.st().orphans.insert(dir.to_owned(), orphans);
    }

    /// Make `kill_orphan` fail (as if signalling were refused) until called with `false`.
    pub fn fail_orphan_kills(&self, fail: bool) {
        self.st().fail_orphan_kills = fail;
    }

    /// Make `memory` report `pss_bytes` of PSS (and twice that of RSS) for session `id`
    /// from now on (default: 80 MiB of PSS, 100 MiB of RSS).
    pub fn set_memory(&self, id: SessionId, pss_bytes: u64) {
        self.st().memory.insert(id, pss_bytes);
    }

    /// Make each `memory` call take `d` (on tokio's clock), so that concurrent calls
    /// overlap.
    pub fn set_memory_delay(&self, d: Duration) {
        self.st().memory_delay = d;
    }

    /// Orphans killed by sweeps so far.
    pub fn killed_orphans(&self) -> Vec<Orphan> {
        self.st().killed_orphans.clone()
    }
}

#[async_trait]
impl ProcessLauncher for FakeLauncher {
    type Process = FakeProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<FakeProcess, BackendError> {
        self.launches.fetch_add(1, Ordering::Relaxed);
        self.panics.check(FakeCall::Launch);
        let delay = *self.launch_delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (stubborn, fail) = {
            let mut st = self.st();
            let fail = st.fail_launches > 0;
            if fail {
                st.fail_launches -= 1;
            }
            (st.stubborn_kills, fail)
        };
        if fail {
            return Err(BackendError::new(
                "launch",
                BackendErrorKind::Launch,
                "scripted launch failure",
            ));
        }
        if self.write_files.load(Ordering::Relaxed) {
            let _ = std::fs::write(spec.dir.join("Preferences"), b"{}");
        }
        let (tx, _) = watch::channel(None);
        let p = Arc::new(FakeProc {
            id: spec.id,
            dir: spec.dir.clone(),
            alive: tx,
            kills_to_die: AtomicU32::new(stubborn + 1),
            live_count: self.live_count.clone(),
        });
        let alive = self.live_count.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_alive.fetch_max(alive, Ordering::Relaxed);
        {
            // Forget dead processes now and then, so the map stays O(live), amortised O(1).
            let mut st = self.st();
            st.processes.insert(spec.id, p.clone());
            if st.processes.len() as u64 > 2 * alive + 64 {
                st.processes.retain(|_, p| p.is_alive());
            }
        }
        Ok(FakeProcess(p))
    }

    async fn kill(&self, process: &FakeProcess, stage: KillStage) -> Result<(), BackendError> {
        self.panics.check(FakeCall::Kill);
        if stage == KillStage::Force && process.kills_to_die.fetch_sub(1, Ordering::AcqRel) <= 1 {
            process.die("killed by signal 9");
        }
        Ok(())
    }

    async fn wait_gone(&self, process: &FakeProcess) {
        self.panics.check(FakeCall::WaitGone);
        let mut rx = process.alive.subscribe();
        let _ = rx.wait_for(|v| v.is_some()).await;
    }

    async fn exited(&self, process: &FakeProcess) -> String {
        self.panics.check(FakeCall::Exited);
        let mut rx = process.alive.subscribe();
        let exit = rx
            .wait_for(|v| v.is_some())
            .await
            .map(|v| v.clone().unwrap_or_default());
        match exit {
            Ok(how) => how,
            Err(_) => std::future::pending().await,
        }
    }

    fn kill_on_drop(&self, process: &FakeProcess) {
        self.panics.check(FakeCall::KillOnDrop);
        if process.is_alive() {
            self.drop_kills.fetch_add(1, Ordering::Relaxed);
        }
        process.die("killed by signal 9 (drop)");
    }

    async fn memory(&self, process: &FakeProcess) -> Option<MemoryUsage> {
        self.memory_calls.fetch_add(1, Ordering::Relaxed);
        self.panics.check(FakeCall::Memory);
        let (set, delay) = {
            let st = self.st();
            (st.memory.get(&process.id).copied(), st.memory_delay)
        };
        if !delay.is_zero() {
            let n = self.memory_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            self.peak_memory_calls.fetch_max(n, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            self.memory_in_flight.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.peak_memory_calls.fetch_max(1, Ordering::Relaxed);
        }
        let usage = match set {
            Some(pss) => MemoryUsage {
                rss_bytes: pss.saturating_mul(2),
                pss_bytes: pss,
                processes: 11,
            },
            None => MemoryUsage {
                rss_bytes: 100 << 20,
                pss_bytes: 80 << 20,
                processes: 11,
            },
        };
        process.is_alive().then_some(usage)
    }

    /// Counted, then the default: every `memory` call at once.
    async fn memory_of_all(&self, processes: &[Arc<FakeProcess>]) -> Vec<Option<MemoryUsage>> {
        self.memory_batches.fetch_add(1, Ordering::Relaxed);
        self.panics.check(FakeCall::MemoryOfAll);
        let mut figures = crate::backend::memory_of_each(self, processes).await;
        if self.short_memory_answers.load(Ordering::Relaxed) {
            figures.pop();
        }
        figures
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        Ok(self.st().orphans.remove(dir).unwrap_or_default())
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        let mut st = self.st();
        if st.fail_orphan_kills {
            return Err(BackendError::new(
                "kill_orphan",
                BackendErrorKind::PermissionDenied,
                "scripted kill failure",
            )
            .at(&orphan.dir));
        }
        st.killed_orphans.push(orphan.clone());
        Ok(true)
    }
}

/// A launcher whose browsers are a flag, alive until killed: it does nothing but what
/// the trait requires, for benchmarks of the pool's own overhead. (A [`FakeLauncher`]
/// also keeps a map of every process for tests to inspect; a launch of a `NullLauncher`
/// allocates one cell, a kill marks it dead.)
#[derive(Clone, Copy, Debug, Default)]
pub struct NullLauncher;

/// A [`NullLauncher`] browser.
#[derive(Debug)]
pub struct NullProcess {
    dead: watch::Sender<bool>,
}

impl NullProcess {
    /// Whether it is still alive.
    pub fn is_alive(&self) -> bool {
        !*self.dead.borrow()
    }

    fn die(&self) {
        self.dead.send_replace(true);
    }

    async fn wait_dead(&self) {
        let mut rx = self.dead.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

#[async_trait]
impl ProcessLauncher for NullLauncher {
    type Process = NullProcess;

    async fn launch(&self, _spec: &LaunchSpec) -> Result<NullProcess, BackendError> {
        let (dead, _) = watch::channel(false);
        Ok(NullProcess { dead })
    }

    async fn kill(&self, process: &NullProcess, _stage: KillStage) -> Result<(), BackendError> {
        process.die();
        Ok(())
    }

    async fn wait_gone(&self, process: &NullProcess) {
        process.wait_dead().await;
    }

    async fn exited(&self, process: &NullProcess) -> String {
        process.wait_dead().await;
        "killed".to_owned()
    }

    fn kill_on_drop(&self, process: &NullProcess) {
        process.die();
    }

    async fn find_orphans(&self, _dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        Ok(Vec::new())
    }

    async fn kill_orphan(&self, _orphan: &Orphan) -> Result<bool, BackendError> {
        Ok(false)
    }
}

/// A filesystem that stores nothing and always succeeds: for benchmarks of the pool's
/// own overhead. Markers are always reported dead, listings empty, and no directory
/// holds a profile.
#[derive(Clone, Debug, Default)]
pub struct NullFs;

#[async_trait]
impl Filesystem for NullFs {
    fn current_uid(&self) -> u32 {
        0
    }
    async fn create_dir(&self, _: &Path) -> Result<(), BackendError> {
        Ok(())
    }
    async fn list_prefixed(&self, _: &Path, _: &str) -> Result<Vec<DirEntryInfo>, BackendError> {
        Ok(Vec::new())
    }
    async fn remove_dir_all(&self, _: &Path) -> Result<(), BackendError> {
        Ok(())
    }
    fn remove_dir_all_sync(&self, _: &Path) -> Result<(), BackendError> {
        Ok(())
    }
    async fn remove_dead_marker(&self, _: &Path) -> Result<bool, BackendError> {
        Ok(true)
    }
    async fn lock_marker(&self, _: &Path) -> Result<MarkerLock, BackendError> {
        Ok(MarkerLock(Box::new(())))
    }
    async fn probe_marker(&self, _: &Path) -> Result<MarkerState, BackendError> {
        Ok(MarkerState::Dead)
    }
    async fn probe_profile(&self, _: &Path) -> Result<ProfileProbe, BackendError> {
        // Stores nothing, so nothing there is a profile: a legacy name is never removed.
        Ok(ProfileProbe {
            age: Duration::ZERO,
            layout: None,
        })
    }
}

#[derive(Default)]
struct MemFsState {
    /// Entries directly under a root, by full path.
    entries: BTreeMap<PathBuf, EntryKind>,
    /// Locked markers and the generation of the lock.
    locks: BTreeMap<PathBuf, u64>,
    next_gen: u64,
}

/// An in-memory [`Filesystem`]: a flat set of entries (session directories and marker
/// files), all owned by [`MemFs::UID`], with `flock`-like marker locks.
///
/// A marker lock is released when its [`MarkerLock`] is dropped (a pool dropped with
/// destructors) or when [`MemFs::process_died`] is called (the kernel releasing the locks
/// of a process that crashed without running destructors). Directory contents, symlinks,
/// other users' entries and injected I/O errors are not modelled (the simulated world in
/// `browserpool-sim` does that). Clones share state.
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemFsState>>,
    panics: PanicScript,
}

struct MemLock {
    state: Arc<Mutex<MemFsState>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.locks.get(&self.path) == Some(&self.generation) {
            st.locks.remove(&self.path);
        }
    }
}

impl MemFs {
    /// The user id every entry belongs to.
    pub const UID: u32 = 1000;

    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, MemFsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the next `times` calls of `call` panic (filesystem calls only:
    /// [`FakeCall::CreateDir`], [`FakeCall::RemoveDir`], [`FakeCall::RemoveDirSync`]).
    pub fn panic_next(&self, call: FakeCall, times: u32) {
        self.panics.arm(call, times);
    }

    /// The process that held the marker at `marker` died: the OS releases its lock.
    pub fn process_died(&self, marker: &Path) {
        self.st().locks.remove(marker);
    }

    /// Every entry, in path order.
    pub fn entries(&self) -> Vec<(PathBuf, EntryKind)> {
        self.st()
            .entries
            .iter()
            .map(|(p, k)| (p.clone(), *k))
            .collect()
    }

    /// Session directories (entries of kind `Dir`), in path order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.st()
            .entries
            .iter()
            .filter(|(_, k)| **k == EntryKind::Dir)
            .map(|(p, _)| p.clone())
            .collect()
    }
}

#[async_trait]
impl Filesystem for MemFs {
    fn current_uid(&self) -> u32 {
        Self::UID
    }

    async fn create_dir(&self, path: &Path) -> Result<(), BackendError> {
        self.panics.check(FakeCall::CreateDir);
        let mut st = self.st();
        if st.entries.contains_key(path) {
            return Err(
                BackendError::new("create_dir", BackendErrorKind::AlreadyExists, "exists").at(path),
            );
        }
        st.entries.insert(path.to_owned(), EntryKind::Dir);
        Ok(())
    }

    async fn list_prefixed(
        &self,
        root: &Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError> {
        let st = self.st();
        let mut out: Vec<DirEntryInfo> = st
            .entries
            .iter()
            .filter(|(p, _)| p.parent() == Some(root))
            .filter_map(|(p, k)| {
                let name = p.file_name()?.to_str()?.to_owned();
                name.starts_with(prefix).then(|| DirEntryInfo {
                    name,
                    path: p.clone(),
                    kind: *k,
                    uid: Self::UID,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), BackendError> {
        self.panics.check(FakeCall::RemoveDir);
        self.st().entries.remove(path);
        Ok(())
    }

    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError> {
        self.panics.check(FakeCall::RemoveDirSync);
        self.st().entries.remove(path);
        Ok(())
    }

    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError> {
        let mut st = self.st();
        if st.locks.contains_key(path) {
            return Ok(false);
        }
        st.entries.remove(path);
        Ok(true)
    }

    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        let mut st = self.st();
        if st.locks.contains_key(path) {
            return Err(BackendError::new(
                "lock_marker",
                BackendErrorKind::Busy,
                "marker locked by a live process",
            )
            .at(path));
        }
        st.entries.insert(path.to_owned(), EntryKind::File);
        st.next_gen += 1;
        let generation = st.next_gen;
        st.locks.insert(path.to_owned(), generation);
        Ok(MarkerLock(Box::new(MemLock {
            state: self.state.clone(),
            path: path.to_owned(),
            generation,
        })))
    }

    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        Ok(if self.st().locks.contains_key(path) {
            MarkerState::Live
        } else {
            MarkerState::Dead
        })
    }
    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        // Only pools make entries here, and they keep no contents or times: nothing is
        // a profile, so a legacy-looking name is never removed.
        if self.st().entries.get(path) == Some(&EntryKind::Dir) {
            Ok(ProfileProbe {
                age: Duration::ZERO,
                layout: None,
            })
        } else {
            Err(BackendError::new(
                "probe_profile",
                BackendErrorKind::NotFound,
                "no such directory",
            )
            .at(path))
        }
    }
}
