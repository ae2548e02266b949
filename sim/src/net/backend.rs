//! The backends the turmoil server's pool runs on, chosen with [`NetBackend`]:
//! - [`NetLauncher`] (the core's [`FakeLauncher`] plus a process registry that survives
//!   a server crash, so the next incarnation's startup sweep can find and kill orphans)
//!   with [`MemFs`] (an in-memory filesystem whose marker locks are released when the
//!   owning incarnation dies);
//! - the simulated [`World`] of `browserpool_sim::world`, through its `SimBackend`.
//!
//! Both live *outside* the simulated server host, in the harness, like the OS does: a
//! crash of the server loses the pool's memory but not its processes or directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use browserpool::testing::{FakeLauncher, FakeProcess};
use browserpool::{
    sweep, BackendError, BackendErrorKind, DirEntryInfo, EntryKind, Filesystem, KillStage,
    LaunchSpec, MarkerLock, MarkerState, MemoryUsage, Orphan, ProcessLauncher, ProfileProbe,
};

use crate::world::backend::{SimBackend, SimLauncher, SimProcess};
use crate::world::{World, WorldConfig};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A browser launched by [`NetLauncher`]: a [`FakeProcess`] with a simulated PID.
#[derive(Clone, Debug)]
pub struct NetProcess {
    fake: Arc<FakeProcess>,
    /// Simulated process id, unique for the whole run (never reused).
    pub pid: u32,
}

impl NetProcess {
    /// Whether the browser is still alive.
    pub fn is_alive(&self) -> bool {
        self.fake.is_alive()
    }

    /// The session directory it was launched in.
    pub fn dir(&self) -> &Path {
        &self.fake.dir
    }
}

#[derive(Default)]
struct Registry {
    /// Every browser ever launched, by its (unique) session directory.
    by_dir: BTreeMap<PathBuf, NetProcess>,
    next_pid: u32,
}

/// A [`ProcessLauncher`] for the turmoil simulations.
///
/// Launches, kills and exit notification are the core's [`FakeLauncher`] (so launch
/// failures can be scripted through [`NetLauncher::fake`]). On top of it, a registry of
/// every browser by session directory, shared by all clones, gives:
/// - orphan discovery for the startup sweep: `find_orphans(dir)` reports the live browser
///   launched in `dir` (the proof is the registry entry, standing in for Chrome's
///   `--user-data-dir` command line), and `kill_orphan` re-checks it before killing;
/// - counts of live browsers per pool instance, for the invariants.
///
/// Not modelled: PID reuse, process trees, slow or ignored kills, kill-on-parent-death
/// (browsers always survive a server crash, the worst case for leaks).
#[derive(Clone, Default)]
pub struct NetLauncher {
    fake: FakeLauncher,
    registry: Arc<Mutex<Registry>>,
}

impl NetLauncher {
    /// A launcher whose launches succeed at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// The underlying [`FakeLauncher`] (to script launch failures or crashes).
    pub fn fake(&self) -> &FakeLauncher {
        &self.fake
    }

    /// Every browser still alive, in directory order.
    pub fn alive(&self) -> Vec<NetProcess> {
        lock(&self.registry)
            .by_dir
            .values()
            .filter(|p| p.is_alive())
            .cloned()
            .collect()
    }

