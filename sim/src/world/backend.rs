//! The core's backend traits ([`ProcessLauncher`], [`Filesystem`], [`Clock`]) implemented
//! over a shared [`World`], so the real async [`browserpool::Pool`] (and
//! [`browserpool::testing::startup_sweep`]) can run on the simulated OS.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use browserpool_sim::world::{World, WorldConfig, backend::SimBackend};
//!
//! let world = Arc::new(Mutex::new(World::new(WorldConfig::default(), 42)));
//! let (launcher, fs) = SimBackend::new(world.clone());
//! # let _ = (launcher, fs);
//! ```
//!
//! Behaviour of the trait implementations:
//! - `launch` starts a tree (by default 12 processes, up at once, dying at the first
//!   forced kill) or fails with the error the world injects (PID space exhausted, a crash
//!   armed with [`World::crash_after_ops`]). A [`BackendModel`] given with
//!   [`SimBackend::driven`] decides each launch instead (process count, kill
//!   behaviour, start-up latency, failing or hanging) and hears what the backend did;
//!   a launch whose future is dropped, or that fails, kills the tree it started, as the
//!   [`ProcessLauncher`] contract requires;
//! - `kill` signals the tree's process group as the world models it (graceful closes
//!   that are ignored, kills needed, a death delay); `wait_gone` resolves when the tree
//!   is reaped, completing a scheduled death itself when a [`Clock`] was given with
//!   [`SimBackend::driven`]; `exited` resolves when the tree is reaped;
//! - every operation first counts against [`World::crash_after_ops`], so a crash in the
//!   middle of a startup sweep can be modelled precisely;
//! - `probe_profile` reports ages in simulated time (the world's clock, never the wall
//!   clock), so a run stays deterministic;
//! - the backend belongs to the server process that was running when it was made: once
//!   that process is dead ([`World::kill_server`]), every call fails or does nothing,
//!   destructors included, exactly as a crashed server can no longer act. A simulated
//!   crash can therefore drop the pool and its runtime without cleaning anything up;
//! - the [`MarkerLock`] returned by `lock_marker` releases the world's lock when dropped
//!   (like closing an `flock`ed file), if its server still holds it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use browserpool::{
    BackendError, BackendErrorKind, Clock, DirEntryInfo, Filesystem, KillStage, LaunchSpec,
    MarkerLock, MarkerState, MemoryUsage, Orphan, ProcessLauncher, ProfileProbe, SessionId,
    Timestamp,
};
use tokio::sync::watch;

use super::{KillBehaviour, Owner, World};

fn lock(w: &Mutex<World>) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Constructors for the simulated backend.
pub struct SimBackend;

impl SimBackend {
    /// A launcher and filesystem over `world`, tagging what they create as incarnation 0
    /// of the pool under test. If the world has no server process yet, one is started
    /// (it holds the pool's marker lock); the backend acts for that server.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(world: Arc<Mutex<World>>) -> (SimLauncher, SimFs) {
        Self::with_incarnation(world, 0)
    }

    /// The same for pool incarnation `incarnation` (after a simulated restart).
    pub fn with_incarnation(world: Arc<Mutex<World>>, incarnation: u32) -> (SimLauncher, SimFs) {
        let server = {
            let mut w = lock(&world);
            match w.server() {
                Some(s) => Some(s),
                None => w.spawn_server(),
            }
        };
        let ctx = Ctx {
            world,
            incarnation,
            server,
            clock: None,
            model: None,
        };
        (
            SimLauncher {
                ctx: ctx.clone(),
                processes_per_tree: 12,
            },
            SimFs { ctx },
        )
    }

    /// The same for a driver that keeps the world's time on `clock` (waits for a dying
    /// tree sleep on it) and lets `model` decide every launch and hear what the backend
    /// does.
    pub fn driven(
        world: Arc<Mutex<World>>,
        incarnation: u32,
        clock: Arc<dyn Clock>,
        model: Arc<dyn BackendModel>,
    ) -> (SimLauncher, SimFs) {
        let (mut launcher, mut fs) = Self::with_incarnation(world, incarnation);
        for ctx in [&mut launcher.ctx, &mut fs.ctx] {
            ctx.clock = Some(clock.clone());
            ctx.model = Some(model.clone());
        }
        (launcher, fs)
    }
}

