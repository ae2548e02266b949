//! The server: the world it starts in, starts (with the startup sweep), crashes that
//! run no destructors, and restarts.

use super::*;
use crate::world::backend::SimBackend;
use crate::world::{neighbours, Owner};
use browserpool::sweep::{instance_from, marker_name};
use browserpool::testing::startup_sweep;

impl Sim<'_> {
    // ------------------------------------------------------------------ server

    pub(super) fn setup_world(&mut self) {
        let sc = self.sc;
        let root = PathBuf::from(&sc.host.root);
        let mut w = self.w();
        let unrelated: Vec<u32> = ["systemd-journald", "sshd", "postgres", "node"]
            .into_iter()
            .filter_map(|n| w.spawn_unrelated(n).map(|p| p.0))
            .collect();
        if sc.host.neighbours {
            neighbours::place_neighbours(&mut w, &root, &sc.host.prefix);
        }
        // Legacy leftovers with stale SingletonLocks naming PIDs now of unrelated processes.
        let age =
            Duration::try_from_secs_f64(sc.host.legacy_age_hours * 3600.0).unwrap_or_default();
        let n = sc.host.legacy_leftovers;
        neighbours::place_legacy(&mut w, &root, &sc.host.prefix, n, age, &unrelated);
    }

    pub(super) fn start_server(&mut self) {
        if self.started_once {
            self.inc += 1;
        }
        self.started_once = true;
        let instance = instance_from(self.rng_server.next_u64());
        let crash_in_sweep = self.rng_server.chance(self.faults.crash_during_sweep) && !self.quiet;
        let crash_after = self.rng_server.range(0, 8) as u32;
        let pool_shell = self.opts.shell == Shell::Pool;
        let machine = if pool_shell {
            None
        } else {
            match Lifecycle::new(self.shell_config(), &instance) {
                Ok(m) => Some(m),
                Err(_) => return, // validated in Sim::new
            }
        };
        let holder = self.w().spawn_server();
        let managed = self.opts.mode == Mode::Managed;
        // The pool locks its own marker when it is built.
        if managed && !pool_shell {
            if let Some(h) = holder {
                let marker = self
                    .config
                    .root
                    .join(marker_name(&self.config.prefix, &instance));
                let inc = self.inc;
                let _ = self.w().lock_marker(&marker, h, Owner::Ours(inc));
            }
        }
        let swept = self.config.sweep_on_start;
        self.tr(Tr::Start {
            instance: instance.clone(),
            swept,
        });
        if swept && self.opts.sabotage.trust_singleton_lock {
            let root = self.config.root.clone();
            let prefix = self.config.prefix.clone();
            let mut w = self.w();
            for e in w.list_prefixed(&root, &prefix) {
                if let Some(pid) = w.singleton(&e.path) {
                    w.naive_kill(pid);
                }
            }
        }
        if swept && crash_in_sweep {
            self.w().crash_after_ops(crash_after);
        }
        let (pool, result) = if pool_shell {
            match self.start_pool(&instance) {
                Ok(run) => {
                    let report = run.sweep_report();
                    (Some(run), Some(Ok(report)))
                }
                Err(e) => (None, Some(Err(e))),
            }
        } else if swept {
            let (launcher, fs) = SimBackend::with_incarnation(self.world.clone(), self.inc);
            let r = ready(startup_sweep(&self.config, &instance, &launcher, &fs));
            (None, r)
        } else {
            (None, None)
        };
        self.w().disarm_crash();
        let crashed = self.w().crashed_midway();
        if swept {
            if let Some(Ok(report)) = &result {
                self.extras.sweep_orphans_killed += report.killed.len() as u64;
                self.coverage.sweep_orphans_killed += report.killed.len() as u64;
                self.extras.sweep_removed += report.removed.len() as u64;
                for p in &report.removed {
                    self.sweep_failed.remove(p);
                }
                if !crashed {
                    for (p, _) in &report.failed {
                        self.sweep_failed.insert(p.clone());
                    }
                }
                self.tr(Tr::Sweep {
                    removed: report.removed.len(),
                    killed: report.killed.len(),
                    skipped: report.skipped.len(),
                    failed: report.failed.len(),
                });
            }
        }
        if crashed || (pool_shell && pool.is_none()) {
            // The server died during its startup (a pool that could not even be built,
            // e.g. its marker or listing failed, counts the same).
            self.extras.crashes_during_sweep += 1;
            self.coverage.crashes_during_sweep += 1;
            self.extras.server_crashes += 1;
            self.tr(Tr::SweepCrashed);
            self.server_up = false;
            self.machine = None;
            self.w().kill_server();
            if let Some(run) = pool {
                self.close_pool(run);
            }
            self.schedule_restart();
            return;
        }
        self.sweep_complete = if swept {
            result.as_ref().is_some_and(|r| r.is_ok())
        } else {
            self.inc == 0 && self.sc.host.legacy_leftovers == 0
        };
        self.machine = machine;
        self.pool = pool;
        self.server_up = true;
        self.armed = None;
        self.slots.clear();
        self.by_tree.clear();
        self.finished.clear();
        self.holders.clear();
        self.check_clean_start();
        if self.faults.server_crash_per_day > 0.0 {
            let dt = self
                .rng_server
                .exp(86_400_000.0 / self.faults.server_crash_per_day) as u64;
            let t = self.now + dt.max(1);
            if t < self.quiet_from {
                let inc = self.inc;
                self.push(t, Ev::ServerCrash(inc));
            }
        }
    }

    pub(super) fn schedule_restart(&mut self) {
        let max = (self.faults.restart_delay_secs_max.max(1.0) * 1000.0) as u64;
        let d = self.rng_server.range(1000, max.max(1000));
        self.push(self.now + d, Ev::Restart);
    }

    /// After a start (and its sweep, if any): nothing of an earlier incarnation remains.
    pub(super) fn check_clean_start(&mut self) {
        let inc = self.inc;
        let (trees, entries): (Vec<String>, Vec<String>) = {
            let w = self.w();
            let trees = w
                .trees()
                .filter(|(_, t)| t.owner.is_ours() && t.owner != Owner::Ours(inc))
                .map(|(p, t)| format!("pgid {p} ({})", t.dir.display()))
                .collect();
            let entries = w
                .ours_entries()
                .into_iter()
                .filter(|(p, o, _)| *o != Owner::Ours(inc) && !self.sweep_failed.contains(p))
                .map(|(p, _, _)| p.display().to_string())
                .collect();
            (trees, entries)
        };
        if !trees.is_empty() || !entries.is_empty() {
            let msg = format!(
                "after start of i{inc}: {} orphan browser trees ({}) and {} entries ({}) of earlier incarnations remain",
                trees.len(),
                trees.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                entries.len(),
                entries.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            );
            self.violate(oracle::SWEEP_CLEAN, msg);
        }
    }

    pub(super) fn crash_server(&mut self) {
        let trees = self.w().ours_live().0;
        self.tr(Tr::ServerCrash { trees });
        self.extras.server_crashes += 1;
        if let Some(t) = self.shell_totals() {
            add_totals(&mut self.acc, &t);
        }
        // No destructors: the machine's state is simply gone; the pool is dropped only
        // after its server process is dead (below), so its destructors cannot act.
        self.machine = None;
        let pool = self.pool.take();
        self.slots.clear();
        self.by_tree.clear();
        self.armed = None;
        let pending: Vec<(Option<u32>, u64)> =
            std::mem::take(&mut self.tickets).into_values().collect();
        for (c, _) in pending {
            if let Some(c) = c {
                if self.clients[c as usize].state == CState::Waiting {
                    self.client_error(c, "connection reset (server crashed)");
                }
            }
        }
        for c in 0..self.clients.len() as u32 {
            if matches!(
                self.clients[c as usize].state,
                CState::Thinking | CState::InOp { .. }
            ) {
                self.client_error(c, "connection reset (server crashed)");
            }
        }
        self.server_up = false;
        let inc = self.inc;
        {
            let mut w = self.w();
            w.kill_server();
            if self.faults.kill_on_parent_death {
                let ours: Vec<(u32, u64)> = w
                    .trees()
                    .filter(|(_, t)| t.owner == Owner::Ours(inc))
                    .map(|(p, t)| (*p, t.gen))
                    .collect();
                for (p, g) in ours {
                    w.crash_tree(p, g, "killed by signal 9 (parent death)");
                }
            }
        }
        if let Some(run) = pool {
            self.close_pool(run);
        }
        self.holders.clear();
        self.schedule_restart();
    }
}
