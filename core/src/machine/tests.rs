//! Unit tests: one or more per transition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::error::BackendErrorKind;

const S: u64 = 1000;

fn cfg() -> PoolConfig {
    PoolConfig {
        max_browsers: 2,
        idle_timeout: Some(Duration::from_secs(10)),
        reap_interval: Duration::from_secs(1),
        tick: Duration::from_secs(1),
        root: PathBuf::from("/r"),
        prefix: "bpx-".into(),
        tombstones: 4,
        ..PoolConfig::default()
    }
}

struct H {
    m: Lifecycle,
    now: Timestamp,
}

impl H {
    fn new(c: PoolConfig) -> Self {
        H {
            m: Lifecycle::new(c, "00000000000a").unwrap(),
            now: Timestamp(0),
        }
    }
    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }
    fn at(&mut self, ms: u64) {
        self.now = Timestamp(ms);
    }
    fn tick(&mut self) -> Vec<Action> {
        self.m.handle_timeout(self.now);
        self.drain()
    }
    fn feed(&mut self, i: Input) -> Vec<Action> {
        self.m.handle(self.now, i);
        self.drain()
    }
    /// Acquire and complete the launch; returns the session.
    fn live(&mut self) -> SessionId {
        let t = self.m.acquire(self.now, None);
        let a = self.drain();
        let Some(Action::Launch { id, .. }) = a.first() else {
            panic!("expected launch, got {a:?}")
        };
        let id = *id;
        let a = self.feed(Input::Launched { id });
        assert_eq!(
            a,
            vec![Action::Reply {
                ticket: t,
                result: Ok(id)
            }]
        );
        id
    }
    /// `acts` start a launch for waiting request `t`: complete it and check that `t` is
    /// answered with the new session, which is returned.
    fn serve(&mut self, acts: &[Action], t: Ticket, why: &str) -> SessionId {
        let new = acts
            .iter()
            .find_map(|x| match x {
                Action::Launch { id, .. } => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{why}: no launch in {acts:?}"));
        assert!(self
            .feed(Input::Launched { id: new })
            .contains(&Action::Reply {
                ticket: t,
                result: Ok(new)
            }));
        new
    }
    /// Complete a teardown that has just been started; returns its reason.
    fn complete(&mut self, actions: &[Action], id: SessionId) -> EndReason {
        assert!(
            actions.iter().any(|a| a.endings().any(|e| e.id == id)),
            "{actions:?}"
        );
        let a = self.feed(Input::Gone { id });
        assert!(matches!(a[0], Action::RemoveDir { id: r, attempt: 1, .. } if r == id));
        let a = self.feed(Input::DirRemoved { id });
        match &a[0] {
            Action::Finished {
                id: f,
                reason,
                dir_removed: true,
            } if *f == id => reason.clone(),
            other => panic!("expected Finished, got {other:?}"),
        }
    }
}

fn ending(actions: &[Action]) -> Vec<(SessionId, EndReason)> {
    actions
        .iter()
        .flat_map(|a| a.endings().map(|e| (e.id, e.reason)))
        .collect()
}

#[test]
fn config_is_the_configuration_the_machine_was_built_with() {
    let c = cfg();
    let h = H::new(c.clone());
    assert_eq!(h.m.config(), &c);
    assert_ne!(
        h.m.config(),
        &PoolConfig::default(),
        "the test config must differ"
    );
}

#[test]
fn counts_and_emptiness_follow_the_sessions_and_the_waiters() {
    let mut h = H::new(PoolConfig {
        max_browsers: 1,
        capacity_policy: CapacityPolicy::Wait {
            timeout: Duration::from_secs(60),
        },
        ..cfg()
    });
    assert!(h.m.is_empty());
    assert_eq!((h.m.live_count(), h.m.waiting_count()), (0, 0));
    let a = h.live();
    assert!(!h.m.is_empty(), "a live session is tracked");
    assert_eq!((h.m.live_count(), h.m.waiting_count()), (1, 0));
    assert_eq!((h.m.stats().occupied, h.m.stats().live), (1, 1));
    assert_eq!(h.m.stats().totals.created, 1);
    // At capacity under `Wait`, a second request waits for the slot.
    h.m.acquire(h.now, None);
    assert!(h.drain().is_empty());
    assert_eq!((h.m.live_count(), h.m.waiting_count()), (1, 1));
    h.m.destroy(h.now, a).unwrap();
    h.drain();
    assert_eq!(h.m.live_count(), 0, "a stopping session is not live");
    assert!(!h.m.is_empty());
    let st = h.m.stats();
    assert_eq!(
        (st.occupied, st.live, st.stopping),
        (1, 0, 1),
        "it keeps its slot"
    );
}

#[test]
fn destroying_a_session_still_launching_is_unknown_and_changes_nothing() {
    let mut h = H::new(cfg());
    h.m.acquire(h.now, None);
    let a = h.drain();
    let Some(&Action::Launch { id, .. }) = a.first() else {
        panic!("expected a launch, got {a:?}")
    };
    assert_eq!(h.m.destroy(h.now, id), Err(SessionError::Unknown { id }));
    assert!(h.drain().is_empty());
    assert_eq!(h.m.stats().launching, 1);
}

#[test]
fn every_session_has_its_own_activity_cell_past_one_chunk() {
    // Cells are allocated in chunks; a session past the first chunk must not share a
    // cell with an earlier one (its operations would keep the other alive, or not).
    let n = CELLS_PER_CHUNK + 2;
    let mut h = H::new(PoolConfig {
        max_browsers: n,
        ..cfg()
    });
    let ids: Vec<SessionId> = (0..n).map(|_| h.live()).collect();
    for &id in &ids {
        h.m.activity(id).unwrap().begin_op(h.now);
    }
    for &id in &ids {
        assert_eq!(
            h.m.activity(id).unwrap().in_flight(),
            1,
            "{id} shares a cell"
        );
    }
}

#[test]
fn acquire_launches_in_a_fresh_named_dir_and_replies_after_launched() {
    let mut h = H::new(cfg());
    let t = h.m.acquire(Timestamp(0), None);
    let a = h.drain();
    assert_eq!(a, vec![Action::Launch { id: SessionId(1) }]);
    assert_eq!(
        h.m.session_dir(SessionId(1)),
        PathBuf::from("/r/bpx-00000000000a-1")
    );
    assert_eq!(h.m.occupied(), 1);
    assert_eq!(h.m.phase(SessionId(1)), Some(Phase::Launching));
    let a = h.feed(Input::Launched { id: SessionId(1) });
    assert_eq!(
        a,
        vec![Action::Reply {
            ticket: t,
            result: Ok(SessionId(1))
        }]
    );
    assert_eq!(h.m.stats().live, 1);
    h.m.check_invariants().unwrap();
}

#[test]
fn idle_session_is_reaped_on_the_grid_not_before() {
    let mut h = H::new(cfg());
    let id = h.live();
    // idle 10 s on a 1 s grid: due at 10 s.
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(10 * S)));
    h.at(10 * S - 1);
    assert!(h.tick().is_empty());
    h.at(10 * S);
    let a = h.tick();
    assert_eq!(
        ending(&a),
        vec![(
            id,
            EndReason::IdleReaped {
                idle_for: Duration::from_secs(10)
            }
        )]
    );
    assert_eq!(
        h.complete(&a, id),
        EndReason::IdleReaped {
            idle_for: Duration::from_secs(10)
        }
    );
    assert_eq!(h.m.totals().reaped, 1);
    assert!(h.m.is_empty());
}

