//! Session identity, why sessions end, and the lock-free activity cell.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::time::{CoarseClock, Timestamp};

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
#[non_exhaustive]
pub enum RetireCause {
    /// It reached `max_lifetime`.
    MaxLifetime,
    /// It reached `max_uses`.
    MaxUses,
    /// It was a spare that waited `spare_max_age` without being handed out.
    SpareMaxAge,
}

/// Which memory limit ended a session ([`EndReason::Memory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemoryLimit {
    /// The pool was over `memory_budget` and this was the least-recently-active idle
    /// session (or an acquire needed its room).
    Budget,
    /// The session alone used more than `max_session_memory`.
    Session,
}

/// Why a session ended. Every teardown carries exactly one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// Torn down for memory: `limit` says whether the pool's `memory_budget` or the
    /// session's own `max_session_memory`. Never while an operation was in flight.
    Memory {
        /// Which limit.
        limit: MemoryLimit,
        /// The session's last measured PSS in bytes (0 if it was never measured).
        pss_bytes: u64,
    },
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
            EndReason::Memory { .. } => "memory",
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
            EndReason::Retired(RetireCause::SpareMaxAge) => {
                f.write_str("retired as a spare unused for spare_max_age")
            }
            EndReason::Crashed { exit } => write!(f, "browser exited by itself ({exit})"),
            EndReason::OwnerReleased => {
                f.write_str("its owner disconnected and it was not used within the grace period")
            }
            EndReason::Shutdown => f.write_str("the pool was shut down"),
            EndReason::LaunchFailed { reason } => write!(f, "launch failed ({reason})"),
            EndReason::Abandoned => f.write_str("its requester went away before it was handed out"),
            EndReason::Memory {
                limit: MemoryLimit::Budget,
                pss_bytes,
            } => write!(
                f,
                "evicted while idle to keep the pool under memory_budget (it used {} MiB)",
                pss_bytes >> 20
            ),
            EndReason::Memory {
                limit: MemoryLimit::Session,
                pss_bytes,
            } => write!(
                f,
                "retired for using {} MiB, over max_session_memory",
                pss_bytes >> 20
            ),
        }
    }
}

const STATE_LIVE: u8 = 0;
const STATE_ENDED: u8 = 1;

/// Activity cells per [`ActivityRef`] chunk: 2 KiB of stamps in a row. Fewer would
/// break a round-robin touch's stream every few cache lines; a chunk (8 KiB with its
/// reference counts) stays allocated while any handle on one of its cells lives, so much
/// larger chunks would let a few long-lived sessions pin more memory.
pub(crate) const CELLS_PER_CHUNK: usize = 256;

/// The size of a chunk's stamp array, and the alignment of the chunk, which starts with
/// it: a stamp's address rounded down to a multiple of this is its chunk's address, and
/// the remainder over 8 is its index (see [`ActivityRef`]).
const STAMPS_BYTES: usize = CELLS_PER_CHUNK * std::mem::size_of::<AtomicU64>();

/// Activity cells allocated together, so that the cells of sessions launched one after
/// another sit next to each other in memory (a server touching its sessions in turn, or
/// a reap tick over one launch wave, then reads consecutive cache lines instead of one
/// scattered allocation per session). Cells are never reused: a chunk is freed when the
/// last handle on any of its cells is dropped.
///
/// The chunk is laid out by field, not by cell: the activity stamps of its sessions are
/// one dense array of 8-byte words (what a touch writes, so touching sessions in turn
/// streams through 8 bytes per session, as a plain array of atomics would), and the
/// operation counters and end flags sit in arrays of their own. The chunk also carries
/// what every touch needs besides the cell: the pool's coarse clock and `max_uses`.
///
/// `repr(C)` with the stamps first and aligned to their size: an [`ActivityRef`] is the
/// address of one stamp, from which the chunk and the index are computed.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct CellChunk {
    last_active: Stamps,
    /// The clock [`ActivityRef::touch_coarse`] stamps with (the pool's coarse clock).
    clock: Arc<CoarseClock>,
    /// The pool's `max_uses` (`u64::MAX` without one), read when an operation ends.
    max_uses: u64,
    in_flight: [AtomicU32; CELLS_PER_CHUNK],
    uses: [AtomicU64; CELLS_PER_CHUNK],
    state: [AtomicU8; CELLS_PER_CHUNK],
}

