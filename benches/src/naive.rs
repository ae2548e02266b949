//! The naive baseline: the design first proposed for the leaking server.
//!
//! A `Mutex<HashMap<u64, Arc<NaiveInstance>>>` (std `HashMap`, default SipHash hasher),
//! each instance carrying its own last-activity timestamp as an `AtomicU64` of
//! milliseconds (the generous choice: a `Mutex<Instant>` per instance would make the
//! touch and the scans slower still). Exact semantics of each operation:
//!
//! - **touch** ([`NaiveTouch`]): through the `Arc<NaiveInstance>` a server holds: read
//!   the clock (`Instant::now()`, converted to milliseconds since the pool's epoch) and
//!   store it with one relaxed store. No coarse clock: reading the system clock per touch
//!   is what the obvious design does.
//! - **reap tick** ([`NaivePool::reap`]): lock the map, scan every entry, remove those
//!   idle for at least the idle timeout (`now - last >= idle`) and return them (the
//!   caller would kill them outside the lock; kill time is not measured). O(n) per tick,
//!   whatever `k`.
//! - **evict** ([`NaivePool::evict_and_insert`]): lock the map, scan every entry for the
//!   smallest timestamp, remove it, insert the new instance. O(n) per eviction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::touch::Touch;
use crate::{gen_stamp, gens_for, ReapFixture, IDLE_MS};

/// One browser instance as the naive design keeps it.
#[derive(Debug)]
pub struct NaiveInstance {
    /// Its id (the map key).
    pub id: u64,
    /// Last activity, in milliseconds since the pool's epoch.
    pub last_active: AtomicU64,
}

impl NaiveInstance {
    /// An instance last active at `stamp_ms`.
    pub fn new(id: u64, stamp_ms: u64) -> Self {
        NaiveInstance {
            id,
            last_active: AtomicU64::new(stamp_ms),
        }
    }

    /// Last activity.
    pub fn last_active(&self) -> u64 {
        self.last_active.load(Ordering::Relaxed)
    }
}

/// The naive pool: a map under one mutex, full scans for reaping and eviction.
#[derive(Debug, Default)]
pub struct NaivePool {
    map: Mutex<HashMap<u64, Arc<NaiveInstance>>>,
    next_id: AtomicU64,
}

impl NaivePool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<NaiveInstance>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Insert a new instance last active at `stamp_ms`; returns it.
    pub fn insert(&self, stamp_ms: u64) -> Arc<NaiveInstance> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inst = Arc::new(NaiveInstance::new(id, stamp_ms));
        self.lock().insert(id, inst.clone());
        inst
    }

    /// Instances held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no instance is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One reap tick at `now_ms`: scan the whole map and remove every instance idle for
    /// at least `idle_ms`; the removed instances are appended to `out`.
    pub fn reap(&self, now_ms: u64, idle_ms: u64, out: &mut Vec<Arc<NaiveInstance>>) {
        self.lock().retain(|_, inst| {
            let expired = now_ms.saturating_sub(inst.last_active()) >= idle_ms;
            if expired {
                out.push(inst.clone());
            }
            !expired
        });
    }

    /// At capacity: scan the whole map for the least recently active instance, remove it,
    /// and insert a new instance stamped `now_ms`. Returns the victim, if there was one.
    pub fn evict_and_insert(&self, now_ms: u64) -> Option<Arc<NaiveInstance>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        let victim_id = map
            .values()
            .min_by_key(|inst| inst.last_active())
            .map(|inst| inst.id);
        let victim = victim_id.and_then(|v| map.remove(&v));
        map.insert(id, Arc::new(NaiveInstance::new(id, now_ms)));
        victim
    }
}

/// The touch fixture: `n` instances in a [`NaivePool`] and the `Arc`s a server holds.
#[derive(Debug)]
pub struct NaiveTouch {
    _pool: NaivePool,
    handles: Vec<Arc<NaiveInstance>>,
    epoch: Instant,
}

impl NaiveTouch {
    /// `n` instances.
    pub fn new(n: usize) -> Self {
        let pool = NaivePool::new();
        let handles = (0..n).map(|_| pool.insert(0)).collect();
        NaiveTouch {
            _pool: pool,
            handles,
            epoch: Instant::now(),
        }
    }

    /// Last activity of instance `i` (for tests).
    pub fn last_active(&self, i: usize) -> u64 {
        self.handles[i].last_active()
    }
}

impl Touch for NaiveTouch {
    fn len(&self) -> usize {
        self.handles.len()
    }

    /// `Instant::now()`, whole milliseconds since the epoch, one relaxed store.
    #[inline]
    fn touch(&self, i: usize) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.handles[i].last_active.store(now, Ordering::Relaxed);
    }
}