    /// Live browsers per pool instance (parsed from the directory name with `prefix`).
    pub fn alive_by_instance(&self, prefix: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for p in self.alive() {
            let name = p
                .dir()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = match sweep::parse_name(prefix, &name) {
                sweep::ParsedName::Session { instance, .. } => instance,
                _ => String::new(),
            };
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    /// The browser launched in `dir`, if any (alive or not).
    pub fn process_in(&self, dir: &Path) -> Option<NetProcess> {
        lock(&self.registry).by_dir.get(dir).cloned()
    }

    /// Browsers launched so far.
    pub fn launched(&self) -> usize {
        lock(&self.registry).by_dir.len()
    }
}

#[async_trait]
impl ProcessLauncher for NetLauncher {
    type Process = NetProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<NetProcess, BackendError> {
        let fake = Arc::new(self.fake.launch(spec).await?);
        let mut reg = lock(&self.registry);
        reg.next_pid += 1;
        let p = NetProcess {
            fake,
            pid: 1000 + reg.next_pid,
        };
        reg.by_dir.insert(spec.dir.clone(), p.clone());
        Ok(p)
    }

    async fn kill(&self, process: &NetProcess, stage: KillStage) -> Result<(), BackendError> {
        self.fake.kill(&process.fake, stage).await
    }

    async fn wait_gone(&self, process: &NetProcess) {
        self.fake.wait_gone(&process.fake).await
    }

    async fn exited(&self, process: &NetProcess) -> String {
        self.fake.exited(&process.fake).await
    }

    fn kill_on_drop(&self, process: &NetProcess) {
        self.fake.kill_on_drop(&process.fake)
    }

    async fn memory(&self, process: &NetProcess) -> Option<MemoryUsage> {
        self.fake.memory(&process.fake).await
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        let reg = lock(&self.registry);
        Ok(reg
            .by_dir
            .get(dir)
            .filter(|p| p.is_alive())
            .map(|p| Orphan {
                pid: p.pid,
                dir: dir.to_owned(),
                proof: format!(
                    "pid {} was launched with --user-data-dir={}",
                    p.pid,
                    dir.display()
                ),
            })
            .into_iter()
            .collect())
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        let found = lock(&self.registry).by_dir.get(&orphan.dir).cloned();
        let Some(p) = found.filter(|p| p.pid == orphan.pid && p.is_alive()) else {
            return Ok(false);
        };
        for _ in 0..8 {
            self.fake.kill(&p.fake, KillStage::Force).await?;
            if !p.is_alive() {
                return Ok(true);
            }
        }
        Err(BackendError::new(
            "kill_orphan",
            BackendErrorKind::TimedOut,
            format!("pid {} survived 8 forced kills", p.pid),
        )
        .at(&orphan.dir))
    }
}

#[derive(Default)]
struct FsState {
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
/// destructors) or when the harness calls [`MemFs::process_died`] (the kernel releasing
/// the locks of a process that crashed without running destructors). Directory contents,
/// symlinks, other users' entries and injected I/O errors are not modelled (the
/// simulated world in `browserpool_sim` does that).
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<FsState>>,
}

struct MemLock {
    state: Arc<Mutex<FsState>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
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

    /// The process that held the marker at `marker` died: the OS releases its lock.
    pub fn process_died(&self, marker: &Path) {
        lock(&self.state).locks.remove(marker);
    }

    /// Every entry, in path order.
    pub fn entries(&self) -> Vec<(PathBuf, EntryKind)> {
        lock(&self.state)
            .entries
            .iter()
            .map(|(p, k)| (p.clone(), *k))
            .collect()
    }

    /// Session directories (entries of kind `Dir`), in path order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        lock(&self.state)
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
        let mut st = lock(&self.state);
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
        let st = lock(&self.state);
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
        self.remove_dir_all_sync(path)
    }

    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError> {
        lock(&self.state).entries.remove(path);
        Ok(())
    }

    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError> {
        let mut st = lock(&self.state);
        if st.locks.contains_key(path) {
            return Ok(false);
        }
        st.entries.remove(path);
        Ok(true)
    }

    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        let mut st = lock(&self.state);
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
        Ok(if lock(&self.state).locks.contains_key(path) {
            MarkerState::Live
        } else {
            MarkerState::Dead
        })
    }

    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        // Only pools make entries here, and they keep no contents or times: nothing is
        // a profile, so a legacy-looking name is never removed.
        if lock(&self.state).entries.get(path) == Some(&EntryKind::Dir) {
            Ok(ProfileProbe {
                age: std::time::Duration::ZERO,
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

/// A [`ProcessLauncher`] over either backend of [`NetBackend`], with scripted launch
/// failures: while the shared counter is positive, each launch decrements it and fails
/// (before anything is started).
#[derive(Clone)]
pub struct BackendLauncher {
    kind: LauncherKind,
    fail_next: Arc<AtomicU32>,
}

#[derive(Clone)]
enum LauncherKind {
    Fake(NetLauncher),
    World(SimLauncher),
}

/// A browser of a [`BackendLauncher`].
#[derive(Debug)]
pub enum BackendProcess {
    /// From the fake backend.
    Fake(NetProcess),
    /// From the simulated world.
    World(SimProcess),
}

fn mismatch(op: &'static str) -> BackendError {
    BackendError::new(op, BackendErrorKind::Other, "process from another backend")
}

#[async_trait]
impl ProcessLauncher for BackendLauncher {
    type Process = BackendProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<BackendProcess, BackendError> {
        let failing = self
            .fail_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(BackendError::new(
                "launch",
                BackendErrorKind::Launch,
                "injected launch failure",
            ));
        }
        match &self.kind {
            LauncherKind::Fake(l) => l.launch(spec).await.map(BackendProcess::Fake),
            LauncherKind::World(l) => l.launch(spec).await.map(BackendProcess::World),
        }
    }

    async fn kill(&self, process: &BackendProcess, stage: KillStage) -> Result<(), BackendError> {
        match (&self.kind, process) {
            (LauncherKind::Fake(l), BackendProcess::Fake(p)) => l.kill(p, stage).await,
            (LauncherKind::World(l), BackendProcess::World(p)) => l.kill(p, stage).await,
            _ => Err(mismatch("kill")),
        }
    }

    async fn wait_gone(&self, process: &BackendProcess) {
        match (&self.kind, process) {
            (LauncherKind::Fake(l), BackendProcess::Fake(p)) => l.wait_gone(p).await,
            (LauncherKind::World(l), BackendProcess::World(p)) => l.wait_gone(p).await,
            _ => {}
        }
    }

    async fn exited(&self, process: &BackendProcess) -> String {
        match (&self.kind, process) {
            (LauncherKind::Fake(l), BackendProcess::Fake(p)) => l.exited(p).await,
            (LauncherKind::World(l), BackendProcess::World(p)) => l.exited(p).await,
            _ => std::future::pending().await,
        }
    }

    fn kill_on_drop(&self, process: &BackendProcess) {
        match (&self.kind, process) {
            (LauncherKind::Fake(l), BackendProcess::Fake(p)) => l.kill_on_drop(p),
            (LauncherKind::World(l), BackendProcess::World(p)) => l.kill_on_drop(p),
            _ => {}
        }
    }

    async fn memory(&self, process: &BackendProcess) -> Option<MemoryUsage> {
        match (&self.kind, process) {
            (LauncherKind::Fake(l), BackendProcess::Fake(p)) => l.memory(p).await,
            (LauncherKind::World(l), BackendProcess::World(p)) => l.memory(p).await,
            _ => None,
        }
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        match &self.kind {
            LauncherKind::Fake(l) => l.find_orphans(dir).await,
            LauncherKind::World(l) => l.find_orphans(dir).await,
        }
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        match &self.kind {
            LauncherKind::Fake(l) => l.kill_orphan(orphan).await,
            LauncherKind::World(l) => l.kill_orphan(orphan).await,
        }
    }
}

/// The simulated OS under the turmoil server: it lives in the harness, outside the
/// server host, so it outlives a server crash.
#[derive(Clone)]
pub enum NetBackend {
    /// [`NetLauncher`] (the core's `FakeLauncher` plus a registry) and [`MemFs`].
    Fake {
        /// The launcher.
        launcher: NetLauncher,
        /// The filesystem.
        fs: MemFs,
    },
    /// The discrete-event engine's simulated world ([`World`]: PIDs reused, process
    /// trees of 12, process groups, marker locks held by a server process, an oracle
    /// for anything touched that is not ours), through [`SimBackend`].
    World(Arc<Mutex<World>>),
}

impl NetBackend {
    /// A fresh fake backend.
    pub fn fake() -> Self {
        NetBackend::Fake {
            launcher: NetLauncher::new(),
            fs: MemFs::new(),
        }
    }

    /// A fresh simulated world rooted at `root`, its own fault draws seeded by `seed`.
    pub fn world(root: PathBuf, seed: u64) -> Self {
        let config = WorldConfig {
            root,
            uid: MemFs::UID,
            ..WorldConfig::default()
        };
        NetBackend::World(Arc::new(Mutex::new(World::new(config, seed))))
    }

    /// A short name ("fake" or "world").
    pub fn name(&self) -> &'static str {
        match self {
            NetBackend::Fake { .. } => "fake",
            NetBackend::World(_) => "world",
        }
    }

    /// Launcher and filesystem for server incarnation `incarnation` (called each time
    /// the server host starts). Launches fail while `fail_next` is positive.
    pub fn start(
        &self,
        incarnation: u32,
        fail_next: Arc<AtomicU32>,
    ) -> (BackendLauncher, Arc<dyn Filesystem>) {
        match self {
            NetBackend::Fake { launcher, fs } => (
                BackendLauncher {
                    kind: LauncherKind::Fake(launcher.clone()),
                    fail_next,
                },
                Arc::new(fs.clone()),
            ),
            NetBackend::World(w) => {
                let (l, fs) = SimBackend::with_incarnation(w.clone(), incarnation);
                (
                    BackendLauncher {
                        kind: LauncherKind::World(l),
                        fail_next,
                    },
                    Arc::new(fs),
                )
            }
        }
    }

    /// The server process is gone (after its destructors ran, or without them): the OS
    /// releases the marker lock it held at `marker`. Browsers and directories survive.
    pub fn server_died(&self, marker: &Path) {
        match self {
            NetBackend::Fake { fs, .. } => fs.process_died(marker),
            NetBackend::World(w) => lock(w).kill_server(),
        }
    }

    /// Move the backend's own notion of time (the world's RSS model) to `ms`.
    pub fn set_now(&self, ms: u64) {
        if let NetBackend::World(w) = self {
            lock(w).set_now(browserpool::Timestamp(ms));
        }
    }

    /// Directories of our live browsers, sorted.
    pub fn live_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match self {
            NetBackend::Fake { launcher, .. } => launcher
                .alive()
                .iter()
                .map(|p| p.dir().to_owned())
                .collect(),
            NetBackend::World(w) => lock(w)
                .trees()
                .filter(|(_, t)| t.owner.is_ours())
                .map(|(_, t)| t.dir.clone())
                .collect(),
        };
        v.sort();
        v
    }

    /// Our entries directly under the root (session directories and markers), sorted.
    pub fn entries(&self) -> Vec<(PathBuf, EntryKind)> {
        match self {
            NetBackend::Fake { fs, .. } => fs.entries(),
            NetBackend::World(w) => lock(w)
                .ours_entries()
                .into_iter()
                .map(|(p, _, k)| (p, k))
                .collect(),
        }
    }

    /// Browsers launched so far.
    pub fn launched(&self) -> u64 {
        match self {
            NetBackend::Fake { launcher, .. } => launcher.launched() as u64,
            NetBackend::World(w) => lock(w).counters().trees_launched,
        }
    }

    /// Anything the pool did to something that was not its own, since the last call
    /// (the world records these; the fake backend has nothing foreign to touch).
    pub fn take_violations(&self) -> Vec<String> {
        match self {
            NetBackend::Fake { .. } => Vec::new(),
            NetBackend::World(w) => lock(w).take_violations(),
        }
    }

    /// Live browsers per pool instance (parsed from the directory names with `prefix`).
    pub fn alive_by_instance(&self, prefix: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for dir in self.live_dirs() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = match sweep::parse_name(prefix, &name) {
                sweep::ParsedName::Session { instance, .. } => instance,
                _ => String::new(),
            };
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }
}
