//! The turmoil scenario: one server host embedding a [`Pool`], several client hosts, a
//! seeded fault plan (partitions, holds, client crashes, server crashes, launch
//! failures) and invariants checked between simulation steps.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use browserpool::{sweep, EntryKind, Pool, PoolConfig, SessionId, Totals};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::{TcpListener, TcpStream};

use super::backend::{BackendLauncher, NetBackend};
use super::proto::{ErrorKind, Op, Reply, Request, Response};
use super::server::{serve, sim_now, CloseReason, ServerConfig, ServerEvent, ServerLog};
use crate::rng::Rng;

/// The server's TCP port.
pub const PORT: u16 = 7000;

/// Which fault kinds a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultKinds {
    /// Drop every message between a client and the server for a while (a silently
    /// vanished client: no FIN, no RST).
    pub partition: bool,
    /// Hold every message between a client and the server for a while, then deliver them
    /// (a hung client or a stalled link).
    pub hold: bool,
    /// Crash a client host (its sockets send FIN/RST), restart it later.
    pub client_crash: bool,
    /// Crash the server host and restart it with a new pool over the same backend.
    pub server_crash: bool,
    /// Make some browser launches fail.
    pub launch_failures: bool,
}

impl FaultKinds {
    /// Every fault kind on.
    pub const ALL: FaultKinds = FaultKinds {
        partition: true,
        hold: true,
        client_crash: true,
        server_crash: true,
        launch_failures: true,
    };

    /// Swarm selection: each kind on with probability 3/4, at least one on.
    pub fn swarm(seed: u64) -> FaultKinds {
        let mut rng = Rng::derive(seed, 1, 0);
        let mut k = FaultKinds {
            partition: rng.percent(75),
            hold: rng.percent(75),
            client_crash: rng.percent(75),
            server_crash: rng.percent(75),
            launch_failures: rng.percent(75),
        };
        if !(k.partition || k.hold || k.client_crash || k.server_crash) {
            k.partition = true;
        }
        k
    }
}

/// A turmoil run's parameters. [`NetScenario::new`] gives the defaults used in CI.
#[derive(Clone, Debug)]
pub struct NetScenario {
    /// Seeds turmoil's RNG, the fault plan and every client's behaviour.
    pub seed: u64,
    /// Number of client hosts.
    pub clients: usize,
    /// Length of the chaos phase (faults and traffic); then faults heal, clients stop and
    /// the convergence phase runs until its deadline.
    pub chaos: Duration,
    /// turmoil's tick. Network messages move at tick boundaries; timers inside a host
    /// fire exactly.
    pub tick: Duration,
    /// The pool's configuration (its `root` is in the simulated backend).
    pub pool: PoolConfig,
    /// The server's configuration.
    pub server: ServerConfig,
    /// Faults to inject; `None` picks them from the seed (swarm testing).
    pub faults: Option<FaultKinds>,
    /// Clients ping this often while idle on a connection (must be below
    /// `server.keepalive`).
    pub ping_every: Duration,
    /// Longest operation a client asks for.
    pub max_hold: Duration,
}

impl NetScenario {
    /// Defaults: 5 clients, a 4-browser pool with a 5-minute idle timeout, one simulated
    /// hour of chaos at a 100 ms tick, 30 s grace, 20 s keepalive.
    pub fn new(seed: u64) -> Self {
        NetScenario {
            seed,
            clients: 5,
            chaos: Duration::from_secs(3600),
            tick: Duration::from_millis(100),
            pool: PoolConfig::default()
                .with_max_browsers(4)
                .with_idle_timeout(Some(Duration::from_secs(300)))
                .with_reap_interval(Duration::from_secs(30))
                .with_tick(Duration::from_secs(1))
                .with_root(PathBuf::from("/sim/tmp")),
            server: ServerConfig {
                grace: Duration::from_secs(30),
                keepalive: Duration::from_secs(20),
                max_hold: Duration::from_secs(60),
                release_on_disconnect: true,
            },
            faults: None,
            ping_every: Duration::from_secs(5),
            max_hold: Duration::from_secs(20),
        }
    }

    fn request_timeout(&self, op: &Op) -> Duration {
        let p = &self.pool;
        let base = Duration::from_secs(10);
        match op {
            Op::Create => p.acquire_timeout + p.launch_timeout + base,
            Op::Operate { hold_ms, .. } => Duration::from_millis(*hold_ms) + base,
            Op::Destroy { .. } => self.kill_budget() + base,
            Op::Ping => base,
        }
    }

