//! Churn real Chromium through a pool: clients acquire a session, use a page, then
//! either destroy it or abandon it (never destroy it), and the pool's idle reaper and
//! LRU eviction have to keep the host bounded. Prints a summary (JSON with `--json`)
//! and exits with status 1 if anything was left behind.
//!
//! ```text
//! cargo run --release -p browserpool-chrome --example churn -- \
//!     --clients 20 --max-browsers 4 --abandon 0.5 --idle-timeout 3s \
//!     --reap-interval 500ms --duration 30s --json
//! ```
//!
//! With prewarmed spares, clients arriving slower than a launch:
//!
//! ```text
//! cargo run --release -p browserpool-chrome --example churn -- \
//!     --clients 1 --max-browsers 2 --spares 1 --abandon 0 --arrival-interval 1s \
//!     --duration 30s --json
//! ```
//!
//! How it measures (all processes are counted with the crate's one
//! [`SessionMatcher`], which sees a browser's every helper, not only its main process):
//!
//! - `launch_floor_ms_p50`: before the clients start, a few bare spawns of the exact
//!   command the pool runs, timed from spawn until `DevToolsActivePort` is complete.
//!   The pool's cold acquire is reported against it (`cold_acquire_to_floor_ratio_p50`,
//!   `cold_acquire_minus_floor_ms_p50`): that difference is what the pool adds (directory
//!   work, fork from its spawner thread, the CDP connection).
//! - acquire latency, separately for successful and failed acquires; a "warm" acquire is
//!   one the pool answered with a prewarmed spare (`--spares`; seen from the pool's
//!   `handing out a spare` trace event), a "cold" acquire is one that was not warm and
//!   found a free slot when it asked (it launched without evicting). `spare_hit_rate` is
//!   the pool's `spare_hits / (spare_hits + spare_misses)`.
//! - teardown latency per reason, from the moment the pool decided (the client calling
//!   `destroy`; the machine's `Ending` action, seen through the pool's observer, for
//!   reaps and evictions) until the pool's `Finished` action (directory removed, every
//!   process gone by the launcher's `wait_gone`), checked afterwards from one `/proc`
//!   snapshot: if the directory is still there or the matcher finds a live process, the
//!   teardown ends only when a later check (every 5 ms) finds neither.
//! - each teardown phase by phase (`teardown_phases_ms`, see `PHASES`), from the
//!   observer, the launcher's `browserpool_chrome::teardown` trace events and a
//!   filesystem wrapper that times the removal, and what each `wait_gone` cost
//!   (`wait_gone`: `/proc` scans, processes and command lines read, time queued for and
//!   spent scanning).
//! - after shutdown: processes of every session directory the pool ever used, entries
//!   left under the root, and `org.chromium.Chromium.*` scratch in `$TMPDIR` and
//!   `/dev/shm` entries that appeared during the run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use browserpool::{
    Action, BackendError, DirEntryInfo, EndReason, Filesystem, MarkerLock, MarkerState,
    OsFilesystem, Pool, PoolConfig, ProfileProbe, SessionId,
};
use browserpool_chrome::{procfs, ChromeLauncher, ChromeSession, ProcessModel, SessionMatcher};
use clap::Parser;
use support::{bare_spawn_ms, chrome_config};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad unit in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Churn real Chromium through a browserpool.
#[derive(Parser, Debug)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// The pool's max_browsers.
    #[arg(long, default_value_t = 4)]
    max_browsers: usize,
    /// Share of sessions a client abandons instead of destroying (0..=1).
    #[arg(long, default_value_t = 0.5)]
    abandon: f64,
    /// The pool's idle_timeout (e.g. 3s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    idle_timeout: Duration,
    /// The pool's reap_interval.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    reap_interval: Duration,
    /// How long clients keep churning.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    duration: Duration,
    /// The pool's `spares`: launched, never-used browsers kept ready (0 = none).
    #[arg(long, default_value_t = 0)]
    spares: usize,
    /// Each client pauses this long before each request (the first included), e.g. 2s:
    /// clients arriving slower than a launch. Default 0: back to back.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    arrival_interval: Duration,
    /// Bare spawns timed before the clients start (the launch floor).
    #[arg(long, default_value_t = 5)]
    floor_spawns: usize,
    /// Where the pool's root (a fresh temporary directory) is made. Default: `$TMPDIR`
    /// or `/tmp`. Removing a profile is much slower on a disk mounted with online
    /// `discard` than on tmpfs (such as `/dev/shm`); see the README.
    #[arg(long)]
    root_in: Option<PathBuf>,
    /// Run every browser (and the floor's bare spawns) with `ProcessModel::Lean`:
    /// fewer processes per browser; needs the sandbox off (as root it is).
    #[arg(long)]
    lean: bool,
    /// Seed of the clients' abandon decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize, Debug, Default)]
