//! The simulated operating system: a process table with small, aggressively reused PIDs
//! and process groups, Chrome-like process trees whose memory grows with age and use, an
//! in-memory filesystem with owners, symlinks and injectable errors, `flock`-style pool
//! markers that die with their holder, and neighbours that a pool must never touch.
//!
//! The world outlives every pool incarnation that runs on it: a simulated server crash
//! drops the pool's state and kills the server's process (releasing its markers), but
//! the browsers it launched and the directories it made stay, exactly as after a real
//! `SIGKILL` of the server. Nothing here runs on `Drop`.
//!
//! Every act that touches something that is not ours (a neighbour's process or
//! directory, an unrelated process, a live browser of ours reached through a stale PID)
//! is recorded in [`World::take_violations`] for the oracles.

pub mod backend;
mod fs;
pub mod neighbours;

use fs::Node;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use browserpool::{BackendError, BackendErrorKind, EntryKind, KillStage, Orphan, Timestamp};
use tokio::sync::watch;

use crate::rng::Rng;

/// Who an entity (process tree, directory, marker) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// Made by incarnation `n` of the pool under test (0 is the first start).
    Ours(u32),
    /// A leftover of ours from before the simulation (e.g. a legacy `chromelambda-<uuid>`
    /// directory): ours to clean, by nobody alive.
    Legacy,
    /// Something the pool must never kill or remove.
    Neighbour,
}

impl Owner {
    /// Whether the pool under test may clean it up.
    pub fn is_ours(self) -> bool {
        !matches!(self, Owner::Neighbour)
    }
}

/// How a simulated Chrome tree reacts to signals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KillBehaviour {
    /// Forced kills needed before the tree dies (1 = the first SIGKILL works).
    pub kills_needed: u32,
    /// Delay between the effective signal and the last process being gone.
    pub death_delay_ms: u64,
    /// Whether a graceful close is ignored.
    pub ignores_graceful: bool,
}

/// The memory model of a simulated Chrome tree:
/// `rss = base + per_day * age_in_days + per_use * uses`, capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RssModel {
    /// RSS of a freshly launched tree, in bytes.
    pub base_bytes: u64,
    /// Growth per day of age, in bytes.
    pub per_day_bytes: u64,
    /// Growth per client operation, in bytes.
    pub per_use_bytes: u64,
    /// Upper bound, in bytes.
    pub max_bytes: u64,
    /// PSS as a percentage of RSS (shared library pages are split among the processes).
    pub pss_percent: u64,
}

impl Default for RssModel {
    fn default() -> Self {
        RssModel {
            base_bytes: 300 << 20,
            per_day_bytes: 190 << 20,
            per_use_bytes: 256 << 10,
            max_bytes: 4 << 30,
            pss_percent: 65,
        }
    }
}

/// Probabilities of injected filesystem errors, drawn per operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FsFaults {
    /// `create_dir` fails with `NoSpace`.
    pub create_no_space: f64,
    /// `create_dir` fails with `PermissionDenied`.
    pub create_permission: f64,
    /// `remove_dir_all` fails with `Busy` (transient).
    pub remove_busy: f64,
    /// `remove_dir_all` fails with `PermissionDenied` (transient).
    pub remove_permission: f64,
}

/// Static parameters of a world.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldConfig {
    /// The uid the pool runs as.
    pub uid: u32,
    /// The directory under which the pool works (e.g. `/tmp`).
    pub root: PathBuf,
    /// Lowest PID handed out.
    pub pid_base: u32,
    /// Number of PIDs available (small, so PIDs are reused quickly).
    pub pid_space: u32,
    /// Memory model of Chrome trees.
    pub rss: RssModel,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            uid: 1000,
            root: PathBuf::from("/tmp"),
            pid_base: 300,
            pid_space: 4096,
            rss: RssModel::default(),
        }
    }
}

