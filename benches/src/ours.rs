//! Fixtures over the real `browserpool` code.
//!
//! - **touch** ([`OursPool`]): [`browserpool::Lease::touch`] on leases handed out by a
//!   real async [`Pool`] (a [`NullLauncher`] and [`NullFs`] as the no-op backend, on a
//!   current-thread tokio runtime). A touch is one relaxed load of the pool's
//!   [`browserpool::CoarseClock`] and one relaxed store into the session's
//!   [`browserpool::Activity`]; no system-clock read.
//! - **reap tick** ([`OursReap`]): one [`Lifecycle::handle_timeout`] plus draining
//!   [`Lifecycle::poll_action`] (one `Reaped` naming every reaped session with its first
//!   kill, or an `Ending` when one session is reaped), reading out the ids of the
//!   reaped sessions and giving the batch back ([`Lifecycle::recycle`], as the pool
//!   does), on a machine tracking `n` live sessions. What the backend then does (kill
//!   the process tree, remove the directory) is not measured; the `Gone`/`DirRemoved`
//!   reports and the relaunch of replacements happen in the unmeasured restore.
//! - **evict** ([`OursEvict`]): at capacity under [`CapacityPolicy::EvictLru`]: `acquire`
//!   (queues the request, chooses the least-recently-active idle victim, begins its
//!   teardown), then the shell's reports as a backend with zero kill time would send them:
//!   `Gone` (frees the slot and launches the new session), `Launched` (answers the
//!   request) and `DirRemoved` (finishes the victim), draining every action in between.
//! - **pool cycle** ([`OursPool::cycle`]): `Pool::acquire`, `Lease::touch`,
//!   `Pool::destroy` awaited to completion, on the same pool that holds the `n` touch
//!   leases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use browserpool::testing::{NullFs, NullLauncher};
use browserpool::{
    AcquireError, Action, CapacityPolicy, ConfigError, Input, Lease, Lifecycle, Pool, PoolConfig,
    PoolError, SessionError, SessionId, Timestamp,
};

use crate::touch::Touch;
use crate::{gen_stamp, gens_for, ReapFixture, GRID_MS, IDLE_MS, TICK_MS};

/// Why a fixture could not be built or driven.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The configuration was refused.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// The pool could not be built.
    #[error("pool: {0}")]
    Pool(#[from] PoolError),
    /// An acquire failed.
    #[error("acquire: {0}")]
    Acquire(#[from] AcquireError),
    /// A session call failed.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// The tokio runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The machine did something the fixture did not expect.
    #[error("unexpected machine behaviour: {0}")]
    Unexpected(String),
}

const INSTANCE: &str = "00000000be9c";

/// The configuration the machine fixtures use: the pool's defaults (30 min idle timeout,
/// 60 s reap interval, 1 s tick, `EvictLru`) with `max_browsers = n` and a root that is
/// never touched (the machine performs no I/O).
pub fn machine_config(n: usize) -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(n.max(1))
        .with_idle_timeout(Some(Duration::from_millis(IDLE_MS)))
        .with_reap_interval(Duration::from_millis(GRID_MS))
        .with_tick(Duration::from_millis(TICK_MS))
        .with_capacity_policy(CapacityPolicy::EvictLru)
        .with_root(std::env::temp_dir().join("browserpool-benches-unused"))
        .with_sweep_on_start(false)
}

/// The machine's idle deadline for a session last active at `stamp_ms`, as the machine
/// itself reports it: a probe machine with one session launched at `stamp_ms` is asked
/// for [`Lifecycle::poll_timeout`]. (The rule, rounding up to the reap-interval grid, is
/// the machine's business; the fixtures do not copy it.)
pub fn machine_deadline(stamp_ms: u64) -> Result<Timestamp, FixtureError> {
    let mut probe = Lifecycle::new(machine_config(1), INSTANCE)?;
    launch_at(&mut probe, Timestamp(stamp_ms))?;
    probe
        .poll_timeout()
        .ok_or_else(|| FixtureError::Unexpected("no idle deadline".into()))
}