struct Latency {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(v: &mut [f64]) -> Latency {
        Latency {
            count: v.len(),
            p50_ms: pct(v, 0.50),
            p99_ms: pct(v, 0.99),
            max_ms: pct(v, 1.0),
        }
    }
}

/// A distribution of counts or milliseconds.
#[derive(serde::Serialize, Debug, Default)]
struct Dist {
    count: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Dist {
    fn of(v: &mut [f64]) -> Dist {
        Dist {
            count: v.len(),
            p50: pct(v, 0.50),
            p99: pct(v, 0.99),
            max: pct(v, 1.0),
        }
    }
}

#[derive(serde::Serialize, Debug)]
struct Summary {
    launched: u64,
    destroyed: u64,
    reaped: u64,
    evicted: u64,
    crashed: u64,
    abandoned_by_clients: u64,
    /// Acquires that failed plus operations that failed (a session evicted under its
    /// client).
    client_errors: u64,
    peak_browsers: u64,
    /// Peak live processes of the pool's sessions, by the matcher.
    peak_processes: u64,
    peak_pss_bytes: u64,
    /// Successful acquires.
    acquire_ms_p50: f64,
    acquire_ms_p99: f64,
    /// From spawn until the CDP connection was usable (inside the launcher).
    launch_ms_p50: f64,
    launch_ms_p99: f64,
    /// Every measured teardown, whatever its reason.
    teardown_ms_p50: f64,
    teardown_ms_p99: f64,
    teardowns_measured: usize,
    leftover_processes: u64,
    leftover_dirs: u64,
    failed_acquires: u64,
    failed_acquire_ms_p50: f64,
    failed_acquire_ms_p99: f64,
    /// Successful acquires that found a free slot (no eviction needed).
    cold_acquires: usize,
    cold_acquire_ms_p50: f64,
    cold_acquire_ms_p99: f64,
    /// Successful acquires answered with a prewarmed spare (`--spares`).
    warm_acquires: usize,
    /// `null` without spares.
    warm_acquire_ms_p50: Option<f64>,
    warm_acquire_ms_p99: Option<f64>,
    /// The pool's spare hits / (hits + misses); `null` without spares.
    spare_hit_rate: Option<f64>,
    spares: usize,
    arrival_interval_ms: f64,
    launch_floor_ms_p50: f64,
    launch_floor_samples: Vec<f64>,
    cold_acquire_to_floor_ratio_p50: f64,
    cold_acquire_minus_floor_ms_p50: f64,
    /// Per reason ("destroy", "reap", "evict", ...): decision until no process and no
    /// directory remain.
    teardowns_by_reason: BTreeMap<String, Latency>,
    /// Per phase of a teardown (see `PHASES` in the source for what each covers).
    teardown_phases_ms: BTreeMap<String, Latency>,
    /// The launcher's account of its waits for the processes: full `/proc` scans,
    /// processes and command lines read, time queued for and spent scanning, time
    /// since the kill, processes waited for through pidfds.
    wait_gone: BTreeMap<String, Dist>,
    /// Teardowns where the matcher still saw processes (or the directory was still there)
    /// after the pool reported the teardown finished.
    teardowns_with_processes_after_dir: u64,
    /// Decided teardowns whose end was not observed before the clients stopped.
    teardowns_unfinished: usize,
    pss_per_browser_bytes_p50: u64,
    processes_per_browser_p50: f64,
    leftover_scratch: Vec<String>,
    leftover_shm: Vec<String>,
    root: String,
    /// `standard` or `lean` (`--lean`).
    process_model: &'static str,
    load_avg_1m_start: f64,
    load_avg_1m_end: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    (v[i.min(v.len() - 1)] * 100.0).round() / 100.0
}

/// Session ids the pool has issued so far (ids count up from 1, one per launch).
fn issued<L: browserpool::ProcessLauncher>(pool: &Pool<L>) -> u64 {
    let st = pool.stats();
    st.totals.created + st.totals.launch_failed + st.launching as u64
}

fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Live processes of the sessions in `dirs`, by the matcher, from one `/proc` snapshot.
fn processes_of(dirs: &[PathBuf]) -> BTreeMap<PathBuf, usize> {
    let snapshot = procfs::live_processes();
    let mut out = BTreeMap::new();
    for d in dirs {
        let n = SessionMatcher::new(d).live_in(&snapshot).len();
        if n > 0 {
            out.insert(d.clone(), n);
        }
    }
    out
}

/// Chromium scratch and shared-memory entries outside any session directory.
fn scratch() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("org.chromium.Chromium.") || n.starts_with(".org.chromium.Chromium.") {
                out.insert(e.path().display().to_string());
            }
        }
    }
    out
}

