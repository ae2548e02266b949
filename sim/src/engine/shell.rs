//! What the engine asks of the running server, whichever shell carries it out.

use super::*;

impl Sim<'_> {
    // ------------------------------------------------------------------ the shell

    /// Ask the running server for a session on behalf of client `c`.
    pub(super) fn shell_acquire(&mut self, c: u32, owner: OwnerKey) {
        let now = self.ts();
        if self.pool.is_some() {
            let req = Ticket(self.next_request);
            self.next_request += 1;
            self.tickets.insert(req, (Some(c), self.now));
            self.tr(Tr::Acquire { c, ticket: req.0 });
            self.pool_acquire(req, owner);
            return;
        }
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        let ticket = m.acquire(now, Some(owner));
        self.tickets.insert(ticket, (Some(c), self.now));
        self.tr(Tr::Acquire {
            c,
            ticket: ticket.0,
        });
        self.drain();
    }

    /// Client `c` destroys session `id`.
    pub(super) fn shell_destroy(&mut self, c: u32, id: SessionId) {
        if self.pool.is_some() {
            self.pool_destroy(c, id);
            return;
        }
        let now = self.ts();
        let r = self.machine.as_mut().map(|m| m.destroy(now, id));
        if let Some(Err(_)) = r {
            self.client_errors += 1;
            self.tr(Tr::ClientError {
                c,
                what: "destroy: session had already ended",
            });
        }
    }

    /// The server releases `owner`'s sessions after `grace`.
    pub(super) fn shell_release(&mut self, owner: &OwnerKey, grace: Duration) {
        if let Some(run) = &self.pool {
            run.release_owner(owner, grace);
            return;
        }
        let now = self.ts();
        if let Some(m) = self.machine.as_mut() {
            m.release_owner(now, owner, grace);
        }
    }

    /// Process trees counting against `max_browsers` in the running server. In the pool
    /// shell, requests still on their way to the pool count too (the engine's acquire
    /// tasks have not run yet when a burst arrives).
    pub(super) fn occupied(&self) -> usize {
        if let Some(run) = &self.pool {
            let s = run.stats();
            return (s.launching + s.live + s.stopping)
                .max(s.live + s.stopping + self.tickets.len());
        }
        self.machine.as_ref().map_or(0, |m| m.occupied())
    }

    /// Whether `id` is a live (handed-out or handable) session of the running server.
    pub(super) fn is_live(&self, id: SessionId) -> bool {
        if let Some(run) = &self.pool {
            return run.is_live(id);
        }
        self.machine
            .as_ref()
            .is_some_and(|m| m.phase(id) == Some(browserpool::Phase::Live))
    }

    /// Sessions the running server still tracks, in any phase.
    pub(super) fn tracked(&self) -> usize {
        if let Some(run) = &self.pool {
            let s = run.stats();
            return s.launching + s.live + s.stopping + s.removing;
        }
        self.machine.as_ref().map_or(0, |m| m.tracked_ids().len())
    }

    /// The running server's totals.
    pub(super) fn shell_totals(&self) -> Option<Totals> {
        if let Some(run) = &self.pool {
            return Some(run.stats().totals);
        }
        self.machine.as_ref().map(|m| m.totals().clone())
    }
}
