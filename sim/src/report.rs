//! What a run reports: the stable JSON schema of `replay --json` and the side-by-side
//! table.

use serde::{Deserialize, Serialize};

use crate::oracle::Violation;

/// The figures of one pool over one run (`runs.unmanaged` / `runs.managed` in the JSON
/// output). Field names and meanings are a stable interface (see `sim/README.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Most browser process trees of ours alive at once.
    pub peak_browsers: u64,
    /// Most Chrome processes of ours alive at once.
    pub peak_processes: u64,
    /// Highest total RSS of our browsers (sampled every simulated 10 minutes), bytes.
    pub peak_rss_bytes: u64,
    /// Highest total PSS of our browsers (sampled every simulated 10 minutes), bytes.
    pub peak_pss_bytes: u64,
    /// The pool's `memory_budget` in bytes, `null` without one.
    pub memory_budget_bytes: Option<u64>,
    /// Sessions ended for memory (reason `memory`: over the budget, or over
    /// `max_session_memory`).
    pub memory_ended: u64,
    /// Browser trees of ours alive at the end.
    pub end_browsers: u64,
    /// Chrome processes of ours alive at the end.
    pub end_processes: u64,
    /// Browser trees alive at the end that no connected client holds.
    pub orphaned_sessions_end: u64,
    /// Session directories of ours on disk at the end that no connected client's session
    /// uses.
    pub orphaned_dirs_end: u64,
    /// Browsers launched successfully (all incarnations).
    pub created: u64,
    /// Sessions ended by the idle reaper.
    pub reaped: u64,
    /// Sessions ended by LRU eviction.
    pub evicted: u64,
    /// Sessions retired (max_lifetime / max_uses).
    pub retired: u64,
    /// Sessions whose browser exited by itself.
    pub crashed: u64,
    /// Requests refused at once (Reject at capacity, queue full).
    pub rejected: u64,
    /// Client-visible errors: refusals, failed launches, operations on sessions that
    /// had ended, requests cut off by a server crash.
    pub client_errors: u64,
    /// Oracle violations (first of each oracle, with a count).
    pub oracle_violations: Vec<Violation>,
}

/// Figures that are shown in the table but are not part of the JSON schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunExtras {
    /// RSS of our browsers at the end, bytes.
    pub end_rss_bytes: u64,
    /// Sessions destroyed by clients.
    pub destroyed: u64,
    /// Sessions released after their owner disconnected.
    pub owner_released: u64,
    /// Launches that failed.
    pub launch_failed: u64,
    /// Kill escalations.
    pub kill_escalations: u64,
    /// Server crashes.
    pub server_crashes: u64,
    /// Crashes that hit a startup sweep.
    pub crashes_during_sweep: u64,
    /// Orphan trees killed by startup sweeps.
    pub sweep_orphans_killed: u64,
    /// Entries removed by startup sweeps.
    pub sweep_removed: u64,
    /// PIDs handed out again after reuse.
    pub pids_reused: u64,
    /// Events processed.
    pub events: u64,
}

/// Top-level JSON of `replay --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayJson {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Simulated length of each run, seconds.
    pub simulated_seconds: f64,
    /// Wall time of both runs together, milliseconds.
    pub wall_ms: f64,
    /// The two pools.
    pub runs: Runs,
}

/// Both pools' reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    /// The old behaviour.
    pub unmanaged: RunReport,
    /// browserpool.
    pub managed: RunReport,
}

fn gib(b: u64) -> String {
    format!("{:.1} GB", b as f64 / 1e9)
}

/// The side-by-side table printed by `replay`.
pub fn table(un: (&RunReport, &RunExtras), ma: (&RunReport, &RunExtras)) -> String {
    let mut rows: Vec<(&str, String, String)> = vec![
        (
            "peak browsers",
            un.0.peak_browsers.to_string(),
            ma.0.peak_browsers.to_string(),
        ),
        (
            "peak processes",
            un.0.peak_processes.to_string(),
            ma.0.peak_processes.to_string(),
        ),
        (
            "peak RSS",
            gib(un.0.peak_rss_bytes),
            gib(ma.0.peak_rss_bytes),
        ),
        (
            "end browsers",
            un.0.end_browsers.to_string(),
            ma.0.end_browsers.to_string(),
        ),
        (
            "end processes",
            un.0.end_processes.to_string(),
            ma.0.end_processes.to_string(),
        ),
        ("end RSS", gib(un.1.end_rss_bytes), gib(ma.1.end_rss_bytes)),
        (
            "orphaned sessions (end)",
            un.0.orphaned_sessions_end.to_string(),
            ma.0.orphaned_sessions_end.to_string(),
        ),
        (
            "orphaned dirs (end)",
            un.0.orphaned_dirs_end.to_string(),
            ma.0.orphaned_dirs_end.to_string(),
        ),
        (
            "created",
            un.0.created.to_string(),
            ma.0.created.to_string(),
        ),
        (
            "destroyed by clients",
            un.1.destroyed.to_string(),
            ma.1.destroyed.to_string(),
        ),
        (
            "reaped (idle)",
            un.0.reaped.to_string(),
            ma.0.reaped.to_string(),
        ),
        (
            "released (owner gone)",
            un.1.owner_released.to_string(),
            ma.1.owner_released.to_string(),
        ),
        (
            "evicted (LRU)",
            un.0.evicted.to_string(),
            ma.0.evicted.to_string(),
        ),
        (
            "retired",
            un.0.retired.to_string(),
            ma.0.retired.to_string(),
        ),
        (
            "crashed",
            un.0.crashed.to_string(),
            ma.0.crashed.to_string(),
        ),
        (
            "rejected",
            un.0.rejected.to_string(),
            ma.0.rejected.to_string(),
        ),
        (
            "client errors",
            un.0.client_errors.to_string(),
            ma.0.client_errors.to_string(),
        ),
        (
            "server crashes",
            un.1.server_crashes.to_string(),
            ma.1.server_crashes.to_string(),
        ),
        (
            "orphans killed by sweeps",
            un.1.sweep_orphans_killed.to_string(),
            ma.1.sweep_orphans_killed.to_string(),
        ),
        (
            "oracle violations",
            count(&un.0.oracle_violations),
            count(&ma.0.oracle_violations),
        ),
    ];
    // Memory rows only where a pool has a budget, so other scenarios' tables stay as
    // they were.
    if un.0.memory_budget_bytes.is_some() || ma.0.memory_budget_bytes.is_some() {
        let budget = |r: &RunReport| r.memory_budget_bytes.map_or("none".to_owned(), gib);
        let mem_rows = [
            (
                "peak PSS",
                gib(un.0.peak_pss_bytes),
                gib(ma.0.peak_pss_bytes),
            ),
            ("memory budget (PSS)", budget(un.0), budget(ma.0)),
            (
                "ended for memory",
                un.0.memory_ended.to_string(),
                ma.0.memory_ended.to_string(),
            ),
        ];
        rows.splice(3..3, mem_rows);
    }
    let mut s = format!("{:<26} {:>14} {:>14}\n", "", "unmanaged", "managed");
    s.push_str(&format!("{:-<26} {:->14} {:->14}\n", "", "", ""));
    for (k, a, b) in rows {
        s.push_str(&format!("{k:<26} {a:>14} {b:>14}\n"));
    }
    s
}

fn count(v: &[Violation]) -> String {
    v.iter().map(|x| x.count).sum::<u64>().to_string()
}