impl CellChunk {
    pub(crate) fn new(max_uses: u64, clock: Arc<CoarseClock>) -> Self {
        CellChunk {
            last_active: Stamps(std::array::from_fn(|_| AtomicU64::new(0))),
            clock,
            max_uses,
            in_flight: std::array::from_fn(|_| AtomicU32::new(0)),
            uses: std::array::from_fn(|_| AtomicU64::new(0)),
            state: std::array::from_fn(|_| AtomicU8::new(STATE_LIVE)),
        }
    }
}

/// The stamps, first in the chunk and aligned to their own size (see [`STAMPS_BYTES`]);
/// they also sit on cache lines of their own, away from the fields every touch reads.
#[derive(Debug)]
#[repr(C, align(2048))]
struct Stamps([AtomicU64; CELLS_PER_CHUNK]);

// What `ActivityRef`'s address arithmetic relies on.
const _: () = {
    assert!(std::mem::size_of::<Stamps>() == STAMPS_BYTES);
    assert!(std::mem::align_of::<Stamps>() == STAMPS_BYTES);
    assert!(std::mem::align_of::<CellChunk>() == STAMPS_BYTES);
    assert!(std::mem::offset_of!(CellChunk, last_active) == 0);
};

/// A shared handle on one session's activity cell: what a [`Lease`](crate::Lease)
/// holds and what [`Lifecycle::activity`](crate::Lifecycle::activity) hands out.
/// One word; cloning it is one atomic increment.
///
/// The cell is what client operations write without a lock, with the same operations
/// and guarantees as a standalone [`Activity`]:
///
/// - [`touch`](ActivityRef::touch) is one relaxed store: O(1), lock-free, no
///   system-clock read.
/// - [`begin_op`](ActivityRef::begin_op) / [`end_op`](ActivityRef::end_op) count
///   operations in flight; a session with one in flight is never reaped, evicted or
///   retired.
///
/// The lifecycle machine reads the cell only when a deadline of this session falls due
/// or when it looks for an eviction victim ("lazy deadlines").
///
/// The cell stays valid, and keeps saying whether its session ended, for as long as any
/// handle on it lives, whatever happens to the session or the pool.
pub struct ActivityRef {
    /// The session's stamp, `last_active[i]` of a [`CellChunk`] of which this handle owns
    /// one strong count (taken by `Arc::into_raw` or `Arc::increment_strong_count`, given
    /// back on drop). The chunk starts at this address rounded down to [`STAMPS_BYTES`]
    /// (its alignment, with the stamps first) and `i` is the remainder over 8. So the
    /// handle is one word: a server's lease is two, and touching many sessions in turn
    /// streams through half the bytes an `Arc` and an index would take.
    ///
    /// The pointer was derived from the one `Arc::into_raw` returned, so it carries that
    /// pointer's provenance over the whole chunk, and rounding its address down gives
    /// back that pointer.
    stamp: NonNull<AtomicU64>,
}

// SAFETY: an `ActivityRef` is a shared, reference-counted handle on a `CellChunk`, like
// an `Arc<CellChunk>` (which is `Send` and `Sync` because the chunk is: atomics, an
// `Arc<CoarseClock>` and a `u64`); it never hands out anything but shared references.
unsafe impl Send for ActivityRef {}
// SAFETY: as for `Send`.
unsafe impl Sync for ActivityRef {}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<CellChunk>();
};

impl Clone for ActivityRef {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: `chunk_ptr` is the pointer `Arc::into_raw` returned for a chunk of which
        // `self` owns a strong count, so the count is at least one.
        unsafe { Arc::increment_strong_count(self.chunk_ptr()) };
        ActivityRef { stamp: self.stamp }
    }
}

impl Drop for ActivityRef {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: gives back the strong count this handle owns (see `stamp`); the pointer
        // is the one `Arc::into_raw` returned. The handle is not used afterwards.
        unsafe { Arc::decrement_strong_count(self.chunk_ptr()) };
    }
}

impl ActivityRef {
    /// A cell of its own, stamped at `now`, with no use limit (for callers outside a
    /// pool, such as tests; a pool's cells come from its lifecycle machine).
    pub fn new(now: Timestamp) -> Self {
        let clock = Arc::new(CoarseClock::new(now));
        let cell = ActivityRef::in_chunk(Arc::new(CellChunk::new(u64::MAX, clock)), 0);
        cell.touch(now);
        cell
    }

