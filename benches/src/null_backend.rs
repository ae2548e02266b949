//! A no-op [`ProcessLauncher`] for measuring the pool's own overhead.
//!
//! `browserpool::testing::FakeLauncher` is a test double: besides launching, it keeps a
//! map of every process and, on each launch, prunes the dead ones to maintain its
//! `peak_alive` gauge, which costs O(live sessions) per launch. With 100 000 live
//! sessions that made building the touch fixture take minutes and a pool cycle cost
//! milliseconds, all of it in the test double. [`NullLauncher`] does nothing but what
//! the trait requires: a launch allocates one process cell, a kill marks it dead.

use std::path::Path;

use async_trait::async_trait;
use browserpool::{BackendError, KillStage, LaunchSpec, Orphan, ProcessLauncher};
use tokio::sync::watch;

/// A launcher whose browsers are a flag: alive until killed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullLauncher;

/// A [`NullLauncher`] browser.
#[derive(Debug)]
pub struct NullProcess {
    dead: watch::Sender<bool>,
}

impl NullProcess {
    /// Whether it is still alive.
    pub fn is_alive(&self) -> bool {
        !*self.dead.borrow()
    }

    fn die(&self) {
        self.dead.send_replace(true);
    }

    async fn wait_dead(&self) {
        let mut rx = self.dead.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

#[async_trait]
impl ProcessLauncher for NullLauncher {
    type Process = NullProcess;

    async fn launch(&self, _spec: &LaunchSpec) -> Result<NullProcess, BackendError> {
        let (dead, _) = watch::channel(false);
        Ok(NullProcess { dead })
    }

    async fn kill(&self, process: &NullProcess, _stage: KillStage) -> Result<(), BackendError> {
        process.die();
        Ok(())
    }

    async fn wait_gone(&self, process: &NullProcess) {
        process.wait_dead().await;
    }

    async fn exited(&self, process: &NullProcess) -> String {
        process.wait_dead().await;
        "killed".to_owned()
    }

    fn kill_on_drop(&self, process: &NullProcess) {
        process.die();
    }

    async fn find_orphans(&self, _dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        Ok(Vec::new())
    }

    async fn kill_orphan(&self, _orphan: &Orphan) -> Result<bool, BackendError> {
        Ok(false)
    }
}
