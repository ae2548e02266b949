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
//! The one input it reads by itself is each session's [`Activity`] cell, which clients
//! stamp lock-free; it reads a cell only when that session's deadline falls due or when
//! it looks for an eviction victim.
//!
//! ## A session's life
//!
//! ```text
//!  acquire ──► Launching ──Launched──► Live ──(destroy | idle | evict | retire |
//!                 │                     │      owner released | crash | shutdown)
//!           LaunchFailed                ▼
//!                 │                 Stopping ── Kill{Graceful?} → Kill{Force} × n ──Gone──┐
//!                 ▼                                                                       ▼
//!             Removing ◄──────────────────────────────────────────────────────────── Removing
//!                 │ RemoveDir ─ DirRemoved ─► Finished (slot, tombstone, one event)
//!                 └─ RemoveFailed ─► Finished{dir_removed: false}, retried with backoff forever
//! ```
//!
//! A session counts against `max_browsers` from `acquire` until its processes are
//! `Gone`, so `max_browsers` bounds live process trees, not map entries.

mod index;
mod snapshot;

pub use snapshot::SessionInfo;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::backend::KillStage;
use crate::config::{CapacityPolicy, PoolConfig};
use crate::error::{AcquireError, BackendError, BackendErrorKind, ConfigError, SessionError};
use crate::session::{Activity, EndReason, OwnerKey, RetireCause, SessionId};
use crate::stats::Totals;
use crate::time::{duration_ms, Timestamp};

use index::{ActivityIndex, Timer, TimerIndex};

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
    /// After a [`Action::Kill`], no live process of the tree remains.
    Gone {
        /// The session.
        id: SessionId,
    },
    /// After [`Action::Kill`] number `attempt`, the tree was still alive when `wait` ran
    /// out.
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
}

/// Work for the shell to carry out, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create `dir` and launch a browser in it; report [`Input::Launched`] or
    /// [`Input::LaunchFailed`] (and later [`Input::Exited`] if it exits).
    Launch {
        /// The new session.
        id: SessionId,
        /// Its directory, `root/<prefix><instance>-<id>`.
        dir: PathBuf,
    },
    /// Teardown has begun; callers using `id` from now on get `reason`.
    Ending {
        /// The session.
        id: SessionId,
        /// Why it ends.
        reason: EndReason,
    },
    /// Stop the process tree at `stage`, then wait up to `wait` for it to be gone;
    /// report [`Input::Gone`] or [`Input::KillTimedOut`] with this `attempt`.
    Kill {
        /// The session.
        id: SessionId,
        /// How hard.
        stage: KillStage,
        /// 1 for the first kill of this teardown; escalations count up.
        attempt: u32,
        /// How long to wait for the tree to be gone.
        wait: Duration,
    },
    /// Remove the session's directory without following symlinks; report
    /// [`Input::DirRemoved`] or [`Input::RemoveFailed`].
    RemoveDir {
        /// The session.
        id: SessionId,
        /// The directory.
        dir: PathBuf,
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

#[derive(Debug)]
enum State {
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
    },
}

#[derive(Debug)]
struct Session {
    state: State,
    activity: Arc<Activity>,
    dir: PathBuf,
    owner: Option<OwnerKey>,
    launched_at: Timestamp,
    /// Key in the activity index while live.
    index_key: Option<Timestamp>,
    retire_at: Option<Timestamp>,
    /// Grace deadline and the release time (touched-again means stamped at or after it).
    release: Option<(Timestamp, Timestamp)>,
    remove_retry_at: Option<Timestamp>,
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
    /// Process trees that count against `max_browsers` (launching + live + stopping).
    pub occupied: usize,
    /// Running totals.
    pub totals: Totals,
}

/// The lifecycle state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Lifecycle {
    config: PoolConfig,
    dir_prefix: String,
    idle_ms: Option<u64>,
    grid_ms: u64,
    sessions: FxHashMap<SessionId, Session>,
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
    tombstones: FxHashMap<SessionId, EndReason>,
    tombstone_order: VecDeque<SessionId>,
    actions: VecDeque<Action>,
    shutting_down: bool,
    totals: Totals,
}

