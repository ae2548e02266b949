//! The trace: one line per thing that happened, hashed (FNV-1a) and kept in a ring for
//! failure reports (and in full when asked).

use std::fmt;
use std::hash::Hasher;

/// A stable FNV-1a hasher (std's default hasher is randomly keyed).
pub(super) struct Fnv(pub(super) u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[derive(Clone, Debug, Hash)]
pub(super) enum Tr {
    Start {
        instance: String,
        swept: bool,
    },
    Sweep {
        removed: usize,
        killed: usize,
        skipped: usize,
        failed: usize,
    },
    SweepCrashed,
    ServerCrash {
        trees: u64,
    },
    Arrive {
        c: u32,
    },
    Acquire {
        c: u32,
        ticket: u64,
    },
    ReplyOk {
        c: Option<u32>,
        id: u64,
    },
    ReplyErr {
        c: Option<u32>,
        err: &'static str,
    },
    OpBegin {
        c: u32,
        id: u64,
    },
    OpEnd {
        c: u32,
        id: u64,
        long: bool,
    },
    ClientEnd {
        c: u32,
        how: &'static str,
    },
    ClientError {
        c: u32,
        what: &'static str,
    },
    Launch {
        id: u64,
        pgid: u32,
        procs: u32,
    },
    NoDir {
        id: u64,
    },
    Launched {
        id: u64,
    },
    LaunchFailed {
        id: u64,
        why: &'static str,
    },
    Ending {
        id: u64,
        reason: &'static str,
    },
    Kill {
        id: u64,
        force: bool,
        attempt: u32,
    },
    Gone {
        id: u64,
    },
    KillTimedOut {
        id: u64,
        attempt: u32,
    },
    Remove {
        id: u64,
        ok: bool,
    },
    Finished {
        id: u64,
        reason: &'static str,
        dir_removed: bool,
    },
    BrowserCrash {
        pgid: u32,
        id: Option<u64>,
    },
    Quiet,
    Converged {
        ok: bool,
    },
    Violation {
        oracle: &'static str,
    },
}

#[derive(Clone, Debug, Hash)]
pub(super) struct Line {
    pub(super) idx: u64,
    pub(super) t: u64,
    pub(super) inc: u32,
    pub(super) ev: Tr,
}

pub(super) fn fmt_time(ms: u64) -> String {
    let d = ms / 86_400_000;
    let h = ms / 3_600_000 % 24;
    let m = ms / 60_000 % 60;
    let s = ms / 1000 % 60;
    format!("{d}d{h:02}:{m:02}:{s:02}.{:03}", ms % 1000)
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.inc;
        write!(f, "#{} {} ", self.idx, fmt_time(self.t))?;
        match &self.ev {
            Tr::Start { instance, swept } => write!(
                f,
                "server start i{i} instance {instance}{}",
                if *swept { " (sweep)" } else { "" }
            ),
            Tr::Sweep {
                removed,
                killed,
                skipped,
                failed,
            } => write!(
                f,
                "sweep i{i}: removed {removed}, killed {killed}, skipped {skipped}, failed {failed}"
            ),
            Tr::SweepCrashed => write!(f, "server i{i} crashed during its startup sweep"),
            Tr::ServerCrash { trees } => {
                write!(
                    f,
                    "server i{i} crashed (no destructors); {trees} browser trees of ours alive"
                )
            }
            Tr::Arrive { c } => write!(f, "c{c} arrives"),
            Tr::Acquire { c, ticket } => write!(f, "c{c} acquire -> ticket {ticket}"),
            Tr::ReplyOk { c, id } => write!(f, "reply {} <- i{i}/s{id}", who(*c)),
            Tr::ReplyErr { c, err } => write!(f, "reply {} <- error {err}", who(*c)),
            Tr::OpBegin { c, id } => write!(f, "c{c} op begin i{i}/s{id}"),
            Tr::OpEnd { c, id, long } => {
                write!(
                    f,
                    "c{c} op end i{i}/s{id}{}",
                    if *long { " (long)" } else { "" }
                )
            }
            Tr::ClientEnd { c, how } => write!(f, "c{c} {how}"),
            Tr::ClientError { c, what } => write!(f, "c{c} error: {what}"),
            Tr::Launch { id, pgid, procs } => {
                write!(f, "launch i{i}/s{id} pgid {pgid} ({procs} processes)")
            }
            Tr::NoDir { id } => write!(f, "launch i{i}/s{id}: create_dir failed"),
            Tr::Launched { id } => write!(f, "launched i{i}/s{id}"),
            Tr::LaunchFailed { id, why } => write!(f, "launch failed i{i}/s{id}: {why}"),
            Tr::Ending { id, reason } => write!(f, "ending i{i}/s{id}: {reason}"),
            Tr::Kill { id, force, attempt } => write!(
                f,
                "kill i{i}/s{id} {} attempt {attempt}",
                if *force { "SIGKILL" } else { "graceful" }
            ),
            Tr::Gone { id } => write!(f, "gone i{i}/s{id}"),
            Tr::KillTimedOut { id, attempt } => {
                write!(f, "kill timed out i{i}/s{id} attempt {attempt}")
            }
            Tr::Remove { id, ok } => {
                write!(
                    f,
                    "remove dir i{i}/s{id}: {}",
                    if *ok { "ok" } else { "failed" }
                )
            }
            Tr::Finished {
                id,
                reason,
                dir_removed,
            } => write!(
                f,
                "finished i{i}/s{id} ({reason}){}",
                if *dir_removed { "" } else { ", dir pending" }
            ),
            Tr::BrowserCrash { pgid, id } => match id {
                Some(id) => write!(f, "browser pgid {pgid} of i{i}/s{id} crashed"),
                None => write!(f, "orphan browser pgid {pgid} crashed"),
            },
            Tr::Quiet => write!(f, "quiet: clients gone, faults off"),
            Tr::Converged { ok } => {
                write!(
                    f,
                    "convergence check: {}",
                    if *ok { "empty" } else { "NOT EMPTY" }
                )
            }
            Tr::Violation { oracle } => write!(f, "ORACLE VIOLATION {oracle}"),
        }
    }
}

fn who(c: Option<u32>) -> String {
    c.map_or("(nobody)".to_owned(), |c| format!("c{c}"))
}
