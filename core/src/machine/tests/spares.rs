//! Unit tests of prewarmed spares (`PoolConfig::spares`).

use super::*;

fn spare_cfg(max: usize, spares: usize) -> PoolConfig {
    PoolConfig {
        max_browsers: max,
        spares,
        spare_max_age: Duration::from_secs(60),
        ..cfg()
    }
}

fn launches(a: &[Action]) -> Vec<SessionId> {
    a.iter()
        .filter_map(|a| match a {
            Action::Launch { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

impl H {
    /// Launch spares until `n` are ready (one launch at a time); returns them.
    fn fill(&mut self, n: usize) -> Vec<SessionId> {
        let mut ready = Vec::new();
        let mut a = self.tick();
        while ready.len() < n {
            let l = launches(&a);
            assert_eq!(l.len(), 1, "one spare launch at a time: {a:?}");
            assert!(self.m.is_spare(l[0]));
            ready.push(l[0]);
            a = self.feed(Input::Launched { id: l[0] });
            assert!(
                !a.iter().any(|a| matches!(a, Action::Reply { .. })),
                "a spare is answered to nobody: {a:?}"
            );
        }
        assert!(launches(&a).is_empty(), "no launch past the target: {a:?}");
        assert_eq!(self.m.spare_ids(), ready);
        self.m.check_invariants().unwrap();
        ready
    }
}

#[test]
fn spares_are_launched_one_at_a_time_up_to_the_target_and_answer_nobody() {
    let mut h = H::new(spare_cfg(3, 2));
    assert_eq!(
        h.m.poll_timeout(),
        Some(Timestamp::ZERO),
        "refill is due at once"
    );
    let ready = h.fill(2);
    let st = h.m.stats();
    assert_eq!((st.spares_ready, st.spares_launching, st.live), (2, 0, 0));
    assert_eq!(h.m.occupied(), 2, "spares count against max_browsers");
    assert_eq!(st.totals.spare_launches, 2);
    assert_eq!(
        h.m.poll_timeout(),
        Some(Timestamp(60 * S)),
        "no reaping, no refill: only spare_max_age is due"
    );
    for id in ready {
        assert!(
            matches!(h.m.activity(id), Err(SessionError::Unknown { .. })),
            "nobody can reach a spare before it is handed out"
        );
        assert!(h.m.destroy(h.now, id).is_ok(), "a spare may be destroyed");
    }
}

#[test]
fn acquire_hands_out_a_ready_spare_without_a_launch_and_a_replacement_is_launched() {
    let mut h = H::new(spare_cfg(3, 1));
    let [s] = h.fill(1)[..] else { panic!() };
    h.at(5 * S);
    let t = h.m.acquire(h.now, Some(OwnerKey::new("o")));
    let a = h.drain();
    assert_eq!(
        a[0],
        Action::Reply {
            ticket: t,
            result: Ok(s)
        },
        "answered at once with the spare"
    );
    let l = launches(&a);
    assert_eq!(l.len(), 1, "a replacement is launched: {a:?}");
    assert_ne!(l[0], s);
    assert!(!h.m.is_spare(s));
    assert!(h.m.is_spare(l[0]));
    let act = h.m.activity(s).unwrap();
    assert_eq!(act.last_active(), h.now, "handed out as fresh");
    assert_eq!(h.m.live_ids(), vec![s]);
    let st = h.m.stats();
    assert_eq!((st.totals.spare_hits, st.totals.spare_misses), (1, 0));
    assert_eq!((st.live, st.spares_launching), (1, 1));
    h.m.check_invariants().unwrap();
}

#[test]
fn a_used_browser_never_becomes_a_spare() {
    let mut h = H::new(spare_cfg(2, 1));
    let [s] = h.fill(1)[..] else { panic!() };
    let t = h.m.acquire(h.now, None);
    let a = h.drain();
    assert!(a.contains(&Action::Reply {
        ticket: t,
        result: Ok(s)
    }));
    let [r] = launches(&a)[..] else {
        panic!("{a:?}")
    };
    h.m.activity(s).unwrap().begin_op(h.now);
    h.m.activity(s).unwrap().end_op(h.now);
    let a = h.feed(Input::Launched { id: r });
    assert!(a.is_empty(), "{a:?}");
    // The used session ends; its slot goes to a fresh launch, never back to spares.
    h.m.destroy(h.now, s).unwrap();
    let a = h.drain();
    assert_eq!(h.complete(&a, s), EndReason::Destroyed);
    assert_eq!(h.m.spare_ids(), vec![r]);
    for _ in 0..3 {
        let t = h.m.acquire(h.now, None);
        let a = h.drain();
        let Some(Action::Reply {
            result: Ok(got), ..
        }) = a
            .iter()
            .find(|a| matches!(a, Action::Reply { ticket, .. } if *ticket == t))
        else {
            panic!("{a:?}")
        };
        assert_ne!(*got, s, "a used browser came back");
        let got = *got;
        for l in launches(&a) {
            h.feed(Input::Launched { id: l });
        }
        h.m.destroy(h.now, got).unwrap();
        let a = h.drain();
        h.complete(&a, got);
        h.tick();
        for l in launches(&h.drain()) {
            h.feed(Input::Launched { id: l });
        }
    }
    h.m.check_invariants().unwrap();
}

#[test]
fn at_capacity_a_request_takes_over_the_spare_launch_instead_of_waiting() {
    let mut h = H::new(PoolConfig {
        capacity_policy: CapacityPolicy::Reject,
        ..spare_cfg(2, 1)
    });
    let [s] = h.fill(1)[..] else { panic!() };
    let _ = h.m.acquire(h.now, None); // takes s, launches replacement r
    let [r] = launches(&h.drain())[..] else {
        panic!()
    };
    assert_eq!(h.m.occupied(), 2);
    // At capacity, under Reject: not refused, since the slot is the spare's.
    let t = h.m.acquire(h.now, None);
    let a = h.drain();
    assert!(a.is_empty(), "no launch, no refusal: {a:?}");
    assert!(!h.m.is_spare(r));
    let a = h.feed(Input::Launched { id: r });
    assert_eq!(
        a,
        vec![Action::Reply {
            ticket: t,
            result: Ok(r)
        }]
    );
    let st = h.m.stats();
    assert_eq!((st.totals.spare_hits, st.totals.spare_misses), (1, 1));
    assert_eq!(st.totals.rejected, 0);
    assert!(h.m.spare_ids().is_empty() && h.m.spare_launch_ids().is_empty());
    // Full of used sessions: no spare is launched, no session is evicted for one.
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(10 * S)));
    assert_ne!(s, r);
    h.m.check_invariants().unwrap();
}

#[test]
fn a_spare_is_the_first_eviction_victim_and_spares_never_evict_sessions() {
    // max 2, spares 1: one idle used session, one ready spare.
    let mut h = H::new(PoolConfig {
        idle_timeout: None,
        ..spare_cfg(2, 1)
    });
    let [s] = h.fill(1)[..] else { panic!() };
    let _ = h.m.acquire(h.now, None);
    let a = h.drain(); // s handed out; replacement launch r
    let [r] = launches(&a)[..] else { panic!() };
    h.feed(Input::Launched { id: r });
    assert_eq!(h.m.spare_ids(), vec![r]);
    // A request at capacity gets the spare: the used session s is not evicted.
    let t = h.m.acquire(h.now, None);
    let a = h.drain();
    assert_eq!(
        a,
        vec![Action::Reply {
            ticket: t,
            result: Ok(r)
        }]
    );
    assert!(ending(&a).is_empty());
    // Two used sessions at capacity: no spare is launched (it would need an eviction).
    assert!(launches(&h.tick()).is_empty());
    assert_eq!(h.m.poll_timeout(), None);
    // Destroying one frees a slot: only then is a spare launched again.
    h.m.destroy(h.now, s).unwrap();
    let a = h.drain();
    assert!(launches(&a).is_empty(), "the slot is not free until Gone");
    let a = h.feed(Input::Gone { id: s });
    assert_eq!(launches(&a).len(), 1, "{a:?}");
    h.m.check_invariants().unwrap();
}

#[test]
fn spares_are_not_idle_reaped_but_retired_after_spare_max_age_and_replaced() {
    let mut h = H::new(spare_cfg(3, 1));
    let [s] = h.fill(1)[..] else { panic!() };
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(60 * S)));
    h.at(59 * S);
    assert!(
        h.tick().is_empty(),
        "idle_timeout 10 s does not reap a spare"
    );
    assert_eq!(h.m.spare_ids(), vec![s]);
    h.at(60 * S);
    let a = h.tick();
    assert_eq!(
        ending(&a),
        vec![(s, EndReason::Retired(RetireCause::SpareMaxAge))]
    );
    let [r] = launches(&a)[..] else {
        panic!("replaced at once (a slot is free): {a:?}")
    };
    assert!(h.m.is_spare(r));
    assert_eq!(
        h.complete(&a, s),
        EndReason::Retired(RetireCause::SpareMaxAge)
    );
    assert_eq!(h.m.totals().retired, 1);
    h.m.check_invariants().unwrap();
}

