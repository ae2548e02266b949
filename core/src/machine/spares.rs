//! Prewarmed spares: the bookkeeping behind [`PoolConfig::spares`].
//!
//! A spare is a session the machine launched for nobody. It lives in the session table
//! like any other (it is `Launching`, then `Live`, and it counts against
//! `max_browsers`), but it is not in the activity index, so the idle reaper and the LRU
//! scan never see it. This module only remembers which sessions are spares, in which
//! order they became ready, and the refill backoff; the [`Lifecycle`](super::Lifecycle)
//! decides when to launch, hand out, retire and replace them.
//!
//! Why a spare is only ever a never-used browser: a spare's session is created by a
//! spare launch and stops being a spare when it is handed out, and no path turns a
//! handed-out session back into a spare. browserless v1 returned used browsers to its
//! pool and a second job saw the first job's cookies and localStorage.
//!
//! [`PoolConfig::spares`]: crate::PoolConfig::spares

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::PoolConfig;
use crate::session::SessionId;
use crate::time::Timestamp;

use super::Ticket;

/// The ticket a spare launch carries: never issued to a requester (tickets start at 1),
/// so no reply is ever sent for it and no cancel can match it.
pub(super) const SPARE_TICKET: Ticket = Ticket(0);

#[derive(Debug, Default)]
pub(super) struct Spares {
    /// Ready spares with when each became ready, oldest first (ready times only grow).
    ready: VecDeque<(SessionId, Timestamp)>,
    /// Spare launches in flight, oldest first.
    launching: VecDeque<SessionId>,
    /// Launch failures in a row since the last successful launch.
    failures: u32,
    /// No spare is launched before this (set after a launch failure).
    backoff_until: Option<Timestamp>,
}

impl Spares {
    /// Spares ready now.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Spare launches in flight.
    pub(super) fn launching_len(&self) -> usize {
        self.launching.len()
    }

    /// Whether `id` is a ready spare. O(ready spares), at most `spares`.
    pub(super) fn is_ready(&self, id: SessionId) -> bool {
        self.ready.iter().any(|&(s, _)| s == id)
    }

    /// Whether `id` is a spare launch in flight.
    pub(super) fn is_launching(&self, id: SessionId) -> bool {
        self.launching.contains(&id)
    }

    /// Ready spare ids, oldest first.
    pub(super) fn ready_ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.ready.iter().map(|&(id, _)| id)
    }

    /// Spare launch ids in flight, oldest first.
    pub(super) fn launching_ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.launching.iter().copied()
    }

    /// Take the oldest ready spare (the one closest to `spare_max_age`).
    pub(super) fn take_ready(&mut self) -> Option<SessionId> {
        self.ready.pop_front().map(|(id, _)| id)
    }

    /// Take the oldest spare launch in flight (for a request that found no ready spare).
    pub(super) fn take_launching(&mut self) -> Option<SessionId> {
        self.launching.pop_front()
    }

    /// A spare launch for `id` has started.
    pub(super) fn launch_started(&mut self, id: SessionId) {
        self.launching.push_back(id);
    }

    /// The launch of `id` ended (either way); whether it was a spare launch.
    pub(super) fn launch_ended(&mut self, id: SessionId) -> bool {
        remove_first(&mut self.launching, |&s| s == id)
    }

    /// `id` is up and ready as a spare at `now`.
    pub(super) fn push_ready(&mut self, id: SessionId, now: Timestamp) {
        self.ready.push_back((id, now));
    }

    /// `id` stops being a ready spare (teardown began); whether it was one. With no
    /// ready spare (most pools) the search ends at once.
    #[inline]
    pub(super) fn forget(&mut self, id: SessionId) -> bool {
        // Tested here so that the common case (no spare) inlines into every teardown.
        if self.ready.is_empty() {
            return false;
        }
        remove_first(&mut self.ready, |&(s, _)| s == id)
    }

    /// When the oldest ready spare reaches `max_age`.
    pub(super) fn next_expiry(&self, max_age: Duration) -> Option<Timestamp> {
        self.ready
            .front()
            .map(|&(_, at)| at.saturating_add(max_age))
    }

    /// The oldest ready spare if it has reached `max_age` at `now` (still ready: the
    /// caller tears it down, which forgets it).
    pub(super) fn expired(&self, now: Timestamp, max_age: Duration) -> Option<SessionId> {
        self.ready
            .front()
            .filter(|&&(_, at)| at.saturating_add(max_age) <= now)
            .map(|&(id, _)| id)
    }

    /// A launch succeeded: refills need not back off any more.
    pub(super) fn launch_succeeded(&mut self) {
        self.failures = 0;
        self.backoff_until = None;
    }

    /// A launch failed at `now`: no spare launch before the backoff has passed.
    pub(super) fn launch_failed(&mut self, now: Timestamp) {
        self.failures = self.failures.saturating_add(1);
        let delay = PoolConfig::SPARE_BACKOFF.delay(self.failures);
        self.backoff_until = Some(now.saturating_add(delay));
    }

    /// No spare launch may start before this.
    pub(super) fn backoff_until(&self) -> Option<Timestamp> {
        self.backoff_until
    }
}

/// Remove the first element of `v` matching `pred`; whether one was found.
fn remove_first<T>(v: &mut VecDeque<T>, pred: impl FnMut(&T) -> bool) -> bool {
    match v.iter().position(pred) {
        Some(pos) => {
            v.remove(pos);
            true
        }
        None => false,
    }
}
