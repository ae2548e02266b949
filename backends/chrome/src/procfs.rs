//! Reading `/proc`: process state, process group, command line and memory.
//!
//! Everything here is a snapshot: a process can exit (and its PID be reused) right after
//! it was read. Callers that act on what they read (signal a process) re-check the
//! identity proof immediately before acting, and signal process groups only while they
//! hold the group leader unreaped (which pins the group id).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: i32,
    /// The state letter (`R`, `S`, `D`, `Z`, `X`, ...).
    pub state: u8,
    /// The parent process id.
    pub ppid: i32,
    /// The process group id.
    pub pgrp: i32,
}

impl ProcStat {
    /// Whether the process still exists as more than a zombie (a zombie holds no memory
    /// and runs no code: it counts as gone).
    pub fn is_live(&self) -> bool {
        !matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Parse the contents of `/proc/<pid>/stat`. The command name (field 2) may contain
/// spaces and parentheses, so the fields after it are found from the *last* `)`.
pub fn parse_stat(pid: i32, text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = text.get(close + 1..)?;
    let mut fields = rest
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .map(|f| std::str::from_utf8(f).ok());
    let state = *fields.next()??.as_bytes().first()?;
    let ppid = fields.next()??.parse().ok()?;
    let pgrp = fields.next()??.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// Read `/proc/<pid>/stat`; `None` if the process does not exist (any more).
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Every process visible in `/proc`, in no particular order.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect()
}

/// Live (non-zombie) members of process group `pgid`, sorted.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = all_pids()
        .into_iter()
        .filter_map(stat)
        .filter(|s| s.pgrp == pgid && s.is_live())
        .map(|s| s.pid)
        .collect();
    out.sort_unstable();
    out
}

/// Of `pids`, those that are still live members of group `pgid`.
pub fn still_live_in_group(pids: &[i32], pgid: i32) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|&p| stat(p).is_some_and(|s| s.pgrp == pgid && s.is_live()))
        .collect()
}

/// The command-line arguments of `pid` (empty for a zombie or a kernel thread; `None`
/// if it does not exist or cannot be read).
pub fn cmdline(pid: i32) -> Option<Vec<Vec<u8>>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

/// Whether `pid`'s command line has an argument exactly equal to `arg`.
pub fn has_exact_arg(pid: i32, arg: &OsStr) -> bool {
    cmdline(pid).is_some_and(|args| args.iter().any(|a| a.as_slice() == arg.as_bytes()))
}

/// The argument proving that a command line belongs to the browser of session
/// directory `dir`, if any:
/// - exactly `--user-data-dir=<dir>/profile` (the browser and all its helpers), or
///   exactly `--user-data-dir=<dir>` (an older server's browser whose profile is the
///   directory itself, as the sweep's legacy directories may be), or
/// - `--database=<path>` with `<path>` strictly inside `<dir>` (Chromium's crash
///   handler, which leaves the browser's process group and session; its database lives
///   in the session's private XDG config directory).
///
/// Session directory names are unique, so either is proof of ownership.
pub fn session_proof(args: &[Vec<u8>], dir: &Path) -> Option<String> {
    let mut udd_root = b"--user-data-dir=".to_vec();
    udd_root.extend_from_slice(dir.as_os_str().as_bytes());
    let mut udd = b"--user-data-dir=".to_vec();
    udd.extend_from_slice(dir.join("profile").as_os_str().as_bytes());
    let mut inside = dir.as_os_str().as_bytes().to_vec();
    inside.push(b'/');
    args.iter()
        .find(|a| {
            a.as_slice() == udd.as_slice()
                || a.as_slice() == udd_root.as_slice()
                || a.strip_prefix(b"--database=".as_slice())
                    .is_some_and(|p| p.starts_with(&inside) && p.len() > inside.len())
        })
        .map(|a| String::from_utf8_lossy(a).into_owned())
}

/// [`session_proof`] for a live process `pid` (`None` if it is gone or a zombie).
pub fn proof_for(pid: i32, dir: &Path) -> Option<String> {
    if !stat(pid).is_some_and(|s| s.is_live()) {
        return None;
    }
    session_proof(&cmdline(pid)?, dir)
}

