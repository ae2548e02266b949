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
                // Evicting the least recently used session removes the front of the
                // run: with nothing stale, popping it leaves a current front.
                if self.stale == 0 && self.run.front() == Some(&(key, id)) {
                    self.run.pop_front();
                    return;
                }
                self.stale += 1;
                self.clean_front(table);
                if self.stale > 32 && self.stale * 2 > self.run.len() {
                    self.run.retain(|e| current(table, e));
                    self.stale = 0;
                }
            }
        }
    }

    /// Remove and return the first entry if `due(its key)`; the caller marks the session
    /// as not indexed.
    #[inline]
    pub(crate) fn pop_first_if(
        &mut self,
        table: &SessionTable,
        due: impl FnOnce(Timestamp) -> bool,
    ) -> Option<Key> {
        let (from_run, e) = match (self.run.front(), self.side.first()) {
            (Some(&r), Some(&s)) => (r < s, r.min(s)),
            (Some(&r), None) => (true, r),
            (None, Some(&s)) => (false, s),
            (None, None) => return None,
        };
        if !due(e.0) {
            return None;
        }
        if from_run {
            self.run.pop_front();
            self.clean_front(table);
        } else {
            self.side.pop_first();
        }
        Some(e)
    }

    #[inline]
    fn clean_front(&mut self, table: &SessionTable) {
        // With no stale entry anywhere in the run, its front is current.
        if self.stale == 0 {
            return;
        }
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

/// Timers ordered by `(deadline, timer)`; removed explicitly when what they guard goes
/// away.
///
/// Queued requests' timers arrive in deadline order (each is `now` plus the same wait
/// bound) and mostly leave from the front (the request is served or times out), so they
/// go to a deque when they do not undercut its last entry; everything else goes to the
/// ordered set, and the order is the merge of both. Only waiter timers use the deque: the
/// queue is bounded (`max_waiters`), so removing one from its middle stays cheap.
#[derive(Debug, Default)]
pub(crate) struct TimerIndex {
    set: BTreeSet<(Timestamp, Timer)>,
    waiters: VecDeque<(Timestamp, Timer)>,
}

impl TimerIndex {
    pub(crate) fn insert(&mut self, at: Timestamp, timer: Timer) {
        let e = (at, timer);
        if matches!(timer, Timer::Waiter(_)) && self.waiters.back().is_none_or(|b| *b < e) {
            self.waiters.push_back(e);
        } else {
            self.set.insert(e);
        }
    }

    pub(crate) fn remove(&mut self, at: Timestamp, timer: Timer) {
        let e = (at, timer);
        if matches!(timer, Timer::Waiter(_)) {
            if self.waiters.front() == Some(&e) {
                self.waiters.pop_front();
                return;
            }
            if let Ok(pos) = self.waiters.binary_search(&e) {
                self.waiters.remove(pos);
                return;
            }
        }
        self.set.remove(&e);
    }

    fn first(&self) -> Option<(Timestamp, Timer)> {
        match (self.set.first(), self.waiters.front()) {
            (Some(&a), Some(&b)) => Some(a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    pub(crate) fn first_deadline(&self) -> Option<Timestamp> {
        self.first().map(|(t, _)| t)
    }

    /// Pop the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, Timer)> {
        let first = self.first().filter(|&(t, _)| t <= now)?;
        if self.waiters.front() == Some(&first) {
            self.waiters.pop_front()
        } else {
            self.set.pop_first()
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn len(&self) -> usize {
        self.set.len() + self.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::machine::table::{Cold, State};
    use crate::session::ActivityRef;

    /// The index beside the plain ordered set it replaces, with the table that records
    /// where each entry went.
    struct Model {
        index: ActivityIndex,
        table: SessionTable,
        set: BTreeSet<Key>,
    }

    impl Model {
        fn new(ids: u64) -> Self {
            let mut table = SessionTable::new();
            for id in 1..=ids {
                let cold = Cold::new(State::Live, None, Timestamp::ZERO);
                table.insert(SessionId(id), ActivityRef::new(Timestamp::ZERO), cold);
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
            let got = self.index.pop_first_if(&self.table, |_| true);
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
            // Walking with next_after visits the set in order (a walk that does not end
            // within one step more than the set's length is a failure, not a hang).
            let mut walked = Vec::new();
            let mut cursor = None;
            for _ in 0..=self.set.len() {
                let Some(e) = self.index.next_after(cursor, &self.table) else {
                    break;
                };
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

    /// The layout, which is what makes the common case cheap: keys that arrive in order
    /// are appended to the run, only older ones go to the side set, and an entry that
    /// went stale and comes back at the same key is current again in place.
    #[test]
    fn keys_in_order_go_to_the_run_and_only_older_ones_to_the_side() {
        let mut m = Model::new(4);
        m.insert(SessionId(1), Timestamp(10));
        m.insert(SessionId(2), Timestamp(20));
        m.insert(SessionId(3), Timestamp(20));
        assert_eq!((m.index.run.len(), m.index.side.len()), (3, 0));
        m.insert(SessionId(4), Timestamp(15));
        assert_eq!((m.index.run.len(), m.index.side.len()), (3, 1));
        m.check();
        // The back of the run goes stale and comes back at its key.
        m.remove(SessionId(3));
        assert_eq!(m.index.stale, 1);
        m.insert(SessionId(3), Timestamp(20));
        assert_eq!(
            (m.index.run.len(), m.index.side.len(), m.index.stale),
            (3, 1, 0)
        );
        m.check();
    }

    /// Waiters' timers that arrive in deadline order go to the deque; one that undercuts
    /// its last entry, and every other kind of timer, go to the set.
    #[test]
    fn waiter_timers_in_deadline_order_go_to_the_deque() {
        let mut t = TimerIndex::default();
        for i in 0..5u64 {
            t.insert(Timestamp(10 + i), Timer::Waiter(Ticket(i)));
        }
        assert_eq!((t.waiters.len(), t.set.len()), (5, 0));
        t.insert(Timestamp(12), Timer::Waiter(Ticket(9)));
        t.insert(Timestamp(30), Timer::Retire(SessionId(1)));
        assert_eq!((t.waiters.len(), t.set.len()), (5, 2));
        assert_eq!(
            t.pop_due(Timestamp(12)),
            Some((Timestamp(10), Timer::Waiter(Ticket(0))))
        );
    }

    /// Removing from the middle of the run is lazy: the entry stays, stale, until more
    /// than 32 entries and more than half of the run are stale; then the run is
    /// compacted at once. So stale entries cost at most as much memory as current ones
    /// (plus 32), and compaction is amortized over as many removals as it sweeps.
    #[test]
    fn stale_entries_are_compacted_past_32_and_half_the_run() {
        // 40 entries; session 1 at the front stays, so every removal is from the middle.
        let mut m = Model::new(40);
        for id in 1..=40 {
            m.insert(SessionId(id), Timestamp(id));
        }
        for id in 2..=33 {
            m.remove(SessionId(id));
        }
        assert_eq!(
            (m.index.stale, m.index.run.len()),
            (32, 40),
            "32 stale: lazy"
        );
        m.remove(SessionId(34));
        assert_eq!(
            (m.index.stale, m.index.run.len()),
            (0, 7),
            "33 of 40: compacted"
        );
        m.check();

        // Exactly half the run stale is not more than half.
        let mut m = Model::new(100);
        for id in 1..=100 {
            m.insert(SessionId(id), Timestamp(id));
        }
        for id in 2..=51 {
            m.remove(SessionId(id));
        }
        assert_eq!((m.index.stale, m.index.run.len()), (50, 100), "half: lazy");
        m.remove(SessionId(52));
        assert_eq!(
            (m.index.stale, m.index.run.len()),
            (0, 49),
            "past half: compacted"
        );
        m.check();
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

    proptest! {
        #[test]
        fn timers_pop_in_the_order_of_a_sorted_set(
            ops in proptest::collection::vec((0u8..4, 0u64..30, 0u64..6, any::<bool>()), 1..300)
        ) {
            let mut t = TimerIndex::default();
            let mut model: BTreeSet<(Timestamp, Timer)> = BTreeSet::new();
            let mut clock = 0;
            for (kind, d, who, remove) in ops {
                clock += 1;
                let timer = match kind {
                    0 => Timer::Retire(SessionId(who)),
                    1 => Timer::Release(SessionId(who)),
                    2 => Timer::Waiter(Ticket(who)),
                    _ => Timer::RemoveRetry(SessionId(who)),
                };
                // Mostly increasing deadlines, sometimes earlier ones.
                let at = Timestamp(if d < 25 { clock + d } else { clock.saturating_sub(d) });
                if remove {
                    if let Some(&(at, timer)) = model.iter().find(|(_, x)| *x == timer) {
                        t.remove(at, timer);
                        model.remove(&(at, timer));
                    }
                } else if model.insert((at, timer)) {
                    t.insert(at, timer);
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert_eq!(t.first_deadline(), model.first().map(|&(t, _)| t));
                if clock % 7 == 0 {
                    let now = Timestamp(clock);
                    while let Some(due) = t.pop_due(now) {
                        prop_assert_eq!(Some(due), model.pop_first());
                    }
                    prop_assert!(model.first().is_none_or(|&(t, _)| t > now));
                }
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
