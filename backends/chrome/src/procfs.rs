//! Reading `/proc`: process state, process group, command line and memory.
//!
//! Everything here is a snapshot: a process can exit (and its PID be reused) right after
//! it was read. Callers that act on what they read (signal a process) re-check the
//! identity proof immediately before acting, and signal process groups only while they
//! hold the group leader unreaped (which pins the group id).
//!
//! The parsers (`parse_*`) take the raw bytes the kernel gave and never panic: input they
//! do not understand gives `None`, never a guess. Which processes belong to a session is
//! decided by one matcher, [`SessionMatcher`](crate::SessionMatcher), built on these.

use std::fs;
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
    /// Threads in the process (field 20, `num_threads`).
    pub threads: i32,
    /// When the process started, in clock ticks since boot (field 22, `starttime`). A
    /// process started before another cannot be its descendant.
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the process still exists as more than a zombie (a zombie holds no memory
    /// and runs no code: it counts as gone).
    ///
    /// `/proc/<pid>/stat` shows the state of the process's *main thread*. When a
    /// multi-threaded process is killed, its main thread often exits first and shows `Z`
    /// while the other threads are still exiting, and the last of them still has to
    /// unmap the whole address space (measured on Chromium 156: a browser process showed
    /// `Z` for 130 ms before its last thread was gone). So a `Z` whose thread count is
    /// above 1 is still live; a real zombie counts 1 (itself).
    pub fn is_live(&self) -> bool {
        !matches!(self.state, b'Z' | b'X' | b'x') || self.threads > 1
    }
}

