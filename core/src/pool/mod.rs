//! The async [`Pool`]: a thin shell that feeds the [`Lifecycle`] machine and carries out
//! its actions through the backend traits.
//!
//! - `exec`: the one executor of the machine's actions (bookkeeping, supervised I/O
//!   tasks, the synchronous teardown of `Drop`);
//! - `reaper`: the reaper task and its restarts;
//! - `sampler`: memory measurement and the sampler task (with a memory limit set);
//! - `supervise`: turning panics into failures the machine understands;
//! - `startup`: instance ids and the startup sweep.

mod exec;
mod reaper;
mod sampler;
mod startup;
pub(crate) mod supervise;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::{oneshot, Notify};

use crate::backend::{Filesystem, MarkerLock, ProcessLauncher};
use crate::config::PoolConfig;
use crate::error::{AcquireError, PoolError, SessionError};
use crate::fs::OsFilesystem;
use crate::lease::Lease;
use crate::machine::{Action, Input, Lifecycle, Ticket};
use crate::session::{OwnerKey, SessionId};
use crate::stats::{PoolMemory, PoolStats};
use crate::sweep::{self, SweepReport};
use crate::time::{Clock, CoarseClock, TokioClock};

pub(crate) use exec::Inner;
use exec::{Reply, Shared};

/// A pool of browser sessions that stays bounded whatever its clients do.
///
/// - **Idle reaping**: a session with no activity for `idle_timeout` is torn down by the
///   pool's single reaper task.
/// - **Capacity**: at `max_browsers` live process trees the
///   [`CapacityPolicy`](crate::CapacityPolicy) applies (LRU eviction by default).
/// - **Drop safety net**: dropping the pool without [`Pool::shutdown`] kills every
///   browser it started and removes every directory it made, synchronously, in any
///   context (see [`run_blocking_cleanup`](crate::run_blocking_cleanup)),
///   through the same teardown path as a shutdown.
/// - **Startup sweep**: construction first removes what a crashed predecessor left under
///   `root` with `prefix` (see [`crate::sweep`]), and [`Pool::sweep_report`] says what.
/// - **Supervision**: a backend call or pool task that panics is counted
///   ([`PoolStats::panics`]) and treated as that step failing, so the session still goes
///   through its teardown and the pool stays usable; a reaper that panics is restarted.
///
/// Every teardown, whatever its reason, goes the same way: kill the tree (escalating),
/// wait until it is gone, remove the directory (retrying with backoff, never forgotten),
/// free the slot, emit one `info` event with the reason.
///
/// The pool is `Send + Sync`; share it with `Arc<Pool<L>>`. Its methods may be called
/// from any thread: the pool spawns its tasks on the runtime it was built in.
pub struct Pool<L: ProcessLauncher> {
    inner: Arc<Inner<L>>,
    reaper: tokio::task::JoinHandle<()>,
    sampler: Option<tokio::task::JoinHandle<()>>,
    marker: Option<MarkerLock>,
    sweep: SweepReport,
}

/// Builds a [`Pool`] with non-default clock, filesystem, instance id or action observer.
pub struct PoolBuilder<L: ProcessLauncher> {
    config: PoolConfig,
    launcher: L,
    fs: Arc<dyn Filesystem>,
    clock: Arc<dyn Clock>,
    instance: Option<String>,
    observer: Option<exec::Observer>,
}

impl<L: ProcessLauncher> PoolBuilder<L> {
    /// Use this filesystem instead of [`OsFilesystem`].
    pub fn filesystem(mut self, fs: Arc<dyn Filesystem>) -> Self {
        self.fs = fs;
        self
    }

