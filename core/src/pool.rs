//! The async [`Pool`]: a thin shell that feeds the [`Lifecycle`] machine and carries out
//! its actions through the backend traits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::{oneshot, Notify};

use crate::backend::{Filesystem, KillStage, LaunchSpec, MarkerLock, ProcessLauncher};
use crate::config::PoolConfig;
use crate::dropnet::DropNet;
use crate::error::{AcquireError, BackendError, BackendErrorKind, PoolError, SessionError};
use crate::fs::OsFilesystem;
use crate::lease::Lease;
use crate::machine::{Action, Input, Lifecycle, Ticket};
use crate::session::{OwnerKey, SessionId};
use crate::stats::{PoolMemory, PoolStats};
use crate::sweep::{self, SweepReport};
use crate::time::{Clock, CoarseClock, Timestamp, TokioClock};

type Reply = Result<SessionId, AcquireError>;

struct Slot<L: ProcessLauncher> {
    process: Option<Arc<L::Process>>,
    net: DropNet<L>,
    watcher: Option<tokio::task::AbortHandle>,
}

struct Shared<L: ProcessLauncher> {
    machine: Lifecycle,
    slots: FxHashMap<SessionId, Slot<L>>,
    replies: FxHashMap<Ticket, oneshot::Sender<Reply>>,
    finished: FxHashMap<SessionId, Vec<oneshot::Sender<()>>>,
}

pub(crate) struct Inner<L: ProcessLauncher> {
    config: PoolConfig,
    instance: String,
    launcher: Arc<L>,
    fs: Arc<dyn Filesystem>,
    clock: Arc<dyn Clock>,
    coarse: Arc<CoarseClock>,
    shared: Mutex<Shared<L>>,
    wake: Notify,
    progress: Notify,
    closed: AtomicBool,
    recovered: Arc<AtomicU64>,
    swept: AtomicU64,
    swept_processes: AtomicU64,
    hints: Mutex<Vec<SessionId>>,
}

/// A pool of browser sessions that stays bounded whatever its clients do.
///
/// - **Idle reaping**: a session with no activity for `idle_timeout` is torn down by the
///   pool's single reaper task.
/// - **Capacity**: at `max_browsers` live process trees the
///   [`CapacityPolicy`](crate::CapacityPolicy) applies (LRU eviction by default).
/// - **Drop safety net**: dropping the pool without [`Pool::shutdown`] kills every
///   browser it started and removes every directory it made, synchronously, in any
///   context (see [`run_blocking_cleanup`](crate::dropnet::run_blocking_cleanup)).
/// - **Startup sweep**: construction first removes what a crashed predecessor left under
///   `root` with `prefix` (see [`crate::sweep`]), and [`Pool::sweep_report`] says what.
///
/// Every teardown, whatever its reason, goes the same way: kill the tree (escalating),
/// wait until it is gone, remove the directory (retrying with backoff, never forgotten),
/// free the slot, emit one `info` event with the reason.
///
/// The pool is `Send + Sync`; share it with `Arc<Pool<L>>`.
pub struct Pool<L: ProcessLauncher> {
    inner: Arc<Inner<L>>,
    reaper: tokio::task::JoinHandle<()>,
    marker: Option<MarkerLock>,
    sweep: SweepReport,
}

/// Builds a [`Pool`] with non-default clock, filesystem or instance id.
pub struct PoolBuilder<L: ProcessLauncher> {
    config: PoolConfig,
    launcher: L,
    fs: Arc<dyn Filesystem>,
    clock: Arc<dyn Clock>,
    instance: Option<String>,
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

