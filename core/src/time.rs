//! Time as a value: the [`Timestamp`] newtype, the [`Clock`] trait and the coarse clock
//! that activity stamps read.
//!
//! Nothing in the lifecycle machine reads a clock; the shell passes `now` in. The async
//! [`Pool`](crate::Pool) reads time only through a [`Clock`], so the whole pool runs under
//! tokio's paused time in tests and under a simulated clock in `browserpool-sim`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// task (every [`PoolConfig::tick`](crate::PoolConfig::tick)).
///
/// This is what makes an activity stamp cost one load and one store instead of a
/// system-clock read per CDP command. Its value lags real time by at most one tick
/// (default 1 s), so a stamp may be up to one tick older than the activity it records:
/// a session can be reaped up to one tick before `idle_timeout` of real inactivity has
/// passed, and never outlives its last stamp by more than `idle_timeout + reap_interval`.
/// Operations in flight are protected regardless ([`Activity::begin_op`](crate::Activity::begin_op)).
#[derive(Debug, Default)]
pub struct CoarseClock {
    now_ms: AtomicU64,
}

impl CoarseClock {
    /// A coarse clock that reads `start` until it is first refreshed.
    pub fn new(start: Timestamp) -> Self {
        CoarseClock {
            now_ms: AtomicU64::new(start.0),
        }
    }

    /// The last refreshed time.
    #[inline]
    pub fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(Ordering::Relaxed))
    }

    /// Move the clock forward to `now` (never backwards).
    pub fn refresh(&self, now: Timestamp) {
        self.now_ms.fetch_max(now.0, Ordering::Relaxed);
    }
}
