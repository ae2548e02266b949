//! Memory measurement: one [`ProcessLauncher::memory`] call per live session, all at
//! once, never under the pool's lock; and the sampler task that feeds a round to the
//! machine every `memory_interval` while a memory limit is set.
//!
//! Each call runs in its own task on the pool's runtime, wrapped in [`catch`]: a call
//! that panics is counted and its session torn down as crashed (the pool can no longer
//! account for its memory); a call still running when the round's deadline comes is
//! abandoned (its task aborted) and that session simply has no figure this round. The
//! sampler task itself is restarted after a panic, one interval later, so a broken
//! backend costs at most one round per interval and never wedges the pool.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::task::JoinSet;

use super::exec::Inner;
use super::supervise::catch;
use crate::backend::{MemoryUsage, ProcessLauncher};
use crate::machine::Input;
use crate::session::SessionId;
use crate::time::Timestamp;

impl<L: ProcessLauncher> Inner<L> {
    /// Measure every launched session's process tree concurrently, in id order. Calls
    /// not finished by `deadline` are abandoned. The pool's lock is held only to list
    /// the sessions.
    pub(super) async fn measure(
        self: &Arc<Self>,
        deadline: Option<Timestamp>,
    ) -> Vec<(SessionId, MemoryUsage)> {
        let mut procs: Vec<(SessionId, Arc<L::Process>)> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter_map(|(id, s)| s.process.clone().map(|p| (*id, p)))
                .collect()
        };
        // Started in id order, so that a deterministic runtime runs them in that order.
        procs.sort_by_key(|(id, _)| *id);
        let mut calls = JoinSet::new();
        for (id, p) in procs {
            let launcher = self.launcher.clone();
            calls.spawn_on(
                async move { (id, catch(async move { launcher.memory(&p).await }).await) },
                &self.handle,
            );
        }
        let mut out = Vec::new();
        loop {
            let next = match deadline {
                Some(at) => tokio::select! {
                    biased;
                    r = calls.join_next() => r,
                    _ = self.clock.sleep_until(at) => {
                        tracing::warn!(unfinished = calls.len(),
                            "memory measurements still running at the end of the round; skipped");
                        break;
                    }
                },
                None => calls.join_next().await,
            };
            match next {
                None => break,
                Some(Ok((id, Ok(Some(m))))) => out.push((id, m)),
                Some(Ok((_, Ok(None)))) | Some(Err(_)) => {}
                Some(Ok((id, Err(msg)))) => {
                    self.note_panic("memory", Some(id), &msg);
                    self.feed(Input::Exited {
                        id,
                        exit: format!("unknown: measuring its memory panicked: {msg}"),
                    });
                }
            }
        }
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

/// Whether `config` asks for memory sampling.
pub(super) fn wanted(config: &crate::PoolConfig) -> bool {
    config.memory_budget.is_some() || config.max_session_memory.is_some()
}

/// Run the sampler until the pool is gone, restarting it one interval after a panic.
pub(super) async fn supervise<L: ProcessLauncher>(weak: Weak<Inner<L>>) {
    loop {
        let Err(msg) = catch(run(weak.clone())).await else {
            return;
        };
        let Some(inner) = weak.upgrade() else { return };
        inner.note_panic("memory sampler", None, &msg);
        let at = inner
            .clock
            .now()
            .saturating_add(inner.config.memory_interval);
        let clock = inner.clock.clone();
        drop(inner);
        clock.sleep_until(at).await;
    }
}

/// Every `memory_interval`: measure all sessions (the round may take at most one
/// interval) and feed the figures to the machine as one [`Input::Memory`].
async fn run<L: ProcessLauncher>(weak: Weak<Inner<L>>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let next = inner
            .clock
            .now()
            .saturating_add(inner.config.memory_interval);
        let shutting_down = inner.lock().machine.is_shutting_down();
        if shutting_down {
            return;
        }
        let samples = inner.measure(Some(next)).await;
        if !samples.is_empty() {
            inner.feed(Input::Memory { samples });
        }
        let clock = inner.clock.clone();
        // Dropping the pool aborts this task; holding the Arc while asleep is not needed.
        drop(inner);
        clock.sleep_until(next).await;
    }
}