    /// Validate the config, take the ownership marker, run the startup sweep (unless
    /// disabled) and start the reaper. Must be called inside a tokio runtime.
    pub async fn build(self) -> Result<Pool<L>, PoolError> {
        let instance = self.instance.unwrap_or_else(fresh_instance);
        let machine = Lifecycle::new(self.config.clone(), &instance)?;
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
            startup_sweep(&config, &instance, &*launcher, &*self.fs).await?
        } else {
            SweepReport::default()
        };
        let now = self.clock.now();
        let inner = Arc::new(Inner {
            coarse: Arc::new(CoarseClock::new(now)),
            config,
            instance,
            launcher,
            fs: self.fs,
            clock: self.clock,
            shared: Mutex::new(Shared {
                machine,
                slots: FxHashMap::default(),
                replies: FxHashMap::default(),
                finished: FxHashMap::default(),
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            closed: AtomicBool::new(false),
            recovered: Arc::new(AtomicU64::new(0)),
            swept: AtomicU64::new(sweep.removed.len() as u64),
            swept_processes: AtomicU64::new(sweep.killed.len() as u64),
            hints: Mutex::new(Vec::new()),
        });
        let reaper = tokio::spawn(reaper(Arc::downgrade(&inner)));
        Ok(Pool {
            inner,
            reaper,
            marker: Some(marker),
            sweep,
        })
    }
}

fn fresh_instance() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mix = (u64::from(std::process::id()) << 32)
        ^ nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // SplitMix64 finaliser so that close inputs give unrelated ids.
    let mut z = mix.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    sweep::instance_from(z ^ (z >> 31))
}

pub use crate::sweep::startup_sweep;

