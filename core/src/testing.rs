//! Test doubles: a scriptable in-process [`ProcessLauncher`] and a no-op [`Filesystem`].
//!
//! They exist for this crate's tests, for benchmarks that must measure the pool without
//! a browser, and for server authors who want to unit-test their own code against a
//! [`Pool`](crate::Pool) without Chromium. The full simulated world lives in
//! `browserpool-sim`; the real backend in `browserpool-chrome`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::backend::{
    DirEntryInfo, Filesystem, KillStage, LaunchSpec, MarkerLock, MarkerState, MemoryUsage, Orphan,
    ProcessLauncher, ProfileProbe,
};
use crate::error::{BackendError, BackendErrorKind};
use crate::session::SessionId;

/// A fake browser: alive until killed (or crashed by the test).
#[derive(Debug)]
pub struct FakeProcess(Arc<FakeProc>);

impl std::ops::Deref for FakeProcess {
    type Target = FakeProc;
    fn deref(&self) -> &FakeProc {
        &self.0
    }
}

/// The shared state of a [`FakeProcess`].
#[derive(Debug)]
pub struct FakeProc {
    /// The session it was launched for.
    pub id: SessionId,
    /// Its directory.
    pub dir: PathBuf,
    alive: watch::Sender<Option<String>>,
    kills_to_die: AtomicU32,
    live_count: Arc<AtomicU64>,
}

impl FakeProc {
    /// Whether it is still alive.
    pub fn is_alive(&self) -> bool {
        self.alive.borrow().is_none()
    }

