//! The machine shell: the engine drives the pure `Lifecycle` itself and carries out its
//! actions against the world with drawn latencies (launch, kill reaction, removal).

use super::*;
use crate::world::backend::PlannedLaunch;
use crate::world::{Owner, SignalOutcome};
use browserpool::{Action, Input, KillStage};

impl Sim<'_> {
    /// Feed the running machine an input (no-op in the pool shell, whose pool hears from
    /// its own backend).
    pub(super) fn machine_feed(&mut self, input: Input) {
        let now = self.ts();
        if let Some(m) = self.machine.as_mut() {
            m.handle(now, input);
        }
        self.drain();
    }

    /// Carry out everything the machine asked for.
    pub(super) fn drain(&mut self) {
        while let Some(a) = self.machine.as_mut().and_then(|m| m.poll_action()) {
            self.exec(a);
        }
    }

    pub(super) fn exec(&mut self, a: Action) {
        // Actions name sessions by id; the machine that emitted them knows the directory.
        let dir_of = |me: &Self, id| me.machine.as_ref().map(|m| m.session_dir(id));
        match a {
            Action::Launch { id } => {
                if let Some(dir) = dir_of(self, id) {
                    self.do_launch(id, dir);
                }
            }
            Action::Ending { .. } | Action::Reaped { .. } => {
                for t in a.endings() {
                    self.ending(t.id, &t.reason);
                    self.do_kill(t.id, t.stage, 1, t.wait);
                }
            }
            Action::Kill {
                id,
                stage,
                attempt,
                wait,
            } => self.do_kill(id, stage, attempt, wait),
            Action::RemoveDir { id, .. } => {
                let Some(dir) = dir_of(self, id) else {
                    return;
                };
                let r = self.w().remove_dir_all(&dir);
                self.tr(Tr::Remove {
                    id: id.0,
                    ok: r.is_ok(),
                });
                let now = self.ts();
                match r {
                    Ok(()) => {
                        if self.finished.contains(&id) {
                            self.slots.remove(&id);
                        }
                        if let Some(m) = self.machine.as_mut() {
                            m.handle(now, Input::DirRemoved { id });
                        }
                    }
                    Err(error) => {
                        if let Some(m) = self.machine.as_mut() {
                            m.handle(now, Input::RemoveFailed { id, error });
                        }
                    }
                }
            }
            Action::Reply { ticket, result } => {
                let result = result.map(|id| Handout {
                    id,
                    activity: None,
                    tree: None,
                    lease: None,
                });
                self.reply(ticket, result)
            }
            Action::Finished {
                id,
                reason,
                dir_removed,
            } => {
                let facts = self.slots.get(&id).map(|s| {
                    let tree_alive = s.tree.is_some_and(|(p, g)| self.w().tree_alive(p, g));
                    let dir_there = self.w().exists(&s.dir);
                    (tree_alive, dir_there)
                });
                self.finished(id, reason.label(), dir_removed, facts);
            }
        }
    }

    pub(super) fn do_launch(&mut self, id: SessionId, dir: PathBuf) {
        let inc = self.inc;
        self.slots.insert(
            id,
            Slot {
                dir: dir.clone(),
                tree: None,
                activity: None,
                last_ms: None,
                in_op: false,
            },
        );
        let created = self.w().create_dir(&dir, Owner::Ours(inc));
        if let Err(e) = created {
            self.tr(Tr::NoDir { id: id.0 });
            self.push(
                self.now,
                Ev::LaunchDone {
                    inc,
                    id,
                    tree: None,
                    outcome: LaunchOutcome::NoDir(e),
                },
            );
            return;
        }
        let plan = draw_launch(
            &mut self.rng_browser,
            &self.faults,
            self.quiet,
            &self.config,
        );
        let (procs, kill) = (plan.procs, plan.kill);
        let latency = ms(plan.latency);
        let outcome = match plan.outcome {
            PlannedLaunch::Hangs => LaunchOutcome::Hang,
            PlannedLaunch::ExitsDuringStartup => LaunchOutcome::Fail,
            PlannedLaunch::Up => LaunchOutcome::Ok,
        };
        let spawned = self.w().spawn_tree(&dir, Owner::Ours(inc), procs, kill);
        match spawned {
            Ok((pgid, gen)) => {
                self.tree_started(id, pgid, gen, procs);
                let at = match outcome {
                    LaunchOutcome::Hang => self.now + ms(self.config.launch_timeout),
                    _ => self.now + latency,
                };
                self.push(
                    at,
                    Ev::LaunchDone {
                        inc,
                        id,
                        tree: Some((pgid, gen)),
                        outcome,
                    },
                );
            }
            Err(e) => {
                self.push(
                    self.now,
                    Ev::LaunchDone {
                        inc,
                        id,
                        tree: None,
                        outcome: LaunchOutcome::NoDir(e),
                    },
                );
            }
        }
    }

    pub(super) fn launch_done(
        &mut self,
        inc: u32,
        id: SessionId,
        tree: Option<(u32, u64)>,
        outcome: LaunchOutcome,
    ) {
        let current = inc == self.inc && self.server_up;
        match outcome {
            LaunchOutcome::Ok => {
                if !current {
                    return; // launched for a dead server: an orphan now
                }
                self.tr(Tr::Launched { id: id.0 });
                if let Some((p, g)) = tree {
                    let rate = if self.quiet {
                        0.0
                    } else {
                        self.faults.browser_crash_per_day
                    };
                    if rate > 0.0 {
                        let life = self.rng_browser.exp(86_400_000.0 / rate) as u64;
                        if self.now + life < self.end_ms {
                            self.push(self.now + life, Ev::TreeCrash(p, g));
                        }
                    }
                }
                let now = self.ts();
                if let Some(m) = self.machine.as_mut() {
                    m.handle(now, Input::Launched { id });
                }
                let act = self
                    .machine
                    .as_ref()
                    .and_then(|m| m.activity(id).ok().cloned());
                if let Some(s) = self.slots.get_mut(&id) {
                    s.activity = act;
                }
                self.drain();
            }
            LaunchOutcome::Fail | LaunchOutcome::Hang => {
                let hang = matches!(outcome, LaunchOutcome::Hang);
                // A failing Chrome exits by itself; a hung one is killed by the launcher,
                // unless the launcher (the server) is gone: then it hangs on as an orphan.
                if let Some((p, g)) = tree {
                    if !hang || current {
                        self.w().crash_tree(p, g, "launch failed");
                    }
                }
                if !current {
                    return;
                }
                let why = if hang {
                    "timed out"
                } else {
                    "browser exited during start-up"
                };
                self.tr(Tr::LaunchFailed { id: id.0, why });
                if let Some(t) = tree {
                    self.by_tree.remove(&t);
                }
                self.machine_feed(Input::LaunchFailed {
                    id,
                    reason: why.into(),
                });
            }
            LaunchOutcome::NoDir(e) => {
                if !current {
                    return;
                }
                self.tr(Tr::LaunchFailed {
                    id: id.0,
                    why: "create_dir failed",
                });
                self.machine_feed(Input::LaunchFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    pub(super) fn do_kill(
        &mut self,
        id: SessionId,
        stage: KillStage,
        attempt: u32,
        wait: Duration,
    ) {
        let inc = self.inc;
        let tree = self.slots.get(&id).and_then(|s| s.tree);
        self.tr(Tr::Kill {
            id: id.0,
            force: stage == KillStage::Force,
            attempt,
        });
        let wait_ms = ms(wait);
        let sab = self.opts.sabotage;
        if sab.kill_does_nothing || sab.premature_gone {
            if let (false, Some((p, g))) = (sab.kill_does_nothing, tree) {
                if self.w().tree_alive(p, g) {
                    let out = self.w().signal_group(p, g, stage);
                    if let SignalOutcome::DiesAt(d) = out {
                        self.push(d.0, Ev::TreeDeath(p, g));
                    }
                }
            }
            // The bug: claim the tree is gone without looking.
            self.push(
                self.now,
                Ev::KillCheck {
                    inc,
                    id,
                    tree: None,
                    attempt,
                },
            );
            return;
        }
        let check_at = match tree {
            Some((p, g)) if self.w().tree_alive(p, g) => {
                let out = self.w().signal_group(p, g, stage);
                match out {
                    SignalOutcome::DiesAt(d) if d.0 <= self.now => self.now,
                    SignalOutcome::DiesAt(d) => {
                        self.push(d.0, Ev::TreeDeath(p, g));
                        d.0.min(self.now + wait_ms)
                    }
                    SignalOutcome::Survives | SignalOutcome::NoSuchGroup => self.now + wait_ms,
                }
            }
            _ => self.now,
        };
        self.push(
            check_at,
            Ev::KillCheck {
                inc,
                id,
                tree,
                attempt,
            },
        );
    }

    /// The machine's next deadline is due.
    pub(super) fn timeout(&mut self, inc: u32) {
        if inc != self.inc || self.armed != Some(self.now) {
            return;
        }
        self.armed = None;
        if let Some(m) = self.machine.as_mut() {
            if m.poll_timeout().is_some_and(|t| t.0 <= self.now) {
                m.handle_timeout(Timestamp(self.now));
            }
        }
        self.drain();
    }

    /// Schedule the machine's next deadline as an event.
    pub(super) fn arm(&mut self) {
        let Some(m) = self.machine.as_ref() else {
            return;
        };
        if let Some(t) = m.poll_timeout() {
            let t = t.0.max(self.now);
            if self.armed != Some(t) {
                self.armed = Some(t);
                let inc = self.inc;
                self.push(t, Ev::Timeout(inc));
            }
        }
    }

    /// A kill's wait is over: is the tree gone?
    pub(super) fn kill_check(
        &mut self,
        inc: u32,
        id: SessionId,
        tree: Option<(u32, u64)>,
        attempt: u32,
    ) {
        if inc != self.inc || !self.server_up {
            return;
        }
        let gone = match tree {
            None => true,
            Some((p, g)) => self.w().complete_death(p, g),
        };
        if gone {
            self.tr(Tr::Gone { id: id.0 });
            self.machine_feed(Input::Gone { id });
        } else {
            self.tr(Tr::KillTimedOut { id: id.0, attempt });
            self.coverage.kill_escalations += 1;
            self.machine_feed(Input::KillTimedOut { id, attempt });
        }
    }
}
