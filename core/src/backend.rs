//! The two I/O traits a backend implements: [`ProcessLauncher`] and [`Filesystem`].
//!
//! The lifecycle machine decides; the [`Pool`](crate::Pool) carries its decisions out
//! through these traits. The simulated world (`browserpool-sim`) and the Chromium backend
//! (`browserpool-chrome`) implement the same traits, so a scenario that passes in
//! simulation exercises the same decisions against a real browser.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;
use crate::session::SessionId;

/// What to launch: one browser for one session, living entirely inside `dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The session being launched.
    pub id: SessionId,
    /// The session's fresh, empty, private (0700) directory, already created by the
    /// pool. Everything the browser writes (profile, temp files) must go inside it.
    pub dir: PathBuf,
}

/// How hard to stop a browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillStage {
    /// Ask it to exit (for Chrome: CDP `Browser.close`).
    Graceful,
    /// Kill the whole process tree now (for Chrome: SIGKILL to its process group).
    Force,
}

/// A process found by [`ProcessLauncher::find_orphans`], proven to belong to a leftover
/// session directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    /// Its process id at the time it was found.
    pub pid: u32,
    /// The directory it was proven to belong to.
    pub dir: PathBuf,
    /// How ownership was proven (for the sweep report), e.g. "SingletonLock names
    /// host-1234 and /proc/1234/cmdline has `--user-data-dir=<dir>`".
    pub proof: String,
}

/// Memory used by one session's whole process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Resident set size summed over the tree, in bytes (shared pages counted per process).
    pub rss_bytes: u64,
    /// Proportional set size summed over the tree, in bytes, where the backend can
    /// measure it (0 otherwise).
    pub pss_bytes: u64,
    /// Live processes in the tree.
    pub processes: u32,
}

/// Launches, watches and kills browser process trees.
///
/// Guarantees an implementation must give:
/// - `launch` returns a process whose whole tree can later be killed by `kill`. If it
///   fails, times out or its future is dropped, everything it started is killed and
///   reaped before it returns or is dropped: a failed launch leaves no process.
/// - `kill(Force)` signals every process of the tree; it does not wait.
/// - `wait_gone` resolves only when no live process of the tree remains (a zombie counts
///   as gone: it holds no memory). It is cancel-safe.
/// - `exited` resolves when the browser's main process exits, whether by itself or by a
///   kill, with a short description ("exit code 0", "killed by signal 9"). Cancel-safe.
/// - `kill_on_drop` is synchronous and bounded (at most about a second): it is the
///   safety net called from `Drop`, possibly while unwinding, inside or outside a
///   runtime. It must not panic.
/// - `find_orphans` reports only processes *proven* to use `dir` (never by name or PID
///   alone: PIDs are reused), whether their profile is `dir` itself or a profile
///   directory inside it (see [`ProfileLayout`]), and `kill_orphan` re-checks that proof
///   immediately before signalling, so a PID that changed hands in between is never
///   killed.
#[async_trait]
pub trait ProcessLauncher: Send + Sync + 'static {
    /// The backend's handle to a live browser (for Chrome: the child, its process group
    /// and the CDP connection).
    type Process: Send + Sync + 'static;

    /// Launch a browser for `spec`.
    async fn launch(&self, spec: &LaunchSpec) -> Result<Self::Process, BackendError>;

    /// Stop the browser at `stage`, without waiting for it to be gone.
    async fn kill(&self, process: &Self::Process, stage: KillStage) -> Result<(), BackendError>;

    /// Resolve when no live process of the tree remains.
    async fn wait_gone(&self, process: &Self::Process);

    /// Resolve when the main process exits, describing how.
    async fn exited(&self, process: &Self::Process) -> String;

    /// Kill the whole tree synchronously, for the Drop safety net.
    fn kill_on_drop(&self, process: &Self::Process);

    /// Memory of the tree, if the backend can measure it.
    async fn memory(&self, _process: &Self::Process) -> Option<MemoryUsage> {
        None
    }

    /// Memory of several trees at once: one entry per process of `processes`, in the
    /// same order, each exactly what [`memory`](Self::memory) would say of that process
    /// alone (`None` where it cannot measure it). The pool's memory sampler calls this
    /// once per round with every launched session, in session id order, so a backend
    /// whose measurement has a cost shared by all trees (the Chromium backend's `/proc`
    /// scan) pays it once per round instead of once per session.
    ///
    /// What an implementation must give:
    /// - one entry per process, in order (the pool reads a missing entry as `None` and
    ///   ignores extra ones, logging a warning); a process of the host is counted in at
    ///   most one entry;
    /// - cancel-safety: the pool drops the call when the round's deadline comes (one
    ///   `memory_interval`), and then no session has a figure that round;
    /// - a panic here is caught by the pool, counted, and the round is measured again
    ///   one session at a time through `memory`, so that a session whose own
    ///   measurement panics is named and torn down as crashed.
    ///
    /// The default calls `memory` for every process concurrently ([`memory_of_each`]),
    /// which is right for a backend whose per-tree measurement shares nothing.
    async fn memory_of_all(&self, processes: &[Arc<Self::Process>]) -> Vec<Option<MemoryUsage>> {
        memory_of_each(self, processes).await
    }

    /// Processes proven to belong to the leftover directory `dir`.
    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError>;

    /// Kill an orphan after re-checking its proof, and wait (bounded) until it is gone.
    /// Returns `Ok(false)` if the proof no longer holds (the PID changed hands): nothing
    /// was signalled.
    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError>;
}