/// How a simulated launch behaves (see [`BackendModel::plan_launch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// Processes in the tree (Chrome: 10-13).
    pub procs: u32,
    /// How the tree reacts to kills.
    pub kill: KillBehaviour,
    /// Start-up time before the browser is usable (or fails), on the backend's clock.
    pub latency: Duration,
    /// How the start-up ends.
    pub outcome: PlannedLaunch,
}

/// How a simulated browser's start-up ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlannedLaunch {
    /// It comes up.
    Up,
    /// It exits during start-up: the launch fails.
    ExitsDuringStartup,
    /// It never becomes usable: the launch waits until the pool gives up (its future is
    /// dropped, which kills the tree).
    Hangs,
}

/// What the simulated backend did, for a driver's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendEvent<'a> {
    /// A tree was started for session `id`.
    Started {
        /// The session.
        id: SessionId,
        /// The tree's process group.
        pgid: u32,
        /// The leader's generation.
        gen: u64,
        /// Processes in the tree.
        procs: u32,
    },
    /// The launch of session `id` failed after its tree was started (it was killed).
    LaunchFailed {
        /// The session.
        id: SessionId,
        /// Why: "browser exited during start-up" or "timed out".
        why: &'static str,
    },
    /// `create_dir` failed (an injected fault).
    CreateDirFailed {
        /// The directory.
        path: &'a Path,
    },
    /// `remove_dir_all` was called on a directory.
    Removed {
        /// The directory.
        path: &'a Path,
        /// Whether it succeeded.
        ok: bool,
    },
}

/// A driver's say over the simulated backend: it decides each launch and hears what the
/// backend did.
pub trait BackendModel: Send + Sync + 'static {
    /// How the browser launched for `spec` behaves.
    fn plan_launch(&self, spec: &LaunchSpec) -> LaunchPlan;
    /// Something the backend did.
    fn note(&self, event: BackendEvent<'_>);
}

/// What a launcher and filesystem of one server share.
#[derive(Clone)]
struct Ctx {
    world: Arc<Mutex<World>>,
    incarnation: u32,
    /// The server process this backend acts for; once it is dead, nothing happens.
    server: Option<(u32, u64)>,
    clock: Option<Arc<dyn Clock>>,
    model: Option<Arc<dyn BackendModel>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("incarnation", &self.incarnation)
            .field("server", &self.server)
            .finish()
    }
}

impl Ctx {
    /// The world, its time moved to the backend's clock (if any).
    fn world(&self) -> MutexGuard<'_, World> {
        let mut w = lock(&self.world);
        // A dead server's clock (and its destructors) must not move the world.
        if let (Some(c), true) = (&self.clock, self.alive(&w)) {
            w.set_now(c.now());
        }
        w
    }

    /// Whether the server this backend acts for is still alive.
    fn alive(&self, w: &World) -> bool {
        self.server.is_none() || w.server() == self.server
    }

    /// Count one operation against an armed crash; fail if our server is dead.
    fn op(&self, w: &mut World, op: &'static str) -> Result<(), BackendError> {
        if !self.alive(w) {
            return Err(BackendError::new(
                op,
                BackendErrorKind::Other,
                "the server process died",
            ));
        }
        w.backend_op(op)
    }

    fn note(&self, event: BackendEvent<'_>) {
        if let Some(m) = &self.model {
            m.note(event);
        }
    }

    async fn sleep(&self, d: Duration) {
        if let (Some(c), false) = (&self.clock, d.is_zero()) {
            let until = c.now().saturating_add(d);
            c.sleep_until(until).await;
        }
    }
}

/// A simulated browser: a process tree in the world.
#[derive(Debug)]
pub struct SimProcess {
    /// The session it was launched for.
    pub id: SessionId,
    /// Its process group id (the leader's pid).
    pub pgid: u32,
    /// The leader's generation (tells a reused pid apart).
    pub gen: u64,
    /// Its user-data directory.
    pub dir: PathBuf,
    exit: watch::Receiver<Option<String>>,
}

