//! Property tests: random input sequences through the lifecycle machine, with the
//! invariants checked after every step.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use browserpool::{
    AcquireError, Action, ActivityRef, BackendError, BackendErrorKind, CapacityPolicy, EndReason,
    Input, Lifecycle, MemoryUsage, OwnerKey, Phase, PoolConfig, SessionId, TeardownBegun, Ticket,
    Timestamp,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Acquire(Option<u8>),
    Destroy(u8),
    Touch(u8),
    Begin(u8),
    End(u8),
    Advance(u32),
    Crash(u8),
    Release(u8, u8),
    /// Complete pending backend work number `.0` (mod len): success if `.1`.
    Complete(u8, bool),
    Cancel(u8),
    Hint(u8),
    /// A round of memory samples for every live session, sizes drawn from the seed.
    Memory(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::of(0u8..3).prop_map(Op::Acquire),
        1 => any::<u8>().prop_map(Op::Destroy),
        3 => any::<u8>().prop_map(Op::Touch),
        2 => any::<u8>().prop_map(Op::Begin),
        2 => any::<u8>().prop_map(Op::End),
        4 => (0u32..40_000).prop_map(Op::Advance),
        1 => any::<u8>().prop_map(Op::Crash),
        1 => (0u8..3, 0u8..10).prop_map(|(o, g)| Op::Release(o, g)),
        8 => (any::<u8>(), proptest::bool::weighted(0.8)).prop_map(|(i, ok)| Op::Complete(i, ok)),
        1 => any::<u8>().prop_map(Op::Cancel),
        1 => any::<u8>().prop_map(Op::Hint),
        2 => any::<u8>().prop_map(Op::Memory),
    ]
}

fn config() -> impl Strategy<Value = PoolConfig> {
    (
        1usize..5,
        prop_oneof![
            Just(CapacityPolicy::EvictLru),
            Just(CapacityPolicy::Reject),
            Just(CapacityPolicy::Wait {
                timeout: Duration::from_secs(7)
            })
        ],
        proptest::option::weighted(0.85, 5u64..60),
        1u64..10,
        proptest::option::of(20u64..200),
        proptest::option::of(1u64..6),
        proptest::bool::ANY,
        (0usize..5, 5u64..90),
        (
            proptest::option::weighted(0.5, 100u64..600),
            proptest::option::weighted(0.3, 100u64..250),
        ),
    )
        .prop_map(
            |(max, policy, idle, reap, life, uses, grace, (spares, spare_age), (budget, per))| {
                PoolConfig::default()
                    .with_memory_budget(budget.map(|m| m << 20))
                    .with_max_session_memory(per.map(|m| m << 20))
                    .with_max_browsers(max)
                    // Half the cases keep spares off, as before; the rest have 1..=max.
                    .with_spares(if spares % 2 == 0 {
                        0
                    } else {
                        1 + spares / 2 % max
                    })
                    .with_spare_max_age(Duration::from_secs(spare_age))
                    .with_capacity_policy(policy)
                    .with_idle_timeout(idle.map(Duration::from_secs))
                    .with_reap_interval(Duration::from_secs(reap))
                    .with_tick(Duration::from_secs(1))
                    .with_acquire_timeout(Duration::from_secs(10))
                    .with_max_lifetime(life.map(Duration::from_secs))
                    .with_max_uses(uses)
                    .with_kill_grace(if grace {
                        Duration::from_millis(300)
                    } else {
                        Duration::ZERO
                    })
                    .with_kill_attempts(2)
                    .with_root(PathBuf::from("/r"))
                    .with_prefix("bpx-")
                    .with_tombstones(8)
            },
        )
}

#[derive(Debug, Clone)]
enum Pending {
    Launch(SessionId),
    Kill(SessionId, u32),
    Remove(SessionId),
}

struct World {
    m: Lifecycle,
    cfg: PoolConfig,
    now: Timestamp,
    pending: Vec<Pending>,
    issued: BTreeSet<SessionId>,
    acts: BTreeMap<SessionId, ActivityRef>,
    busy: BTreeMap<SessionId, u32>,
    endings: BTreeMap<SessionId, u32>,
    finished: BTreeMap<SessionId, u32>,
    launched: BTreeSet<SessionId>,
    tickets: Vec<Ticket>,
    answered: BTreeSet<Ticket>,
    cancelled: BTreeSet<Ticket>,
    /// Sessions handed out to a requester: each at most once, and never a spare after.
    handed: BTreeSet<SessionId>,
}

