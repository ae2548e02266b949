//! The session table: every session the machine tracks, found from its id in O(1).
//!
//! Session ids are issued consecutively, so the table is *direct-mapped*: session `id`
//! lives in slot `id mod capacity` (the capacity is a power of two). Read as a
//! generational arena, an id is `generation · capacity + slot`: its low bits name the
//! slot and the slot stores the full id, so a stale id (one whose slot now holds a later
//! session, or nothing) is detected with one comparison. No hashing, no probing, and
//! sessions launched together sit in neighbouring slots, so a reap tick or an eviction
//! that handles the sessions of one launch wave reads neighbouring cache lines.
//!
//! A session that outlives `capacity` later launches would be overwritten by the id that
//! laps it; instead it moves to a small overflow map (a hash map, as the whole table used
//! to be), where it stays until it ends. Long-lived sessions among short-lived churn are
//! the only ones that pay a hash probe. The capacity doubles when the table is 7/8 full
//! (every entry is re-placed, overflow included) and never shrinks, so it stays within
//! about twice the peak number of tracked sessions.
//!
//! Each slot is split in two arrays: [`Hot`] (32 bytes: id, phase, activity cell, index
//! key) is what reaping, eviction and `Lifecycle::activity` read; [`Cold`] (owner, timers,
//! the end reason) is read when a session changes phase.

use rustc_hash::FxHashMap;

use crate::backend::KillStage;
use crate::session::{ActivityRef, EndReason, OwnerKey, SessionId};
use crate::time::Timestamp;

use super::Ticket;

/// Where a session is in its life, with what each phase needs.
#[derive(Debug)]
pub(super) enum State {
    Launching {
        ticket: Ticket,
        cancelled: bool,
    },
    Live,
    Stopping {
        reason: EndReason,
        attempt: u32,
        /// The stage of the current attempt.
        stage: KillStage,
        /// A forced kill has timed out: this slot is not reliably "on its way".
        stalled: bool,
    },
    Removing {
        reason: EndReason,
        attempt: u32,
        finished: bool,
        /// A failed launch's requester, answered only once the directory removal has been
        /// tried, so that "nothing was left behind" is true when the error arrives.
        reply_to: Option<Ticket>,
    },
}

/// The phase of a slot, mirrored from [`State`] into the hot half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tag {
    Vacant,
    Launching,
    Live,
    Stopping,
    Removing,
}

impl State {
    fn tag(&self) -> Tag {
        match self {
            State::Launching { .. } => Tag::Launching,
            State::Live => Tag::Live,
            State::Stopping { .. } => Tag::Stopping,
            State::Removing { .. } => Tag::Removing,
        }
    }
}

/// Which part of the activity index holds a live session's entry (see `ActivityIndex`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Not indexed (not live, or popped for reaping).
    No,
    /// In the sorted run.
    Run,
    /// In the side set.
    Side,
}

/// The half of a session read on the hot paths.
#[derive(Debug)]
pub(super) struct Hot {
    /// The session in this slot (meaningless while vacant).
    pub(super) id: SessionId,
    /// The activity cell clients stamp (while vacant: a shared placeholder, or the cell
    /// of the slot's last session, never read).
    pub(super) activity: ActivityRef,
    /// Its key in the activity index, valid while `placed != Placed::No`.
    pub(super) key: Timestamp,
    pub(super) tag: Tag,
    pub(super) placed: Placed,
}

impl Hot {
    fn vacant(placeholder: &ActivityRef) -> Hot {
        Hot {
            id: SessionId(0),
            activity: placeholder.clone(),
            key: Timestamp::ZERO,
            tag: Tag::Vacant,
            placed: Placed::No,
        }
    }

    /// Whether the activity index holds `(key, Placed::Run)` for this session.
    #[inline]
    pub(super) fn in_run_at(&self, key: Timestamp) -> bool {
        self.placed == Placed::Run && self.key == key
    }
}

