//! The moka baseline: `moka::sync::Cache<u64, Arc<u64>>` doing the pool's job.
//!
//! Built with `max_capacity(n)`, `time_to_idle`, `EvictionPolicy::lru()` (pure LRU, the
//! pool's policy; moka's default TinyLFU may reject the newcomer instead of evicting the
//! oldest) and an eviction listener that counts victims by cause (`Expired` for idle
//! reaps, `Size` for evictions). The value is an `Arc`, as a server would store a
//! session handle. Exact semantics of each operation:
//!
//! - **touch** ([`MokaTouch`]): `cache.get(&id)`: looks the entry up, stamps its last
//!   access (moka reads its clock on every `get`), records the read for the deferred
//!   LRU reorder, clones the `Arc` out (and drops it). This is what a server holding a
//!   moka cache does per client command.
//! - **reap tick** ([`MokaReap::reap`]): one `run_pending_tasks()` at a moment when
//!   exactly `k` entries are past their time-to-idle: applies the pending read/write
//!   logs, removes the `k` expired entries from the access-order deque and calls the
//!   listener for each. moka cannot be given a clock from outside the crate (its mock
//!   clock is test-only), so the state is prepared in real time with a short
//!   time-to-idle (400 ms by default): `k` entries are inserted, the `n - k` others are
//!   read twice during the following time-to-idle (so they stay fresh), and the tick runs
//!   a few milliseconds after the `k` expire. None of the preparation is measured. With
//!   `k = 0` the time-to-idle is one hour and nothing is pending.
//! - **evict** ([`MokaEvict`]): `insert` of a new key into a full cache; the batch of
//!   inserts being timed ends with one `run_pending_tasks()`, so every eviction the
//!   inserts caused has been carried out (and counted by the listener) inside the timed
//!   region. Per-insert cost is the batch time divided by the inserts: moka's design
//!   amortises evictions over a batch, which is the fair way to use it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::touch::Touch;

/// Victims the eviction listener has seen, by cause.
#[derive(Debug, Default)]
pub struct Victims {
    /// Removed for being idle too long.
    pub expired: AtomicU64,
    /// Removed to stay within `max_capacity`.
    pub size: AtomicU64,
    /// Anything else (explicit, replaced).
    pub other: AtomicU64,
}

impl Victims {
    /// Entries expired so far.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
    /// Entries evicted for size so far.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
}

/// A cache of capacity `n` with the given time-to-idle, LRU policy and a counting
/// listener.
pub fn build(n: usize, tti: Duration, victims: Arc<Victims>) -> Cache<u64, Arc<u64>> {
    Cache::builder()
        .max_capacity(n as u64)
        .time_to_idle(tti)
        .eviction_policy(EvictionPolicy::lru())
        .eviction_listener(move |_k, _v, cause| {
            let c = match cause {
                RemovalCause::Expired => &victims.expired,
                RemovalCause::Size => &victims.size,
                _ => &victims.other,
            };
            c.fetch_add(1, Ordering::Relaxed);
        })
        .build()
}

/// The touch fixture: a cache holding keys `0..n` with a one-hour time-to-idle.
pub struct MokaTouch {
    cache: Cache<u64, Arc<u64>>,
    n: usize,
}

impl std::fmt::Debug for MokaTouch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaTouch").field("n", &self.n).finish()
    }
}

impl MokaTouch {
    /// `n` entries.
    pub fn new(n: usize) -> Self {
        let cache = build(n, Duration::from_secs(3600), Arc::default());
        for i in 0..n as u64 {
            cache.insert(i, Arc::new(i));
        }
        cache.run_pending_tasks();
        MokaTouch { cache, n }
    }

    /// The cache (for tests).
    pub fn cache(&self) -> &Cache<u64, Arc<u64>> {
        &self.cache
    }
}

impl Touch for MokaTouch {
    fn len(&self) -> usize {
        self.n
    }