    fn die(&self, how: &str) {
        let died = self.alive.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(how.to_owned());
                true
            } else {
                false
            }
        });
        if died {
            self.live_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct FakeState {
    processes: BTreeMap<SessionId, Arc<FakeProc>>,
    fail_launches: u32,
    stubborn_kills: u32,
    orphans: BTreeMap<PathBuf, Vec<Orphan>>,
    killed_orphans: Vec<Orphan>,
    fail_orphan_kills: bool,
}

/// A scriptable launcher. Clones share state, so a test keeps one clone to steer and
/// inspect while the pool owns another.
#[derive(Clone, Default)]
pub struct FakeLauncher {
    state: Arc<Mutex<FakeState>>,
    launch_delay: Arc<Mutex<Duration>>,
    /// Number of `launch` calls.
    pub launches: Arc<AtomicU64>,
    /// Number of `kill_on_drop` calls that found a live process.
    pub drop_kills: Arc<AtomicU64>,
    /// The most fake browsers ever alive at once.
    pub peak_alive: Arc<AtomicU64>,
    live_count: Arc<AtomicU64>,
    /// Whether the launcher should write a file into each session directory at launch
    /// (to prove removal works on a non-empty directory).
    pub write_files: Arc<AtomicBool>,
}

impl FakeLauncher {
    /// A launcher whose launches succeed at once.
    pub fn new() -> Self {
        Self::default()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the next `n` launches fail.
    pub fn fail_next_launches(&self, n: u32) {
        self.st().fail_launches = n;
    }

    /// Make each launch take `d` (on tokio's clock, so paused time applies).
    pub fn set_launch_delay(&self, d: Duration) {
        *self.launch_delay.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    /// Processes launched from now on survive the first `n` forced kills.
    pub fn set_stubborn_kills(&self, n: u32) {
        self.st().stubborn_kills = n;
    }

    /// Simulate the browser of `id` exiting by itself.
    pub fn crash(&self, id: SessionId, how: &str) -> bool {
        match self.st().processes.get(&id) {
            Some(p) if p.is_alive() => {
                p.die(how);
                true
            }
            _ => false,
        }
    }

    /// Sessions whose fake browser is alive, in id order.
    pub fn alive(&self) -> Vec<SessionId> {
        self.st()
            .processes
            .iter()
            .filter(|(_, p)| p.is_alive())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Declare processes that `find_orphans(dir)` will report.
    pub fn add_orphans(&self, dir: &Path, orphans: Vec<Orphan>) {
        self.st().orphans.insert(dir.to_owned(), orphans);
    }

    /// Make `kill_orphan` fail (as if signalling were refused) until called with `false`.
    pub fn fail_orphan_kills(&self, fail: bool) {
        self.st().fail_orphan_kills = fail;
    }

    /// Orphans killed by sweeps so far.
    pub fn killed_orphans(&self) -> Vec<Orphan> {
        self.st().killed_orphans.clone()
    }
}

#[async_trait]
impl ProcessLauncher for FakeLauncher {
    type Process = FakeProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<FakeProcess, BackendError> {
        self.launches.fetch_add(1, Ordering::Relaxed);
        let delay = *self.launch_delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (stubborn, fail) = {
            let mut st = self.st();
            let fail = st.fail_launches > 0;
            if fail {
                st.fail_launches -= 1;
            }
            (st.stubborn_kills, fail)
        };
        if fail {
            return Err(BackendError::new(
                "launch",
                BackendErrorKind::Launch,
                "scripted launch failure",
            ));
        }
        if self.write_files.load(Ordering::Relaxed) {
            let _ = std::fs::write(spec.dir.join("Preferences"), b"{}");
        }
        let (tx, _) = watch::channel(None);
        let p = Arc::new(FakeProc {
            id: spec.id,
            dir: spec.dir.clone(),
            alive: tx,
            kills_to_die: AtomicU32::new(stubborn + 1),
            live_count: self.live_count.clone(),
        });
        let alive = self.live_count.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_alive.fetch_max(alive, Ordering::Relaxed);
        {
            // Forget dead processes now and then, so the map stays O(live), amortised O(1).
            let mut st = self.st();
            st.processes.insert(spec.id, p.clone());
            if st.processes.len() as u64 > 2 * alive + 64 {
                st.processes.retain(|_, p| p.is_alive());
            }
        }
        Ok(FakeProcess(p))
    }

    async fn kill(&self, process: &FakeProcess, stage: KillStage) -> Result<(), BackendError> {
        if stage == KillStage::Force && process.kills_to_die.fetch_sub(1, Ordering::AcqRel) <= 1 {
            process.die("killed by signal 9");
        }
        Ok(())
    }

    async fn wait_gone(&self, process: &FakeProcess) {
        let mut rx = process.alive.subscribe();
        let _ = rx.wait_for(|v| v.is_some()).await;
    }

    async fn exited(&self, process: &FakeProcess) -> String {
        let mut rx = process.alive.subscribe();
        let exit = rx
            .wait_for(|v| v.is_some())
            .await
            .map(|v| v.clone().unwrap_or_default());
        match exit {
            Ok(how) => how,
            Err(_) => std::future::pending().await,
        }
    }

    fn kill_on_drop(&self, process: &FakeProcess) {
        if process.is_alive() {
            self.drop_kills.fetch_add(1, Ordering::Relaxed);
        }
        process.die("killed by signal 9 (drop)");
    }

    async fn memory(&self, process: &FakeProcess) -> Option<MemoryUsage> {
        process.is_alive().then_some(MemoryUsage {
            rss_bytes: 100 << 20,
            pss_bytes: 80 << 20,
            processes: 11,
        })
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        Ok(self.st().orphans.remove(dir).unwrap_or_default())
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        let mut st = self.st();
        if st.fail_orphan_kills {
            return Err(BackendError::new(
                "kill_orphan",
                BackendErrorKind::PermissionDenied,
                "scripted kill failure",
            )
            .at(&orphan.dir));
        }
        st.killed_orphans.push(orphan.clone());
        Ok(true)
    }
}

/// A filesystem that stores nothing and always succeeds: for benchmarks of the pool's
/// own overhead. Markers are always reported dead, listings empty, and no directory
/// holds a profile.
#[derive(Clone, Debug, Default)]
pub struct NullFs;

#[async_trait]
impl Filesystem for NullFs {
    fn current_uid(&self) -> u32 {
        0
    }
    async fn create_dir(&self, _: &Path) -> Result<(), BackendError> {
        Ok(())
    }
    async fn list_prefixed(&self, _: &Path, _: &str) -> Result<Vec<DirEntryInfo>, BackendError> {
        Ok(Vec::new())
    }
    async fn remove_dir_all(&self, _: &Path) -> Result<(), BackendError> {
        Ok(())
    }
    fn remove_dir_all_sync(&self, _: &Path) -> Result<(), BackendError> {
        Ok(())
    }
    async fn remove_dead_marker(&self, _: &Path) -> Result<bool, BackendError> {
        Ok(true)
    }
    async fn lock_marker(&self, _: &Path) -> Result<MarkerLock, BackendError> {
        Ok(MarkerLock(Box::new(())))
    }
    async fn probe_marker(&self, _: &Path) -> Result<MarkerState, BackendError> {
        Ok(MarkerState::Dead)
    }
    async fn probe_profile(&self, _: &Path) -> Result<ProfileProbe, BackendError> {
        // Stores nothing, so nothing there is a profile: a legacy name is never removed.
        Ok(ProfileProbe {
            age: Duration::ZERO,
            layout: None,
        })
    }
}