/// The half of a session read when it changes phase.
/// An owner release on notice: what `on_release_due` compares against to tell whether the
/// session was used again during the grace period.
#[derive(Debug, Clone, Copy)]
pub(super) struct Release {
    /// When the grace period ends.
    pub(super) deadline: Timestamp,
    /// When the owner was released.
    pub(super) at: Timestamp,
    /// The session's use count (operations begun) at release.
    pub(super) uses: u64,
}

#[derive(Debug)]
pub(super) struct Cold {
    pub(super) state: State,
    pub(super) owner: Option<OwnerKey>,
    pub(super) launched_at: Timestamp,
    pub(super) retire_at: Option<Timestamp>,
    /// Set while the session's owner is released and its grace runs.
    pub(super) release: Option<Release>,
    pub(super) remove_retry_at: Option<Timestamp>,
}

impl Cold {
    /// A cold half in `state`, launched (or to be launched) at `at`, owned by `owner`.
    pub(super) fn new(state: State, owner: Option<OwnerKey>, at: Timestamp) -> Cold {
        Cold {
            state,
            owner,
            launched_at: at,
            retire_at: None,
            release: None,
            remove_retry_at: None,
        }
    }

    fn vacant() -> Cold {
        Cold {
            state: State::Live,
            owner: None,
            launched_at: Timestamp::ZERO,
            retire_at: None,
            release: None,
            remove_retry_at: None,
        }
    }
}

/// One tracked session, both halves.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub(super) hot: &'a mut Hot,
    pub(super) cold: &'a mut Cold,
}

impl Entry<'_> {
    /// Move to `state`, keeping the hot tag in step.
    #[inline(always)]
    pub(super) fn set_state(&mut self, state: State) {
        self.hot.tag = state.tag();
        self.cold.state = state;
    }
}

/// Smallest capacity (slots).
const MIN_CAPACITY: usize = 16;

/// Every session the machine tracks, by id. See the module docs.
#[derive(Debug)]
pub(super) struct SessionTable {
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    mask: u64,
    overflow: FxHashMap<SessionId, (Hot, Cold)>,
    len: usize,
}

impl SessionTable {
    /// An empty table of [`MIN_CAPACITY`] slots. (No `Default` impl: `with_capacity`
    /// would be one call away from calling itself through it.)
    pub(super) fn new() -> Self {
        SessionTable::with_capacity(MIN_CAPACITY)
    }

    fn with_capacity(cap: usize) -> Self {
        let cap = cap.max(MIN_CAPACITY).next_power_of_two();
        let placeholder = ActivityRef::new(Timestamp::ZERO);
        SessionTable {
            hot: (0..cap).map(|_| Hot::vacant(&placeholder)).collect(),
            cold: (0..cap).map(|_| Cold::vacant()).collect(),
            mask: cap as u64 - 1,
            overflow: FxHashMap::default(),
            len: 0,
        }
    }

    #[inline]
    fn slot(&self, id: SessionId) -> usize {
        // The mask is below the table length, so this fits in usize.
        (id.0 & self.mask) as usize
    }