    /// Use this clock instead of [`TokioClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Use this instance id (12 lowercase hex digits; see [`sweep::instance_from`])
    /// instead of one derived from the process id and the time. For simulations.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Call `observe` with every [`Action`] the pool's machine emits, in order, before
    /// the pool carries it out: an audit log of every launch, teardown reason, kill
    /// attempt, removal and reply. It is called under the pool's lock, so it must be quick
    /// and must not call back into the pool (that would deadlock).
    pub fn observe(mut self, observe: impl Fn(&Action) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observe));
        self
    }

    /// Validate the config, take the ownership marker, run the startup sweep (unless
    /// disabled) and start the reaper. Must be called inside a tokio runtime: the pool
    /// keeps a handle on it and spawns all its tasks there.
    pub async fn build(self) -> Result<Pool<L>, PoolError> {
        let instance = self.instance.unwrap_or_else(startup::fresh_instance);
        let mut machine = Lifecycle::new(self.config.clone(), &instance)?;
        let config = self.config;
        let marker_path = config
            .root
            .join(sweep::marker_name(&config.prefix, &instance));
        let marker = self
            .fs
            .lock_marker(&marker_path)
            .await
            .map_err(PoolError::Marker)?;
        let launcher = Arc::new(self.launcher);
        let sweep = if config.sweep_on_start {
            sweep::startup_sweep(&config, &instance, &*launcher, &*self.fs).await?
        } else {
            SweepReport::default()
        };
        let now = self.clock.now();
        let handle = tokio::runtime::Handle::current();
        let coarse = Arc::new(CoarseClock::with_source(now, self.clock.clone()));
        machine.stamp_with(coarse.clone());
        let inner = Arc::new(Inner {
            coarse,
            config,
            instance,
            launcher,
            fs: self.fs,
            clock: self.clock,
            handle: handle.clone(),
            observer: self.observer,
            shared: Mutex::new(Shared {
                machine,
                slots: FxHashMap::default(),
                replies: FxHashMap::default(),
                finished: FxHashMap::default(),
            }),
            wake: Notify::new(),
            changes: AtomicU64::new(0),
            release_until: AtomicU64::new(0),
            progress: Notify::new(),
            closed: AtomicBool::new(false),
            recovered: Arc::new(AtomicU64::new(0)),
            swept: AtomicU64::new(sweep.removed.len() as u64),
            swept_processes: AtomicU64::new(sweep.killed.len() as u64),
            supervision: supervise::Supervision::default(),
        });
        let reaper = handle.spawn(reaper::supervise(Arc::downgrade(&inner)));
        let sampler = sampler::wanted(&inner.config)
            .then(|| handle.spawn(sampler::supervise(Arc::downgrade(&inner))));
        Ok(Pool {
            inner,
            reaper,
            sampler,
            marker: Some(marker),
            sweep,
        })
    }
}

/// Cancels a request whose future was dropped, and destroys a session that was admitted
/// for it but never handed out. May be dropped on any thread.
struct AcquireGuard<L: ProcessLauncher> {
    inner: Arc<Inner<L>>,
    ticket: Ticket,
    rx: Option<oneshot::Receiver<Reply>>,
}

impl<L: ProcessLauncher> Drop for AcquireGuard<L> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let now = self.inner.clock.now();
        let mut st = self.inner.lock();
        st.replies.remove(&self.ticket);
        match rx.try_recv() {
            Ok(Ok(id)) => {
                let _ = st.machine.destroy(now, id);
            }
            Ok(Err(_)) => {}
            Err(_) => st.machine.handle(
                now,
                Input::Cancel {
                    ticket: self.ticket,
                },
            ),
        }
        self.inner.dispatch(st);
    }
}

impl<L: ProcessLauncher> Pool<L> {
    /// A pool on the host filesystem and tokio's clock. See [`Pool::builder`].
    pub async fn new(config: PoolConfig, launcher: L) -> Result<Self, PoolError> {
        Self::builder(config, launcher).build().await
    }

    /// A builder, for a custom [`Clock`], [`Filesystem`], instance id or observer.
    pub fn builder(config: PoolConfig, launcher: L) -> PoolBuilder<L> {
        PoolBuilder {
            config,
            launcher,
            fs: Arc::new(OsFilesystem::new()),
            clock: Arc::new(TokioClock::new()),
            instance: None,
            observer: None,
        }
    }

    /// Whether the reaper task is still running. It stops when the pool is dropped, once
    /// a shut-down pool has nothing left to retry, or when the pool gave up restarting it
    /// (see [`PoolStats::unhealthy`]).
    pub fn reaper_running(&self) -> bool {
        !self.reaper.is_finished()
    }

    /// What the startup sweep did.
    pub fn sweep_report(&self) -> &SweepReport {
        &self.sweep
    }

    /// This pool's instance id (the `I` in `<prefix>I-<n>`).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The configuration in force.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The launcher this pool drives.
    pub fn launcher(&self) -> &L {
        &self.inner.launcher
    }

    /// The directory of session `id` (whether or not it exists).
    pub fn session_dir(&self, id: SessionId) -> PathBuf {
        let c = &self.inner.config;
        c.root
            .join(sweep::session_dir_name(&c.prefix, &self.inner.instance, id))
    }

    /// Get a new session, applying the capacity policy. Cancel-safe: if the future is
    /// dropped, the request is withdrawn and a session launched for it is destroyed.
    /// Fails with [`AcquireError::Unhealthy`] once the pool has given up on its reaper.
    pub async fn acquire(&self) -> Result<Lease<L>, AcquireError> {
        self.acquire_inner(None).await
    }

    /// Get a new session belonging to `owner` (see [`Pool::release_owner`]).
    pub async fn acquire_for(&self, owner: OwnerKey) -> Result<Lease<L>, AcquireError> {
        self.acquire_inner(Some(owner)).await
    }