#[test]
fn a_reap_of_several_sessions_is_one_reaped_action_in_stamp_order() {
    let mut h = H::new(PoolConfig {
        max_browsers: 5,
        kill_grace: Duration::from_secs(2),
        ..cfg()
    });
    let a = h.live();
    let b = h.live();
    let c = h.live();
    let d = h.live();
    let busy = h.live();
    // Stamps 2 s, 1 s, 1 s, 3 s: idle for 10 s at 13 s, one busy throughout.
    h.m.activity(a).unwrap().touch(Timestamp(2 * S));
    h.m.activity(b).unwrap().touch(Timestamp(S));
    h.m.activity(c).unwrap().touch(Timestamp(S));
    h.m.activity(d).unwrap().touch(Timestamp(3 * S));
    h.m.activity(busy).unwrap().begin_op(Timestamp(0));
    let cells: Vec<ActivityRef> = [a, b, c, d]
        .iter()
        .map(|&id| h.m.activity(id).unwrap().clone())
        .collect();
    // At 10 s all five keys are due; the touched ones are re-armed, the busy one too.
    h.at(10 * S);
    assert!(h.tick().is_empty());
    h.at(13 * S);
    let acts = h.tick();
    let secs = Duration::from_secs;
    assert_eq!(
        acts,
        vec![Action::Reaped {
            sessions: vec![(b, secs(12)), (c, secs(12)), (a, secs(11)), (d, secs(10))],
            stage: KillStage::Graceful,
            wait: h.m.config().kill_grace,
        }]
    );
    // Each is torn down exactly as an `Ending` would have it.
    assert_eq!(
        ending(&acts),
        vec![
            (b, EndReason::IdleReaped { idle_for: secs(12) }),
            (c, EndReason::IdleReaped { idle_for: secs(12) }),
            (a, EndReason::IdleReaped { idle_for: secs(11) }),
            (d, EndReason::IdleReaped { idle_for: secs(10) }),
        ]
    );
    for (id, why) in ending(&acts) {
        assert_eq!(h.m.phase(id), Some(Phase::Stopping));
        assert_eq!(h.m.end_reason(id), Some(&why));
    }
    assert!(
        cells.iter().all(ActivityRef::is_ended),
        "leases see the end"
    );
    assert_eq!(h.m.totals().reaped, 4);
    assert_eq!(h.m.phase(busy), Some(Phase::Live));
    h.m.check_invariants().unwrap();
    for (id, why) in ending(&acts) {
        assert_eq!(h.complete(&acts, id), why);
    }
    // A reap of one session is an `Ending`, with the same first kill.
    h.m.activity(busy).unwrap().end_op(Timestamp(13 * S));
    h.at(23 * S);
    assert_eq!(
        h.tick(),
        vec![Action::Ending {
            id: busy,
            reason: EndReason::IdleReaped { idle_for: secs(10) },
            stage: KillStage::Graceful,
            wait: h.m.config().kill_grace,
        }]
    );
    h.m.check_invariants().unwrap();
}

#[test]
fn a_recycled_reaped_batch_is_reused_by_the_next_reap() {
    let mut h = H::new(PoolConfig {
        max_browsers: 4,
        ..cfg()
    });
    let ids = |v: &[(SessionId, Duration)]| v.iter().map(|s| s.0).collect::<Vec<_>>();
    let first = [h.live(), h.live()];
    h.at(10 * S);
    let acts = h.tick();
    for id in first {
        h.complete(&acts, id);
    }
    let Some(Action::Reaped { sessions, .. }) = acts.into_iter().next() else {
        panic!("expected one Reaped");
    };
    assert_eq!(ids(&sessions), first);
    // Not recycled: the next reap reserves room for as many as the last one named.
    assert_eq!(sessions.capacity(), 2);
    // A recycled vector (whatever it held) carries the next batch, room and all.
    let mut given = Vec::with_capacity(1000);
    given.push((SessionId(999), Duration::ZERO));
    h.m.recycle(given);
    let second = [h.live(), h.live()];
    h.at(20 * S);
    let acts = h.tick();
    let Some(Action::Reaped { sessions, .. }) = acts.first() else {
        panic!("expected one Reaped, got {acts:?}");
    };
    assert_eq!(ids(sessions), second);
    assert_eq!(
        sessions.capacity(),
        1000,
        "the recycled vector carries the batch"
    );
    for id in second {
        h.complete(&acts, id);
    }
    // One with room for more than `REAPED_KEPT` is not kept.
    h.m.recycle(Vec::with_capacity(REAPED_KEPT + 1));
    let third = [h.live(), h.live()];
    h.at(30 * S);
    let Some(Action::Reaped { sessions, .. }) = h.tick().pop() else {
        panic!("expected one Reaped");
    };
    assert_eq!(ids(&sessions), third);
    assert_eq!(sessions.capacity(), 2);
    h.m.check_invariants().unwrap();
}

#[test]
fn touch_defers_reaping_lazily() {
    let mut h = H::new(cfg());
    let id = h.live();
    h.m.activity(id).unwrap().touch(Timestamp(5 * S));
    h.at(10 * S);
    assert!(h.tick().is_empty(), "touched at 5 s: not idle yet");
    // Re-armed at the real stamp: due at 15 s.
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(15 * S)));
    h.at(15 * S);
    assert_eq!(ending(&h.tick()).len(), 1);
}

