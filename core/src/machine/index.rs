//! The ordered indexes behind lazy deadlines: one index serves both idle reaping and LRU
//! eviction, a second holds every other timer.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;

use crate::session::SessionId;
use crate::time::Timestamp;

use super::table::{Placed, SessionTable};
use super::Ticket;

type Key = (Timestamp, SessionId);

/// Live sessions ordered by their *recorded* last activity.
///
/// Clients stamp activity without telling the machine, so a recorded key may be older
/// than the real stamp, never newer (except for a busy session, which is never chosen).
/// Because the idle deadline is a monotone function of the last activity, the same order
/// gives the next idle deadline (the first entry) and the LRU candidate (the first entry
/// whose real stamp equals its key). Re-checking the real stamp and re-keying is what
/// "lazy" means: the work is proportional to what has expired or been touched.
///
/// ## Layout
///
/// Keys mostly arrive in increasing order (a session is keyed `now` when it goes live),
/// and leave from the front (reaped or evicted as the oldest). So the index is a sorted
/// `run` (a deque: appending and popping the front are O(1)) plus a `side` set for the
/// keys that arrive out of order (re-keyed to a real stamp older than the newest key),
/// and its order is the merge of both. Removing an entry from the middle of the run is
/// lazy: the session's slot in the [`SessionTable`] says which entry is current
/// ([`Placed`] and its key), other run entries are stale and skipped. The front of the run
/// is never stale (it is cleaned after every removal), so [`ActivityIndex::first`] needs
/// no table; stale entries are compacted away once they are half the run.
#[derive(Debug, Default)]
pub(crate) struct ActivityIndex {
    run: VecDeque<Key>,
    side: BTreeSet<Key>,
    /// Entries of `run` that are stale.
    stale: usize,
}

fn current(table: &SessionTable, &(key, id): &Key) -> bool {
    table.hot(id).is_some_and(|h| h.in_run_at(key))
}

impl ActivityIndex {
    /// Index `id` at `key`; the caller records the returned placement and key in the
    /// session's slot. `id` must not be indexed already.
    pub(crate) fn insert(&mut self, key: Timestamp, id: SessionId) -> Placed {
        let e = (key, id);
        match self.run.back() {
            Some(&b) if e < b => {
                self.side.insert(e);
                Placed::Side
            }
            Some(&b) if e == b => {
                // The same entry went stale and comes back: current again.
                self.stale -= 1;
                Placed::Run
            }
            _ => {
                self.run.push_back(e);
                Placed::Run
            }
        }
    }

    /// Remove `id`'s entry, placed as `placed`. The caller has already marked the
    /// session's slot as not indexed (or re-keyed), so the run entry reads as stale.
    pub(crate) fn remove(
        &mut self,
        key: Timestamp,
        id: SessionId,
        placed: Placed,
        table: &SessionTable,
    ) {
        match placed {
            Placed::No => {}
            Placed::Side => {
                self.side.remove(&(key, id));
            }
            Placed::Run => {
                self.stale += 1;
                self.clean_front(table);
                if self.stale > 32 && self.stale * 2 > self.run.len() {
                    self.run.retain(|e| current(table, e));
                    self.stale = 0;
                }
            }
        }
    }

    /// Remove and return the first entry; the caller marks the session as not indexed.
    pub(crate) fn pop_first(&mut self, table: &SessionTable) -> Option<Key> {
        let from_run = match (self.run.front(), self.side.first()) {
            (Some(r), Some(s)) => r < s,
            (r, _) => r.is_some(),
        };
        if from_run {
            let e = self.run.pop_front();
            self.clean_front(table);
            e
        } else {
            self.side.pop_first()
        }
    }

    fn clean_front(&mut self, table: &SessionTable) {
        while let Some(f) = self.run.front() {
            if current(table, f) {
                break;
            }
            self.run.pop_front();
            self.stale -= 1;
        }
    }

    /// The first entry.
    pub(crate) fn first(&self) -> Option<Key> {
        match (self.run.front(), self.side.first()) {
            (Some(&r), Some(&s)) => Some(r.min(s)),
            (r, s) => r.or(s).copied(),
        }
    }

