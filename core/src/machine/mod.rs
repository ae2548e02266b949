//! The sans-IO lifecycle state machine: every decision the pool makes, and nothing else.
//!
//! Shaped like `quinn-proto`'s `Connection`: getters; [`Lifecycle::handle`] and
//! [`Lifecycle::handle_timeout`] for incoming events; mutators for application commands
//! ([`Lifecycle::acquire`], [`Lifecycle::destroy`], [`Lifecycle::release_owner`],
//! [`Lifecycle::shutdown`]); and [`Lifecycle::poll_action`] /
//! [`Lifecycle::poll_timeout`] for outgoing work and the next deadline. It performs no
//! I/O, reads no clock, spawns nothing and draws no random numbers: `now` is always
//! passed in, and the same inputs always give the same actions in the same order.
//!
//! The one input it reads by itself is each session's activity cell
//! ([`Activity`](crate::session::Activity)), which clients stamp lock-free; it reads a
//! cell only when that session's deadline falls due or when it looks for an eviction
//! victim.
//!
//! ## A session's life
//!
//! ```text
//!  acquire ──► Launching ──Launched──► Live ──(destroy | idle | evict | retire |
//!                 │                     │      owner released | crash | shutdown)
//!           LaunchFailed                ▼
//!                 │                 Stopping ── Ending{Graceful?} → Kill{Force} × n ─Gone─┐
//!                 ▼                                                                       ▼
//!             Removing ◄──────────────────────────────────────────────────────────── Removing
//!                 │ RemoveDir ─ DirRemoved ─► Finished (slot, tombstone, one event)
//!                 └─ RemoveFailed ─► Finished{dir_removed: false}, retried with backoff forever
//! ```
//!
//! `Ending` begins one teardown; the idle sessions one reap ends are handed over
//! together in one [`Action::Reaped`], which stands for an `Ending` each.
//!
//! A session counts against `max_browsers` from `acquire` until its processes are
//! `Gone`, so `max_browsers` bounds live process trees, not map entries.
//!
//! A failed launch's requester gets [`AcquireError::LaunchFailed`] only after the
//! directory removal has been tried (`DirRemoved`, or the first `RemoveFailed`), so the
//! error's "nothing was left behind" holds when it arrives.

mod dirs;
mod index;
mod memory;
mod snapshot;
mod spares;
mod table;
mod tombstones;

pub use memory::FIRST_SAMPLES;
pub use snapshot::SessionInfo;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{KillStage, MemoryUsage};
use crate::config::{CapacityPolicy, PoolConfig};
use crate::error::{AcquireError, BackendError, BackendErrorKind, ConfigError, SessionError};
use crate::session::{
    ActivityRef, CellChunk, EndReason, OwnerKey, RetireCause, SessionId, CELLS_PER_CHUNK,
};
use crate::stats::Totals;
use crate::time::{duration_ms, CoarseClock, Timestamp};

use dirs::SessionDirs;
use index::{ActivityIndex, Timer, TimerIndex};
use memory::MemoryBook;
use spares::{Spares, SPARE_TICKET};
use table::{Cold, Placed, Release, SessionTable, State, Tag};
use tombstones::Tombstones;

/// Identifies one request for a session, so that its answer ([`Action::Reply`]) can be
/// routed back to whoever asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// An event from the outside world, reported by the shell that performs the actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The browser asked for by [`Action::Launch`] is up and usable.
    Launched {
        /// The session.
        id: SessionId,
    },
    /// The launch failed; the backend already killed whatever it started.
    LaunchFailed {
        /// The session.
        id: SessionId,
        /// What the backend reported.
        reason: String,
    },
    /// The browser's main process exited (by itself, or because of our kill).
    Exited {
        /// The session.
        id: SessionId,
        /// How it exited.
        exit: String,
    },
    /// After an [`Action::Ending`] or [`Action::Kill`], no live process of the tree
    /// remains.
    Gone {
        /// The session.
        id: SessionId,
    },
    /// After kill number `attempt` (1: the [`Action::Ending`]; 2 and up: an
    /// [`Action::Kill`]), the tree was still alive when `wait` ran out.
    KillTimedOut {
        /// The session.
        id: SessionId,
        /// The attempt that timed out.
        attempt: u32,
    },
    /// [`Action::RemoveDir`] succeeded.
    DirRemoved {
        /// The session.
        id: SessionId,
    },
    /// [`Action::RemoveDir`] failed.
    RemoveFailed {
        /// The session.
        id: SessionId,
        /// What the filesystem reported.
        error: BackendError,
    },
    /// A session may have reached `max_uses` (sent by the shell when an operation ends
    /// over the limit; the machine re-checks).
    RetireHint {
        /// The session.
        id: SessionId,
    },
    /// The requester behind `ticket` went away: drop it from the queue, or tear down the
    /// session being launched for it.
    Cancel {
        /// The request.
        ticket: Ticket,
    },
    /// One round of memory measurements: each live session's process tree, as the
    /// backend measured it. Ignored unless `memory_budget` or `max_session_memory` is
    /// set; figures for sessions no longer live are ignored. See the memory rules in
    /// [`PoolConfig::memory_budget`].
    Memory {
        /// `(session, usage)` pairs.
        samples: Vec<(SessionId, MemoryUsage)>,
    },
}

/// Work for the shell to carry out, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the session's directory ([`Lifecycle::session_dir`]) and launch a browser
    /// in it; report [`Input::Launched`] or [`Input::LaunchFailed`] (and later
    /// [`Input::Exited`] if it exits).
    ///
    /// The action names the session only: its directory is a function of the id, so the
    /// machine builds no path on its hot paths and the shell asks for it when it does the
    /// I/O.
    Launch {
        /// The new session.
        id: SessionId,
    },
    /// Teardown has begun: callers using `id` from now on get `reason`. This is also the
    /// teardown's first kill: stop the process tree at `stage`, then wait up to `wait`
    /// for it to be gone; report [`Input::Gone`] or [`Input::KillTimedOut`] with
    /// `attempt: 1`.
    ///
    /// Every session that went live is named exactly once, when its teardown begins, by
    /// an `Ending` or (idle sessions reaped together) in one [`Action::Reaped`], which
    /// stands for an `Ending` each. A launch that completes after its request was
    /// cancelled, or after shutdown began, goes live and is torn down at once; a session
    /// whose launch failed gets none.
    Ending {
        /// The session.
        id: SessionId,
        /// Why it ends.
        reason: EndReason,
        /// How hard the first kill is ([`KillStage::Force`] for a crashed browser or a
        /// zero `kill_grace`).
        stage: KillStage,
        /// How long to wait for the tree to be gone.
        wait: Duration,
    },
    /// Teardown has begun for the idle sessions one reap reaped: for each
    /// `(id, idle_for)` of `sessions`, in order, exactly what an [`Action::Ending`] with
    /// that `id`, reason [`EndReason::IdleReaped`]` { idle_for }`, this `stage` and this
    /// `wait` means (and [`Action::endings`] lists them as such).
    ///
    /// A [`Lifecycle::handle_timeout`] that reaps two or more idle sessions queues one of
    /// these for all of them, in place of one `Ending` each, so that reaping many
    /// sessions costs the machine one action; one that reaps a single session queues an
    /// `Ending`. Each session is named once, in one `Ending` or one `Reaped`, never both.
    Reaped {
        /// The reaped sessions and how long each had been idle, in the order they were
        /// reaped (least recently active first).
        sessions: Vec<(SessionId, Duration)>,
        /// How hard the first kill is (the same for every idle session:
        /// [`KillStage::Force`] only with a zero `kill_grace`).
        stage: KillStage,
        /// How long to wait for each tree to be gone.
        wait: Duration,
    },
    /// A further kill of a tree still alive after the previous one
    /// ([`Input::KillTimedOut`]): stop it at `stage`, then wait up to `wait`; report
    /// [`Input::Gone`] or [`Input::KillTimedOut`] with this `attempt`.
    Kill {
        /// The session.
        id: SessionId,
        /// How hard ([`KillStage::Force`] for every escalation).
        stage: KillStage,
        /// 2 for the first escalation (the first kill, attempt 1, is [`Action::Ending`]);
        /// counts up.
        attempt: u32,
        /// How long to wait for the tree to be gone.
        wait: Duration,
    },
    /// Remove the session's directory ([`Lifecycle::session_dir`]) without following
    /// symlinks; report [`Input::DirRemoved`] or [`Input::RemoveFailed`].
    RemoveDir {
        /// The session.
        id: SessionId,
        /// 1 for the first try; retries count up.
        attempt: u32,
    },
    /// Answer the request `ticket`.
    Reply {
        /// The request.
        ticket: Ticket,
        /// The session, or why there is none.
        result: Result<SessionId, AcquireError>,
    },
    /// Teardown is complete: processes gone and the first removal of the directory done
    /// (`dir_removed`), or failed and handed to background retries. Exactly once per
    /// session that was launched.
    Finished {
        /// The session.
        id: SessionId,
        /// Why it ended.
        reason: EndReason,
        /// Whether the directory is gone.
        dir_removed: bool,
    },
}

