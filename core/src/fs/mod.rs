//! [`OsFilesystem`]: the real [`Filesystem`] for Unix hosts.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rustix::fd::OwnedFd;
use rustix::fs::{
    flock, fstat, openat, statat, AtFlags, FileType, FlockOperation, Mode, OFlags, CWD,
};

use crate::backend::{
    DirEntryInfo, EntryKind, Filesystem, MarkerLock, MarkerState, ProfileLayout, ProfileProbe,
};
use crate::error::{BackendError, BackendErrorKind};

mod remove;

/// The host's filesystem, used by real backends.
///
/// - Listing uses `lstat` (`symlink_metadata`): nothing is followed.
/// - Removal opens every directory relative to its parent with `O_NOFOLLOW |
///   O_DIRECTORY` and unlinks symlinks instead of descending into them, at every depth; a
///   top-level symlink is unlinked, never followed. Files are unlinked from a few threads
///   at once (a profile's hundred-odd unlinks each wait on the device on a disk with
///   online `discard`); anything unexpected falls back to `std::fs::remove_dir_all`.
/// - Directories are created 0700; markers are opened with `O_NOFOLLOW | O_NONBLOCK`,
///   must be regular files of the current user, and are held with an exclusive `flock`,
///   which the kernel releases when the process dies. Probes take a non-blocking shared
///   `flock` for an instant; taking a marker retries for up to two seconds while someone
///   else holds it.
/// - Profile probes open directories with `O_NOFOLLOW | O_DIRECTORY` and `lstat` entries
///   relative to them (`fstatat(AT_SYMLINK_NOFOLLOW)`); ages are measured against the
///   host's wall clock, since modification times are wall-clock times.
/// - Blocking calls run on tokio's blocking pool from the async methods.
#[derive(Clone, Debug, Default)]
pub struct OsFilesystem;

impl OsFilesystem {
    /// The host filesystem.
    pub fn new() -> Self {
        OsFilesystem
    }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(BackendError::new(
            op,
            BackendErrorKind::Other,
            e.to_string(),
        )),
    }
}

fn list(root: &Path, prefix: &str) -> Result<Vec<DirEntryInfo>, BackendError> {
    let rd = fs::read_dir(root).map_err(|e| BackendError::from_io("list", root, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let Ok(entry) = entry else { continue };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // not UTF-8: cannot be one of ours
        };
        if !name.starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue; // vanished meanwhile
        };
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        out.push(DirEntryInfo {
            name,
            path,
            kind,
            uid: md.uid(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn remove_tree(path: &Path) -> Result<(), BackendError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackendError::from_io("remove", path, e)),
        Ok(md) if !md.file_type().is_dir() => {
            // A symlink or file where our directory should be: unlink it, never follow.
            return match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(BackendError::from_io("remove", path, e))
                }
                _ => Ok(()),
            };
        }
        Ok(_) => {}
    }
    // The fast path unlinks files from several threads; if it gives up part-way, the
    // standard library's (also symlink-safe) removal finishes the job and reports.
    if remove::remove_dir_tree(path).is_ok() {
        return Ok(());
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackendError::from_io("remove", path, e)),
    }
}

fn open_marker(op: &'static str, path: &Path, create: bool) -> Result<fs::File, BackendError> {
    let mut o = OpenOptions::new();
    // O_NONBLOCK: a fifo planted at the marker's path must not hang the open.
    o.read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32)
        .mode(0o600);
    if create {
        o.write(true).create(true);
    }
    let file = o
        .open(path)
        .map_err(|e| BackendError::from_io(op, path, e))?;
    // Only a regular file of ours can be a marker (O_NOFOLLOW already refused a symlink).
    let md = file
        .metadata()
        .map_err(|e| BackendError::from_io(op, path, e))?;
    if !md.file_type().is_file() || md.uid() != rustix::process::getuid().as_raw() {
        return Err(BackendError::new(
            op,
            BackendErrorKind::Other,
            format!(
                "not a regular file of uid {} (a {:?} of uid {}): not a pool marker",
                rustix::process::getuid().as_raw(),
                md.file_type(),
                md.uid()
            ),
        )
        .at(path));
    }
    Ok(file)
}

/// Whether the path still names the file `file` is open on (nobody unlinked or
/// replaced it).
fn still_named(file: &fs::File, path: &Path) -> bool {
    let held = file.metadata().map(|m| (m.dev(), m.ino())).ok();
    let named = fs::symlink_metadata(path).map(|m| (m.dev(), m.ino())).ok();
    held.is_some() && held == named
}

/// How long `lock_marker` keeps retrying while someone else holds the lock: a probe
/// holds it for an instant, a sweeper removing a dead marker for an `unlink`. A live
/// pool holding it (the same instance id twice) holds it for good.
const MARKER_WAIT: Duration = Duration::from_secs(2);