    /// Sessions tracked.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots (for tests and docs).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.hot.len()
    }

    /// Sessions that live in the overflow map (for tests).
    #[cfg(test)]
    pub(super) fn overflowed(&self) -> usize {
        self.overflow.len()
    }

    /// The hot half of `id`, if tracked.
    #[inline]
    pub(super) fn hot(&self, id: SessionId) -> Option<&Hot> {
        let h = &self.hot[self.slot(id)];
        if h.tag != Tag::Vacant && h.id == id {
            return Some(h);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&id).map(|(h, _)| h)
    }

    /// Both halves of `id`, if tracked.
    #[inline]
    pub(super) fn get(&self, id: SessionId) -> Option<(&Hot, &Cold)> {
        let slot = self.slot(id);
        let h = &self.hot[slot];
        if h.tag != Tag::Vacant && h.id == id {
            return Some((h, &self.cold[slot]));
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&id).map(|(h, c)| (h, c))
    }

    /// The hot half of `id`, mutably, if tracked.
    #[inline]
    pub(super) fn hot_mut(&mut self, id: SessionId) -> Option<&mut Hot> {
        let slot = self.slot(id);
        let h = &self.hot[slot];
        if h.tag != Tag::Vacant && h.id == id {
            return Some(&mut self.hot[slot]);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get_mut(&id).map(|(h, _)| h)
    }

    /// Both halves of `id`, mutably, if tracked.
    #[inline]
    pub(super) fn get_mut(&mut self, id: SessionId) -> Option<Entry<'_>> {
        let slot = self.slot(id);
        let h = &self.hot[slot];
        if h.tag != Tag::Vacant && h.id == id {
            return Some(Entry {
                hot: &mut self.hot[slot],
                cold: &mut self.cold[slot],
            });
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow
            .get_mut(&id)
            .map(|(hot, cold)| Entry { hot, cold })
    }

    /// Track a new session. `id` must be later than every id inserted before (ids are
    /// issued in increasing order), so a session still in its slot is older: it moves to
    /// the overflow map.
    #[inline]
    pub(super) fn insert(&mut self, id: SessionId, activity: ActivityRef, cold: Cold) {
        if (self.len + 1) * 8 > self.hot.len() * 7 {
            self.grow();
        }
        self.len += 1;
        let slot = self.slot(id);
        if self.hot[slot].tag != Tag::Vacant {
            self.lap(slot);
        }
        // Field by field into the vacant slot: no copy of a whole half through the stack.
        let h = &mut self.hot[slot];
        h.id = id;
        h.activity = activity;
        h.key = Timestamp::ZERO;
        h.tag = cold.state.tag();
        h.placed = Placed::No;
        let Cold {
            state,
            owner,
            launched_at,
            retire_at,
            release,
            remove_retry_at,
        } = cold;
        let c = &mut self.cold[slot];
        c.state = state;
        c.owner = owner;
        c.launched_at = launched_at;
        c.retire_at = retire_at;
        c.release = release;
        c.remove_retry_at = remove_retry_at;
    }

    /// The session in `slot` was lapped by a later id: move it to the overflow map.
    #[cold]
    #[inline(never)]
    fn lap(&mut self, slot: usize) {
        let placeholder = self.hot[slot].activity.clone();
        let old_hot = std::mem::replace(&mut self.hot[slot], Hot::vacant(&placeholder));
        let old_cold = std::mem::replace(&mut self.cold[slot], Cold::vacant());
        self.overflow.insert(old_hot.id, (old_hot, old_cold));
    }

    /// Stop tracking `id` if it is removing its directory (the last phase); returns its
    /// state and its pending removal retry. `None`, and nothing changes, if `id` is not
    /// tracked or in another phase.
    ///
    /// A slot's hot half is only marked vacant: its activity cell handle stays until the
    /// slot is reused (dropping it then), which spares a reference-count round trip per
    /// session; the cold half is reset in place.
    #[inline]
    pub(super) fn remove_if_removing(
        &mut self,
        id: SessionId,
    ) -> Option<(State, Option<Timestamp>)> {
        let slot = self.slot(id);
        let h = &mut self.hot[slot];
        if h.tag != Tag::Vacant && h.id == id {
            if h.tag != Tag::Removing {
                return None;
            }
            h.tag = Tag::Vacant;
            h.placed = Placed::No;
            self.len -= 1;
            let c = &mut self.cold[slot];
            c.owner = None;
            c.retire_at = None;
            c.release = None;
            let retry = c.remove_retry_at.take();
            return Some((std::mem::replace(&mut c.state, State::Live), retry));
        }
        if self.overflow.is_empty() {
            return None;
        }
        if self.overflow.get(&id).map(|(h, _)| h.tag) != Some(Tag::Removing) {
            return None;
        }
        let (_, c) = self.overflow.remove(&id)?;
        self.len -= 1;
        Some((c.state, c.remove_retry_at))
    }

    /// Stop tracking `id` in whatever phase; returns its cold half (for tests).
    #[cfg(test)]
    pub(super) fn remove(&mut self, id: SessionId) -> Option<Cold> {
        let slot = self.slot(id);
        let h = &mut self.hot[slot];
        let out = if h.tag != Tag::Vacant && h.id == id {
            h.tag = Tag::Vacant;
            h.placed = Placed::No;
            Some(std::mem::replace(&mut self.cold[slot], Cold::vacant()))
        } else if self.overflow.is_empty() {
            None
        } else {
            self.overflow.remove(&id).map(|(_, c)| c)
        };
        if out.is_some() {
            self.len -= 1;
        }
        out
    }

    /// Double the capacity and re-place every entry (overflow included, where its new
    /// slot is free).
    fn grow(&mut self) {
        let mut bigger = SessionTable::with_capacity(self.hot.len() * 2);
        let hot = std::mem::take(&mut self.hot);
        let cold = std::mem::take(&mut self.cold);
        let mut entries: Vec<(Hot, Cold)> = hot
            .into_iter()
            .zip(cold)
            .filter(|(h, _)| h.tag != Tag::Vacant)
            .chain(std::mem::take(&mut self.overflow).into_values())
            .collect();
        // Oldest first, so that where two collide the later one keeps the slot (as
        // `insert` would have left it).
        entries.sort_unstable_by_key(|(h, _)| h.id);
        for (h, c) in entries {
            let slot = bigger.slot(h.id);
            if bigger.hot[slot].tag == Tag::Vacant {
                bigger.hot[slot] = h;
                bigger.cold[slot] = c;
            } else {
                let old_h = std::mem::replace(&mut bigger.hot[slot], h);
                let old_c = std::mem::replace(&mut bigger.cold[slot], c);
                bigger.overflow.insert(old_h.id, (old_h, old_c));
            }
        }
        bigger.len = self.len;
        *self = bigger;
    }

    /// Every tracked session, in no particular order (callers only count or search for
    /// a unique match).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Hot, &Cold)> {
        self.hot
            .iter()
            .zip(self.cold.iter())
            .filter(|(h, _)| h.tag != Tag::Vacant)
            .chain(self.overflow.values().map(|(h, c)| (h, c)))
    }

    /// Every tracked session, mutably, in no particular order.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = Entry<'_>> {
        self.hot
            .iter_mut()
            .zip(self.cold.iter_mut())
            .filter(|(h, _)| h.tag != Tag::Vacant)
            .chain(self.overflow.values_mut().map(|(h, c)| (h, c)))
            .map(|(hot, cold)| Entry { hot, cold })
    }

    /// Tracked ids in increasing order.
    pub(super) fn ids(&self) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.iter().map(|(h, _)| h.id).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cell() -> ActivityRef {
        ActivityRef::new(Timestamp::ZERO)
    }

    fn add(t: &mut SessionTable, id: u64) {
        add_in(t, id, State::Live);
    }

    fn add_in(t: &mut SessionTable, id: u64, state: State) {
        t.insert(
            SessionId(id),
            cell(),
            Cold::new(state, None, Timestamp::ZERO),
        );
    }

    #[test]
    fn finds_by_id_and_detects_stale_ids() {
        let mut t = SessionTable::new();
        for id in 1..=10 {
            add(&mut t, id);
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.hot(SessionId(7)).unwrap().id, SessionId(7));
        // Slot 7 + 16 is the same slot, another generation: not tracked.
        assert!(t.hot(SessionId(7 + t.capacity() as u64)).is_none());
        assert!(
            t.hot(SessionId(0)).is_none(),
            "a vacant slot matches nothing"
        );
        assert!(t.remove(SessionId(7)).is_some());
        assert!(t.hot(SessionId(7)).is_none());
        assert!(
            t.get(SessionId(7)).is_none(),
            "a vacant slot keeps its old id"
        );
        assert!(t.hot_mut(SessionId(7)).is_none());
        assert!(t.get_mut(SessionId(7)).is_none());
        assert!(t.remove(SessionId(7)).is_none());
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn a_lapped_session_moves_to_overflow_and_stays_findable() {
        let mut t = SessionTable::new();
        let cap = t.capacity() as u64;
        add(&mut t, 1); // long-lived
                        // Churn: each session ends before the next starts, so the table never grows.
        for next in 2..2 + 3 * cap {
            add(&mut t, next);
            assert!(t.remove(SessionId(next)).is_some());
        }
        assert_eq!(t.capacity() as u64, cap);
        assert_eq!(t.overflowed(), 1, "session 1 was lapped");
        assert!(t.hot(SessionId(1)).is_some());
        assert!(t.get_mut(SessionId(1)).is_some());
        assert_eq!(t.ids(), vec![SessionId(1)]);
        assert!(t.remove(SessionId(1)).is_some());
        assert!(t.is_empty());
        assert_eq!(t.overflowed(), 0);
    }

    fn add_removing(t: &mut SessionTable, id: u64) {
        let state = State::Removing {
            reason: EndReason::OwnerReleased,
            attempt: 0,
            finished: false,
            reply_to: None,
        };
        add_in(t, id, state);
    }

    #[test]
    fn grows_exactly_when_an_insert_would_pass_seven_eighths() {
        let mut t = SessionTable::new();
        assert_eq!(t.capacity(), 16);
        for id in 1..=14 {
            add(&mut t, id);
        }
        assert_eq!(t.capacity(), 16, "14 of 16 is seven eighths");
        add(&mut t, 15);
        assert_eq!(t.capacity(), 32);
    }

    #[test]
    fn removing_a_lapped_session_takes_it_and_only_it() {
        let mut t = SessionTable::new();
        let cap = t.capacity() as u64;
        add_removing(&mut t, 1);
        for id in 2..=cap {
            add(&mut t, id);
            t.remove(SessionId(id));
        }
        // Session 1 + cap takes session 1's slot; both are removing their directories.
        add_removing(&mut t, 1 + cap);
        add(&mut t, 2 + cap);
        assert_eq!((t.overflowed(), t.len()), (1, 3));
        // Every lookup of the lapped id finds it, not the session now in its slot.
        assert_eq!(t.hot(SessionId(1)).unwrap().id, SessionId(1));
        assert_eq!(t.get(SessionId(1)).unwrap().0.id, SessionId(1));
        assert_eq!(t.hot_mut(SessionId(1)).unwrap().id, SessionId(1));
        assert_eq!(t.get_mut(SessionId(1)).unwrap().hot.id, SessionId(1));
        // A live session, lapped or not, is not taken.
        assert!(t.remove_if_removing(SessionId(2 + cap)).is_none());
        let (state, _) = t.remove_if_removing(SessionId(1)).unwrap();
        assert!(matches!(state, State::Removing { .. }));
        assert_eq!((t.overflowed(), t.len()), (0, 2));
        assert!(t.hot(SessionId(1)).is_none());
        assert!(
            t.hot(SessionId(1 + cap)).is_some(),
            "the slot's own session stays"
        );
        assert!(t.remove_if_removing(SessionId(1)).is_none(), "taken once");
        assert!(t.remove_if_removing(SessionId(1 + cap)).is_some());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn grows_at_seven_eighths_and_keeps_every_entry() {
        let mut t = SessionTable::new();
        add(&mut t, 1);
        // Lap session 1 so that growth has an overflow entry to re-place.
        for id in 2..40 {
            add(&mut t, id);
            t.remove(SessionId(id));
        }
        assert_eq!(t.overflowed(), 1);
        for id in 40..240 {
            add(&mut t, id);
        }
        assert_eq!(t.len(), 201);
        assert!(t.capacity() >= 201 * 8 / 7, "{}", t.capacity());
        assert!(t.capacity() <= 2 * 256);
        let ids = t.ids();
        assert_eq!(ids.len(), 201);
        assert_eq!(ids[0], SessionId(1));
        for id in ids {
            assert_eq!(t.hot(id).unwrap().id, id);
        }
        assert_eq!(
            t.overflowed(),
            0,
            "session 1's slot is free at the new size"
        );
        assert_eq!(t.iter().count(), 201);
        assert_eq!(t.iter_mut().count(), 201);
    }
}