    /// Cell `idx` of `chunk` (taken modulo the chunk size).
    pub(crate) fn in_chunk(chunk: Arc<CellChunk>, idx: usize) -> Self {
        let base = Arc::into_raw(chunk);
        // The stamps are at offset 0, so stamp `idx` is `idx` words in: within the chunk,
        // and derived from `base`, whose provenance it keeps.
        let stamp = base
            .cast::<AtomicU64>()
            .wrapping_add(idx % CELLS_PER_CHUNK)
            .cast_mut();
        match NonNull::new(stamp) {
            Some(stamp) => ActivityRef { stamp },
            // `Arc::into_raw` never returns null, nor does an offset within its data.
            None => unreachable!("Arc::into_raw returned null"),
        }
    }

    /// The chunk's address: the stamp's rounded down to the chunk's alignment. This is
    /// the pointer `Arc::into_raw` returned, with its provenance.
    #[inline(always)]
    fn chunk_ptr(&self) -> *const CellChunk {
        self.stamp
            .as_ptr()
            .map_addr(|a| a & !(STAMPS_BYTES - 1))
            .cast_const()
            .cast::<CellChunk>()
    }

    /// The chunk, alive for as long as `self` (which owns a strong count of it).
    #[inline(always)]
    fn chunk(&self) -> &CellChunk {
        // SAFETY: `chunk_ptr` points to a live `CellChunk` (this handle keeps it alive),
        // and only shared references to it are ever made.
        unsafe { &*self.chunk_ptr() }
    }

    /// The index into the chunk's arrays: below the chunk size by construction, and the
    /// mask lets the compiler see it.
    #[inline(always)]
    fn i(&self) -> usize {
        (self.stamp.as_ptr().addr() & (STAMPS_BYTES - 1)) / std::mem::size_of::<AtomicU64>()
            % CELLS_PER_CHUNK
    }

    /// The session's activity stamp.
    #[inline(always)]
    fn stamp(&self) -> &AtomicU64 {
        // SAFETY: the stamp lives in the chunk this handle keeps alive (see `chunk`).
        unsafe { self.stamp.as_ref() }
    }

    /// Where the activity stamp lives (for tests of the layout).
    #[cfg(test)]
    pub(crate) fn stamp_addr(&self) -> usize {
        self.stamp.as_ptr().addr()
    }

    /// The pool's `max_uses`, `u64::MAX` if it has none.
    #[inline]
    pub(crate) fn max_uses(&self) -> u64 {
        self.chunk().max_uses
    }

    /// The time on the pool's coarse clock.
    #[inline]
    pub(crate) fn coarse_now(&self) -> Timestamp {
        self.chunk().clock.now()
    }

    /// Stamp activity at the pool's coarse clock's time: one relaxed load of the clock
    /// and one relaxed store.
    #[inline]
    pub(crate) fn touch_coarse(&self) {
        self.touch(self.coarse_now());
    }

    /// Stamp activity at `now`. See [`Activity::touch`].
    #[inline]
    pub fn touch(&self, now: Timestamp) {
        // A plain store is enough: a concurrent older stamp may win the race, which makes
        // the session look older by at most the spread between concurrent callers (one
        // coarse tick), and the machine's deadline slack covers one tick.
        self.stamp().store(now.0, Ordering::Relaxed);
    }

    /// When the last activity was stamped.
    #[inline]
    pub fn last_active(&self) -> Timestamp {
        Timestamp(self.stamp().load(Ordering::Relaxed))
    }

    /// Mark an operation as started at `now`: stamps activity, counts a use.
    #[inline]
    pub fn begin_op(&self, now: Timestamp) {
        let i = self.i();
        self.chunk().in_flight[i].fetch_add(1, Ordering::AcqRel);
        self.chunk().uses[i].fetch_add(1, Ordering::Relaxed);
        self.touch(now);
    }

    /// Mark an operation as finished at `now`: stamps activity. Returns the uses so far.
    #[inline]
    pub fn end_op(&self, now: Timestamp) -> u64 {
        let i = self.i();
        self.touch(now);
        self.chunk().in_flight[i].fetch_sub(1, Ordering::AcqRel);
        self.chunk().uses[i].load(Ordering::Relaxed)
    }