#[derive(Clone, Debug)]
enum Role {
    Tree { pgid: u32 },
    Server,
    Other { name: &'static str },
}

#[derive(Clone, Debug)]
struct ProcEntry {
    gen: u64,
    role: Role,
}

/// A live Chrome process tree (one process group).
#[derive(Debug)]
pub struct Tree {
    /// Generation of the group leader (unique for the world's lifetime).
    pub gen: u64,
    /// The `--user-data-dir` every process of the tree was started with.
    pub dir: PathBuf,
    /// Whose it is.
    pub owner: Owner,
    /// Its processes (leader first).
    pub pids: Vec<u32>,
    /// When it was launched.
    pub started: Timestamp,
    /// Client operations it served.
    pub uses: u64,
    /// How it reacts to kills.
    pub kill: KillBehaviour,
    /// Forced kills received so far.
    pub kills_received: u32,
    /// When an effective kill makes it gone.
    pub dying_at: Option<Timestamp>,
    watch: Option<watch::Sender<Option<String>>>,
}

/// What a signal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalOutcome {
    /// No process group with that id exists.
    NoSuchGroup,
    /// The tree survives this signal.
    Survives,
    /// The tree will be gone at this time (possibly now).
    DiesAt(Timestamp),
}

/// The simulated operating system. See the [module docs](self).
#[derive(Debug)]
pub struct World {
    config: WorldConfig,
    now: Timestamp,
    procs: BTreeMap<u32, ProcEntry>,
    trees: BTreeMap<u32, Tree>,
    free_pids: BTreeSet<u32>,
    high_water: u32,
    next_gen: u64,
    fs: BTreeMap<PathBuf, Node>,
    violations: Vec<String>,
    /// Faults drawn by filesystem operations.
    pub fs_faults: FsFaults,
    rng: Rng,
    /// When set, the backend-trait operations still allowed before the server process
    /// dies mid-way (models a crash during the startup sweep).
    ops_until_crash: Option<u32>,
    crashed_midway: bool,
    server: Option<(u32, u64)>,
    counters: WorldCounters,
}

/// Running counts the world keeps for reports and coverage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldCounters {
    /// PIDs handed out again after an earlier owner exited.
    pub pids_reused: u64,
    /// Orphan trees killed through `kill_orphan` (sweeps).
    pub orphans_killed: u64,
    /// `kill_orphan` calls refused because the proof no longer held.
    pub orphan_proofs_failed: u64,
    /// Peak number of live trees of ours.
    pub peak_trees: u64,
    /// Peak number of live Chrome processes of ours.
    pub peak_processes: u64,
    /// Trees launched.
    pub trees_launched: u64,
}

fn err(op: &'static str, kind: BackendErrorKind, msg: &str, path: &Path) -> BackendError {
    BackendError::new(op, kind, msg).at(path)
}

impl World {
    /// An empty world (no neighbours) with `seed` driving its own fault draws.
    pub fn new(config: WorldConfig, seed: u64) -> Self {
        let free_pids = (config.pid_base..config.pid_base + config.pid_space).collect();
        let mut w = World {
            now: Timestamp::ZERO,
            procs: BTreeMap::new(),
            trees: BTreeMap::new(),
            free_pids,
            high_water: 0,
            next_gen: 1,
            fs: BTreeMap::new(),
            violations: Vec::new(),
            fs_faults: FsFaults::default(),
            rng: Rng::derive(seed, 0x5749_4f52_4c44, 0),
            ops_until_crash: None,
            crashed_midway: false,
            server: None,
            counters: WorldCounters::default(),
            config,
        };
        let root = w.config.root.clone();
        w.fs.insert(root, Node::new(EntryKind::Dir, 0, Owner::Neighbour, 0));
        w
    }