impl Lifecycle {
    /// A machine for `config` whose session directories are named
    /// `<root>/<prefix><instance>-<id>`. `instance` identifies this pool on the host (see
    /// [`crate::sweep`]); it must be unique among pools sharing `root` and `prefix`.
    pub fn new(config: PoolConfig, instance: &str) -> Result<Self, ConfigError> {
        config.validate()?;
        let dir_prefix = format!("{}{}-", config.prefix, instance);
        Ok(Lifecycle {
            idle_ms: config.idle_timeout.map(duration_ms),
            grid_ms: duration_ms(config.reap_interval).max(1),
            dir_prefix,
            config,
            sessions: FxHashMap::default(),
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
            tombstones: FxHashMap::default(),
            tombstone_order: VecDeque::new(),
            actions: VecDeque::new(),
            shutting_down: false,
            totals: Totals::default(),
        })
    }

    // ----------------------------------------------------------------- getters

    /// The configuration this machine enforces.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The activity cell of a session that is launching or live; for an ended session,
    /// why it ended.
    pub fn activity(&self, id: SessionId) -> Result<&Arc<Activity>, SessionError> {
        match self.sessions.get(&id) {
            Some(s) if matches!(s.state, State::Launching { .. } | State::Live) => Ok(&s.activity),
            _ => Err(self.ended_error(id)),
        }
    }

    /// Where `id` is in its life, if the machine still tracks it.
    pub fn phase(&self, id: SessionId) -> Option<Phase> {
        self.sessions.get(&id).map(|s| match s.state {
            State::Launching { .. } => Phase::Launching,
            State::Live => Phase::Live,
            State::Stopping { .. } => Phase::Stopping,
            State::Removing { .. } => Phase::Removing,
        })
    }

    /// Why `id` ended, if it did and is still remembered.
    pub fn end_reason(&self, id: SessionId) -> Option<&EndReason> {
        self.tombstones.get(&id)
    }

    /// Process trees that count against `max_browsers` now.
    pub fn occupied(&self) -> usize {
        self.occupied
    }

    /// Live session ids in least-recently-recorded order (deterministic).
    pub fn live_ids(&self) -> Vec<SessionId> {
        self.by_activity.ids()
    }

