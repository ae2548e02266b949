//! The oracles, checked after every event, and the quiet phase that ends a run.

use super::trace::fmt_time;
use super::*;
use crate::world::Owner;

impl Sim<'_> {
    // ------------------------------------------------------------------ convergence

    pub(super) fn go_quiet(&mut self) {
        self.quiet = true;
        self.pool_quiet();
        self.tr(Tr::Quiet);
        self.w().fs_faults = Default::default();
        let now = self.ts();
        let marked = !self.opts.sabotage.ops_not_marked;
        for c in 0..self.clients.len() {
            let cl = &mut self.clients[c];
            if let (CState::InOp { .. }, Some(h)) = (cl.state, cl.held.as_mut()) {
                if let Some(s) = self.slots.get_mut(&h.id).filter(|_| h.inc == self.inc) {
                    s.in_op = false;
                    s.last_ms = Some(self.now);
                }
                match (h.op.take(), marked) {
                    (Some(op), _) => drop(op),
                    (None, true) if h.lease.is_none() => {
                        h.activity.end_op(now);
                    }
                    _ => {}
                }
            }
            cl.state = CState::Done;
        }
        self.push(self.now + self.converge_bound_ms, Ev::Converge);
    }

    pub(super) fn converge(&mut self) {
        // With prewarmed spares, the pool keeps its spares (never used, at most
        // `spares`, replaced after `spare_max_age`): only they, their trees and their
        // directories may remain.
        let (tracked, spare_like) = self.spare_split();
        let (trees, procs) = self.w().ours_live();
        let dirs = self
            .w()
            .ours_entries()
            .into_iter()
            .filter(|(p, _, k)| *k == browserpool::EntryKind::Dir && !self.sweep_failed.contains(p))
            .count();
        let allowed = spare_like.min(2 * self.config.spares);
        let ok = tracked == 0
            && spare_like <= 2 * self.config.spares
            && trees <= allowed as u64
            && dirs <= allowed
            && self.server_up;
        self.tr(Tr::Converged { ok });
        if !ok {
            self.violate(
                oracle::CONVERGENCE,
                format!(
                    "{} after faults and clients stopped: {tracked} sessions{}, {trees} browser trees ({procs} processes), {dirs} directories of ours remain{}",
                    fmt_time(self.converge_bound_ms),
                    if self.config.spares > 0 {
                        format!(" (and {spare_like} spares)")
                    } else {
                        String::new()
                    },
                    if self.server_up { "" } else { "; the server is down" }
                ),
            );
        }
    }

    // ------------------------------------------------------------------ oracles

    pub(super) fn violate(&mut self, oracle: &'static str, message: String) {
        if let Some(v) = self.violations.get_mut(oracle) {
            v.count += 1;
            return;
        }
        self.tr(Tr::Violation { oracle });
        if self.failure_context.is_empty() {
            self.failure_context = self.ring.iter().map(|l| l.to_string()).collect();
        }
        self.violations.insert(
            oracle,
            Violation {
                oracle: oracle.to_owned(),
                event_index: self.event_index,
                sim_ms: self.now,
                message,
                count: 1,
            },
        );
    }

    /// The pool began tearing `id` down (`Action::Ending`): coverage, trace, and the
    /// `never-mid-operation` oracle (a teardown the pool decided by itself must not hit
    /// a session whose client is in the middle of an operation).
    pub(super) fn ending(&mut self, id: SessionId, reason: &browserpool::EndReason) {
        let label = reason.label();
        match label {
            "idle" => self.coverage.idle_reaps += 1,
            "evicted" => self.coverage.evictions += 1,
            "owner_released" => self.coverage.owner_releases += 1,
            _ => {}
        }
        self.tr(Tr::Ending {
            id: id.0,
            reason: label,
        });
        self.mem.ending(self.inc, id);
        if matches!(
            label,
            "idle" | "evicted" | "retired" | "owner_released" | "memory"
        ) {
            let mid_op = self.holders.get(&id).copied().filter(|c| {
                self.clients.get(*c as usize).is_some_and(|cl| {
                    matches!(cl.state, CState::InOp { .. })
                        && cl
                            .held
                            .as_ref()
                            .is_some_and(|h| h.id == id && h.inc == self.inc)
                })
            });
            if let Some(c) = mid_op {
                self.violate(
                    oracle::NEVER_MID_OPERATION,
                    format!(
                        "session i{}/{id} torn down ({reason}) while client c{c} had an operation in flight",
                        self.inc
                    ),
                );
            }
        }
        self.holders.remove(&id);
    }

    /// A teardown finished (`Action::Finished`); `facts` are (tree alive, directory
    /// there) at that instant, if the session was known. The `exactly-once` oracle.
    pub(super) fn finished(
        &mut self,
        id: SessionId,
        reason: &'static str,
        dir_removed: bool,
        facts: Option<(bool, bool)>,
    ) {
        self.tr(Tr::Finished {
            id: id.0,
            reason,
            dir_removed,
        });
        self.mem.finished(self.inc, id);
        if !self.finished.insert(id) {
            self.violate(
                oracle::EXACTLY_ONCE,
                format!("session i{}/{id} finished twice", self.inc),
            );
        }
        if let Some((tree_alive, dir_there)) = facts {
            if tree_alive {
                self.violate(
                    oracle::EXACTLY_ONCE,
                    format!(
                        "session i{}/{id} finished while its processes live",
                        self.inc
                    ),
                );
            }
            if dir_removed && dir_there {
                let dir = self
                    .slots
                    .get(&id)
                    .map(|s| s.dir.display().to_string())
                    .unwrap_or_default();
                self.violate(
                    oracle::EXACTLY_ONCE,
                    format!(
                        "session i{}/{id} finished with dir_removed but {dir} exists",
                        self.inc
                    ),
                );
            }
        }
        if let Some(t) = self.slots.get(&id).and_then(|s| s.tree) {
            self.by_tree.remove(&t);
        }
        if dir_removed {
            self.slots.remove(&id);
        }
    }

    /// A successful reply handed session `h` to a client whose request came at `since`:
    /// the `spare-once` oracle, from the world's facts (the tree's served operations),
    /// not from what the pool says.
    pub(super) fn check_handout(&mut self, h: &Handout, since: u64) {
        let (inc, id) = (self.inc, h.id);
        if !self.handed.insert((inc, id)) {
            self.violate(
                oracle::SPARE_ONCE,
                format!("session i{inc}/{id} handed out a second time"),
            );
        }
        self.handed_order.push(id);
        let tree = h.tree.or_else(|| self.slots.get(&id).and_then(|s| s.tree));
        let facts = tree.and_then(|(p, g)| self.w().tree(p, g).map(|t| (t.uses, t.started)));
        if let Some((uses, started)) = facts {
            if uses > 0 {
                self.violate(
                    oracle::SPARE_ONCE,
                    format!(
                        "session i{inc}/{id} handed out with a browser that already served {uses} client operations"
                    ),
                );
            }
            if started.0 < since {
                self.coverage.spare_handouts += 1;
            }
        }
    }

    /// The `hand_out_used` sabotage: answer with the most recently handed-out session
    /// that is still live instead of `h`.
    pub(super) fn sabotage_hand_out_used(&mut self, h: Handout) -> Handout {
        if !self.opts.sabotage.hand_out_used {
            return h;
        }
        let used = self
            .handed_order
            .iter()
            .rev()
            .copied()
            .find(|id| *id != h.id && self.is_live(*id));
        match used {
            Some(id) => Handout {
                id,
                activity: None,
                tree: None,
                lease: None,
            },
            None => h,
        }
    }

    pub(super) fn check_oracles(&mut self) {
        let foreign = self.w().take_violations();
        for v in foreign {
            self.violate(oracle::FOREIGN_TOUCH, v);
        }
        if !self.server_up {
            return;
        }
        if self.config.spares > 0 {
            let (ready, occupied) = self.spare_gauges();
            if ready > self.config.spares {
                self.violate(
                    oracle::SPARE_BOUND,
                    format!("{ready} spares ready > spares {}", self.config.spares),
                );
            } else if occupied > self.config.max_browsers {
                self.violate(
                    oracle::SPARE_BOUND,
                    format!(
                        "{ready} spares + sessions = {occupied} > max_browsers {}",
                        self.config.max_browsers
                    ),
                );
            }
        }
        // capacity
        let max = self.config.max_browsers;
        let inc = self.inc;
        let current = self
            .w()
            .trees()
            .filter(|(_, t)| t.owner == Owner::Ours(inc))
            .count();
        if current > max {
            self.violate(
                oracle::CAPACITY,
                format!("{current} live browser trees of the current pool > max_browsers {max}"),
            );
        } else if self.sweep_complete {
            let all = self.w().ours_live().0 as usize;
            if all > max {
                self.violate(
                    oracle::CAPACITY,
                    format!(
                        "{all} live browser trees of ours (all incarnations) > max_browsers {max}"
                    ),
                );
            }
        }
        // idle bound
        let mut late = None;
        for (id, s) in &self.slots {
            let Some((p, g)) = s.tree else {
                continue;
            };
            let (busy, last) = match (s.last_ms, &s.activity) {
                (Some(last), _) => (s.in_op, last),
                (None, Some(a)) => (a.is_busy(), a.last_active().0),
                (None, None) => continue,
            };
            if busy {
                continue;
            }
            if self.now > last + self.idle_bound_ms
                && !self.idle_reported.contains(&(self.inc, *id))
                && self.w().tree_alive(p, g)
            {
                late = Some((*id, last));
                break;
            }
        }
        if let Some((id, last)) = late {
            self.idle_reported.insert((self.inc, id));
            self.violate(
                oracle::IDLE_BOUND,
                format!(
                    "session i{}/{id} still has live processes {} after its last activity (bound {})",
                    self.inc,
                    fmt_time(self.now - last),
                    fmt_time(self.idle_bound_ms)
                ),
            );
        }
        self.check_memory_budget();
        // answered
        if let Some((t, (_, since))) = self.tickets.iter().next().map(|(t, v)| (*t, *v)) {
            if self.now > since + self.request_bound_ms {
                self.tickets.remove(&t);
                self.violate(
                    oracle::ANSWERED,
                    format!(
                        "request {} unanswered after {}",
                        t.0,
                        fmt_time(self.now - since)
                    ),
                );
            }
        }
    }
}
