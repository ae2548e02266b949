//! Time as a value: the [`Timestamp`] newtype, the [`Clock`] trait and the coarse clock
//! that activity stamps read.
//!
//! Nothing in the lifecycle machine reads a clock; the shell passes `now` in. The async
//! [`Pool`](crate::Pool) reads time only through a [`Clock`], so the whole pool runs under
//! tokio's paused time in tests and under a simulated clock in `browserpool-sim`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// A point in time, in whole milliseconds since the epoch of the [`Clock`] that made it.
///
/// Timestamps from different clocks are not comparable. Millisecond resolution is plenty
/// for lifecycles measured in seconds to days, and it keeps an activity stamp a single
/// `u64` that one relaxed atomic store can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The clock's epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// Later than any real time; used as "never".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Milliseconds since the clock's epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// A timestamp `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_ms(d)))
    }

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// Whole milliseconds in `d`, saturating at `u64::MAX`, rounding up so that a non-zero
/// duration never becomes zero.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if ms == 0 && !d.is_zero() { 1 } else { ms };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The source of time for a [`Pool`](crate::Pool).
///
/// Guarantees an implementation must give:
/// - `now()` never goes backwards;
/// - `sleep_until(t)` returns once `now() >= t` (it may return later, never earlier), and
///   is cancel-safe (dropping the future has no effect).
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Wait until `now() >= deadline`.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// The production clock: tokio's monotonic clock, so it also follows
/// `tokio::time::pause()` and `advance()` in tests.
#[derive(Clone, Debug)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose epoch is the moment of this call.
    pub fn new() -> Self {
        TokioClock {
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        Timestamp(duration_ms(self.epoch.elapsed()))
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        // A deadline beyond what an Instant can hold never comes.
        match self.epoch.checked_add(Duration::from_millis(deadline.0)) {
            Some(target) => tokio::time::sleep_until(target).await,
            None => std::future::pending().await,
        }
    }
}

/// A clock that is read with one relaxed atomic load and refreshed by the pool's reaper
/// task (every [`PoolConfig::tick`](crate::PoolConfig::tick) while it is read).
///
/// This is what makes an activity stamp cost one load and one store instead of a
/// system-clock read per CDP command. Its value lags real time by at most one tick
/// (default 1 s), so a stamp may be up to one tick older than the activity it records:
/// a session can be reaped up to one tick before `idle_timeout` of real inactivity has
/// passed, and never outlives its last stamp by more than `idle_timeout + reap_interval`.
/// Operations in flight are protected regardless ([`Activity::begin_op`](crate::Activity::begin_op)).
///
/// ## Ticking only while read
///
/// A pool's reaper does not tick while nobody reads the clock. At each tick it *arms*
/// the clock; the first read after that takes a slow
/// path once: it reads the pool's real [`Clock`], stores that time (disarming), and wakes
/// the reaper. A tick that finds the clock still armed knows
/// nobody read it for a whole tick, and the reaper stops ticking until the next read
/// wakes it. While stopped, the clock is stale but armed, so the next read gets the real
/// time: a stamp is never older than the one a ticking clock gives. A pool whose sessions
/// sit idle (or have long operations in flight) therefore wakes once per deadline instead
/// of once per tick (a simulated 15-day replay: 1.3 million wake-ups fewer).
pub struct CoarseClock {
    /// Milliseconds, with [`ARMED`] set while the reaper waits for a read.
    now_ms: AtomicU64,
    /// The real clock behind it (the pool's); `None` outside a pool (never armed then).
    source: Option<Arc<dyn Clock>>,
    /// Woken by the read that disarms the clock.
    read: tokio::sync::Notify,
}

/// The flag bit of [`CoarseClock`]'s word: set by the reaper's tick, cleared by the next
/// read. Real times in milliseconds never reach it.
const ARMED: u64 = 1 << 63;

impl fmt::Debug for CoarseClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.now_ms.load(Ordering::Relaxed);
        f.debug_struct("CoarseClock")
            .field("now_ms", &(v & !ARMED))
            .field("armed", &(v & ARMED != 0))
            .finish()
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        CoarseClock::new(Timestamp::ZERO)
    }
}

impl CoarseClock {
    /// A coarse clock that reads `start` until it is first refreshed.
    pub fn new(start: Timestamp) -> Self {
        CoarseClock {
            now_ms: AtomicU64::new(start.0 & !ARMED),
            source: None,
            read: tokio::sync::Notify::new(),
        }
    }

    /// A coarse clock that can be armed: its slow path reads `source`.
    pub(crate) fn with_source(start: Timestamp, source: Arc<dyn Clock>) -> Self {
        CoarseClock {
            source: Some(source),
            ..CoarseClock::new(start)
        }
    }

    /// The last refreshed time, or, when the clock is armed, the real time (then the
    /// clock is disarmed and the pool's reaper, if it stopped ticking, wakes).
    #[inline]
    pub fn now(&self) -> Timestamp {
        let v = self.now_ms.load(Ordering::Relaxed);
        if v & ARMED == 0 {
            Timestamp(v)
        } else {
            self.disarm()
        }
    }

    #[cold]
    #[inline(never)]
    fn disarm(&self) -> Timestamp {
        let real = self.source.as_ref().map_or(0, |c| c.now().0 & !ARMED);
        let prev = self
            .now_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some((cur & !ARMED).max(real))
            })
            .unwrap_or_else(|cur| cur);
        self.read.notify_waiters();
        Timestamp((prev & !ARMED).max(real))
    }

    /// Move the clock forward to `now` (never backwards), keeping it armed or not.
    pub fn refresh(&self, now: Timestamp) {
        self.advance(now, false);
    }

    /// Move the clock forward to `now` and arm it. Returns whether it was still armed
    /// from the previous call, i.e. nobody read it since.
    pub(crate) fn refresh_armed(&self, now: Timestamp) -> bool {
        self.advance(now, true)
    }

    /// Move the clock forward to `now` (never backwards); arm it if `arm`, else keep its
    /// flag. Returns whether it was armed before.
    fn advance(&self, now: Timestamp, arm: bool) -> bool {
        let set = if arm { ARMED } else { 0 };
        let prev = self
            .now_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some(((cur & !ARMED).max(now.0 & !ARMED)) | (cur & ARMED) | set)
            })
            .unwrap_or_else(|cur| cur);
        prev & ARMED != 0
    }

    /// Resolves after the next read that disarms the clock. Create it, then check
    /// [`CoarseClock::is_armed`], then await it, so that no read is missed.
    pub(crate) fn read(&self) -> tokio::sync::futures::Notified<'_> {
        self.read.notified()
    }

    /// Whether the clock is armed (no read since the last [`CoarseClock::refresh_armed`]).
    pub(crate) fn is_armed(&self) -> bool {
        self.now_ms.load(Ordering::Relaxed) & ARMED != 0
    }
}