/// Live processes (any group) carrying a [`session_proof`] for `dir`, sorted by PID,
/// with the proving argument. Never includes this process.
pub fn live_belonging_to(dir: &Path) -> Vec<(ProcStat, String)> {
    let me = std::process::id() as i32;
    let mut out: Vec<(ProcStat, String)> = all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter_map(stat)
        .filter(|s| s.is_live())
        .filter_map(|s| Some((s, session_proof(&cmdline(s.pid)?, dir)?)))
        .collect();
    out.sort_unstable_by_key(|(s, _)| s.pid);
    out
}

/// Live processes (any group) whose command line carries exactly `arg`, sorted.
pub fn live_with_arg(arg: &OsStr) -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    let mut out: Vec<ProcStat> = all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter_map(stat)
        .filter(|s| s.is_live() && has_exact_arg(s.pid, arg))
        .collect();
    out.sort_unstable_by_key(|s| s.pid);
    out
}

/// Resident and proportional set size of one process, in bytes, from
/// `/proc/<pid>/smaps_rollup` (falling back to `VmRSS` in `/proc/<pid>/status`, with no
/// PSS, on kernels without `smaps_rollup`).
pub fn memory(pid: i32) -> Option<(u64, u64)> {
    if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        let rss = kb_field(&text, "Rss:");
        let pss = kb_field(&text, "Pss:");
        if rss.is_some() || pss.is_some() {
            return Some((rss.unwrap_or(0), pss.unwrap_or(0)));
        }
    }
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((kb_field(&text, "VmRSS:")?, 0))
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.trim();
        let kb: u64 = v.strip_suffix("kB").unwrap_or(v).trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Whether `path` exists without following a final symlink.
pub fn exists_nofollow(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let s = parse_stat(42, b"42 (a) b (c)) S 1 40 40 0 -1 4194560 0").unwrap();
        assert_eq!(
            s,
            ProcStat {
                pid: 42,
                state: b'S',
                ppid: 1,
                pgrp: 40
            }
        );
        assert!(s.is_live());
        let z = parse_stat(7, b"7 (chromium) Z 1 7 7 0").unwrap();
        assert!(!z.is_live());
        assert_eq!(parse_stat(1, b"garbage"), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(s.is_live());
        assert!(live_group_members(s.pgrp).contains(&me));
        let (rss, _pss) = memory(me).unwrap();
        assert!(rss > 0);
        assert!(!cmdline(me).unwrap().is_empty());
    }

    #[test]
    fn session_proofs_are_exact() {
        let dir = Path::new("/r/bp-abc-1");
        let args = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        assert!(session_proof(
            &args(&["chromium", "--user-data-dir=/r/bp-abc-1/profile"]),
            dir
        )
        .is_some());
        assert!(session_proof(
            &args(&["crashpad", "--database=/r/bp-abc-1/home/.config/x"]),
            dir
        )
        .is_some());
        assert!(session_proof(
            &args(&["chromium", "--user-data-dir=/r/bp-abc-10/profile"]),
            dir
        )
        .is_none());
        assert!(session_proof(
            &args(&["chromium", "--user-data-dir=/r/bp-abc-1/profile/"]),
            dir
        )
        .is_none());
        assert!(session_proof(&args(&["crashpad", "--database=/r/bp-abc-10/x"]), dir).is_none());
        assert!(session_proof(&args(&["crashpad", "--database=/r/bp-abc-1/"]), dir).is_none());
        assert!(session_proof(&args(&["sleep", "/r/bp-abc-1/profile"]), dir).is_none());
        // A profile that is the directory itself (a legacy server's), exactly.
        assert!(session_proof(&args(&["chromium", "--user-data-dir=/r/bp-abc-1"]), dir).is_some());
        assert!(session_proof(&args(&["chromium", "--user-data-dir=/r/bp-abc-1/"]), dir).is_none());
        assert!(session_proof(&args(&["chromium", "--user-data-dir=/r/bp-abc"]), dir).is_none());
        assert!(
            session_proof(&args(&["chromium", "--user-data-dir=/r/bp-abc-1/x"]), dir).is_none()
        );
    }

    #[test]
    fn kb_fields() {
        let t = "Rss:                1234 kB\nPss:   10 kB\n";
        assert_eq!(kb_field(t, "Rss:"), Some(1234 * 1024));
        assert_eq!(kb_field(t, "Pss:"), Some(10 * 1024));
        assert_eq!(kb_field(t, "Swap:"), None);
    }
}
