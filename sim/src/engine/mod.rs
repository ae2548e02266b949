//! The discrete-event engine: it jumps from event to event, so simulated time costs
//! nothing while nothing happens.
//!
//! The workload (arrivals, clients, server crashes and restarts), the world and the
//! oracles are the same for two shells around the core's [`Lifecycle`]
//! ([`RunOptions::shell`]):
//!
//! - [`Shell::Machine`] (`machine_shell`): the engine drives the pure machine directly:
//!   every command and input is fed with the simulated time, every [`Action`] is carried
//!   out against the simulated [`World`] with drawn latencies, and `poll_timeout()` is
//!   scheduled as an event. Fast: the 15-day replay takes milliseconds.
//! - [`Shell::Pool`] (`pool_shell`): the production async [`browserpool::Pool`], with
//!   its reaper, supervised tasks, leases and Drop path, on a current-thread tokio runtime
//!   with paused time, over the world through `SimBackend`. Bugs in the shell the
//!   servers actually run are visible to the same oracles.
//!
//! A server crash drops the shell's state without running any cleanup (for the pool: its
//! backend is severed when the server process dies, so its destructors can no longer
//! act); a restart builds a new one with a new instance id over the same world and runs
//! the production [`startup_sweep`] on the simulated backend.
//!
//! Events are ordered by (simulated millisecond, sequence number); every random choice
//! comes from the seeded [`Rng`] streams; no wall clock, no hash-order iteration, and in
//! the pool shell every `select!` is `biased`. The same scenario, seed and shell always
//! give the same trace, byte for byte.

mod clients;
mod machine_shell;
mod memory;
mod oracles;
mod pool_shell;
mod results;
mod server;
mod shell;
mod trace;

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[cfg(doc)]
use browserpool::testing::startup_sweep;
#[cfg(doc)]
use browserpool::Action;
use browserpool::{
    AcquireError, ActivityRef, ConfigError, Lease, Lifecycle, OwnedOpGuard, OwnerKey, PoolConfig,
    SessionId, Ticket, Timestamp, Totals,
};

use crate::oracle::{self, Violation};
use crate::report::{RunExtras, RunReport};
use crate::rng::Rng;
use crate::scenario::{Faults, PoolSpec, Scenario};
use crate::world::backend::{LaunchPlan, PlannedLaunch, SimLauncher};
use crate::world::{KillBehaviour, RssModel, World, WorldConfig};
use pool_shell::PoolRun;
use results::add_totals;
use trace::{Fnv, Line, Tr};

/// Which pool a run simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// The old behaviour (the scenario's `[unmanaged]` spec: by default no reaper, no
    /// sweep, no owner release, reject at capacity, no marker).
    Unmanaged,
    /// browserpool (the scenario's `[managed]` spec).
    Managed,
}

impl Mode {
    /// `"unmanaged"` or `"managed"`.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Unmanaged => "unmanaged",
            Mode::Managed => "managed",
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario's pool configuration is invalid.
    #[error("the {mode} pool's configuration is invalid: {source}")]
    Config {
        /// Which pool.
        mode: &'static str,
        /// The core's complaint.
        source: ConfigError,
    },
}

/// Which shell carries out the machine's decisions in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shell {
    /// The engine drives the pure `Lifecycle` itself (fast; the default).
    #[default]
    Machine,
    /// The production async `Pool`, on a paused current-thread tokio runtime over the
    /// simulated backend.
    Pool,
}

impl Shell {
    /// `"machine"` or `"pool"`.
    pub fn label(self) -> &'static str {
        match self {
            Shell::Machine => "machine",
            Shell::Pool => "pool",
        }
    }
}

impl std::str::FromStr for Shell {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "machine" => Ok(Shell::Machine),
            "pool" => Ok(Shell::Pool),
            other => Err(format!(
                "unknown shell {other:?}: use \"machine\" (the engine drives the Lifecycle) or \"pool\" (the production Pool)"
            )),
        }
    }
}

