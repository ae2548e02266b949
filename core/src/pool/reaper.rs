//! The single reaper task: it refreshes the coarse activity clock every `tick`, feeds the
//! machine its deadlines and retire hints, and is restarted if it panics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;

use super::exec::{lock, Inner};
use super::supervise::{catch, REAPER_RESTARTS_IN_A_ROW};
use crate::backend::ProcessLauncher;
use crate::machine::Input;

/// Run the reaper, restarting it after a panic. If it panics
/// [`REAPER_RESTARTS_IN_A_ROW`] times without completing a round in between, the
/// failure is not transient (a clock or machine that panics every time): the pool is
/// marked unhealthy instead of spinning, and refuses new sessions from then on.
pub(super) async fn supervise<L: ProcessLauncher>(weak: Weak<Inner<L>>) {
    let mut in_a_row = 0;
    loop {
        let rounds = AtomicU64::new(0);
        let result = catch(run(weak.clone(), &rounds)).await;
        let Err(msg) = result else { return };
        let Some(inner) = weak.upgrade() else { return };
        in_a_row = if rounds.load(Ordering::Relaxed) > 0 {
            1
        } else {
            in_a_row + 1
        };
        inner.supervision.count_panic();
        let restarts = inner
            .supervision
            .reaper_restarts
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if in_a_row >= REAPER_RESTARTS_IN_A_ROW {
            inner.supervision.set_unhealthy(format!(
                "the reaper task panicked {in_a_row} times in a row (last: {msg}); idle \
                 sessions are no longer reaped: shut the pool down and build a new one"
            ));
            return;
        }
        tracing::error!(panic = %msg, restarts, "the reaper task panicked; restarting it");
        drop(inner);
        tokio::task::yield_now().await;
    }
}

/// The reaper proper. Each round: refresh the coarse clock, act on due deadlines and
/// retire hints, then sleep until the next deadline or tick. Ticks in between that have
/// nothing due only refresh the coarse clock, without taking the pool's lock.
async fn run<L: ProcessLauncher>(weak: Weak<Inner<L>>, rounds: &AtomicU64) {
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
        // from here on wakes us (our own dispatch above has already notified). Every
        // change to the machine goes through `dispatch`, which notifies.
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = inner.lock().machine.poll_timeout();
        let clock = inner.clock.clone();
        let mut now = now;
        // Holding the Arc while asleep is fine: dropping the Pool aborts this task.
        loop {
            let tick = now.saturating_add(inner.config.tick);
            let until = next.map_or(tick, |n| n.min(tick));
            tokio::select! {
                biased;
                _ = notified.as_mut() => break,
                _ = clock.sleep_until(until) => {}
            }
            rounds.fetch_add(1, Ordering::Relaxed);
            now = clock.now();
            if next.is_some_and(|n| n <= now) || inner.closed.load(Ordering::Acquire) {
                break;
            }
            inner.coarse.refresh(now);
        }
    }
}