/// One teardown that an action begins, as [`Action::endings`] lists it: the fields of an
/// [`Action::Ending`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeardownBegun {
    /// The session.
    pub id: SessionId,
    /// Why it ends.
    pub reason: EndReason,
    /// How hard the first kill is.
    pub stage: KillStage,
    /// How long to wait for the tree to be gone after that kill.
    pub wait: Duration,
}

impl Action {
    /// The teardowns this action begins, in order: one for [`Action::Ending`], one per
    /// session for [`Action::Reaped`], none for every other action. A shell that handles
    /// both the same way matches either and walks this.
    pub fn endings(&self) -> impl Iterator<Item = TeardownBegun> + '_ {
        let (one, many, stage, wait) = match self {
            Action::Ending {
                id,
                reason,
                stage,
                wait,
            } => (
                Some(TeardownBegun {
                    id: *id,
                    reason: reason.clone(),
                    stage: *stage,
                    wait: *wait,
                }),
                &[][..],
                *stage,
                *wait,
            ),
            Action::Reaped {
                sessions,
                stage,
                wait,
            } => (None, &sessions[..], *stage, *wait),
            _ => (None, &[][..], KillStage::Force, Duration::ZERO),
        };
        one.into_iter()
            .chain(many.iter().map(move |&(id, idle_for)| TeardownBegun {
                id,
                reason: EndReason::IdleReaped { idle_for },
                stage,
                wait,
            }))
    }
}

#[derive(Debug)]
struct Waiter {
    ticket: Ticket,
    owner: Option<OwnerKey>,
    deadline: Timestamp,
    since: Timestamp,
    /// Whether the deadline was already extended once (see `on_waiter_timeout`).
    extended: bool,
}

/// Where a session is in its life, as seen by [`Lifecycle::phase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Its browser is being launched.
    Launching,
    /// Usable.
    Live,
    /// Its process tree is being killed (still counts against capacity).
    Stopping,
    /// Its processes are gone; its directory is being removed.
    Removing,
}

/// Gauges and totals of a [`Lifecycle`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MachineStats {
    /// Sessions being launched.
    pub launching: usize,
    /// Usable sessions.
    pub live: usize,
    /// Usable sessions with an operation in flight.
    pub busy: usize,
    /// Sessions whose process trees are being killed.
    pub stopping: usize,
    /// Sessions whose directories are still to be removed.
    pub removing: usize,
    /// Requests queued for a slot.
    pub waiting: usize,
    /// Process trees that count against `max_browsers` (launching + live + spares_ready +
    /// stopping).
    pub occupied: usize,
    /// Spares launched and ready to be handed out (not counted in `live`).
    pub spares_ready: usize,
    /// Spare launches in flight (counted in `launching` too).
    pub spares_launching: usize,
    /// Summed last-measured memory (PSS, or RSS where PSS is unknown) of the live
    /// sessions and ready spares, in bytes. Sessions being torn down are not counted.
    pub memory_used: u64,
    /// `memory_used` plus [`MachineStats::memory_estimate`] for every session launching
    /// or live but not measured yet: what the budget is compared with.
    pub memory_projected: u64,
    /// What a browser not yet measured is assumed to use: the median of the first
    /// samples of recent sessions (0 until one was measured).
    pub memory_estimate: u64,
    /// The configured `memory_budget`.
    pub memory_budget: Option<u64>,
    /// Running totals.
    pub totals: Totals,
}

/// The lifecycle state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Lifecycle {
    config: PoolConfig,
    dirs: SessionDirs,
    idle_ms: Option<u64>,
    grid_ms: u64,
    table: SessionTable,
    by_activity: ActivityIndex,
    timers: TimerIndex,
    owners: std::collections::BTreeMap<OwnerKey, std::collections::BTreeSet<SessionId>>,
    waiters: VecDeque<Waiter>,
    recheck_at: Option<Timestamp>,
    occupied: usize,
    stopping: usize,
    stalled: usize,
    launching: usize,
    next_id: u64,
    next_ticket: u64,
    tombstones: Tombstones,
    /// The chunk new sessions' activity cells come from, and the next free cell in it.
    cells: Option<Arc<CellChunk>>,
    next_cell: usize,
    /// The clock new chunks carry for [`Lease::touch`](crate::Lease::touch): the pool's
    /// coarse clock once [`Lifecycle::stamp_with`] was called. The machine never reads
    /// it; it only hands it to the cells.
    cell_clock: Arc<CoarseClock>,
    actions: VecDeque<Action>,
    shutting_down: bool,
    totals: Totals,
    spares: Spares,
    memory: MemoryBook,
    /// The sessions the reap in progress has reaped (see [`Action::Reaped`]); empty
    /// between reaps. Its room is what the shell gave back ([`Lifecycle::recycle`]), or
    /// is reserved when the next reap reaps its first session.
    reaped: Vec<(SessionId, Duration)>,
    /// How many sessions the last `Reaped` named: the room reserved for the next one.
    reaped_hint: usize,
}