#[test]
fn a_busy_session_is_never_reaped_and_goes_once_idle() {
    let mut h = H::new(cfg());
    let id = h.live();
    let act = h.m.activity(id).unwrap().clone();
    act.begin_op(Timestamp(S));
    for t in [11, 30, 60, 100] {
        h.at(t * S);
        assert!(h.tick().is_empty(), "busy at {t}s");
    }
    act.end_op(Timestamp(100 * S));
    h.at(110 * S - 1);
    assert!(h.tick().is_empty());
    h.at(110 * S);
    assert_eq!(
        ending(&h.tick()),
        vec![(
            id,
            EndReason::IdleReaped {
                idle_for: Duration::from_secs(10)
            }
        )]
    );
}

#[test]
fn no_idle_timeout_means_no_reaping() {
    let mut h = H::new(PoolConfig {
        idle_timeout: None,
        ..cfg()
    });
    h.live();
    assert_eq!(h.m.poll_timeout(), None);
    h.at(1_000_000 * S);
    assert!(h.tick().is_empty());
}

#[test]
fn evict_lru_picks_least_recent_idle_session_and_launches_after_it_is_gone() {
    let mut h = H::new(cfg());
    let a = h.live();
    h.at(S);
    let b = h.live();
    // a was used more recently than b, but only the real stamp says so.
    h.m.activity(a).unwrap().touch(Timestamp(2 * S));
    h.at(3 * S);
    let t = h.m.acquire(h.now, None);
    let acts = h.drain();
    assert_eq!(ending(&acts), vec![(b, EndReason::Evicted)]);
    assert!(!acts.iter().any(|x| matches!(x, Action::Launch { .. })));
    assert_eq!(
        h.m.occupied(),
        2,
        "the victim counts until its processes are gone"
    );
    let acts = h.feed(Input::Gone { id: b });
    h.serve(&acts, t, "launch after the victim is gone");
    assert_eq!(h.m.totals().evicted, 1);
}

#[test]
fn evict_lru_skips_busy_sessions_and_waits_when_all_are_busy() {
    let mut h = H::new(cfg());
    let a = h.live();
    let b = h.live();
    h.m.activity(a).unwrap().begin_op(Timestamp(0));
    h.at(S);
    h.m.acquire(h.now, None);
    assert_eq!(ending(&h.drain()), vec![(b, EndReason::Evicted)]);
    h.feed(Input::Gone { id: b });
    // Now both sessions are busy: the next request waits, rechecking every tick.
    let c = h.drain();
    assert!(c.is_empty());
    let launched: Vec<SessionId> =
        h.m.tracked_ids()
            .into_iter()
            .filter(|id| h.m.phase(*id) == Some(Phase::Launching))
            .collect();
    let c = launched[0];
    h.feed(Input::Launched { id: c });
    h.m.activity(c).unwrap().begin_op(h.now);
    let t = h.m.acquire(h.now, None);
    assert!(ending(&h.drain()).is_empty());
    assert_eq!(h.m.stats().waiting, 1);
    // a finishes its operation: at the next recheck it is evicted for the waiter.
    h.m.activity(a).unwrap().end_op(Timestamp(2 * S));
    h.at(2 * S);
    let acts = h.tick();
    assert_eq!(ending(&acts), vec![(a, EndReason::Evicted)]);
    let acts = h.feed(Input::Gone { id: a });
    assert!(acts.iter().any(|x| matches!(x, Action::Launch { .. })));
    let _ = t;
}

#[test]
fn evict_lru_wait_is_bounded_by_acquire_timeout() {
    let mut h = H::new(PoolConfig {
        max_browsers: 1,
        acquire_timeout: Duration::from_secs(5),
        ..cfg()
    });
    let a = h.live();
    h.m.activity(a).unwrap().begin_op(Timestamp(0));
    let t = h.m.acquire(h.now, None);
    assert!(h.drain().is_empty());
    h.at(5 * S);
    let acts = h.tick();
    assert!(acts.contains(&Action::Reply {
        ticket: t,
        result: Err(AcquireError::WaitTimedOut {
            waited: Duration::from_secs(5)
        })
    }));
    assert_eq!(h.m.stats().waiting, 0);
}

#[test]
fn reject_policy_refuses_at_capacity() {
    let mut h = H::new(PoolConfig {
        capacity_policy: CapacityPolicy::Reject,
        ..cfg()
    });
    h.live();
    h.live();
    let t = h.m.acquire(h.now, None);
    assert_eq!(
        h.drain(),
        vec![Action::Reply {
            ticket: t,
            result: Err(AcquireError::AtCapacity { max: 2 })
        }]
    );
    assert_eq!(h.m.totals().rejected, 1);
}

#[test]
fn wait_policy_is_fifo_and_times_out() {
    let mut h = H::new(PoolConfig {
        capacity_policy: CapacityPolicy::Wait {
            timeout: Duration::from_secs(3),
        },
        ..cfg()
    });
    let a = h.live();
    h.live();
    let t1 = h.m.acquire(h.now, None);
    let t2 = h.m.acquire(h.now, None);
    assert!(h.drain().is_empty(), "Wait never evicts");
    h.at(S);
    h.m.destroy(h.now, a).unwrap();
    let acts = h.drain();
    h.complete(&acts, a);
    // The first waiter got the slot (its launch is pending).
    let launching: Vec<_> =
        h.m.tracked_ids()
            .into_iter()
            .filter(|id| h.m.phase(*id) == Some(Phase::Launching))
            .collect();
    assert_eq!(launching.len(), 1);
    let acts = h.feed(Input::Launched { id: launching[0] });
    assert_eq!(
        acts,
        vec![Action::Reply {
            ticket: t1,
            result: Ok(launching[0])
        }]
    );
    h.at(3 * S);
    assert!(h.tick().contains(&Action::Reply {
        ticket: t2,
        result: Err(AcquireError::WaitTimedOut {
            waited: Duration::from_secs(3)
        })
    }));
}

#[test]
fn queue_is_bounded() {
    let mut h = H::new(PoolConfig {
        max_browsers: 1,
        max_waiters: 1,
        capacity_policy: CapacityPolicy::Wait {
            timeout: Duration::from_secs(3),
        },
        ..cfg()
    });
    h.live();
    h.m.acquire(h.now, None);
    let t = h.m.acquire(h.now, None);
    assert_eq!(
        h.drain(),
        vec![Action::Reply {
            ticket: t,
            result: Err(AcquireError::QueueFull { max_waiters: 1 })
        }]
    );
    let totals = h.m.stats().totals;
    assert_eq!(totals.rejected, 1, "a full queue is a rejection");
    assert_eq!(
        totals.spare_misses, 0,
        "no spares configured, so no spare misses"
    );
}