/// Acquire one session at `now` on a machine with a free slot and report it launched.
fn launch_at(m: &mut Lifecycle, now: Timestamp) -> Result<SessionId, FixtureError> {
    let ticket = m.acquire(now, None);
    let mut launched = None;
    while let Some(a) = m.poll_action() {
        if let Action::Launch { id, .. } = a {
            launched = Some(id);
        }
    }
    let id = launched.ok_or_else(|| {
        FixtureError::Unexpected(format!("acquire {ticket:?} at {now} launched nothing"))
    })?;
    m.handle(now, Input::Launched { id });
    let mut ok = false;
    while let Some(a) = m.poll_action() {
        if let Action::Reply { result: Ok(r), .. } = a {
            ok = r == id;
        }
    }
    if ok {
        Ok(id)
    } else {
        Err(FixtureError::Unexpected(format!("{id} was not handed out")))
    }
}

/// The reap fixture over the lifecycle machine (see [`ReapFixture`]).
///
/// Generation `g`'s sessions are launched at `gen_stamp(g)`, the fresh ones at
/// `gen_stamp(gens + 1)`; tick `g` runs at [`machine_deadline`]`(gen_stamp(g))`, the
/// first instant at which the machine reaps generation `g`. Nobody touches a session after its
/// launch, so the index keys are exact and a tick does no re-keying: the measured work
/// is the reaping itself. Restoring relaunches a replacement at the old stamp (the
/// machine takes `now` as given; it never reads a clock).
#[derive(Debug)]
pub struct OursReap {
    m: Lifecycle,
    k: usize,
    gens: usize,
    /// `tick_at[g]`: when generation `g` expires (`tick_at[0]`: one millisecond before
    /// generation 1, or with `k == 0` the fresh sessions, would).
    tick_at: Vec<Timestamp>,
    reaped: Vec<(usize, SessionId)>,
}

impl OursReap {
    /// A machine with `n` live sessions, `k` in each of [`gens_for`]`(n, k)` expiring
    /// generations.
    pub fn new(n: usize, k: usize) -> Result<Self, FixtureError> {
        let gens = gens_for(n, k);
        let mut m = Lifecycle::new(machine_config(n), INSTANCE)?;
        for g in 1..=gens {
            for _ in 0..k {
                launch_at(&mut m, Timestamp(gen_stamp(g)))?;
            }
        }
        let fresh = Timestamp(gen_stamp(gens + 1));
        for _ in 0..n.saturating_sub(k * gens) {
            launch_at(&mut m, fresh)?;
        }
        let mut tick_at = Vec::with_capacity(gens + 2);
        for g in 1..=gens + 1 {
            tick_at.push(machine_deadline(gen_stamp(g))?);
        }
        // tick_at[g - 1] is generation g's deadline; fresh sessions expire at tick_at[gens].
        if tick_at.windows(2).any(|w| w[0] >= w[1]) {
            return Err(FixtureError::Unexpected(format!(
                "generations do not expire one after another: {tick_at:?}"
            )));
        }
        let idle = Timestamp(tick_at[0].0 - 1);
        tick_at.insert(0, idle);
        let first = if k > 0 { tick_at[1] } else { tick_at[gens + 1] };
        if m.poll_timeout() != Some(first) {
            return Err(FixtureError::Unexpected(format!(
                "poll_timeout {:?}, expected {first:?}",
                m.poll_timeout()
            )));
        }
        Ok(OursReap {
            m,
            k,
            gens,
            tick_at,
            reaped: Vec::with_capacity(k * gens),
        })
    }

    /// Live sessions.
    pub fn live(&self) -> usize {
        self.m.live_ids().len()
    }

    /// The machine (for tests).
    pub fn machine(&self) -> &Lifecycle {
        &self.m
    }
}

impl ReapFixture for OursReap {
    fn gens(&self) -> usize {
        self.gens
    }

    #[inline]
    fn tick(&mut self, g: usize) -> usize {
        let before = self.reaped.len();
        self.m.handle_timeout(self.tick_at[g]);
        while let Some(a) = self.m.poll_action() {
            match a {
                Action::Ending { id, .. } => self.reaped.push((g, id)),
                Action::Reaped { sessions, .. } => {
                    self.reaped.extend(sessions.iter().map(|&(id, _)| (g, id)));
                    self.m.recycle(sessions);
                }
                _ => {}
            }
        }
        self.reaped.len() - before
    }