async fn reaper<L: ProcessLauncher>(weak: Weak<Inner<L>>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let now = inner.clock.now();
        inner.coarse.refresh(now);
        let hints = std::mem::take(&mut *lock(&inner.hints));
        {
            let mut st = inner.lock();
            for id in hints {
                st.machine.handle(now, Input::RetireHint { id });
            }
            if st.machine.poll_timeout().is_some_and(|t| t <= now) {
                st.machine.handle_timeout(now);
            }
            let done = st.machine.is_shutting_down() && st.machine.is_empty();
            inner.dispatch(st);
            if done {
                tracing::debug!("pool shut down and empty; reaper stops");
                return;
            }
        }
        // Listen before reading the next deadline, so that a deadline set by another task
        // from here on wakes us (our own dispatch above has already notified).
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = inner.lock().machine.poll_timeout();
        let tick = now.saturating_add(inner.config.tick);
        let until = next.map_or(tick, |n| n.min(tick));
        let clock = inner.clock.clone();
        // Holding the Arc while asleep is fine: dropping the Pool aborts this task.
        tokio::select! {
            _ = clock.sleep_until(until) => {}
            _ = notified => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the machine half-updated in a way
    // that matters more than stopping cleanup would, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Work<L: ProcessLauncher> {
    Launch {
        id: SessionId,
        dir: PathBuf,
    },
    Kill {
        id: SessionId,
        process: Option<Arc<L::Process>>,
        stage: KillStage,
        attempt: u32,
        wait: Duration,
    },
    Remove {
        id: SessionId,
        dir: PathBuf,
    },
}

impl<L: ProcessLauncher> Inner<L> {
    fn lock(&self) -> MutexGuard<'_, Shared<L>> {
        lock(&self.shared)
    }

    fn now(&self) -> Timestamp {
        let now = self.clock.now();
        self.coarse.refresh(now);
        now
    }

    pub(crate) fn session_error(&self, id: SessionId) -> SessionError {
        match self.lock().machine.activity(id) {
            Err(e) => e,
            // Ended flag set but the machine still has it live cannot happen; be safe.
            Ok(_) => SessionError::Unknown { id },
        }
    }

    pub(crate) fn retire_hint(&self, id: SessionId) {
        lock(&self.hints).push(id);
        self.wake.notify_waiters();
    }

    fn feed(self: &Arc<Self>, input: Input) {
        let now = self.now();
        let mut st = self.lock();
        st.machine.handle(now, input);
        self.dispatch(st);
    }

    /// Drain the machine's actions: bookkeeping under the lock, I/O in spawned tasks
    /// after it is released (so a slow kill never holds the lock).
    fn dispatch(self: &Arc<Self>, mut st: MutexGuard<'_, Shared<L>>) {
        let mut work: Vec<Work<L>> = Vec::new();
        while let Some(action) = st.machine.poll_action() {
            match action {
                Action::Launch { id, dir } => {
                    let net = DropNet {
                        launcher: self.launcher.clone(),
                        fs: self.fs.clone(),
                        process: None,
                        dir: Some(dir.clone()),
                        recovered: self.recovered.clone(),
                    };
                    st.slots.insert(
                        id,
                        Slot {
                            process: None,
                            net,
                            watcher: None,
                        },
                    );
                    work.push(Work::Launch { id, dir });
                }
                Action::Reply { ticket, result } => {
                    if let Some(tx) = st.replies.remove(&ticket) {
                        if let Err(Ok(id)) = tx.send(result) {
                            // The requester went away after we admitted it.
                            let now = self.clock.now();
                            let _ = st.machine.destroy(now, id);
                        }
                    }
                }
                Action::Ending { id, .. } => {
                    if let Some(w) = st.slots.get_mut(&id).and_then(|s| s.watcher.take()) {
                        w.abort();
                    }
                }
                Action::Kill {
                    id,
                    stage,
                    attempt,
                    wait,
                } => {
                    let process = st.slots.get(&id).and_then(|s| s.process.clone());
                    work.push(Work::Kill {
                        id,
                        process,
                        stage,
                        attempt,
                        wait,
                    });
                }
                Action::RemoveDir { id, dir, .. } => work.push(Work::Remove { id, dir }),
                Action::Finished {
                    id, dir_removed, ..
                } => {
                    if dir_removed {
                        if let Some(mut slot) = st.slots.remove(&id) {
                            slot.net.disarm();
                        }
                    }
                    for tx in st.finished.remove(&id).unwrap_or_default() {
                        let _ = tx.send(());
                    }
                    self.progress.notify_waiters();
                }
            }
        }
        drop(st);
        if self.closed.load(Ordering::Acquire) && tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        for w in work {
            let me = self.clone();
            match w {
                Work::Launch { id, dir } => {
                    tokio::spawn(async move { me.do_launch(id, dir).await });
                }
                Work::Kill {
                    id,
                    process,
                    stage,
                    attempt,
                    wait,
                } => {
                    tokio::spawn(
                        async move { me.do_kill(id, process, stage, attempt, wait).await },
                    );
                }
                Work::Remove { id, dir } => {
                    tokio::spawn(async move { me.do_remove(id, dir).await });
                }
            }
        }
        self.wake.notify_waiters();
    }

    async fn do_launch(self: Arc<Self>, id: SessionId, dir: PathBuf) {
        let deadline = self.clock.now().saturating_add(self.config.launch_timeout);
        let spec = LaunchSpec { id, dir };
        let result = async {
            self.fs.create_dir(&spec.dir).await?;
            tokio::select! {
                r = self.launcher.launch(&spec) => r,
                _ = self.clock.sleep_until(deadline) => Err(BackendError::new(
                    "launch",
                    BackendErrorKind::TimedOut,
                    format!("no usable browser within {:?}", self.config.launch_timeout),
                )),
            }
        }
        .await;
        match result {
            Ok(process) => {
                let process = Arc::new(process);
                let now = self.now();
                let mut st = self.lock();
                match st.slots.get_mut(&id) {
                    Some(slot) if !self.closed.load(Ordering::Acquire) => {
                        slot.process = Some(process.clone());
                        slot.net.process = Some(process.clone());
                        let me = self.clone();
                        let p = process.clone();
                        let watcher = tokio::spawn(async move {
                            let exit = me.launcher.exited(&p).await;
                            me.feed(Input::Exited { id, exit });
                        });
                        slot.watcher = Some(watcher.abort_handle());
                        st.machine.handle(now, Input::Launched { id });
                        self.dispatch(st);
                    }
                    _ => {
                        // The pool was dropped meanwhile: the safety net takes it.
                        drop(st);
                        let _net = DropNet {
                            launcher: self.launcher.clone(),
                            fs: self.fs.clone(),
                            process: Some(process),
                            dir: Some(spec.dir),
                            recovered: self.recovered.clone(),
                        };
                    }
                }
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "launch failed");
                self.feed(Input::LaunchFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    async fn do_kill(
        self: Arc<Self>,
        id: SessionId,
        process: Option<Arc<L::Process>>,
        stage: KillStage,
        attempt: u32,
        wait: Duration,
    ) {
        let gone = match &process {
            None => true,
            Some(p) => {
                if let Err(e) = self.launcher.kill(p, stage).await {
                    tracing::warn!(session = %id, error = %e, ?stage, "kill reported an error");
                }
                let deadline = self.clock.now().saturating_add(wait);
                tokio::select! {
                    _ = self.launcher.wait_gone(p) => true,
                    _ = self.clock.sleep_until(deadline) => false,
                }
            }
        };
        if gone {
            let now = self.now();
            let mut st = self.lock();
            if let Some(slot) = st.slots.get_mut(&id) {
                slot.net.processes_gone();
                slot.process = None;
            }
            st.machine.handle(now, Input::Gone { id });
            self.dispatch(st);
        } else {
            self.feed(Input::KillTimedOut { id, attempt });
        }
    }

    async fn do_remove(self: Arc<Self>, id: SessionId, dir: PathBuf) {
        let result = self.fs.remove_dir_all(&dir).await;
        let now = self.now();
        let mut st = self.lock();
        match result {
            Ok(()) => {
                if let Some(slot) = st.slots.get_mut(&id) {
                    slot.net.disarm();
                }
                st.machine.handle(now, Input::DirRemoved { id });
                st.slots.remove(&id);
            }
            Err(error) => st.machine.handle(now, Input::RemoveFailed { id, error }),
        }
        self.dispatch(st);
    }
}

/// Cancels a request whose future was dropped, and destroys a session that was admitted
/// for it but never handed out.
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
        if tokio::runtime::Handle::try_current().is_ok() {
            self.inner.dispatch(st);
        }
    }
}

/// What [`Pool::shutdown`] left behind, if anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions torn down by the shutdown.
    pub torn_down: u64,
    /// Sessions whose teardown had not finished when shutdown gave up waiting (stuck
    /// kills); the Drop safety net handles them when the pool is dropped.
    pub unfinished: Vec<SessionId>,
    /// Session directories that could not be removed; the next start's sweep retries.
    pub dirs_left: Vec<SessionId>,
}

