//! The memory budget: what the machine knows of each session's memory, and the
//! decisions made from it (`memory_budget`, `max_session_memory`).
//!
//! The shell measures every live session's process tree every `memory_interval` and
//! feeds the figures as one [`Input::Memory`](super::Input::Memory). The machine keeps
//! the last figure per live session and decides:
//!
//! - **Over the budget**: the least-recently-active idle sessions (ready spares first,
//!   then LRU order) are torn down with [`EndReason::Memory`] until the projected total
//!   is within the budget. A busy session is never chosen. The last session is never
//!   torn down for the budget's sake: the pool stays over it and counts that in
//!   [`Totals::over_budget_with_one_session`](crate::Totals::over_budget_with_one_session).
//! - **Over `max_session_memory`**: the session is retired at its next moment without an
//!   operation in flight (re-checked every `tick` while it is busy, like `max_uses`).
//! - **Admission**: before a launch, the projected total plus the estimate for the new
//!   browser must fit; idle sessions are evicted first to make room. If none can be,
//!   the request follows the capacity policy and fails with
//!   [`AcquireError::MemoryBudget`]. A request is always admitted when the pool holds no
//!   session at all (a pool that could never launch would serve nobody).
//! - **Spares** are refilled only while the estimate for one more browser fits.
//!
//! **Which figure**: PSS (proportional set size: shared pages divided among the
//! processes sharing them), which sums to what the host really holds; where a backend
//! reports PSS as 0 (unknown), its RSS is used instead, which overcounts shared pages
//! and so errs on the safe side.
//!
//! **The estimate** for a session not yet measured (launching, or live since the last
//! sample): the median of the *first* samples of the last [`FIRST_SAMPLES`] sessions,
//! i.e. what a browser used up to one `memory_interval` after its launch. 0 until a
//! session was measured. The projected total is the measured sum plus the estimate per
//! unmeasured session; a session torn down stops counting at once (its memory is freed
//! when its kill completes, normally within milliseconds).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::backend::MemoryUsage;
use crate::config::CapacityPolicy;
use crate::error::AcquireError;
use crate::session::{EndReason, MemoryLimit, SessionId};
use crate::time::Timestamp;

use super::index::Timer;
use super::table::Tag;
use super::Lifecycle;

/// How many sessions' first samples the launch estimate is the median of.
pub const FIRST_SAMPLES: usize = 16;

/// The figure a sample counts: PSS, or RSS where PSS is unknown (0).
pub(crate) fn counted_bytes(u: &MemoryUsage) -> u64 {
    if u.pss_bytes > 0 {
        u.pss_bytes
    } else {
        u.rss_bytes
    }
}

/// The last measured memory of every live session, their sum, and the recent first
/// samples the launch estimate is drawn from.
#[derive(Debug, Default)]
pub(super) struct MemoryBook {
    /// Last figure per live session (id order, so every walk is deterministic).
    measured: BTreeMap<SessionId, u64>,
    /// Sum of `measured`.
    sum: u64,
    /// First samples of recent sessions, oldest first, at most [`FIRST_SAMPLES`].
    firsts: VecDeque<u64>,
    /// Live sessions measured over `max_session_memory`, waiting for an idle moment.
    over: BTreeSet<SessionId>,
}

impl MemoryBook {
    /// Record `bytes` for live session `id`.
    fn record(&mut self, id: SessionId, bytes: u64, max_session: Option<u64>) {
        match self.measured.insert(id, bytes) {
            Some(old) => self.sum = self.sum - old + bytes,
            None => {
                self.sum += bytes;
                if self.firsts.len() == FIRST_SAMPLES {
                    self.firsts.pop_front();
                }
                self.firsts.push_back(bytes);
            }
        }
        if max_session.is_some_and(|m| bytes > m) {
            self.over.insert(id);
        } else {
            self.over.remove(&id);
        }
    }