    #[inline]
    fn tick_idle(&mut self) -> usize {
        // One millisecond before generation 1 (or, with k = 0, the fresh sessions) expire.
        self.m.handle_timeout(self.tick_at[0]);
        let mut reaped = 0;
        while let Some(a) = self.m.poll_action() {
            reaped += a.endings().count();
        }
        reaped
    }

    fn restore(&mut self) {
        let _ = self.k;
        let reaped = std::mem::take(&mut self.reaped);
        for &(g, id) in &reaped {
            let now = self.tick_at[g];
            self.m.handle(now, Input::Gone { id });
            self.m.handle(now, Input::DirRemoved { id });
            while self.m.poll_action().is_some() {}
        }
        for &(g, _) in &reaped {
            // The machine has a free slot for each reaped session, so this cannot fail
            // unless the machine changed behaviour; a bench must not go on silently then.
            if let Err(e) = launch_at(&mut self.m, Timestamp(gen_stamp(g))) {
                panic!("restore failed: {e}");
            }
        }
        self.reaped = reaped;
        self.reaped.clear();
    }
}

/// The eviction fixture: a machine at capacity (`max_browsers = n`, `EvictLru`), all
/// sessions idle; each operation admits one new session by evicting the least recently
/// active one. Operation `i` runs at time `i` ms, so the new session is always the most
/// recent and the victim always the oldest.
#[derive(Debug)]
pub struct OursEvict {
    m: Lifecycle,
    now: u64,
    /// Victims so far.
    pub evicted: u64,
    /// The last victim.
    pub last_victim: Option<SessionId>,
}

impl OursEvict {
    /// A full machine of `n` sessions launched at time 0.
    pub fn new(n: usize) -> Result<Self, FixtureError> {
        let mut m = Lifecycle::new(machine_config(n), INSTANCE)?;
        for _ in 0..n {
            launch_at(&mut m, Timestamp::ZERO)?;
        }
        Ok(OursEvict {
            m,
            now: 0,
            evicted: 0,
            last_victim: None,
        })
    }

    /// One acquisition at capacity, carried through to the new session being handed out
    /// and the victim being finished. Returns the victim.
    #[inline]
    pub fn evict_one(&mut self) -> Option<SessionId> {
        self.now += 1;
        let now = Timestamp(self.now);
        self.m.acquire(now, None);
        let mut victim = None;
        while let Some(a) = self.m.poll_action() {
            if let Action::Ending { id, .. } = a {
                victim = Some(id);
            }
        }
        let victim = victim?;
        self.m.handle(now, Input::Gone { id: victim });
        let mut launched = None;
        while let Some(a) = self.m.poll_action() {
            if let Action::Launch { id, .. } = a {
                launched = Some(id);
            }
        }
        if let Some(id) = launched {
            self.m.handle(now, Input::Launched { id });
        }
        self.m.handle(now, Input::DirRemoved { id: victim });
        while self.m.poll_action().is_some() {}
        self.evicted += 1;
        self.last_victim = Some(victim);
        launched.map(|_| victim)
    }

    /// The machine (for tests).
    pub fn machine(&self) -> &Lifecycle {
        &self.m
    }
}

/// Time `iters` evictions.
pub fn time_evictions(f: &mut OursEvict, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f.evict_one());
    }
    start.elapsed()
}

/// A real [`Pool`] over [`NullLauncher`] and [`NullFs`] on a current-thread runtime,
/// holding `n` live sessions and a [`Lease`] on each.
pub struct OursPool {
    leases: Vec<Lease<NullLauncher>>,
    pool: Pool<NullLauncher>,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for OursPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OursPool")
            .field("leases", &self.leases.len())
            .finish()
    }
}