impl World {
    fn new(cfg: PoolConfig) -> Self {
        World {
            m: Lifecycle::new(cfg.clone(), "0000000000ab").unwrap(),
            cfg,
            now: Timestamp(0),
            pending: Vec::new(),
            issued: BTreeSet::new(),
            acts: BTreeMap::new(),
            busy: BTreeMap::new(),
            endings: BTreeMap::new(),
            finished: BTreeMap::new(),
            launched: BTreeSet::new(),
            tickets: Vec::new(),
            answered: BTreeSet::new(),
            cancelled: BTreeSet::new(),
            handed: BTreeSet::new(),
        }
    }

    fn pick(&self, i: u8) -> Option<SessionId> {
        let ids: Vec<SessionId> = self.launched.iter().copied().collect();
        (!ids.is_empty()).then(|| ids[i as usize % ids.len()])
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(a) = self.m.poll_action() {
            match a {
                Action::Launch { id } => {
                    prop_assert!(self.issued.insert(id), "{id} launched twice");
                    prop_assert_eq!(
                        self.m.session_dir(id),
                        PathBuf::from(format!("/r/bpx-0000000000ab-{}", id.0))
                    );
                    self.pending.push(Pending::Launch(id));
                }
                Action::Ending { .. } | Action::Reaped { .. } => {
                    if let Action::Reaped { sessions, .. } = &a {
                        // One action per reap, never for a single session.
                        prop_assert!(
                            sessions.len() >= 2,
                            "Reaped of {} session(s)",
                            sessions.len()
                        );
                    }
                    for TeardownBegun { id, reason, .. } in a.endings() {
                        prop_assert_eq!(
                            self.m.end_reason(id),
                            Some(&reason),
                            "{} ends for another reason than its action says",
                            id
                        );
                        prop_assert!(self.issued.contains(&id), "Ending names unknown {id}");
                        *self.endings.entry(id).or_default() += 1;
                        prop_assert_eq!(self.endings[&id], 1, "{} torn down twice", id);
                        // The first kill of the teardown travels with its beginning.
                        self.pending.push(Pending::Kill(id, 1));
                        let chosen_by_pool = matches!(
                            reason,
                            EndReason::Evicted
                                | EndReason::IdleReaped { .. }
                                | EndReason::Retired(_)
                                | EndReason::OwnerReleased
                                | EndReason::Memory { .. }
                        );
                        if matches!(reason, EndReason::Memory { .. }) {
                            prop_assert!(
                                self.cfg.memory_budget.is_some()
                                    || self.cfg.max_session_memory.is_some(),
                                "{} ended for memory without a memory limit",
                                id
                            );
                        }
                        if chosen_by_pool {
                            prop_assert!(
                                self.busy.get(&id).copied().unwrap_or(0) == 0,
                                "{} ended ({:?}) while busy",
                                id,
                                reason
                            );
                        }
                    }
                }
                Action::Kill { id, attempt, .. } => {
                    prop_assert!(self.issued.contains(&id), "Kill names unknown {id}");
                    prop_assert!(
                        attempt >= 2 && self.endings.contains_key(&id),
                        "Kill {} attempt {} is not an escalation of a teardown begun",
                        id,
                        attempt
                    );
                    self.pending.push(Pending::Kill(id, attempt));
                }
                Action::RemoveDir { id, .. } => {
                    prop_assert!(self.issued.contains(&id), "RemoveDir names unknown {id}");
                    self.pending.push(Pending::Remove(id));
                }
                Action::Reply { ticket, result } => {
                    prop_assert!(self.answered.insert(ticket), "ticket answered twice");
                    if let Ok(id) = result {
                        prop_assert!(self.launched.contains(&id));
                        prop_assert!(self.handed.insert(id), "{} handed out twice", id);
                        prop_assert!(!self.m.is_spare(id), "{} handed out but still a spare", id);
                        let uses = self.acts.get(&id).map_or(0, |a| a.uses());
                        prop_assert_eq!(uses, 0, "{} handed out after use", id);
                    }
                    if let Err(AcquireError::AtCapacity { .. }) = result {
                        prop_assert_eq!(self.cfg.capacity_policy, CapacityPolicy::Reject);
                    }
                    if let Err(AcquireError::MemoryBudget { .. }) = result {
                        prop_assert!(self.cfg.memory_budget.is_some());
                    }
                }
                Action::Finished { id, .. } => {
                    prop_assert!(self.issued.contains(&id), "Finished names unknown {id}");
                    *self.finished.entry(id).or_default() += 1;
                    prop_assert_eq!(self.finished[&id], 1, "{} finished twice", id);
                }
            }
        }
        // Record activity cells of sessions that just became reachable (launched for a
        // request, or a spare just handed out).
        for id in self.launched.clone() {
            if let Ok(a) = self.m.activity(id) {
                self.acts.entry(id).or_insert_with(|| a.clone());
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        self.m.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert!(self.m.occupied() <= self.cfg.max_browsers);
        // Spares: never one that was handed out (so never a used browser), at most
        // `spares` of them with their launches, one launch at a time, and they count
        // against max_browsers with every session.
        let (ready, launching) = (self.m.spare_ids(), self.m.spare_launch_ids());
        for id in ready.iter().chain(&launching) {
            prop_assert!(
                !self.handed.contains(id),
                "{} is a spare after being handed out",
                id
            );
            prop_assert!(
                self.acts.get(id).is_none_or(|a| a.uses() == 0),
                "{} used",
                id
            );
        }
        prop_assert!(ready.len() + launching.len() <= self.cfg.spares);
        prop_assert!(launching.len() <= PoolConfig::SPARE_LAUNCH_CONCURRENCY);
        let st = self.m.stats();
        prop_assert!(
            st.spares_ready + st.live + st.launching + st.stopping <= self.cfg.max_browsers,
            "{:?}",
            st
        );
        // No idle session outlives its last activity by more than idle + reap_interval.
        if let Some(idle) = self.cfg.idle_timeout {
            let bound = idle + self.cfg.reap_interval;
            for id in self.m.live_ids() {
                let busy = self.busy.get(&id).copied().unwrap_or(0) > 0;
                let last = self.acts[&id].last_active();
                if !busy {
                    prop_assert!(
                        self.now.saturating_since(last) < bound,
                        "{} idle for {:?} > {:?} at {}",
                        id,
                        self.now.saturating_since(last),
                        bound,
                        self.now
                    );
                }
            }
        }
        Ok(())
    }

    /// Right after a memory round: within the budget, or nothing left the budget may
    /// take (one session, or every live session busy and no ready spare).
    fn check_budget(&self) -> Result<(), TestCaseError> {
        let Some(budget) = self.cfg.memory_budget else {
            return Ok(());
        };
        let st = self.m.stats();
        if st.memory_projected <= budget {
            return Ok(());
        }
        let holders = st.launching + st.live + st.spares_ready;
        let idle = self
            .m
            .live_ids()
            .into_iter()
            .filter(|id| self.busy.get(id).copied().unwrap_or(0) == 0)
            .count();
        prop_assert!(
            holders <= 1 || (idle == 0 && st.spares_ready == 0),
            "over budget ({} > {}) with {} idle sessions and {} spares left: {:?}",
            st.memory_projected,
            budget,
            idle,
            st.spares_ready,
            st
        );
        Ok(())
    }

    fn advance_to(&mut self, target: Timestamp) -> Result<(), TestCaseError> {
        let mut same = 0;
        while let Some(t) = self.m.poll_timeout() {
            if t > target {
                break;
            }
            same = if t <= self.now { same + 1 } else { 0 };
            prop_assert!(same < 1000, "deadline {} is never serviced", t);
            self.now = self.now.max(t);
            self.m.handle_timeout(self.now);
            self.drain()?;
            self.check()?;
        }
        self.now = target;
        self.m.handle_timeout(self.now);
        self.drain()
    }

    fn complete(&mut self, idx: usize, ok: bool) -> Result<(), TestCaseError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let p = self.pending.remove(idx % self.pending.len());
        let input = match (p, ok) {
            (Pending::Launch(id), true) => {
                self.launched.insert(id);
                Input::Launched { id }
            }
            (Pending::Launch(id), false) => Input::LaunchFailed {
                id,
                reason: "boom".into(),
            },
            (Pending::Kill(id, _), true) => Input::Gone { id },
            (Pending::Kill(id, attempt), false) => Input::KillTimedOut { id, attempt },
            (Pending::Remove(id), true) => Input::DirRemoved { id },
            (Pending::Remove(id), false) => Input::RemoveFailed {
                id,
                error: BackendError::new("remove", BackendErrorKind::Busy, "busy"),
            },
        };
        self.m.handle(self.now, input);
        self.drain()
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Acquire(owner) => {
                let t = self
                    .m
                    .acquire(self.now, owner.map(|o| OwnerKey::new(format!("o{o}"))));
                self.tickets.push(t);
                self.drain()?;
            }
            Op::Destroy(i) => {
                if let Some(id) = self.pick(i) {
                    let _ = self.m.destroy(self.now, id);
                    self.drain()?;
                }
            }
            Op::Touch(i) => {
                if let Some(a) = self.pick(i).and_then(|id| self.acts.get(&id)) {
                    a.touch(self.now);
                }
            }
            Op::Begin(i) => {
                if let Some(id) = self.pick(i) {
                    if let Some(a) = self.acts.get(&id) {
                        if !a.is_ended() {
                            a.begin_op(self.now);
                            *self.busy.entry(id).or_default() += 1;
                        }
                    }
                }
            }
            Op::End(i) => {
                if let Some(id) = self.pick(i) {
                    let n = self.busy.entry(id).or_default();
                    if *n > 0 {
                        *n -= 1;
                        self.acts[&id].end_op(self.now);
                        if self.cfg.max_uses.is_some() {
                            self.m.handle(self.now, Input::RetireHint { id });
                            self.drain()?;
                        }
                    }
                }
            }
            Op::Advance(ms) => {
                let target = Timestamp(self.now.0 + u64::from(ms));
                self.advance_to(target)?;
            }
            Op::Crash(i) => {
                if let Some(id) = self.pick(i) {
                    self.m.handle(
                        self.now,
                        Input::Exited {
                            id,
                            exit: "killed by signal 9".into(),
                        },
                    );
                    self.drain()?;
                }
            }
            Op::Release(o, g) => {
                self.m.release_owner(
                    self.now,
                    &OwnerKey::new(format!("o{o}")),
                    Duration::from_secs(u64::from(g)),
                );
                self.drain()?;
            }
            Op::Complete(i, ok) => self.complete(i as usize, ok)?,
            Op::Cancel(i) => {
                if !self.tickets.is_empty() {
                    let t = self.tickets[i as usize % self.tickets.len()];
                    if !self.answered.contains(&t) {
                        self.cancelled.insert(t);
                        self.m.handle(self.now, Input::Cancel { ticket: t });
                        self.drain()?;
                    }
                }
            }
            Op::Hint(i) => {
                if let Some(id) = self.pick(i) {
                    self.m.handle(self.now, Input::RetireHint { id });
                    self.drain()?;
                }
            }
            Op::Memory(seed) => {
                let mut ids = self.m.live_ids();
                ids.extend(self.m.spare_ids());
                let samples = ids
                    .iter()
                    .map(|id| {
                        let mib = 20 + (u64::from(seed) * (id.0 + 1) * 37) % 200;
                        (
                            *id,
                            MemoryUsage {
                                rss_bytes: 2 * (mib << 20),
                                pss_bytes: mib << 20,
                                processes: 10,
                            },
                        )
                    })
                    .collect();
                self.m.handle(self.now, Input::Memory { samples });
                self.drain()?;
                self.check_budget()?;
            }
        }
        self.check()
    }

