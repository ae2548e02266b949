//! The discrete-event engine: it jumps from event to event, so simulated time costs
//! nothing while nothing happens.
//!
//! It drives the core's pure [`Lifecycle`] directly: every command and input is fed
//! with the simulated time, every [`Action`] is carried out against the simulated
//! [`World`], and the machine's `poll_timeout()` is scheduled as an event. A server crash
//! drops the machine and the engine's bookkeeping without running any cleanup; a restart
//! builds a new `Lifecycle` with a new instance id over the same world and runs the
//! production [`startup_sweep`] on the simulated backend.
//!
//! Events are ordered by (simulated millisecond, sequence number); every random choice
//! comes from the seeded [`Rng`] streams; no wall clock, no hash-order iteration. The
//! same scenario and seed always give the same trace, byte for byte.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use browserpool::pool::startup_sweep;
use browserpool::sweep::{instance_from, marker_name};
use browserpool::{
    AcquireError, Action, ActivityRef, CapacityPolicy, ConfigError, EntryKind, Input, KillStage,
    Lifecycle, OwnerKey, Phase, PoolConfig, SessionId, Ticket, Timestamp, Totals,
};

use crate::oracle::{self, Violation};
use crate::report::{RunExtras, RunReport};
use crate::rng::Rng;
use crate::scenario::{Faults, PoolSpec, Scenario};
use crate::world::backend::SimBackend;
use crate::world::{neighbours, KillBehaviour, Owner, RssModel, SignalOutcome, World, WorldConfig};

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

/// Options of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Which pool.
    pub mode: Mode,
    /// Keep every trace line (for determinism tests and snapshots); otherwise only a
    /// rolling hash and the last lines are kept.
    pub full_trace: bool,
    /// Deliberate bugs in the shell around the machine, to prove the oracles catch them.
    pub sabotage: Sabotage,
}

impl RunOptions {
    /// A run of `mode` without a full trace and without sabotage.
    pub fn new(mode: Mode) -> Self {
        RunOptions {
            mode,
            full_trace: false,
            sabotage: Sabotage::default(),
        }
    }
}