    /// Operations in flight.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.chunk().in_flight[self.i()].load(Ordering::Acquire)
    }

    /// Whether an operation is in flight.
    #[inline]
    pub fn is_busy(&self) -> bool {
        self.in_flight() > 0
    }

    /// Client operations counted so far.
    pub fn uses(&self) -> u64 {
        self.chunk().uses[self.i()].load(Ordering::Relaxed)
    }

    /// Whether teardown of this session has started.
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.chunk().state[self.i()].load(Ordering::Acquire) == STATE_ENDED
    }

    /// Mark the session as ended; callers holding a handle see it at once.
    pub fn mark_ended(&self) {
        self.chunk().state[self.i()].store(STATE_ENDED, Ordering::Release);
    }
}

impl fmt::Debug for ActivityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityRef")
            .field("last_active", &self.last_active())
            .field("in_flight", &self.in_flight())
            .field("uses", &self.uses())
            .field("ended", &self.is_ended())
            .finish()
    }
}

/// A standalone activity cell, for code that keeps its own (a pool's sessions use
/// [`ActivityRef`] cells, which offer the same operations and guarantees).
///
/// - [`touch`](Activity::touch) is one relaxed store: O(1), lock-free, no system-clock
///   read.
/// - [`begin_op`](Activity::begin_op) / [`end_op`](Activity::end_op) count operations in
///   flight.
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

#[cfg(test)]
mod cell_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn chunk(clock_at: u64, max_uses: u64) -> Arc<CellChunk> {
        let clock = Arc::new(CoarseClock::new(Timestamp(clock_at)));
        Arc::new(CellChunk::new(max_uses, clock))
    }

    #[test]
    fn a_cell_handle_is_one_word() {
        assert_eq!(std::mem::size_of::<ActivityRef>(), 8);
        assert_eq!(std::mem::size_of::<Option<ActivityRef>>(), 8);
    }

    #[test]
    fn every_cell_of_a_chunk_finds_its_chunk_and_its_own_slots() {
        let c = chunk(7, 3);
        let base = Arc::as_ptr(&c).addr();
        assert_eq!(base % STAMPS_BYTES, 0, "the chunk is aligned to its stamps");
        let cells: Vec<ActivityRef> = (0..CELLS_PER_CHUNK)
            .map(|i| ActivityRef::in_chunk(c.clone(), i))
            .collect();
        for (i, cell) in cells.iter().enumerate() {
            assert_eq!(cell.chunk_ptr().addr(), base);
            assert_eq!(cell.i(), i);
            assert_eq!(cell.stamp_addr(), base + 8 * i);
            // Each cell writes its own slot of every array, and nobody else's.
            cell.touch(Timestamp(1000 + i as u64));
            cell.begin_op(Timestamp(2000 + i as u64));
        }
        for (i, cell) in cells.iter().enumerate() {
            assert_eq!(cell.last_active(), Timestamp(2000 + i as u64));
            assert_eq!(cell.in_flight(), 1);
            assert_eq!(cell.uses(), 1);
            assert!(!cell.is_ended());
            assert_eq!(cell.max_uses(), 3);
            assert_eq!(cell.coarse_now(), Timestamp(7));
        }
        cells[5].mark_ended();
        let ended: Vec<usize> = (0..CELLS_PER_CHUNK)
            .filter(|&i| cells[i].is_ended())
            .collect();
        assert_eq!(ended, vec![5]);
        // The index is taken modulo the chunk size.
        let wrapped = ActivityRef::in_chunk(c.clone(), CELLS_PER_CHUNK + 5);
        assert!(wrapped.is_ended());
        assert_eq!(wrapped.i(), 5);
    }

    #[test]
    fn handles_own_one_count_each_and_the_last_one_frees_the_chunk() {
        let c = chunk(0, u64::MAX);
        let weak = Arc::downgrade(&c);
        let a = ActivityRef::in_chunk(c.clone(), 3);
        assert_eq!(Arc::strong_count(&c), 2);
        let b = a.clone();
        let d = b.clone();
        assert_eq!(Arc::strong_count(&c), 4);
        drop(b);
        assert_eq!(Arc::strong_count(&c), 3);
        // Moved across threads and dropped there.
        std::thread::spawn(move || {
            d.touch(Timestamp(9));
            drop(d);
        })
        .join()
        .unwrap();
        assert_eq!(Arc::strong_count(&c), 2);
        assert_eq!(a.last_active(), Timestamp(9));
        drop(c);
        assert!(weak.upgrade().is_some(), "a handle keeps its chunk alive");
        a.touch(Timestamp(10));
        assert_eq!(a.last_active(), Timestamp(10));
        drop(a);
        assert!(weak.upgrade().is_none(), "the last handle freed the chunk");
    }
}
