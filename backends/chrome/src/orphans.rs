//! Startup-sweep support: which processes are *proven* to belong to a leftover session
//! directory, and killing them only after re-checking that proof.
//!
//! Proof of ownership is the exact argument `--user-data-dir=<dir>/profile` (or
//! `--user-data-dir=<dir>`, an older server's layout) in `/proc/<pid>/cmdline` of a live
//! process. Candidates come from two places:
//! - `<dir>/profile/SingletonLock` (else `<dir>/SingletonLock`), a symlink Chromium makes
//!   whose *target text* is `<hostname>-<pid>` (read with `readlink`, never followed as
//!   a path); its PID counts only if the hostname is this host's and the cmdline proof
//!   holds;
//! - a scan of `/proc` for live processes carrying that exact argument (this also finds a
//!   browser whose lock was removed, and helpers left behind by a dead main process).
//!
//! Nothing is ever killed by name or by PID alone: PIDs are reused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browserpool::{BackendError, BackendErrorKind, Orphan};
use rustix::process::{Pid, Signal};

use crate::launcher::PROFILE_DIR;
use crate::procfs;
use crate::tree::kill_if_proven;

/// How long `kill` waits for a killed orphan to be gone.
const ORPHAN_WAIT: Duration = Duration::from_secs(5);

/// This host's name, as Chromium writes it into `SingletonLock`.
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The spellings of `dir` whose proofs count: as given, and its canonical path if that
/// differs (a root given through a symlink).
fn proof_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![dir.to_owned()];
    if let Ok(canon) = std::fs::canonicalize(dir) {
        if canon != dir {
            v.push(canon);
        }
    }
    v
}

/// Parse a `SingletonLock` target, `<hostname>-<pid>` (the hostname may contain `-`).
pub(crate) fn parse_singleton_lock(target: &str) -> Option<(&str, i32)> {
    let (host, pid) = target.rsplit_once('-')?;
    let pid: i32 = pid.parse().ok()?;
    (pid > 0 && !host.is_empty()).then_some((host, pid))
}

/// Which live process `SingletonLock` names, if it is on `host`: in `<dir>/profile`
/// (our layout) or else in `<dir>` itself (an older server's profile).
fn singleton_pid(dir: &Path, host: &str) -> Option<(i32, String)> {
    let target = [dir.join(PROFILE_DIR), dir.to_owned()]
        .iter()
        .find_map(|d| std::fs::read_link(d.join("SingletonLock")).ok())?;
    let target = target.to_str()?.to_owned();
    let (h, pid) = parse_singleton_lock(&target)?;
    (h == host).then_some((pid, target))
}

fn proven(pid: i32, dirs: &[PathBuf]) -> Option<String> {
    dirs.iter().find_map(|d| procfs::proof_for(pid, d))
}

/// Processes proven to belong to `dir` (blocking: reads `/proc`). Where a process group
/// leader is proven, only the leader is reported (killing it kills its group).
pub(crate) fn find(dir: &Path, host: &str) -> Vec<Orphan> {
    let dirs = proof_dirs(dir);
    let mut found: Vec<(procfs::ProcStat, String)> = Vec::new();
    if let Some((pid, target)) = singleton_pid(dir, host) {
        if let (Some(arg), Some(st)) = (proven(pid, &dirs), procfs::stat(pid)) {
            found.push((
                st,
                format!(
                    "SingletonLock names {target} (this host) and /proc/{pid}/cmdline has {arg}"
                ),
            ));
        }
    }
    for d in &dirs {
        for (st, arg) in procfs::live_belonging_to(d) {
            if found.iter().all(|(f, _)| f.pid != st.pid) {
                found.push((st, format!("/proc/{}/cmdline has {arg}", st.pid)));
            }
        }
    }
    let leaders: Vec<i32> = found
        .iter()
        .filter(|(s, _)| s.pid == s.pgrp)
        .map(|(s, _)| s.pid)
        .collect();
    let mut out: Vec<Orphan> = found
        .into_iter()
        .filter(|(s, _)| s.pid == s.pgrp || !leaders.contains(&s.pgrp))
        .map(|(s, proof)| Orphan {
            pid: s.pid as u32,
            dir: dir.to_owned(),
            proof: if s.pid == s.pgrp {
                format!("{proof}; leads process group {}", s.pgrp)
            } else {
                proof
            },
        })
        .collect();
    out.sort_by_key(|o| o.pid);
    out
}

/// Kill an orphan after re-checking its proof; if it leads its process group (or its
/// group leader carries the same proof), kill the group. Waits (bounded) until the
/// process and its group have no live member left.
pub(crate) async fn kill(orphan: &Orphan) -> Result<bool, BackendError> {
    let orphan = orphan.clone();
    let res = tokio::task::spawn_blocking(move || kill_blocking(&orphan))
        .await
        .map_err(|e| BackendError::new("kill_orphan", BackendErrorKind::Other, e.to_string()))?;
    res
}

fn kill_blocking(orphan: &Orphan) -> Result<bool, BackendError> {
    let pid = orphan.pid as i32;
    let dirs = proof_dirs(&orphan.dir);
    let dir_refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let Some(st) = procfs::stat(pid) else {
        return Ok(false);
    };
    let pgrp = st.pgrp;
    // The group leader must itself carry the proof before the group is signalled.
    let group = (pgrp > 1 && proven(pgrp, &dirs).is_some()).then_some(pgrp);
    if !kill_if_proven(pid, &dir_refs) {
        return Ok(false);
    }
    if let Some(g) = group {
        // Re-check the leader right before signalling its group.
        if proven(g, &dirs).is_some() {
            if let Some(gp) = Pid::from_raw(g) {
                let _ = rustix::process::kill_process_group(gp, Signal::KILL);
            }
        }
    }
    let deadline = Instant::now() + ORPHAN_WAIT;
    loop {
        let me_live = procfs::stat(pid).is_some_and(|s| s.is_live());
        let group_live = group.is_some_and(|g| !procfs::live_group_members(g).is_empty());
        if !me_live && !group_live {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Err(BackendError::new(
                "kill_orphan",
                BackendErrorKind::TimedOut,
                format!("process {pid} still alive {ORPHAN_WAIT:?} after SIGKILL"),
            )
            .at(PathBuf::from(&orphan.dir)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_singleton_lock_targets() {
        assert_eq!(parse_singleton_lock("vm-14972"), Some(("vm", 14972)));
        assert_eq!(
            parse_singleton_lock("my-host-name-7"),
            Some(("my-host-name", 7))
        );
        assert_eq!(parse_singleton_lock("host-"), None);
        assert_eq!(parse_singleton_lock("-12"), None);
        assert_eq!(parse_singleton_lock("host-0"), None);
        assert_eq!(parse_singleton_lock("nodash"), None);
    }

    #[test]
    fn a_directory_without_browser_has_no_orphans() {
        let d = std::env::temp_dir().join(format!("bpc-orphan-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(d.join(PROFILE_DIR));
        // A SingletonLock naming a live process that is not a browser of this dir.
        let target = format!("{}-{}", hostname(), std::process::id());
        let _ = std::os::unix::fs::symlink(&target, d.join(PROFILE_DIR).join("SingletonLock"));
        assert!(find(&d, &hostname()).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
