//! Unit tests of the memory budget (`memory_budget`, `max_session_memory`).

use super::*;
use crate::session::MemoryLimit;

const MIB: u64 = 1 << 20;

fn mem_cfg(max: usize, budget_mib: Option<u64>, per_session_mib: Option<u64>) -> PoolConfig {
    let mut c = cfg();
    c.max_browsers = max;
    c.idle_timeout = None;
    c.memory_budget = budget_mib.map(|m| m * MIB);
    c.max_session_memory = per_session_mib.map(|m| m * MIB);
    c
}

fn pss(mib: u64) -> MemoryUsage {
    MemoryUsage {
        rss_bytes: 2 * mib * MIB,
        pss_bytes: mib * MIB,
        processes: 10,
    }
}

impl H {
    /// Feed one round of samples, in MiB of PSS.
    fn mem(&mut self, samples: &[(SessionId, u64)]) -> Vec<Action> {
        let samples = samples.iter().map(|&(id, m)| (id, pss(m))).collect();
        self.feed(Input::Memory { samples })
    }
    /// A live session used at `ms` (so the LRU order is the order of creation).
    fn live_at(&mut self, ms: u64) -> SessionId {
        self.at(ms);
        self.live()
    }
}

/// A machine with two live sessions, both busy and measured at 100 MiB.
fn two_busy_at_100_mib(c: PoolConfig) -> (H, SessionId, SessionId) {
    let mut h = H::new(c);
    let a = h.live_at(0);
    let b = h.live_at(S);
    for id in [a, b] {
        h.m.activity(id).unwrap().begin_op(h.now);
    }
    h.mem(&[(a, 100), (b, 100)]);
    (h, a, b)
}

fn memory(limit: MemoryLimit, mib: u64) -> EndReason {
    EndReason::Memory {
        limit,
        pss_bytes: mib * MIB,
    }
}

#[test]
fn over_the_budget_the_least_recently_active_idle_sessions_go_never_a_busy_one() {
    let mut h = H::new(mem_cfg(4, Some(250), None));
    let a = h.live_at(0);
    let b = h.live_at(S);
    let c = h.live_at(2 * S);
    // a is the least recently active but busy: b goes, and then the pool fits.
    h.m.activity(a).unwrap().begin_op(Timestamp(3 * S));
    h.at(3 * S);
    let acts = h.mem(&[(a, 100), (b, 100), (c, 100)]);
    assert_eq!(ending(&acts), vec![(b, memory(MemoryLimit::Budget, 100))]);
    assert_eq!(ending(&acts)[0].1.label(), "memory");
    let st = h.m.stats();
    assert_eq!(st.memory_used, 200 * MIB);
    assert_eq!(st.memory_budget, Some(250 * MIB));
    assert_eq!((st.totals.memory, st.totals.evicted), (1, 0));
    h.complete(&acts, b);
    // Growth past the budget again: c is idle, a still busy.
    h.at(4 * S);
    let acts = h.mem(&[(a, 150), (c, 150)]);
    assert_eq!(ending(&acts), vec![(c, memory(MemoryLimit::Budget, 150))]);
    h.m.check_invariants().unwrap();
}

#[test]
fn every_session_busy_over_the_budget_evicts_nothing() {
    let mut h = H::new(mem_cfg(4, Some(100), None));
    let a = h.live_at(0);
    let b = h.live_at(S);
    for id in [a, b] {
        h.m.activity(id).unwrap().begin_op(h.now);
    }
    let acts = h.mem(&[(a, 100), (b, 100)]);
    assert!(ending(&acts).is_empty(), "{acts:?}");
    assert_eq!(h.m.stats().memory_projected, 200 * MIB);
    h.m.check_invariants().unwrap();
}

#[test]
fn the_last_session_is_never_evicted_for_the_budget_and_stats_say_so() {
    let mut h = H::new(mem_cfg(4, Some(100), None));
    let a = h.live_at(0);
    let b = h.live_at(S);
    let acts = h.mem(&[(a, 80), (b, 80)]);
    assert_eq!(ending(&acts), vec![(a, memory(MemoryLimit::Budget, 80))]);
    assert_eq!(h.m.totals().over_budget_with_one_session, 0);
    h.complete(&acts, a);
    let acts = h.mem(&[(b, 300)]);
    assert!(ending(&acts).is_empty(), "{acts:?}");
    assert_eq!(h.m.totals().over_budget_with_one_session, 1);
    assert_eq!(h.m.phase(b), Some(Phase::Live));
}

