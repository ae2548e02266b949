//! The workload: arrivals, clients and their operations, and the answers they get.

use super::*;
use browserpool::CapacityPolicy;

impl Sim<'_> {
    // ------------------------------------------------------------------ arrivals

    pub(super) fn rate_per_ms(&self, t: u64) -> f64 {
        let wl = &self.sc.workload;
        let base = wl.sessions_per_day.max(0.0) / 86_400_000.0;
        let phase = (t as f64 / 86_400_000.0 - 8.0 / 24.0) * std::f64::consts::TAU;
        base * (1.0 + wl.daily_cycle.clamp(0.0, 1.0) * phase.sin())
    }

    pub(super) fn next_arrival(&mut self, from: u64) -> Option<u64> {
        let wl = &self.sc.workload;
        let max =
            wl.sessions_per_day.max(0.0) / 86_400_000.0 * (1.0 + wl.daily_cycle.clamp(0.0, 1.0));
        if max <= 0.0 {
            return None;
        }
        let mut t = from as f64;
        loop {
            t += self.rng_arrivals.exp(1.0 / max);
            if t >= self.quiet_from as f64 {
                return None;
            }
            let accept = self.rate_per_ms(t as u64) / max;
            if self.rng_arrivals.f64() < accept {
                return Some(t as u64);
            }
        }
    }

    pub(super) fn arrive(&mut self) {
        let idx = self.clients.len() as u32;
        let wl = &self.sc.workload;
        let mut rng = Rng::derive(self.seed, STREAM_CLIENT, u64::from(idx));
        let ops = rng.range(u64::from(wl.ops_min), u64::from(wl.ops_max.max(wl.ops_min))) as u32;
        let ending = match rng.weighted(&[wl.destroy, wl.crash, wl.disconnect, wl.forget]) {
            1 => Ending::Crash,
            2 => Ending::Disconnect,
            3 => Ending::Forget,
            _ => Ending::Destroy,
        };
        self.clients.push(Client {
            rng,
            owner: OwnerKey::new(format!("c{idx}")),
            ops_left: ops,
            ending,
            state: CState::Waiting,
            held: None,
        });
        self.tr(Tr::Arrive { c: idx });
        if !self.server_up {
            self.client_error(idx, "connection refused (server down)");
            return;
        }
        let owner = self.clients[idx as usize].owner.clone();
        let max = self.config.max_browsers;
        if self.opts.sabotage.refuse_when_full && self.occupied() >= max {
            self.tickets.insert(Ticket(u64::MAX), (Some(idx), self.now));
            self.reply(Ticket(u64::MAX), Err(AcquireError::AtCapacity { max }));
            return;
        }
        self.shell_acquire(idx, owner);
    }

    pub(super) fn client_error(&mut self, c: u32, what: &'static str) {
        self.client_errors += 1;
        self.tr(Tr::ClientError { c, what });
        if let Some(cl) = self.clients.get_mut(c as usize) {
            cl.state = CState::Done;
        }
    }

    pub(super) fn think_ms(&mut self, c: u32) -> u64 {
        let wl = &self.sc.workload;
        let (lo, hi) = (wl.think_secs_min, wl.think_secs_max.max(wl.think_secs_min));
        let cl = &mut self.clients[c as usize];
        (cl.rng.uniform(lo, hi) * 1000.0) as u64
    }

    pub(super) fn client_step(&mut self, c: u32) {
        let Some(cl) = self.clients.get(c as usize) else {
            return;
        };
        let state = cl.state;
        let Some(held) = cl.held.as_ref() else {
            return;
        };
        if held.inc != self.inc || !self.server_up {
            return;
        }
        let (id, activity, tree) = (held.id, held.activity.clone(), held.tree);
        let marked = !self.opts.sabotage.ops_not_marked;
        match state {
            CState::Thinking => {
                if self.clients[c as usize].ops_left == 0 {
                    self.client_end(c, id);
                    return;
                }
                if activity.is_ended() {
                    self.client_error(c, "session ended (operation refused)");
                    return;
                }
                let wl = &self.sc.workload;
                let now = self.ts();
                let cl = &mut self.clients[c as usize];
                let long = cl.rng.chance(wl.long_op_probability);
                let secs = if long {
                    cl.rng.uniform(
                        wl.long_op_secs_min,
                        wl.long_op_secs_max.max(wl.long_op_secs_min),
                    )
                } else {
                    cl.rng
                        .uniform(wl.op_secs_min, wl.op_secs_max.max(wl.op_secs_min))
                };
                cl.state = CState::InOp { long };
                if let Some(s) = self.slots.get_mut(&id) {
                    s.in_op = true;
                    s.last_ms = Some(self.now);
                }
                let cl = &mut self.clients[c as usize];
                if let Some(h) = cl.held.as_mut() {
                    match (&h.lease, marked) {
                        (Some(lease), true) => h.op = lease.begin_op_owned().ok(),
                        (Some(lease), false) => lease.touch(),
                        (None, true) => activity.begin_op(now),
                        (None, false) => activity.touch(now),
                    }
                }
                if let Some((p, g)) = tree {
                    self.w().tree_used(p, g);
                }
                self.tr(Tr::OpBegin { c, id: id.0 });
                self.push(self.now + (secs * 1000.0) as u64, Ev::Client(c));
            }
            CState::InOp { long } => {
                let now = self.ts();
                if let Some(s) = self.slots.get_mut(&id) {
                    s.in_op = false;
                    s.last_ms = Some(self.now);
                }
                let mut hint = false;
                if let Some(h) = self.clients[c as usize].held.as_mut() {
                    match (&h.lease, marked) {
                        // Dropping the guard ends the operation (and hints the pool).
                        (Some(_), true) => drop(h.op.take()),
                        (Some(lease), false) => lease.touch(),
                        (None, true) => {
                            let uses = activity.end_op(now);
                            hint = self.config.max_uses.is_some_and(|m| uses >= m);
                        }
                        (None, false) => activity.touch(now),
                    }
                }
                self.tr(Tr::OpEnd { c, id: id.0, long });
                if activity.is_ended() {
                    self.client_error(c, "operation failed: session ended");
                    return;
                }
                // The operation is over before the pool hears that it was the last one.
                let cl = &mut self.clients[c as usize];
                cl.ops_left = cl.ops_left.saturating_sub(1);
                cl.state = CState::Thinking;
                if hint {
                    self.machine_feed(browserpool::Input::RetireHint { id });
                }
                let t = self.think_ms(c);
                self.push(self.now + t, Ev::Client(c));
            }
            CState::Waiting | CState::Done => {}
        }
    }

    pub(super) fn client_end(&mut self, c: u32, id: SessionId) {
        let ending = self.clients[c as usize].ending;
        self.clients[c as usize].state = CState::Done;
        match ending {
            Ending::Destroy => {
                self.tr(Tr::ClientEnd {
                    c,
                    how: "destroys its session",
                });
                self.shell_destroy(c, id);
            }
            Ending::Crash => self.tr(Tr::ClientEnd {
                c,
                how: "crashes silently",
            }),
            Ending::Disconnect => {
                self.tr(Tr::ClientEnd {
                    c,
                    how: "disconnects",
                });
                if let Some(grace) = self.release_grace {
                    let owner = self.clients[c as usize].owner.clone();
                    self.shell_release(&owner, grace);
                }
            }
            Ending::Forget => self.tr(Tr::ClientEnd {
                c,
                how: "forgets its session",
            }),
        }
        // The client is gone: its lease goes with it (the pool keeps the session).
        if let Some(h) = self.clients[c as usize].held.as_mut() {
            h.op = None;
            h.lease = None;
        }
        self.drain();
    }

    /// Answer request `ticket` (machine shell: the machine's reply; pool shell: the
    /// acquire task's result).
    pub(super) fn reply(&mut self, ticket: Ticket, result: Result<Handout, AcquireError>) {
        if self.opts.sabotage.lose_replies && result.is_ok() {
            return;
        }
        let (client, since) = self.tickets.remove(&ticket).unwrap_or((None, self.now));
        let live_client = client.filter(|c| {
            self.clients
                .get(*c as usize)
                .is_some_and(|cl| cl.state == CState::Waiting)
        });
        match result {
            Ok(h) => {
                let h = self.sabotage_hand_out_used(h);
                let id = h.id;
                self.check_handout(&h, since);
                if let Some(s) = self.slots.get_mut(&id) {
                    s.last_ms = Some(self.now);
                }
                self.tr(Tr::ReplyOk {
                    c: live_client,
                    id: id.0,
                });
                let Some(c) = live_client else {
                    return; // nobody is there any more: the session is an orphan
                };
                let slot = self.slots.get(&id);
                let activity = h.activity.or_else(|| slot.and_then(|s| s.activity.clone()));
                let Some(activity) = activity else {
                    self.client_error(c, "session vanished before use");
                    return;
                };
                let tree = h.tree.or_else(|| slot.and_then(|s| s.tree));
                let inc = self.inc;
                self.holders.insert(id, c);
                let cl = &mut self.clients[c as usize];
                cl.held = Some(Held {
                    inc,
                    id,
                    activity,
                    tree,
                    lease: h.lease,
                    op: None,
                });
                cl.state = CState::Thinking;
                let t = self.think_ms(c);
                self.push(self.now + t, Ev::Client(c));
            }
            Err(e) => {
                let label = err_label(&e);
                self.tr(Tr::ReplyErr {
                    c: live_client,
                    err: label,
                });
                if self.config.capacity_policy == CapacityPolicy::EvictLru
                    && matches!(
                        e,
                        AcquireError::AtCapacity { .. }
                            | AcquireError::WaitTimedOut { .. }
                            | AcquireError::QueueFull { .. }
                    )
                {
                    if let Some(idle) = self.idle_session() {
                        self.violate(
                            oracle::NO_REFUSAL_WHILE_IDLE,
                            format!("request refused ({label}) while {idle} was idle"),
                        );
                    }
                }
                if let Some(c) = live_client {
                    self.client_error(c, label);
                }
            }
        }
    }

    /// A live session with no operation in flight, idle for at least one tick.
    pub(super) fn idle_session(&self) -> Option<String> {
        for (id, s) in &self.slots {
            if !self.is_live(*id) {
                continue;
            }
            if let Some(a) = &s.activity {
                if !a.is_busy() && a.last_active().0 + self.tick_ms <= self.now {
                    return Some(format!("i{}/{id}", self.inc));
                }
            }
        }
        None
    }
}