#[test]
fn kill_escalates_and_never_forgets_a_stuck_tree() {
    let mut h = H::new(PoolConfig {
        kill_grace: Duration::from_millis(200),
        kill_attempts: 2,
        ..cfg()
    });
    let id = h.live();
    h.m.destroy(h.now, id).unwrap();
    let a = h.drain();
    assert_eq!(
        a,
        vec![Action::Ending {
            id,
            reason: EndReason::Destroyed,
            stage: KillStage::Graceful,
            wait: Duration::from_millis(200)
        }],
        "one action begins the teardown and carries the first kill"
    );
    let a = h.feed(Input::KillTimedOut { id, attempt: 1 });
    assert_eq!(
        a,
        vec![Action::Kill {
            id,
            stage: KillStage::Force,
            attempt: 2,
            wait: Duration::from_secs(5)
        }]
    );
    assert_eq!(
        h.m.totals().kill_stuck,
        0,
        "attempt 2 of 2 is not stuck yet"
    );
    // A stale report of attempt 1 is ignored.
    assert!(h.feed(Input::KillTimedOut { id, attempt: 1 }).is_empty());
    h.feed(Input::KillTimedOut { id, attempt: 2 });
    assert_eq!(h.m.totals().kill_stuck, 1, "past kill_attempts: stuck");
    let a = h.feed(Input::KillTimedOut { id, attempt: 3 });
    assert!(matches!(
        a[0],
        Action::Kill {
            stage: KillStage::Force,
            attempt: 4,
            ..
        }
    ));
    assert_eq!(
        h.m.totals().kill_stuck,
        2,
        "every attempt past the limit counts"
    );
    assert_eq!(h.m.occupied(), 1, "a stuck tree keeps its slot");
    h.feed(Input::Gone { id });
    assert_eq!(h.m.occupied(), 0);
}

#[test]
fn failed_removal_finishes_then_retries_with_backoff_until_removed() {
    let mut h = H::new(cfg());
    let id = h.live();
    h.m.destroy(h.now, id).unwrap();
    h.drain();
    h.feed(Input::Gone { id });
    let err = BackendError::new("remove", BackendErrorKind::Busy, "busy");
    let a = h.feed(Input::RemoveFailed {
        id,
        error: err.clone(),
    });
    assert_eq!(
        a,
        vec![Action::Finished {
            id,
            reason: EndReason::Destroyed,
            dir_removed: false
        }]
    );
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(100)));
    h.at(100);
    let a = h.tick();
    assert!(matches!(a[0], Action::RemoveDir { attempt: 2, .. }));
    h.feed(Input::RemoveFailed { id, error: err });
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(300)));
    h.at(300);
    h.tick();
    assert!(
        h.feed(Input::DirRemoved { id }).is_empty(),
        "finished only once"
    );
    assert!(h.m.is_empty());
    assert_eq!(h.m.totals().dirs_recovered, 1);
}

#[test]
fn not_found_on_removal_counts_as_removed() {
    let mut h = H::new(cfg());
    let id = h.live();
    h.m.destroy(h.now, id).unwrap();
    h.drain();
    h.feed(Input::Gone { id });
    let a = h.feed(Input::RemoveFailed {
        id,
        error: BackendError::new("remove", BackendErrorKind::NotFound, "gone"),
    });
    assert!(matches!(
        a[0],
        Action::Finished {
            dir_removed: true,
            ..
        }
    ));
}

#[test]
fn crash_is_torn_down_with_a_forced_kill_and_explained() {
    let mut h = H::new(PoolConfig {
        kill_grace: Duration::from_millis(200),
        ..cfg()
    });
    let id = h.live();
    let a = h.feed(Input::Exited {
        id,
        exit: "killed by signal 9".into(),
    });
    let reason = EndReason::Crashed {
        exit: "killed by signal 9".into(),
    };
    assert_eq!(ending(&a), vec![(id, reason.clone())]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Ending {
            stage: KillStage::Force,
            ..
        }
    )));
    assert_eq!(
        h.m.destroy(h.now, id),
        Err(SessionError::Ended {
            id,
            reason: reason.clone()
        })
    );
    h.complete(&a, id);
    assert_eq!(
        h.m.activity(id).unwrap_err(),
        SessionError::Ended { id, reason }
    );
    // An exit reported during our own kill is not a crash.
    let id2 = h.live();
    h.m.destroy(h.now, id2).unwrap();
    h.drain();
    assert!(h
        .feed(Input::Exited {
            id: id2,
            exit: "x".into()
        })
        .is_empty());
    assert_eq!(h.m.totals().crashed, 1);
}

#[test]
fn launch_failure_replies_removes_the_dir_and_frees_the_slot_for_a_waiter() {
    let mut h = H::new(PoolConfig {
        max_browsers: 1,
        ..cfg()
    });
    let t1 = h.m.acquire(h.now, None);
    let t2 = h.m.acquire(h.now, None);
    let a = h.drain();
    assert_eq!(a.len(), 1);
    let a = h.feed(Input::LaunchFailed {
        id: SessionId(1),
        reason: "no chrome".into(),
    });
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::Reply { ticket, .. } if *ticket == t1)),
        "answered before the directory was removed: {a:?}"
    );
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RemoveDir {
            id: SessionId(1),
            ..
        }
    )));
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Launch {
            id: SessionId(2),
            ..
        }
    )));
    let a = h.feed(Input::DirRemoved { id: SessionId(1) });
    assert_eq!(
        a,
        vec![
            Action::Reply {
                ticket: t1,
                result: Err(AcquireError::LaunchFailed {
                    id: SessionId(1),
                    reason: "no chrome".into()
                })
            },
            Action::Finished {
                id: SessionId(1),
                reason: EndReason::LaunchFailed {
                    reason: "no chrome".into()
                },
                dir_removed: true
            }
        ]
    );
    let a = h.feed(Input::Launched { id: SessionId(2) });
    assert!(a.contains(&Action::Reply {
        ticket: t2,
        result: Ok(SessionId(2))
    }));
    assert_eq!(h.m.totals().launch_failed, 1);
}

