//! Session identity, why sessions end, and the lock-free activity cell.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::time::Timestamp;

/// Identifies a session within one pool.
///
/// **Guarantee:** a pool issues ids 1, 2, 3, ... in the order it admits requests, one per
/// session, and never reuses one, so an id names one session forever: a caller holding
/// the id of an ended session gets that session's end reason (or
/// [`SessionError::Unknown`](crate::SessionError::Unknown) once forgotten), never another
/// session. The number is what [`Display`](fmt::Display) shows (`s17`) and what the
/// session directory is named after (`<prefix><instance>-17`, see [`crate::sweep`]).
///
/// The id is also how the lifecycle machine finds a session in O(1): its table is
/// direct-mapped, so the id's low bits are the slot and the rest acts as the slot's
/// generation (a stale id no longer matches what its slot holds). That is why the id
/// stays a plain counter rather than a packed slot and generation: names on disk, traces
/// and parsed ids keep working unchanged, and the lookup still needs no hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = std::num::ParseIntError;
    /// Parses `s17` or `17`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('s').unwrap_or(s).parse().map(SessionId)
    }
}

/// Who a session belongs to, for example a client connection. A server calls
/// [`Pool::release_owner`](crate::Pool::release_owner) with it when that connection drops.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerKey(pub Arc<str>);

impl OwnerKey {
    /// An owner key from any string, such as `"conn-42"` or a peer address.
    pub fn new(s: impl AsRef<str>) -> Self {
        OwnerKey(Arc::from(s.as_ref()))
    }
}

impl fmt::Display for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a session was retired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetireCause {
    /// It reached `max_lifetime`.
    MaxLifetime,
    /// It reached `max_uses`.
    MaxUses,
}

/// Why a session ended. Every teardown carries exactly one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// A client asked for it to be destroyed.
    Destroyed,
    /// No client activity for `idle_for`, longer than the idle timeout.
    IdleReaped {
        /// How long it had been idle when it was reaped.
        idle_for: Duration,
    },
    /// Evicted as the least-recently-active session to make room for a new one.
    Evicted,
    /// Retired after reaching a lifetime or use limit.
    Retired(RetireCause),
    /// The browser exited by itself (crash, OOM kill, external kill).
    Crashed {
        /// How it exited, as the backend described it (for example "killed by signal 9").
        exit: String,
    },
    /// Its owner was released and it was not touched during the grace period.
    OwnerReleased,
    /// The pool was shut down.
    Shutdown,
    /// The browser could not be launched.
    LaunchFailed {
        /// What the backend reported.
        reason: String,
    },
    /// The request that asked for it went away before it was handed out.
    Abandoned,
}

impl EndReason {
    /// A short stable label ("destroyed", "idle", "evicted", ...), used in stats and traces.
    pub fn label(&self) -> &'static str {
        match self {
            EndReason::Destroyed => "destroyed",
            EndReason::IdleReaped { .. } => "idle",
            EndReason::Evicted => "evicted",
            EndReason::Retired(_) => "retired",
            EndReason::Crashed { .. } => "crashed",
            EndReason::OwnerReleased => "owner_released",
            EndReason::Shutdown => "shutdown",
            EndReason::LaunchFailed { .. } => "launch_failed",
            EndReason::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Destroyed => f.write_str("destroyed by a client"),
            EndReason::IdleReaped { idle_for } => {
                write!(f, "reaped after {:.0?} without activity", idle_for)
            }
            EndReason::Evicted => f.write_str("evicted as least recently used to make room"),
            EndReason::Retired(RetireCause::MaxLifetime) => {
                f.write_str("retired after reaching max_lifetime")
            }
            EndReason::Retired(RetireCause::MaxUses) => {
                f.write_str("retired after reaching max_uses")
            }
            EndReason::Crashed { exit } => write!(f, "browser exited by itself ({exit})"),
            EndReason::OwnerReleased => {
                f.write_str("its owner disconnected and it was not used within the grace period")
            }
            EndReason::Shutdown => f.write_str("the pool was shut down"),
            EndReason::LaunchFailed { reason } => write!(f, "launch failed ({reason})"),
            EndReason::Abandoned => f.write_str("its requester went away before it was handed out"),
        }
    }
}

const STATE_LIVE: u8 = 0;
const STATE_ENDED: u8 = 1;

/// The per-session cell that client operations write without a lock.
///
/// - [`touch`](Activity::touch) is one relaxed load of the coarse clock and one relaxed
///   store: O(1), lock-free, no system-clock read.
/// - [`begin_op`](Activity::begin_op) / [`end_op`](Activity::end_op) count operations in
///   flight; a session with one in flight is never reaped, evicted or retired.
///
/// The lifecycle machine reads the cell only when a deadline of this session falls due
/// or when it looks for an eviction victim ("lazy deadlines").
#[derive(Debug)]
pub struct Activity {
    last_active: AtomicU64,
    in_flight: AtomicU32,
    uses: AtomicU64,
    state: AtomicU8,
}

impl Activity {
    /// A cell stamped at `now`, idle, with no uses.
    pub fn new(now: Timestamp) -> Self {
        Activity {
            last_active: AtomicU64::new(now.0),
            in_flight: AtomicU32::new(0),
            uses: AtomicU64::new(0),
            state: AtomicU8::new(STATE_LIVE),
        }
    }

    /// Stamp activity at `now`. Stamps only move forward.
    #[inline]
    pub fn touch(&self, now: Timestamp) {
        // A plain store is enough: a concurrent older stamp may win the race, which makes
        // the session look older by at most the spread between concurrent callers (one
        // coarse tick), and the machine's deadline slack covers one tick.
        self.last_active.store(now.0, Ordering::Relaxed);
    }

    /// When the last activity was stamped.
    #[inline]
    pub fn last_active(&self) -> Timestamp {
        Timestamp(self.last_active.load(Ordering::Relaxed))
    }

    /// Mark an operation as started at `now`: stamps activity, counts a use.
    #[inline]
    pub fn begin_op(&self, now: Timestamp) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.uses.fetch_add(1, Ordering::Relaxed);
        self.touch(now);
    }

    /// Mark an operation as finished at `now`: stamps activity. Returns the uses so far.
    #[inline]
    pub fn end_op(&self, now: Timestamp) -> u64 {
        self.touch(now);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.uses.load(Ordering::Relaxed)
    }

    /// Operations in flight.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether an operation is in flight.
    #[inline]
    pub fn is_busy(&self) -> bool {
        self.in_flight() > 0
    }

    /// Client operations counted so far.
    pub fn uses(&self) -> u64 {
        self.uses.load(Ordering::Relaxed)
    }

    /// Whether teardown of this session has started.
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.state.load(Ordering::Acquire) == STATE_ENDED
    }

    /// Mark the session as ended; callers holding a handle see it at once.
    pub fn mark_ended(&self) {
        self.state.store(STATE_ENDED, Ordering::Release);
    }
}
