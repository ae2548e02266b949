//! The world's in-memory filesystem: entries with owners and kinds (no symlink is ever
//! followed), `flock`-style markers that die with their holder, Chrome-profile
//! contents and modification times in simulated time, and injected errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use browserpool::{
    BackendError, BackendErrorKind, DirEntryInfo, EntryKind, MarkerState, ProfileLayout,
    ProfileProbe,
};

use super::{err, Owner, World};

/// One entry of the simulated filesystem.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) kind: EntryKind,
    pub(super) uid: u32,
    pub(super) owner: Owner,
    /// Holder of the marker's `flock`: (pid, generation) of a server process.
    pub(super) lock: Option<(u32, u64)>,
    /// Contents of `SingletonLock` inside a session directory ("host-<pid>").
    pub(super) singleton_pid: Option<u32>,
    /// Whether it holds a Chrome profile (besides a `SingletonLock`).
    pub(super) profile: bool,
    /// Modification time, in simulated milliseconds (negative: before the start).
    pub(super) modified_ms: i64,
    /// Kept written by something outside the simulation (see [`World::keep_written`]).
    pub(super) written: bool,
}

impl Node {
    pub(super) fn new(kind: EntryKind, uid: u32, owner: Owner, now_ms: i64) -> Self {
        Node {
            kind,
            uid,
            owner,
            lock: None,
            singleton_pid: None,
            profile: false,
            modified_ms: now_ms,
            written: false,
        }
    }
}

impl World {
    /// Create a directory owned by us at `path`. Subject to injected errors.
    pub fn create_dir(&mut self, path: &Path, owner: Owner) -> Result<(), BackendError> {
        if self.fs.contains_key(path) {
            return Err(err(
                "create_dir",
                BackendErrorKind::AlreadyExists,
                "File exists",
                path,
            ));
        }
        let f = self.fs_faults;
        if self.rng.chance(f.create_no_space) {
            return Err(err(
                "create_dir",
                BackendErrorKind::NoSpace,
                "No space left on device",
                path,
            ));
        }
        if self.rng.chance(f.create_permission) {
            return Err(err(
                "create_dir",
                BackendErrorKind::PermissionDenied,
                "Permission denied",
                path,
            ));
        }
        let node = Node::new(EntryKind::Dir, self.config.uid, owner, self.now_ms());
        self.fs.insert(path.to_owned(), node);
        Ok(())
    }

    /// Place an entry directly (world setup): a directory, file or symlink with any uid.
    /// Its modification time is now; see [`World::backdate`].
    pub fn place(&mut self, path: &Path, kind: EntryKind, uid: u32, owner: Owner) {
        let node = Node::new(kind, uid, owner, self.now_ms());
        self.fs.insert(path.to_owned(), node);
    }

    /// Write `pid` into `dir/SingletonLock` (world setup: a stale lock).
    pub fn set_singleton(&mut self, dir: &Path, pid: u32) {
        if let Some(n) = self.fs.get_mut(dir) {
            n.singleton_pid = Some(pid);
        }
    }

    /// The PID named by `dir/SingletonLock`, if any.
    pub fn singleton(&self, dir: &Path) -> Option<u32> {
        self.fs.get(dir).and_then(|n| n.singleton_pid)
    }

    /// Whether anything exists at `path` (lstat).
    pub fn exists(&self, path: &Path) -> bool {
        self.fs.contains_key(path)
    }

    /// Entries of ours (directories and markers) currently on disk, by path.
    pub fn ours_entries(&self) -> Vec<(PathBuf, Owner, EntryKind)> {
        self.fs
            .iter()
            .filter(|(p, n)| n.owner.is_ours() && p.parent() == Some(self.config.root.as_path()))
            .map(|(p, n)| (p.clone(), n.owner, n.kind))
            .collect()
    }