impl Lifecycle {
    /// A machine for `config` whose session directories are named
    /// `<root>/<prefix><instance>-<id>`. `instance` identifies this pool on the host (see
    /// [`crate::sweep`]); it must be unique among pools sharing `root` and `prefix`.
    pub fn new(config: PoolConfig, instance: &str) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Lifecycle {
            idle_ms: config.idle_timeout.map(duration_ms),
            grid_ms: duration_ms(config.reap_interval).max(1),
            dirs: SessionDirs::new(&config.root, &config.prefix, instance),
            tombstones: Tombstones::new(config.tombstones),
            config,
            table: SessionTable::new(),
            by_activity: ActivityIndex::default(),
            timers: TimerIndex::default(),
            owners: Default::default(),
            waiters: VecDeque::new(),
            recheck_at: None,
            occupied: 0,
            stopping: 0,
            stalled: 0,
            launching: 0,
            next_id: 1,
            next_ticket: 1,
            cells: None,
            next_cell: 0,
            cell_clock: Arc::new(CoarseClock::default()),
            actions: VecDeque::new(),
            shutting_down: false,
            totals: Totals::default(),
            spares: Spares::default(),
            memory: MemoryBook::default(),
            reaped: Vec::new(),
            reaped_hint: 0,
        })
    }

    /// Let the activity cells of sessions launched from now on carry `clock`, the coarse
    /// clock their leases stamp with (the pool calls this once, before any launch). The
    /// machine itself never reads it.
    pub(crate) fn stamp_with(&mut self, clock: Arc<CoarseClock>) {
        self.cell_clock = clock;
        self.cells = None;
    }

    // ----------------------------------------------------------------- getters

    /// The configuration this machine enforces.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The activity cell of a session that is launching or live; for an ended session,
    /// why it ended.
    ///
    /// A spare (ready or launching) is [`SessionError::Unknown`] until it is handed out:
    /// nobody can use a spare before it is given to exactly one requester.
    pub fn activity(&self, id: SessionId) -> Result<&ActivityRef, SessionError> {
        match self.table.hot(id) {
            Some(h)
                if matches!(h.tag, Tag::Launching | Tag::Live)
                    && (self.config.spares == 0 || !self.is_spare(id)) =>
            {
                Ok(&h.activity)
            }
            _ => Err(self.ended_error(id)),
        }
    }

    /// Where `id` is in its life, if the machine still tracks it.
    pub fn phase(&self, id: SessionId) -> Option<Phase> {
        self.table.hot(id).and_then(|h| match h.tag {
            Tag::Launching => Some(Phase::Launching),
            Tag::Live => Some(Phase::Live),
            Tag::Stopping => Some(Phase::Stopping),
            Tag::Removing => Some(Phase::Removing),
            Tag::Vacant => None,
        })
    }

    /// Why `id` ended, if it did and is still remembered.
    pub fn end_reason(&self, id: SessionId) -> Option<&EndReason> {
        // A session being torn down keeps its reason in the table; the tombstone is
        // written when the table forgets it.
        match self.table.get(id).map(|(_, c)| &c.state) {
            Some(State::Stopping { reason, .. } | State::Removing { reason, .. }) => Some(reason),
            _ => self.tombstones.get(id),
        }
    }

    /// Process trees that count against `max_browsers` now.
    pub fn occupied(&self) -> usize {
        self.occupied
    }

    /// The directory of session `id`: `<root>/<prefix><instance>-<id>`, the name
    /// [`crate::sweep`] recognizes. A pure function of the id (the session need not be
    /// tracked): [`Action::Launch`] and [`Action::RemoveDir`] carry only the id, and the
    /// shell asks here for the path when it does the I/O.
    pub fn session_dir(&self, id: SessionId) -> PathBuf {
        self.dirs.dir(id)
    }

    /// Whether `id` is a spare: launched (or being launched) for nobody and not handed
    /// out yet. O(spares).
    pub fn is_spare(&self, id: SessionId) -> bool {
        self.spares.is_ready(id) || self.spares.is_launching(id)
    }

    /// Ready spares, oldest first.
    pub fn spare_ids(&self) -> Vec<SessionId> {
        self.spares.ready_ids().collect()
    }

    /// Spare launches in flight, oldest first.
    pub fn spare_launch_ids(&self) -> Vec<SessionId> {
        self.spares.launching_ids().collect()
    }

    /// Live (usable) sessions now, ready spares not included. O(1).
    pub fn live_count(&self) -> usize {
        self.by_activity.len()
    }

    /// Requests waiting for a session (the `EvictLru` fallback and `Wait`).
    pub fn waiting_count(&self) -> usize {
        self.waiters.len()
    }

    /// Live session ids in least-recently-recorded order (deterministic).
    pub fn live_ids(&self) -> Vec<SessionId> {
        self.by_activity.ids(&self.table)
    }

    /// Sessions the machine still tracks (any phase), in id order.
    pub fn tracked_ids(&self) -> Vec<SessionId> {
        self.table.ids()
    }

    /// Whether [`Lifecycle::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// True when nothing is tracked any more: no session in any phase, no waiter.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty() && self.waiters.is_empty()
    }

    /// True when every session has at least reached [`Action::Finished`] (only
    /// background directory retries may remain).
    pub fn all_finished(&self) -> bool {
        self.waiters.is_empty()
            && self
                .table
                .iter()
                .all(|(_, c)| matches!(c.state, State::Removing { finished: true, .. }))
    }

    /// A snapshot of gauges and totals. O(tracked sessions) for the busy count (a walk
    /// over the session table, whose size is at most about twice the peak).
    pub fn stats(&self) -> MachineStats {
        let mut st = MachineStats {
            waiting: self.waiters.len(),
            occupied: self.occupied,
            totals: self.totals.clone(),
            spares_ready: self.spares.ready_len(),
            spares_launching: self.spares.launching_len(),
            memory_used: self.memory.used(),
            memory_projected: self.memory_projected(),
            memory_estimate: self.memory.estimate(),
            memory_budget: self.config.memory_budget,
            ..MachineStats::default()
        };
        for (h, _) in self.table.iter() {
            match h.tag {
                Tag::Launching => st.launching += 1,
                // Ready spares are counted apart (none without `spares`).
                Tag::Live if self.spares.is_ready(h.id) => {}
                Tag::Live => {
                    st.live += 1;
                    if h.activity.is_busy() {
                        st.busy += 1;
                    }
                }
                Tag::Stopping => st.stopping += 1,
                Tag::Removing => st.removing += 1,
                Tag::Vacant => {}
            }
        }
        st
    }

    /// The running totals.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    // ----------------------------------------------------------------- outputs

    /// The next action to carry out, if any.
    #[inline]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Give back the `sessions` of an [`Action::Reaped`] once it has been carried out, so
    /// that a later reap reuses its room instead of allocating. Optional: without it each
    /// `Reaped` allocates its vector. Its contents are ignored (it is cleared), and a
    /// vector with room for more than a few thousand sessions is dropped instead.
    pub fn recycle(&mut self, mut sessions: Vec<(SessionId, Duration)>) {
        if sessions.capacity() > REAPED_KEPT || sessions.capacity() <= self.reaped.capacity() {
            return;
        }
        sessions.clear();
        self.reaped = sessions;
    }

    /// When [`Lifecycle::handle_timeout`] should next be called, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let idle = match (self.idle_ms, self.by_activity.first()) {
            (Some(_), Some((key, _))) => Some(self.idle_deadline(key)),
            _ => None,
        };
        let spares = self.spares.next_expiry(self.config.spare_max_age);
        [
            idle,
            self.timers.first_deadline(),
            self.recheck_at,
            spares,
            self.refill_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----------------------------------------------------------------- commands

    /// Ask for a session. The answer comes later as [`Action::Reply`] for the returned
    /// ticket (at once if it is a refusal).
    pub fn acquire(&mut self, now: Timestamp, owner: Option<OwnerKey>) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        if self.shutting_down {
            self.reply(ticket, Err(AcquireError::ShuttingDown));
            return ticket;
        }
        if self.config.spares > 0 {
            if let Some(id) = self.spares.take_ready() {
                // Ready spares and waiters never coexist (see `on_spare_launched`).
                self.totals.spare_hits += 1;
                self.hand_out(now, ticket, owner, id);
                self.refill(now);
                return ticket;
            }
            self.totals.spare_misses += 1;
            if self.waiters.is_empty() {
                if let Some(id) = self.spares.take_launching() {
                    self.adopt(ticket, owner, id);
                    self.refill(now);
                    return ticket;
                }
            }
        }
        if self.waiters.is_empty()
            && self.occupied < self.config.max_browsers
            && self.memory_admits(now)
        {
            self.launch(now, ticket, owner);
            self.refill(now);
            return ticket;
        }
        let timeout = match self.config.capacity_policy {
            CapacityPolicy::Reject => {
                self.totals.rejected += 1;
                let err = self
                    .reject_for_memory()
                    .unwrap_or(AcquireError::AtCapacity {
                        max: self.config.max_browsers,
                    });
                self.reply(ticket, Err(err));
                return ticket;
            }
            CapacityPolicy::Wait { timeout } => timeout,
            CapacityPolicy::EvictLru => self.config.acquire_timeout,
        };
        if self.waiters.len() >= self.config.max_waiters {
            self.totals.rejected += 1;
            self.reply(
                ticket,
                Err(AcquireError::QueueFull {
                    max_waiters: self.config.max_waiters,
                }),
            );
            return ticket;
        }
        let deadline = now.saturating_add(timeout);
        self.waiters.push_back(Waiter {
            ticket,
            owner,
            deadline,
            since: now,
            extended: false,
        });
        self.timers.insert(deadline, Timer::Waiter(ticket));
        self.make_room(now);
        self.serve_waiters(now);
        ticket
    }

    /// A client asks for `id` to be destroyed.
    /// A ready spare may be destroyed too (it is replaced).
    pub fn destroy(&mut self, now: Timestamp, id: SessionId) -> Result<(), SessionError> {
        match self.table.hot(id).map(|h| h.tag) {
            Some(Tag::Live) => {
                self.teardown(now, id, EndReason::Destroyed);
                self.refill(now);
                Ok(())
            }
            // A launching session is not the client's yet: `Unknown`, as `ended_error`
            // says for a session with no end reason.
            _ => Err(self.ended_error(id)),
        }
    }

    /// The client behind `owner` went away: destroy its live sessions once `grace` has
    /// passed, unless they are used again or busy then. "Used again" means an operation
    /// was begun on the session after this call, or its activity was stamped at a later
    /// clock tick than `now`; a bare [`Activity::touch`](crate::session::Activity::touch) within the same tick as the
    /// release does not count, because a stamp is no finer than a tick and could be the
    /// owner's last one.
    /// Returns how many sessions were put on notice.
    pub fn release_owner(&mut self, now: Timestamp, owner: &OwnerKey, grace: Duration) -> usize {
        let ids: Vec<SessionId> = self
            .owners
            .get(owner)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let deadline = now.saturating_add(grace);
        let mut n = 0;
        for id in ids {
            let Some(e) = self.table.get_mut(id) else {
                continue;
            };
            if e.hot.tag != Tag::Live {
                continue;
            }
            if let Some(old) = e.cold.release.take() {
                self.timers.remove(old.deadline, Timer::Release(id));
            }
            e.cold.release = Some(Release {
                deadline,
                at: now,
                uses: e.hot.activity.uses(),
            });
            self.timers.insert(deadline, Timer::Release(id));
            n += 1;
        }
        if grace.is_zero() {
            self.handle_timeout(now);
        }
        n
    }

    /// The owner of `id` is back (for example a client reattached to the session):
    /// cancel a pending [`release_owner`](Self::release_owner) of this session, so it is
    /// not torn down when the grace ends. Returns whether a release was pending. Unlike
    /// "used again", this needs no stamp, so it holds even within the release's tick.
    pub fn reclaim(&mut self, id: SessionId) -> bool {
        let Some(e) = self.table.get_mut(id) else {
            return false;
        };
        let Some(release) = e.cold.release.take() else {
            return false;
        };
        self.timers.remove(release.deadline, Timer::Release(id));
        tracing::debug!(session = %id, "owner release cancelled: reclaimed");
        true
    }

    /// Stop serving: refuse queued and new requests, tear down every session. Sessions
    /// still launching are torn down as soon as they report.
    pub fn shutdown(&mut self, now: Timestamp) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        while let Some(w) = self.waiters.pop_front() {
            self.timers.remove(w.deadline, Timer::Waiter(w.ticket));
            self.reply(w.ticket, Err(AcquireError::ShuttingDown));
        }
        self.recheck_at = None;
        for id in self.by_activity.ids(&self.table) {
            self.teardown(now, id, EndReason::Shutdown);
        }
        // Ready spares end like any session; spare launches in flight are torn down when
        // they report, like every launch.
        while let Some(id) = self.spares.take_ready() {
            self.teardown(now, id, EndReason::Shutdown);
        }
        // Directories waiting for a retry are retried now rather than after the backoff.
        for id in self.tracked_ids() {
            if let Some(e) = self.table.get_mut(id) {
                if let (State::Removing { attempt, .. }, Some(at)) =
                    (&e.cold.state, e.cold.remove_retry_at.take())
                {
                    self.timers.remove(at, Timer::RemoveRetry(id));
                    self.actions.push_back(Action::RemoveDir {
                        id,
                        attempt: *attempt,
                    });
                }
            }
        }
    }

    // ----------------------------------------------------------------- events

    /// Feed one event.
    pub fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Launched { id } => self.on_launched(now, id),
            Input::LaunchFailed { id, reason } => self.on_launch_failed(now, id, reason),
            Input::Exited { id, exit } => {
                if self.table.hot(id).is_some_and(|h| h.tag == Tag::Live) {
                    self.totals.crashed += 1;
                    tracing::warn!(session = %id, exit = %exit, "browser exited by itself");
                    self.teardown(now, id, EndReason::Crashed { exit });
                }
            }
            Input::Gone { id } => self.on_gone(now, id),
            Input::KillTimedOut { id, attempt } => self.on_kill_timed_out(now, id, attempt),
            Input::DirRemoved { id } => self.on_dir_removed(id),
            Input::RemoveFailed { id, error } => {
                if error.kind == BackendErrorKind::NotFound {
                    self.on_dir_removed(id);
                } else {
                    self.on_remove_failed(now, id, error);
                }
            }
            Input::RetireHint { id } => self.check_retire(now, id),
            Input::Cancel { ticket } => self.on_cancel(now, ticket),
            Input::Memory { samples } => self.on_memory(now, samples),
        }
        self.refill(now);
    }

    /// Act on every deadline at or before `now`: idle reaps, retirements, owner grace
    /// periods, waiter timeouts, directory retries. Costs O(expired · log n); with
    /// nothing due, two comparisons.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.reap_idle(now);
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Retire(id) => {
                    if let Some(e) = self.table.get_mut(id) {
                        e.cold.retire_at = None;
                    }
                    self.check_retire(now, id);
                }
                Timer::Release(id) => self.on_release_due(now, id),
                Timer::Waiter(ticket) => self.on_waiter_timeout(now, ticket),
                Timer::RemoveRetry(id) => self.on_remove_retry(id),
            }
        }
        if self.recheck_at.is_some_and(|t| t <= now) {
            self.recheck_at = None;
            self.make_room(now);
            self.serve_waiters(now);
        }
        self.retire_expired_spares(now);
        self.refill(now);
    }

    /// Retire the ready spares older than `spare_max_age`. Each round ends one, so the
    /// loop is bounded like the other victim loops (see `victim_loop_stuck`).
    fn retire_expired_spares(&mut self, now: Timestamp) {
        for _ in 0..=self.spares.ready_len() {
            let Some(id) = self.spares.expired(now, self.config.spare_max_age) else {
                return;
            };
            tracing::info!(session = %id, "retiring spare unused for spare_max_age");
            self.teardown(now, id, EndReason::Retired(RetireCause::SpareMaxAge));
        }
        self.victim_loop_stuck("retire_expired_spares");
    }

    // ----------------------------------------------------------------- internals

    fn ended_error(&self, id: SessionId) -> SessionError {
        let from_session = self.table.get(id).and_then(|(_, c)| match &c.state {
            State::Stopping { reason, .. } | State::Removing { reason, .. } => Some(reason.clone()),
            _ => None,
        });
        match from_session.or_else(|| self.tombstones.get(id).cloned()) {
            Some(reason) => SessionError::Ended { id, reason },
            None => SessionError::Unknown { id },
        }
    }

    /// See [`idle_deadline`].
    fn idle_deadline(&self, key: Timestamp) -> Timestamp {
        idle_deadline(self.idle_ms, self.grid_ms, key)
    }

    fn reply(&mut self, ticket: Ticket, result: Result<SessionId, AcquireError>) {
        self.actions.push_back(Action::Reply { ticket, result });
    }

    fn launch(&mut self, now: Timestamp, ticket: Ticket, owner: Option<OwnerKey>) -> SessionId {
        self.start_launch(now, ticket, false, owner)
    }

    /// Start a launch. A spare launch is `(SPARE_TICKET, cancelled: true)`: no reply is
    /// owed for it until a request takes it over ([`Lifecycle::adopt`]).
    fn start_launch(
        &mut self,
        now: Timestamp,
        ticket: Ticket,
        cancelled: bool,
        owner: Option<OwnerKey>,
    ) -> SessionId {
        let id = SessionId(self.next_id);
        self.next_id += 1;
        if let Some(o) = &owner {
            self.owners.entry(o.clone()).or_default().insert(id);
        }
        let activity = self.fresh_cell(now);
        let state = State::Launching { ticket, cancelled };
        self.table
            .insert(id, activity, Cold::new(state, owner, now));
        self.occupied += 1;
        self.launching += 1;
        self.actions.push_back(Action::Launch { id });
        id
    }

    /// An activity cell stamped at `now` for a new session: the next one of the current
    /// chunk, or the first of a new chunk (see [`ActivityRef`]).
    fn fresh_cell(&mut self, now: Timestamp) -> ActivityRef {
        let chunk = match &self.cells {
            Some(c) if self.next_cell < CELLS_PER_CHUNK => c.clone(),
            _ => {
                let max_uses = self.config.max_uses.unwrap_or(u64::MAX);
                let c = Arc::new(CellChunk::new(max_uses, self.cell_clock.clone()));
                self.cells = Some(c.clone());
                self.next_cell = 0;
                c
            }
        };
        let cell = ActivityRef::in_chunk(chunk, self.next_cell);
        self.next_cell += 1;
        cell.touch(now);
        cell
    }

    /// Put live session `id` into the activity index at `key`.
    fn index(&mut self, id: SessionId, key: Timestamp) {
        let placed = self.by_activity.insert(key, id);
        if let Some(h) = self.table.hot_mut(id) {
            h.key = key;
            h.placed = placed;
        }
    }

    /// Take `id` out of the activity index, if it is in it.
    fn unindex(&mut self, id: SessionId) {
        let Some(h) = self.table.hot_mut(id) else {
            return;
        };
        let placed = std::mem::replace(&mut h.placed, Placed::No);
        let key = h.key;
        self.by_activity.remove(key, id, placed, &self.table);
    }

    fn on_launched(&mut self, now: Timestamp, id: SessionId) {
        if self.spares.launch_ended(id) {
            self.on_spare_launched(now, id);
            return;
        }
        self.spares.launch_succeeded();
        let Some((ticket, cancelled)) = self.go_live(now, id) else {
            return;
        };
        self.index(id, now);
        if self.shutting_down {
            self.reply(ticket, Err(AcquireError::ShuttingDown));
            self.teardown(now, id, EndReason::Shutdown);
        } else if cancelled {
            self.teardown(now, id, EndReason::Abandoned);
        } else {
            self.reply(ticket, Ok(id));
        }
    }

    /// Launch `id` is up: make it live (stamped now, its `max_lifetime` armed) and count
    /// it. Returns the request it was launched for and whether that was cancelled, or
    /// `None` if `id` was not launching. The caller places it (index, spare list).
    fn go_live(&mut self, now: Timestamp, id: SessionId) -> Option<(Ticket, bool)> {
        let retire_after = self.config.max_lifetime;
        let mut e = self.table.get_mut(id)?;
        let State::Launching { ticket, cancelled } = e.cold.state else {
            return None;
        };
        e.set_state(State::Live);
        e.cold.launched_at = now;
        e.hot.activity.touch(now);
        if let Some(life) = retire_after {
            let at = now.saturating_add(life);
            e.cold.retire_at = Some(at);
            self.timers.insert(at, Timer::Retire(id));
        }
        self.launching -= 1;
        self.totals.created += 1;
        Some((ticket, cancelled))
    }

    fn on_launch_failed(&mut self, now: Timestamp, id: SessionId, reason: String) {
        let Some(mut e) = self.table.get_mut(id) else {
            return;
        };
        let State::Launching { ticket, cancelled } = e.cold.state else {
            return;
        };
        // A spare launch is `cancelled`, so no reply is owed for it below.
        self.spares.launch_ended(id);
        self.spares.launch_failed(now);
        // The reason stays in the table until the session leaves it; then it becomes
        // the tombstone (`on_dir_removed`).
        let end = EndReason::LaunchFailed { reason };
        e.set_state(State::Removing {
            reason: end,
            attempt: 1,
            finished: false,
            reply_to: (!cancelled).then_some(ticket),
        });
        e.hot.activity.mark_ended();
        let owner = e.cold.owner.take();
        self.forget_owner(id, owner);
        self.occupied -= 1;
        self.launching -= 1;
        self.totals.launch_failed += 1;
        self.actions.push_back(Action::RemoveDir { id, attempt: 1 });
        self.serve_waiters(now);
    }

    fn forget_owner(&mut self, id: SessionId, owner: Option<OwnerKey>) {
        if let Some(o) = owner {
            if let Some(set) = self.owners.get_mut(&o) {
                set.remove(&id);
                if set.is_empty() {
                    self.owners.remove(&o);
                }
            }
        }
    }

    /// The single entry into teardown for a live session, whatever the reason.
    fn teardown(&mut self, now: Timestamp, id: SessionId, reason: EndReason) {
        self.teardown_inline(now, id, reason);
    }

    /// [`Lifecycle::teardown`], inlined into the eviction loop: there the reason's
    /// variant is known, so its clone below is a plain copy.
    #[inline(always)]
    fn teardown_inline(&mut self, _now: Timestamp, id: SessionId, reason: EndReason) {
        if let Some((stage, wait)) = self.begin_teardown(id, &reason) {
            self.actions.push_back(Action::Ending {
                id,
                reason,
                stage,
                wait,
            });
        }
    }

    /// The first kill of a live session ending for `reason`: forced for a crashed browser
    /// (it has nothing left to close gracefully) or with a zero `kill_grace`.
    #[inline(always)]
    fn first_kill(&self, reason: &EndReason) -> (KillStage, Duration) {
        let grace = self.config.kill_grace;
        if grace.is_zero() || matches!(reason, EndReason::Crashed { .. }) {
            (KillStage::Force, self.config.kill_timeout)
        } else {
            (KillStage::Graceful, grace)
        }
    }

    /// Everything a teardown of live session `id` does but telling the shell: the state
    /// change (the reason is stored once, in the state, and becomes the tombstone when
    /// the session leaves the table), the cell marked ended, the counters, and the
    /// session taken out of the activity index, the timers, the owner map, the spares and
    /// the memory book. Returns the first kill, or `None` (and changes nothing) when `id`
    /// is not live. The caller queues the [`Action::Ending`] or adds the session to an
    /// [`Action::Reaped`].
    #[inline(always)]
    fn begin_teardown(
        &mut self,
        id: SessionId,
        reason: &EndReason,
    ) -> Option<(KillStage, Duration)> {
        let (stage, wait) = self.first_kill(reason);
        let mut e = self.table.get_mut(id)?;
        // Testing the state itself (not the hot tag that mirrors it) tells the compiler
        // that the state replaced below (Live) owns nothing to drop.
        if !matches!(e.cold.state, State::Live) {
            return None;
        }
        count_ending(&mut self.totals, reason);
        let label = reason.label();
        let left = stop_entry(&mut e, reason.clone(), stage);
        self.forget_ending(id, label, left);
        Some((stage, wait))
    }

    /// The last part of [`Lifecycle::begin_teardown`], once [`stop_entry`] has changed
    /// the session's slot: the session's entries outside the table. `label` names the
    /// reason (for the log).
    #[inline(always)]
    fn forget_ending(&mut self, id: SessionId, label: &'static str, left: LeftBehind) {
        let LeftBehind {
            placed,
            key,
            retire_at,
            release,
            owner,
        } = left;
        if placed != Placed::No {
            self.by_activity.remove(key, id, placed, &self.table);
        }
        if let Some(at) = retire_at {
            self.timers.remove(at, Timer::Retire(id));
        }
        if let Some(Release { deadline: at, .. }) = release {
            self.timers.remove(at, Timer::Release(id));
        }
        if owner.is_some() {
            self.forget_owner(id, owner);
        }
        if self.spares.forget(id) {
            tracing::info!(session = %id, reason = label, "spare ends unused");
        }
        self.stopping += 1;
        self.memory.forget(id);
    }

    fn on_kill_timed_out(&mut self, now: Timestamp, id: SessionId, attempt: u32) {
        let max = self.config.kill_attempts;
        let wait = self.config.kill_timeout;
        let Some(e) = self.table.get_mut(id) else {
            return;
        };
        let State::Stopping {
            attempt: current,
            stage,
            stalled,
            ..
        } = &mut e.cold.state
        else {
            return;
        };
        if *current != attempt {
            return; // a stale report from an earlier attempt
        }
        let newly_stalled = *stage == KillStage::Force && !*stalled;
        if newly_stalled {
            *stalled = true;
        }
        *current += 1;
        *stage = KillStage::Force;
        let next = *current;
        self.totals.kill_escalations += 1;
        if newly_stalled {
            self.stalled += 1;
        }
        if next > max {
            self.totals.kill_stuck += 1;
            tracing::error!(session = %id, attempts = next - 1,
                "process tree still alive after repeated kills; it keeps its slot and is retried");
        } else {
            tracing::warn!(session = %id, attempt = next, "escalating kill");
        }
        self.actions.push_back(Action::Kill {
            id,
            stage: KillStage::Force,
            attempt: next,
            wait,
        });
        // A waiter that counted on this slot must not wait for a tree that will not die:
        // find it another victim (with no waiter, `make_room` has nothing to do).
        if newly_stalled {
            self.make_room(now);
        }
    }

    fn on_gone(&mut self, now: Timestamp, id: SessionId) {
        let Some(mut e) = self.table.get_mut(id) else {
            return;
        };
        if !matches!(e.cold.state, State::Stopping { .. }) {
            return;
        }
        // Move the reason over rather than cloning it.
        if let State::Stopping {
            reason, stalled, ..
        } = std::mem::replace(&mut e.cold.state, State::Live)
        {
            if stalled {
                self.stalled -= 1;
            }
            e.set_state(State::Removing {
                reason,
                attempt: 1,
                finished: false,
                reply_to: None,
            });
        }
        self.stopping -= 1;
        self.occupied -= 1;
        self.actions.push_back(Action::RemoveDir { id, attempt: 1 });
        self.serve_waiters(now);
    }

    fn on_dir_removed(&mut self, id: SessionId) {
        let Some((state, remove_retry_at)) = self.table.remove_if_removing(id) else {
            return;
        };
        let State::Removing {
            reason,
            finished,
            reply_to,
            ..
        } = state
        else {
            return;
        };
        if let Some(at) = remove_retry_at {
            self.timers.remove(at, Timer::RemoveRetry(id));
        }
        if let Some(reply) = failed_launch_reply(id, reply_to, &reason) {
            self.actions.push_back(reply);
        }
        if !finished {
            tracing::info!(session = %id, reason = reason.label(), "session torn down");
            self.actions.push_back(Action::Finished {
                id,
                reason: reason.clone(),
                dir_removed: true,
            });
        } else {
            self.totals.dirs_recovered += 1;
            tracing::info!(session = %id, "directory removed on retry");
        }
        // The table forgot the session: from now on its reason is the tombstone.
        self.tombstones.remember(id, reason);
    }

    fn on_remove_failed(&mut self, now: Timestamp, id: SessionId, error: BackendError) {
        let backoff = self.config.remove_backoff;
        let shutting_down = self.shutting_down;
        let Some(e) = self.table.get_mut(id) else {
            return;
        };
        let State::Removing {
            reason,
            attempt,
            finished,
            reply_to,
        } = &mut e.cold.state
        else {
            return;
        };
        // The requester of a failed launch learns now; the directory is retried in the
        // background like any other.
        self.actions
            .extend(failed_launch_reply(id, reply_to.take(), reason));
        let delay = backoff.delay(*attempt);
        tracing::warn!(session = %id, dir = %self.dirs.dir(id).display(), attempt = *attempt, error = %error,
            retry_in = ?delay, "could not remove session directory; will retry");
        if !*finished {
            *finished = true;
            self.totals.remove_failures += 1;
            let reason = reason.clone();
            tracing::info!(session = %id, reason = reason.label(), "session torn down (directory pending)");
            self.actions.push_back(Action::Finished {
                id,
                reason,
                dir_removed: false,
            });
        }
        *attempt += 1;
        if !shutting_down || *attempt <= 3 {
            let at = now.saturating_add(delay);
            e.cold.remove_retry_at = Some(at);
            self.timers.insert(at, Timer::RemoveRetry(id));
        }
    }

    fn on_remove_retry(&mut self, id: SessionId) {
        let Some(e) = self.table.get_mut(id) else {
            return;
        };
        e.cold.remove_retry_at = None;
        if let State::Removing { attempt, .. } = e.cold.state {
            self.actions.push_back(Action::RemoveDir { id, attempt });
        }
    }

    fn on_cancel(&mut self, now: Timestamp, ticket: Ticket) {
        if let Some(pos) = self.waiters.iter().position(|w| w.ticket == ticket) {
            if let Some(w) = self.waiters.remove(pos) {
                self.timers.remove(w.deadline, Timer::Waiter(ticket));
            }
            return;
        }
        // The request may have been admitted already: find its launching session. Launches
        // in flight are few (at most max_browsers), so a scan is cheap.
        let found = self.table.iter_mut().find(|e| {
            e.hot.tag == Tag::Launching
                && matches!(e.cold.state, State::Launching { ticket: t, .. } if t == ticket)
        });
        if let Some(e) = found {
            if let State::Launching { cancelled, .. } = &mut e.cold.state {
                *cancelled = true;
            }
        }
        let _ = now;
    }

    fn on_waiter_timeout(&mut self, now: Timestamp, ticket: Ticket) {
        if let Some(pos) = self.waiters.iter().position(|w| w.ticket == ticket) {
            // Under EvictLru, a request is not refused while an idle session exists or a
            // victim's slot is on its way: it gets one extension, long enough for a
            // victim's whole kill budget, and a victim if it has none yet.
            let may_extend = self.config.capacity_policy == CapacityPolicy::EvictLru
                && !self.shutting_down
                && !self.waiters[pos].extended;
            if may_extend && (self.stopping > self.stalled || self.lru_idle(now).is_some()) {
                let extra =
                    self.config.kill_grace + self.config.kill_timeout * self.config.kill_attempts;
                let w = &mut self.waiters[pos];
                w.extended = true;
                w.deadline = now.saturating_add(extra);
                self.timers.insert(w.deadline, Timer::Waiter(ticket));
                self.make_room(now);
                return;
            }
            if let Some(w) = self.waiters.remove(pos) {
                self.totals.wait_timeouts += 1;
                let err = self.memory_refusal().unwrap_or(AcquireError::WaitTimedOut {
                    waited: now.saturating_since(w.since),
                });
                self.reply(ticket, Err(err));
            }
        }
        if self.waiters.is_empty() {
            self.recheck_at = None;
        }
    }

    fn on_release_due(&mut self, now: Timestamp, id: SessionId) {
        let Some(e) = self.table.get_mut(id) else {
            return;
        };
        let Some(release) = e.cold.release.take() else {
            return;
        };
        if e.hot.tag != Tag::Live {
            return;
        }
        // Used again means: busy now, an operation begun since the release, or a stamp
        // strictly after the release's tick. A bare `touch` in the very tick of the release
        // is indistinguishable from the last stamp before it and does not count (stamps are
        // tick-coarse); before this rule, a session whose client left in the same tick as
        // its last stamp was kept until the idle timeout.
        let a = &e.hot.activity;
        if a.is_busy() || a.uses() > release.uses || a.last_active() > release.at {
            tracing::debug!(session = %id, "owner released but session used again; kept");
            return;
        }
        self.teardown(now, id, EndReason::OwnerReleased);
    }

    fn check_retire(&mut self, now: Timestamp, id: SessionId) {
        let max_uses = self.config.max_uses;
        let max_life = self.config.max_lifetime;
        let memory = self.memory_retire_reason(id);
        let Some(e) = self.table.get_mut(id) else {
            return;
        };
        if e.hot.tag != Tag::Live {
            return;
        }
        let reason = if max_uses.is_some_and(|m| e.hot.activity.uses() >= m) {
            EndReason::Retired(RetireCause::MaxUses)
        } else if max_life.is_some_and(|l| now >= e.cold.launched_at.saturating_add(l)) {
            EndReason::Retired(RetireCause::MaxLifetime)
        } else if let Some(memory) = memory {
            memory
        } else {
            return;
        };
        if e.hot.activity.is_busy() {
            // Never mid-operation: look again one tick later.
            self.retire_later(now, id);
            return;
        }
        tracing::info!(session = %id, reason = %reason, "retiring session");
        self.teardown(now, id, reason);
    }

    /// Reap the idle sessions: each is torn down at once, and all of them are handed to
    /// the shell in one [`Action::Reaped`] (an [`Action::Ending`] when there is one).
    fn reap_idle(&mut self, now: Timestamp) {
        if self.idle_ms.is_none() {
            return;
        }
        // Every idle session gets the same first kill.
        let (stage, wait) = self.first_kill(&EndReason::IdleReaped {
            idle_for: Duration::ZERO,
        });
        let mut reaped = std::mem::take(&mut self.reaped);
        self.reap_into(now, stage, &mut reaped);
        match reaped.len() {
            0 => {}
            1 => {
                let (id, idle_for) = reaped[0];
                let reason = EndReason::IdleReaped { idle_for };
                self.actions.push_back(Action::Ending {
                    id,
                    reason,
                    stage,
                    wait,
                });
                reaped.clear();
            }
            n => {
                // The batch moves into the action, room and all; the next reap gets room
                // back from the shell, or reserves as much as this one needed.
                self.reaped_hint = n;
                let sessions = std::mem::take(&mut reaped);
                self.actions.push_back(Action::Reaped {
                    sessions,
                    stage,
                    wait,
                });
            }
        }
        self.reaped = reaped;
    }

    /// [`Lifecycle::reap_idle`]'s loop: tears the idle sessions down, with a first kill
    /// at `stage`, and adds them to `reaped`.
    #[inline(always)]
    fn reap_into(
        &mut self,
        now: Timestamp,
        stage: KillStage,
        reaped: &mut Vec<(SessionId, Duration)>,
    ) {
        let expired = IdleCutoff::new(self.idle_ms, self.grid_ms, now);
        // The last stamp seen and the idle time it gives.
        let mut last = (Timestamp::MAX, Duration::ZERO);
        // Each indexed session is taken out at most once per tick: it is torn down,
        // handed to the retirement check, or re-armed at a key that is not past (see
        // `victim_loop_stuck`).
        for _ in 0..=self.by_activity.len() {
            let Some((_, id)) = self
                .by_activity
                .pop_first_if(&self.table, |key| expired.at(key))
            else {
                return;
            };
            let Some(mut e) = self.table.get_mut(id) else {
                continue;
            };
            e.hot.placed = Placed::No;
            let a = &e.hot.activity;
            let real = a.last_active();
            // A busy session is re-armed as if active now; once its operation ends its
            // stamp is at least `now`, so the LRU order stays sound. One touched since its
            // key was recorded is re-armed at its real stamp unless that is past too
            // (`expired.at` is monotone and holds for `key`, so a real stamp not past is
            // necessarily newer than `key`).
            let rekey = if a.is_busy() {
                Some(now.max(real))
            } else if !expired.at(real) {
                Some(real)
            } else {
                None
            };
            if let Some(k) = rekey {
                e.hot.key = k;
                e.hot.placed = self.by_activity.insert(k, id);
                continue;
            }
            if self.config.max_uses.is_some_and(|m| a.uses() >= m) {
                self.check_retire(now, id);
                continue;
            }
            // `begin_teardown` with the slot already in hand.
            if !matches!(e.cold.state, State::Live) {
                continue;
            }
            // Sessions leave the index in stamp order and stamps are coarse (one value per
            // clock tick), so runs of reaped sessions share a stamp: the millisecond to
            // `Duration` conversion (a division) is done once per run.
            if real != last.0 {
                last = (real, now.saturating_since(real));
            }
            let idle_for = last.1;
            tracing::info!(session = %id, idle_for = ?idle_for, "reaping idle session");
            self.totals.reaped += 1;
            let left = stop_entry(&mut e, EndReason::IdleReaped { idle_for }, stage);
            self.forget_ending(id, "idle", left);
            if reaped.capacity() == 0 {
                reaped.reserve_exact(self.reaped_hint.clamp(2, REAPED_KEPT));
            }
            reaped.push((id, idle_for));
        }
        self.victim_loop_stuck("reap_idle");
    }

    /// Called when a loop that picks sessions to end (`reap_idle`, and the memory
    /// budget's `memory_admits` and `enforce_budget`) has run once more than there are
    /// sessions it could end. Each of its rounds ends or re-arms one session, so that
    /// only happens when a session it ended stayed where the loop finds it, i.e. a bug
    /// in this machine. Without this bound such a bug would spin forever while the
    /// pool's lock is held, hanging every caller; with it the loop stops, the event is
    /// logged at `error`, and the session stays until the next tick looks again. Debug
    /// builds (the tests) panic instead, so the bug cannot pass unnoticed.
    #[cold]
    fn victim_loop_stuck(&self, which: &'static str) {
        tracing::error!(
            victim_loop = which,
            occupied = self.occupied,
            "a loop choosing sessions to end did not finish within one round per session; stopped (a bug in browserpool)"
        );
        if cfg!(debug_assertions) {
            panic!("{which}: victim loop did not finish within one round per session");
        }
    }

    /// Under `EvictLru`, evict enough idle sessions to give every waiter a slot that is
    /// already on its way (a session stopping). If every session is busy, recheck one tick
    /// later until the waiters time out.
    fn make_room(&mut self, now: Timestamp) {
        if self.config.capacity_policy != CapacityPolicy::EvictLru || self.shutting_down {
            return;
        }
        let free = self.config.max_browsers.saturating_sub(self.occupied);
        // Slots on their way: sessions being killed whose forced kill has not yet failed.
        let on_the_way = self.stopping - self.stalled;
        let mut needed = self.waiters.len().saturating_sub(on_the_way + free);
        while needed > 0 {
            // A ready spare is the first victim (it holds no client's work); there is
            // normally none while requests wait, since a spare that comes up goes to them.
            let Some(victim) = self.spares.take_ready().or_else(|| self.lru_idle(now)) else {
                break;
            };
            tracing::info!(session = %victim, "evicting least recently used session");
            self.teardown_inline(now, victim, EndReason::Evicted);
            needed -= 1;
        }
        self.recheck_at = if needed > 0 {
            Some(now.saturating_add(self.config.tick))
        } else {
            None
        };
    }

    /// The least-recently-active live session with no operation in flight.
    fn lru_idle(&mut self, _now: Timestamp) -> Option<SessionId> {
        let mut cursor = None;
        // Each session is met at most twice (at a stale key, then where it was re-keyed),
        // so the walk is bounded like the victim loops (see `victim_loop_stuck`).
        for _ in 0..=2 * self.by_activity.len() {
            let (key, id) = self.by_activity.next_after(cursor, &self.table)?;
            let a = &self.table.hot(id)?.activity;
            if a.is_busy() {
                cursor = Some((key, id));
                continue;
            }
            let real = a.last_active();
            if real > key {
                // Stale key: move it to where it belongs; the scan will meet it again.
                self.unindex(id);
                self.index(id, real);
                cursor = Some((key, id));
                continue;
            }
            return Some(id);
        }
        self.victim_loop_stuck("lru_idle");
        None
    }

    /// Launch for waiting requests while slots (and memory) allow. No spare is ready or
    /// launching while requests wait (`check_spares`), so there is none to hand out here.
    fn serve_waiters(&mut self, now: Timestamp) {
        while self.occupied < self.config.max_browsers && !self.waiters.is_empty() {
            if !self.memory_admits(now) {
                // Kept out by memory with every session busy: look again next tick.
                self.recheck_at = Some(now.saturating_add(self.config.tick));
                break;
            }
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            self.timers.remove(w.deadline, Timer::Waiter(w.ticket));
            self.launch(now, w.ticket, w.owner);
        }
        if self.waiters.is_empty() {
            self.recheck_at = None;
        }
    }

    // ----------------------------------------------------------------- spares

    /// When a spare launch may start, if one is wanted and could start: a deficit
    /// (`ready + launching < spares`), fewer than
    /// [`PoolConfig::SPARE_LAUNCH_CONCURRENCY`] spare launches in flight, a free slot, no
    /// request waiting, not shutting down. The time is the end of the backoff, or
    /// [`Timestamp::ZERO`] (now) without one.
    fn refill_due(&self) -> Option<Timestamp> {
        let wanted = self.config.spares;
        let have = self.spares.ready_len() + self.spares.launching_len();
        let possible = have < wanted
            && self.spares.launching_len() < PoolConfig::SPARE_LAUNCH_CONCURRENCY
            && self.occupied < self.config.max_browsers
            && self.waiters.is_empty()
            && !self.shutting_down
            && self.memory_room_for_one();
        possible.then(|| self.spares.backoff_until().unwrap_or(Timestamp::ZERO))
    }

    /// Start the spare launches that are due (see [`Lifecycle::refill_due`]).
    #[inline]
    fn refill(&mut self, now: Timestamp) {
        // Without spares configured there is never one to launch (`refill_due` is
        // `None`); this runs after every input, so skip its checks.
        if self.config.spares == 0 {
            return;
        }
        // Each launch counts against `SPARE_LAUNCH_CONCURRENCY`, so `refill_due` is false
        // after that many. The bound makes a bug there fail (the assertion below, and
        // `check_spares`) instead of launching forever under the pool's lock.
        for _ in 0..PoolConfig::SPARE_LAUNCH_CONCURRENCY {
            if self.refill_due().is_none_or(|at| at > now) {
                return;
            }
            let id = self.start_launch(now, SPARE_TICKET, true, None);
            self.spares.launch_started(id);
            self.totals.spare_launches += 1;
            tracing::debug!(session = %id, "launching a spare");
        }
        debug_assert!(
            self.refill_due().is_none_or(|at| at > now),
            "refill: a spare launch is still due after SPARE_LAUNCH_CONCURRENCY launches"
        );
    }

    /// Give ready spare `id` (never handed out before) to the request `ticket`: from now
    /// on it is an ordinary live session of `owner`.
    fn hand_out(&mut self, now: Timestamp, ticket: Ticket, owner: Option<OwnerKey>, id: SessionId) {
        if let Some(o) = &owner {
            self.owners.entry(o.clone()).or_default().insert(id);
        }
        if let Some(e) = self.table.get_mut(id) {
            e.cold.owner = owner;
            e.hot.activity.touch(now);
        }
        self.index(id, now);
        tracing::debug!(session = %id, "handing out a spare");
        self.reply(ticket, Ok(id));
    }

    /// Let the request `ticket` take over spare launch `id`: it is answered when the
    /// launch reports, like a launch of its own.
    fn adopt(&mut self, ticket: Ticket, owner: Option<OwnerKey>, id: SessionId) {
        if let Some(o) = &owner {
            self.owners.entry(o.clone()).or_default().insert(id);
        }
        if let Some(e) = self.table.get_mut(id) {
            e.cold.owner = owner;
            e.cold.state = State::Launching {
                ticket,
                cancelled: false,
            };
        }
        tracing::debug!(session = %id, "request takes over a spare launch");
    }

    /// Spare launch `id` is up: it waits as a ready spare. No request can be waiting: a
    /// spare launch starts only while none waits (`refill_due`), and the first request
    /// that comes while it is in flight takes it over (`acquire`), so later ones queue
    /// only once no spare launch is left (`check_spares` holds this after every input).
    fn on_spare_launched(&mut self, now: Timestamp, id: SessionId) {
        self.spares.launch_succeeded();
        if self.go_live(now, id).is_none() {
            return;
        }
        self.spares.push_ready(id, now);
        if self.shutting_down {
            self.teardown(now, id, EndReason::Shutdown);
        }
    }

    /// Debug check of internal counters against the session map; for tests (feature
    /// `testing`).
    #[cfg(any(test, feature = "testing"))]
    pub fn check_invariants(&self) -> Result<(), String> {
        let st = self.stats();
        let tracked = st.launching + st.live + st.spares_ready + st.stopping + st.removing;
        if tracked != self.table.len() {
            return Err(format!(
                "session table counts {} sessions, its slots hold {tracked}",
                self.table.len()
            ));
        }
        if st.launching + st.live + st.spares_ready + st.stopping != self.occupied {
            return Err(format!(
                "occupied {} != launching {} + live {} + spares {} + stopping {}",
                self.occupied, st.launching, st.live, st.spares_ready, st.stopping
            ));
        }
        self.check_spares()?;
        self.check_memory()?;
        self.check_owners()?;
        if self.occupied > self.config.max_browsers {
            return Err(format!(
                "occupied {} > max_browsers {}",
                self.occupied, self.config.max_browsers
            ));
        }
        let stalled = self
            .table
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Stopping { stalled: true, .. }))
            .count();
        if st.stopping != self.stopping || st.launching != self.launching || stalled != self.stalled
        {
            return Err("stopping/launching counters drifted".into());
        }
        if self.by_activity.len() != st.live {
            return Err(format!(
                "activity index has {} entries for {} live sessions",
                self.by_activity.len(),
                st.live
            ));
        }
        let _ = self.timers.len();
        Ok(())
    }
}