impl OursPool {
    /// A pool with room for `n + 1` sessions and `n` of them acquired.
    pub fn new(n: usize) -> Result<Self, FixtureError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let config = machine_config(n).with_max_browsers(n + 1);
        let pool = rt.block_on(
            Pool::builder(config, NullLauncher)
                .filesystem(Arc::new(NullFs))
                .instance(INSTANCE)
                .build(),
        )?;
        let leases = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(pool.acquire().await?);
            }
            Ok::<_, AcquireError>(v)
        })?;
        Ok(OursPool { leases, pool, rt })
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<NullLauncher> {
        &self.pool
    }

    /// The leases held.
    pub fn leases(&self) -> &[Lease<NullLauncher>] {
        &self.leases
    }

    /// One acquire, touch, destroy cycle, awaited to completion.
    pub fn cycle(&self) -> Result<SessionId, FixtureError> {
        self.rt.block_on(async {
            let lease = self.pool.acquire().await?;
            lease.touch();
            let id = lease.id();
            self.pool.destroy(id).await?;
            Ok(id)
        })
    }

    /// Time `iters` cycles.
    pub fn time_cycles(&self, iters: u64) -> Result<Duration, FixtureError> {
        self.rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                let lease = self.pool.acquire().await?;
                lease.touch();
                self.pool.destroy(lease.id()).await?;
            }
            Ok(start.elapsed())
        })
    }
}

impl Touch for OursPool {
    fn len(&self) -> usize {
        self.leases.len()
    }

    /// [`Lease::touch`]: coarse-clock load, relaxed store.
    #[inline]
    fn touch(&self, i: usize) {
        self.leases[i].touch();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reap_fixture_reaps_exactly_k_per_generation_and_restores() {
        let mut f = OursReap::new(2000, 9).unwrap();
        let gens = f.gens();
        assert!(gens > 1);
        assert_eq!(f.tick_idle(), 0);
        for g in 1..=gens {
            assert_eq!(f.tick(g), 9, "generation {g}");
            f.machine().check_invariants().unwrap();
        }
        assert_eq!(f.live(), 2000 - 9 * gens);
        assert_eq!(f.machine().totals().reaped, (9 * gens) as u64);
        f.restore();
        assert_eq!(f.live(), 2000);
        f.machine().check_invariants().unwrap();
        // And the next round behaves the same.
        assert_eq!(f.tick(1), 9);
        assert_eq!(f.tick(2), 9);
        f.restore();
        assert_eq!(f.live(), 2000);
    }

    #[test]
    fn reap_fixture_with_k_zero_reaps_nothing() {
        let mut f = OursReap::new(100, 0).unwrap();
        for _ in 0..10 {
            assert_eq!(f.tick_idle(), 0);
        }
        assert_eq!(f.live(), 100);
    }

    #[test]
    fn time_reaps_checks_counts() {
        let mut f = OursReap::new(100, 100).unwrap();
        assert_eq!(f.gens(), 1);
        crate::time_reaps(&mut f, 100, 3);
        assert_eq!(f.live(), 100);
        assert_eq!(f.machine().totals().reaped, 300);
    }

    #[test]
    fn evict_chooses_the_least_recently_active() {
        let mut f = OursEvict::new(50).unwrap();
        let first = f.machine().live_ids()[0];
        assert_eq!(f.evict_one(), Some(first));
        for _ in 0..200 {
            assert!(f.evict_one().is_some());
        }
        assert_eq!(f.evicted, 201);
        assert_eq!(f.machine().occupied(), 50);
        assert_eq!(f.machine().totals().evicted, 201);
        f.machine().check_invariants().unwrap();
    }

    #[test]
    fn evict_respects_touches() {
        let mut f = OursEvict::new(3).unwrap();
        let ids = f.machine().live_ids();
        // Touch the oldest after everything else: the next-oldest becomes the victim.
        f.machine()
            .activity(ids[0])
            .unwrap()
            .touch(Timestamp(1_000));
        assert_eq!(f.evict_one(), Some(ids[1]));
    }

    #[test]
    fn pool_touch_and_cycle() {
        let p = OursPool::new(10).unwrap();
        assert_eq!(p.len(), 10);
        p.touch(3);
        let before = p.pool().stats().totals.destroyed;
        p.cycle().unwrap();
        p.time_cycles(3).unwrap();
        assert_eq!(p.pool().stats().totals.destroyed, before + 4);
        assert_eq!(p.pool().stats().live, 10);
    }
}
