//! The figures a run ends with.

use super::*;

impl Sim<'_> {
    // ------------------------------------------------------------------ results

    pub(super) fn finish(mut self) -> RunOutcome {
        if let Some(t) = self.shell_totals() {
            add_totals(&mut self.acc, &t);
        }
        self.stop_pool();
        let held: BTreeSet<(u32, u64)> = self
            .clients
            .iter()
            .filter(|c| matches!(c.state, CState::Thinking | CState::InOp { .. }))
            .filter_map(|c| c.held.as_ref())
            .filter(|h| h.inc == self.inc)
            .filter_map(|h| h.tree)
            .collect();
        let held_dirs: BTreeSet<PathBuf> = held
            .iter()
            .filter_map(|t| self.w().tree(t.0, t.1).map(|t| t.dir.clone()))
            .collect();
        let (end_browsers, end_processes, end_rss, orphaned_sessions, orphaned_dirs, counters) = {
            let w = self.w();
            let (tb, tp) = w.ours_live();
            let orphan_trees = w
                .trees()
                .filter(|(p, t)| t.owner.is_ours() && !held.contains(&(**p, t.gen)))
                .count() as u64;
            let orphan_dirs = w
                .ours_entries()
                .into_iter()
                .filter(|(p, _, k)| *k == browserpool::EntryKind::Dir && !held_dirs.contains(p))
                .count() as u64;
            (
                tb,
                tp,
                w.ours_rss(),
                orphan_trees,
                orphan_dirs,
                w.counters().clone(),
            )
        };
        let a = &self.acc;
        let report = RunReport {
            peak_browsers: counters.peak_trees,
            peak_processes: counters.peak_processes,
            peak_rss_bytes: self.peak_rss,
            peak_pss_bytes: self.mem.peak_pss,
            memory_budget_bytes: self.config.memory_budget,
            memory_ended: a.memory,
            end_browsers,
            end_processes,
            orphaned_sessions_end: orphaned_sessions,
            orphaned_dirs_end: orphaned_dirs,
            created: a.created,
            reaped: a.reaped,
            evicted: a.evicted,
            retired: a.retired,
            crashed: a.crashed,
            rejected: a.rejected,
            client_errors: self.client_errors,
            oracle_violations: oracle::ALL
                .iter()
                .filter_map(|o| self.violations.get(o).cloned())
                .collect(),
        };
        let mut extras = self.extras.clone();
        extras.end_rss_bytes = end_rss;
        extras.destroyed = a.destroyed;
        extras.owner_released = a.owner_released;
        extras.launch_failed = a.launch_failed;
        extras.kill_escalations = a.kill_escalations;
        extras.pids_reused = counters.pids_reused;
        extras.events = self.event_index;
        RunOutcome {
            mode: self.opts.mode,
            report,
            extras,
            samples: std::mem::take(&mut self.samples),
            trace: std::mem::take(&mut self.trace),
            trace_hash: self.hasher.finish(),
            failure_context: std::mem::take(&mut self.failure_context),
            coverage: Coverage {
                runs_with_spares: u64::from(self.config.spares > 0),
                ..self.coverage
            },
            faults: self.faults.clone(),
            simulated_ms: self.end_ms,
        }
    }
}

pub(super) fn add_totals(acc: &mut Totals, t: &Totals) {
    acc.created += t.created;
    acc.destroyed += t.destroyed;
    acc.reaped += t.reaped;
    acc.evicted += t.evicted;
    acc.retired += t.retired;
    acc.crashed += t.crashed;
    acc.owner_released += t.owner_released;
    acc.shutdown += t.shutdown;
    acc.abandoned += t.abandoned;
    acc.memory += t.memory;
    acc.launch_failed += t.launch_failed;
    acc.rejected += t.rejected;
    acc.wait_timeouts += t.wait_timeouts;
    acc.kill_escalations += t.kill_escalations;
    acc.kill_stuck += t.kill_stuck;
    acc.remove_failures += t.remove_failures;
    acc.dirs_recovered += t.dirs_recovered;
}
