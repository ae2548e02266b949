//! The pool shell: the production [`Pool`] over the simulated world.
//!
//! Each server incarnation runs its own current-thread tokio runtime with paused time.
//! The pool reads time from an [`OffsetClock`] over that runtime's clock, so its reaper,
//! launch timeouts and kill waits are tokio timers that auto-advance when nothing is
//! runnable; the engine only wakes the runtime up to its next event
//! ([`PoolRun::run_until`]). Everything the pool does that the engine records reaches it
//! through an [`Inbox`]: every [`Action`] of the pool's machine (through
//! [`browserpool::PoolBuilder::observe`]), what the simulated backend did (through a
//! [`BackendModel`], which also draws each launch's behaviour from the run's browser
//! stream), and the results of the client requests the engine spawned. The runtime is
//! woken early whenever something lands there.
//!
//! A server crash kills the world's server process first, which severs the backend
//! (every later call of that incarnation, destructors included, does nothing), then drops
//! the pool and its runtime: exactly what a crash leaves behind.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use browserpool::{
    Action, BackendError, Clock, LaunchSpec, Pool, PoolError, PoolStats, SessionError, SweepReport,
};
use tokio::sync::Notify;

use super::*;
use crate::world::backend::{BackendEvent, BackendModel, LaunchPlan, SimBackend};
use crate::world::Owner;

/// A [`Clock`] over the runtime's (paused) tokio clock, reading simulated milliseconds:
/// `offset` at the runtime's start.
pub(super) struct OffsetClock {
    epoch: tokio::time::Instant,
    offset: u64,
}

impl OffsetClock {
    /// Must be called inside the runtime (its paused clock is the one read).
    pub(super) fn new(offset: u64) -> Self {
        OffsetClock {
            epoch: tokio::time::Instant::now(),
            offset,
        }
    }

    pub(super) fn instant_of(&self, ms: u64) -> tokio::time::Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(self.offset))
    }
}