/// Options of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Which pool.
    pub mode: Mode,
    /// Which shell.
    pub shell: Shell,
    /// Keep every trace line (for determinism tests and snapshots); otherwise only a
    /// rolling hash and the last lines are kept.
    pub full_trace: bool,
    /// Deliberate bugs in the shell around the machine, to prove the oracles catch them.
    pub sabotage: Sabotage,
}

impl RunOptions {
    /// A run of `mode` on the machine shell, without a full trace and without sabotage.
    pub fn new(mode: Mode) -> Self {
        RunOptions {
            mode,
            shell: Shell::Machine,
            full_trace: false,
            sabotage: Sabotage::default(),
        }
    }

    /// The same on `shell`.
    pub fn on(self, shell: Shell) -> Self {
        RunOptions { shell, ..self }
    }
}

/// Deliberately broken shell behaviours (all off by default). Each models a bug a real
/// shell around the `Lifecycle` could have; the oracle tests switch one on and assert
/// that an oracle fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Report `Gone` right after sending a kill, without waiting for the tree to die.
    pub premature_gone: bool,
    /// Never signal anything on a kill (`Ending`'s first one or a `Kill`), but report
    /// `Gone`.
    pub kill_does_nothing: bool,
    /// Before the real startup sweep, kill whatever PID each prefixed directory's
    /// `SingletonLock` names (trusting a PID alone).
    pub trust_singleton_lock: bool,
    /// Lose every successful reply (the client waits forever).
    pub lose_replies: bool,
    /// Refuse a request at once whenever the pool is full, instead of asking the machine
    /// (which would evict).
    pub refuse_when_full: bool,
    /// Clients stamp activity around their operations but do not mark them in flight
    /// (`touch` instead of `begin_op`): a long operation looks idle to the pool.
    pub ops_not_marked: bool,
    /// Hand a used browser out again: a successful reply names the most recently
    /// handed-out session that is still live instead of the pool's answer (what
    /// browserless v1's keep-alive did with used browsers).
    pub hand_out_used: bool,
    /// Build the pool without its `memory_budget` (a server that drops the setting),
    /// while the oracles still judge against the scenario's budget.
    pub memory_budget_dropped: bool,
}

/// One point of the resource curve (every 10 simulated minutes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Simulated time, ms.
    pub t_ms: u64,
    /// Live browser trees of ours.
    pub browsers: u64,
    /// Live Chrome processes of ours.
    pub processes: u64,
    /// Their total RSS, bytes.
    pub rss_bytes: u64,
    /// Their total PSS, bytes.
    pub pss_bytes: u64,
}

/// Interesting events that a sweep batch must have exercised at least once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Idle reaps.
    pub idle_reaps: u64,
    /// LRU evictions.
    pub evictions: u64,
    /// Kill escalations.
    pub kill_escalations: u64,
    /// Orphans killed by a startup sweep.
    pub sweep_orphans_killed: u64,
    /// Crashes in the middle of a startup sweep.
    pub crashes_during_sweep: u64,
    /// Sessions released after their owner disconnected.
    pub owner_releases: u64,
    /// Hand-outs of a browser launched before its request came (a prewarmed spare).
    pub spare_handouts: u64,
    /// Runs whose managed pool keeps spares (`spare_handouts` is expected only then).
    pub runs_with_spares: u64,
}

impl Coverage {
    /// Add another run's counts.
    pub fn add(&mut self, o: &Coverage) {
        self.idle_reaps += o.idle_reaps;
        self.evictions += o.evictions;
        self.kill_escalations += o.kill_escalations;
        self.sweep_orphans_killed += o.sweep_orphans_killed;
        self.crashes_during_sweep += o.crashes_during_sweep;
        self.owner_releases += o.owner_releases;
        self.spare_handouts += o.spare_handouts;
        self.runs_with_spares += o.runs_with_spares;
    }

