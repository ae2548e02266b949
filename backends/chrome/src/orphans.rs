//! Startup-sweep support: which processes are *proven* to belong to a leftover session
//! directory, and killing them only after re-checking that proof.
//!
//! Proof of ownership is what the session's [`SessionMatcher`] finds in
//! `/proc/<pid>/cmdline` of a live process. Candidates come from two places:
//! - `<dir>/profile/SingletonLock` (else `<dir>/SingletonLock`, an older server's
//!   layout whose profile is the directory itself), a symlink Chromium makes whose
//!   *target text* is `<hostname>-<pid>` (read with `readlink`, never followed as a
//!   path); its PID counts only if the hostname is this host's and the matcher's proof
//!   holds;
//! - a scan of `/proc` with the matcher (this also finds a browser whose lock was
//!   removed, helpers left behind by a dead main process, and crash handlers, which
//!   leave the browser's process group).
//!
//! Nothing is ever killed by name or by PID alone: PIDs are reused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browserpool::{BackendError, BackendErrorKind, Orphan};
use rustix::process::{Pid, Signal};

use crate::launcher::PROFILE_DIR;
use crate::matcher::SessionMatcher;
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

/// Parse a `SingletonLock` target, `<hostname>-<pid>` (the hostname may contain `-`).
/// Strict: the PID is plain decimal digits without a leading zero and greater than 0,
/// and the hostname is not empty; anything else is `None` (and is never acted on).
pub(crate) fn parse_singleton_lock(target: &str) -> Option<(&str, i32)> {
    let (host, pid) = target.rsplit_once('-')?;
    if host.is_empty() || pid.starts_with('0') || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: i32 = pid.parse().ok()?;
    (pid > 0).then_some((host, pid))
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

/// Processes proven to belong to `dir` (blocking: reads `/proc`). Where a process group
/// leader is proven, only the leader is reported (killing it kills its group).
pub(crate) fn find(dir: &Path, host: &str) -> Vec<Orphan> {
    let matcher = SessionMatcher::new(dir);
    let mut found: Vec<(procfs::ProcStat, String)> = Vec::new();
    if let Some((pid, target)) = singleton_pid(dir, host) {
        if let (Some(arg), Some(st)) = (matcher.proof_for(pid), procfs::stat(pid)) {
            found.push((
                st,
                format!(
                    "SingletonLock names {target} (this host) and /proc/{pid}/cmdline has {arg}"
                ),
            ));
        }
    }
    for (st, arg) in matcher.live() {
        if found.iter().all(|(f, _)| f.pid != st.pid) {
            found.push((st, format!("/proc/{}/cmdline has {arg}", st.pid)));
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
    let matcher = SessionMatcher::new(&orphan.dir);
    let Some(st) = procfs::stat(pid) else {
        return Ok(false);
    };
    let pgrp = st.pgrp;
    // The group leader must itself carry the proof before the group is signalled.
    let group = (pgrp > 1 && matcher.proof_for(pgrp).is_some()).then_some(pgrp);
    if !kill_if_proven(pid, &matcher) {
        return Ok(false);
    }
    if let Some(g) = group {
        // Re-check the leader right before signalling its group.
        if matcher.proof_for(g).is_some() {
            if let Some(gp) = Pid::from_raw(g) {
                let _ = rustix::process::kill_process_group(gp, Signal::KILL);
            }
        }
    }
    let deadline = Instant::now() + ORPHAN_WAIT;
    loop {
        let me_live = procfs::is_live(pid);
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(parse_singleton_lock("host-+5"), None);
        assert_eq!(parse_singleton_lock("host-007"), None);
        assert_eq!(parse_singleton_lock("host- 5"), None);
        assert_eq!(parse_singleton_lock("host-99999999999"), None);
        // The target captured from a real browser.
        let captured = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chromium-156/SingletonLock.target"
        ))
        .unwrap();
        assert_eq!(parse_singleton_lock(captured.trim()), Some(("vm", 12912)));
    }

    proptest! {
        #[test]
        fn lock_targets_never_panic_and_parse_only_what_they_spell(s in "\\PC{0,40}") {
            if let Some((host, pid)) = parse_singleton_lock(&s) {
                prop_assert_eq!(format!("{host}-{pid}"), s);
            }
        }

        #[test]
        fn lock_targets_chromium_writes_parse(host in "[a-zA-Z0-9.-]{1,30}", pid in 1i32..i32::MAX) {
            let target = format!("{host}-{pid}");
            prop_assert_eq!(parse_singleton_lock(&target), Some((host.as_str(), pid)));
        }
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
