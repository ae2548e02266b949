//! The Drop safety net: whatever owns a live browser kills its tree and removes its
//! directory when it is dropped without an explicit close.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::{Filesystem, ProcessLauncher};
use crate::error::{BackendError, BackendErrorKind};
use crate::pool::supervise::sync;

/// Run blocking cleanup from a `Drop` without stalling an async worker where that can be
/// avoided, and without ever panicking:
///
/// - on a multi-thread tokio runtime worker: `block_in_place`, so the worker's other tasks
///   move to another thread while the cleanup runs;
/// - while unwinding from a panic, on a current-thread runtime, or outside any runtime:
///   inline. A current-thread runtime has no other thread to hand work to, and a
///   detached thread could be cut off by process exit, leaking what it was to clean.
pub fn run_blocking_cleanup(f: impl FnOnce()) {
    if std::thread::panicking() {
        f();
        return;
    }
    let multi = matches!(
        tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread)
    );
    if !multi {
        f();
        return;
    }
    let mut job = Some(f);
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::block_in_place(|| {
            if let Some(f) = job.take() {
                f();
            }
        })
    }));
    // block_in_place refuses (panics before running the job) inside a LocalSet; the job is
    // still here then, so run it inline.
    if let (Err(_), Some(f)) = (attempt, job.take()) {
        f();
    }
}

/// Owns the cleanup duty for one session: its process (once launched) and its directory.
///
/// Dropped while armed, it kills the process tree through
/// [`ProcessLauncher::kill_on_drop`] and removes the directory through
/// [`Filesystem::remove_dir_all_sync`], via [`run_blocking_cleanup`]. The normal teardown
/// path disarms it step by step as the processes are confirmed gone and the directory
/// removed, so it never acts twice.
pub struct DropNet<L: ProcessLauncher> {
    pub(crate) launcher: Arc<L>,
    pub(crate) fs: Arc<dyn Filesystem>,
    pub(crate) process: Option<Arc<L::Process>>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) recovered: Arc<AtomicU64>,
}

impl<L: ProcessLauncher> DropNet<L> {
    /// The processes are confirmed gone: nothing left to kill.
    pub(crate) fn processes_gone(&mut self) {
        self.process = None;
    }

    /// Everything is cleaned up: the net does nothing on drop.
    pub(crate) fn disarm(&mut self) {
        self.process = None;
        self.dir = None;
    }
}

impl<L: ProcessLauncher> Drop for DropNet<L> {
    fn drop(&mut self) {
        let process = self.process.take();
        let dir = self.dir.take();
        if process.is_none() && dir.is_none() {
            return;
        }
        let (launcher, fs) = (&self.launcher, &self.fs);
        // A backend that panics here, possibly while unwinding, would abort the process.
        run_blocking_cleanup(|| {
            if let Some(p) = &process {
                if let Err(msg) = sync(|| launcher.kill_on_drop(p)) {
                    tracing::error!(dir = ?dir, panic = %msg, "drop safety net: kill_on_drop panicked");
                }
            }
            if let Some(d) = &dir {
                let r = sync(|| fs.remove_dir_all_sync(d)).unwrap_or_else(|msg| {
                    Err(BackendError::new(
                        "remove_dir_all_sync",
                        BackendErrorKind::Other,
                        format!("panicked: {msg}"),
                    ))
                });
                if let Err(e) = r {
                    tracing::error!(dir = %d.display(), error = %e,
                        "drop safety net could not remove session directory; the next start's sweep will");
                }
            }
        });
        if process.is_some() {
            self.recovered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(dir = ?dir, "drop safety net killed a browser that was never closed");
        }
    }
}