impl Lifecycle {
    /// The owner index holds exactly the launching and live sessions that have an
    /// owner, each under its owner, and no empty set: an ended session's owner is
    /// forgotten, or the index would grow with every client a server has ever seen.
    #[cfg(any(test, feature = "testing"))]
    fn check_owners(&self) -> Result<(), String> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut expected: BTreeMap<&OwnerKey, BTreeSet<SessionId>> = BTreeMap::new();
        for (h, c) in self.table.iter() {
            if let (Tag::Launching | Tag::Live, Some(o)) = (h.tag, &c.owner) {
                expected.entry(o).or_default().insert(h.id);
            }
        }
        let actual: BTreeMap<&OwnerKey, BTreeSet<SessionId>> =
            self.owners.iter().map(|(o, s)| (o, s.clone())).collect();
        if actual != expected {
            return Err(format!(
                "owner index {actual:?} != owned launching and live sessions {expected:?}"
            ));
        }
        Ok(())
    }

    /// The spares' invariants: every ready spare is live, unindexed, never used and not
    /// owned; every spare launch is launching and owes no reply; ready + launching <=
    /// `spares`; launches <= the concurrency bound; no request waits while a spare is
    /// ready.
    #[cfg(any(test, feature = "testing"))]
    fn check_spares(&self) -> Result<(), String> {
        for id in self.spares.ready_ids() {
            let Some((h, c)) = self.table.get(id) else {
                return Err(format!("ready spare {id} is not in the table"));
            };
            if h.tag != Tag::Live || h.placed != Placed::No {
                return Err(format!("ready spare {id} is {:?}/{:?}", h.tag, h.placed));
            }
            if h.activity.uses() != 0 || h.activity.is_busy() || c.owner.is_some() {
                return Err(format!("ready spare {id} was used or owned"));
            }
        }
        for id in self.spares.launching_ids() {
            match self.table.get(id) {
                Some((_, c)) if matches!(c.state, State::Launching { ticket, cancelled: true } if ticket == SPARE_TICKET) =>
                    {}
                _ => return Err(format!("spare launch {id} is not a launch for nobody")),
            }
        }
        let (ready, launching) = (self.spares.ready_len(), self.spares.launching_len());
        if ready + launching > self.config.spares {
            return Err(format!(
                "{ready} ready + {launching} launching spares > spares {}",
                self.config.spares
            ));
        }
        if launching > PoolConfig::SPARE_LAUNCH_CONCURRENCY {
            return Err(format!("{launching} spare launches in flight"));
        }
        if ready + launching > 0 && !self.waiters.is_empty() {
            return Err(format!(
                "{ready} spares ready and {launching} launching while {} requests wait",
                self.waiters.len()
            ));
        }
        Ok(())
    }
}

