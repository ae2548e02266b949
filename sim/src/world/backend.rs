//! The core's backend traits ([`ProcessLauncher`], [`Filesystem`], [`Clock`]) implemented
//! over a shared [`World`], so the real async [`browserpool::Pool`] (and
//! [`browserpool::pool::startup_sweep`]) can run on the simulated OS.
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
//! Behaviour of the trait implementations (simpler than the discrete-event engine, which
//! drives the world directly to model latencies):
//! - `launch` starts a tree at once (10-13 processes, here always 12) or fails with the
//!   error the world injects (PID space exhausted, a crash armed with
//!   [`World::crash_after_ops`]);
//! - `kill(Force)` is effective at once unless the world's tree was given a
//!   [`KillBehaviour`] needing more kills; `wait_gone` and `exited`
//!   resolve when the tree is reaped;
//! - every operation first counts against [`World::crash_after_ops`], so a crash in the
//!   middle of a startup sweep can be modelled precisely;
//! - `probe_profile` reports ages in simulated time (the world's clock, never the wall
//!   clock), so a run stays deterministic;
//! - the [`MarkerLock`] returned by `lock_marker` releases the world's lock when dropped
//!   (like closing an `flock`ed file); a simulated crash that must run no destructors
//!   should `std::mem::forget` it and call [`World::kill_server`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

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
    /// (it holds the pool's marker lock).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(world: Arc<Mutex<World>>) -> (SimLauncher, SimFs) {
        Self::with_incarnation(world, 0)
    }

    /// The same for pool incarnation `incarnation` (after a simulated restart).
    pub fn with_incarnation(world: Arc<Mutex<World>>, incarnation: u32) -> (SimLauncher, SimFs) {
        {
            let mut w = lock(&world);
            if w.server().is_none() {
                let _ = w.spawn_server();
            }
        }
        (
            SimLauncher {
                world: world.clone(),
                incarnation,
                processes_per_tree: 12,
            },
            SimFs { world, incarnation },
        )
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
    world: Arc<Mutex<World>>,
    incarnation: u32,
    /// Processes per launched tree (10-13 for Chrome).
    pub processes_per_tree: u32,
}

impl SimLauncher {
    /// The world this launcher acts on.
    pub fn world(&self) -> &Arc<Mutex<World>> {
        &self.world
    }
}

#[async_trait]
impl ProcessLauncher for SimLauncher {
    type Process = SimProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<SimProcess, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("launch")?;
        let (pgid, gen) = w.spawn_tree(
            &spec.dir,
            Owner::Ours(self.incarnation),
            self.processes_per_tree,
            KillBehaviour {
                kills_needed: 1,
                ..KillBehaviour::default()
            },
        )?;
        let exit = w.watch_tree(pgid, gen).ok_or_else(|| {
            BackendError::new("launch", BackendErrorKind::Launch, "exited during launch")
        })?;
        Ok(SimProcess {
            id: spec.id,
            pgid,
            gen,
            dir: spec.dir.clone(),
            exit,
        })
    }

    async fn kill(&self, p: &SimProcess, stage: KillStage) -> Result<(), BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("kill")?;
        // Like a real child handle: never signal a group whose leader we saw exit.
        if w.tree_alive(p.pgid, p.gen) {
            w.signal_group(p.pgid, p.gen, stage);
            w.complete_death(p.pgid, p.gen);
        }
        Ok(())
    }

    async fn wait_gone(&self, p: &SimProcess) {
        let mut rx = p.exit.clone();
        let _ = rx.wait_for(|v| v.is_some()).await;
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
        let mut w = lock(&self.world);
        if w.tree_alive(p.pgid, p.gen) {
            w.signal_group(p.pgid, p.gen, KillStage::Force);
            w.complete_death(p.pgid, p.gen);
        }
    }

    async fn memory(&self, p: &SimProcess) -> Option<MemoryUsage> {
        let w = lock(&self.world);
        let t = w.tree(p.pgid, p.gen)?;
        Some(MemoryUsage {
            rss_bytes: w.tree_rss(t),
            pss_bytes: 0,
            processes: t.pids.len() as u32,
        })
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("find_orphans")?;
        Ok(w.find_orphans(dir))
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("kill_orphan")?;
        Ok(w.kill_orphan(orphan))
    }
}

/// [`Filesystem`] over a [`World`].
#[derive(Clone, Debug)]
pub struct SimFs {
    world: Arc<Mutex<World>>,
    incarnation: u32,
}

struct MarkerGuard {
    world: Weak<Mutex<World>>,
    path: PathBuf,
}

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        if let Some(w) = self.world.upgrade() {
            lock(&w).unlock_marker(&self.path);
        }
    }
}

#[async_trait]
impl Filesystem for SimFs {
    fn current_uid(&self) -> u32 {
        lock(&self.world).config().uid
    }

    async fn create_dir(&self, path: &Path) -> Result<(), BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("create_dir")?;
        w.create_dir(path, Owner::Ours(self.incarnation))
    }

    async fn list_prefixed(
        &self,
        root: &Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("list")?;
        Ok(w.list_prefixed(root, prefix))
    }

    async fn remove_dir_all(&self, path: &Path) -> Result<(), BackendError> {
        self.remove_dir_all_sync(path)
    }

    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("remove_dir_all")?;
        w.remove_dir_all(path)
    }

    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("remove_dead_marker")?;
        w.remove_dead_marker(path)
    }

    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("lock_marker")?;
        let holder = match w.server() {
            Some(h) => h,
            None => w.spawn_server().ok_or_else(|| {
                BackendError::new("lock_marker", BackendErrorKind::Other, "no pid for server")
            })?,
        };
        w.lock_marker(path, holder, Owner::Ours(self.incarnation))?;
        Ok(MarkerLock(Box::new(MarkerGuard {
            world: Arc::downgrade(&self.world),
            path: path.to_owned(),
        })))
    }

    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("probe_marker")?;
        w.probe_marker(path)
    }

    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        let mut w = lock(&self.world);
        w.backend_op("probe_profile")?;
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