#[test]
fn a_failed_launch_whose_directory_cannot_be_removed_is_still_answered_once() {
    let mut h = H::new(cfg());
    let t = h.m.acquire(h.now, None);
    h.drain();
    let a = h.feed(Input::LaunchFailed {
        id: SessionId(1),
        reason: "no chrome".into(),
    });
    assert!(
        !a.iter().any(|x| matches!(x, Action::Reply { .. })),
        "{a:?}"
    );
    let busy = BackendError::new("remove", BackendErrorKind::Busy, "busy");
    let a = h.feed(Input::RemoveFailed {
        id: SessionId(1),
        error: busy,
    });
    let replies: Vec<_> = a
        .iter()
        .filter(|x| matches!(x, Action::Reply { ticket, result: Err(AcquireError::LaunchFailed { .. }) } if *ticket == t))
        .collect();
    assert_eq!(replies.len(), 1, "{a:?}");
    // The retry that succeeds later answers nobody again.
    h.at(60 * S);
    let a = h.tick();
    assert!(
        a.iter().any(|x| matches!(x, Action::RemoveDir { .. })),
        "{a:?}"
    );
    let a = h.feed(Input::DirRemoved { id: SessionId(1) });
    assert!(
        !a.iter().any(|x| matches!(x, Action::Reply { .. })),
        "{a:?}"
    );
}

#[test]
fn a_cancelled_failed_launch_is_answered_to_nobody() {
    let mut h = H::new(cfg());
    let t = h.m.acquire(h.now, None);
    h.drain();
    h.feed(Input::Cancel { ticket: t });
    h.feed(Input::LaunchFailed {
        id: SessionId(1),
        reason: "no chrome".into(),
    });
    let a = h.feed(Input::DirRemoved { id: SessionId(1) });
    assert!(
        !a.iter().any(|x| matches!(x, Action::Reply { .. })),
        "{a:?}"
    );
    assert!(
        a.iter().any(|x| matches!(x, Action::Finished { .. })),
        "{a:?}"
    );
}

#[test]
fn owner_release_destroys_after_grace_unless_touched_again() {
    let mut h = H::new(cfg());
    let alice = OwnerKey::new("alice");
    let bob = OwnerKey::new("bob");
    h.m.acquire(h.now, Some(alice.clone()));
    h.m.acquire(h.now, Some(bob.clone()));
    h.drain();
    h.feed(Input::Launched { id: SessionId(1) });
    h.feed(Input::Launched { id: SessionId(2) });
    h.at(S);
    assert_eq!(h.m.release_owner(h.now, &alice, Duration::from_secs(3)), 1);
    assert_eq!(h.m.release_owner(h.now, &bob, Duration::from_secs(3)), 1);
    // Bob reconnects and uses his session during the grace period.
    h.m.activity(SessionId(2)).unwrap().touch(Timestamp(2 * S));
    h.at(4 * S);
    let a = h.tick();
    assert_eq!(ending(&a), vec![(SessionId(1), EndReason::OwnerReleased)]);
    assert_eq!(h.m.phase(SessionId(2)), Some(Phase::Live));
    assert_eq!(h.m.totals().owner_released, 1);
    assert_eq!(
        h.m.release_owner(h.now, &OwnerKey::new("nobody"), Duration::ZERO),
        0
    );
}

#[test]
fn zero_grace_releases_at_once() {
    let mut h = H::new(cfg());
    let o = OwnerKey::new("c");
    h.m.acquire(h.now, Some(o.clone()));
    h.drain();
    h.feed(Input::Launched { id: SessionId(1) });
    h.at(1);
    h.m.release_owner(h.now, &o, Duration::ZERO);
    assert_eq!(
        ending(&h.drain()),
        vec![(SessionId(1), EndReason::OwnerReleased)]
    );
}

#[test]
fn max_lifetime_retires_only_when_not_busy() {
    let mut h = H::new(PoolConfig {
        max_lifetime: Some(Duration::from_secs(5)),
        idle_timeout: None,
        ..cfg()
    });
    let id = h.live();
    let act = h.m.activity(id).unwrap().clone();
    act.begin_op(Timestamp(4 * S));
    h.at(5 * S);
    assert!(h.tick().is_empty(), "never mid-operation");
    act.end_op(Timestamp(5 * S + 500));
    h.at(6 * S);
    assert_eq!(
        ending(&h.tick()),
        vec![(id, EndReason::Retired(RetireCause::MaxLifetime))]
    );
}

#[test]
fn max_uses_retires_on_hint_or_at_the_idle_check() {
    let mut h = H::new(PoolConfig {
        max_uses: Some(2),
        ..cfg()
    });
    let id = h.live();
    let act = h.m.activity(id).unwrap().clone();
    act.begin_op(Timestamp(1));
    act.end_op(Timestamp(2));
    assert!(h.feed(Input::RetireHint { id }).is_empty(), "1 use < 2");
    act.begin_op(Timestamp(3));
    assert!(h.feed(Input::RetireHint { id }).is_empty(), "busy");
    act.end_op(Timestamp(4));
    assert_eq!(
        ending(&h.feed(Input::RetireHint { id })),
        vec![(id, EndReason::Retired(RetireCause::MaxUses))]
    );
}

#[test]
fn tombstones_explain_ended_sessions_and_are_bounded() {
    let mut h = H::new(cfg()); // keeps 4
    let mut ids = Vec::new();
    for _ in 0..6 {
        let id = h.live();
        h.m.destroy(h.now, id).unwrap();
        let a = h.drain();
        h.complete(&a, id);
        ids.push(id);
    }
    assert_eq!(
        h.m.destroy(h.now, ids[5]),
        Err(SessionError::Ended {
            id: ids[5],
            reason: EndReason::Destroyed
        })
    );
    assert_eq!(
        h.m.destroy(h.now, ids[0]),
        Err(SessionError::Unknown { id: ids[0] }),
        "the oldest tombstones are forgotten"
    );
    assert_eq!(
        h.m.destroy(h.now, SessionId(999)),
        Err(SessionError::Unknown { id: SessionId(999) })
    );
}