/// The answer owed to the requester of a failed launch (`ticket`), if any.
fn failed_launch_reply(id: SessionId, ticket: Option<Ticket>, end: &EndReason) -> Option<Action> {
    match (ticket, end) {
        (Some(ticket), EndReason::LaunchFailed { reason }) => Some(Action::Reply {
            ticket,
            result: Err(AcquireError::LaunchFailed {
                id,
                reason: reason.clone(),
            }),
        }),
        _ => None,
    }
}

/// Which activity keys are past their idle deadline at `now`, without a division per key:
/// `idle_deadline(key) <= now` exactly when `key + idle <= floor(now / grid) * grid`
/// (the deadline is the first grid point at or after `key + idle`).
struct IdleCutoff {
    idle_ms: Option<u64>,
    grid_ms: u64,
    now: Timestamp,
    /// The latest key that is past its deadline, if any.
    upto: Option<u64>,
}

impl IdleCutoff {
    fn new(idle_ms: Option<u64>, grid_ms: u64, now: Timestamp) -> Self {
        let upto = idle_ms.and_then(|idle| (now.0 / grid_ms * grid_ms).checked_sub(idle));
        IdleCutoff {
            idle_ms,
            grid_ms,
            now,
            upto,
        }
    }

    /// Whether a session last active at `key` is past its idle deadline.
    #[inline]
    fn at(&self, key: Timestamp) -> bool {
        // The second test only differs where `idle_deadline` saturates (`now` at the end
        // of time); it runs once per tick, for the first key that is not past.
        self.upto.is_some_and(|u| key.0 <= u)
            || idle_deadline(self.idle_ms, self.grid_ms, key) <= self.now
    }
}