/// The reap fixture for the naive pool (see [`ReapFixture`]): tick `g` runs at
/// `gen_stamp(g) + IDLE_MS`, the first instant generation `g` counts as idle.
#[derive(Debug)]
pub struct NaiveReap {
    pool: NaivePool,
    k: usize,
    gens: usize,
    fresh_stamp: u64,
    reaped: Vec<Arc<NaiveInstance>>,
}

impl NaiveReap {
    /// `n` instances, `k` in each of [`gens_for`]`(n, k)` expiring generations.
    pub fn new(n: usize, k: usize) -> Self {
        let gens = gens_for(n, k);
        let pool = NaivePool::new();
        for g in 1..=gens {
            for _ in 0..k {
                pool.insert(gen_stamp(g));
            }
        }
        let fresh_stamp = gen_stamp(gens + 1);
        for _ in 0..n.saturating_sub(k * gens) {
            pool.insert(fresh_stamp);
        }
        NaiveReap {
            pool,
            k,
            gens,
            fresh_stamp,
            reaped: Vec::with_capacity(k * gens),
        }
    }

    /// Instances held.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether no instance is held.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }
}

impl ReapFixture for NaiveReap {
    fn gens(&self) -> usize {
        self.gens
    }

    fn tick(&mut self, g: usize) -> usize {
        let before = self.reaped.len();
        self.pool
            .reap(gen_stamp(g) + IDLE_MS, IDLE_MS, &mut self.reaped);
        self.reaped.len() - before
    }

    fn tick_idle(&mut self) -> usize {
        let before = self.reaped.len();
        // Just before the fresh sessions (and any generation 1) would expire.
        let now = gen_stamp(1) + IDLE_MS - 1;
        debug_assert!(now < self.fresh_stamp + IDLE_MS);
        self.pool.reap(now, IDLE_MS, &mut self.reaped);
        self.reaped.len() - before
    }

    fn restore(&mut self) {
        let _ = self.k;
        for inst in self.reaped.drain(..) {
            self.pool.insert(inst.last_active());
        }
    }
}

/// The eviction fixture: a full [`NaivePool`] of `n`; each operation evicts the least
/// recently active instance and inserts a new one stamped one millisecond later than the
/// previous operation's.
#[derive(Debug)]
pub struct NaiveEvict {
    pool: NaivePool,
    now: u64,
    /// Victims so far.
    pub evicted: u64,
}

impl NaiveEvict {
    /// `n` instances stamped 0.
    pub fn new(n: usize) -> Self {
        let pool = NaivePool::new();
        for _ in 0..n {
            pool.insert(0);
        }
        NaiveEvict {
            pool,
            now: 0,
            evicted: 0,
        }
    }

    /// One acquisition at capacity.
    #[inline]
    pub fn evict_one(&mut self) {
        self.now += 1;
        if self.pool.evict_and_insert(self.now).is_some() {
            self.evicted += 1;
        }
    }

    /// Instances held.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether no instance is held.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }
}

/// Time `iters` evictions.
pub fn time_evictions(f: &mut NaiveEvict, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f.evict_one();
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::Touch;

    #[test]
    fn reap_removes_exactly_the_expired_generation() {
        let mut f = NaiveReap::new(1000, 7);
        let gens = f.gens();
        assert!(gens > 1);
        assert_eq!(f.tick_idle(), 0);
        for g in 1..=gens {
            assert_eq!(f.tick(g), 7, "generation {g}");
        }
        // Everything left is fresh.
        assert_eq!(f.len(), 1000 - 7 * gens);
        assert_eq!(f.tick(gens), 0);
        f.restore();
        assert_eq!(f.len(), 1000);
        assert_eq!(f.tick(1), 7);
    }

    #[test]
    fn evict_removes_the_least_recently_active() {
        let pool = NaivePool::new();
        let a = pool.insert(5);
        let b = pool.insert(3);
        let c = pool.insert(9);
        b.last_active.store(10, Ordering::Relaxed);
        let victim = pool.evict_and_insert(11).unwrap();
        assert_eq!(victim.id, a.id);
        assert_eq!(pool.len(), 3);
        let victim = pool.evict_and_insert(12).unwrap();
        assert_eq!(victim.id, c.id);
    }

    #[test]
    fn evict_fixture_keeps_size_and_counts_victims() {
        let mut f = NaiveEvict::new(50);
        for _ in 0..120 {
            f.evict_one();
        }
        assert_eq!(f.evicted, 120);
        assert_eq!(f.len(), 50);
    }

    #[test]
    fn touch_stamps_the_clock() {
        let t = NaiveTouch::new(4);
        std::thread::sleep(Duration::from_millis(3));
        t.touch(2);
        assert!(t.last_active(2) >= 3);
        assert_eq!(t.last_active(1), 0);
    }
}