    async fn acquire_inner(&self, owner: Option<OwnerKey>) -> Result<Lease<L>, AcquireError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(AcquireError::ShuttingDown);
        }
        if let Some(reason) = self.inner.supervision.unhealthy() {
            return Err(AcquireError::Unhealthy { reason });
        }
        let (tx, rx) = oneshot::channel();
        let now = self.inner.now();
        let mut guard = {
            let mut st = self.inner.lock();
            let ticket = st.machine.acquire(now, owner);
            st.replies.insert(ticket, tx);
            self.inner.dispatch(st);
            AcquireGuard {
                inner: self.inner.clone(),
                ticket,
                rx: Some(rx),
            }
        };
        let result = match guard.rx.as_mut() {
            Some(rx) => rx.await.unwrap_or(Err(AcquireError::ShuttingDown)),
            None => Err(AcquireError::ShuttingDown),
        };
        guard.rx = None;
        let id = result?;
        self.session(id).map_err(|e| match e {
            SessionError::Ended { id, reason } => AcquireError::EndedBeforeHandout { id, reason },
            other => {
                // The session is live but no lease on it will ever exist: tear it down
                // now rather than leave it to a reaper that may be gone.
                let now = self.inner.now();
                let mut st = self.inner.lock();
                let _ = st.machine.destroy(now, id);
                self.inner.dispatch(st);
                match other {
                    SessionError::PoolUnhealthy { reason, .. } => {
                        AcquireError::Unhealthy { reason }
                    }
                    _ => AcquireError::ShuttingDown,
                }
            }
        })
    }

    /// A handle on a live session, or why it ended. Fails with
    /// [`SessionError::PoolUnhealthy`] once the pool has given up on its reaper.
    pub fn session(&self, id: SessionId) -> Result<Lease<L>, SessionError> {
        if let Some(reason) = self.inner.supervision.unhealthy() {
            return Err(SessionError::PoolUnhealthy { id, reason });
        }
        let st = self.inner.lock();
        let activity = st.machine.activity(id)?.clone();
        let process = st
            .slots
            .get(&id)
            .and_then(|s| s.process.clone())
            .ok_or(SessionError::Unknown { id })?;
        Ok(Lease::new(
            id,
            activity,
            process,
            Arc::downgrade(&self.inner),
        ))
    }

    /// Destroy a session and wait until its processes are gone and its directory removed
    /// (or handed to background retries). Errors say why if it had already ended.
    ///
    /// Waits at most [`PoolConfig::kill_budget`]: if the process tree has not died by
    /// then, it returns [`SessionError::TeardownPending`] naming the session, and the pool
    /// keeps killing it in the background (it counts against `max_browsers` until it is
    /// gone).
    pub async fn destroy(&self, id: SessionId) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        let deadline = {
            let now = self.inner.now();
            let mut st = self.inner.lock();
            st.machine.destroy(now, id)?;
            st.finished.entry(id).or_default().push(tx);
            self.inner.dispatch(st);
            now.saturating_add(self.inner.config.kill_budget())
        };
        tokio::select! {
            biased;
            _ = rx => Ok(()),
            _ = self.inner.clock.sleep_until(deadline) => {
                tracing::warn!(session = %id, "destroy: the process tree is still alive after the kill budget; teardown continues in the background");
                Err(SessionError::TeardownPending {
                    id,
                    waited: self.inner.config.kill_budget(),
                })
            }
        }
    }

    /// The client behind `owner` went away: its sessions are destroyed after `grace`
    /// unless used again meanwhile. Returns how many sessions were put on notice.
    /// Callable from any thread, with or without a runtime.
    pub fn release_owner(&self, owner: &OwnerKey, grace: Duration) -> usize {
        let now = self.inner.now();
        self.inner
            .release_until
            .fetch_max(now.saturating_add(grace).0, Ordering::AcqRel);
        let mut st = self.inner.lock();
        let n = st.machine.release_owner(now, owner, grace);
        self.inner.dispatch(st);
        n
    }

    /// The owner of session `id` is back (a client reattached): cancel a pending
    /// [`release_owner`](Self::release_owner) of this session. Returns whether one was
    /// pending. Prefer this to relying on a stamp: activity stamped in the same clock tick
    /// as the release does not count as use after it.
    pub fn reclaim(&self, id: SessionId) -> bool {
        self.inner.lock().machine.reclaim(id)
    }

    /// A snapshot of gauges and totals.
    pub fn stats(&self) -> PoolStats {
        let m = self.inner.lock().machine.stats();
        let sup = &self.inner.supervision;
        PoolStats {
            launching: m.launching,
            live: m.live,
            busy: m.busy,
            stopping: m.stopping,
            removing: m.removing,
            waiting: m.waiting,
            spares_ready: m.spares_ready,
            spares_launching: m.spares_launching,
            memory_used: m.memory_used,
            memory_projected: m.memory_projected,
            memory_budget: m.memory_budget,
            totals: m.totals,
            drop_recovered: self.inner.recovered.load(Ordering::Relaxed),
            swept: self.inner.swept.load(Ordering::Relaxed),
            swept_processes: self.inner.swept_processes.load(Ordering::Relaxed),
            panics: sup.panics.load(Ordering::Relaxed),
            reaper_restarts: sup.reaper_restarts.load(Ordering::Relaxed),
            unhealthy: sup.unhealthy(),
        }
    }

    /// Memory of every live session's process tree, as the backend measures it (one
    /// [`ProcessLauncher::memory_of_all`] call for all sessions, without holding the
    /// pool's lock), in session id order. If that call panics, the sessions are measured
    /// again one [`ProcessLauncher::memory`] call each, all at once; a session whose own
    /// measurement panics is left out and torn down (as crashed): the pool can no longer
    /// account for it. With `memory_budget` or `max_session_memory` set, the pool also measures by
    /// itself every `memory_interval` and acts on the figures (see
    /// [`PoolConfig::memory_budget`]).
    pub async fn memory(&self) -> PoolMemory {
        let mut out = PoolMemory::default();
        for (id, m) in self.inner.measure(None).await {
            out.total.rss_bytes += m.rss_bytes;
            out.total.pss_bytes += m.pss_bytes;
            out.total.processes += m.processes;
            out.sessions.push((id, m));
        }
        out
    }

    /// Refuse new requests, tear down every session and wait until each teardown has
    /// finished. Waits at most long enough for launches in flight and for every kill
    /// attempt; what is still unfinished then is reported (and left to the Drop safety
    /// net).
    pub async fn shutdown(&self) -> ShutdownReport {
        let before = {
            let now = self.inner.now();
            let mut st = self.inner.lock();
            let before = st.machine.totals().shutdown;
            st.machine.shutdown(now);
            self.inner.dispatch(st);
            before
        };
        let deadline = self
            .inner
            .clock
            .now()
            .saturating_add(self.inner.config.shutdown_budget());
        loop {
            let progressed = self.inner.progress.notified();
            {
                let st = self.inner.lock();
                if st.machine.all_finished() || self.inner.clock.now() >= deadline {
                    break;
                }
            }
            tokio::select! {
                biased;
                _ = progressed => {}
                _ = self.inner.clock.sleep_until(deadline) => {}
            }
        }
        let st = self.inner.lock();
        let mut report = ShutdownReport {
            torn_down: st.machine.totals().shutdown - before,
            ..ShutdownReport::default()
        };
        for id in st.machine.tracked_ids() {
            match st.machine.phase(id) {
                Some(crate::machine::Phase::Removing) => report.dirs_left.push(id),
                Some(_) => report.unfinished.push(id),
                None => {}
            }
        }
        report
    }
}

