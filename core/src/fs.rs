//! [`OsFilesystem`]: the real [`Filesystem`] for Unix hosts.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rustix::fs::{flock, FlockOperation};

use crate::backend::{DirEntryInfo, EntryKind, Filesystem, MarkerLock, MarkerState};
use crate::error::{BackendError, BackendErrorKind};

/// The host's filesystem, used by real backends.
///
/// - Listing uses `lstat` (`symlink_metadata`): nothing is followed.
/// - Removal uses `std::fs::remove_dir_all`, which unlinks symlinks instead of descending
///   into them at every depth; a top-level symlink is unlinked, never followed.
/// - Directories are created 0700; markers are opened with `O_NOFOLLOW` and held with a
///   non-blocking exclusive `flock`, which the kernel releases when the process dies.
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
    let rd = fs::read_dir(root).map_err(|e| BackendError::from_io("list", root, &e))?;
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
        Err(e) => return Err(BackendError::from_io("remove", path, &e)),
        Ok(md) if !md.file_type().is_dir() => {
            // A symlink or file where our directory should be: unlink it, never follow.
            return match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(BackendError::from_io("remove", path, &e))
                }
                _ => Ok(()),
            };
        }
        Ok(_) => {}
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackendError::from_io("remove", path, &e)),
    }
}

fn open_marker(path: &Path, create: bool) -> std::io::Result<fs::File> {
    let mut o = OpenOptions::new();
    o.read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600);
    if create {
        o.write(true).create(true);
    }
    o.open(path)
}

fn lock_marker(path: &Path) -> Result<MarkerLock, BackendError> {
    for _ in 0..5 {
        let file = open_marker(path, true).map_err(|e| BackendError::from_io("lock", path, &e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) => {
                return Err(BackendError::new(
                    "lock",
                    BackendErrorKind::Busy,
                    format!("marker is held by another process: {e}"),
                )
                .at(path))
            }
        }
        // A sweeper may have unlinked the file between our open and our lock; then we
        // hold a lock on nothing. Check that the path still names the file we locked.
        let held = file.metadata().map(|m| (m.dev(), m.ino())).ok();
        let named = fs::symlink_metadata(path).map(|m| (m.dev(), m.ino())).ok();
        if held.is_some() && held == named {
            return Ok(MarkerLock(Box::new(file)));
        }
    }
    Err(BackendError::new(
        "lock",
        BackendErrorKind::Busy,
        "marker kept being replaced while locking",
    )
    .at(path))
}

fn probe_marker(path: &Path) -> Result<MarkerState, BackendError> {
    let file = match open_marker(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MarkerState::Dead),
        Err(e) => return Err(BackendError::from_io("probe", path, &e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        // We got the lock, so nobody holds it; dropping `file` releases it again.
        Ok(()) => Ok(MarkerState::Dead),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(MarkerState::Live),
        Err(e) => Err(BackendError::new("probe", BackendErrorKind::Other, e.to_string()).at(path)),
    }
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
                .map_err(|e| BackendError::from_io("create", &p, &e))
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

    async fn remove_file(&self, path: &Path) -> Result<(), BackendError> {
        let p = path.to_owned();
        blocking("remove", move || match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BackendError::from_io("remove", &p, &e))
            }
            _ => Ok(()),
        })
        .await
    }

    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        let p = path.to_owned();
        blocking("lock", move || lock_marker(&p)).await
    }

    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        let p = path.to_owned();
        blocking("probe", move || probe_marker(&p)).await
    }
}
