//! Oracle names and the record of a violation.
//!
//! The checks themselves live in the engine (they need its bookkeeping) and run after
//! every event; this module names them so that reports, tests and the README agree.

use serde::{Deserialize, Serialize};

/// `max_browsers` bounds live process trees of the current pool (and, after a complete
/// startup sweep, of all our incarnations together).
pub const CAPACITY: &str = "capacity";
/// No session's process tree outlives its last activity by more than
/// `idle_timeout + reap_interval + tick` plus the kill budget, unless an operation is in
/// flight.
pub const IDLE_BOUND: &str = "idle-bound";
/// After a restart's startup sweep, no process or directory of an earlier incarnation
/// (or a legacy leftover) remains, except what the sweep reported as failed.
pub const SWEEP_CLEAN: &str = "sweep-clean";
/// Nothing outside our own processes and directories is ever killed or removed, and no
/// stale PID is ever signalled.
pub const FOREIGN_TOUCH: &str = "foreign-touch";
/// Every session is torn down exactly once, and a finished teardown left its processes
/// gone (and its directory gone when it says so).
pub const EXACTLY_ONCE: &str = "exactly-once";
/// Every client request is answered (success or a clear error) within
/// `acquire_timeout + launch_timeout` (plus one second).
pub const ANSWERED: &str = "answered";
/// Under `EvictLru`, no request is refused while a session has been idle for a tick.
pub const NO_REFUSAL_WHILE_IDLE: &str = "no-refusal-while-idle";
/// No session is torn down by the pool by its own decision (idle reap, LRU eviction,
/// retirement, owner release) while its client has an operation in flight.
pub const NEVER_MID_OPERATION: &str = "never-mid-operation";
/// When faults and client activity stop at T, by T plus the timeouts there are no
/// sessions, processes or directories of ours.
pub const CONVERGENCE: &str = "convergence";
/// Prewarmed spares: every session is handed to a client at most once, and never one
/// whose browser already served a client operation (a used browser never comes back, as
/// a spare or otherwise).
pub const SPARE_ONCE: &str = "spare-once";
/// Prewarmed spares: at most `spares` are ready, and ready spares plus every other
/// session (launching, live, stopping) stay within `max_browsers`.
pub const SPARE_BOUND: &str = "spare-bound";

/// Memory budget: the summed PSS of the current pool's browsers (those not being torn
/// down) stays within `memory_budget` plus the growth one sampling interval and a tick
/// allow, unless one session holds it all or no session has been idle that long (the
/// pool evicts only idle sessions, at its next sampling round).
pub const MEMORY_BUDGET: &str = "memory-budget";

/// Every oracle, in report order.
pub const ALL: &[&str] = &[
    CAPACITY,
    IDLE_BOUND,
    SWEEP_CLEAN,
    FOREIGN_TOUCH,
    EXACTLY_ONCE,
    ANSWERED,
    NO_REFUSAL_WHILE_IDLE,
    NEVER_MID_OPERATION,
    CONVERGENCE,
    SPARE_ONCE,
    SPARE_BOUND,
    MEMORY_BUDGET,
];

/// One oracle violation: the first of its kind in a run (later ones of the same oracle
/// are only counted, in [`Violation::count`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which oracle (one of [`ALL`]).
    pub oracle: String,
    /// Index of the event after which it was detected (0-based, as in the trace).
    pub event_index: u64,
    /// Simulated time, milliseconds since the start.
    pub sim_ms: u64,
    /// What was wrong.
    pub message: String,
    /// How many times this oracle fired in the run.
    pub count: u64,
}