    /// Names of the interesting events that never happened.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (n, c) in [
            ("idle reap", self.idle_reaps),
            ("LRU eviction", self.evictions),
            ("kill escalation", self.kill_escalations),
            ("orphan killed by a sweep", self.sweep_orphans_killed),
            ("crash during a sweep", self.crashes_during_sweep),
            ("owner release", self.owner_releases),
            ("spare hand-out", self.spare_handouts),
        ] {
            if c == 0 && (n != "spare hand-out" || self.runs_with_spares > 0) {
                v.push(n);
            }
        }
        v
    }
}

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Which pool.
    pub mode: Mode,
    /// The JSON figures.
    pub report: RunReport,
    /// Table-only figures.
    pub extras: RunExtras,
    /// The resource curve.
    pub samples: Vec<Sample>,
    /// Every trace line, if [`RunOptions::full_trace`].
    pub trace: Vec<String>,
    /// FNV-1a hash of the whole trace (always computed).
    pub trace_hash: u64,
    /// The trace lines before the first violation, if any.
    pub failure_context: Vec<String>,
    /// Coverage counts.
    pub coverage: Coverage,
    /// The swarm draw of faults for this seed.
    pub faults: Faults,
    /// Simulated length, ms.
    pub simulated_ms: u64,
}

/// Both pools on the same seeded traffic.
#[derive(Clone, Debug)]
pub struct PairOutcome {
    /// The old behaviour.
    pub unmanaged: RunOutcome,
    /// browserpool.
    pub managed: RunOutcome,
    /// Wall time of both runs.
    pub wall: Duration,
}

/// Run both pools on `scenario` with `seed` on the machine shell (traces not kept).
pub fn run_pair(scenario: &Scenario, seed: u64) -> Result<PairOutcome, SimError> {
    run_pair_on(scenario, seed, Shell::Machine)
}

/// Run both pools on `scenario` with `seed` on `shell` (traces not kept).
pub fn run_pair_on(scenario: &Scenario, seed: u64, shell: Shell) -> Result<PairOutcome, SimError> {
    let start = Instant::now();
    let unmanaged = run(scenario, seed, RunOptions::new(Mode::Unmanaged).on(shell))?;
    let managed = run(scenario, seed, RunOptions::new(Mode::Managed).on(shell))?;
    Ok(PairOutcome {
        unmanaged,
        managed,
        wall: start.elapsed(),
    })
}

/// Run one pool on `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64, opts: RunOptions) -> Result<RunOutcome, SimError> {
    let mut sim = Sim::new(scenario, seed, opts)?;
    sim.run();
    Ok(sim.finish())
}

/// Poll a future that is known never to wait (every simulated backend call resolves at
/// once). Returns `None` if it did wait, which would be an engine bug.
fn ready<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

// ---------------------------------------------------------------------------- events

#[derive(Clone, Debug)]
enum LaunchOutcome {
    Ok,
    Fail,
    Hang,
    NoDir(browserpool::BackendError),
}

#[derive(Clone, Debug)]
enum Ev {
    Arrival,
    Burst,
    Client(u32),
    LaunchDone {
        inc: u32,
        id: SessionId,
        tree: Option<(u32, u64)>,
        outcome: LaunchOutcome,
    },
    KillCheck {
        inc: u32,
        id: SessionId,
        tree: Option<(u32, u64)>,
        attempt: u32,
    },
    TreeDeath(u32, u64),
    TreeCrash(u32, u64),
    Timeout(u32),
    ServerCrash(u32),
    Restart,
    Sample,
    /// Machine shell: a memory sampling round.
    Memory,
    Quiet,
    Converge,
    End,
}

struct Event {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        // BinaryHeap is a max-heap: reverse for earliest first.
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

// ---------------------------------------------------------------------------- state

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Destroy,
    Crash,
    Disconnect,
    Forget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Waiting,
    Thinking,
    InOp { long: bool },
    Done,
}