/// What [`Pool::shutdown`] left behind, if anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Sessions torn down by the shutdown.
    pub torn_down: u64,
    /// Sessions whose teardown had not finished when shutdown gave up waiting (stuck
    /// kills); the Drop safety net handles them when the pool is dropped.
    pub unfinished: Vec<SessionId>,
    /// Session directories that could not be removed; the next start's sweep retries.
    pub dirs_left: Vec<SessionId>,
}

impl<L: ProcessLauncher> Drop for Pool<L> {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.reaper.abort();
        if let Some(sampler) = &self.sampler {
            sampler.abort();
        }
        self.inner.teardown_on_drop();
        // Only now, with our directories gone, stop marking this instance as live: remove
        // the marker file while still holding its lock, then release the lock.
        let c = &self.inner.config;
        let marker = c
            .root
            .join(sweep::marker_name(&c.prefix, &self.inner.instance));
        let fs = &self.inner.fs;
        crate::dropnet::run_blocking_cleanup(|| {
            match supervise::sync(|| fs.remove_dir_all_sync(&marker)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(marker = %marker.display(), error = %e, "could not remove pool marker")
                }
                Err(msg) => self.inner.note_panic("remove_dir_all_sync", None, &msg),
            }
        });
        self.marker.take();
    }
}

impl<L: ProcessLauncher> Pool<L> {
    /// Every session the pool tracks (any phase), in id order: owner, phase, operations
    /// in flight, idle time, uses, age. Reading it stamps nothing. O(n log n) under the
    /// pool's lock; meant for status pages and APIs, not per-request hot paths.
    pub fn sessions(&self) -> Vec<crate::machine::SessionInfo> {
        let now = self.inner.now();
        self.inner.lock().machine.snapshot(now)
    }
}