    /// The first entry strictly after `cursor` (or the first one).
    pub(crate) fn next_after(&self, cursor: Option<Key>, table: &SessionTable) -> Option<Key> {
        let Some(c) = cursor else {
            return self.first();
        };
        let from = self.run.partition_point(|e| *e <= c);
        let r = self.run.range(from..).find(|e| current(table, e)).copied();
        let s = self
            .side
            .range((Bound::Excluded(c), Bound::Unbounded))
            .next()
            .copied();
        match (r, s) {
            (Some(r), Some(s)) => Some(r.min(s)),
            (r, s) => r.or(s),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.run.len() - self.stale + self.side.len()
    }

    /// All ids in LRU order (for shutdown; order is deterministic).
    pub(crate) fn ids(&self, table: &SessionTable) -> Vec<SessionId> {
        let mut run = self.run.iter().filter(|e| current(table, e)).peekable();
        let mut side = self.side.iter().peekable();
        let mut out = Vec::with_capacity(self.len());
        loop {
            let next = match (run.peek(), side.peek()) {
                (Some(r), Some(s)) if r < s => run.next(),
                (Some(_), Some(_)) | (None, Some(_)) => side.next(),
                (Some(_), None) => run.next(),
                (None, None) => break,
            };
            if let Some(&(_, id)) = next {
                out.push(id);
            }
        }
        out
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::machine::table::{Cold, State};
    use crate::session::Activity;

    /// The index beside the plain ordered set it replaces, with the table that records
    /// where each entry went.
    struct Model {
        index: ActivityIndex,
        table: SessionTable,
        set: BTreeSet<Key>,
    }

    impl Model {
        fn new(ids: u64) -> Self {
            let mut table = SessionTable::default();
            for id in 1..=ids {
                let cold = Cold::new(State::Live, None, Timestamp::ZERO);
                table.insert(
                    SessionId(id),
                    Arc::new(Activity::new(Timestamp::ZERO)),
                    cold,
                );
            }
            Model {
                index: ActivityIndex::default(),
                table,
                set: BTreeSet::new(),
            }
        }

        fn key_of(&self, id: SessionId) -> Option<Timestamp> {
            let h = self.table.hot(id).unwrap();
            (h.placed != Placed::No).then_some(h.key)
        }

        fn insert(&mut self, id: SessionId, key: Timestamp) {
            if self.key_of(id).is_some() {
                return;
            }
            let placed = self.index.insert(key, id);
            let h = self.table.hot_mut(id).unwrap();
            h.key = key;
            h.placed = placed;
            self.set.insert((key, id));
        }

        fn remove(&mut self, id: SessionId) {
            let Some(key) = self.key_of(id) else { return };
            let h = self.table.hot_mut(id).unwrap();
            let placed = std::mem::replace(&mut h.placed, Placed::No);
            self.index.remove(key, id, placed, &self.table);
            self.set.remove(&(key, id));
        }

        fn pop(&mut self) {
            let got = self.index.pop_first(&self.table);
            if let Some((_, id)) = got {
                self.table.hot_mut(id).unwrap().placed = Placed::No;
            }
            assert_eq!(got, self.set.pop_first());
        }

        fn check(&self) {
            assert_eq!(self.index.len(), self.set.len());
            assert_eq!(self.index.first(), self.set.first().copied());
            let ids: Vec<SessionId> = self.set.iter().map(|&(_, id)| id).collect();
            assert_eq!(self.index.ids(&self.table), ids);
            // Walking with next_after visits the set in order.
            let mut walked = Vec::new();
            let mut cursor = None;
            while let Some(e) = self.index.next_after(cursor, &self.table) {
                walked.push(e);
                cursor = Some(e);
            }
            assert_eq!(walked, self.set.iter().copied().collect::<Vec<_>>());
            assert!(self.index.stale <= self.index.run.len());
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
        Pop,
        Rekey(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..=40, 0u64..60).prop_map(|(id, k)| Op::Insert(id, k)),
            2 => (1u64..=40).prop_map(Op::Remove),
            1 => Just(Op::Pop),
            2 => (1u64..=40, 0u64..60).prop_map(|(id, k)| Op::Rekey(id, k)),
        ]
    }

    proptest! {
        #[test]
        fn orders_like_a_sorted_set(ops in proptest::collection::vec(op(), 1..400)) {
            let mut m = Model::new(40);
            // Keys mostly grow, as `now` does, so that both the run and the side set fill.
            let mut clock = 0;
            for op in ops {
                match op {
                    Op::Insert(id, k) => {
                        clock += 1;
                        m.insert(SessionId(id), Timestamp(clock + k % 3));
                    }
                    Op::Remove(id) => m.remove(SessionId(id)),
                    Op::Pop => m.pop(),
                    Op::Rekey(id, k) => {
                        m.remove(SessionId(id));
                        m.insert(SessionId(id), Timestamp(clock.saturating_sub(k)));
                    }
                }
                m.check();
            }
        }
    }

    #[test]
    fn stale_entries_are_compacted_away() {
        let mut m = Model::new(200);
        for id in 1..=200 {
            m.insert(SessionId(id), Timestamp(id));
        }
        // Remove from the middle: all lazily, none at the front.
        for id in 2..=150 {
            m.remove(SessionId(id));
        }
        m.check();
        assert!(
            m.index.run.len() < 120,
            "stale entries were kept: {} for {} live",
            m.index.run.len(),
            m.index.len()
        );
    }
}