    /// How long the server may take to answer `op` on a healthy link, network included.
    fn answer_bound(&self, op: &Op) -> Duration {
        let p = &self.pool;
        let net = Duration::from_secs(2);
        match op {
            Op::Create => p.acquire_timeout + p.launch_timeout + net,
            Op::Operate { hold_ms, .. } => Duration::from_millis(*hold_ms) + net,
            Op::Destroy { .. } => self.kill_budget() + net,
            Op::Ping => net,
        }
    }

    fn kill_budget(&self) -> Duration {
        let p = &self.pool;
        p.kill_grace + p.kill_timeout * (p.kill_attempts + 1)
    }

    /// From a client's disconnect being detected to its sessions being gone.
    fn release_bound(&self) -> Duration {
        self.server.grace + self.pool.tick + self.kill_budget() + Duration::from_secs(1)
    }

    /// From a client vanishing to the server closing its connection.
    fn detect_bound(&self) -> Duration {
        self.server.keepalive + self.max_hold + Duration::from_secs(2)
    }

    /// From the end of chaos to the convergence deadline.
    pub fn settle(&self) -> Duration {
        let wind_down = self.request_timeout(&Op::Create) + self.server.grace;
        let idle = self
            .pool
            .idle_timeout
            .map_or(Duration::ZERO, |d| d + self.pool.reap_interval);
        wind_down.max(idle) + self.pool.tick + self.kill_budget() + Duration::from_secs(10)
    }
}

/// What one run did and which invariants it broke.
#[derive(Clone, Debug, Default)]
pub struct NetReport {
    /// The seed.
    pub seed: u64,
    /// The faults that were enabled.
    pub faults: Option<FaultKinds>,
    /// The backend ("fake" or "world").
    pub backend: &'static str,
    /// Simulated time covered (chaos plus convergence).
    pub simulated: Duration,
    /// `Sim::step` calls.
    pub steps: u64,
    /// Requests sent by clients.
    pub requests: u64,
    /// Requests answered with success.
    pub ok: u64,
    /// Requests answered with an error, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Requests that timed out or whose connection broke (all during a fault).
    pub unanswered: u64,
    /// Faults injected, by kind.
    pub injected: BTreeMap<&'static str, u64>,
    /// Connections closed by the server, by reason.
    pub disconnects: BTreeMap<String, u64>,
    /// Sessions put on notice by `release_owner`.
    pub released: u64,
    /// Server incarnations (1 + restarts).
    pub incarnations: usize,
    /// Orphan browsers killed by startup sweeps.
    pub sweep_killed: u64,
    /// Directories removed by startup sweeps.
    pub sweep_removed: u64,
    /// Most browsers alive at once (all incarnations).
    pub peak_alive: usize,
    /// Browsers launched.
    pub launched: usize,
    /// Lifecycle totals summed over incarnations.
    pub totals: Totals,
    /// How long after the end of chaos the system reached 0 sessions, 0 browsers and 0
    /// directories.
    pub converged_after: Option<Duration>,
    /// FNV-1a hash of every client request (client, operation, send and answer times,
    /// outcome), in order: two runs of the same seed give the same hash.
    pub trace_hash: u64,
    /// Invariant violations, in the order found (empty on success).
    pub violations: Vec<String>,
}

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Err(ErrorKind),
    Timeout,
    Broken,
    Garbled,
}

#[derive(Clone, Debug)]
struct Record {
    client: usize,
    op: Op,
    conn_opened: Duration,
    sent: Duration,
    done: Duration,
    outcome: Outcome,
}

struct Incarnation {
    instance: String,
    pool: Option<Arc<Pool<BackendLauncher>>>,
    ready_at: Duration,
    down_at: Option<Duration>,
    log: ServerLog,
    log_seen: usize,
    hard_crashed: bool,
}