struct Held {
    inc: u32,
    id: SessionId,
    activity: ActivityRef,
    tree: Option<(u32, u64)>,
    /// Pool shell: the lease handed out, and the operation in flight on it.
    lease: Option<Lease<SimLauncher>>,
    op: Option<OwnedOpGuard<SimLauncher>>,
}

struct Client {
    rng: Rng,
    owner: OwnerKey,
    ops_left: u32,
    ending: Ending,
    state: CState,
    held: Option<Held>,
}

struct Slot {
    dir: PathBuf,
    tree: Option<(u32, u64)>,
    activity: Option<ActivityRef>,
    /// Ground truth for the idle-bound oracle: when a client last used the session
    /// (handout, start or end of an operation), and whether an operation is in flight.
    /// The pool's own stamps are coarse (up to a tick old, or older while nothing reads
    /// them).
    last_ms: Option<u64>,
    in_op: bool,
}

/// A session handed out to a request.
struct Handout {
    id: SessionId,
    activity: Option<ActivityRef>,
    tree: Option<(u32, u64)>,
    lease: Option<Lease<SimLauncher>>,
}

const STREAM_ARRIVALS: u64 = 1;
const STREAM_CLIENT: u64 = 2;
const STREAM_BROWSER: u64 = 3;
const STREAM_SERVER: u64 = 4;
const SAMPLE_MS: u64 = 600_000;
const RING: usize = 24;

struct Sim<'a> {
    sc: &'a Scenario,
    seed: u64,
    opts: RunOptions,
    faults: Faults,
    config: PoolConfig,
    release_grace: Option<Duration>,
    world: Arc<Mutex<World>>,
    heap: BinaryHeap<Event>,
    seq: u64,
    now: u64,
    end_ms: u64,
    quiet_from: u64,
    quiet: bool,
    // server
    started_once: bool,
    inc: u32,
    server_up: bool,
    /// Machine shell: the machine of the running server.
    machine: Option<Lifecycle>,
    armed: Option<u64>,
    /// Pool shell: the running server's pool and runtime.
    pool: Option<PoolRun>,
    /// Pool shell: the run's browser model (one random stream across incarnations).
    pool_model: Option<Arc<pool_shell::Model>>,
    next_request: u64,
    slots: BTreeMap<SessionId, Slot>,
    by_tree: BTreeMap<(u32, u64), SessionId>,
    tickets: BTreeMap<Ticket, (Option<u32>, u64)>,
    finished: BTreeSet<SessionId>,
    sweep_failed: BTreeSet<PathBuf>,
    sweep_complete: bool,
    acc: Totals,
    // clients
    clients: Vec<Client>,
    /// Which client holds each session of the current incarnation.
    holders: BTreeMap<SessionId, u32>,
    rng_arrivals: Rng,
    rng_browser: Rng,
    rng_server: Rng,
    // bounds (ms)
    idle_bound_ms: u64,
    request_bound_ms: u64,
    converge_bound_ms: u64,
    tick_ms: u64,
    // output
    event_index: u64,
    violations: BTreeMap<&'static str, Violation>,
    idle_reported: BTreeSet<(u32, SessionId)>,
    /// Sessions handed out to a client, by incarnation (the `spare-once` oracle).
    handed: BTreeSet<(u32, SessionId)>,
    /// Hand-outs in order, for the `hand_out_used` sabotage.
    handed_order: Vec<SessionId>,
    failure_context: Vec<String>,
    ring: VecDeque<Line>,
    trace: Vec<String>,
    hasher: Fnv,
    samples: Vec<Sample>,
    peak_rss: u64,
    /// The memory budget's oracle state and the PSS peak.
    mem: memory::MemoryWatch,
    client_errors: u64,
    extras: RunExtras,
    coverage: Coverage,
}