    /// `lstat`-based listing of `root` for `prefix`, sorted by name.
    pub fn list_prefixed(&self, root: &Path, prefix: &str) -> Vec<DirEntryInfo> {
        let mut out: Vec<DirEntryInfo> = self
            .fs
            .iter()
            .filter(|(p, _)| p.parent() == Some(root))
            .filter_map(|(p, n)| {
                let name = p.file_name()?.to_str()?.to_owned();
                name.starts_with(prefix).then(|| DirEntryInfo {
                    name,
                    path: p.clone(),
                    kind: n.kind,
                    uid: n.uid,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn check_removal(&mut self, path: &Path, what: &str) {
        if let Some(n) = self.fs.get(path) {
            if n.owner == Owner::Neighbour {
                self.violations.push(format!(
                    "removed {what} {} that is not ours (uid {}, {:?})",
                    path.display(),
                    n.uid,
                    n.kind
                ));
            }
        }
    }

    /// Remove a directory tree without following symlinks (a symlink is unlinked, its
    /// target untouched). Missing is success. Subject to injected errors.
    pub fn remove_dir_all(&mut self, path: &Path) -> Result<(), BackendError> {
        let Some(node) = self.fs.get(path) else {
            return Ok(());
        };
        if node.kind == EntryKind::Dir {
            let f = self.fs_faults;
            if self.rng.chance(f.remove_busy) {
                return Err(err(
                    "remove_dir_all",
                    BackendErrorKind::Busy,
                    "Device or resource busy",
                    path,
                ));
            }
            if self.rng.chance(f.remove_permission) {
                return Err(err(
                    "remove_dir_all",
                    BackendErrorKind::PermissionDenied,
                    "Permission denied",
                    path,
                ));
            }
        }
        self.check_removal(path, "directory");
        self.fs.remove(path);
        Ok(())
    }

    /// Remove the marker at `path` unless a live process holds its lock (what
    /// `Filesystem::remove_dead_marker` does under the lock). `Ok(true)` if no marker
    /// remains, `Ok(false)` if it is held; an error if it is not a regular file of ours.
    pub fn remove_dead_marker(&mut self, path: &Path) -> Result<bool, BackendError> {
        let Some(n) = self.fs.get(path) else {
            return Ok(true);
        };
        self.check_marker(path, n, "remove_dead_marker")?;
        if self.lock_is_live(n.lock) {
            return Ok(false);
        }
        self.check_removal(path, "file");
        self.fs.remove(path);
        Ok(true)
    }

    /// Create (if needed) and lock the marker at `path` for server `holder` (pid, gen).
    pub fn lock_marker(
        &mut self,
        path: &Path,
        holder: (u32, u64),
        owner: Owner,
    ) -> Result<(), BackendError> {
        let fresh = Node::new(EntryKind::File, self.config.uid, owner, self.now_ms());
        let node = self.fs.entry(path.to_owned()).or_insert(fresh);
        match node.lock {
            Some(h) if h != holder => Err(err(
                "lock_marker",
                BackendErrorKind::Busy,
                "Resource temporarily unavailable (locked)",
                path,
            )),
            _ => {
                node.lock = Some(holder);
                Ok(())
            }
        }
    }

    /// Release the marker lock at `path` (the holder closed it).
    pub fn unlock_marker(&mut self, path: &Path) {
        if let Some(n) = self.fs.get_mut(path) {
            n.lock = None;
        }
    }

    fn lock_is_live(&self, lock: Option<(u32, u64)>) -> bool {
        lock.is_some_and(|(pid, gen)| self.procs.get(&pid).is_some_and(|p| p.gen == gen))
    }

    /// A marker must be a regular file of ours (an `O_NOFOLLOW` open and an `fstat`).
    fn check_marker(&self, path: &Path, n: &Node, op: &'static str) -> Result<(), BackendError> {
        if n.kind == EntryKind::File && n.uid == self.config.uid {
            Ok(())
        } else {
            Err(err(
                op,
                BackendErrorKind::Other,
                &format!("not a regular file of ours ({:?}, uid {})", n.kind, n.uid),
                path,
            ))
        }
    }

    /// Whether the marker at `path` is locked by a live process: `Dead` if it is free or
    /// absent, an error if it is not a regular file of ours.
    pub fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        let Some(n) = self.fs.get(path) else {
            return Ok(MarkerState::Dead);
        };
        self.check_marker(path, n, "probe_marker")?;
        Ok(if self.lock_is_live(n.lock) {
            MarkerState::Live
        } else {
            MarkerState::Dead
        })
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.now.0).unwrap_or(i64::MAX)
    }

    /// Set the modification time of the entry at `path` to `ago` before now (world
    /// setup: a leftover from before the simulation started).
    pub fn backdate(&mut self, path: &Path, ago: Duration) {
        let now = self.now_ms();
        if let Some(n) = self.fs.get_mut(path) {
            n.modified_ms = now.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX));
        }
    }

    /// Mark the directory at `path` as holding a Chrome profile (world setup). A
    /// directory whose `SingletonLock` was written ([`World::spawn_tree`],
    /// [`World::set_singleton`]) holds one already.
    pub fn mark_profile(&mut self, path: &Path) {
        if let Some(n) = self.fs.get_mut(path) {
            n.profile = true;
        }
    }

    /// Something outside the simulation keeps writing in the directory at `path` (a
    /// session of an old server that is still running): it always looks just modified.
    pub fn keep_written(&mut self, path: &Path) {
        if let Some(n) = self.fs.get_mut(path) {
            n.written = true;
        }
    }

    /// What `Filesystem::probe_profile` sees: whether the real directory at `path` holds
    /// a profile, and how long ago it changed, in simulated time. A directory in which a
    /// live tree runs (Chrome writes continuously) or that is [kept written]
    /// (World::keep_written) changed just now. An error if `path` is missing or not a
    /// real directory (a symlink is not followed).
    pub fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        let n = match self.fs.get(path) {
            None => {
                return Err(err(
                    "probe_profile",
                    BackendErrorKind::NotFound,
                    "No such file or directory",
                    path,
                ))
            }
            Some(n) if n.kind != EntryKind::Dir => {
                return Err(err(
                    "probe_profile",
                    BackendErrorKind::Other,
                    "not a directory (symlinks are not followed)",
                    path,
                ))
            }
            Some(n) => n,
        };
        let busy = n.written || self.trees.values().any(|t| t.dir == path);
        let age_ms = if busy {
            0
        } else {
            self.now_ms().saturating_sub(n.modified_ms).max(0)
        };
        Ok(ProfileProbe {
            age: Duration::from_millis(age_ms as u64),
            layout: (n.profile || n.singleton_pid.is_some()).then_some(ProfileLayout::Root),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::world::{KillBehaviour, WorldConfig};
    use browserpool::Timestamp;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn markers_are_probed_and_removed_only_as_regular_files_of_ours_and_only_when_free() {
        let mut w = World::new(WorldConfig::default(), 1);
        let m = Path::new("/tmp/bpx-000000000001.lock");
        assert_eq!(w.probe_marker(m).unwrap(), MarkerState::Dead, "absent");
        assert!(w.remove_dead_marker(m).unwrap(), "nothing to remove");
        let holder = w.spawn_server().unwrap();
        w.lock_marker(m, holder, Owner::Ours(0)).unwrap();
        assert_eq!(w.probe_marker(m).unwrap(), MarkerState::Live);
        assert!(!w.remove_dead_marker(m).unwrap(), "held: left alone");
        assert!(w.exists(m));
        w.kill_server();
        assert!(w.remove_dead_marker(m).unwrap());
        assert!(!w.exists(m));
        for (kind, uid) in [
            (EntryKind::Symlink, 1000),
            (EntryKind::Dir, 1000),
            (EntryKind::File, 0),
        ] {
            w.place(m, kind, uid, Owner::Neighbour);
            assert!(w.probe_marker(m).is_err(), "{kind:?} {uid}");
            assert!(w.remove_dead_marker(m).is_err(), "{kind:?} {uid}");
            assert!(w.exists(m));
        }
        assert!(!w.has_violations());
    }

    #[test]
    fn profile_probes_use_simulated_time_and_never_follow_a_symlink() {
        let mut w = World::new(WorldConfig::default(), 1);
        w.set_now(Timestamp(10 * 3_600_000));
        let d = Path::new("/tmp/x");
        w.place(d, EntryKind::Dir, 1000, Owner::Legacy);
        assert_eq!(w.probe_profile(d).unwrap().layout, None);
        w.mark_profile(d);
        w.backdate(d, HOUR * 30);
        let p = w.probe_profile(d).unwrap();
        assert_eq!((p.layout, p.age), (Some(ProfileLayout::Root), HOUR * 30));
        w.set_now(Timestamp(11 * 3_600_000));
        assert_eq!(w.probe_profile(d).unwrap().age, HOUR * 31);
        // A live browser in it, or an outside writer, keeps it fresh.
        let (pg, gen) = w
            .spawn_tree(d, Owner::Legacy, 3, KillBehaviour::default())
            .unwrap();
        assert_eq!(w.probe_profile(d).unwrap().age, Duration::ZERO);
        assert!(w.crash_tree(pg, gen, "crash"));
        w.set_now(Timestamp(12 * 3_600_000));
        assert_eq!(w.probe_profile(d).unwrap().age, HOUR);
        w.keep_written(d);
        assert_eq!(w.probe_profile(d).unwrap().age, Duration::ZERO);
        let link = Path::new("/tmp/link");
        w.place(link, EntryKind::Symlink, 1000, Owner::Neighbour);
        assert!(w.probe_profile(link).is_err());
        assert!(w.probe_profile(Path::new("/tmp/missing")).is_err());
    }
}
