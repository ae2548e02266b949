//! The single reaper task: it feeds the machine its deadlines, refreshes
//! the coarse activity clock every `tick` while anything reads it, and is restarted if
//! it panics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;

use super::exec::Inner;
use super::supervise::{catch, REAPER_RESTARTS_IN_A_ROW};
use crate::backend::ProcessLauncher;
use crate::config::CapacityPolicy;
use crate::time::{Clock, Timestamp};

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

/// Whether activity stamps can matter now, so the coarse clock must stay within a tick:
/// some session is live and something reads its stamps (idle reaping, LRU eviction, or
/// an owner's grace period that is still running).
fn stamps_read<L: ProcessLauncher>(inner: &Inner<L>, live: usize, now: Timestamp) -> bool {
    let c = &inner.config;
    live > 0
        && (c.idle_timeout.is_some()
            || c.capacity_policy == CapacityPolicy::EvictLru
            || now.0 < inner.release_until.load(Ordering::Acquire))
}

/// The reaper proper. Each round: refresh the coarse clock, act on due deadlines and
/// then sleep until the next deadline. While stamps are read it wakes every
/// tick to refresh the coarse clock; those ticks take no lock, and a change to the
/// machine (seen through `changes`) or a due deadline ends the round within a tick. When
/// no stamp can matter (no live session, or nothing reads them), it sleeps until the
/// next deadline or until the pool wakes it. When stamps could matter but nobody read
/// the coarse clock for a whole tick and no request waits, it stops ticking until the
/// next read of the clock (see [`CoarseClock`](crate::time::CoarseClock)), a change or
/// the next deadline.
async fn run<L: ProcessLauncher>(weak: Weak<Inner<L>>, rounds: &AtomicU64) {
    let mut spin = SpinGuard::default();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let now = inner.clock.now();
        inner.coarse.refresh(now);
        {
            let mut st = inner.lock();
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
        // Listen before reading the next deadline, so that a change made by another task
        // from here on wakes us (every change goes through `dispatch`, which notifies and
        // counts; our own dispatch above has already done both).
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (next, live, waiting, seen) = {
            let st = inner.lock();
            let seen = inner.changes.load(Ordering::Acquire);
            let m = &st.machine;
            (m.poll_timeout(), m.live_count(), m.waiting_count(), seen)
        };
        let clock = inner.clock.clone();
        // Holding the Arc while asleep is fine: dropping the Pool aborts this task.
        if !stamps_read(&inner, live, now) {
            spin.before_sleep(next.is_some_and(|n| n <= now), next, rounds);
            tokio::select! {
                biased;
                _ = notified => {}
                _ = sleep_until_next(&*clock, next) => check_slept(clock.now(), next),
            }
            rounds.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut now = now;
        loop {
            let tick = now.saturating_add(inner.config.tick);
            let until = next.map_or(tick, |n| n.min(tick));
            spin.before_sleep(until <= now, next, rounds);
            clock.sleep_until(until).await;
            now = clock.now();
            check_slept(now, Some(until));
            rounds.fetch_add(1, Ordering::Relaxed);
            let unread = inner.coarse.refresh_armed(now);
            if next.is_some_and(|n| n <= now)
                || inner.changes.load(Ordering::Acquire) > seen
                || inner.closed.load(Ordering::Acquire)
            {
                break;
            }
            if unread && waiting == 0 {
                // Nobody read the clock for a whole tick and no request waits: stop
                // ticking until the next read (which gets the real time, see
                // `CoarseClock`), a change, or the next deadline.
                let read = inner.coarse.read();
                tokio::pin!(read);
                if inner.coarse.is_armed() {
                    tokio::select! {
                        biased;
                        _ = &mut notified => {}
                        _ = &mut read => {}
                        _ = sleep_until_next(&*clock, next) => {}
                    }
                }
                break;
            }
        }
    }
}

/// Rounds in a row whose sleep could not wait (its target was already past) after which
/// the reaper is known to spin.
const SPIN_ROUNDS: u32 = 1000;

/// Catches a reaper that spins. A round whose deadline is already past does not wait;
/// it handles that deadline, so the next round waits again. Rounds that never wait mean
/// a deadline that stays due although it is handled: a bug (in the machine or here)
/// that would otherwise hold a core and the pool's lock forever. After
/// [`SPIN_ROUNDS`] of them in a row the reaper panics, as a run that made no progress,
/// so that [`supervise`] counts it and, when it repeats, marks the pool unhealthy.
#[derive(Default)]
struct SpinGuard {
    in_a_row: u32,
}

impl SpinGuard {
    fn before_sleep(&mut self, past: bool, next: Option<Timestamp>, rounds: &AtomicU64) {
        if !past {
            self.in_a_row = 0;
            return;
        }
        self.in_a_row += 1;
        if self.in_a_row >= SPIN_ROUNDS {
            rounds.store(0, Ordering::Relaxed);
            panic!(
                "the reaper spins: deadline {next:?} is still due after {SPIN_ROUNDS} \
                 rounds that handled it"
            );
        }
    }
}

/// After a sleep on the pool's clock until `deadline` (`None`: forever) returned at
/// `now`: a clock that returns early breaks [`Clock`]'s contract and would make the
/// reaper spin at full speed, so that is a panic, which [`supervise`] counts and, when
/// it repeats, turns into an unhealthy pool that says why.
fn check_slept(now: Timestamp, deadline: Option<Timestamp>) {
    if deadline.is_none_or(|d| now < d) {
        panic!(
            "the pool's Clock returned from sleep_until({deadline:?}) at {now:?}, before the \
             deadline: Clock::sleep_until must never return early"
        );
    }
}

/// Sleep until `next`, or forever when there is no next deadline.
async fn sleep_until_next(clock: &dyn Clock, next: Option<Timestamp>) {
    match next {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_spin_guard_fires_on_the_thousandth_round_in_a_row_that_cannot_wait() {
        let rounds = AtomicU64::new(7);
        let mut g = SpinGuard::default();
        let at = Some(Timestamp(5));
        for _ in 0..3 {
            // Rounds that wait reset the count, however many past ones came before.
            for _ in 0..SPIN_ROUNDS - 1 {
                g.before_sleep(true, at, &rounds);
            }
            g.before_sleep(false, at, &rounds);
        }
        for _ in 0..SPIN_ROUNDS - 1 {
            g.before_sleep(true, at, &rounds);
        }
        assert_eq!(rounds.load(Ordering::Relaxed), 7);
        let fired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.before_sleep(true, at, &rounds)
        }));
        assert!(fired.is_err());
        // Counted by the supervisor as a run that made no progress.
        assert_eq!(rounds.load(Ordering::Relaxed), 0);
    }
}