#[derive(Default)]
struct Shared {
    stop: Cell<bool>,
    records: RefCell<Vec<Record>>,
    lives: RefCell<Vec<u64>>,
    incarnations: RefCell<Vec<Incarnation>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientFault {
    Partition,
    Hold,
    Crash,
}

impl ClientFault {
    fn label(self) -> &'static str {
        match self {
            ClientFault::Partition => "partition",
            ClientFault::Hold => "hold",
            ClientFault::Crash => "client_crash",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Nemesis {
    ClientStart(usize, ClientFault),
    ClientEnd(usize, ClientFault),
    ServerCrash { hard: bool },
    ServerRestart,
    FailLaunches(u32),
}

/// A fault window on one client's link: `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Window {
    client: usize,
    kind: ClientFault,
    start: Duration,
    end: Duration,
}

fn plan(s: &NetScenario, kinds: FaultKinds) -> (Vec<(Duration, Nemesis)>, Vec<Window>) {
    let mut rng = Rng::derive(s.seed, 2, 0);
    let mut events = Vec::new();
    let mut windows = Vec::new();
    let secs = |d: u64| Duration::from_secs(d);
    let last = s.chaos.saturating_sub(secs(60));
    let mut client_kinds = Vec::new();
    if kinds.partition {
        client_kinds.push(ClientFault::Partition);
    }
    if kinds.hold {
        client_kinds.push(ClientFault::Hold);
    }
    if kinds.client_crash {
        client_kinds.push(ClientFault::Crash);
    }
    if !client_kinds.is_empty() {
        for c in 0..s.clients {
            let mut t = rng.millis(60_000, 600_000);
            while t < last {
                let kind = client_kinds[rng.below(client_kinds.len() as u64) as usize];
                let end = (t + rng.millis(30_000, 360_000)).min(last);
                events.push((t, Nemesis::ClientStart(c, kind)));
                events.push((end, Nemesis::ClientEnd(c, kind)));
                windows.push(Window {
                    client: c,
                    kind,
                    start: t,
                    end,
                });
                t = end + rng.millis(120_000, 900_000);
            }
        }
    }
    if kinds.server_crash && s.chaos > secs(900) {
        let n = 1 + rng.below(2);
        let span = (s.chaos - secs(600)).as_millis() as u64;
        let mut t = secs(300) + Duration::from_millis(rng.below(span / n));
        for i in 0..n {
            if t >= s.chaos - secs(300) {
                break;
            }
            events.push((t, Nemesis::ServerCrash { hard: i == 0 }));
            let up = t + rng.millis(2_000, 60_000);
            events.push((up, Nemesis::ServerRestart));
            t = up + secs(180) + Duration::from_millis(rng.below(span / n));
        }
    }
    if kinds.launch_failures {
        for _ in 0..(3 + rng.below(4)) {
            let t = Duration::from_millis(rng.below(last.as_millis() as u64));
            events.push((t, Nemesis::FailLaunches(1 + rng.below(2) as u32)));
        }
    }
    events.sort_by_key(|(t, _)| *t);
    (events, windows)
}

/// A client's connection.
struct Conn {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    opened: Duration,
    seq: u64,
}

/// The connection is unusable (timeout, reset, EOF, garbage); drop it and reconnect.
struct Broken;

struct ClientCtx {
    idx: usize,
    rng: Rng,
    shared: Rc<Shared>,
    scenario: Rc<NetScenario>,
}

impl ClientCtx {
    fn stopping(&self) -> bool {
        self.shared.stop.get()
    }

    async fn call(&mut self, conn: &mut Conn, op: Op) -> Result<Reply, Broken> {
        conn.seq += 1;
        let seq = conn.seq;
        let req = Request {
            seq,
            op: op.clone(),
        };
        let sent = sim_now();
        let mut line = serde_json::to_string(&req).map_err(|_| Broken)?;
        line.push('\n');
        let timeout = self.scenario.request_timeout(&op);
        let res = tokio::time::timeout(timeout, async {
            conn.write.write_all(line.as_bytes()).await?;
            conn.lines.next_line().await
        })
        .await;
        let (outcome, reply) = match res {
            Err(_) => (Outcome::Timeout, None),
            Ok(Err(_)) | Ok(Ok(None)) => (Outcome::Broken, None),
            Ok(Ok(Some(l))) => match serde_json::from_str::<Response>(&l) {
                Ok(r) if r.seq == seq => {
                    let o = match &r.reply {
                        Reply::Error { kind, .. } => Outcome::Err(*kind),
                        _ => Outcome::Ok,
                    };
                    (o, Some(r.reply))
                }
                _ => (Outcome::Garbled, None),
            },
        };
        self.shared.records.borrow_mut().push(Record {
            client: self.idx,
            op,
            conn_opened: conn.opened,
            sent,
            done: sim_now(),
            outcome,
        });
        reply.ok_or(Broken)
    }

    /// Stay idle on `conn` for `d`, pinging so the server's keepalive stays satisfied.
    /// Returns early when the run is stopping.
    async fn idle(&mut self, conn: &mut Conn, d: Duration) -> Result<(), Broken> {
        let mut left = d;
        while !left.is_zero() && !self.stopping() {
            let step = left.min(self.scenario.ping_every);
            tokio::time::sleep(step).await;
            left -= step;
            if !left.is_zero() && !self.stopping() {
                self.call(conn, Op::Ping).await?;
            }
        }
        Ok(())
    }

