//! The ordered indexes behind lazy deadlines: one index serves both idle reaping and LRU
//! eviction, a second holds every other timer.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::session::SessionId;
use crate::time::Timestamp;

use super::Ticket;

/// Live sessions ordered by their *recorded* last activity.
///
/// Clients stamp activity without telling the machine, so a recorded key may be older
/// than the real stamp, never newer (except for a busy session, which is never chosen).
/// Because the idle deadline is a monotone function of the last activity, the same order
/// gives the next idle deadline (the first entry) and the LRU candidate (the first entry
/// whose real stamp equals its key). Re-checking the real stamp and re-keying is what
/// "lazy" means: the work is proportional to what has expired or been touched.
#[derive(Debug, Default)]
pub(crate) struct ActivityIndex {
    set: BTreeSet<(Timestamp, SessionId)>,
}

impl ActivityIndex {
    pub(crate) fn insert(&mut self, key: Timestamp, id: SessionId) {
        self.set.insert((key, id));
    }

    pub(crate) fn remove(&mut self, key: Timestamp, id: SessionId) -> bool {
        self.set.remove(&(key, id))
    }

    pub(crate) fn first(&self) -> Option<(Timestamp, SessionId)> {
        self.set.first().copied()
    }

    /// The first entry strictly after `cursor` (or the first one).
    pub(crate) fn next_after(
        &self,
        cursor: Option<(Timestamp, SessionId)>,
    ) -> Option<(Timestamp, SessionId)> {
        match cursor {
            None => self.first(),
            Some(c) => self
                .set
                .range((Bound::Excluded(c), Bound::Unbounded))
                .next()
                .copied(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// All ids in LRU order (for shutdown; order is deterministic).
    pub(crate) fn ids(&self) -> Vec<SessionId> {
        self.set.iter().map(|&(_, id)| id).collect()
    }
}

/// A timer the machine set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// `max_lifetime` reached (or a busy retiree's recheck).
    Retire(SessionId),
    /// An owner's grace period ended.
    Release(SessionId),
    /// A queued request's wait bound.
    Waiter(Ticket),
    /// Retry removing a directory.
    RemoveRetry(SessionId),
}

/// Timers ordered by deadline; removed explicitly when what they guard goes away.
#[derive(Debug, Default)]
pub(crate) struct TimerIndex {
    set: BTreeSet<(Timestamp, Timer)>,
}

impl TimerIndex {
    pub(crate) fn insert(&mut self, at: Timestamp, timer: Timer) {
        self.set.insert((at, timer));
    }

    pub(crate) fn remove(&mut self, at: Timestamp, timer: Timer) {
        self.set.remove(&(at, timer));
    }

    pub(crate) fn first_deadline(&self) -> Option<Timestamp> {
        self.set.first().map(|&(t, _)| t)
    }

    /// Pop the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, Timer)> {
        match self.set.first() {
            Some(&(t, _)) if t <= now => self.set.pop_first(),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}