fn shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        // SplitMix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ------------------------------------------------------------ teardown timeline

/// What happened to one session's teardown, and when: from the pool's observer (the
/// machine's `Ending`, `RemoveDir` and `Finished` actions, under the pool's lock), the
/// launcher's `browserpool_chrome::teardown` trace events (kill started, processes
/// gone), the timed filesystem (the removal itself) and the client (its `destroy` call).
#[derive(Default)]
struct Marks {
    reason: Option<&'static str>,
    destroy_called: Option<Instant>,
    ending: Option<Instant>,
    kill: Option<Instant>,
    gone: Option<Instant>,
    gone_cost: BTreeMap<&'static str, f64>,
    remove_dir: Option<Instant>,
    rm_start: Option<Instant>,
    rm_end: Option<Instant>,
    finished: Option<Instant>,
}

type Timeline = Arc<Mutex<BTreeMap<SessionId, Marks>>>;

/// The session a directory belongs to: directory names end in `-<id>`.
fn id_of(dir: &std::path::Path) -> Option<SessionId> {
    let name = dir.file_name()?.to_str()?;
    Some(SessionId(name.rsplit('-').next()?.parse().ok()?))
}

fn reason_name(r: &EndReason) -> &'static str {
    match r {
        EndReason::Destroyed => "destroy",
        EndReason::IdleReaped { .. } => "reap",
        EndReason::Evicted => "evict",
        EndReason::Crashed { .. } => "crash",
        EndReason::Retired(_) => "retire",
        other => other.label(),
    }
}

/// The pool's observer: called under the pool's lock, so it only stamps.
fn observe(timeline: Timeline) -> impl Fn(&Action) + Send + Sync + 'static {
    move |a: &Action| {
        let now = Instant::now();
        let mut t = timeline.lock().unwrap();
        match a {
            Action::Ending { .. } | Action::Reaped { .. } => {
                for e in a.endings() {
                    let m = t.entry(e.id).or_default();
                    m.reason = Some(reason_name(&e.reason));
                    m.ending = Some(now);
                }
            }
            Action::RemoveDir { id, .. } => {
                t.entry(*id).or_default().remove_dir.get_or_insert(now);
            }
            Action::Finished { id, .. } => t.entry(*id).or_default().finished = Some(now),
            _ => {}
        }
    }
}

/// Stamps the launcher's teardown events (`kill`, `session processes gone` with the
/// cost of the wait) on the timeline.
struct TeardownLayer(Timeline);

/// Sessions the pool handed out as prewarmed spares, not yet claimed by their client.
type Warm = Arc<Mutex<BTreeSet<SessionId>>>;