/// [`ProcessLauncher::memory`] of every process in `processes`, all at once (polled
/// concurrently, in the order given, on the caller's task), one entry per process in
/// that order: the default [`ProcessLauncher::memory_of_all`], public so that a backend
/// or test double that overrides it can still fall back to it.
pub async fn memory_of_each<L: ProcessLauncher + ?Sized>(
    launcher: &L,
    processes: &[Arc<L::Process>],
) -> Vec<Option<MemoryUsage>> {
    futures::future::join_all(processes.iter().map(|p| launcher.memory(p))).await
}

/// The kind of a directory entry, read without following symlinks (`lstat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A real directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A regular file.
    File,
    /// Anything else (socket, fifo, device).
    Other,
}

/// One entry under the pool's root whose name starts with the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntryInfo {
    /// The file name.
    pub name: String,
    /// The full path.
    pub path: PathBuf,
    /// What it is, from `lstat`.
    pub kind: EntryKind,
    /// The owning user id, from `lstat`.
    pub uid: u32,
}

/// Whether a pool ownership marker is held by a live process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkerState {
    /// Its OS lock is held: a live pool owns it. Never touch its directories.
    Live,
    /// Its lock is free, or there is no marker at that path: the pool that made it is
    /// gone.
    Dead,
}

/// Where [`Filesystem::probe_profile`] found a Chrome profile in a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileLayout {
    /// The directory itself is the profile (`--user-data-dir=<dir>`, as an older server
    /// may have launched Chrome).
    Root,
    /// Its `profile/` subdirectory is (`--user-data-dir=<dir>/profile`, as
    /// `browserpool-chrome` launches it).
    Subdir,
}

/// What a no-follow look into a leftover directory found
/// ([`Filesystem::probe_profile`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileProbe {
    /// How long ago anything looked at changed: now minus the newest modification time
    /// among the directory, its `profile/` subdirectory and the profile entries found,
    /// measured on the filesystem's own clock (the host's for real files, simulated time
    /// in a simulation). Zero if a time lies in the future.
    pub age: Duration,
    /// Where a Chrome profile was found, if anywhere.
    pub layout: Option<ProfileLayout>,
}

/// A held ownership marker. The OS lock is released when this is dropped or when the
/// process dies, however it dies.
pub struct MarkerLock(pub Box<dyn Any + Send + Sync>);

impl fmt::Debug for MarkerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MarkerLock")
    }
}

/// Creates, lists and removes session directories and pool markers.
///
/// Guarantees an implementation must give (the sweep's marker protocol in
/// [`crate::sweep`] relies on them):
/// - nothing follows a symbolic link: listing uses `lstat`, removal unlinks a symlink
///   instead of descending into it, at every depth, and probes open nothing through one;
/// - `create_dir` makes a new directory private to the current user (0700) and fails
///   with `AlreadyExists` if anything is already at that path;
/// - `remove_dir_all` of a path that does not exist succeeds (it is idempotent);
/// - `lock_marker` creates the marker if needed and holds an exclusive OS lock on it that
///   the OS releases when the process dies (`flock`), so a live pool is recognisable and
///   a dead one is not. While another process holds the lock only for an instant (a
///   probe, a sweeper removing a dead marker), it waits a bounded time (about two
///   seconds) instead of failing; if the path no longer names the file it locked (a
///   sweeper unlinked it meanwhile), it starts again with a new file;
/// - `probe_marker` never blocks, never creates anything and takes at most a shared lock
///   for an instant: `Live` if another holder has the lock, `Dead` if the lock is free or
///   nothing is at the path, an error if the path is not a regular file of the current
///   user (a symlink, a directory, a fifo, another user's file);
/// - `remove_dead_marker` unlinks a marker only while holding its exclusive lock and
///   after checking that the path still names the file it locked;
/// - `probe_profile` reads only metadata (`lstat`, `O_NOFOLLOW` opens), never follows a
///   symlink and never writes.
#[async_trait]
pub trait Filesystem: Send + Sync + 'static {
    /// The user id this process runs as; entries owned by anyone else are never touched.
    fn current_uid(&self) -> u32;

    /// Create a new private directory.
    async fn create_dir(&self, path: &Path) -> Result<(), BackendError>;

    /// List the entries directly under `root` whose names start with `prefix`, sorted by
    /// name.
    async fn list_prefixed(
        &self,
        root: &Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError>;

    /// Remove a directory tree without following symlinks.
    async fn remove_dir_all(&self, path: &Path) -> Result<(), BackendError>;

    /// The same, synchronously, for the Drop safety net.
    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError>;

    /// Remove the marker at `path` if no live process holds it: take its exclusive lock
    /// without waiting, check that the path still names the locked file, unlink it, then
    /// release the lock. `Ok(true)` if no marker remains at `path` (removed now, or
    /// already gone); `Ok(false)` if it is locked (its pool is alive after all) or was
    /// replaced meanwhile: it is left alone.
    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError>;

    /// Create (if needed) and exclusively lock the marker at `path`.
    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError>;

    /// Whether the marker at `path` is locked by a live process.
    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError>;

    /// Look into the directory at `path` without following symlinks: whether it or its
    /// `profile/` subdirectory (a real directory) holds a Chrome profile (a
    /// `SingletonLock` entry of any kind, a regular file `Local State` or a real
    /// directory `Default`), and how long ago any of that changed. An error if `path`
    /// is not a real directory.
    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError>;
}