#[test]
fn a_crashed_spare_is_replaced() {
    let mut h = H::new(spare_cfg(2, 1));
    let [s] = h.fill(1)[..] else { panic!() };
    let a = h.feed(Input::Exited {
        id: s,
        exit: "killed by signal 9".into(),
    });
    assert!(matches!(&ending(&a)[..], [(id, EndReason::Crashed { .. })] if *id == s));
    let [r] = launches(&a)[..] else {
        panic!("{a:?}")
    };
    assert!(h.m.is_spare(r) && !h.m.is_spare(s));
    assert_eq!(h.m.totals().crashed, 1);
    h.complete(&a, s);
    h.m.check_invariants().unwrap();
}

#[test]
fn refills_back_off_after_launch_failures_and_reset_on_success() {
    let mut h = H::new(spare_cfg(3, 1));
    let mut at = 0;
    for (failures, delay) in [(1u32, 1u64), (2, 2), (3, 4)] {
        h.at(at);
        let a = h.tick();
        let [l] = launches(&a)[..] else {
            panic!("{failures}: {a:?}")
        };
        let a = h.feed(Input::LaunchFailed {
            id: l,
            reason: "boom".into(),
        });
        assert!(
            launches(&a).is_empty(),
            "no refill right after a failure: {a:?}"
        );
        assert!(!a.iter().any(|a| matches!(a, Action::Reply { .. })));
        h.feed(Input::DirRemoved { id: l });
        let due = at + delay * S;
        assert_eq!(h.m.poll_timeout(), Some(Timestamp(due)));
        h.at(due - 1);
        assert!(launches(&h.tick()).is_empty(), "not before the backoff");
        at = due;
    }
    h.at(at);
    let [l] = launches(&h.tick())[..] else {
        panic!()
    };
    h.feed(Input::Launched { id: l });
    assert_eq!(h.m.spare_ids(), vec![l]);
    // Reset: after the next failure the delay is 1 s again.
    h.m.destroy(h.now, l).unwrap();
    let a = h.drain();
    let [l2] = launches(&a)[..] else {
        panic!("{a:?}")
    };
    h.feed(Input::LaunchFailed {
        id: l2,
        reason: "boom".into(),
    });
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(at + S)));
    assert_eq!(h.m.totals().launch_failed, 4);
    assert_eq!(h.m.totals().spare_launches, 5);
}