/// Records which sessions the pool handed out as spares, from its `handing out a spare`
/// trace event (reading existing trace events keeps the core free of measurement hooks).
struct WarmLayer(Warm);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarmLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !event.metadata().target().starts_with("browserpool::") {
            return;
        }
        let mut f = EventFields::default();
        event.record(&mut f);
        if f.message == "handing out a spare" {
            if let Some(id) = f.session {
                self.0.lock().unwrap().insert(id);
            }
        }
    }
}

#[derive(Default)]
struct EventFields {
    message: String,
    session: Option<SessionId>,
    dir: Option<PathBuf>,
    numbers: BTreeMap<&'static str, f64>,
}

impl tracing::field::Visit for EventFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "dir" => self.dir = Some(PathBuf::from(format!("{value:?}"))),
            "session" => self.session = format!("{value:?}").parse().ok(),
            _ => {}
        }
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.numbers.insert(field.name(), value);
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.numbers.insert(field.name(), value as f64);
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.numbers.insert(field.name(), value as f64);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TeardownLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "browserpool_chrome::teardown" {
            return;
        }
        let at = Instant::now();
        let mut f = EventFields::default();
        event.record(&mut f);
        let Some(id) = f.dir.as_deref().and_then(id_of) else {
            return;
        };
        let mut t = self.0.lock().unwrap();
        let m = t.entry(id).or_default();
        match f.message.as_str() {
            "kill" => {
                m.kill.get_or_insert(at);
            }
            "session processes gone" => {
                m.gone = Some(at);
                f.numbers.remove("pgid");
                m.gone_cost = f.numbers;
            }
            _ => {}
        }
    }
}

/// The host filesystem, with the start and end of every directory removal stamped on
/// the timeline.
struct TimedFs {
    os: OsFilesystem,
    timeline: Timeline,
}

impl TimedFs {
    fn stamp(&self, dir: &std::path::Path, f: impl FnOnce(&mut Marks, Instant)) {
        if let Some(id) = id_of(dir) {
            f(
                self.timeline.lock().unwrap().entry(id).or_default(),
                Instant::now(),
            );
        }
    }
}