#[test]
fn a_session_over_max_session_memory_is_retired_at_its_next_idle_moment() {
    let mut h = H::new(mem_cfg(4, None, Some(200)));
    let a = h.live_at(0);
    let b = h.live_at(S);
    let op = h.m.activity(a).unwrap().clone();
    op.begin_op(h.now);
    let acts = h.mem(&[(a, 250), (b, 150)]);
    assert!(
        ending(&acts).is_empty(),
        "a is busy, b under the limit: {acts:?}"
    );
    h.at(2 * S);
    assert!(ending(&h.tick()).is_empty(), "still busy");
    op.end_op(h.now);
    h.at(3 * S);
    let acts = h.tick();
    assert_eq!(ending(&acts), vec![(a, memory(MemoryLimit::Session, 250))]);
    assert_eq!(h.m.totals().memory, 1);
    // An idle one goes at once.
    let acts = h.mem(&[(b, 201)]);
    assert_eq!(ending(&acts), vec![(b, memory(MemoryLimit::Session, 201))]);
    h.m.check_invariants().unwrap();
}

#[test]
fn a_busy_session_over_its_limit_is_rechecked_within_a_tick_despite_a_late_lifetime_timer() {
    let mut c = mem_cfg(2, None, Some(100));
    c.max_lifetime = Some(Duration::from_secs(3600));
    let mut h = H::new(c);
    let a = h.live_at(0);
    let op = h.m.activity(a).unwrap().clone();
    op.begin_op(h.now);
    h.mem(&[(a, 101)]);
    op.end_op(h.now);
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(S)));
    h.at(S);
    assert_eq!(
        ending(&h.tick()),
        vec![(a, memory(MemoryLimit::Session, 101))]
    );
}

#[test]
fn an_acquire_that_would_exceed_the_budget_evicts_the_lru_idle_session_first() {
    let mut h = H::new(mem_cfg(8, Some(250), None));
    let a = h.live_at(0);
    let b = h.live_at(S);
    h.mem(&[(a, 100), (b, 110)]);
    // The estimate is the median of the first samples: max(100, 110) as the upper middle.
    assert_eq!(h.m.stats().memory_estimate, 110 * MIB);
    h.at(2 * S);
    h.m.acquire(h.now, None);
    let acts = h.drain();
    assert_eq!(ending(&acts), vec![(a, memory(MemoryLimit::Budget, 100))]);
    assert!(
        acts.iter().any(|x| matches!(x, Action::Launch { .. })),
        "then it launches: {acts:?}"
    );
    // b (110) + the new one (110 estimated) fit.
    assert_eq!(h.m.stats().memory_projected, 220 * MIB);
    h.m.check_invariants().unwrap();
}

#[test]
fn with_every_session_busy_reject_says_memory_was_the_limit() {
    let mut c = mem_cfg(8, Some(250), None);
    c.capacity_policy = CapacityPolicy::Reject;
    let (mut h, _, _) = two_busy_at_100_mib(c);
    let t = h.m.acquire(h.now, None);
    let acts = h.drain();
    assert_eq!(
        acts,
        vec![Action::Reply {
            ticket: t,
            result: Err(AcquireError::MemoryBudget {
                budget: 250 * MIB,
                in_use: 200 * MIB,
                estimate: 100 * MIB,
            })
        }]
    );
    let msg = AcquireError::MemoryBudget {
        budget: 1,
        in_use: 2,
        estimate: 3,
    }
    .to_string();
    assert!(msg.contains("memory, not max_browsers"), "{msg}");
    assert_eq!(h.m.totals().memory_blocked, 1);
}