/// [`ProcessLauncher`] over a [`World`].
#[derive(Clone, Debug)]
pub struct SimLauncher {
    ctx: Ctx,
    /// Processes per launched tree (10-13 for Chrome) when no [`BackendModel`] decides.
    pub processes_per_tree: u32,
}

impl SimLauncher {
    /// The world this launcher acts on.
    pub fn world(&self) -> &Arc<Mutex<World>> {
        &self.ctx.world
    }
}

/// Kills the tree of a launch that did not complete (failed, or its future dropped).
struct StartGuard<'a> {
    ctx: &'a Ctx,
    id: SessionId,
    tree: Option<(u32, u64)>,
}

impl StartGuard<'_> {
    fn fail(&mut self, why: &'static str) {
        if let Some((pgid, gen)) = self.tree.take() {
            let crashed = {
                let mut w = self.ctx.world();
                self.ctx.alive(&w) && w.crash_tree(pgid, gen, "launch failed")
            };
            if crashed {
                self.ctx
                    .note(BackendEvent::LaunchFailed { id: self.id, why });
            }
        }
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.fail("timed out");
    }
}

#[async_trait]
impl ProcessLauncher for SimLauncher {
    type Process = SimProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<SimProcess, BackendError> {
        let plan = match &self.ctx.model {
            Some(m) => m.plan_launch(spec),
            None => LaunchPlan {
                procs: self.processes_per_tree,
                kill: KillBehaviour {
                    kills_needed: 1,
                    ..KillBehaviour::default()
                },
                latency: Duration::ZERO,
                outcome: PlannedLaunch::Up,
            },
        };
        let (pgid, gen, exit) = {
            let mut w = self.ctx.world();
            self.ctx.op(&mut w, "launch")?;
            let (pgid, gen) = w.spawn_tree(
                &spec.dir,
                Owner::Ours(self.ctx.incarnation),
                plan.procs,
                plan.kill,
            )?;
            let exit = w.watch_tree(pgid, gen).ok_or_else(|| {
                BackendError::new("launch", BackendErrorKind::Launch, "exited during launch")
            })?;
            (pgid, gen, exit)
        };
        self.ctx.note(BackendEvent::Started {
            id: spec.id,
            pgid,
            gen,
            procs: plan.procs,
        });
        let mut guard = StartGuard {
            ctx: &self.ctx,
            id: spec.id,
            tree: Some((pgid, gen)),
        };
        match plan.outcome {
            PlannedLaunch::Hangs => std::future::pending().await,
            PlannedLaunch::ExitsDuringStartup => {
                self.ctx.sleep(plan.latency).await;
                let why = "browser exited during start-up";
                guard.fail(why);
                Err(BackendError::new("launch", BackendErrorKind::Launch, why).at(&spec.dir))
            }
            PlannedLaunch::Up => {
                self.ctx.sleep(plan.latency).await;
                guard.tree = None;
                Ok(SimProcess {
                    id: spec.id,
                    pgid,
                    gen,
                    dir: spec.dir.clone(),
                    exit,
                })
            }
        }
    }

    async fn kill(&self, p: &SimProcess, stage: KillStage) -> Result<(), BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "kill")?;
        // Like a real child handle: never signal a group whose leader we saw exit.
        if w.tree_alive(p.pgid, p.gen) {
            w.signal_group(p.pgid, p.gen, stage);
            w.complete_death(p.pgid, p.gen);
        }
        Ok(())
    }

    async fn wait_gone(&self, p: &SimProcess) {
        loop {
            let dying = {
                let mut w = self.ctx.world();
                if w.complete_death(p.pgid, p.gen) {
                    return;
                }
                w.dying_at(p.pgid, p.gen)
            };
            match (dying, &self.ctx.clock) {
                (Some(at), Some(clock)) => clock.sleep_until(at).await,
                _ => {
                    let mut rx = p.exit.clone();
                    let _ = rx.wait_for(|v| v.is_some()).await;
                    return;
                }
            }
        }
    }

    async fn exited(&self, p: &SimProcess) -> String {
        let mut rx = p.exit.clone();
        let how = rx
            .wait_for(|v| v.is_some())
            .await
            .map(|v| v.clone().unwrap_or_default());
        match how {
            Ok(how) => how,
            Err(_) => std::future::pending().await,
        }
    }

    fn kill_on_drop(&self, p: &SimProcess) {
        let mut w = self.ctx.world();
        if self.ctx.alive(&w) && w.tree_alive(p.pgid, p.gen) {
            w.signal_group(p.pgid, p.gen, KillStage::Force);
            w.complete_death(p.pgid, p.gen);
        }
    }

    async fn memory(&self, p: &SimProcess) -> Option<MemoryUsage> {
        let w = self.ctx.world();
        let t = w.tree(p.pgid, p.gen)?;
        Some(w.tree_memory(t))
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "find_orphans")?;
        Ok(w.find_orphans(dir))
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "kill_orphan")?;
        Ok(w.kill_orphan(orphan))
    }
}

