//! The memory budget in the simulation: the machine shell's sampling rounds (the pool
//! shell's production `Pool` samples by itself), and the `memory-budget` oracle, judged
//! from the world's own figures.

use super::*;
use crate::world::Owner;
use browserpool::{Input, MemoryUsage};

/// What the engine tracks for the memory oracle.
#[derive(Debug, Default)]
pub(super) struct MemoryWatch {
    /// Sessions of an incarnation whose teardown began (`Action::Ending`): their memory
    /// is on its way out and no longer counts against the budget.
    ended: BTreeSet<(u32, SessionId)>,
    /// Highest summed PSS of our browsers seen at a 10-minute sample, bytes.
    pub(super) peak_pss: u64,
}

impl MemoryWatch {
    /// `id` of incarnation `inc` began its teardown.
    pub(super) fn ending(&mut self, inc: u32, id: SessionId) {
        self.ended.insert((inc, id));
    }

    /// `id` of incarnation `inc` finished its teardown (its tree is gone).
    pub(super) fn finished(&mut self, inc: u32, id: SessionId) {
        self.ended.remove(&(inc, id));
    }
}

impl Sim<'_> {
    /// Whether the run's pool has a memory limit (so it samples, and the oracle runs).
    pub(super) fn memory_limited(&self) -> bool {
        self.config.memory_budget.is_some() || self.config.max_session_memory.is_some()
    }

    /// The configuration the shell builds its pool or machine with: the scenario's,
    /// unless the `memory_budget_dropped` sabotage removes the budget.
    pub(super) fn shell_config(&self) -> PoolConfig {
        let mut c = self.config.clone();
        if self.opts.sabotage.memory_budget_dropped {
            c.memory_budget = None;
        }
        c
    }

    /// Schedule the machine shell's first sampling round (the pool shell's pool runs its
    /// own sampler).
    pub(super) fn start_memory_rounds(&mut self) {
        if self.memory_limited() && self.opts.shell == Shell::Machine {
            let at = ms(self.config.memory_interval);
            self.push(at, Ev::Memory);
        }
    }

    /// One sampling round of the machine shell: measure every live tree of the current
    /// incarnation's sessions as the simulated backend would, and feed the figures.
    pub(super) fn memory_round(&mut self) {
        let next = self.now + ms(self.config.memory_interval).max(1);
        if next <= self.end_ms {
            self.push(next, Ev::Memory);
        }
        if !self.server_up || self.machine.is_none() {
            return;
        }
        let samples: Vec<(SessionId, MemoryUsage)> = {
            let w = self.w();
            self.slots
                .iter()
                .filter_map(|(id, s)| {
                    let (p, g) = s.tree?;
                    let t = w
                        .tree(p, g)
                        .filter(|t| w.tree_alive(p, g) && t.owner == Owner::Ours(self.inc))?;
                    Some((*id, w.tree_memory(t)))
                })
                .collect()
        };
        self.machine_feed(Input::Memory { samples });
    }

    /// The `memory-budget` oracle: the summed PSS of the current pool's browsers that are
    /// not being torn down stays within `memory_budget` plus the growth one sampling
    /// interval (and a tick) allows, unless at most one session holds it, or no session
    /// has been idle for a whole interval and a tick (the pool evicts only idle ones, at
    /// its next sampling round).
    pub(super) fn check_memory_budget(&mut self) {
        let Some(budget) = self.config.memory_budget else {
            return;
        };
        let window_ms = ms(self.config.memory_interval + self.config.tick);
        let inc = self.inc;
        let (sum, holders, idle_too_long) = {
            let w = self.w();
            let mut sum = 0u64;
            let mut holders = 0u64;
            let mut idle_too_long = None;
            for (id, s) in &self.slots {
                if self.mem.ended.contains(&(inc, *id)) {
                    continue;
                }
                let Some((p, g)) = s.tree else { continue };
                let Some(t) = w.tree(p, g) else { continue };
                if !w.tree_alive(p, g) || t.owner != Owner::Ours(inc) {
                    continue;
                }
                sum += w.tree_pss(t);
                holders += 1;
                let (busy, last) = match (s.last_ms, &s.activity) {
                    (Some(last), _) => (s.in_op, last),
                    (None, Some(a)) => (a.is_busy(), a.last_active().0),
                    (None, None) => continue,
                };
                if !busy && self.now > last + window_ms && idle_too_long.is_none() {
                    idle_too_long = Some((*id, self.now - last));
                }
            }
            (sum, holders, idle_too_long)
        };
        let bound = budget.saturating_add(holders.saturating_mul(self.growth_allowance()));
        if sum <= bound || holders <= 1 {
            return;
        }
        if let Some((id, idle)) = idle_too_long {
            self.violate(
                oracle::MEMORY_BUDGET,
                format!(
                    "{} MiB of PSS in {holders} browsers > budget {} MiB + one interval's growth ({} MiB), while session i{inc}/{id} has been idle for {}",
                    sum >> 20,
                    budget >> 20,
                    (bound - budget) >> 20,
                    super::trace::fmt_time(idle)
                ),
            );
        }
    }

    /// How much one browser's PSS can grow in a sampling interval plus a tick: its
    /// per-day growth over that time, and its per-operation growth for as many operations
    /// as a client can start in it (one per `op_secs_min + think_secs_min`, plus one).
    fn growth_allowance(&self) -> u64 {
        let window_ms = ms(self.config.memory_interval + self.config.tick);
        let wl = &self.sc.workload;
        let cycle_ms = (((wl.op_secs_min + wl.think_secs_min) * 1000.0) as u64).max(1);
        let ops = window_ms / cycle_ms + 1;
        let h = &self.sc.host;
        let per_day =
            (u128::from(h.rss_per_day_mib << 20) * u128::from(window_ms) / 86_400_000) as u64;
        let rss = per_day.saturating_add(ops.saturating_mul(h.rss_per_op_kib << 10));
        rss.saturating_mul(h.pss_percent) / 100
    }
}