    /// `cache.get(&i)`.
    #[inline]
    fn touch(&self, i: usize) {
        std::hint::black_box(self.cache.get(&(i as u64)));
    }
}

/// The reap fixture (see the [module docs](self) for the real-time preparation).
pub struct MokaReap {
    cache: Cache<u64, Arc<u64>>,
    victims: Arc<Victims>,
    n: usize,
    k: usize,
    tti: Duration,
    next_key: u64,
    last_refresh: Option<Instant>,
    refresh_cost: Duration,
    /// Preparations that had to be redone because a fresh entry expired early (the
    /// process was descheduled for a long time); reported, never hidden.
    pub redone: u64,
}

impl std::fmt::Debug for MokaReap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaReap")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("tti", &self.tti)
            .finish()
    }
}

/// The time-to-idle the reap fixture uses when `k > 0`.
pub const REAP_TTI: Duration = Duration::from_millis(400);

impl MokaReap {
    /// `n - k` entries that stay fresh; with `k > 0` the time-to-idle is `tti`
    /// (normally [`REAP_TTI`]), otherwise one hour.
    pub fn new(n: usize, k: usize, tti: Duration) -> Self {
        let tti = if k == 0 {
            Duration::from_secs(3600)
        } else {
            tti
        };
        let victims = Arc::new(Victims::default());
        let cache = build(n, tti, victims.clone());
        let mut f = MokaReap {
            cache,
            victims,
            n,
            k,
            tti,
            next_key: 0,
            last_refresh: None,
            refresh_cost: Duration::ZERO,
            redone: 0,
        };
        f.fill();
        f
    }

    fn fill(&mut self) {
        let fresh = self.n.saturating_sub(self.k);
        for i in 0..fresh as u64 {
            self.cache.insert(i, Arc::new(i));
        }
        self.next_key = fresh as u64;
        self.cache.run_pending_tasks();
        self.last_refresh = Some(Instant::now());
    }

    /// Read every fresh entry; false if one had expired.
    fn refresh(&mut self) -> bool {
        let fresh = self.n.saturating_sub(self.k) as u64;
        let mut all = true;
        let start = Instant::now();
        for i in 0..fresh {
            all &= self.cache.get(&i).is_some();
        }
        self.refresh_cost = start.elapsed();
        self.last_refresh = Some(Instant::now());
        all
    }

    /// Bring the cache to a state where exactly `k` entries are past their time-to-idle
    /// and the other `n - k` are not. Takes about `tti` of real time when `k > 0`;
    /// nothing when `k == 0`.
    pub fn prepare(&mut self) {
        if self.k == 0 {
            return;
        }
        loop {
            // The next refresh must reach every fresh entry within its time-to-idle of
            // the previous one, with a tenth of it to spare.
            let budget = self.tti - self.tti / 20 - self.tti / 10;
            let stale = self
                .last_refresh
                .is_none_or(|t| t.elapsed() + self.refresh_cost > budget);
            if stale {
                self.cache = build(self.n, self.tti, self.victims.clone());
                self.fill();
            }
            let t0 = Instant::now();
            for _ in 0..self.k {
                self.cache.insert(self.next_key, Arc::new(self.next_key));
                self.next_key += 1;
            }
            sleep_until(t0 + self.tti / 20);
            let ok1 = self.refresh();
            sleep_until(t0 + self.tti / 2);
            let ok2 = self.refresh();
            sleep_until(t0 + self.tti + self.tti / 80);
            if ok1 && ok2 && t0.elapsed() < self.tti + self.tti / 4 {
                return;
            }
            self.redone += 1;
            self.last_refresh = None;
        }
    }

    /// One reaper tick: `run_pending_tasks()`. Returns how many entries it expired.
    #[inline]
    pub fn reap(&self) -> u64 {
        let before = self.victims.expired();
        self.cache.run_pending_tasks();
        self.victims.expired() - before
    }

    /// Entries in the cache.
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Expirations the listener has counted.
    pub fn expired(&self) -> u64 {
        self.victims.expired()
    }

