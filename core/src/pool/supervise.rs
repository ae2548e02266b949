//! Supervision: a panic in a backend call or a worker task becomes a failure the machine
//! understands, never a leaked slot or a session stuck in a phase nobody drives.
//!
//! The pool's I/O runs in tasks it spawns (launch, kill, remove, exit watch) and in the
//! reaper task. A panic in any of them is caught by [`catch`], counted in
//! [`PoolStats::panics`](crate::PoolStats::panics), logged at `error` with the session,
//! and reported to the machine as the failure of that step (see the Decisions section of
//! the README for the mapping). Synchronous backend calls made from `Drop`
//! ([`sync`]) are caught too, since a panic there while unwinding would abort the
//! process.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

/// A future that resolves to `Err(message)` instead of unwinding when `F` panics.
pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

/// Run `f` to completion, turning a panic into `Err(message)`.
pub(crate) fn catch<F: Future>(f: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(f))
}

/// Call `f`, turning a panic into `Err(message)`.
pub(crate) fn sync<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// How many times in a row the reaper may panic before a full round completes, before
/// the pool gives up restarting it and declares itself unhealthy.
pub(crate) const REAPER_RESTARTS_IN_A_ROW: u64 = 5;

/// Panic counters and the pool's health.
#[derive(Debug, Default)]
pub(crate) struct Supervision {
    /// Panics caught in backend calls and worker tasks.
    pub(crate) panics: AtomicU64,
    /// Times the reaper task was restarted after a panic.
    pub(crate) reaper_restarts: AtomicU64,
    /// Why the pool stopped serving, once its reaper could not be kept running.
    unhealthy: Mutex<Option<String>>,
}

impl Supervision {
    /// Why the pool is unhealthy, if it is.
    pub(crate) fn unhealthy(&self) -> Option<String> {
        self.unhealthy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_unhealthy(&self, reason: String) {
        tracing::error!(reason = %reason, "pool unhealthy: new sessions are refused");
        *self.unhealthy.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub(crate) fn count_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_messages() {
        assert_eq!(sync(|| 1), Ok(1));
        assert_eq!(
            sync(|| -> u32 { panic!("boom {}", 7) }),
            Err("boom 7".to_owned())
        );
        assert_eq!(
            sync(|| std::panic::panic_any(42u8)),
            Err("a panic with a non-string payload".to_owned())
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let r = rt.block_on(catch(async {
            tokio::task::yield_now().await;
            panic!("late")
        }));
        assert_eq!(r, Err::<(), _>("late".to_owned()));
        assert_eq!(rt.block_on(catch(async { 5 })), Ok(5));
    }
}