#[test]
fn the_end_reason_is_known_in_every_phase_of_teardown_and_after() {
    // The reason lives in the session table while the teardown runs and becomes a
    // tombstone when the table forgets the session: a late caller learns it throughout.
    let mut h = H::new(cfg());
    let id = h.live();
    assert_eq!(h.m.end_reason(id), None);
    h.m.destroy(h.now, id).unwrap();
    h.drain();
    let ended = Err(SessionError::Ended {
        id,
        reason: EndReason::Destroyed,
    });
    assert_eq!(h.m.phase(id), Some(Phase::Stopping));
    assert_eq!(h.m.end_reason(id), Some(&EndReason::Destroyed));
    assert_eq!(h.m.destroy(h.now, id), ended);
    h.feed(Input::Gone { id });
    assert_eq!(h.m.phase(id), Some(Phase::Removing));
    assert_eq!(h.m.end_reason(id), Some(&EndReason::Destroyed));
    assert_eq!(h.m.destroy(h.now, id), ended);
    h.feed(Input::DirRemoved { id });
    assert_eq!(h.m.phase(id), None);
    assert_eq!(h.m.end_reason(id), Some(&EndReason::Destroyed));
    assert_eq!(h.m.destroy(h.now, id), ended);
    // A failed launch too, from the failure on.
    let _ = h.m.acquire(h.now, None);
    let Some(Action::Launch { id: failed }) = h.drain().first().cloned() else {
        panic!("expected a launch")
    };
    h.feed(Input::LaunchFailed {
        id: failed,
        reason: "boom".into(),
    });
    let why = EndReason::LaunchFailed {
        reason: "boom".into(),
    };
    assert_eq!(h.m.end_reason(failed), Some(&why));
    h.feed(Input::DirRemoved { id: failed });
    assert_eq!(h.m.phase(failed), None);
    assert_eq!(h.m.end_reason(failed), Some(&why));
    h.m.check_invariants().unwrap();
}

#[test]
fn shutdown_tears_everything_down_and_refuses_new_work() {
    let mut h = H::new(PoolConfig {
        max_browsers: 3,
        ..cfg()
    });
    let a = h.live();
    let b = h.live();
    let t = h.m.acquire(h.now, None); // launching
    h.drain();
    h.m.shutdown(h.now);
    let acts = h.drain();
    let mut ended: Vec<SessionId> = ending(&acts).into_iter().map(|(id, _)| id).collect();
    ended.sort();
    assert_eq!(ended, vec![a, b]);
    let t2 = h.m.acquire(h.now, None);
    assert_eq!(
        h.drain(),
        vec![Action::Reply {
            ticket: t2,
            result: Err(AcquireError::ShuttingDown)
        }]
    );
    // The launch in flight reports success: refused and torn down.
    let acts = h.feed(Input::Launched { id: SessionId(3) });
    assert!(acts.contains(&Action::Reply {
        ticket: t,
        result: Err(AcquireError::ShuttingDown)
    }));
    assert_eq!(ending(&acts), vec![(SessionId(3), EndReason::Shutdown)]);
    for id in [a, b, SessionId(3)] {
        h.feed(Input::Gone { id });
        h.feed(Input::DirRemoved { id });
    }
    assert!(h.m.is_empty());
    assert_eq!(h.m.totals().shutdown, 3);
}

#[test]
fn cancelled_requests_leave_the_queue_or_abandon_their_launch() {
    let mut h = H::new(PoolConfig {
        max_browsers: 1,
        ..cfg()
    });
    let t1 = h.m.acquire(h.now, None);
    let t2 = h.m.acquire(h.now, None);
    h.drain();
    h.feed(Input::Cancel { ticket: t2 });
    assert_eq!(h.m.stats().waiting, 0);
    h.feed(Input::Cancel { ticket: t1 });
    let a = h.feed(Input::Launched { id: SessionId(1) });
    assert_eq!(ending(&a), vec![(SessionId(1), EndReason::Abandoned)]);
    assert!(!a.iter().any(|x| matches!(x, Action::Reply { .. })));
}

#[test]
fn same_inputs_same_actions() {
    fn run() -> Vec<Action> {
        let mut h = H::new(cfg());
        let mut log = Vec::new();
        for i in 0..20u64 {
            h.at(i * 700);
            h.m.acquire(h.now, Some(OwnerKey::new(format!("o{}", i % 3))));
            log.extend(h.drain());
            for id in h.m.tracked_ids() {
                if h.m.phase(id) == Some(Phase::Launching) {
                    log.extend(h.feed(Input::Launched { id }));
                }
                if h.m.phase(id) == Some(Phase::Stopping) {
                    log.extend(h.feed(Input::Gone { id }));
                }
                if h.m.phase(id) == Some(Phase::Removing) {
                    log.extend(h.feed(Input::DirRemoved { id }));
                }
            }
            log.extend(h.tick());
        }
        log
    }
    let a = run();
    assert!(a.len() > 40);
    assert_eq!(a, run());
}

#[test]
fn a_waiter_whose_victim_will_not_die_gets_another_victim() {
    let mut h = H::new(cfg());
    let a = h.live();
    h.at(S);
    let b = h.live();
    h.at(2 * S);
    let t = h.m.acquire(h.now, None);
    assert_eq!(ending(&h.drain()), vec![(a, EndReason::Evicted)]);
    // a's forced kill times out: the waiter must not keep counting on a's slot.
    let acts = h.feed(Input::KillTimedOut { id: a, attempt: 1 });
    assert_eq!(ending(&acts), vec![(b, EndReason::Evicted)]);
    let acts = h.feed(Input::Gone { id: b });
    h.serve(&acts, t, "the waiter is served by b's slot");
    assert_eq!(h.m.occupied(), 2, "a still counts until its tree is gone");
    h.m.check_invariants().unwrap();
}

#[test]
fn the_idle_cutoff_agrees_with_the_idle_deadline() {
    let grids = [1, 7, 1000, 60_000];
    let idles = [
        None,
        Some(0),
        Some(1),
        Some(999),
        Some(30 * 60_000),
        Some(u64::MAX - 5),
    ];
    let keys = |now: u64| {
        let mut v: Vec<u64> = (0..50).collect();
        v.extend((0..50).map(|d| now.saturating_sub(d)));
        v.extend([now / 2, now.saturating_add(3), u64::MAX - 1, u64::MAX]);
        v
    };
    let mut past = 0;
    for grid in grids {
        for idle in idles {
            for now in (0..3000).chain([1_800_000, 1_860_000, 1_860_001, u64::MAX - 1, u64::MAX]) {
                let cut = IdleCutoff::new(idle, grid, Timestamp(now));
                for key in keys(now) {
                    let want = idle_deadline(idle, grid, Timestamp(key)) <= Timestamp(now);
                    assert_eq!(
                        cut.at(Timestamp(key)),
                        want,
                        "grid {grid}, idle {idle:?}, now {now}, key {key}"
                    );
                    past += usize::from(want);
                }
            }
        }
    }
    assert!(past > 10_000, "the cases cover expired keys too: {past}");
}