/// Deliberately broken shell behaviours (all off by default). Each models a bug a real
/// shell around the `Lifecycle` could have; the oracle tests switch one on and assert
/// that an oracle fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Report `Gone` right after sending a kill, without waiting for the tree to die.
    pub premature_gone: bool,
    /// Never signal anything on `Kill`, but report `Gone`.
    pub kill_does_nothing: bool,
    /// Before the real startup sweep, kill whatever PID each prefixed directory's
    /// `SingletonLock` names (trusting a PID alone).
    pub trust_singleton_lock: bool,
    /// Lose every successful reply (the client waits forever).
    pub lose_replies: bool,
    /// Refuse a request at once whenever the pool is full, instead of asking the machine
    /// (which would evict).
    pub refuse_when_full: bool,
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
        ] {
            if c == 0 {
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

/// Run both pools on `scenario` with `seed` (traces not kept).
pub fn run_pair(scenario: &Scenario, seed: u64) -> Result<PairOutcome, SimError> {
    let start = Instant::now();
    let unmanaged = run(scenario, seed, RunOptions::new(Mode::Unmanaged))?;
    let managed = run(scenario, seed, RunOptions::new(Mode::Managed))?;
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

// ---------------------------------------------------------------------------- trace

/// A stable FNV-1a hasher (std's default hasher is randomly keyed).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[derive(Clone, Debug, Hash)]
enum Tr {
    Start {
        instance: String,
        swept: bool,
    },
    Sweep {
        removed: usize,
        killed: usize,
        skipped: usize,
        failed: usize,
    },
    SweepCrashed,
    ServerCrash {
        trees: u64,
    },
    Arrive {
        c: u32,
    },
    Acquire {
        c: u32,
        ticket: u64,
    },
    ReplyOk {
        c: Option<u32>,
        id: u64,
    },
    ReplyErr {
        c: Option<u32>,
        err: &'static str,
    },
    OpBegin {
        c: u32,
        id: u64,
    },
    OpEnd {
        c: u32,
        id: u64,
        long: bool,
    },
    ClientEnd {
        c: u32,
        how: &'static str,
    },
    ClientError {
        c: u32,
        what: &'static str,
    },
    Launch {
        id: u64,
        pgid: u32,
        procs: u32,
    },
    NoDir {
        id: u64,
    },
    Launched {
        id: u64,
    },
    LaunchFailed {
        id: u64,
        why: &'static str,
    },
    Ending {
        id: u64,
        reason: &'static str,
    },
    Kill {
        id: u64,
        force: bool,
        attempt: u32,
    },
    Gone {
        id: u64,
    },
    KillTimedOut {
        id: u64,
        attempt: u32,
    },
    Remove {
        id: u64,
        ok: bool,
    },
    Finished {
        id: u64,
        reason: &'static str,
        dir_removed: bool,
    },
    BrowserCrash {
        pgid: u32,
        id: Option<u64>,
    },
    Quiet,
    Converged {
        ok: bool,
    },
    Violation {
        oracle: &'static str,
    },
}

#[derive(Clone, Debug, Hash)]
struct Line {
    idx: u64,
    t: u64,
    inc: u32,
    ev: Tr,
}

fn fmt_time(ms: u64) -> String {
    let d = ms / 86_400_000;
    let h = ms / 3_600_000 % 24;
    let m = ms / 60_000 % 60;
    let s = ms / 1000 % 60;
    format!("{d}d{h:02}:{m:02}:{s:02}.{:03}", ms % 1000)
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.inc;
        write!(f, "#{} {} ", self.idx, fmt_time(self.t))?;
        match &self.ev {
            Tr::Start { instance, swept } => write!(
                f,
                "server start i{i} instance {instance}{}",
                if *swept { " (sweep)" } else { "" }
            ),
            Tr::Sweep {
                removed,
                killed,
                skipped,
                failed,
            } => write!(
                f,
                "sweep i{i}: removed {removed}, killed {killed}, skipped {skipped}, failed {failed}"
            ),
            Tr::SweepCrashed => write!(f, "server i{i} crashed during its startup sweep"),
            Tr::ServerCrash { trees } => {
                write!(
                    f,
                    "server i{i} crashed (no destructors); {trees} browser trees of ours alive"
                )
            }
            Tr::Arrive { c } => write!(f, "c{c} arrives"),
            Tr::Acquire { c, ticket } => write!(f, "c{c} acquire -> ticket {ticket}"),
            Tr::ReplyOk { c, id } => write!(f, "reply {} <- i{i}/s{id}", who(*c)),
            Tr::ReplyErr { c, err } => write!(f, "reply {} <- error {err}", who(*c)),
            Tr::OpBegin { c, id } => write!(f, "c{c} op begin i{i}/s{id}"),
            Tr::OpEnd { c, id, long } => {
                write!(
                    f,
                    "c{c} op end i{i}/s{id}{}",
                    if *long { " (long)" } else { "" }
                )
            }
            Tr::ClientEnd { c, how } => write!(f, "c{c} {how}"),
            Tr::ClientError { c, what } => write!(f, "c{c} error: {what}"),
            Tr::Launch { id, pgid, procs } => {
                write!(f, "launch i{i}/s{id} pgid {pgid} ({procs} processes)")
            }
            Tr::NoDir { id } => write!(f, "launch i{i}/s{id}: create_dir failed"),
            Tr::Launched { id } => write!(f, "launched i{i}/s{id}"),
            Tr::LaunchFailed { id, why } => write!(f, "launch failed i{i}/s{id}: {why}"),
            Tr::Ending { id, reason } => write!(f, "ending i{i}/s{id}: {reason}"),
            Tr::Kill { id, force, attempt } => write!(
                f,
                "kill i{i}/s{id} {} attempt {attempt}",
                if *force { "SIGKILL" } else { "graceful" }
            ),
            Tr::Gone { id } => write!(f, "gone i{i}/s{id}"),
            Tr::KillTimedOut { id, attempt } => {
                write!(f, "kill timed out i{i}/s{id} attempt {attempt}")
            }
            Tr::Remove { id, ok } => {
                write!(
                    f,
                    "remove dir i{i}/s{id}: {}",
                    if *ok { "ok" } else { "failed" }
                )
            }
            Tr::Finished {
                id,
                reason,
                dir_removed,
            } => write!(
                f,
                "finished i{i}/s{id} ({reason}){}",
                if *dir_removed { "" } else { ", dir pending" }
            ),
            Tr::BrowserCrash { pgid, id } => match id {
                Some(id) => write!(f, "browser pgid {pgid} of i{i}/s{id} crashed"),
                None => write!(f, "orphan browser pgid {pgid} crashed"),
            },
            Tr::Quiet => write!(f, "quiet: clients gone, faults off"),
            Tr::Converged { ok } => {
                write!(
                    f,
                    "convergence check: {}",
                    if *ok { "empty" } else { "NOT EMPTY" }
                )
            }
            Tr::Violation { oracle } => write!(f, "ORACLE VIOLATION {oracle}"),
        }
    }
}

fn who(c: Option<u32>) -> String {
    c.map_or("(nobody)".to_owned(), |c| format!("c{c}"))
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
    machine: Option<Lifecycle>,
    slots: BTreeMap<SessionId, Slot>,
    by_tree: BTreeMap<(u32, u64), SessionId>,
    tickets: BTreeMap<Ticket, (Option<u32>, u64)>,
    finished: BTreeSet<SessionId>,
    armed: Option<u64>,
    sweep_failed: BTreeSet<PathBuf>,
    sweep_complete: bool,
    acc: Totals,
    // clients
    clients: Vec<Client>,
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
    failure_context: Vec<String>,
    ring: VecDeque<Line>,
    trace: Vec<String>,
    hasher: Fnv,
    samples: Vec<Sample>,
    peak_rss: u64,
    client_errors: u64,
    extras: RunExtras,
    coverage: Coverage,
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
        _ => "ended before handout",
    }
}

impl<'a> Sim<'a> {
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
        let kill_budget =
            config.kill_grace + config.kill_timeout * (config.kill_attempts.saturating_add(1));
        let idle_bound_ms = ms(idle + config.reap_interval + config.tick + kill_budget);
        // An EvictLru request may get one extension of a victim's kill budget
        // (PoolConfig::acquire_timeout), then needs a launch.
        let request_bound_ms = ms(config.acquire_timeout
            + config.kill_grace
            + config.kill_timeout * config.kill_attempts
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
            slots: BTreeMap::new(),
            by_tree: BTreeMap::new(),
            tickets: BTreeMap::new(),
            finished: BTreeSet::new(),
            armed: None,
            sweep_failed: BTreeSet::new(),
            sweep_complete: true,
            acc: Totals::default(),
            clients: Vec::new(),
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
            failure_context: Vec::new(),
            ring: VecDeque::with_capacity(RING),
            trace: Vec::new(),
            hasher: Fnv(0xcbf2_9ce4_8422_2325),
            samples: Vec::new(),
            peak_rss: 0,
            client_errors: 0,
            extras: RunExtras::default(),
            coverage: Coverage::default(),
        })
    }

    fn w(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Event {
            t: t.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    fn tr(&mut self, ev: Tr) {
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

    fn violate(&mut self, oracle: &'static str, message: String) {
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

    fn ts(&self) -> Timestamp {
        Timestamp(self.now)
    }

    // ------------------------------------------------------------------ setup

    fn setup_world(&mut self) {
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

    // ------------------------------------------------------------------ main loop

    fn run(&mut self) {
        self.setup_world();
        self.push(0, Ev::Sample);
        self.push(self.end_ms, Ev::End);
        self.push(self.quiet_from, Ev::Quiet);
        self.start_server();
        let first = self.next_arrival(0);
        if let Some(t) = first {
            self.push(t, Ev::Arrival);
        }
        let be = self.sc.workload.burst_every_hours;
        if be > 0.0 && self.sc.workload.burst_size > 0 {
            self.push((be * 3_600_000.0) as u64, Ev::Burst);
        }
        while let Some(e) = self.heap.pop() {
            self.now = e.t;
            self.w().set_now(Timestamp(e.t));
            let end = matches!(e.ev, Ev::End);
            self.handle(e.ev);
            self.check_oracles();
            self.arm();
            self.event_index += 1;
            if end {
                break;
            }
        }
    }

    fn arm(&mut self) {
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

    fn handle(&mut self, ev: Ev) {
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
            } => {
                if inc != self.inc || !self.server_up {
                    return;
                }
                let gone = match tree {
                    None => true,
                    Some((p, g)) => self.w().complete_death(p, g),
                };
                if gone {
                    self.tr(Tr::Gone { id: id.0 });
                    self.feed(Input::Gone { id });
                } else {
                    self.tr(Tr::KillTimedOut { id: id.0, attempt });
                    self.coverage.kill_escalations += 1;
                    self.feed(Input::KillTimedOut { id, attempt });
                }
            }
            Ev::TreeDeath(p, g) => {
                self.w().complete_death(p, g);
            }
            Ev::TreeCrash(p, g) => {
                if self.quiet {
                    return;
                }
                let crashed = self.w().crash_tree(p, g, "killed by signal 11 (SIGSEGV)");
                if crashed {
                    let id = self.by_tree.get(&(p, g)).copied();
                    self.tr(Tr::BrowserCrash {
                        pgid: p,
                        id: id.map(|i| i.0),
                    });
                    if let Some(id) = id {
                        if self.server_up {
                            self.feed(Input::Exited {
                                id,
                                exit: "killed by signal 11 (SIGSEGV)".into(),
                            });
                        }
                    }
                }
            }
            Ev::Timeout(inc) => {
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
            Ev::Quiet => self.go_quiet(),
            Ev::Converge => self.converge(),
            Ev::End => self.sample(),
        }
    }

    fn sample(&mut self) {
        let (browsers, processes, rss_bytes) = {
            let w = self.w();
            let (t, p) = w.ours_live();
            (t, p, w.ours_rss())
        };
        self.peak_rss = self.peak_rss.max(rss_bytes);
        self.samples.push(Sample {
            t_ms: self.now,
            browsers,
            processes,
            rss_bytes,
        });
    }

    // ------------------------------------------------------------------ arrivals

    fn rate_per_ms(&self, t: u64) -> f64 {
        let wl = &self.sc.workload;
        let base = wl.sessions_per_day.max(0.0) / 86_400_000.0;
        let phase = (t as f64 / 86_400_000.0 - 8.0 / 24.0) * std::f64::consts::TAU;
        base * (1.0 + wl.daily_cycle.clamp(0.0, 1.0) * phase.sin())
    }

    fn next_arrival(&mut self, from: u64) -> Option<u64> {
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

    fn arrive(&mut self) {
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
        let now = self.ts();
        let max = self.config.max_browsers;
        if self.opts.sabotage.refuse_when_full
            && self.machine.as_ref().is_some_and(|m| m.occupied() >= max)
        {
            self.tickets.insert(Ticket(u64::MAX), (Some(idx), self.now));
            self.reply(Ticket(u64::MAX), Err(AcquireError::AtCapacity { max }));
            return;
        }
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        let ticket = m.acquire(now, Some(owner));
        self.tickets.insert(ticket, (Some(idx), self.now));
        self.tr(Tr::Acquire {
            c: idx,
            ticket: ticket.0,
        });
        self.drain();
    }

    fn client_error(&mut self, c: u32, what: &'static str) {
        self.client_errors += 1;
        self.tr(Tr::ClientError { c, what });
        if let Some(cl) = self.clients.get_mut(c as usize) {
            cl.state = CState::Done;
        }
    }

    fn think_ms(&mut self, c: u32) -> u64 {
        let wl = &self.sc.workload;
        let (lo, hi) = (wl.think_secs_min, wl.think_secs_max.max(wl.think_secs_min));
        let cl = &mut self.clients[c as usize];
        (cl.rng.uniform(lo, hi) * 1000.0) as u64
    }

    fn client_step(&mut self, c: u32) {
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
                activity.begin_op(self.ts());
                if let Some((p, g)) = tree {
                    self.w().tree_used(p, g);
                }
                self.tr(Tr::OpBegin { c, id: id.0 });
                self.push(self.now + (secs * 1000.0) as u64, Ev::Client(c));
            }
            CState::InOp { long } => {
                let uses = activity.end_op(self.ts());
                self.tr(Tr::OpEnd { c, id: id.0, long });
                if activity.is_ended() {
                    self.client_error(c, "operation failed: session ended");
                    return;
                }
                if self.config.max_uses.is_some_and(|m| uses >= m) {
                    self.feed(Input::RetireHint { id });
                }
                let cl = &mut self.clients[c as usize];
                cl.ops_left = cl.ops_left.saturating_sub(1);
                cl.state = CState::Thinking;
                let t = self.think_ms(c);
                self.push(self.now + t, Ev::Client(c));
            }
            CState::Waiting | CState::Done => {}
        }
    }

    fn client_end(&mut self, c: u32, id: SessionId) {
        let ending = self.clients[c as usize].ending;
        self.clients[c as usize].state = CState::Done;
        let now = self.ts();
        match ending {
            Ending::Destroy => {
                self.tr(Tr::ClientEnd {
                    c,
                    how: "destroys its session",
                });
                let r = self.machine.as_mut().map(|m| m.destroy(now, id));
                if let Some(Err(_)) = r {
                    self.client_errors += 1;
                    self.tr(Tr::ClientError {
                        c,
                        what: "destroy: session had already ended",
                    });
                }
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
                    if let Some(m) = self.machine.as_mut() {
                        m.release_owner(now, &owner, grace);
                    }
                }
            }
            Ending::Forget => self.tr(Tr::ClientEnd {
                c,
                how: "forgets its session",
            }),
        }
        self.drain();
    }

    // ------------------------------------------------------------------ machine

    fn feed(&mut self, input: Input) {
        let now = self.ts();
        if let Some(m) = self.machine.as_mut() {
            m.handle(now, input);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(a) = self.machine.as_mut().and_then(|m| m.poll_action()) {
            self.exec(a);
        }
    }

    fn exec(&mut self, a: Action) {
        match a {
            Action::Launch { id, dir } => self.do_launch(id, dir),
            Action::Ending { id, reason } => {
                match reason.label() {
                    "idle" => self.coverage.idle_reaps += 1,
                    "evicted" => self.coverage.evictions += 1,
                    "owner_released" => self.coverage.owner_releases += 1,
                    _ => {}
                }
                self.tr(Tr::Ending {
                    id: id.0,
                    reason: reason.label(),
                });
            }
            Action::Kill {
                id,
                stage,
                attempt,
                wait,
            } => self.do_kill(id, stage, attempt, wait),
            Action::RemoveDir { id, dir, .. } => {
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
            Action::Reply { ticket, result } => self.reply(ticket, result),
            Action::Finished {
                id,
                reason,
                dir_removed,
            } => {
                self.tr(Tr::Finished {
                    id: id.0,
                    reason: reason.label(),
                    dir_removed,
                });
                if !self.finished.insert(id) {
                    self.violate(
                        oracle::EXACTLY_ONCE,
                        format!("session i{}/{id} finished twice", self.inc),
                    );
                }
                let info = self.slots.get(&id).map(|s| (s.tree, s.dir.clone()));
                if let Some((tree, dir)) = info {
                    let tree_alive = tree.is_some_and(|(p, g)| self.w().tree_alive(p, g));
                    let dir_there = self.w().exists(&dir);
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
                        self.violate(
                            oracle::EXACTLY_ONCE,
                            format!(
                                "session i{}/{id} finished with dir_removed but {} exists",
                                self.inc,
                                dir.display()
                            ),
                        );
                    }
                    if let Some(t) = tree {
                        self.by_tree.remove(&t);
                    }
                }
                if dir_removed {
                    self.slots.remove(&id);
                }
            }
        }
    }

    fn do_launch(&mut self, id: SessionId, dir: PathBuf) {
        let inc = self.inc;
        self.slots.insert(
            id,
            Slot {
                dir: dir.clone(),
                tree: None,
                activity: None,
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
        let f = if self.quiet {
            Faults::default()
        } else {
            self.faults.clone()
        };
        let rb = &mut self.rng_browser;
        let procs = [10u32, 11, 12, 13][rb.weighted(&[0.02, 0.10, 0.33, 0.55])];
        let kill_timeout_ms = ms(self.config.kill_timeout);
        let kill = KillBehaviour {
            kills_needed: if rb.chance(f.kill_escalation) {
                rb.range(2, u64::from(self.config.kill_attempts.max(2))) as u32
            } else {
                1
            },
            death_delay_ms: if rb.chance(f.kill_slow) {
                rb.range(100, 2 * kill_timeout_ms)
            } else {
                rb.range(5, 60)
            },
            ignores_graceful: rb.chance(f.kill_escalation),
        };
        let latency = rb.range(300, 2500);
        let outcome = if rb.chance(f.launch_hang) {
            LaunchOutcome::Hang
        } else if rb.chance(f.launch_fail) {
            LaunchOutcome::Fail
        } else {
            LaunchOutcome::Ok
        };
        let spawned = self.w().spawn_tree(&dir, Owner::Ours(inc), procs, kill);
        match spawned {
            Ok((pgid, gen)) => {
                if let Some(s) = self.slots.get_mut(&id) {
                    s.tree = Some((pgid, gen));
                }
                self.by_tree.insert((pgid, gen), id);
                self.tr(Tr::Launch {
                    id: id.0,
                    pgid,
                    procs,
                });
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

    fn launch_done(
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
                self.feed(Input::LaunchFailed {
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
                self.feed(Input::LaunchFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn do_kill(&mut self, id: SessionId, stage: KillStage, attempt: u32, wait: Duration) {
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

    fn reply(&mut self, ticket: Ticket, result: Result<SessionId, AcquireError>) {
        if self.opts.sabotage.lose_replies && result.is_ok() {
            return;
        }
        let (client, _) = self.tickets.remove(&ticket).unwrap_or((None, 0));
        let live_client = client.filter(|c| {
            self.clients
                .get(*c as usize)
                .is_some_and(|cl| cl.state == CState::Waiting)
        });
        match result {
            Ok(id) => {
                self.tr(Tr::ReplyOk {
                    c: live_client,
                    id: id.0,
                });
                let Some(c) = live_client else {
                    return; // nobody is there any more: the session is an orphan
                };
                let slot = self.slots.get(&id);
                let activity = slot.and_then(|s| s.activity.clone()).or_else(|| {
                    self.machine
                        .as_ref()
                        .and_then(|m| m.activity(id).ok().cloned())
                });
                let Some(activity) = activity else {
                    self.client_error(c, "session vanished before use");
                    return;
                };
                let tree = slot.and_then(|s| s.tree);
                let inc = self.inc;
                let cl = &mut self.clients[c as usize];
                cl.held = Some(Held {
                    inc,
                    id,
                    activity,
                    tree,
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
    fn idle_session(&self) -> Option<String> {
        let m = self.machine.as_ref()?;
        for (id, s) in &self.slots {
            if m.phase(*id) != Some(Phase::Live) {
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

    // ------------------------------------------------------------------ server

    fn start_server(&mut self) {
        if self.started_once {
            self.inc += 1;
        }
        self.started_once = true;
        let instance = instance_from(self.rng_server.next_u64());
        let crash_in_sweep = self.rng_server.chance(self.faults.crash_during_sweep) && !self.quiet;
        let crash_after = self.rng_server.range(0, 8) as u32;
        let Ok(machine) = Lifecycle::new(self.config.clone(), &instance) else {
            return; // validated in Sim::new
        };
        let holder = self.w().spawn_server();
        let managed = self.opts.mode == Mode::Managed;
        if managed {
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
        if swept {
            if crash_in_sweep {
                self.w().crash_after_ops(crash_after);
            }
            let (launcher, fs) = SimBackend::with_incarnation(self.world.clone(), self.inc);
            let result = ready(startup_sweep(&self.config, &instance, &launcher, &fs));
            self.w().disarm_crash();
            let crashed = self.w().crashed_midway();
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
            if crashed {
                self.extras.crashes_during_sweep += 1;
                self.coverage.crashes_during_sweep += 1;
                self.extras.server_crashes += 1;
                self.tr(Tr::SweepCrashed);
                self.server_up = false;
                self.machine = None;
                self.schedule_restart();
                return;
            }
            self.sweep_complete = result.as_ref().is_some_and(|r| r.is_ok());
        } else {
            self.sweep_complete = self.inc == 0 && self.sc.host.legacy_leftovers == 0;
        }
        self.machine = Some(machine);
        self.server_up = true;
        self.armed = None;
        self.slots.clear();
        self.by_tree.clear();
        self.finished.clear();
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

    fn schedule_restart(&mut self) {
        let max = (self.faults.restart_delay_secs_max.max(1.0) * 1000.0) as u64;
        let d = self.rng_server.range(1000, max.max(1000));
        self.push(self.now + d, Ev::Restart);
    }

    /// After a start (and its sweep, if any): nothing of an earlier incarnation remains.
    fn check_clean_start(&mut self) {
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

    fn crash_server(&mut self) {
        let trees = self.w().ours_live().0;
        self.tr(Tr::ServerCrash { trees });
        self.extras.server_crashes += 1;
        if let Some(m) = self.machine.take() {
            add_totals(&mut self.acc, m.totals());
            // No destructors: the machine's state is simply gone.
            drop(m);
        }
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
        self.schedule_restart();
    }

    // ------------------------------------------------------------------ convergence

    fn go_quiet(&mut self) {
        self.quiet = true;
        self.tr(Tr::Quiet);
        self.w().fs_faults = Default::default();
        let now = self.ts();
        for c in 0..self.clients.len() {
            let cl = &mut self.clients[c];
            if let (CState::InOp { .. }, Some(h)) = (cl.state, cl.held.as_ref()) {
                h.activity.end_op(now);
            }
            cl.state = CState::Done;
        }
        self.push(self.now + self.converge_bound_ms, Ev::Converge);
    }

    fn converge(&mut self) {
        let tracked = self.machine.as_ref().map_or(0, |m| m.tracked_ids().len());
        let (trees, procs) = self.w().ours_live();
        let dirs = self
            .w()
            .ours_entries()
            .into_iter()
            .filter(|(p, _, k)| *k == EntryKind::Dir && !self.sweep_failed.contains(p))
            .count();
        let ok = tracked == 0 && trees == 0 && dirs == 0 && self.server_up;
        self.tr(Tr::Converged { ok });
        if !ok {
            self.violate(
                oracle::CONVERGENCE,
                format!(
                    "{} after faults and clients stopped: {tracked} sessions, {trees} browser trees ({procs} processes), {dirs} directories of ours remain{}",
                    fmt_time(self.converge_bound_ms),
                    if self.server_up { "" } else { "; the server is down" }
                ),
            );
        }
    }

    // ------------------------------------------------------------------ oracles

    fn check_oracles(&mut self) {
        let foreign = self.w().take_violations();
        for v in foreign {
            self.violate(oracle::FOREIGN_TOUCH, v);
        }
        if !self.server_up {
            return;
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
            let (Some(a), Some((p, g))) = (&s.activity, s.tree) else {
                continue;
            };
            if a.is_busy() {
                continue;
            }
            let last = a.last_active().0;
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

    // ------------------------------------------------------------------ results

    fn finish(mut self) -> RunOutcome {
        if let Some(m) = self.machine.as_ref() {
            let t = m.totals().clone();
            add_totals(&mut self.acc, &t);
        }
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
                .filter(|(p, _, k)| *k == EntryKind::Dir && !held_dirs.contains(p))
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
            coverage: self.coverage,
            faults: self.faults.clone(),
            simulated_ms: self.end_ms,
        }
    }
}

fn add_totals(acc: &mut Totals, t: &Totals) {
    acc.created += t.created;
    acc.destroyed += t.destroyed;
    acc.reaped += t.reaped;
    acc.evicted += t.evicted;
    acc.retired += t.retired;
    acc.crashed += t.crashed;
    acc.owner_released += t.owner_released;
    acc.shutdown += t.shutdown;
    acc.abandoned += t.abandoned;
    acc.launch_failed += t.launch_failed;
    acc.rejected += t.rejected;
    acc.wait_timeouts += t.wait_timeouts;
    acc.kill_escalations += t.kill_escalations;
    acc.kill_stuck += t.kill_stuck;
    acc.remove_failures += t.remove_failures;
    acc.dirs_recovered += t.dirs_recovered;
}

/// The command that replays `seed` of `scenario` (with a duration override if any).
pub fn replay_command(scenario: &str, seed: u64, hours: Option<f64>) -> String {
    let mut s =
        format!("cargo run --release -p browserpool-sim -- replay {scenario} --seed {seed}");
    if let Some(h) = hours {
        s.push_str(&format!(" --hours {h}"));
    }
    s
}