    /// Sessions on one connection until it breaks, the client drops it, or the run stops.
    async fn sessions(&mut self, conn: &mut Conn) -> Result<(), Broken> {
        loop {
            if self.stopping() {
                return Ok(());
            }
            let think = self.rng.millis(0, 60_000);
            self.idle(conn, think).await?;
            if self.stopping() {
                return Ok(());
            }
            let id = match self.call(conn, Op::Create).await? {
                Reply::Created { id } => id,
                _ => continue,
            };
            let ops = 1 + self.rng.below(5);
            for _ in 0..ops {
                let gap = self.rng.millis(0, 90_000);
                self.idle(conn, gap).await?;
                if self.stopping() {
                    return Ok(());
                }
                let hold_ms = self
                    .rng
                    .below(self.scenario.max_hold.as_millis() as u64 + 1);
                if !matches!(
                    self.call(conn, Op::Operate { id, hold_ms }).await?,
                    Reply::Operated
                ) {
                    break;
                }
            }
            match self.rng.below(100) {
                0..=64 => {
                    self.call(conn, Op::Destroy { id }).await?;
                }
                65..=84 => {}       // forget it, stay connected
                _ => return Ok(()), // drop the connection without destroying
            }
        }
    }

    async fn run(mut self) -> turmoil::Result {
        while !self.stopping() {
            let connect = TcpStream::connect(("server", PORT));
            let stream = match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(s)) => s,
                _ => {
                    let back_off = self.rng.millis(500, 5_000);
                    tokio::time::sleep(back_off).await;
                    continue;
                }
            };
            let (read, write) = stream.into_split();
            let mut conn = Conn {
                lines: BufReader::new(read).lines(),
                write,
                opened: sim_now(),
                seq: 0,
            };
            let _ = self.sessions(&mut conn).await;
            drop(conn);
            let pause = self.rng.millis(0, 10_000);
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

fn client_name(i: usize) -> String {
    format!("c{i}")
}

struct Checker {
    s: Rc<NetScenario>,
    shared: Rc<Shared>,
    backend: NetBackend,
    report: NetReport,
    /// Incarnations whose post-sweep state was checked.
    sweep_checked: usize,
    /// (incarnation, sessions, deadline)
    releases: Vec<(usize, Vec<SessionId>, Duration)>,
    /// Open server connections: (incarnation, conn) -> peer ip.
    open: BTreeMap<(usize, u64), IpAddr>,
    /// (incarnation, conn, client, deadline)
    detections: Vec<(usize, u64, usize, Duration)>,
    client_ips: Vec<IpAddr>,
}

impl Checker {
    fn violation(&mut self, now: Duration, msg: String) {
        if self.report.violations.len() < 50 {
            self.report
                .violations
                .push(format!("seed {} at {:?}: {msg}", self.s.seed, now));
        }
    }

    fn current(&self) -> Option<usize> {
        let incs = self.shared.incarnations.borrow();
        let i = incs.len().checked_sub(1)?;
        incs[i].down_at.is_none().then_some(i)
    }

    fn check(&mut self, now: Duration) {
        let max = self.s.pool.max_browsers;
        // Bound: live browsers, all incarnations together, never exceed max_browsers.
        let alive = self.backend.live_dirs().len();
        self.report.peak_alive = self.report.peak_alive.max(alive);
        if alive > max {
            self.violation(now, format!("{alive} browsers alive > max_browsers {max}"));
        }
        let cur = self.current();
        if let Some(i) = cur {
            let pool = self.shared.incarnations.borrow()[i].pool.clone();
            if let Some(pool) = pool {
                let st = pool.stats();
                let held = st.launching + st.live + st.stopping;
                if held > max {
                    self.violation(now, format!("pool holds {held} browser slots > {max}"));
                }
            }
        }
        self.check_new_incarnations(now);
        self.drain_logs(now);
        self.check_releases(now, cur);
        self.check_detections(now, cur);
    }