#[test]
fn sessions_launched_together_have_neighbouring_activity_cells() {
    let mut h = H::new(PoolConfig {
        max_browsers: 4,
        ..cfg()
    });
    let ids: Vec<SessionId> = (0..3).map(|_| h.live()).collect();
    // Their stamps (what a touch writes) are neighbouring words.
    let addr = |id| h.m.activity(id).unwrap().stamp_addr();
    let step = std::mem::size_of::<u64>();
    assert_eq!(addr(ids[1]), addr(ids[0]) + step);
    assert_eq!(addr(ids[2]), addr(ids[1]) + step);
    // A handle outlives its session and still says it ended.
    let cell = h.m.activity(ids[0]).unwrap().clone();
    h.m.destroy(h.now, ids[0]).unwrap();
    let a = h.drain();
    h.complete(&a, ids[0]);
    assert!(cell.is_ended());
    assert!(h.m.activity(ids[0]).is_err());
}

/// Regression: a client whose connection dropped in the same clock tick as its session's
/// last stamp was treated as "used again" (`last_active >= released_at`), and the session
/// lived on until the idle timeout.
#[test]
fn owner_released_in_the_tick_of_its_last_stamp_is_destroyed_after_grace() {
    let mut h = H::new(cfg());
    let o = OwnerKey::new("c");
    h.m.acquire(h.now, Some(o.clone()));
    h.drain();
    h.feed(Input::Launched { id: SessionId(1) });
    h.at(S);
    let act = h.m.activity(SessionId(1)).unwrap().clone();
    act.begin_op(h.now);
    act.end_op(h.now);
    // The connection drops in the same tick as the last stamp.
    assert_eq!(h.m.release_owner(h.now, &o, Duration::from_secs(1)), 1);
    h.at(2 * S);
    assert_eq!(
        ending(&h.tick()),
        vec![(SessionId(1), EndReason::OwnerReleased)]
    );
}

/// An operation begun in the very tick of the release still counts as use: the session
/// is kept.
#[test]
fn an_operation_begun_in_the_tick_of_the_release_keeps_the_session() {
    let mut h = H::new(cfg());
    let o = OwnerKey::new("c");
    h.m.acquire(h.now, Some(o.clone()));
    h.drain();
    h.feed(Input::Launched { id: SessionId(1) });
    h.at(S);
    assert_eq!(h.m.release_owner(h.now, &o, Duration::from_secs(1)), 1);
    let act = h.m.activity(SessionId(1)).unwrap().clone();
    act.begin_op(h.now);
    act.end_op(h.now);
    h.at(2 * S);
    assert!(ending(&h.tick()).is_empty());
    assert_eq!(h.m.phase(SessionId(1)), Some(Phase::Live));
}

/// A reclaimed session survives the grace even when nothing is stamped after the
/// release (the owner came back within the release's tick).
#[test]
fn reclaim_cancels_a_pending_release() {
    let mut h = H::new(cfg());
    let o = OwnerKey::new("c");
    h.m.acquire(h.now, Some(o.clone()));
    h.drain();
    h.feed(Input::Launched { id: SessionId(1) });
    h.at(S);
    assert!(!h.m.reclaim(SessionId(1)), "nothing pending yet");
    assert_eq!(h.m.release_owner(h.now, &o, Duration::from_secs(1)), 1);
    assert!(h.m.reclaim(SessionId(1)));
    h.at(3 * S);
    assert!(ending(&h.tick()).is_empty());
    assert_eq!(h.m.phase(SessionId(1)), Some(Phase::Live));
    assert!(!h.m.reclaim(SessionId(99)), "unknown id");
}

/// Under `EvictLru`, a request whose deadline comes while its victim is still dying gets
/// one extension of a whole kill budget (and is served when the victim is gone); at the
/// extended deadline it is refused, whatever the victim is doing.
#[test]
fn a_waiter_whose_victim_is_still_dying_gets_one_extension() {
    let c = PoolConfig {
        max_browsers: 1,
        acquire_timeout: Duration::from_secs(1),
        kill_grace: Duration::from_secs(3),
        ..cfg()
    };
    let extra = c.kill_grace + c.kill_timeout * c.kill_attempts;
    for victim_dies in [true, false] {
        let mut h = H::new(c.clone());
        let a = h.live();
        h.at(S);
        let t = h.m.acquire(h.now, None);
        assert_eq!(ending(&h.drain()), vec![(a, EndReason::Evicted)]);
        // The acquire deadline comes while a is still being killed: extended, not refused.
        h.at(2 * S);
        let acts = h.tick();
        assert!(
            !acts.iter().any(|x| matches!(x, Action::Reply { .. })),
            "{acts:?}"
        );
        assert_eq!(h.m.stats().waiting, 1);
        if victim_dies {
            h.at(3 * S);
            let acts = h.feed(Input::Gone { id: a });
            h.serve(&acts, t, "a's slot goes to the waiter");
            assert_eq!(h.m.totals().wait_timeouts, 0);
        } else {
            // Just before the extended deadline: still waiting.
            h.at((2 * S + extra.as_millis() as u64) - 1);
            assert!(!h.tick().iter().any(|x| matches!(x, Action::Reply { .. })));
            // At it: refused once, although a is still stopping (one extension only).
            h.at(2 * S + extra.as_millis() as u64);
            let acts = h.tick();
            assert!(
                acts.contains(&Action::Reply {
                    ticket: t,
                    result: Err(AcquireError::WaitTimedOut {
                        waited: Duration::from_secs(1) + extra
                    })
                }),
                "{acts:?}"
            );
            assert_eq!(h.m.stats().waiting, 0);
            assert_eq!(h.m.totals().wait_timeouts, 1);
        }
        h.m.check_invariants().unwrap();
    }
}