/// How the browser of one launch behaves, drawn from the run's browser stream (both
/// shells draw the same way): 10-13 processes, kill behaviour, start-up latency and
/// outcome, with the faults of the seed (none once the run is quiet).
fn draw_launch(rng: &mut Rng, faults: &Faults, quiet: bool, config: &PoolConfig) -> LaunchPlan {
    let f = if quiet {
        Faults::default()
    } else {
        faults.clone()
    };
    let procs = [10u32, 11, 12, 13][rng.weighted(&[0.02, 0.10, 0.33, 0.55])];
    let kill_timeout_ms = ms(config.kill_timeout);
    let kill = KillBehaviour {
        kills_needed: if rng.chance(f.kill_escalation) {
            rng.range(2, u64::from(config.kill_attempts.max(2))) as u32
        } else {
            1
        },
        death_delay_ms: if rng.chance(f.kill_slow) {
            rng.range(100, 2 * kill_timeout_ms)
        } else {
            rng.range(5, 60)
        },
        ignores_graceful: rng.chance(f.kill_escalation),
    };
    let latency = Duration::from_millis(rng.range(300, 2500));
    let outcome = if rng.chance(f.launch_hang) {
        PlannedLaunch::Hangs
    } else if rng.chance(f.launch_fail) {
        PlannedLaunch::ExitsDuringStartup
    } else {
        PlannedLaunch::Up
    };
    LaunchPlan {
        procs,
        kill,
        latency,
        outcome,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn err_label(e: &AcquireError) -> &'static str {
    match e {
        AcquireError::AtCapacity { .. } => "at capacity",
        AcquireError::WaitTimedOut { .. } => "wait timed out",
        AcquireError::QueueFull { .. } => "queue full",
        AcquireError::LaunchFailed { .. } => "launch failed",
        AcquireError::ShuttingDown => "shutting down",
        AcquireError::Unhealthy { .. } => "pool unhealthy",
        _ => "ended before handout",
    }
}

impl<'a> Sim<'a> {
    /// A session's browser tree is up: both shells record it the same way.
    fn tree_started(&mut self, id: SessionId, pgid: u32, gen: u64, procs: u32) {
        if let Some(s) = self.slots.get_mut(&id) {
            s.tree = Some((pgid, gen));
        }
        self.by_tree.insert((pgid, gen), id);
        self.tr(Tr::Launch {
            id: id.0,
            pgid,
            procs,
        });
    }

    fn new(sc: &'a Scenario, seed: u64, opts: RunOptions) -> Result<Self, SimError> {
        let spec: &PoolSpec = match opts.mode {
            Mode::Managed => &sc.managed,
            Mode::Unmanaged => &sc.unmanaged,
        };
        let root = PathBuf::from(&sc.host.root);
        let config = spec.to_config(root.clone(), &sc.host.prefix);
        config.validate().map_err(|source| SimError::Config {
            mode: opts.mode.label(),
            source,
        })?;
        let faults = sc.faults.draw(seed);
        let wc = WorldConfig {
            root,
            pid_space: sc.host.pid_space.max(64),
            rss: RssModel {
                base_bytes: sc.host.rss_base_mib << 20,
                per_day_bytes: sc.host.rss_per_day_mib << 20,
                per_use_bytes: sc.host.rss_per_op_kib << 10,
                pss_percent: sc.host.pss_percent,
                ..RssModel::default()
            },
            ..WorldConfig::default()
        };
        let world = World::new(wc, seed);
        // Reference bounds. The idle bound uses the default idle timeout when the
        // reaper is off, so a pool without a reaper shows up as a violation.
        let idle = config.idle_timeout.unwrap_or(
            PoolConfig::default()
                .idle_timeout
                .unwrap_or(Duration::from_secs(1800)),
        );
        let kill_budget = config.kill_budget() + config.kill_timeout;
        let idle_bound_ms = ms(idle + config.reap_interval + config.tick + kill_budget);
        // An EvictLru request may get one extension of a victim's kill budget
        // (PoolConfig::acquire_timeout), then needs a launch.
        let request_bound_ms = ms(config.acquire_timeout
            + config.kill_budget()
            + config.launch_timeout
            + Duration::from_secs(1));
        let converge_bound_ms = ms(idle
            + config.reap_interval
            + config.tick
            + kill_budget
            + config.launch_timeout
            + config.acquire_timeout
            + config.remove_backoff.max * 2
            + Duration::from_secs_f64(faults.restart_delay_secs_max.max(1.0))
            + Duration::from_secs(60));
        let quiet_from = sc.quiet_from_ms();
        let end_ms = sc.duration_ms().max(quiet_from + converge_bound_ms);
        let release_grace = (spec.release_grace_secs >= 0.0)
            .then(|| Duration::from_secs_f64(spec.release_grace_secs));
        let tick_ms = ms(config.tick);
        Ok(Sim {
            sc,
            seed,
            opts,
            faults,
            config,
            release_grace,
            world: Arc::new(Mutex::new(world)),
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
            end_ms,
            quiet_from,
            quiet: false,
            started_once: false,
            inc: 0,
            server_up: false,
            machine: None,
            armed: None,
            pool: None,
            pool_model: None,
            next_request: 1,
            slots: BTreeMap::new(),
            by_tree: BTreeMap::new(),
            tickets: BTreeMap::new(),
            finished: BTreeSet::new(),
            sweep_failed: BTreeSet::new(),
            sweep_complete: true,
            acc: Totals::default(),
            clients: Vec::new(),
            holders: BTreeMap::new(),
            rng_arrivals: Rng::derive(seed, STREAM_ARRIVALS, 0),
            rng_browser: Rng::derive(seed, STREAM_BROWSER, 0),
            rng_server: Rng::derive(seed, STREAM_SERVER, 0),
            idle_bound_ms,
            request_bound_ms,
            converge_bound_ms,
            tick_ms,
            event_index: 0,
            violations: BTreeMap::new(),
            idle_reported: BTreeSet::new(),
            handed: BTreeSet::new(),
            handed_order: Vec::new(),
            failure_context: Vec::new(),
            ring: VecDeque::with_capacity(RING),
            trace: Vec::new(),
            hasher: Fnv(0xcbf2_9ce4_8422_2325),
            samples: Vec::new(),
            peak_rss: 0,
            mem: memory::MemoryWatch::default(),
            client_errors: 0,
            extras: RunExtras::default(),
            coverage: Coverage::default(),
        })
    }

    pub(super) fn w(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Event {
            t: t.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    pub(super) fn tr(&mut self, ev: Tr) {
        let line = Line {
            idx: self.event_index,
            t: self.now,
            inc: self.inc,
            ev,
        };
        line.hash(&mut self.hasher);
        if self.opts.full_trace {
            self.trace.push(line.to_string());
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(line);
    }

    pub(super) fn ts(&self) -> Timestamp {
        Timestamp(self.now)
    }

    // ------------------------------------------------------------------ main loop

    fn run(&mut self) {
        self.setup_world();
        self.push(0, Ev::Sample);
        self.push(self.end_ms, Ev::End);
        self.push(self.quiet_from, Ev::Quiet);
        self.start_memory_rounds();
        self.start_server();
        let first = self.next_arrival(0);
        if let Some(t) = first {
            self.push(t, Ev::Arrival);
        }
        let be = self.sc.workload.burst_every_hours;
        if be > 0.0 && self.sc.workload.burst_size > 0 {
            self.push((be * 3_600_000.0) as u64, Ev::Burst);
        }
        while let Some(next) = self.heap.peek().map(|e| e.t) {
            // Pool shell: let the pool run up to the next event, stopping early whenever
            // it did something the engine records (each such stop is one event).
            if self.pool_run_until(next) {
                self.check_oracles();
                self.event_index += 1;
                continue;
            }
            let Some(e) = self.heap.pop() else { break };
            self.now = e.t;
            self.w().set_now(Timestamp(e.t));
            let end = matches!(e.ev, Ev::End);
            self.handle(e.ev);
            self.pool_notes();
            self.check_oracles();
            self.arm();
            self.event_index += 1;
            if end {
                break;
            }
        }
    }

    pub(super) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival => {
                if self.now < self.quiet_from {
                    self.arrive();
                    if let Some(t) = self.next_arrival(self.now) {
                        self.push(t, Ev::Arrival);
                    }
                }
            }
            Ev::Burst => {
                if self.now < self.quiet_from {
                    for _ in 0..self.sc.workload.burst_size {
                        self.arrive();
                    }
                    let be = (self.sc.workload.burst_every_hours * 3_600_000.0) as u64;
                    self.push(self.now + be.max(1), Ev::Burst);
                }
            }
            Ev::Client(c) => self.client_step(c),
            Ev::LaunchDone {
                inc,
                id,
                tree,
                outcome,
            } => self.launch_done(inc, id, tree, outcome),
            Ev::KillCheck {
                inc,
                id,
                tree,
                attempt,
            } => self.kill_check(inc, id, tree, attempt),
            Ev::TreeDeath(p, g) => {
                self.w().complete_death(p, g);
            }
            Ev::TreeCrash(p, g) => self.tree_crash(p, g),
            Ev::Timeout(inc) => self.timeout(inc),
            Ev::ServerCrash(inc) => {
                if inc == self.inc && self.server_up && !self.quiet {
                    self.crash_server();
                }
            }
            Ev::Restart => self.start_server(),
            Ev::Sample => {
                self.sample();
                if self.now + SAMPLE_MS <= self.end_ms {
                    self.push(self.now + SAMPLE_MS, Ev::Sample);
                }
            }
            Ev::Memory => self.memory_round(),
            Ev::Quiet => self.go_quiet(),
            Ev::Converge => self.converge(),
            Ev::End => self.sample(),
        }
    }

    /// A browser of ours exits by itself.
    pub(super) fn tree_crash(&mut self, p: u32, g: u64) {
        if self.quiet {
            return;
        }
        let how = "killed by signal 11 (SIGSEGV)";
        let crashed = self.w().crash_tree(p, g, how);
        if crashed {
            let id = self.by_tree.get(&(p, g)).copied();
            self.tr(Tr::BrowserCrash {
                pgid: p,
                id: id.map(|i| i.0),
            });
            // The pool shell's exit watcher sees it by itself; the machine is told.
            if let (Some(id), true) = (id, self.server_up) {
                self.machine_feed(browserpool::Input::Exited {
                    id,
                    exit: how.into(),
                });
            }
        }
    }

    pub(super) fn sample(&mut self) {
        let (browsers, processes, rss_bytes, pss_bytes) = {
            let w = self.w();
            let (t, p) = w.ours_live();
            (t, p, w.ours_rss(), w.ours_pss())
        };
        self.peak_rss = self.peak_rss.max(rss_bytes);
        self.mem.peak_pss = self.mem.peak_pss.max(pss_bytes);
        self.samples.push(Sample {
            t_ms: self.now,
            browsers,
            processes,
            rss_bytes,
            pss_bytes,
        });
    }
}

/// The command that replays `seed` of `scenario` (with a duration override if any).
pub fn replay_command(scenario: &str, seed: u64, hours: Option<f64>) -> String {
    replay_command_on(scenario, seed, hours, Shell::Machine)
}

/// The command that replays `seed` of `scenario` on `shell`.
pub fn replay_command_on(scenario: &str, seed: u64, hours: Option<f64>, shell: Shell) -> String {
    let mut s =
        format!("cargo run --release -p browserpool-sim -- replay {scenario} --seed {seed}");
    if let Some(h) = hours {
        s.push_str(&format!(" --hours {h}"));
    }
    if shell != Shell::Machine {
        s.push_str(&format!(" --shell {}", shell.label()));
    }
    s
}