impl<L: ProcessLauncher> Pool<L> {
    /// A pool on the host filesystem and tokio's clock. See [`Pool::builder`].
    pub async fn new(config: PoolConfig, launcher: L) -> Result<Self, PoolError> {
        Self::builder(config, launcher).build().await
    }

    /// A builder, for a custom [`Clock`], [`Filesystem`] or instance id.
    pub fn builder(config: PoolConfig, launcher: L) -> PoolBuilder<L> {
        PoolBuilder {
            config,
            launcher,
            fs: Arc::new(OsFilesystem::new()),
            clock: Arc::new(TokioClock::new()),
            instance: None,
        }
    }

    /// Whether the reaper task is still running. It stops when the pool is dropped, or
    /// once a shut-down pool has nothing left to retry.
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
            SessionError::Unknown { .. } => AcquireError::ShuttingDown,
        })
    }

    /// A handle on a live session, or why it ended.
    pub fn session(&self, id: SessionId) -> Result<Lease<L>, SessionError> {
        let st = self.inner.lock();
        let activity = st.machine.activity(id)?.clone();
        let process = st
            .slots
            .get(&id)
            .and_then(|s| s.process.clone())
            .ok_or(SessionError::Unknown { id })?;
        Ok(Lease {
            id,
            activity,
            process,
            coarse: self.inner.coarse.clone(),
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// Destroy a session and wait until its processes are gone and its directory removed
    /// (or handed to background retries). Errors say why if it had already ended.
    pub async fn destroy(&self, id: SessionId) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        {
            let now = self.inner.now();
            let mut st = self.inner.lock();
            st.machine.destroy(now, id)?;
            st.finished.entry(id).or_default().push(tx);
            self.inner.dispatch(st);
        }
        let _ = rx.await;
        Ok(())
    }

    /// The client behind `owner` went away: its sessions are destroyed after `grace`
    /// unless used again meanwhile. Returns how many sessions were put on notice.
    pub fn release_owner(&self, owner: &OwnerKey, grace: Duration) -> usize {
        let now = self.inner.now();
        let mut st = self.inner.lock();
        let n = st.machine.release_owner(now, owner, grace);
        self.inner.dispatch(st);
        n
    }

    /// A snapshot of gauges and totals.
    pub fn stats(&self) -> PoolStats {
        let m = self.inner.lock().machine.stats();
        PoolStats {
            launching: m.launching,
            live: m.live,
            busy: m.busy,
            stopping: m.stopping,
            removing: m.removing,
            waiting: m.waiting,
            totals: m.totals,
            drop_recovered: self.inner.recovered.load(Ordering::Relaxed),
            swept: self.inner.swept.load(Ordering::Relaxed),
            swept_processes: self.inner.swept_processes.load(Ordering::Relaxed),
        }
    }

    /// Memory of every live session's process tree, as the backend measures it.
    pub async fn memory(&self) -> PoolMemory {
        let procs: Vec<(SessionId, Arc<L::Process>)> = {
            let st = self.inner.lock();
            let mut v: Vec<_> = st
                .slots
                .iter()
                .filter_map(|(id, s)| s.process.clone().map(|p| (*id, p)))
                .collect();
            v.sort_by_key(|(id, _)| *id);
            v
        };
        let mut out = PoolMemory::default();
        for (id, p) in procs {
            if let Some(m) = self.inner.launcher.memory(&p).await {
                out.total.rss_bytes += m.rss_bytes;
                out.total.pss_bytes += m.pss_bytes;
                out.total.processes += m.processes;
                out.sessions.push((id, m));
            }
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
        let c = &self.inner.config;
        let budget = c.launch_timeout
            + c.kill_grace
            + c.kill_timeout * (c.kill_attempts + 1)
            + c.remove_backoff.max;
        let deadline = self.inner.clock.now().saturating_add(budget);
        loop {
            let progressed = self.inner.progress.notified();
            {
                let st = self.inner.lock();
                if st.machine.all_finished() || self.inner.clock.now() >= deadline {
                    break;
                }
            }
            tokio::select! {
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

impl<L: ProcessLauncher> Drop for Pool<L> {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.reaper.abort();
        let slots: Vec<Slot<L>> = {
            let mut st = self.inner.lock();
            let mut ids: Vec<SessionId> = st.slots.keys().copied().collect();
            ids.sort_unstable();
            st.replies.clear();
            ids.into_iter()
                .filter_map(|id| st.slots.remove(&id))
                .collect()
        };
        for mut slot in slots {
            if let Some(w) = slot.watcher.take() {
                w.abort();
            }
            drop(slot); // the DropNet kills and removes what is left
        }
        // Only now, with our directories gone, stop marking this instance as live: remove
        // the marker file while still holding its lock, then release the lock.
        let c = &self.inner.config;
        let marker = c
            .root
            .join(sweep::marker_name(&c.prefix, &self.inner.instance));
        let fs = &self.inner.fs;
        crate::dropnet::run_blocking_cleanup(|| {
            if let Err(e) = fs.remove_dir_all_sync(&marker) {
                tracing::warn!(marker = %marker.display(), error = %e, "could not remove pool marker");
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