    /// Shut down and let every piece of pending work succeed.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for (id, n) in self.busy.iter_mut() {
            while *n > 0 {
                *n -= 1;
                self.acts[id].end_op(self.now);
            }
        }
        self.m.shutdown(self.now);
        self.drain()?;
        let mut guard = 0;
        while !self.pending.is_empty() || !self.m.is_empty() {
            guard += 1;
            prop_assert!(guard < 10_000, "shutdown does not converge");
            if self.pending.is_empty() {
                let t = self.m.poll_timeout().unwrap_or(self.now);
                self.advance_to(t.max(self.now))?;
                continue;
            }
            self.complete(0, true)?;
            self.check()?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(cfg in config(), ops in proptest::collection::vec(op(), 1..200)) {
        let mut w = World::new(cfg);
        for op in ops {
            w.step(op)?;
        }
        w.finish()?;
        // Every session that was ever issued is torn down exactly once.
        for id in &w.issued {
            prop_assert_eq!(w.finished.get(id).copied(), Some(1), "{} not finished exactly once", id);
        }
        for id in &w.launched {
            prop_assert_eq!(w.endings.get(id).copied(), Some(1), "{} not ended exactly once", id);
        }
        // Every request was answered.
        for t in &w.tickets {
            prop_assert!(w.answered.contains(t) || w.cancelled.contains(t), "ticket {:?} never answered", t);
        }
        prop_assert_eq!(w.m.stats().live, 0);
        prop_assert!(w.m.tracked_ids().iter().all(|id| w.m.phase(*id) != Some(Phase::Live)));
    }
}