    /// After a restart's sweep, nothing of an older incarnation remains.
    fn check_new_incarnations(&mut self, now: Duration) {
        let n = self.shared.incarnations.borrow().len();
        while self.sweep_checked < n {
            let i = self.sweep_checked;
            self.sweep_checked += 1;
            let (instance, report) = {
                let incs = self.shared.incarnations.borrow();
                let inc = &incs[i];
                let report = inc.pool.as_ref().map(|p| p.sweep_report().clone());
                (inc.instance.clone(), report)
            };
            if let Some(r) = report {
                self.report.sweep_killed += r.killed.len() as u64;
                self.report.sweep_removed += r.removed.len() as u64;
                if !r.failed.is_empty() {
                    self.violation(now, format!("incarnation {i} sweep failed: {:?}", r.failed));
                }
            }
            let prefix = self.s.pool.prefix.clone();
            for (inst, count) in self.backend.alive_by_instance(&prefix) {
                if inst != instance {
                    self.violation(
                        now,
                        format!(
                            "after incarnation {i}'s sweep, {count} browsers of {inst:?} alive"
                        ),
                    );
                }
            }
            for (path, _) in self.backend.entries() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let other = match sweep::parse_name(&prefix, &name) {
                    sweep::ParsedName::Session { instance: x, .. }
                    | sweep::ParsedName::Marker { instance: x } => x != instance,
                    sweep::ParsedName::Other => true,
                };
                if other {
                    self.violation(
                        now,
                        format!("after incarnation {i}'s sweep, {} remains", path.display()),
                    );
                }
            }
        }
    }

    fn drain_logs(&mut self, _now: Duration) {
        let n = self.shared.incarnations.borrow().len();
        for i in 0..n {
            let events = {
                let mut incs = self.shared.incarnations.borrow_mut();
                let inc = &mut incs[i];
                let ev = inc.log.since(inc.log_seen);
                inc.log_seen += ev.len();
                ev
            };
            for e in events {
                match e {
                    ServerEvent::Opened { conn, peer, .. } => {
                        self.open.insert((i, conn), peer.ip());
                    }
                    ServerEvent::Closed {
                        conn,
                        reason,
                        sessions,
                        released,
                        at,
                        ..
                    } => {
                        self.open.remove(&(i, conn));
                        let label = match reason {
                            CloseReason::Eof => "eof",
                            CloseReason::IoError => "io_error",
                            CloseReason::KeepaliveTimeout => "keepalive_timeout",
                        };
                        *self.report.disconnects.entry(label.to_owned()).or_insert(0) += 1;
                        self.report.released += released as u64;
                        if !sessions.is_empty() {
                            self.releases
                                .push((i, sessions, at + self.s.release_bound()));
                        }
                    }
                }
            }
        }
    }

    /// A disconnected client's sessions are gone within grace + reap + kill bounds.
    fn check_releases(&mut self, now: Duration, cur: Option<usize>) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.releases)
            .into_iter()
            .partition(|(_, _, deadline)| *deadline <= now);
        self.releases = later;
        for (i, sessions, deadline) in due {
            if cur != Some(i) {
                continue; // that incarnation crashed; the sweep check covers it
            }
            let Some(pool) = self.shared.incarnations.borrow()[i].pool.clone() else {
                continue;
            };
            for id in sessions {
                let ended = pool.session(id).is_err();
                let dir = pool.session_dir(id);
                let alive = self.backend.live_dirs().contains(&dir);
                if !ended || alive {
                    self.violation(
                        now,
                        format!(
                            "session {id} of a disconnected client still {} at its release deadline {deadline:?}",
                            if alive { "has a live browser" } else { "live in the pool" }
                        ),
                    );
                }
            }
        }
    }

    /// A client that vanished (partition, hold, crash) is detected within the keepalive
    /// bound.
    fn check_detections(&mut self, now: Duration, cur: Option<usize>) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.detections)
            .into_iter()
            .partition(|(_, _, _, deadline)| *deadline <= now);
        self.detections = later;
        for (i, conn, client, deadline) in due {
            if cur == Some(i) && self.open.contains_key(&(i, conn)) {
                self.violation(
                    now,
                    format!(
                        "connection {conn} of vanished client c{client} still open at {deadline:?}"
                    ),
                );
            }
        }
    }

    fn client_vanished(&mut self, now: Duration, client: usize, until: Duration) {
        let Some(i) = self.current() else { return };
        let deadline = now + self.s.detect_bound();
        if until < deadline {
            return; // the fault heals before the bound; nothing to require
        }
        let ip = self.client_ips[client];
        let conns: Vec<u64> = self
            .open
            .iter()
            .filter(|((inc, _), peer)| *inc == i && **peer == ip)
            .map(|((_, c), _)| *c)
            .collect();
        for c in conns {
            self.detections.push((i, c, client, deadline));
        }
    }

    fn converged(&self) -> bool {
        let Some(i) = self.current() else {
            return false;
        };
        let Some(pool) = self.shared.incarnations.borrow()[i].pool.clone() else {
            return false;
        };
        let st = pool.stats();
        st.launching + st.live + st.stopping + st.removing + st.waiting == 0
            && !self.open.keys().any(|(inc, _)| *inc == i)
            && self.backend.live_dirs().is_empty()
            && !self
                .backend
                .entries()
                .iter()
                .any(|(_, k)| *k == EntryKind::Dir)
    }

    fn describe_unconverged(&self) -> String {
        let stats = self.current().and_then(|i| {
            self.shared.incarnations.borrow()[i]
                .pool
                .as_ref()
                .map(|p| p.stats())
        });
        let open: Vec<_> = self.open.keys().collect();
        format!(
            "not converged: pool (launching, live, stopping, removing, waiting) {:?}, server connections still open {open:?}, {} browsers alive, dirs {:?}",
            stats.map(|s| (s.launching, s.live, s.stopping, s.removing, s.waiting)),
            self.backend.live_dirs().len(),
            self.backend.entries()
        )
    }
}