#[test]
fn shutdown_tears_down_ready_spares_and_spare_launches_like_any_session() {
    let mut h = H::new(spare_cfg(3, 2));
    let [s] = launches(&h.tick())[..] else {
        panic!()
    };
    let [l] = launches(&h.feed(Input::Launched { id: s }))[..] else {
        panic!()
    };
    assert_eq!(h.m.spare_launch_ids(), vec![l]);
    h.m.shutdown(h.now);
    let a = h.drain();
    assert_eq!(ending(&a), vec![(s, EndReason::Shutdown)]);
    assert!(launches(&a).is_empty());
    let a2 = h.feed(Input::Launched { id: l });
    assert_eq!(ending(&a2), vec![(l, EndReason::Shutdown)]);
    assert!(!a2.iter().any(|a| matches!(a, Action::Reply { .. })));
    h.complete(&a, s);
    h.complete(&a2, l);
    assert!(h.m.is_empty());
    assert_eq!(h.m.totals().shutdown, 2);
    assert_eq!(h.m.poll_timeout(), None);
}

#[test]
fn requests_take_over_spare_launches_in_order_and_the_rest_wait_fifo() {
    let mut h = H::new(PoolConfig {
        capacity_policy: CapacityPolicy::Wait {
            timeout: Duration::from_secs(30),
        },
        ..spare_cfg(2, 1)
    });
    h.tick();
    let [l] = h.m.spare_launch_ids()[..] else {
        panic!()
    };
    let t1 = h.m.acquire(h.now, None); // takes over l
    let a = h.drain();
    let [own] = launches(&a)[..] else {
        panic!("replacement: {a:?}")
    };
    let t2 = h.m.acquire(h.now, None); // takes over the replacement
    assert!(h.drain().is_empty());
    let t3 = h.m.acquire(h.now, None); // waits
    assert!(h.drain().is_empty());
    assert_eq!(h.m.stats().waiting, 1);
    assert_eq!(
        h.feed(Input::Launched { id: l }),
        vec![Action::Reply {
            ticket: t1,
            result: Ok(l)
        }]
    );
    assert_eq!(
        h.feed(Input::Launched { id: own }),
        vec![Action::Reply {
            ticket: t2,
            result: Ok(own)
        }]
    );
    assert!(h.m.spare_ids().is_empty(), "no spare while requests wait");
    h.m.destroy(h.now, l).unwrap();
    h.drain();
    // The freed slot goes to the waiting request, not to a spare.
    let a = h.feed(Input::Gone { id: l });
    let [w] = launches(&a)[..] else {
        panic!("{a:?}")
    };
    assert!(!h.m.is_spare(w));
    let a = h.feed(Input::Launched { id: w });
    assert!(a.contains(&Action::Reply {
        ticket: t3,
        result: Ok(w)
    }));
    assert_eq!(h.m.stats().totals.spare_misses, 3);
    h.m.check_invariants().unwrap();
}