    /// Sessions the machine still tracks (any phase), in id order.
    pub fn tracked_ids(&self) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether [`Lifecycle::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// True when nothing is tracked any more: no session in any phase, no waiter.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.waiters.is_empty()
    }

    /// True when every session has at least reached [`Action::Finished`] (only
    /// background directory retries may remain).
    pub fn all_finished(&self) -> bool {
        self.waiters.is_empty()
            && self
                .sessions
                .values()
                .all(|s| matches!(s.state, State::Removing { finished: true, .. }))
    }

    /// A snapshot of gauges and totals. O(live sessions) for the busy count.
    pub fn stats(&self) -> MachineStats {
        let mut st = MachineStats {
            waiting: self.waiters.len(),
            occupied: self.occupied,
            totals: self.totals.clone(),
            ..MachineStats::default()
        };
        for s in self.sessions.values() {
            match s.state {
                State::Launching { .. } => st.launching += 1,
                State::Live => {
                    st.live += 1;
                    if s.activity.is_busy() {
                        st.busy += 1;
                    }
                }
                State::Stopping { .. } => st.stopping += 1,
                State::Removing { .. } => st.removing += 1,
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
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Lifecycle::handle_timeout`] should next be called, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let idle = match (self.idle_ms, self.by_activity.first()) {
            (Some(_), Some((key, _))) => Some(self.idle_deadline(key)),
            _ => None,
        };
        [idle, self.timers.first_deadline(), self.recheck_at]
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
        if self.waiters.is_empty() && self.occupied < self.config.max_browsers {
            self.launch(now, ticket, owner);
            return ticket;
        }
        let timeout = match self.config.capacity_policy {
            CapacityPolicy::Reject => {
                self.totals.rejected += 1;
                self.reply(
                    ticket,
                    Err(AcquireError::AtCapacity {
                        max: self.config.max_browsers,
                    }),
                );
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
    pub fn destroy(&mut self, now: Timestamp, id: SessionId) -> Result<(), SessionError> {
        match self.sessions.get(&id).map(|s| &s.state) {
            Some(State::Live) => {
                self.teardown(now, id, EndReason::Destroyed);
                Ok(())
            }
            Some(State::Launching { .. }) => Err(SessionError::Unknown { id }),
            _ => Err(self.ended_error(id)),
        }
    }

    /// The client behind `owner` went away: destroy its live sessions once `grace` has
    /// passed, unless they are used again (stamped at or after `now`) or busy then.
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
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if !matches!(s.state, State::Live) {
                continue;
            }
            if let Some((old, _)) = s.release.take() {
                self.timers.remove(old, Timer::Release(id));
            }
            s.release = Some((deadline, now));
            self.timers.insert(deadline, Timer::Release(id));
            n += 1;
        }
        if grace.is_zero() {
            self.handle_timeout(now);
        }
        n
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
        for id in self.by_activity.ids() {
            self.teardown(now, id, EndReason::Shutdown);
        }
        // Directories waiting for a retry are retried now rather than after the backoff.
        for id in self.tracked_ids() {
            if let Some(s) = self.sessions.get_mut(&id) {
                if let (State::Removing { attempt, .. }, Some(at)) =
                    (&s.state, s.remove_retry_at.take())
                {
                    self.timers.remove(at, Timer::RemoveRetry(id));
                    self.actions.push_back(Action::RemoveDir {
                        id,
                        dir: s.dir.clone(),
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
                if matches!(self.state_of(id), Some(State::Live)) {
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
        }
    }

    /// Act on every deadline at or before `now`: idle reaps, retirements, owner grace
    /// periods, waiter timeouts, directory retries. Costs O(expired · log n); with
    /// nothing due, two comparisons.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.reap_idle(now);
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Retire(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.retire_at = None;
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
    }

    // ----------------------------------------------------------------- internals

    fn state_of(&self, id: SessionId) -> Option<&State> {
        self.sessions.get(&id).map(|s| &s.state)
    }

    fn ended_error(&self, id: SessionId) -> SessionError {
        let from_session = self.sessions.get(&id).and_then(|s| match &s.state {
            State::Stopping { reason, .. } | State::Removing { reason, .. } => Some(reason.clone()),
            _ => None,
        });
        match from_session.or_else(|| self.tombstones.get(&id).cloned()) {
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

    fn launch(&mut self, now: Timestamp, ticket: Ticket, owner: Option<OwnerKey>) {
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let dir = self
            .config
            .root
            .join(format!("{}{}", self.dir_prefix, id.0));
        if let Some(o) = &owner {
            self.owners.entry(o.clone()).or_default().insert(id);
        }
        self.sessions.insert(
            id,
            Session {
                state: State::Launching {
                    ticket,
                    cancelled: false,
                },
                activity: Arc::new(Activity::new(now)),
                dir: dir.clone(),
                owner,
                launched_at: now,
                index_key: None,
                retire_at: None,
                release: None,
                remove_retry_at: None,
            },
        );
        self.occupied += 1;
        self.launching += 1;
        self.actions.push_back(Action::Launch { id, dir });
    }

    fn on_launched(&mut self, now: Timestamp, id: SessionId) {
        let shutting_down = self.shutting_down;
        let retire_after = self.config.max_lifetime;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let State::Launching { ticket, cancelled } = s.state else {
            return;
        };
        s.state = State::Live;
        s.launched_at = now;
        s.activity.touch(now);
        s.index_key = Some(now);
        if let Some(life) = retire_after {
            let at = now.saturating_add(life);
            s.retire_at = Some(at);
            self.timers.insert(at, Timer::Retire(id));
        }
        self.by_activity.insert(now, id);
        self.launching -= 1;
        self.totals.created += 1;
        if shutting_down {
            self.reply(ticket, Err(AcquireError::ShuttingDown));
            self.teardown(now, id, EndReason::Shutdown);
        } else if cancelled {
            self.teardown(now, id, EndReason::Abandoned);
        } else {
            self.reply(ticket, Ok(id));
        }
    }

    fn on_launch_failed(&mut self, now: Timestamp, id: SessionId, reason: String) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let State::Launching { ticket, cancelled } = s.state else {
            return;
        };
        let end = EndReason::LaunchFailed {
            reason: reason.clone(),
        };
        s.state = State::Removing {
            reason: end.clone(),
            attempt: 1,
            finished: false,
        };
        s.activity.mark_ended();
        let dir = s.dir.clone();
        let owner = s.owner.take();
        self.forget_owner(id, owner);
        self.occupied -= 1;
        self.launching -= 1;
        self.totals.launch_failed += 1;
        self.remember(id, end);
        if !cancelled {
            self.reply(ticket, Err(AcquireError::LaunchFailed { id, reason }));
        }
        self.actions.push_back(Action::RemoveDir {
            id,
            dir,
            attempt: 1,
        });
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

    fn remember(&mut self, id: SessionId, reason: EndReason) {
        if self.tombstones.insert(id, reason).is_none() {
            self.tombstone_order.push_back(id);
            while self.tombstone_order.len() > self.config.tombstones {
                if let Some(old) = self.tombstone_order.pop_front() {
                    self.tombstones.remove(&old);
                }
            }
        }
    }

    /// The single entry into teardown for a live session, whatever the reason.
    fn teardown(&mut self, _now: Timestamp, id: SessionId, reason: EndReason) {
        let grace = self.config.kill_grace;
        let kill_timeout = self.config.kill_timeout;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if !matches!(s.state, State::Live) {
            return;
        }
        let crashed = matches!(reason, EndReason::Crashed { .. });
        // A crashed browser has nothing left to close gracefully.
        let (stage, wait) = if grace.is_zero() || crashed {
            (KillStage::Force, kill_timeout)
        } else {
            (KillStage::Graceful, grace)
        };
        s.state = State::Stopping {
            reason: reason.clone(),
            attempt: 1,
            stage,
            stalled: false,
        };
        s.activity.mark_ended();
        if let Some(key) = s.index_key.take() {
            self.by_activity.remove(key, id);
        }
        if let Some(at) = s.retire_at.take() {
            self.timers.remove(at, Timer::Retire(id));
        }
        if let Some((at, _)) = s.release.take() {
            self.timers.remove(at, Timer::Release(id));
        }
        let owner = s.owner.take();
        self.forget_owner(id, owner);
        self.stopping += 1;
        match &reason {
            EndReason::Destroyed => self.totals.destroyed += 1,
            EndReason::IdleReaped { .. } => self.totals.reaped += 1,
            EndReason::Evicted => self.totals.evicted += 1,
            EndReason::Retired(_) => self.totals.retired += 1,
            EndReason::OwnerReleased => self.totals.owner_released += 1,
            EndReason::Shutdown => self.totals.shutdown += 1,
            EndReason::Abandoned => self.totals.abandoned += 1,
            // Counted where detected.
            EndReason::Crashed { .. } | EndReason::LaunchFailed { .. } => {}
        }
        self.remember(id, reason.clone());
        self.actions.push_back(Action::Ending { id, reason });
        self.actions.push_back(Action::Kill {
            id,
            stage,
            attempt: 1,
            wait,
        });
    }

    fn on_kill_timed_out(&mut self, now: Timestamp, id: SessionId, attempt: u32) {
        let max = self.config.kill_attempts;
        let wait = self.config.kill_timeout;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let State::Stopping {
            attempt: current,
            stage,
            stalled,
            ..
        } = &mut s.state
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
        // find it another victim.
        if newly_stalled && !self.waiters.is_empty() {
            self.make_room(now);
        }
    }

    fn on_gone(&mut self, now: Timestamp, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let State::Stopping {
            reason, stalled, ..
        } = &s.state
        else {
            return;
        };
        if *stalled {
            self.stalled -= 1;
        }
        s.state = State::Removing {
            reason: reason.clone(),
            attempt: 1,
            finished: false,
        };
        let dir = s.dir.clone();
        self.stopping -= 1;
        self.occupied -= 1;
        self.actions.push_back(Action::RemoveDir {
            id,
            dir,
            attempt: 1,
        });
        self.serve_waiters(now);
    }

    fn on_dir_removed(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let State::Removing {
            reason, finished, ..
        } = &s.state
        else {
            return;
        };
        if let Some(at) = s.remove_retry_at {
            self.timers.remove(at, Timer::RemoveRetry(id));
        }
        if !*finished {
            let reason = reason.clone();
            tracing::info!(session = %id, reason = reason.label(), "session torn down");
            self.actions.push_back(Action::Finished {
                id,
                reason,
                dir_removed: true,
            });
        } else {
            self.totals.dirs_recovered += 1;
            tracing::info!(session = %id, "directory removed on retry");
        }
        self.sessions.remove(&id);
    }

    fn on_remove_failed(&mut self, now: Timestamp, id: SessionId, error: BackendError) {
        let backoff = self.config.remove_backoff;
        let shutting_down = self.shutting_down;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let State::Removing {
            reason,
            attempt,
            finished,
        } = &mut s.state
        else {
            return;
        };
        let delay = backoff.delay(*attempt);
        tracing::warn!(session = %id, dir = %s.dir.display(), attempt = *attempt, error = %error,
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
            s.remove_retry_at = Some(at);
            self.timers.insert(at, Timer::RemoveRetry(id));
        }
    }

    fn on_remove_retry(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.remove_retry_at = None;
        if let State::Removing { attempt, .. } = s.state {
            self.actions.push_back(Action::RemoveDir {
                id,
                dir: s.dir.clone(),
                attempt,
            });
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
        let found = self
            .sessions
            .iter_mut()
            .find(|(_, s)| matches!(s.state, State::Launching { ticket: t, .. } if t == ticket));
        if let Some((_, s)) = found {
            if let State::Launching { cancelled, .. } = &mut s.state {
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
                self.reply(
                    ticket,
                    Err(AcquireError::WaitTimedOut {
                        waited: now.saturating_since(w.since),
                    }),
                );
            }
        }
        if self.waiters.is_empty() {
            self.recheck_at = None;
        }
    }

    fn on_release_due(&mut self, now: Timestamp, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some((_, released_at)) = s.release.take() else {
            return;
        };
        if !matches!(s.state, State::Live) {
            return;
        }
        if s.activity.is_busy() || s.activity.last_active() >= released_at {
            tracing::debug!(session = %id, "owner released but session used again; kept");
            return;
        }
        self.teardown(now, id, EndReason::OwnerReleased);
    }

    fn check_retire(&mut self, now: Timestamp, id: SessionId) {
        let max_uses = self.config.max_uses;
        let max_life = self.config.max_lifetime;
        let tick = self.config.tick;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if !matches!(s.state, State::Live) {
            return;
        }
        let cause = if max_uses.is_some_and(|m| s.activity.uses() >= m) {
            RetireCause::MaxUses
        } else if max_life.is_some_and(|l| now >= s.launched_at.saturating_add(l)) {
            RetireCause::MaxLifetime
        } else {
            return;
        };
        if s.activity.is_busy() {
            // Never mid-operation: look again one tick later.
            if s.retire_at.is_none() {
                let at = now.saturating_add(tick);
                s.retire_at = Some(at);
                self.timers.insert(at, Timer::Retire(id));
            }
            return;
        }
        tracing::info!(session = %id, cause = ?cause, "retiring session");
        self.teardown(now, id, EndReason::Retired(cause));
    }

    fn reap_idle(&mut self, now: Timestamp) {
        if self.idle_ms.is_none() {
            return;
        }
        let (idle_ms, grid) = (self.idle_ms, self.grid_ms);
        while let Some((key, id)) = self.by_activity.first() {
            if self.idle_deadline(key) > now {
                break;
            }
            self.by_activity.remove(key, id);
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            let real = s.activity.last_active();
            // A busy session is re-armed as if active now; once its operation ends its
            // stamp is at least `now`, so the LRU order stays sound.
            let rekey = if s.activity.is_busy() {
                Some(now.max(real))
            } else if real > key && idle_deadline(idle_ms, grid, real) > now {
                Some(real)
            } else {
                None
            };
            if let Some(k) = rekey {
                s.index_key = Some(k);
                self.by_activity.insert(k, id);
                continue;
            }
            s.index_key = None;
            let idle_for = now.saturating_since(real);
            if self.config.max_uses.is_some_and(|m| s.activity.uses() >= m) {
                self.check_retire(now, id);
                continue;
            }
            tracing::info!(session = %id, idle_for = ?idle_for, "reaping idle session");
            self.teardown(now, id, EndReason::IdleReaped { idle_for });
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
            let Some(victim) = self.lru_idle(now) else {
                break;
            };
            tracing::info!(session = %victim, "evicting least recently used session");
            self.teardown(now, victim, EndReason::Evicted);
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
        while let Some((key, id)) = self.by_activity.next_after(cursor) {
            let s = self.sessions.get_mut(&id)?;
            if s.activity.is_busy() {
                cursor = Some((key, id));
                continue;
            }
            let real = s.activity.last_active();
            if real > key {
                // Stale key: move it to where it belongs; the scan will meet it again.
                self.by_activity.remove(key, id);
                self.by_activity.insert(real, id);
                s.index_key = Some(real);
                cursor = Some((key, id));
                continue;
            }
            return Some(id);
        }
        None
    }

    fn serve_waiters(&mut self, now: Timestamp) {
        while self.occupied < self.config.max_browsers {
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

    /// Debug check of internal counters against the session map; used by tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let st = self.stats();
        if st.launching + st.live + st.stopping != self.occupied {
            return Err(format!(
                "occupied {} != launching {} + live {} + stopping {}",
                self.occupied, st.launching, st.live, st.stopping
            ));
        }
        if self.occupied > self.config.max_browsers {
            return Err(format!(
                "occupied {} > max_browsers {}",
                self.occupied, self.config.max_browsers
            ));
        }
        let stalled = self
            .sessions
            .values()
            .filter(|s| matches!(s.state, State::Stopping { stalled: true, .. }))
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