#[async_trait]
impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        Timestamp(self.offset + ms(elapsed))
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let since = deadline.0.saturating_sub(self.offset);
        match self.epoch.checked_add(Duration::from_millis(since)) {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Something the pool (or its backend, or a request task) did.
pub(super) enum Note {
    /// An action of the pool's machine; for `Finished`, whether the session's tree was
    /// alive and its directory there at that instant; for `Launch`, the session's
    /// directory (actions name sessions by id only).
    Action(Action, Option<(bool, bool)>, Option<PathBuf>),
    /// The backend started a tree for a session; `crash_at`: when it will crash by
    /// itself, if it does before the end.
    Started {
        id: SessionId,
        pgid: u32,
        gen: u64,
        procs: u32,
        crash_at: Option<u64>,
    },
    /// A launch failed after its tree was started.
    LaunchFailed { id: SessionId, why: &'static str },
    /// `create_dir` failed.
    NoDir { path: PathBuf },
    /// `remove_dir_all` was called.
    Removed { path: PathBuf, ok: bool },
    /// A client's request was answered.
    Reply {
        req: Ticket,
        result: Result<Lease<SimLauncher>, AcquireError>,
    },
    /// A client's destroy returned.
    Destroyed {
        c: u32,
        result: Result<(), SessionError>,
    },
}

/// Where the pool side leaves [`Note`]s for the engine.
#[derive(Default)]
pub(super) struct Inbox {
    notes: Mutex<Vec<Note>>,
    notify: Notify,
}

impl Inbox {
    pub(super) fn push(&self, note: Note) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(note);
        self.notify.notify_waiters();
    }

    pub(super) fn take(&self) -> Vec<Note> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// The run's browser behaviour, drawn per launch like the machine shell draws it, and
/// the backend's reports into the current incarnation's inbox.
pub(super) struct Model {
    state: Mutex<ModelState>,
}

struct ModelState {
    rng: Rng,
    faults: Faults,
    quiet: bool,
    config: PoolConfig,
    end_ms: u64,
    inbox: Arc<Inbox>,
    clock: Option<Arc<OffsetClock>>,
}

impl Model {
    fn st(&self) -> MutexGuard<'_, ModelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BackendModel for Model {
    fn plan_launch(&self, _spec: &LaunchSpec) -> LaunchPlan {
        let mut st = self.st();
        let st = &mut *st;
        draw_launch(&mut st.rng, &st.faults, st.quiet, &st.config)
    }

    fn note(&self, event: BackendEvent<'_>) {
        let mut st = self.st();
        let note = match event {
            BackendEvent::Started {
                id,
                pgid,
                gen,
                procs,
            } => {
                let rate = if st.quiet {
                    0.0
                } else {
                    st.faults.browser_crash_per_day
                };
                let now = st.clock.as_ref().map_or(0, |c| c.now().0);
                let crash_at = (rate > 0.0)
                    .then(|| now + st.rng.exp(86_400_000.0 / rate) as u64)
                    .filter(|t| *t < st.end_ms);
                Note::Started {
                    id,
                    pgid,
                    gen,
                    procs,
                    crash_at,
                }
            }
            BackendEvent::LaunchFailed { id, why } => Note::LaunchFailed { id, why },
            BackendEvent::CreateDirFailed { path } => Note::NoDir {
                path: path.to_owned(),
            },
            BackendEvent::Removed { path, ok } => Note::Removed {
                path: path.to_owned(),
                ok,
            },
        };
        st.inbox.push(note);
    }
}

/// One server incarnation's pool and runtime.
pub(super) struct PoolRun {
    // Field order is drop order: the pool before its runtime.
    pool: Arc<Pool<SimLauncher>>,
    rt: tokio::runtime::Runtime,
    clock: Arc<OffsetClock>,
    inbox: Arc<Inbox>,
    /// Whether the observer still reports (off once the server is gone).
    live: Arc<AtomicBool>,
}

impl PoolRun {
    pub(super) fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Sessions the pool tracks that are not spares' (ready spares are not listed in
    /// `live`, spare launches are; see `Sim::non_spare_tracked`).
    pub(super) fn sessions(&self) -> Vec<browserpool::SessionInfo> {
        self.pool.sessions()
    }

    pub(super) fn is_live(&self, id: SessionId) -> bool {
        self.pool.session(id).is_ok()
    }

    pub(super) fn sweep_report(&self) -> SweepReport {
        self.pool.sweep_report().clone()
    }

    pub(super) fn release_owner(&self, owner: &OwnerKey, grace: Duration) {
        let _in_runtime = self.rt.enter();
        self.pool.release_owner(owner, grace);
    }

    /// The simulated time the pool's runtime is at.
    pub(super) fn now_ms(&self) -> u64 {
        let _in_runtime = self.rt.enter();
        self.clock.now().0
    }

    /// Let the pool run until simulated time `t_ms`. Returns `true` if it stopped
    /// earlier (or at `t_ms`) because something landed in the inbox.
    pub(super) fn run_until(&self, t_ms: u64) -> bool {
        let inbox = &self.inbox;
        let target = self.clock.instant_of(t_ms);
        self.rt.block_on(async {
            let notified = inbox.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !inbox.is_empty() {
                return true;
            }
            tokio::select! {
                biased;
                _ = notified => true,
                _ = tokio::time::sleep_until(target) => !inbox.is_empty(),
            }
        })
    }

    /// The server process is dead (the backend is severed): drop everything, no
    /// reports.
    pub(super) fn close(self) {
        self.live.store(false, Ordering::Release);
        let PoolRun { pool, rt, .. } = self;
        {
            let _in_runtime = rt.enter();
            drop(pool);
        }
        drop(rt);
    }
}

impl Sim<'_> {
    /// The run's browser model (one stream for the whole run, like the machine shell's).
    pub(super) fn model(&mut self, inbox: Arc<Inbox>, clock: Arc<OffsetClock>) -> Arc<Model> {
        let st = ModelState {
            rng: Rng::derive(self.seed, STREAM_BROWSER, 0),
            faults: self.faults.clone(),
            quiet: self.quiet,
            config: self.config.clone(),
            end_ms: self.end_ms,
            inbox: inbox.clone(),
            clock: Some(clock.clone()),
        };
        let model = self.pool_model.get_or_insert_with(|| {
            Arc::new(Model {
                state: Mutex::new(st),
            })
        });
        {
            let mut st = model.st();
            st.inbox = inbox;
            st.clock = Some(clock);
            st.quiet = self.quiet;
        }
        model.clone()
    }

    /// Build this incarnation's pool (marker, startup sweep, reaper) on a fresh paused
    /// runtime.
    pub(super) fn start_pool(&mut self, instance: &str) -> Result<PoolRun, PoolError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| {
                PoolError::Sweep(BackendError::new(
                    "runtime",
                    browserpool::BackendErrorKind::Other,
                    e.to_string(),
                ))
            })?;
        let offset = self.now;
        let clock = Arc::new(rt.block_on(async { OffsetClock::new(offset) }));
        let inbox = Arc::new(Inbox::default());
        let live = Arc::new(AtomicBool::new(true));
        let model = self.model(inbox.clone(), clock.clone());
        let (launcher, fs) = SimBackend::driven(self.world.clone(), self.inc, clock.clone(), model);
        let observer = {
            let (inbox, live, world) = (inbox.clone(), live.clone(), self.world.clone());
            let inc = self.inc;
            let dirs: Mutex<BTreeMap<SessionId, PathBuf>> = Mutex::default();
            let (root, prefix, instance) = (
                self.config.root.clone(),
                self.config.prefix.clone(),
                instance.to_owned(),
            );
            move |a: &Action| {
                if !live.load(Ordering::Acquire) {
                    return;
                }
                let mut dirs = dirs.lock().unwrap_or_else(|p| p.into_inner());
                let mut launched = None;
                let facts = match a {
                    Action::Launch { id } => {
                        let dir = root.join(browserpool::sweep::session_dir_name(
                            &prefix, &instance, *id,
                        ));
                        dirs.insert(*id, dir.clone());
                        launched = Some(dir);
                        None
                    }
                    Action::Finished { id, .. } => dirs.remove(id).map(|dir| {
                        let w = world.lock().unwrap_or_else(|p| p.into_inner());
                        let alive = w
                            .trees()
                            .any(|(_, t)| t.dir == dir && t.owner == Owner::Ours(inc));
                        (alive, w.exists(&dir))
                    }),
                    _ => None,
                };
                inbox.push(Note::Action(a.clone(), facts, launched));
            }
        };
        let built = rt.block_on(
            Pool::builder(self.shell_config(), launcher)
                .filesystem(Arc::new(fs))
                .clock(clock.clone())
                .instance(instance)
                .observe(observer)
                .build(),
        );
        match built {
            Ok(pool) => Ok(PoolRun {
                pool: Arc::new(pool),
                rt,
                clock,
                inbox,
                live,
            }),
            Err(e) => {
                live.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Client request `req`: acquire a session for `owner`, in a task on the pool's
    /// runtime.
    pub(super) fn pool_acquire(&mut self, req: Ticket, owner: OwnerKey) {
        let Some(run) = &self.pool else { return };
        let (pool, inbox) = (run.pool.clone(), run.inbox.clone());
        run.rt.spawn(async move {
            let result = pool.acquire_for(owner).await;
            inbox.push(Note::Reply { req, result });
        });
    }

    /// Client `c` destroys `id`, in a task on the pool's runtime.
    pub(super) fn pool_destroy(&mut self, c: u32, id: SessionId) {
        let Some(run) = &self.pool else { return };
        let (pool, inbox) = (run.pool.clone(), run.inbox.clone());
        run.rt.spawn(async move {
            let result = pool.destroy(id).await;
            inbox.push(Note::Destroyed { c, result });
        });
    }

    /// Pool shell: run the pool up to `next` (the next engine event). If it did something
    /// first, record it now and return `true` (that is one event of the run).
    pub(super) fn pool_run_until(&mut self, next: u64) -> bool {
        let Some(run) = &self.pool else {
            return false;
        };
        if !run.run_until(next) {
            return false;
        }
        self.now = run.now_ms().max(self.now);
        {
            let mut w = self.w();
            w.set_now(Timestamp(self.now));
            w.complete_due_deaths();
        }
        self.pool_notes();
        true
    }

    /// Record everything in the inbox.
    pub(super) fn pool_notes(&mut self) {
        let Some(run) = &self.pool else { return };
        let notes = run.inbox.take();
        if self.pool.is_some() {
            self.w().complete_due_deaths();
        }
        for note in notes {
            self.pool_note(note);
        }
    }

    pub(super) fn slot_by_dir(&self, path: &std::path::Path) -> Option<SessionId> {
        self.slots
            .iter()
            .find(|(_, s)| s.dir == path)
            .map(|(id, _)| *id)
    }

    pub(super) fn pool_note(&mut self, note: Note) {
        match note {
            Note::Action(a, facts, launched) => match a {
                Action::Launch { id } => {
                    self.slots.insert(
                        id,
                        Slot {
                            dir: launched.unwrap_or_default(),
                            tree: None,
                            activity: None,
                            last_ms: None,
                            in_op: false,
                        },
                    );
                }
                Action::Ending { .. } | Action::Reaped { .. } => {
                    for t in a.endings() {
                        self.ending(t.id, &t.reason);
                        self.tr(Tr::Kill {
                            id: t.id.0,
                            force: t.stage == browserpool::KillStage::Force,
                            attempt: 1,
                        });
                    }
                }
                Action::Kill {
                    id, stage, attempt, ..
                } => {
                    self.coverage.kill_escalations += 1;
                    self.tr(Tr::Kill {
                        id: id.0,
                        force: stage == browserpool::KillStage::Force,
                        attempt,
                    });
                }
                Action::Finished {
                    id,
                    reason,
                    dir_removed,
                } => self.finished(id, reason.label(), dir_removed, facts),
                Action::RemoveDir { .. } | Action::Reply { .. } => {}
            },
            Note::Started {
                id,
                pgid,
                gen,
                procs,
                crash_at,
            } => {
                self.tree_started(id, pgid, gen, procs);
                if let Some(t) = crash_at {
                    self.push(t, Ev::TreeCrash(pgid, gen));
                }
            }
            Note::LaunchFailed { id, why } => {
                self.tr(Tr::LaunchFailed { id: id.0, why });
                if let Some(t) = self.slots.get(&id).and_then(|s| s.tree) {
                    self.by_tree.remove(&t);
                }
            }
            Note::NoDir { path } => {
                if let Some(id) = self.slot_by_dir(&path) {
                    self.tr(Tr::NoDir { id: id.0 });
                }
            }
            Note::Removed { path, ok } => {
                if let Some(id) = self.slot_by_dir(&path) {
                    self.tr(Tr::Remove { id: id.0, ok });
                    if ok && self.finished.contains(&id) {
                        self.slots.remove(&id);
                    }
                }
            }
            Note::Reply { req, result } => {
                let result = result.map(|lease| {
                    let id = lease.id();
                    let activity = lease.activity().clone();
                    if let Some(s) = self.slots.get_mut(&id) {
                        s.activity = Some(activity.clone());
                    }
                    let p = lease.process();
                    Handout {
                        id,
                        activity: Some(activity),
                        tree: Some((p.pgid, p.gen)),
                        lease: Some(lease),
                    }
                });
                self.reply(req, result);
            }
            Note::Destroyed { c, result } => {
                if let Err(e) = result {
                    self.client_errors += 1;
                    let what = match e {
                        SessionError::TeardownPending { .. } => {
                            "destroy: teardown still pending after the kill budget"
                        }
                        _ => "destroy: session had already ended",
                    };
                    self.tr(Tr::ClientError { c, what });
                }
            }
        }
    }

    /// The pool is gone with its server (crash, or the end of the run): sever the
    /// backend first, then drop.
    pub(super) fn close_pool(&mut self, run: PoolRun) {
        self.w().kill_server();
        run.close();
    }

    /// Faults stop: launches from now on draw none.
    pub(super) fn pool_quiet(&mut self) {
        if let Some(m) = &self.pool_model {
            m.st().quiet = true;
        }
    }

    /// End of the run: stop the pool without letting its destructors touch the world
    /// (the end figures are what the run left).
    pub(super) fn stop_pool(&mut self) {
        if let Some(run) = self.pool.take() {
            self.close_pool(run);
        }
    }
}