    /// The world's parameters.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Simulated time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Move simulated time forward (never backwards).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
    }

    /// Counters for reports.
    pub fn counters(&self) -> &WorldCounters {
        &self.counters
    }

    /// Acts on things that were not ours since the last call (oracle input).
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
    }

    /// Whether any violation is pending.
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }

    // ------------------------------------------------------------ processes

    fn alloc_pid(&mut self, gen: u64, role: Role) -> Option<u32> {
        let pid = self.free_pids.pop_first()?;
        if pid < self.high_water {
            self.counters.pids_reused += 1;
        }
        self.high_water = self.high_water.max(pid + 1);
        self.procs.insert(pid, ProcEntry { gen, role });
        Some(pid)
    }

    fn free_pid(&mut self, pid: u32) {
        if self.procs.remove(&pid).is_some() {
            self.free_pids.insert(pid);
        }
    }

    fn fresh_gen(&mut self) -> u64 {
        let g = self.next_gen;
        self.next_gen += 1;
        g
    }

    /// Start a server process (the host of one pool incarnation). Returns (pid, gen).
    pub fn spawn_server(&mut self) -> Option<(u32, u64)> {
        let gen = self.fresh_gen();
        let pid = self.alloc_pid(gen, Role::Server)?;
        self.server = Some((pid, gen));
        self.crashed_midway = false;
        self.ops_until_crash = None;
        Some((pid, gen))
    }

    /// The current server process, if one is running.
    pub fn server(&self) -> Option<(u32, u64)> {
        self.server
    }

    /// The server process dies (however: crash, OOM, SIGKILL). Its marker locks are
    /// released by the "OS"; nothing else happens (no destructors run).
    pub fn kill_server(&mut self) {
        if let Some((pid, gen)) = self.server.take() {
            self.free_pid(pid);
            for node in self.fs.values_mut() {
                if node.lock == Some((pid, gen)) {
                    node.lock = None;
                }
            }
        }
    }

    /// Start an unrelated process (not ours, never to be signalled). Returns (pid, gen).
    pub fn spawn_unrelated(&mut self, name: &'static str) -> Option<(u32, u64)> {
        let gen = self.fresh_gen();
        self.alloc_pid(gen, Role::Other { name }).map(|p| (p, gen))
    }

    /// Disarm a crash armed by [`World::crash_after_ops`] that has not happened.
    pub fn disarm_crash(&mut self) {
        self.ops_until_crash = None;
    }

    /// Start a Chrome-like tree of `nprocs` processes in one process group, all started
    /// with `--user-data-dir=dir`, and write the leader's PID into `dir/SingletonLock`.
    /// Returns (pgid, generation of the leader).
    pub fn spawn_tree(
        &mut self,
        dir: &Path,
        owner: Owner,
        nprocs: u32,
        kill: KillBehaviour,
    ) -> Result<(u32, u64), BackendError> {
        if (self.free_pids.len() as u32) < nprocs.max(1) {
            return Err(err(
                "launch",
                BackendErrorKind::Launch,
                "fork: Resource temporarily unavailable (pid space exhausted)",
                dir,
            ));
        }
        let gen = self.fresh_gen();
        let mut pids = Vec::with_capacity(nprocs as usize);
        let leader = self
            .alloc_pid(gen, Role::Tree { pgid: 0 })
            .ok_or_else(|| err("launch", BackendErrorKind::Launch, "no pid", dir))?;
        if let Some(e) = self.procs.get_mut(&leader) {
            e.role = Role::Tree { pgid: leader };
        }
        pids.push(leader);
        for _ in 1..nprocs.max(1) {
            let g = self.fresh_gen();
            if let Some(p) = self.alloc_pid(g, Role::Tree { pgid: leader }) {
                pids.push(p);
            }
        }
        let now = self.now.0 as i64;
        if let Some(n) = self.fs.get_mut(dir) {
            n.singleton_pid = Some(leader);
            n.modified_ms = now;
        }
        self.trees.insert(
            leader,
            Tree {
                gen,
                dir: dir.to_owned(),
                owner,
                pids,
                started: self.now,
                uses: 0,
                kill,
                kills_received: 0,
                dying_at: None,
                watch: None,
            },
        );
        if owner.is_ours() {
            self.counters.trees_launched += 1;
            let (t, p) = self.ours_live();
            self.counters.peak_trees = self.counters.peak_trees.max(t);
            self.counters.peak_processes = self.counters.peak_processes.max(p);
        }
        Ok((leader, gen))
    }

    /// Subscribe to the exit of tree `(pgid, gen)`: the receiver holds `Some(how)` once it
    /// is gone. `None` if that tree is already gone.
    pub fn watch_tree(&mut self, pgid: u32, gen: u64) -> Option<watch::Receiver<Option<String>>> {
        let t = self.trees.get_mut(&pgid).filter(|t| t.gen == gen)?;
        let tx = t.watch.get_or_insert_with(|| watch::channel(None).0);
        Some(tx.subscribe())
    }

    /// Whether tree `(pgid, gen)` still has a live process.
    pub fn tree_alive(&self, pgid: u32, gen: u64) -> bool {
        self.trees.get(&pgid).is_some_and(|t| t.gen == gen)
    }

    /// The live tree `(pgid, gen)`.
    pub fn tree(&self, pgid: u32, gen: u64) -> Option<&Tree> {
        self.trees.get(&pgid).filter(|t| t.gen == gen)
    }

    /// Every live tree, by pgid.
    pub fn trees(&self) -> impl Iterator<Item = (&u32, &Tree)> {
        self.trees.iter()
    }

    /// Count a client operation against tree `(pgid, gen)` (memory grows with use).
    pub fn tree_used(&mut self, pgid: u32, gen: u64) {
        if let Some(t) = self.trees.get_mut(&pgid).filter(|t| t.gen == gen) {
            t.uses += 1;
        }
    }

    /// Remove every process of tree `pgid` from the table and notify watchers.
    fn reap_tree(&mut self, pgid: u32, how: &str) {
        if let Some(t) = self.trees.remove(&pgid) {
            for p in &t.pids {
                self.free_pid(*p);
            }
            if let Some(tx) = t.watch {
                let _ = tx.send(Some(how.to_owned()));
            }
        }
    }

    /// The tree exits by itself (crash, OOM kill). No-op if it is already gone.
    pub fn crash_tree(&mut self, pgid: u32, gen: u64, how: &str) -> bool {
        if self.tree_alive(pgid, gen) {
            self.reap_tree(pgid, how);
            true
        } else {
            false
        }
    }

    /// Complete a death scheduled by an effective kill, if it is due. Returns whether
    /// the tree is gone now.
    pub fn complete_death(&mut self, pgid: u32, gen: u64) -> bool {
        let due = match self.trees.get(&pgid).filter(|t| t.gen == gen) {
            None => return true,
            Some(t) => t.dying_at.is_some_and(|d| d <= self.now),
        };
        if due {
            self.reap_tree(pgid, "killed by signal 9");
        }
        due
    }

    /// When tree `(pgid, gen)` will be gone after an effective kill, if it is alive and
    /// dying.
    pub fn dying_at(&self, pgid: u32, gen: u64) -> Option<Timestamp> {
        self.tree(pgid, gen).and_then(|t| t.dying_at)
    }

    /// Complete every death scheduled by an effective kill that is due by now (for drivers
    /// that do not schedule an event per death). Returns how many trees died.
    pub fn complete_due_deaths(&mut self) -> usize {
        let now = self.now;
        let due: Vec<u32> = self
            .trees
            .iter()
            .filter(|(_, t)| t.dying_at.is_some_and(|d| d <= now))
            .map(|(p, _)| *p)
            .collect();
        for p in &due {
            self.reap_tree(*p, "killed by signal 9");
        }
        due.len()
    }

    /// Send `stage` to process group `pgid`, as `kill(-pgid, sig)` would: whatever group
    /// has that id now receives it. `expected_gen` is the leader generation the caller
    /// believes it is signalling; a mismatch (a reused PID) or a group that is not ours is
    /// recorded as a violation, and the signal is still delivered, as on a real OS.
    pub fn signal_group(
        &mut self,
        pgid: u32,
        expected_gen: u64,
        stage: KillStage,
    ) -> SignalOutcome {
        let now = self.now;
        let Some(t) = self.trees.get_mut(&pgid) else {
            if let Some(p) = self.procs.get(&pgid) {
                let what = match &p.role {
                    Role::Server => "a server process".to_owned(),
                    Role::Other { name } => format!("unrelated process {name:?}"),
                    Role::Tree { pgid: leader } => format!("a process of tree {leader}"),
                };
                self.violations.push(format!(
                    "signalled pgid {pgid}, which is now {what} (stale pid)"
                ));
            }
            return SignalOutcome::NoSuchGroup;
        };
        if t.gen != expected_gen {
            self.violations.push(format!(
                "stale kill: pgid {pgid} was reused; signalled tree gen {} ({}) instead of gen {expected_gen}",
                t.gen,
                t.dir.display()
            ));
        }
        if t.owner == Owner::Neighbour {
            self.violations.push(format!(
                "killed a neighbour's browser (pgid {pgid}, {})",
                t.dir.display()
            ));
        }
        let effective = match stage {
            KillStage::Graceful => !t.kill.ignores_graceful,
            KillStage::Force => {
                t.kills_received += 1;
                t.kills_received >= t.kill.kills_needed.max(1)
            }
        };
        if !effective {
            return match t.dying_at {
                Some(d) => SignalOutcome::DiesAt(d),
                None => SignalOutcome::Survives,
            };
        }
        let at = now.saturating_add(std::time::Duration::from_millis(t.kill.death_delay_ms));
        let at = t.dying_at.map_or(at, |d| d.min(at));
        t.dying_at = Some(at);
        if at <= now {
            self.reap_tree(pgid, "killed by signal 9");
        }
        SignalOutcome::DiesAt(at)
    }

    /// `kill -9 -<pid>` trusting a PID alone (what a naive sweep does with the PID in a
    /// stale `SingletonLock`). Whatever group has that id now dies; if it is not a tree
    /// led by `pid`, or not ours, that is recorded as a violation.
    pub fn naive_kill(&mut self, pid: u32) {
        match self.trees.get(&pid).map(|t| (t.gen, t.owner)) {
            Some((gen, owner)) if owner.is_ours() => {
                // Right by luck: it is one of our trees.
                self.signal_group(pid, gen, KillStage::Force);
            }
            Some(_) => {
                self.signal_group(pid, 0, KillStage::Force);
            }
            None => {
                if self.procs.contains_key(&pid) {
                    self.signal_group(pid, 0, KillStage::Force);
                }
            }
        }
    }

    /// Processes proven to use `dir`: the leader of every live tree started with
    /// `--user-data-dir=dir`. Never by PID alone (SingletonLock contents may be stale).
    pub fn find_orphans(&self, dir: &Path) -> Vec<Orphan> {
        self.trees
            .iter()
            .filter(|(_, t)| t.dir == dir)
            .map(|(pgid, t)| Orphan {
                pid: *pgid,
                dir: dir.to_owned(),
                proof: format!(
                    "pid {pgid} (gen {}) has --user-data-dir={}",
                    t.gen,
                    dir.display()
                ),
            })
            .collect()
    }

    /// Kill an orphan after re-checking its proof. The sweep's wait is bounded by the
    /// backend; here the tree is gone at once. `Ok(false)` if the proof no longer holds.
    pub fn kill_orphan(&mut self, orphan: &Orphan) -> bool {
        let holds = self
            .trees
            .get(&orphan.pid)
            .is_some_and(|t| t.dir == orphan.dir);
        if !holds {
            self.counters.orphan_proofs_failed += 1;
            return false;
        }
        if let Some(t) = self.trees.get(&orphan.pid) {
            if t.owner == Owner::Neighbour {
                self.violations.push(format!(
                    "sweep killed a neighbour's browser (pgid {}, {})",
                    orphan.pid,
                    t.dir.display()
                ));
            }
        }
        self.reap_tree(orphan.pid, "killed by signal 9 (sweep)");
        self.counters.orphans_killed += 1;
        true
    }

    /// Live trees and Chrome processes of ours (any incarnation, legacy included).
    pub fn ours_live(&self) -> (u64, u64) {
        let mut trees = 0;
        let mut procs = 0;
        for t in self.trees.values() {
            if t.owner.is_ours() {
                trees += 1;
                procs += t.pids.len() as u64;
            }
        }
        (trees, procs)
    }

    /// RSS of one tree now, by the world's memory model.
    pub fn tree_rss(&self, t: &Tree) -> u64 {
        let m = &self.config.rss;
        let age_ms = self.now.0.saturating_sub(t.started.0);
        let grown = (m.per_day_bytes as u128 * age_ms as u128 / 86_400_000) as u64;
        m.base_bytes
            .saturating_add(grown)
            .saturating_add(m.per_use_bytes.saturating_mul(t.uses))
            .min(m.max_bytes)
    }

    /// PSS of a tree now: [`RssModel::pss_percent`] of its RSS.
    pub fn tree_pss(&self, t: &Tree) -> u64 {
        (u128::from(self.tree_rss(t)) * u128::from(self.config.rss.pss_percent) / 100) as u64
    }

    /// What a backend's `memory` reports for a tree now (the one place both shells read
    /// a tree's memory from).
    pub fn tree_memory(&self, t: &Tree) -> browserpool::MemoryUsage {
        browserpool::MemoryUsage {
            rss_bytes: self.tree_rss(t),
            pss_bytes: self.tree_pss(t),
            processes: t.pids.len() as u32,
        }
    }

    /// Total PSS of our live trees now.
    pub fn ours_pss(&self) -> u64 {
        self.trees
            .values()
            .filter(|t| t.owner.is_ours())
            .map(|t| self.tree_pss(t))
            .sum()
    }

    /// Total RSS of our live trees now.
    pub fn ours_rss(&self) -> u64 {
        self.trees
            .values()
            .filter(|t| t.owner.is_ours())
            .map(|t| self.tree_rss(t))
            .sum()
    }

    // ------------------------------------------------------------ filesystem

    /// Arm a crash of the server after `n` more backend operations (a crash during the
    /// startup sweep). The operations after that fail without effect.
    pub fn crash_after_ops(&mut self, n: u32) {
        self.ops_until_crash = Some(n);
    }

    /// Whether an armed mid-way crash has happened.
    pub fn crashed_midway(&self) -> bool {
        self.crashed_midway
    }

    /// Count one backend operation against an armed mid-way crash. Returns an error if
    /// the server is dead by now.
    pub fn backend_op(&mut self, op: &'static str) -> Result<(), BackendError> {
        if let Some(n) = self.ops_until_crash.as_mut() {
            if *n == 0 {
                if !self.crashed_midway {
                    self.crashed_midway = true;
                    self.kill_server();
                }
                return Err(BackendError::new(
                    op,
                    BackendErrorKind::Other,
                    "the server process died",
                ));
            }
            *n -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use browserpool::MarkerState;

    fn world() -> World {
        World::new(WorldConfig::default(), 1)
    }

    #[test]
    fn pids_are_reused_lowest_first() {
        let mut w = world();
        let d = Path::new("/tmp/x-1");
        let (a, ga) = w
            .spawn_tree(d, Owner::Ours(0), 10, KillBehaviour::default())
            .unwrap();
        assert_eq!(a, 300);
        assert!(w.crash_tree(a, ga, "crash"));
        let (b, gb) = w
            .spawn_tree(d, Owner::Ours(0), 10, KillBehaviour::default())
            .unwrap();
        assert_eq!(b, a, "the lowest free pid is handed out again");
        assert_ne!(ga, gb);
        assert!(w.counters().pids_reused > 0);
        // A kill aimed at the old generation hits the new tree and is reported.
        w.signal_group(a, ga, KillStage::Force);
        assert!(w.take_violations()[0].contains("stale kill"));
    }

    #[test]
    fn markers_die_with_their_holder() {
        let mut w = world();
        let m = Path::new("/tmp/bp-000000000001.lock");
        let holder = w.spawn_server().unwrap();
        w.lock_marker(m, holder, Owner::Ours(0)).unwrap();
        assert_eq!(w.probe_marker(m).unwrap(), MarkerState::Live);
        let other = w.spawn_unrelated("other").unwrap();
        assert!(w.lock_marker(m, other, Owner::Ours(0)).is_err());
        w.kill_server();
        assert_eq!(w.probe_marker(m).unwrap(), MarkerState::Dead);
    }

    #[test]
    fn escalation_and_slow_death() {
        let mut w = world();
        let d = Path::new("/tmp/x-2");
        let kb = KillBehaviour {
            kills_needed: 2,
            death_delay_ms: 500,
            ignores_graceful: true,
        };
        let (p, g) = w.spawn_tree(d, Owner::Ours(0), 12, kb).unwrap();
        assert_eq!(
            w.signal_group(p, g, KillStage::Graceful),
            SignalOutcome::Survives
        );
        assert_eq!(
            w.signal_group(p, g, KillStage::Force),
            SignalOutcome::Survives
        );
        assert_eq!(
            w.signal_group(p, g, KillStage::Force),
            SignalOutcome::DiesAt(Timestamp(500))
        );
        assert!(!w.complete_death(p, g));
        w.set_now(Timestamp(500));
        assert!(w.complete_death(p, g));
        assert!(!w.tree_alive(p, g));
        assert!(!w.has_violations());
    }

    #[test]
    fn removal_never_follows_symlinks_and_reports_foreign_entries() {
        let mut w = world();
        let link = Path::new("/tmp/bp-link");
        w.place(link, EntryKind::Symlink, 1000, Owner::Neighbour);
        let listed = w.list_prefixed(Path::new("/tmp"), "bp-");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].kind, EntryKind::Symlink);
        w.remove_dir_all(link).unwrap();
        assert!(!w.exists(link));
        assert!(w.take_violations()[0].contains("not ours"));
        // Missing is success.
        w.remove_dir_all(Path::new("/tmp/bp-nothing")).unwrap();
    }
}