    /// `id` ended (or was never live): it no longer counts.
    #[inline]
    pub(super) fn forget(&mut self, id: SessionId) {
        // Without memory sampling nothing was ever recorded (every teardown calls this).
        if self.measured.is_empty() && self.over.is_empty() {
            return;
        }
        if let Some(old) = self.measured.remove(&id) {
            self.sum -= old;
        }
        self.over.remove(&id);
    }

    /// Summed last figures of the measured live sessions.
    pub(super) fn used(&self) -> u64 {
        self.sum
    }

    /// Measured live sessions.
    fn measured_len(&self) -> usize {
        self.measured.len()
    }

    /// The last figure of `id` (0 if never measured).
    fn of(&self, id: SessionId) -> u64 {
        self.measured.get(&id).copied().unwrap_or(0)
    }

    /// The assumed memory of a browser not yet measured: the median of the recent first
    /// samples (the upper one of the middle two for an even count), 0 without any.
    pub(super) fn estimate(&self) -> u64 {
        let mut v: Vec<u64> = self.firsts.iter().copied().collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    /// Whether `id` was measured over `max_session_memory`.
    pub(super) fn is_over(&self, id: SessionId) -> bool {
        !self.over.is_empty() && self.over.contains(&id)
    }
}

impl Lifecycle {
    /// Whether a memory limit is configured (otherwise samples are ignored).
    fn memory_limited(&self) -> bool {
        self.config.memory_budget.is_some() || self.config.max_session_memory.is_some()
    }

    /// The last measured memory of every live session and ready spare, plus the estimate
    /// for each session launching or live but not yet measured, in bytes.
    pub(super) fn memory_projected(&self) -> u64 {
        let sessions = self.launching + self.by_activity.len() + self.spares.ready_len();
        let unmeasured = sessions.saturating_sub(self.memory.measured_len()) as u64;
        self.memory
            .used()
            .saturating_add(self.memory.estimate().saturating_mul(unmeasured))
    }

    /// Sessions that hold (or will soon hold) memory: launching, live, ready spares.
    fn memory_holders(&self) -> usize {
        self.launching + self.by_activity.len() + self.spares.ready_len()
    }

    /// Whether one more browser fits in the budget without evicting anything.
    pub(super) fn memory_room_for_one(&self) -> bool {
        match self.config.memory_budget {
            None => true,
            Some(budget) => {
                self.memory_holders() == 0
                    || self
                        .memory_projected()
                        .saturating_add(self.memory.estimate())
                        <= budget
            }
        }
    }

    /// Make room in the budget for one more browser, evicting idle sessions (ready
    /// spares first, then least recently active) as needed. Returns whether it fits
    /// now; `false` means every remaining session is busy.
    pub(super) fn memory_admits(&mut self, now: Timestamp) -> bool {
        // One victim per tracked session at most (see `victim_loop_stuck`).
        for _ in 0..=self.occupied {
            if self.memory_room_for_one() {
                return true;
            }
            let Some(victim) = self.spares.take_ready().or_else(|| self.lru_idle(now)) else {
                return false;
            };
            self.end_for_memory(now, victim, MemoryLimit::Budget);
        }
        self.victim_loop_stuck("memory_admits");
        self.memory_room_for_one()
    }

    /// The refusal owed to a request that the budget (not the count) keeps out, if that
    /// is what keeps it out now.
    pub(super) fn memory_refusal(&mut self) -> Option<AcquireError> {
        let budget = self.config.memory_budget?;
        if self.occupied >= self.config.max_browsers || self.memory_room_for_one() {
            return None;
        }
        self.totals.memory_blocked += 1;
        Some(AcquireError::MemoryBudget {
            budget,
            in_use: self.memory_projected(),
            estimate: self.memory.estimate(),
        })
    }

    /// Under `Reject`, whether the request was kept out by memory (then it is refused
    /// with the memory error instead of `AtCapacity`).
    pub(super) fn reject_for_memory(&mut self) -> Option<AcquireError> {
        (self.config.capacity_policy == CapacityPolicy::Reject)
            .then(|| self.memory_refusal())
            .flatten()
    }