/// What a live session's slot referred to outside the table when [`stop_entry`] ended
/// it: its activity-index entry, its retirement and release timers, its owner.
struct LeftBehind {
    placed: Placed,
    key: Timestamp,
    retire_at: Option<Timestamp>,
    release: Option<Release>,
    owner: Option<OwnerKey>,
}

/// Count a teardown for `reason` in `totals`.
#[inline(always)]
fn count_ending(totals: &mut Totals, reason: &EndReason) {
    match reason {
        EndReason::Destroyed => totals.destroyed += 1,
        EndReason::IdleReaped { .. } => totals.reaped += 1,
        EndReason::Evicted => totals.evicted += 1,
        EndReason::Retired(_) => totals.retired += 1,
        EndReason::OwnerReleased => totals.owner_released += 1,
        EndReason::Shutdown => totals.shutdown += 1,
        EndReason::Abandoned => totals.abandoned += 1,
        EndReason::Memory { .. } => totals.memory += 1,
        // Counted where detected.
        EndReason::Crashed { .. } | EndReason::LaunchFailed { .. } => {}
    }
}

/// The part of a teardown (see `Lifecycle::begin_teardown`) on the session's slot alone,
/// for a session the caller found live: move it to `Stopping` for `reason` with a first
/// kill at `stage`, mark its cell ended, and take out what the rest of the machine must
/// forget. The reason is taken by value so that it is written straight into the slot.
#[inline(always)]
fn stop_entry(e: &mut table::Entry<'_>, reason: EndReason, stage: KillStage) -> LeftBehind {
    debug_assert_eq!(e.hot.tag, Tag::Live, "only a live session is stopped");
    e.set_state(State::Stopping {
        reason,
        attempt: 1,
        stage,
        stalled: false,
    });
    e.hot.activity.mark_ended();
    LeftBehind {
        placed: std::mem::replace(&mut e.hot.placed, Placed::No),
        key: e.hot.key,
        retire_at: e.cold.retire_at.take(),
        release: e.cold.release.take(),
        owner: e.cold.owner.take(),
    }
}

/// The most sessions whose room [`Lifecycle::reap_idle`] reserves ahead, or keeps from a
/// recycled batch, between reaps (24 bytes each): one huge reap does not pin its room.
const REAPED_KEPT: usize = 4096;

/// The idle deadline for a session last active at `key`, rounded up to the reap-interval
/// grid so reaps coalesce: always in `[key + idle, key + idle + reap_interval)`.
fn idle_deadline(idle_ms: Option<u64>, grid_ms: u64, key: Timestamp) -> Timestamp {
    let Some(idle) = idle_ms else {
        return Timestamp::MAX;
    };
    let raw = key.0.saturating_add(idle);
    Timestamp(raw.div_ceil(grid_ms).saturating_mul(grid_ms))
}

#[cfg(test)]
mod tests;
