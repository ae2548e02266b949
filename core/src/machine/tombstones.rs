//! Why recently ended sessions ended, for callers that come back with their id late.

use std::cell::RefCell;

use rustc_hash::FxHashMap;

use crate::session::{EndReason, SessionId};

/// The reasons of the last `cap` ended sessions that left the session table, oldest
/// forgotten first.
///
/// A session's reason is remembered here when the session table forgets it (its
/// directory removed); until then the table itself holds the reason, so it is stored once
/// either way. Every finished session remembers one, but few are ever asked for (only by
/// a caller that uses an id after its session ended), so remembering is a push onto a
/// ring and the lookup index is built lazily: a lookup first indexes what was remembered
/// since the previous lookup. Each entry is indexed at most once and un-indexed at most
/// once, so a lookup costs O(1) amortized and a finish pays no hashing unless lookups
/// happen.
///
/// The index sits in a `RefCell` so that lookups work through `&self` (it is a cache of
/// the ring, never observable); this makes the machine `Send` but not `Sync`, which is
/// all its owners need (the pool keeps it behind a mutex).
#[derive(Debug)]
pub(super) struct Tombstones {
    cap: usize,
    /// A ring: grows to `cap` (`head` is then its length), then each new entry
    /// overwrites the oldest, at `head`.
    ring: Vec<(SessionId, EndReason)>,
    head: usize,
    /// Sequence number of the next entry; the ring holds `next_seq - ring.len()..next_seq`.
    next_seq: u64,
    index: RefCell<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// id -> sequence number, for the entries before `upto`.
    seq: FxHashMap<SessionId, u64>,
    upto: u64,
}

impl Tombstones {
    /// Remember at most `cap` (at least one).
    pub(super) fn new(cap: usize) -> Self {
        Tombstones {
            cap: cap.max(1),
            ring: Vec::new(),
            head: 0,
            next_seq: 0,
            index: RefCell::default(),
        }
    }

    /// Remember why `id` ended. A session ends once; if `id` was remembered before, the
    /// newer reason is the one returned from now on.
    #[inline(always)]
    pub(super) fn remember(&mut self, id: SessionId, reason: EndReason) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(slot) = self.ring.get_mut(self.head) else {
            self.grow(id, reason);
            return;
        };
        let old = slot.0;
        // Dropping the old reason in place: only the variants with a message own memory.
        slot.1 = reason;
        slot.0 = id;
        self.head += 1;
        if self.head == self.cap {
            self.head = 0;
        }
        let old_seq = seq - self.cap as u64;
        // Only entries indexed by a lookup (before `upto`) have anything to forget.
        if old_seq < self.index.get_mut().upto {
            self.forget_indexed(old, old_seq);
        }
    }

    /// While the ring is below `cap`: append.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, id: SessionId, reason: EndReason) {
        self.ring.push((id, reason));
        if self.ring.len() < self.cap {
            // Keep `head` past the end, so that `remember` appends again.
            self.head = self.ring.len();
        } else {
            self.head = 0;
        }
    }

    #[cold]
    #[inline(never)]
    fn forget_indexed(&mut self, old: SessionId, old_seq: u64) {
        let index = self.index.get_mut();
        if index.seq.get(&old) == Some(&old_seq) {
            index.seq.remove(&old);
        }
    }

    /// The ring position of sequence number `seq`, if it is still held.
    fn position(&self, seq: u64) -> Option<usize> {
        let first = self.next_seq - self.ring.len() as u64;
        let age = seq.checked_sub(first)?;
        if age >= self.ring.len() as u64 {
            return None;
        }
        // Once the ring is full, `head` is its oldest entry. Before, `head` is the ring's
        // length and the oldest entry is at 0, which the same sum modulo the length gives.
        Some((self.head + age as usize) % self.ring.len())
    }

    /// Why `id` ended, if it is still remembered.
    pub(super) fn get(&self, id: SessionId) -> Option<&EndReason> {
        let first = self.next_seq - self.ring.len() as u64;
        let seq = {
            let mut index = self.index.borrow_mut();
            let index = &mut *index;
            // Entries forgotten before they were ever indexed leave `upto` behind.
            for seq in index.upto.max(first)..self.next_seq {
                if let Some((rid, _)) = self.position(seq).map(|p| &self.ring[p]) {
                    index.seq.insert(*rid, seq);
                }
            }
            index.upto = self.next_seq;
            index.seq.get(&id).copied()
        }?;
        self.position(seq).map(|p| &self.ring[p].1)
    }

    /// Entries remembered (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn crashed(n: u64) -> EndReason {
        EndReason::Crashed {
            exit: format!("exit {n}"),
        }
    }

    #[test]
    fn remembers_the_last_cap_and_forgets_the_oldest_first() {
        let mut t = Tombstones::new(3);
        for id in 1..=5 {
            t.remember(SessionId(id), crashed(id));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(SessionId(1)), None);
        assert_eq!(t.get(SessionId(2)), None);
        assert_eq!(t.get(SessionId(5)), Some(&crashed(5)));
        assert_eq!(t.get(SessionId(3)), Some(&crashed(3)));
        assert_eq!(t.get(SessionId(99)), None);
    }

    #[test]
    fn lookups_between_remembers_stay_exact() {
        // Interleave remembering and lookups, so that forgetting meets indexed and
        // unindexed entries alike, and compare with the plain definition.
        let mut t = Tombstones::new(4);
        let mut all: Vec<SessionId> = Vec::new();
        for step in 0..40u64 {
            // Ids end out of order: 2, 1, 4, 3, ...
            let id = SessionId(step ^ 1);
            t.remember(id, crashed(step));
            all.push(id);
            if step % 3 == 0 {
                for (i, past) in all.iter().enumerate() {
                    let kept = i + 4 >= all.len();
                    let want = kept.then(|| crashed(i as u64));
                    assert_eq!(t.get(*past), want.as_ref(), "step {step}, {past}");
                }
            }
        }
    }

    /// Entries overwritten in the ring are forgotten by the lookup index too, so the
    /// index never holds more than the ring (without that it would grow by one entry
    /// per session ever ended, for a pool whose callers look reasons up).
    #[test]
    fn the_lookup_index_holds_no_more_than_the_ring() {
        let mut t = Tombstones::new(4);
        for id in 1..=100 {
            t.remember(SessionId(id), crashed(id));
            assert_eq!(t.get(SessionId(id)), Some(&crashed(id)));
            assert_eq!(
                t.index.borrow().seq.len(),
                (id as usize).min(4),
                "after {id}"
            );
        }
    }

    #[test]
    fn a_second_reason_for_the_same_id_wins() {
        let mut t = Tombstones::new(4);
        t.remember(SessionId(1), crashed(1));
        assert_eq!(t.get(SessionId(1)), Some(&crashed(1)));
        t.remember(SessionId(1), crashed(2));
        assert_eq!(t.get(SessionId(1)), Some(&crashed(2)));
        // Forgetting the older entry keeps the newer one.
        for id in 2..=4 {
            t.remember(SessionId(id), crashed(id));
        }
        assert_eq!(t.get(SessionId(1)), Some(&crashed(2)));
        t.remember(SessionId(5), crashed(5));
        assert_eq!(t.get(SessionId(1)), None);
    }
}