fn overlaps(a0: Duration, a1: Duration, b0: Duration, b1: Duration) -> bool {
    a0 <= b1 && b0 <= a1
}

/// Run one scenario to its convergence deadline and check every invariant:
///
/// - **bound**: live browsers (all server incarnations together) never exceed
///   `max_browsers`, and the pool never holds more slots than that;
/// - **answers**: every request on a connection that no fault touched (no fault on the
///   client's link and no server crash between the connection's opening and the answer)
///   is answered, success or a clear error, within the operation's bound; no answer is
///   garbled or a `bad_request`;
/// - **detection**: a client that vanished without FIN (partition, hold) or crashed has
///   its connections closed by the server within `keepalive + max_hold + 2 s`;
/// - **release**: sessions of a closed connection are ended, browser dead, within
///   `grace + tick + kill budget + 1 s` of the close;
/// - **sweep**: when a restarted server's pool is up, no browser, directory or marker of
///   an earlier incarnation remains;
/// - **convergence**: after chaos ends (faults healed, clients stop), by
///   [`NetScenario::settle`] there are 0 sessions, 0 live browsers, 0 directories and 0
///   open server connections (a half-open connection left by a partition counts).
///
/// Runs on the fake backend ([`NetBackend::fake`]); see [`run_on`] for the simulated
/// world.
pub fn run(s: &NetScenario) -> NetReport {
    run_on(s, NetBackend::fake())
}

/// [`run`] on the simulated world of `browserpool_sim::world` (rooted at the pool's
/// root, its own draws seeded from the scenario's seed).
pub fn run_world(s: &NetScenario) -> NetReport {
    run_on(s, NetBackend::world(s.pool.root.clone(), s.seed))
}