/// Parse the contents of `/proc/<pid>/stat`. The command name (field 2) may contain
/// spaces and parentheses, so the fields after it are found from the *last* `)`.
/// `None` for anything that is not `... ) <state letter> <ppid> <pgrp>` followed by the
/// numeric fields up to `starttime` (field 22), which every kernel since 2.6 writes.
pub fn parse_stat(pid: i32, text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = text.get(close + 1..)?;
    let mut fields = rest
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .map(|f| std::str::from_utf8(f).ok());
    let state = fields.next()??;
    let [state] = state.as_bytes() else {
        return None;
    };
    if !state.is_ascii_alphabetic() {
        return None;
    }
    let ppid = fields.next()??.parse().ok()?;
    let pgrp = fields.next()??.parse().ok()?;
    // Fields 6 to 19 (session .. nice): numbers, not used here.
    for _ in 6..=19 {
        fields.next()??.parse::<i64>().ok()?;
    }
    let threads = fields.next()??.parse().ok()?;
    fields.next()??.parse::<i64>().ok()?; // field 21, itrealvalue
    let start_ticks = fields.next()??.parse().ok()?;
    Some(ProcStat {
        pid,
        state: *state,
        ppid,
        pgrp,
        threads,
        start_ticks,
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
        .filter(|&p| p > 0)
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

/// Whether `pid` exists as more than a zombie.
pub fn is_live(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.is_live())
}

/// The raw contents of `/proc/<pid>/cmdline` (empty for a zombie or a kernel thread;
/// `None` if the process does not exist or cannot be read). See [`parse_cmdline`].
pub fn cmdline_raw(pid: i32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// The arguments in raw `/proc/<pid>/cmdline` bytes: the NUL-separated elements, empty
/// ones dropped. A process that rewrote its title (every Chromium child does) shows one
/// element holding the whole space-joined title.
pub fn parse_cmdline(raw: &[u8]) -> Vec<&[u8]> {
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).collect()
}

/// Every live (non-zombie) process except this one, with its raw command line, sorted by
/// PID. One pass over `/proc`; a process that exits meanwhile is left out.
pub fn live_processes() -> Vec<(ProcStat, Vec<u8>)> {
    scan_live(|_| true)
        .into_iter()
        .filter_map(|(st, cmd)| Some((st, cmd?)))
        .collect()
}

/// Every live (non-zombie) process except this one, sorted by PID, with its raw command
/// line where `want_cmdline` asks for it. `/proc/<pid>/stat` is read first: reading a
/// command line needs the target's memory map, which a dying process may hold for a
/// while, so callers skip it where the stat already decides.
pub fn scan_live(
    mut want_cmdline: impl FnMut(&ProcStat) -> bool,
) -> Vec<(ProcStat, Option<Vec<u8>>)> {
    let me = std::process::id() as i32;
    let mut out: Vec<(ProcStat, Option<Vec<u8>>)> = Vec::new();
    for p in all_pids() {
        if p == me {
            continue;
        }
        let Some(st) = stat(p).filter(ProcStat::is_live) else {
            continue;
        };
        if want_cmdline(&st) {
            if let Some(cmd) = cmdline_raw(p) {
                out.push((st, Some(cmd)));
            }
        } else {
            out.push((st, None));
        }
    }
    out.sort_unstable_by_key(|(s, _)| s.pid);
    out
}

/// Resident and proportional set size of one process, in bytes, from
/// `/proc/<pid>/smaps_rollup` (falling back to `VmRSS` in `/proc/<pid>/status`, with no
/// PSS, on kernels without `smaps_rollup`).
pub fn memory(pid: i32) -> Option<(u64, u64)> {
    if let Ok(text) = fs::read(format!("/proc/{pid}/smaps_rollup")) {
        if let Some(m) = parse_smaps_rollup(&text) {
            return Some(m);
        }
    }
    let text = fs::read(format!("/proc/{pid}/status")).ok()?;
    Some((kb_field(&text, "VmRSS:")?, 0))
}

/// `(Rss, Pss)` in bytes from the contents of `/proc/<pid>/smaps_rollup`; a missing
/// field counts as 0, and `None` if neither is there or a value is malformed.
pub fn parse_smaps_rollup(text: &[u8]) -> Option<(u64, u64)> {
    let rss = kb_field(text, "Rss:");
    let pss = kb_field(text, "Pss:");
    if rss.is_none() && pss.is_none() {
        return None;
    }
    Some((rss.unwrap_or(0), pss.unwrap_or(0)))
}

/// The value of a `Key:   1234 kB` line, in bytes. `None` if the key is missing, its
/// value is not a plain number of kB, or the byte count does not fit in a `u64`.
fn kb_field(text: &[u8], key: &str) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|l| {
        let v = std::str::from_utf8(l.strip_prefix(key.as_bytes())?).ok()?;
        let v = v.trim();
        let digits = v.strip_suffix("kB").unwrap_or(v).trim();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()?.checked_mul(1024)
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
    use proptest::prelude::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chromium-156");

    fn fixture(name: &str) -> Vec<u8> {
        fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// The fields after `)` that the kernel writes, with state, ppid, pgrp, thread
    /// count and start time filled in.
    fn stat_line(
        pid: i32,
        comm: &str,
        state: &str,
        ppid: i32,
        pgrp: i32,
        threads: i32,
        start: u64,
    ) -> String {
        format!("{pid} ({comm}) {state} {ppid} {pgrp} {pgrp} 0 -1 4194560 16322 1352 2 3 89 29 2 0 20 0 {threads} 0 {start} 56507379712 53161")
    }

    #[test]
    fn parses_stat_with_awkward_comm() {
        let s = parse_stat(42, stat_line(42, "a) b (c", "S", 1, 40, 3, 777).as_bytes()).unwrap();
        assert_eq!(
            s,
            ProcStat {
                pid: 42,
                state: b'S',
                ppid: 1,
                pgrp: 40,
                threads: 3,
                start_ticks: 777,
            }
        );
        assert!(s.is_live());
        let z = parse_stat(7, stat_line(7, "chromium", "Z", 1, 7, 1, 5).as_bytes()).unwrap();
        assert!(!z.is_live());
        assert_eq!(parse_stat(1, b"garbage"), None);
        assert_eq!(parse_stat(1, b"1 (x) SS 1 1"), None);
        assert_eq!(parse_stat(1, b"1 (x) 5 1 1"), None);
        assert_eq!(parse_stat(1, b"1 (x) S 1"), None);
        // Cut before the thread count or the start time: not guessed.
        assert_eq!(parse_stat(1, b"1 (x) S 1 1 1 0 -1 4194560 0"), None);
        let full = stat_line(1, "x", "S", 1, 1, 2, 9);
        let cut = full.rsplitn(4, ' ').last().unwrap();
        assert_eq!(parse_stat(1, cut.as_bytes()), None);
    }

    #[test]
    fn a_zombie_main_thread_with_threads_left_is_live() {
        // The main thread of a killed multi-threaded process exits first; the process
        // is gone only when its last thread is.
        let dying = parse_stat(9, stat_line(9, "chromium", "Z", 1, 9, 4, 5).as_bytes()).unwrap();
        assert!(dying.is_live());
        let dead = parse_stat(9, stat_line(9, "chromium", "Z", 1, 9, 1, 5).as_bytes()).unwrap();
        assert!(!dead.is_live());
        let x = parse_stat(9, stat_line(9, "chromium", "X", 1, 9, 1, 5).as_bytes()).unwrap();
        assert!(!x.is_live());
    }

    #[test]
    fn parses_captured_chromium_stats() {
        // Captured from a real session (see tests/fixtures/chromium-156/README.md): the
        // renderer is in the browser's group, the crash handler in a group of its own.
        let browser = parse_stat(12912, &fixture("browser.stat")).unwrap();
        assert_eq!((browser.pgrp, browser.state), (12912, b'S'));
        assert_eq!((browser.threads, browser.start_ticks), (34, 59625));
        let renderer = parse_stat(12991, &fixture("renderer.stat")).unwrap();
        assert_eq!(renderer.pgrp, 12912);
        assert!(renderer.start_ticks >= browser.start_ticks);
        let crashpad = parse_stat(12929, &fixture("crashpad.stat")).unwrap();
        assert_eq!(crashpad.pgrp, 12928);
        assert!(crashpad.start_ticks >= browser.start_ticks);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(s.is_live());
        assert!(live_group_members(s.pgrp).contains(&me));
        let (rss, _pss) = memory(me).unwrap();
        assert!(rss > 0);
        assert!(!parse_cmdline(&cmdline_raw(me).unwrap()).is_empty());
        // The snapshot never includes this process.
        assert!(live_processes().iter().all(|(s, _)| s.pid != me));
    }

    #[test]
    fn cmdline_elements() {
        assert_eq!(
            parse_cmdline(b"a\0--b=c d\0\0"),
            vec![b"a".as_slice(), b"--b=c d".as_slice()]
        );
        assert!(parse_cmdline(b"").is_empty());
        // A rewritten title: one element.
        assert_eq!(parse_cmdline(&fixture("renderer.cmdline")).len(), 1);
        assert!(parse_cmdline(&fixture("browser.cmdline")).len() > 30);
    }

    #[test]
    fn smaps_rollup_fields() {
        assert_eq!(
            parse_smaps_rollup(&fixture("smaps_rollup")),
            Some((1692 * 1024, 338 * 1024))
        );
        let t = b"Rss:                1234 kB\nPss:   10 kB\n";
        assert_eq!(parse_smaps_rollup(t), Some((1234 * 1024, 10 * 1024)));
        assert_eq!(kb_field(t, "Swap:"), None);
        assert_eq!(parse_smaps_rollup(b"Swap: 1 kB\n"), None);
        assert_eq!(kb_field(b"Rss: -5 kB\n", "Rss:"), None);
        assert_eq!(kb_field(b"Rss: 99999999999999999999 kB\n", "Rss:"), None);
        assert_eq!(kb_field(b"Rss: 18014398509481984 kB\n", "Rss:"), None); // 2^54 kB overflows
    }

    proptest! {
        #[test]
        fn stat_parser_never_panics_and_reads_only_well_formed_fields(
            bytes in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            if let Some(s) = parse_stat(1, &bytes) {
                prop_assert!(s.state.is_ascii_alphabetic());
                let text = String::from_utf8_lossy(&bytes);
                let ppid = s.ppid.to_string();
                prop_assert!(text.contains(&ppid));
            }
        }

        #[test]
        fn stat_parser_reads_what_the_kernel_writes(
            comm in "[ -~]{0,16}", state in "[RSDZTtXxIWP]", ppid in 0i32..1 << 22, pgrp in 0i32..1 << 22,
            threads in 1i32..5000, start in 0u64..1 << 40
        ) {
            let text = stat_line(77, &comm, &state, ppid, pgrp, threads, start);
            let s = parse_stat(77, text.as_bytes()).unwrap();
            prop_assert_eq!(
                (s.state, s.ppid, s.pgrp, s.threads, s.start_ticks),
                (state.as_bytes()[0], ppid, pgrp, threads, start)
            );
        }

        #[test]
        fn cmdline_parser_never_panics_and_keeps_every_byte_but_nuls(
            bytes in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let parts = parse_cmdline(&bytes);
            prop_assert!(parts.iter().all(|p| !p.is_empty() && !p.contains(&0)));
            let kept: usize = parts.iter().map(|p| p.len()).sum();
            prop_assert_eq!(kept, bytes.iter().filter(|&&b| b != 0).count());
        }

        #[test]
        fn smaps_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_smaps_rollup(&bytes);
        }

        #[test]
        fn smaps_parser_reads_what_the_kernel_writes(rss in 0u64..1 << 40, pss in 0u64..1 << 40) {
            let text = format!("00-ff ---p 0 00:00 0 [rollup]\nRss: {rss:>12} kB\nPss: {pss:>12} kB\nSwap: 0 kB\n");
            prop_assert_eq!(parse_smaps_rollup(text.as_bytes()), Some((rss * 1024, pss * 1024)));
        }
    }
}