    /// Feed one round of memory samples: record them, retire idle sessions over
    /// `max_session_memory`, then bring the pool under `memory_budget`.
    pub(super) fn on_memory(&mut self, now: Timestamp, samples: Vec<(SessionId, MemoryUsage)>) {
        if !self.memory_limited() {
            return;
        }
        let max_session = self.config.max_session_memory;
        for (id, usage) in samples {
            if self.table.hot(id).is_some_and(|h| h.tag == Tag::Live) {
                self.totals.memory_samples += 1;
                self.memory.record(id, counted_bytes(&usage), max_session);
            }
        }
        let over: Vec<SessionId> = self.memory.over.iter().copied().collect();
        for id in over {
            self.check_retire(now, id);
        }
        self.enforce_budget(now);
        // Memory freed by the teardowns above may let a waiting request in.
        if !self.waiters.is_empty() {
            self.serve_waiters(now);
        }
    }

    /// Tear down idle sessions (ready spares first, then least recently active) until
    /// the projected total is within the budget, never a busy one and never the last.
    fn enforce_budget(&mut self, now: Timestamp) {
        let Some(budget) = self.config.memory_budget else {
            return;
        };
        // One victim per tracked session at most (see `victim_loop_stuck`).
        for _ in 0..=self.occupied {
            if self.memory_projected() <= budget {
                return;
            }
            if self.memory_holders() <= 1 {
                self.totals.over_budget_with_one_session += 1;
                tracing::warn!(
                    used = self.memory_projected(),
                    budget,
                    "over memory_budget with one session left; it is kept"
                );
                return;
            }
            let Some(victim) = self.spares.take_ready().or_else(|| self.lru_idle(now)) else {
                tracing::warn!(
                    used = self.memory_projected(),
                    budget,
                    "over memory_budget but every session is busy; none is evicted"
                );
                return;
            };
            self.end_for_memory(now, victim, MemoryLimit::Budget);
        }
        self.victim_loop_stuck("enforce_budget");
    }

    /// Tear `id` down with [`EndReason::Memory`].
    fn end_for_memory(&mut self, now: Timestamp, id: SessionId, limit: MemoryLimit) {
        let pss_bytes = self.memory.of(id);
        tracing::info!(session = %id, pss_bytes, limit = ?limit, "ending session for memory");
        self.teardown(now, id, EndReason::Memory { limit, pss_bytes });
    }

    /// The reason to retire live session `id` for memory, if it is over
    /// `max_session_memory`.
    pub(super) fn memory_retire_reason(&self, id: SessionId) -> Option<EndReason> {
        self.memory.is_over(id).then(|| EndReason::Memory {
            limit: MemoryLimit::Session,
            pss_bytes: self.memory.of(id),
        })
    }

    /// The memory book's invariants: it holds only live sessions, its sum is the sum of
    /// its figures, its ring is bounded.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn check_memory(&self) -> Result<(), String> {
        let b = &self.memory;
        for id in b.measured.keys().chain(b.over.iter()) {
            if !self.table.hot(*id).is_some_and(|h| h.tag == Tag::Live) {
                return Err(format!("memory book holds {id}, which is not live"));
            }
        }
        if b.measured.values().sum::<u64>() != b.sum {
            return Err("memory sum drifted".into());
        }
        if b.firsts.len() > FIRST_SAMPLES {
            return Err(format!("{} first samples kept", b.firsts.len()));
        }
        Ok(())
    }

    /// Look at busy session `id` again one tick later (it is over a retirement limit).
    /// A later retirement timer (its `max_lifetime`) is brought forward: the check it
    /// leads to re-tests every limit.
    pub(super) fn retire_later(&mut self, now: Timestamp, id: SessionId) {
        let at = now.saturating_add(self.config.tick);
        let Some(e) = self.table.get_mut(id) else {
            return;
        };
        match e.cold.retire_at {
            Some(old) if old <= at => {}
            old => {
                e.cold.retire_at = Some(at);
                if let Some(old) = old {
                    self.timers.remove(old, Timer::Retire(id));
                }
                self.timers.insert(at, Timer::Retire(id));
            }
        }
    }
}
