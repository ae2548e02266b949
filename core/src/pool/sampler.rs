//! Memory measurement: one [`ProcessLauncher::memory_of_all`] call per round for every
//! live session, never under the pool's lock; and the sampler task that feeds a round to
//! the machine every `memory_interval` while a memory limit is set.
//!
//! The round runs in its own task on the pool's runtime, wrapped in [`catch`]:
//! - a round still running when its deadline comes is abandoned (its task aborted) and no
//!   session has a figure that round;
//! - a round that panics is counted (one panic) and measured again at once, one
//!   [`ProcessLauncher::memory`] call per session, all concurrently, each in its own task
//!   and under the same deadline: a session whose own call panics is counted again and
//!   torn down as crashed (the pool can no longer account for its memory), a call still
//!   running at the deadline is abandoned and that session simply has no figure. So a
//!   backend whose batched measurement is broken costs per-session measurements (and one
//!   counted panic) per round, never figures, and a session that cannot be measured is
//!   still named.
//!
//! The sampler task itself is restarted after a panic, one interval later, so a broken
//! backend costs at most one round per interval and never wedges the pool.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::task::{JoinError, JoinSet};

use super::exec::Inner;
use super::supervise::catch;
use crate::backend::{MemoryUsage, ProcessLauncher};
use crate::machine::Input;
use crate::session::SessionId;
use crate::time::Timestamp;

impl<L: ProcessLauncher> Inner<L> {
    /// Measure every launched session's process tree with one batched backend call, in
    /// id order (results too). Not finished by `deadline`: abandoned, no figures. A
    /// panicking batch falls back to [`Inner::measure_each`] (see the module doc). The
    /// pool's lock is held only to list the sessions.
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
        if procs.is_empty() {
            return Vec::new();
        }
        procs.sort_by_key(|(id, _)| *id);
        let batch: Vec<Arc<L::Process>> = procs.iter().map(|(_, p)| p.clone()).collect();
        let launcher = self.launcher.clone();
        let mut call = JoinSet::new();
        call.spawn_on(
            catch(async move { launcher.memory_of_all(&batch).await }),
            &self.handle,
        );
        let figures = match self.next_before(&mut call, deadline).await {
            Some(Ok(Ok(figures))) => figures,
            Some(Ok(Err(msg))) => {
                self.note_panic("memory_of_all", None, &msg);
                return self.measure_each(procs, deadline).await;
            }
            // Cancelled (the runtime is shutting down) or past the deadline.
            Some(Err(_)) | None => return Vec::new(),
        };
        if figures.len() != procs.len() {
            tracing::warn!(
                sessions = procs.len(),
                figures = figures.len(),
                "memory_of_all answered a different number of figures than sessions; missing ones are read as unmeasured"
            );
        }
        procs
            .iter()
            .zip(figures)
            .filter_map(|((id, _), m)| m.map(|m| (*id, m)))
            .collect()
    }

    /// Today's fallback after a panicking batch: one [`ProcessLauncher::memory`] call per
    /// session (`procs`, in id order), each in its own task, all at once, until
    /// `deadline`. A call that panics tears its session down as crashed.
    async fn measure_each(
        self: &Arc<Self>,
        procs: Vec<(SessionId, Arc<L::Process>)>,
        deadline: Option<Timestamp>,
    ) -> Vec<(SessionId, MemoryUsage)> {
        let mut calls = JoinSet::new();
        // Started in id order, so that a deterministic runtime runs them in that order.
        for (id, p) in procs {
            let launcher = self.launcher.clone();
            calls.spawn_on(
                async move { (id, catch(async move { launcher.memory(&p).await }).await) },
                &self.handle,
            );
        }
        let mut out = Vec::new();
        while let Some(next) = self.next_before(&mut calls, deadline).await {
            match next {
                Ok((id, Ok(Some(m)))) => out.push((id, m)),
                Ok((_, Ok(None))) | Err(_) => {}
                Ok((id, Err(msg))) => {
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

    /// The next of `calls` to finish, or `None` once all have or `deadline` has come
    /// (then the unfinished ones are left to be aborted when `calls` is dropped).
    async fn next_before<T: 'static>(
        &self,
        calls: &mut JoinSet<T>,
        deadline: Option<Timestamp>,
    ) -> Option<Result<T, JoinError>> {
        match deadline {
            Some(at) => tokio::select! {
                biased;
                r = calls.join_next() => r,
                _ = self.clock.sleep_until(at) => {
                    tracing::warn!(unfinished = calls.len(),
                        "memory measurements still running at the end of the round; skipped");
                    None
                }
            },
            None => calls.join_next().await,
        }
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