    /// Time `iters` reap ticks, each after an unmeasured [`MokaReap::prepare`] (with `k
    /// == 0`, one block). Returns the time and how many entries the ticks expired.
    pub fn time_reaps(&mut self, iters: u64) -> (Duration, u64) {
        if self.k == 0 {
            let start = Instant::now();
            let mut expired = 0;
            for _ in 0..iters {
                expired += self.reap();
            }
            return (start.elapsed(), expired);
        }
        let mut total = Duration::ZERO;
        let mut expired = 0;
        for _ in 0..iters {
            self.prepare();
            let start = Instant::now();
            expired += self.reap();
            total += start.elapsed();
        }
        (total, expired)
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// The eviction fixture: a full cache of `n` (one-hour time-to-idle); each operation
/// inserts a new key.
pub struct MokaEvict {
    cache: Cache<u64, Arc<u64>>,
    victims: Arc<Victims>,
    next_key: u64,
}

impl std::fmt::Debug for MokaEvict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaEvict")
            .field("next_key", &self.next_key)
            .finish()
    }
}

impl MokaEvict {
    /// A cache filled to its capacity `n`.
    pub fn new(n: usize) -> Self {
        let victims = Arc::new(Victims::default());
        let cache = build(n, Duration::from_secs(3600), victims.clone());
        for i in 0..n as u64 {
            cache.insert(i, Arc::new(i));
        }
        cache.run_pending_tasks();
        MokaEvict {
            cache,
            victims,
            next_key: n as u64,
        }
    }

    /// Insert one new key (the eviction it causes may be carried out later, by moka's
    /// own maintenance or by [`MokaEvict::settle`]).
    #[inline]
    pub fn insert_one(&mut self) {
        self.cache.insert(self.next_key, Arc::new(self.next_key));
        self.next_key += 1;
    }

    /// `run_pending_tasks()`: carry out pending evictions.
    pub fn settle(&self) {
        self.cache.run_pending_tasks();
    }

    /// Evictions the listener has counted.
    pub fn evicted(&self) -> u64 {
        self.victims.size()
    }

    /// Entries in the cache.
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The cache (for tests).
    pub fn cache(&self) -> &Cache<u64, Arc<u64>> {
        &self.cache
    }

    /// Time `iters` inserts at capacity followed by one `run_pending_tasks()`.
    pub fn time_evictions(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.insert_one();
        }
        self.settle();
        start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reap_expires_exactly_k_and_counts_them() {
        // A generous time-to-idle: the preparation only needs the process not to stall
        // for a quarter of it between its last check and the tick, and it redoes itself
        // (counted) when it detects a stall before that.
        let mut f = MokaReap::new(300, 5, Duration::from_secs(1));
        let (_, expired) = f.time_reaps(2);
        assert_eq!(expired, 10);
        assert_eq!(f.expired(), 10);
        f.cache.run_pending_tasks();
        assert_eq!(f.entry_count(), 295);
    }

    #[test]
    fn reap_with_k_zero_expires_nothing() {
        let mut f = MokaReap::new(100, 0, REAP_TTI);
        let (_, expired) = f.time_reaps(100);
        assert_eq!(expired, 0);
        assert_eq!(f.entry_count(), 100);
    }

    #[test]
    fn eviction_listener_counts_one_victim_per_insert_at_capacity() {
        let mut f = MokaEvict::new(64);
        f.time_evictions(500);
        assert_eq!(f.evicted(), 500);
        assert_eq!(f.entry_count(), 64);
        // LRU: the oldest keys went first, the newest are all there.
        for k in 500..564u64 {
            assert!(f.cache().contains_key(&k), "{k}");
        }
        assert!(!f.cache().contains_key(&0));
    }

    #[test]
    fn touch_is_a_hit() {
        let t = MokaTouch::new(10);
        t.touch(3);
        assert_eq!(t.cache().get(&3).as_deref(), Some(&3));
    }
}