/// [`Filesystem`] over a [`World`].
#[derive(Clone, Debug)]
pub struct SimFs {
    ctx: Ctx,
}

struct MarkerGuard {
    world: Weak<Mutex<World>>,
    path: PathBuf,
    holder: (u32, u64),
}

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        if let Some(w) = self.world.upgrade() {
            lock(&w).unlock_marker_of(&self.path, self.holder);
        }
    }
}

#[async_trait]
impl Filesystem for SimFs {
    fn current_uid(&self) -> u32 {
        lock(&self.ctx.world).config().uid
    }

    async fn create_dir(&self, path: &Path) -> Result<(), BackendError> {
        let r = {
            let mut w = self.ctx.world();
            self.ctx
                .op(&mut w, "create_dir")
                .and_then(|()| w.create_dir(path, Owner::Ours(self.ctx.incarnation)))
        };
        if r.is_err() {
            self.ctx.note(BackendEvent::CreateDirFailed { path });
        }
        r
    }

    async fn list_prefixed(
        &self,
        root: &Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "list")?;
        Ok(w.list_prefixed(root, prefix))
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), BackendError> {
        let r = self.remove_dir_all_sync(path);
        self.ctx.note(BackendEvent::Removed {
            path,
            ok: r.is_ok(),
        });
        r
    }

    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "remove_dir_all")?;
        w.remove_dir_all(path)
    }

    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "remove_dead_marker")?;
        w.remove_dead_marker(path)
    }

    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "lock_marker")?;
        let holder = match w.server() {
            Some(h) => h,
            None => w.spawn_server().ok_or_else(|| {
                BackendError::new("lock_marker", BackendErrorKind::Other, "no pid for server")
            })?,
        };
        w.lock_marker(path, holder, Owner::Ours(self.ctx.incarnation))?;
        Ok(MarkerLock(Box::new(MarkerGuard {
            world: Arc::downgrade(&self.ctx.world),
            path: path.to_owned(),
            holder,
        })))
    }

    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "probe_marker")?;
        w.probe_marker(path)
    }

    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        let mut w = self.ctx.world();
        self.ctx.op(&mut w, "probe_profile")?;
        w.probe_profile(path)
    }
}

/// A manually advanced [`Clock`] that also moves the world's time.
/// `sleep_until` resolves once [`SimClock::advance_to`] has reached the deadline.
#[derive(Clone, Debug)]
pub struct SimClock {
    world: Arc<Mutex<World>>,
    tx: Arc<watch::Sender<u64>>,
}

impl SimClock {
    /// A clock starting at the world's current time.
    pub fn new(world: Arc<Mutex<World>>) -> Self {
        let now = lock(&world).now().0;
        SimClock {
            world,
            tx: Arc::new(watch::channel(now).0),
        }
    }

    /// Move time forward to `t` (never backwards), waking sleepers that are due.
    pub fn advance_to(&self, t: Timestamp) {
        lock(&self.world).set_now(t);
        self.tx.send_if_modified(|v| {
            if t.0 > *v {
                *v = t.0;
                true
            } else {
                false
            }
        });
    }
}

#[async_trait]
impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.tx.borrow())
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v >= deadline.0).await;
    }
}