#[test]
fn a_waiter_kept_out_by_memory_is_served_when_a_session_goes_idle_or_told_memory_on_timeout() {
    let mut c = mem_cfg(8, Some(250), None);
    c.capacity_policy = CapacityPolicy::Wait {
        timeout: Duration::from_secs(5),
    };
    let mut h = H::new(c);
    let a = h.live_at(0);
    let b = h.live_at(S);
    let ops: Vec<_> = [a, b]
        .iter()
        .map(|id| h.m.activity(*id).unwrap().clone())
        .collect();
    for o in &ops {
        o.begin_op(h.now);
    }
    h.mem(&[(a, 100), (b, 100)]);
    let t1 = h.m.acquire(h.now, None);
    assert!(h.drain().is_empty(), "it waits");
    assert_eq!(h.m.stats().waiting, 1);
    // b's operation ends: on the next tick, b is evicted for the waiter.
    ops[1].end_op(Timestamp(2 * S));
    h.at(2 * S);
    let acts = h.tick();
    assert_eq!(ending(&acts), vec![(b, memory(MemoryLimit::Budget, 100))]);
    assert!(acts.iter().any(|x| matches!(x, Action::Launch { .. })));
    let new = SessionId(3);
    assert!(h
        .feed(Input::Launched { id: new })
        .contains(&Action::Reply {
            ticket: t1,
            result: Ok(new)
        }));
    h.m.activity(new).unwrap().begin_op(h.now);
    h.mem(&[(a, 100), (new, 100)]);
    // Now everything is busy again: the next waiter times out with the memory error.
    let t2 = h.m.acquire(h.now, None);
    h.drain();
    h.at(8 * S);
    let acts = h.tick();
    assert!(
        acts.contains(&Action::Reply {
            ticket: t2,
            result: Err(AcquireError::MemoryBudget {
                budget: 250 * MIB,
                in_use: 200 * MIB,
                estimate: 100 * MIB,
            })
        }),
        "{acts:?}"
    );
    h.m.check_invariants().unwrap();
}

#[test]
fn the_first_session_is_admitted_even_if_the_estimate_exceeds_the_budget() {
    let mut h = H::new(mem_cfg(4, Some(100), None));
    let a = h.live_at(0);
    h.mem(&[(a, 150)]);
    h.m.destroy(h.now, a).unwrap();
    let acts = h.drain();
    h.complete(&acts, a);
    // Estimate 150 > budget 100, but an empty pool always launches.
    h.m.acquire(h.now, None);
    assert!(h.drain().iter().any(|x| matches!(x, Action::Launch { .. })));
}

#[test]
fn rss_counts_where_pss_is_unknown() {
    let mut h = H::new(mem_cfg(4, Some(1000), None));
    let a = h.live_at(0);
    let samples = vec![(
        a,
        MemoryUsage {
            rss_bytes: 300 * MIB,
            pss_bytes: 0,
            processes: 3,
        },
    )];
    h.feed(Input::Memory { samples });
    assert_eq!(h.m.stats().memory_used, 300 * MIB);
}

#[test]
fn the_estimate_is_the_median_of_a_bounded_ring_of_first_samples() {
    let mut h = H::new(mem_cfg(64, Some(u64::MAX / 2 / MIB), None));
    assert_eq!(h.m.stats().memory_estimate, 0, "nothing measured yet");
    let mut ids = Vec::new();
    for i in 0..(FIRST_SAMPLES as u64 + 4) {
        let id = h.live_at(i * S);
        // First samples 1..=20 MiB; later samples of the same session do not count.
        h.mem(&[(id, i + 1)]);
        h.mem(&[(id, 1000)]);
        ids.push(id);
    }
    // The ring keeps the last 16 first samples (5..=20): upper median 13.
    assert_eq!(h.m.stats().memory_estimate, 13 * MIB);
    h.m.check_invariants().unwrap();
}

#[test]
fn samples_are_ignored_without_limits_and_for_sessions_not_live() {
    let mut h = H::new(mem_cfg(4, None, None));
    let a = h.live_at(0);
    h.mem(&[(a, 100)]);
    assert_eq!(h.m.stats().memory_used, 0);
    let mut h = H::new(mem_cfg(4, Some(1000), None));
    let a = h.live_at(0);
    h.m.destroy(h.now, a).unwrap();
    h.drain();
    h.mem(&[(a, 100), (SessionId(77), 100)]);
    assert_eq!(h.m.stats().memory_used, 0);
    assert_eq!(h.m.totals().memory_samples, 0);
    h.m.check_invariants().unwrap();
}