/// [`run`] on a given backend. The backend must be fresh (nothing launched yet) and,
/// for [`NetBackend::World`], rooted at `s.pool.root`.
pub fn run_on(s: &NetScenario, backend: NetBackend) -> NetReport {
    let kinds = s.faults.unwrap_or_else(|| FaultKinds::swarm(s.seed));
    let (events, windows) = plan(s, kinds);
    let scenario = Rc::new(s.clone());
    let shared = Rc::new(Shared::default());
    shared.lives.borrow_mut().resize(s.clients, 0);
    let fail_next = Arc::new(AtomicU32::new(0));
    let settle = s.settle();
    let total = s.chaos + settle;

    let mut sim = turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(s.seed)
        .tick_duration(s.tick)
        .simulation_duration(total + Duration::from_secs(3600))
        .build();

    {
        let shared = shared.clone();
        let backend = backend.clone();
        let fail_next = fail_next.clone();
        let scenario = scenario.clone();
        sim.host("server", move || {
            let shared = shared.clone();
            let backend = backend.clone();
            let fail_next = fail_next.clone();
            let scenario = scenario.clone();
            async move {
                let idx = shared.incarnations.borrow().len();
                let instance = sweep::instance_from(
                    Rng::derive(scenario.seed, 1000 + idx as u64, 0).next_u64(),
                );
                let (launcher, fs) = backend.start(idx as u32, fail_next);
                let pool = Pool::builder(scenario.pool.clone(), launcher)
                    .filesystem(fs)
                    .instance(instance.clone())
                    .build()
                    .await?;
                let pool = Arc::new(pool);
                let log = ServerLog::new();
                shared.incarnations.borrow_mut().push(Incarnation {
                    instance,
                    pool: Some(pool.clone()),
                    ready_at: sim_now(),
                    down_at: None,
                    log: log.clone(),
                    log_seen: 0,
                    hard_crashed: false,
                });
                let listener = TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
                serve(
                    listener,
                    pool,
                    scenario.server.clone(),
                    format!("s{idx}"),
                    log,
                )
                .await?;
                Ok(())
            }
        });
    }
    for c in 0..s.clients {
        let shared = shared.clone();
        let scenario = scenario.clone();
        sim.host(client_name(c), move || {
            let shared = shared.clone();
            let scenario = scenario.clone();
            let life = {
                let mut lives = shared.lives.borrow_mut();
                lives[c] += 1;
                lives[c]
            };
            let rng = Rng::derive(scenario.seed, (c as u64 + 1) << 32 | life, 0);
            ClientCtx {
                idx: c,
                rng,
                shared,
                scenario,
            }
            .run()
        });
    }

    let client_ips = (0..s.clients).map(|c| sim.lookup(client_name(c))).collect();
    let mut ck = Checker {
        s: scenario.clone(),
        shared: shared.clone(),
        backend: backend.clone(),
        report: NetReport {
            seed: s.seed,
            faults: Some(kinds),
            backend: backend.name(),
            ..NetReport::default()
        },
        sweep_checked: 0,
        releases: Vec::new(),
        open: BTreeMap::new(),
        detections: Vec::new(),
        client_ips,
    };

    let mut next_event = 0;
    let mut active: BTreeSet<(usize, u8)> = BTreeSet::new();
    let mut crashed_clients: BTreeSet<usize> = BTreeSet::new();
    let mut down_since: Option<Duration> = None;
    let mut healed = false;
    let window_end = |c: usize, kind: ClientFault, start: Duration| {
        windows
            .iter()
            .find(|w| w.client == c && w.kind == kind && w.start == start)
            .map_or(start, |w| w.end)
    };

    loop {
        let now = sim.elapsed();
        if now >= total {
            break;
        }
        if !healed && now >= s.chaos {
            healed = true;
            // End of chaos: heal every link, restart a crashed server, stop the clients.
            for (c, k) in std::mem::take(&mut active) {
                let name = client_name(c);
                match k {
                    0 => sim.repair(name.as_str(), "server"),
                    1 => sim.release(name.as_str(), "server"),
                    _ => {}
                }
            }
            if down_since.take().is_some() {
                sim.bounce("server");
            }
            shared.stop.set(true);
        }
        while !healed && next_event < events.len() && events[next_event].0 <= now {
            let (at, ev) = events[next_event];
            next_event += 1;
            match ev {
                Nemesis::ClientStart(c, kind) => {
                    let name = client_name(c);
                    *ck.report.injected.entry(kind.label()).or_insert(0) += 1;
                    match kind {
                        ClientFault::Partition => {
                            sim.partition(name.as_str(), "server");
                            active.insert((c, 0));
                        }
                        ClientFault::Hold => {
                            sim.hold(name.as_str(), "server");
                            active.insert((c, 1));
                        }
                        ClientFault::Crash => {
                            sim.crash(name.as_str());
                            crashed_clients.insert(c);
                        }
                    }
                    ck.client_vanished(now, c, window_end(c, kind, at));
                }
                Nemesis::ClientEnd(c, kind) => {
                    let name = client_name(c);
                    match kind {
                        ClientFault::Partition => {
                            sim.repair(name.as_str(), "server");
                            active.remove(&(c, 0));
                        }
                        ClientFault::Hold => {
                            sim.release(name.as_str(), "server");
                            active.remove(&(c, 1));
                        }
                        ClientFault::Crash => {
                            sim.bounce(name.as_str());
                            crashed_clients.remove(&c);
                        }
                    }
                }
                Nemesis::ServerCrash { hard } => {
                    if down_since.is_some() {
                        continue;
                    }
                    *ck.report
                        .injected
                        .entry(if hard {
                            "server_crash_hard"
                        } else {
                            "server_crash_soft"
                        })
                        .or_insert(0) += 1;
                    down_since = Some(now);
                    let (dropped, marker) = {
                        let mut incs = shared.incarnations.borrow_mut();
                        match incs.last_mut() {
                            Some(inc) if inc.down_at.is_none() => {
                                inc.down_at = Some(now);
                                let marker = s
                                    .pool
                                    .root
                                    .join(sweep::marker_name(&s.pool.prefix, &inc.instance));
                                if hard {
                                    // No destructor runs: the pool is kept (and later
                                    // leaked), so nothing it owns is cleaned up.
                                    inc.hard_crashed = true;
                                    (None, Some(marker))
                                } else {
                                    (inc.pool.take(), Some(marker))
                                }
                            }
                            _ => (None, None),
                        }
                    };
                    sim.crash("server");
                    // Soft crash: destructors run (the Drop safety net cleans up).
                    drop(dropped);
                    // The process is gone: the OS releases its marker lock, nothing else
                    // (browsers and directories survive unless a destructor removed them).
                    if let Some(marker) = marker {
                        backend.server_died(&marker);
                    }
                }
                Nemesis::ServerRestart => {
                    if down_since.take().is_some() {
                        sim.bounce("server");
                    }
                }
                Nemesis::FailLaunches(n) => {
                    *ck.report.injected.entry("launch_failure").or_insert(0) += u64::from(n);
                    fail_next.store(n, Ordering::Release);
                }
            }
        }
        if let Err(e) = sim.step() {
            ck.violation(now, format!("a host failed: {e}"));
            break;
        }
        ck.report.steps += 1;
        let now = sim.elapsed();
        backend.set_now(now.as_millis() as u64);
        for v in backend.take_violations() {
            ck.violation(now, format!("backend: {v}"));
        }
        ck.check(now);
        if healed && ck.report.converged_after.is_none() && ck.converged() {
            ck.report.converged_after = Some(now - s.chaos);
        }
    }
    let end = sim.elapsed();
    ck.report.simulated = end;
    if !ck.converged() {
        let msg = ck.describe_unconverged();
        ck.violation(
            end,
            format!("convergence deadline (chaos end + {settle:?}): {msg}"),
        );
    }

    // Server down windows: from a crash until the next incarnation's pool is up.
    let server_down: Vec<(Duration, Duration)> = {
        let incs = shared.incarnations.borrow();
        incs.iter()
            .enumerate()
            .filter_map(|(i, inc)| {
                let down = inc.down_at?;
                Some((down, incs.get(i + 1).map_or(end, |n| n.ready_at)))
            })
            .collect()
    };
    // Answers: every request on an untouched connection is answered within its bound.
    let records = shared.records.borrow().clone();
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for r in &records {
        let line = format!(
            "c{} {:?} {} {} {:?}\n",
            r.client,
            r.op,
            r.sent.as_millis(),
            r.done.as_millis(),
            r.outcome
        );
        hash = fnv1a(hash, line.as_bytes());
        ck.report.requests += 1;
        match r.outcome {
            Outcome::Ok => ck.report.ok += 1,
            Outcome::Err(k) => {
                *ck.report.errors.entry(format!("{k:?}")).or_insert(0) += 1;
            }
            Outcome::Timeout | Outcome::Broken | Outcome::Garbled => ck.report.unanswered += 1,
        }
        let touched = windows
            .iter()
            .filter(|w| w.client == r.client)
            .any(|w| overlaps(w.start, w.end, r.conn_opened, r.done))
            || server_down
                .iter()
                .any(|(a, b)| overlaps(*a, *b, r.conn_opened, r.done));
        let bad = match r.outcome {
            Outcome::Garbled => Some("a garbled or mismatched answer".to_owned()),
            Outcome::Err(ErrorKind::BadRequest) => Some("a bad_request answer".to_owned()),
            Outcome::Timeout | Outcome::Broken if !touched => Some(format!(
                "no answer ({:?}) on an untouched connection",
                r.outcome
            )),
            Outcome::Ok | Outcome::Err(_) if !touched => {
                let took = r.done.saturating_sub(r.sent);
                let bound = s.answer_bound(&r.op);
                (took > bound).then(|| format!("answered after {took:?} > bound {bound:?}"))
            }
            _ => None,
        };
        if let Some(why) = bad {
            ck.violation(
                r.done,
                format!(
                    "client c{} request {:?} sent at {:?}: {why}",
                    r.client, r.op, r.sent
                ),
            );
        }
    }

    ck.report.trace_hash = hash;
    // Totals over every incarnation; hard-crashed pools are never dropped (a crash runs
    // no destructors), so they are leaked here on purpose.
    ck.report.incarnations = shared.incarnations.borrow().len();
    ck.report.launched = backend.launched() as usize;
    let mut incs = std::mem::take(&mut *shared.incarnations.borrow_mut());
    let mut totals = Totals::default();
    for inc in &incs {
        if let Some(p) = &inc.pool {
            let t = p.stats().totals;
            totals.created += t.created;
            totals.destroyed += t.destroyed;
            totals.reaped += t.reaped;
            totals.evicted += t.evicted;
            totals.owner_released += t.owner_released;
            totals.launch_failed += t.launch_failed;
            totals.rejected += t.rejected;
            totals.wait_timeouts += t.wait_timeouts;
            totals.abandoned += t.abandoned;
        }
    }
    ck.report.totals = totals;
    drop(sim);
    for inc in incs.drain(..) {
        if inc.hard_crashed {
            std::mem::forget(inc.pool);
        }
    }
    ck.report
}