/// During shutdown, a directory that cannot be removed is retried a bounded number of
/// times (so that shutdown ends), then left and reported.
#[test]
fn shutdown_retries_a_failed_removal_three_times_then_gives_up() {
    let mut h = H::new(cfg());
    let id = h.live();
    h.m.shutdown(h.now);
    h.drain();
    h.feed(Input::Gone { id });
    let err = BackendError::new("remove", BackendErrorKind::Busy, "busy");
    let mut attempts = vec![1];
    for _ in 0..10 {
        h.feed(Input::RemoveFailed {
            id,
            error: err.clone(),
        });
        let Some(at) = h.m.poll_timeout() else {
            break;
        };
        h.at(at.0);
        for a in h.tick() {
            if let Action::RemoveDir { id: r, attempt, .. } = a {
                assert_eq!(r, id);
                attempts.push(attempt);
            }
        }
    }
    assert_eq!(attempts, vec![1, 2, 3], "three attempts during shutdown");
    assert_eq!(h.m.phase(id), Some(Phase::Removing));
    assert_eq!(h.m.totals().remove_failures, 1);
}

/// The guard a victim loop calls when it ran past its bound (a bug in the machine):
/// debug builds (the tests) panic so the bug cannot pass, release builds log and go on.
#[test]
fn a_victim_loop_past_its_bound_panics_in_debug_builds_only() {
    let h = H::new(cfg());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.m.victim_loop_stuck("reap_idle")
    }));
    assert_eq!(r.is_err(), cfg!(debug_assertions));
}

/// A victim already on its way counts for one waiter: a second request evicts one more
/// session, not two.
#[test]
fn each_waiter_gets_one_victim_and_no_more() {
    let mut h = H::new(PoolConfig {
        max_browsers: 3,
        ..cfg()
    });
    let a = h.live();
    h.at(S);
    let b = h.live();
    h.at(2 * S);
    let c = h.live();
    h.at(3 * S);
    h.m.acquire(h.now, None);
    assert_eq!(ending(&h.drain()), vec![(a, EndReason::Evicted)]);
    h.m.acquire(h.now, None);
    assert_eq!(ending(&h.drain()), vec![(b, EndReason::Evicted)]);
    assert_eq!(h.m.phase(c), Some(Phase::Live));
    // Every waiter has its victim: no recheck at the next tick (c's idle deadline, 12 s,
    // is the next thing due).
    assert_eq!(h.m.poll_timeout(), Some(Timestamp(12 * S)));
    // A tick while both victims are still dying evicts nobody either.
    h.at(4 * S);
    assert!(ending(&h.tick()).is_empty());
    assert_eq!(h.m.phase(c), Some(Phase::Live));
    assert_eq!(h.m.totals().evicted, 2);
}

/// `check_invariants` is the oracle of the proptests and the simulation: each of its
/// checks must fire when what it checks is broken (here by hand, on a copy of a sound
/// machine), or a bug it should catch would pass.
#[test]
fn check_invariants_fires_on_each_broken_count() {
    fn sound() -> H {
        let mut h = H::new(PoolConfig {
            max_browsers: 3,
            ..cfg()
        });
        h.m.acquire(h.now, Some(OwnerKey::new("o")));
        let acts = h.drain();
        let Some(Action::Launch { id, .. }) = acts.first() else {
            panic!("{acts:?}")
        };
        let id = *id;
        h.feed(Input::Launched { id });
        h.live();
        h.m.check_invariants().unwrap();
        h
    }
    type Break = fn(&mut Lifecycle);
    let cases: [(&str, Break, &str); 7] = [
        ("occupied", |m| m.occupied += 1, "occupied"),
        ("stopping", |m| m.stopping += 1, "counters drifted"),
        ("launching", |m| m.launching += 1, "counters drifted"),
        ("stalled", |m| m.stalled += 1, "counters drifted"),
        (
            "max_browsers",
            |m| m.config.max_browsers = 1,
            "max_browsers",
        ),
        ("owners", |m| m.owners.clear(), "owner index"),
        (
            "index",
            |m| {
                let id = m.tracked_ids()[0];
                m.unindex(id);
            },
            "activity index",
        ),
    ];
    for (what, break_it, says) in cases {
        let mut h = sound();
        break_it(&mut h.m);
        let err = h.m.check_invariants().expect_err(what);
        assert!(err.contains(says), "{what}: {err}");
    }
}

/// The same for the spares' checks, on a sound machine with one spare, launched (ready)
/// or still launching.
#[test]
fn check_invariants_fires_on_each_broken_spare_rule() {
    fn sound(launched: bool) -> (H, SessionId) {
        let mut h = H::new(PoolConfig {
            max_browsers: 3,
            spares: 1,
            ..cfg()
        });
        h.tick();
        let spare = h.m.tracked_ids()[0];
        assert_eq!(h.m.phase(spare), Some(Phase::Launching));
        if launched {
            h.feed(Input::Launched { id: spare });
            assert_eq!(h.m.stats().spares_ready, 1);
        }
        h.m.check_invariants().unwrap();
        (h, spare)
    }
    type Break = fn(&mut Lifecycle, SessionId);
    let cases: [(&str, bool, Break, &str); 7] = [
        ("spares", true, |m, _| m.config.spares = 0, "> spares"),
        (
            "indexed",
            true,
            |m, id| m.index(id, Timestamp(0)),
            "ready spare",
        ),
        (
            "used",
            true,
            |m, id| {
                let a = &m.table.hot(id).unwrap().activity;
                a.begin_op(Timestamp(0));
                a.end_op(Timestamp(0));
            },
            "was used or owned",
        ),
        (
            "busy",
            true,
            |m, id| m.table.hot(id).unwrap().activity.begin_op(Timestamp(0)),
            "was used or owned",
        ),
        (
            "owned",
            true,
            |m, id| m.table.get_mut(id).unwrap().cold.owner = Some(OwnerKey::new("o")),
            "was used or owned",
        ),
        (
            "adopted",
            false,
            |m, id| {
                m.table.get_mut(id).unwrap().cold.state = State::Launching {
                    ticket: Ticket(7),
                    cancelled: false,
                }
            },
            "not a launch for nobody",
        ),
        (
            "waiter",
            true,
            |m, _| {
                m.waiters.push_back(Waiter {
                    ticket: Ticket(99),
                    owner: None,
                    deadline: Timestamp::MAX,
                    since: Timestamp(0),
                    extended: false,
                })
            },
            "while",
        ),
    ];
    for (what, launched, break_it, says) in cases {
        let (mut h, spare) = sound(launched);
        break_it(&mut h.m, spare);
        let err = h.m.check_invariants().expect_err(what);
        assert!(err.contains(says), "{what}: {err}");
    }
}

mod memory;
mod spares;