#[test]
fn spares_are_not_refilled_past_the_budget_and_are_the_first_victims() {
    let mut c = mem_cfg(4, Some(250), None);
    c.spares = 2;
    let mut h = H::new(c);
    let launched = |a: &[Action]| {
        a.iter()
            .filter_map(|x| match x {
                Action::Launch { id, .. } => Some(*id),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let s1 = launched(&h.tick())[0];
    // Nothing measured yet (estimate 0): the second spare launches.
    let s2 = launched(&h.feed(Input::Launched { id: s1 }))[0];
    h.feed(Input::Launched { id: s2 });
    h.mem(&[(s1, 100), (s2, 100)]);
    // One is handed out; a replacement (estimated 100) would not fit in 250.
    let t = h.m.acquire(h.now, None);
    let acts = h.drain();
    assert!(acts.contains(&Action::Reply {
        ticket: t,
        result: Ok(s1)
    }));
    assert!(
        launched(&acts).is_empty(),
        "no spare past the budget: {acts:?}"
    );
    assert!(launched(&h.tick()).is_empty());
    // Over the budget: the ready spare goes before the session in use.
    let acts = h.mem(&[(s1, 160), (s2, 140)]);
    assert_eq!(ending(&acts), vec![(s2, memory(MemoryLimit::Budget, 140))]);
    h.m.check_invariants().unwrap();
}

#[test]
fn max_session_memory_is_a_limit_a_session_may_reach_but_not_pass() {
    let mut h = H::new(mem_cfg(4, None, Some(200)));
    let a = h.live_at(0);
    let acts = h.mem(&[(a, 200)]);
    assert!(ending(&acts).is_empty(), "at the limit: {acts:?}");
    let acts = h.mem(&[(a, 201)]);
    assert_eq!(ending(&acts), vec![(a, memory(MemoryLimit::Session, 201))]);
}

#[test]
fn one_session_over_max_session_memory_does_not_make_another_one_over() {
    let mut h = H::new(mem_cfg(4, None, Some(200)));
    let a = h.live_at(0);
    let b = h.live_at(S);
    let op = h.m.activity(a).unwrap().clone();
    op.begin_op(h.now);
    let acts = h.mem(&[(a, 250), (b, 150)]);
    assert!(ending(&acts).is_empty(), "{acts:?}");
    // Anything that asks whether b is to be retired (here, the pool's hint after an
    // operation) must not find it over because a is.
    let acts = h.feed(Input::RetireHint { id: b });
    assert!(ending(&acts).is_empty(), "{acts:?}");
    assert_eq!(h.m.phase(b), Some(Phase::Live));
    op.end_op(h.now);
}

#[test]
fn a_waiter_kept_out_by_memory_is_served_by_the_round_that_shows_room() {
    let mut c = mem_cfg(8, Some(250), None);
    c.capacity_policy = CapacityPolicy::Wait {
        timeout: Duration::from_secs(60),
    };
    let (mut h, a, b) = two_busy_at_100_mib(c);
    h.m.acquire(h.now, None);
    assert!(h.drain().is_empty(), "it waits");
    // Both shrink: 80 MiB used plus the 100 MiB estimate fit in 250.
    let acts = h.mem(&[(a, 40), (b, 40)]);
    assert!(
        acts.iter().any(|x| matches!(x, Action::Launch { .. })),
        "served in the same round: {acts:?}"
    );
}

#[test]
fn at_max_browsers_reject_names_the_count_even_when_memory_is_short_too() {
    let mut c = mem_cfg(2, Some(150), None);
    c.capacity_policy = CapacityPolicy::Reject;
    let (mut h, _, _) = two_busy_at_100_mib(c);
    h.m.acquire(h.now, None);
    let acts = h.drain();
    assert!(
        matches!(
            acts.as_slice(),
            [Action::Reply {
                result: Err(AcquireError::AtCapacity { .. }),
                ..
            }]
        ),
        "{acts:?}"
    );
    assert_eq!(h.m.totals().memory_blocked, 0);
}

#[test]
fn check_memory_fires_when_the_book_holds_a_session_that_is_not_live() {
    let mut h = H::new(mem_cfg(4, Some(1000), None));
    let a = h.live_at(0);
    h.mem(&[(a, 100)]);
    h.m.check_memory().unwrap();
    // Break it: the session leaves Live without the book forgetting it.
    h.m.table.get_mut(a).unwrap().set_state(State::Stopping {
        reason: EndReason::OwnerReleased,
        attempt: 0,
        stage: KillStage::Graceful,
        stalled: false,
    });
    let err = h.m.check_memory().unwrap_err();
    assert!(err.contains("not live"), "{err}");
}

#[test]
fn a_busy_session_over_its_limit_keeps_an_earlier_lifetime_timer() {
    let mut c = mem_cfg(2, None, Some(100));
    c.max_lifetime = Some(Duration::from_secs(10));
    let mut h = H::new(c);
    let a = h.live_at(0);
    let op = h.m.activity(a).unwrap().clone();
    op.begin_op(h.now);
    let life_end = h.m.poll_timeout().expect("the lifetime timer");
    // Measured over its limit while busy, 100 ms before its lifetime ends: the recheck
    // a tick later must not push the earlier lifetime check back.
    h.at(life_end.0 - 100);
    h.mem(&[(a, 101)]);
    assert_eq!(h.m.poll_timeout(), Some(life_end));
    op.end_op(h.now);
}