#[async_trait::async_trait]
impl Filesystem for TimedFs {
    fn current_uid(&self) -> u32 {
        self.os.current_uid()
    }
    async fn create_dir(&self, path: &std::path::Path) -> Result<(), BackendError> {
        self.os.create_dir(path).await
    }
    async fn list_prefixed(
        &self,
        root: &std::path::Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError> {
        self.os.list_prefixed(root, prefix).await
    }
    async fn remove_dir_all(&self, path: &std::path::Path) -> Result<(), BackendError> {
        self.stamp(path, |m, t| {
            m.rm_start.get_or_insert(t);
        });
        let r = self.os.remove_dir_all(path).await;
        self.stamp(path, |m, t| m.rm_end = Some(t));
        r
    }
    fn remove_dir_all_sync(&self, path: &std::path::Path) -> Result<(), BackendError> {
        self.os.remove_dir_all_sync(path)
    }
    async fn remove_dead_marker(&self, path: &std::path::Path) -> Result<bool, BackendError> {
        self.os.remove_dead_marker(path).await
    }
    async fn lock_marker(&self, path: &std::path::Path) -> Result<MarkerLock, BackendError> {
        self.os.lock_marker(path).await
    }
    async fn probe_marker(&self, path: &std::path::Path) -> Result<MarkerState, BackendError> {
        self.os.probe_marker(path).await
    }
    async fn probe_profile(&self, path: &std::path::Path) -> Result<ProfileProbe, BackendError> {
        self.os.probe_profile(path).await
    }
}

#[derive(Default)]
struct Teardowns {
    /// Per reason: decision until the directory was removed and no process was alive.
    done: BTreeMap<&'static str, Vec<f64>>,
    /// Per phase, in ms (see `PHASES`).
    phases: BTreeMap<&'static str, Vec<f64>>,
    /// The launcher's account of each wait for the processes.
    wait_gone: BTreeMap<&'static str, Vec<f64>>,
    /// Sessions whose end was verified (no process, no directory).
    verified: BTreeSet<SessionId>,
    processes_after_dir: u64,
}

/// The phases of a teardown, in order, and what each one covers.
const PHASES: &[(&str, &str)] = &[
    (
        "decide",
        "destroy only: the client's call until the machine decided (the pool's lock)",
    ),
    (
        "start_kill",
        "the decision until the launcher's kill started (dispatch, task spawn, executor queue)",
    ),
    (
        "processes_exit",
        "kill started until the launcher's wait_gone saw no live process",
    ),
    (
        "report_gone",
        "wait_gone resolved until the machine asked for the removal (the pool's lock)",
    ),
    (
        "start_rm",
        "the removal asked until the filesystem call started (task spawn)",
    ),
    (
        "rm",
        "the removal itself, including the blocking pool's queue",
    ),
    (
        "report_removed",
        "removal done until the machine finished the session (the pool's lock)",
    ),
];

/// Verify finished teardowns (one `/proc` snapshot for all of them, every 5 ms): the
/// directory must be gone and the matcher must find no live process. The teardown ends
/// at `Finished` (the pool's word that both hold) if the check agrees, else when a
/// later check does.
async fn watch_teardowns(
    timeline: Timeline,
    teardowns: Arc<Mutex<Teardowns>>,
    dir_of: impl Fn(SessionId) -> PathBuf + Send + 'static,
) {
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
    let mut late: BTreeSet<SessionId> = BTreeSet::new();
    loop {
        let candidates: Vec<(SessionId, PathBuf)> = {
            let t = timeline.lock().unwrap();
            let v = teardowns.lock().unwrap();
            t.iter()
                .filter(|(id, m)| {
                    m.finished.is_some() && m.ending.is_some() && !v.verified.contains(id)
                })
                .map(|(id, _)| (*id, dir_of(*id)))
                .collect()
        };
        if !candidates.is_empty() {
            let dirs: Vec<PathBuf> = candidates.iter().map(|(_, d)| d.clone()).collect();
            let live = tokio::task::spawn_blocking(move || processes_of(&dirs))
                .await
                .unwrap();
            let now = Instant::now();
            let t = timeline.lock().unwrap();
            let mut v = teardowns.lock().unwrap();
            for (id, dir) in candidates {
                if live.contains_key(&dir) || procfs::exists_nofollow(&dir) {
                    late.insert(id);
                    continue;
                }
                let m = &t[&id];
                let (Some(ending), Some(finished), Some(reason)) = (m.ending, m.finished, m.reason)
                else {
                    continue;
                };
                let decided = match (reason, m.destroy_called) {
                    ("destroy", Some(c)) => c,
                    _ => ending,
                };
                let end = if late.remove(&id) {
                    v.processes_after_dir += 1;
                    now
                } else {
                    finished
                };
                v.done.entry(reason).or_default().push(ms(decided, end));
                let mut phase = |name: &'static str, a: Option<Instant>, b: Option<Instant>| {
                    if let (Some(a), Some(b)) = (a, b) {
                        v.phases.entry(name).or_default().push(ms(a, b));
                    }
                };
                if reason == "destroy" {
                    phase("decide", m.destroy_called, Some(ending));
                }
                phase("start_kill", Some(ending), m.kill);
                phase("processes_exit", m.kill, m.gone);
                phase("report_gone", m.gone, m.remove_dir);
                phase("start_rm", m.remove_dir, m.rm_start);
                phase("rm", m.rm_start, m.rm_end);
                phase("report_removed", m.rm_end, Some(finished));
                for (k, x) in &m.gone_cost {
                    v.wait_gone.entry(k).or_default().push(*x);
                }
                v.verified.insert(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------------------ main

#[derive(Default)]
struct Samples {
    acquire: Vec<f64>,
    warm_acquire: Vec<f64>,
    cold_acquire: Vec<f64>,
    failed_acquire: Vec<f64>,
    launch: Vec<f64>,
    pss_per_browser: Vec<f64>,
    processes_per_browser: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let timeline: Timeline = Arc::default();
    let warm: Warm = Arc::default();
    let subscriber = tracing_subscriber::registry()
        .with(WarmLayer(warm.clone()))
        .with(
            TeardownLayer(timeline.clone()).with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("browserpool_chrome::teardown", tracing::Level::DEBUG),
            ),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        // chromiumoxide logs every connection a teardown closes as an error.
                        .unwrap_or_else(|_| "error,chromiumoxide=off".into()),
                ),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let load_avg_1m_start = load_avg();
    let scratch_before = scratch();
    let shm_before = shm();
    let root_dir = tempfile::Builder::new()
        // Short: Chromium cannot start in a session directory over MAX_SESSION_DIR_LEN.
        .prefix("bpchurn-")
        .tempdir_in(args.root_in.clone().unwrap_or_else(std::env::temp_dir))
        .unwrap();
    let root: PathBuf = root_dir.path().to_owned();
    let mut chrome = chrome_config();
    if args.lean {
        chrome.process_model = ProcessModel::Lean;
    }
    let launcher = ChromeLauncher::new(chrome).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });

    // The floor: bare spawns of the same command, before anything else runs.
    let mut floor = Vec::new();
    for k in 0..args.floor_spawns {
        let dir = root.join(format!("floor-{k}"));
        floor.push(bare_spawn_ms(&launcher, &dir));
    }

    let config = PoolConfig::default()
        .with_max_browsers(args.max_browsers)
        .with_idle_timeout(Some(args.idle_timeout))
        .with_reap_interval(args.reap_interval)
        .with_tick(args.reap_interval.min(Duration::from_secs(1)))
        .with_root(root.clone())
        .with_spares(args.spares);
    let fs = TimedFs {
        os: OsFilesystem::new(),
        timeline: timeline.clone(),
    };
    let pool = Arc::new(
        Pool::builder(config, launcher)
            .filesystem(Arc::new(fs))
            .observe(observe(timeline.clone()))
            .build()
            .await
            .unwrap(),
    );
    let samples = Arc::new(Mutex::new(Samples::default()));
    let abandoned = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let teardowns = Arc::new(Mutex::new(Teardowns::default()));
    let watcher = {
        let pool = pool.clone();
        tokio::spawn(watch_teardowns(
            timeline.clone(),
            teardowns.clone(),
            move |id| pool.session_dir(id),
        ))
    };
    let deadline = Instant::now() + args.duration;

    // Monitor: peaks of browsers and processes (every 200 ms), PSS (every second).
    let peaks = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let monitor = {
        let (pool, peaks, samples, teardowns) = (
            pool.clone(),
            peaks.clone(),
            samples.clone(),
            teardowns.clone(),
        );
        tokio::spawn(async move {
            for round in 0u64.. {
                let st = pool.stats();
                let browsers = (st.launching + st.live + st.spares_ready + st.stopping) as u64;
                // Every session not yet verified gone.
                let dirs: Vec<PathBuf> = {
                    let t = teardowns.lock().unwrap();
                    (1..=issued(&pool))
                        .map(SessionId)
                        .filter(|id| !t.verified.contains(id))
                        .map(|id| pool.session_dir(id))
                        .collect()
                };
                let per_session = tokio::task::spawn_blocking(move || processes_of(&dirs))
                    .await
                    .unwrap_or_default();
                let procs: usize = per_session.values().sum();
                let mut pss = 0;
                if round % 5 == 0 {
                    let mem = pool.memory().await;
                    pss = mem.total.pss_bytes;
                    let mut s = samples.lock().unwrap();
                    for (_, m) in &mem.sessions {
                        s.pss_per_browser.push(m.pss_bytes as f64);
                        s.processes_per_browser.push(f64::from(m.processes));
                    }
                }
                {
                    let mut p = peaks.lock().unwrap();
                    p.0 = p.0.max(browsers);
                    p.1 = p.1.max(procs as u64);
                    p.2 = p.2.max(pss);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (pool, samples, abandoned, errors, timeline, warm) = (
            pool.clone(),
            samples.clone(),
            abandoned.clone(),
            errors.clone(),
            timeline.clone(),
            warm.clone(),
        );
        let p_abandon = args.abandon;
        let pause = args.arrival_interval;
        let max = args.max_browsers;
        let mut rng = Rng(args.seed.wrapping_mul(1_000_003).wrapping_add(c as u64));
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                // Arrivals every `pause` (the first one too, so a pool with spares has
                // had one interval to warm up, as it would between real arrivals).
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let st = pool.stats();
                let free = st.launching + st.live + st.spares_ready + st.stopping < max;
                let cold = free && st.waiting == 0;
                let t = Instant::now();
                let acquired = pool.acquire().await;
                let acquire_ms = t.elapsed().as_secs_f64() * 1e3;
                let lease = match acquired {
                    Ok(l) => l,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        samples.lock().unwrap().failed_acquire.push(acquire_ms);
                        tracing::debug!(error = %e, "acquire failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let launch_ms = lease.process().launch_duration().as_secs_f64() * 1e3;
                let was_warm = warm.lock().unwrap().remove(&lease.id());
                {
                    let mut s = samples.lock().unwrap();
                    s.acquire.push(acquire_ms);
                    if was_warm {
                        s.warm_acquire.push(acquire_ms);
                    } else if cold {
                        s.cold_acquire.push(acquire_ms);
                    }
                    s.launch.push(launch_ms);
                }
                let session = ChromeSession::new(lease);
                let id = session.id();
                let work = async {
                    let page = session
                        .new_page("data:text/html,<title>churn</title><p>work</p>")
                        .await?;
                    let _: i64 = page
                        .evaluate("1 + 1")
                        .await?
                        .into_value()
                        .map_err(|e| browserpool_chrome::ChromeError::Cdp(e.into()))?;
                    page.close().await
                };
                if work.await.is_err() {
                    // Evicted under us (another client needed the slot): expected.
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if rng.next_f64() < p_abandon {
                    // Walk away without destroying: only the pool can clean this up.
                    abandoned.fetch_add(1, Ordering::Relaxed);
                    drop(session);
                    continue;
                }
                // The decision is the client's call; `destroy` returns once the
                // directory is removed, and the watcher checks that and the processes.
                timeline
                    .lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .destroy_called = Some(Instant::now());
                let _ = pool.destroy(id).await;
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    monitor.abort();
    let _ = monitor.await;
    // Let the teardowns decided before the end finish being observed.
    let unverified = || {
        let t = timeline.lock().unwrap();
        let v = teardowns.lock().unwrap();
        t.iter()
            .filter(|(id, m)| m.ending.is_some() && !v.verified.contains(id))
            .count()
    };
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle && unverified() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let teardowns_unfinished = unverified();
    watcher.abort();
    let _ = watcher.await;

    let totals = pool.stats().totals;
    let ids = issued(&pool);
    let report = pool.shutdown().await;
    if !report.unfinished.is_empty() || !report.dirs_left.is_empty() {
        eprintln!("shutdown left work: {report:?}");
    }
    let dirs: Vec<PathBuf> = (1..=ids)
        .map(|n| pool.session_dir(SessionId(n)))
        .chain((0..args.floor_spawns).map(|k| root.join(format!("floor-{k}"))))
        .collect();
    let pool = Arc::try_unwrap(pool).ok().expect("clients are done");
    drop(pool);

    let leftover = processes_of(&dirs);
    if !leftover.is_empty() {
        eprintln!("processes left: {leftover:?}");
    }
    let leftover_processes = leftover.values().sum::<usize>() as u64;
    let leftover_dirs = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .count() as u64;
    let leftover_scratch: Vec<String> = scratch().difference(&scratch_before).cloned().collect();
    let root_name = root.display().to_string();
    let leftover_shm: Vec<String> = shm()
        .difference(&shm_before)
        .filter(|e| **e != root_name)
        .cloned()
        .collect();
    let (peak_browsers, peak_processes, peak_pss_bytes) = *peaks.lock().unwrap();
    let mut s = std::mem::take(&mut *samples.lock().unwrap());
    let mut t = std::mem::take(&mut *teardowns.lock().unwrap());
    let mut all_teardowns: Vec<f64> = t.done.values().flatten().copied().collect();
    let floor_p50 = pct(&mut floor, 0.5);
    let cold_p50 = pct(&mut s.cold_acquire, 0.5);
    let summary = Summary {
        launched: totals.created,
        destroyed: totals.destroyed,
        reaped: totals.reaped,
        evicted: totals.evicted,
        crashed: totals.crashed,
        abandoned_by_clients: abandoned.load(Ordering::Relaxed),
        client_errors: errors.load(Ordering::Relaxed),
        peak_browsers,
        peak_processes,
        peak_pss_bytes,
        acquire_ms_p50: pct(&mut s.acquire, 0.50),
        acquire_ms_p99: pct(&mut s.acquire, 0.99),
        launch_ms_p50: pct(&mut s.launch, 0.50),
        launch_ms_p99: pct(&mut s.launch, 0.99),
        teardown_ms_p50: pct(&mut all_teardowns, 0.50),
        teardown_ms_p99: pct(&mut all_teardowns, 0.99),
        teardowns_measured: all_teardowns.len(),
        leftover_processes,
        leftover_dirs,
        failed_acquires: s.failed_acquire.len() as u64,
        failed_acquire_ms_p50: pct(&mut s.failed_acquire, 0.50),
        failed_acquire_ms_p99: pct(&mut s.failed_acquire, 0.99),
        cold_acquires: s.cold_acquire.len(),
        cold_acquire_ms_p50: cold_p50,
        cold_acquire_ms_p99: pct(&mut s.cold_acquire, 0.99),
        warm_acquires: s.warm_acquire.len(),
        warm_acquire_ms_p50: (args.spares > 0).then(|| pct(&mut s.warm_acquire, 0.50)),
        warm_acquire_ms_p99: (args.spares > 0).then(|| pct(&mut s.warm_acquire, 0.99)),
        spare_hit_rate: (args.spares > 0).then(|| {
            let asked = totals.spare_hits + totals.spare_misses;
            if asked == 0 {
                0.0
            } else {
                (totals.spare_hits as f64 / asked as f64 * 1000.0).round() / 1000.0
            }
        }),
        spares: args.spares,
        arrival_interval_ms: args.arrival_interval.as_secs_f64() * 1e3,
        launch_floor_ms_p50: floor_p50,
        launch_floor_samples: floor.iter().map(|v| (v * 10.0).round() / 10.0).collect(),
        cold_acquire_to_floor_ratio_p50: if floor_p50 > 0.0 {
            ((cold_p50 / floor_p50) * 100.0).round() / 100.0
        } else {
            0.0
        },
        cold_acquire_minus_floor_ms_p50: ((cold_p50 - floor_p50) * 100.0).round() / 100.0,
        teardowns_by_reason: t
            .done
            .iter_mut()
            .map(|(k, v)| ((*k).to_owned(), Latency::of(v)))
            .collect(),
        teardown_phases_ms: PHASES
            .iter()
            .filter_map(|(name, _)| {
                Some(((*name).to_owned(), Latency::of(t.phases.get_mut(name)?)))
            })
            .collect(),
        wait_gone: t
            .wait_gone
            .iter_mut()
            .map(|(k, v)| ((*k).to_owned(), Dist::of(v)))
            .collect(),
        teardowns_with_processes_after_dir: t.processes_after_dir,
        teardowns_unfinished,
        pss_per_browser_bytes_p50: pct(&mut s.pss_per_browser, 0.5) as u64,
        processes_per_browser_p50: pct(&mut s.processes_per_browser, 0.5),
        leftover_scratch,
        leftover_shm,
        root: root.display().to_string(),
        process_model: if args.lean { "lean" } else { "standard" },
        load_avg_1m_start,
        load_avg_1m_end: load_avg(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    } else {
        println!("{summary:#?}");
    }
    drop(root_dir);
    if leftover_processes != 0
        || leftover_dirs != 0
        || !summary.leftover_scratch.is_empty()
        || !summary.leftover_shm.is_empty()
    {
        std::process::exit(1);
    }
}
