//! Counters and gauges.

use crate::backend::MemoryUsage;

/// Running totals since the pool (or machine) was created. Every session that is launched
/// ends in exactly one of the `destroyed`..`abandoned` counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Browsers launched successfully.
    pub created: u64,
    /// Ended by an explicit destroy.
    pub destroyed: u64,
    /// Ended by the idle reaper.
    pub reaped: u64,
    /// Ended by LRU eviction at capacity.
    pub evicted: u64,
    /// Ended by `max_lifetime` or `max_uses`.
    pub retired: u64,
    /// Ended because the browser exited by itself.
    pub crashed: u64,
    /// Ended because their owner was released.
    pub owner_released: u64,
    /// Ended by shutdown.
    pub shutdown: u64,
    /// Launched for a requester that went away first.
    pub abandoned: u64,
    /// Ended for memory (reason `memory`): evicted to stay under `memory_budget`, or
    /// retired over `max_session_memory`. Not counted in `evicted` or `retired`.
    pub memory: u64,
    /// Launches that failed (not counted in `created`).
    pub launch_failed: u64,
    /// Requests refused at once (`Reject` at capacity, or queue full).
    pub rejected: u64,
    /// Requests that waited and timed out.
    pub wait_timeouts: u64,
    /// Kills that had to be escalated or repeated.
    pub kill_escalations: u64,
    /// Kills that were still alive after `kill_attempts` forced kills.
    pub kill_stuck: u64,
    /// Teardowns whose first directory removal failed (retried in the background).
    pub remove_failures: u64,
    /// Directories removed by a background retry.
    pub dirs_recovered: u64,
    /// Requests served by a ready spare (no launch waited for), with `spares > 0`.
    pub spare_hits: u64,
    /// Requests that found no ready spare, with `spares > 0` (they took over a spare
    /// launch in flight, launched, waited or were refused).
    pub spare_misses: u64,
    /// Spare launches started (each is also counted in `created` or `launch_failed`).
    pub spare_launches: u64,
    /// Times the pool was found over `memory_budget` with a single session left: the
    /// budget never evicts the last session, so the pool stayed over it (the budget is
    /// smaller than one browser).
    pub over_budget_with_one_session: u64,
    /// Requests refused or timed out because of `memory_budget`
    /// ([`AcquireError::MemoryBudget`](crate::AcquireError::MemoryBudget); also counted
    /// in `rejected` or `wait_timeouts`).
    pub memory_blocked: u64,
    /// Memory samples fed to the machine (one per session measured).
    pub memory_samples: u64,
}

/// A snapshot of a [`Pool`](crate::Pool).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Sessions being launched.
    pub launching: usize,
    /// Usable sessions.
    pub live: usize,
    /// Usable sessions with an operation in flight.
    pub busy: usize,
    /// Sessions whose process trees are being killed.
    pub stopping: usize,
    /// Directories still to be removed (including background retries).
    pub removing: usize,
    /// Requests queued for a slot.
    pub waiting: usize,
    /// Spares launched and ready to be handed out (not counted in `live`).
    pub spares_ready: usize,
    /// Spare launches in flight (counted in `launching` too).
    pub spares_launching: usize,
    /// Summed last-measured PSS of the live sessions and ready spares, in bytes (see
    /// [`MachineStats::memory_used`](crate::MachineStats::memory_used)).
    pub memory_used: u64,
    /// `memory_used` plus the per-launch estimate for each session not yet measured.
    pub memory_projected: u64,
    /// The configured `memory_budget`.
    pub memory_budget: Option<u64>,
    /// Running totals from the lifecycle machine.
    pub totals: Totals,
    /// Sessions recovered by the Drop safety net (killed and removed from `Drop`).
    pub drop_recovered: u64,
    /// Directories removed by startup sweeps.
    pub swept: u64,
    /// Orphan processes killed by startup sweeps.
    pub swept_processes: u64,
    /// Panics caught in backend calls and pool tasks; each was treated as the failure of
    /// that step (see [`Pool`](crate::Pool)'s supervision).
    pub panics: u64,
    /// Times the reaper task was restarted after a panic.
    pub reaper_restarts: u64,
    /// Set once the pool gave up restarting a reaper that panicked on every round: why.
    /// New sessions are refused from then on.
    pub unhealthy: Option<String>,
}

/// Memory of every live session, summed, as measured by the backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolMemory {
    /// Sum over sessions.
    pub total: MemoryUsage,
    /// Per session, in id order.
    pub sessions: Vec<(crate::SessionId, MemoryUsage)>,
}