fn lock_marker(path: &Path) -> Result<MarkerLock, BackendError> {
    let deadline = Instant::now() + MARKER_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        let file = open_marker("lock", path, true)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            // A sweeper may have unlinked the file between our open and our lock; then
            // we hold a lock on nothing. Check that the path still names the file we
            // locked, and start over with a new one if not.
            Ok(()) if still_named(&file, path) => return Ok(MarkerLock(Box::new(file))),
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
            Err(e) => {
                return Err(
                    BackendError::new("lock", BackendErrorKind::Other, e.to_string()).at(path),
                )
            }
        }
        drop(file);
        if Instant::now() >= deadline {
            return Err(BackendError::new(
                "lock",
                BackendErrorKind::Busy,
                format!(
                    "marker stayed held by another process for {MARKER_WAIT:?}: another live pool uses this instance id"
                ),
            )
            .at(path));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn probe_marker(path: &Path) -> Result<MarkerState, BackendError> {
    let file = match open_marker("probe", path, false) {
        Ok(f) => f,
        Err(e) if e.kind == BackendErrorKind::NotFound => return Ok(MarkerState::Dead),
        Err(e) => return Err(e),
    };
    // A shared lock: probes do not exclude each other. A pool taking its marker at this
    // instant waits for us (see `lock_marker`). Dropping `file` releases the lock.
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(MarkerState::Dead),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(MarkerState::Live),
        Err(e) => Err(BackendError::new("probe", BackendErrorKind::Other, e.to_string()).at(path)),
    }
}

fn remove_dead_marker(path: &Path) -> Result<bool, BackendError> {
    let file = match open_marker("remove", path, false) {
        Ok(f) => f,
        Err(e) if e.kind == BackendErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(false),
        Err(e) => {
            return Err(
                BackendError::new("remove", BackendErrorKind::Other, e.to_string()).at(path),
            )
        }
    }
    if !still_named(&file, path) {
        return Ok(false); // replaced meanwhile: not the file we proved dead
    }
    // Unlink while holding the lock, so no pool can have taken it in between.
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(BackendError::from_io("remove", path, e)),
    }
}

fn mtime(st: &rustix::fs::Stat) -> SystemTime {
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec)
        .unwrap_or(0)
        .min(999_999_999);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// The profile entries found directly in `dir`, with the newest of their mtimes.
fn profile_entries(dir: &OwnedFd) -> Result<Option<SystemTime>, rustix::io::Errno> {
    let mut newest = None;
    for (name, want) in [
        ("SingletonLock", None), // a symlink Chromium makes; any kind counts
        ("Local State", Some(FileType::RegularFile)),
        ("Default", Some(FileType::Directory)),
    ] {
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                if want.is_none_or(|w| FileType::from_raw_mode(st.st_mode) == w) {
                    newest = newest.max(Some(mtime(&st)));
                }
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(newest)
}

fn open_dir_nofollow(at: impl rustix::fd::AsFd, name: &Path) -> rustix::io::Result<OwnedFd> {
    openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn probe_profile(path: &Path) -> Result<ProfileProbe, BackendError> {
    let err = |e: rustix::io::Errno| {
        BackendError::from_io("probe_profile", path, std::io::Error::from(e))
    };
    // Every step is relative to a directory opened without following symlinks, so
    // nothing swapped in meanwhile redirects the look elsewhere.
    let dir = open_dir_nofollow(CWD, path).map_err(err)?;
    let mut newest = mtime(&fstat(&dir).map_err(err)?);
    let mut layout = None;
    if let Some(t) = profile_entries(&dir).map_err(err)? {
        newest = newest.max(t);
        layout = Some(ProfileLayout::Root);
    }
    match open_dir_nofollow(&dir, Path::new("profile")) {
        Ok(sub) => {
            newest = newest.max(mtime(&fstat(&sub).map_err(err)?));
            if let Some(t) = profile_entries(&sub).map_err(err)? {
                newest = newest.max(t);
                layout = layout.or(Some(ProfileLayout::Subdir));
            }
        }
        // Missing, a symlink (ELOOP) or not a directory: no profile there.
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {}
        Err(e) => return Err(err(e)),
    }
    let age = SystemTime::now()
        .duration_since(newest)
        .unwrap_or(Duration::ZERO);
    Ok(ProfileProbe { age, layout })
}

#[async_trait]
impl Filesystem for OsFilesystem {
    fn current_uid(&self) -> u32 {
        rustix::process::getuid().as_raw()
    }

    async fn create_dir(&self, path: &Path) -> Result<(), BackendError> {
        let p: PathBuf = path.to_owned();
        blocking("create", move || {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(|e| BackendError::from_io("create", &p, e))
        })
        .await
    }

    async fn list_prefixed(
        &self,
        root: &Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError> {
        let (root, prefix) = (root.to_owned(), prefix.to_owned());
        blocking("list", move || list(&root, &prefix)).await
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), BackendError> {
        let p = path.to_owned();
        blocking("remove", move || remove_tree(&p)).await
    }

    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError> {
        remove_tree(path)
    }

    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError> {
        let p = path.to_owned();
        blocking("remove", move || remove_dead_marker(&p)).await
    }

    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        let p = path.to_owned();
        blocking("lock", move || lock_marker(&p)).await
    }

    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        let p = path.to_owned();
        blocking("probe", move || probe_marker(&p)).await
    }

    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        let p = path.to_owned();
        blocking("probe_profile", move || probe_profile(&p)).await
    }
}
