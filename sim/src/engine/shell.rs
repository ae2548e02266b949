//! What the engine asks of the running server, whichever shell carries it out.

use super::*;
use browserpool::{EndReason, RetireCause};

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
            return (s.launching + s.live + s.spares_ready + s.stopping)
                .max(s.live + s.spares_ready + s.stopping + self.tickets.len());
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

    /// `(others, spare_like)`: sessions the running server tracks that have nothing to do
    /// with spares, and those that do (a ready spare, a spare launch in flight, or a
    /// spare being retired after `spare_max_age`). The convergence oracle allows only
    /// the latter to remain.
    pub(super) fn spare_split(&self) -> (usize, usize) {
        let retiring =
            |r: Option<&EndReason>| matches!(r, Some(EndReason::Retired(RetireCause::SpareMaxAge)));
        if let Some(run) = &self.pool {
            let s = run.stats();
            let retiring = run
                .sessions()
                .iter()
                .filter(|i| retiring(i.ending.as_ref()))
                .count();
            let spare_like = s.spares_ready + s.spares_launching + retiring;
            let all = s.launching + s.live + s.spares_ready + s.stopping + s.removing;
            return (all - spare_like, spare_like);
        }
        let Some(m) = self.machine.as_ref() else {
            return (0, 0);
        };
        let ids = m.tracked_ids();
        let spare_like = ids
            .iter()
            .filter(|id| {
                m.is_spare(**id)
                    || (matches!(
                        m.phase(**id),
                        Some(browserpool::Phase::Stopping | browserpool::Phase::Removing)
                    ) && retiring(m.end_reason(**id)))
            })
            .count();
        (ids.len() - spare_like, spare_like)
    }

    /// Ready spares of the running server, and the gauges `spare-bound` checks:
    /// `(ready, occupied)` where occupied counts every process tree against
    /// `max_browsers` (spares included, requests on their way not).
    pub(super) fn spare_gauges(&self) -> (usize, usize) {
        if let Some(run) = &self.pool {
            let s = run.stats();
            return (
                s.spares_ready,
                s.launching + s.live + s.spares_ready + s.stopping,
            );
        }
        self.machine
            .as_ref()
            .map_or((0, 0), |m| (m.spare_ids().len(), m.occupied()))
    }

    /// The running server's totals.
    pub(super) fn shell_totals(&self) -> Option<Totals> {
        if let Some(run) = &self.pool {
            return Some(run.stats().totals);
        }
        self.machine.as_ref().map(|m| m.totals().clone())
    }
}
