//! Scenarios: what a run simulates (TOML, documented in `sim/README.md`), the named
//! presets, and the per-seed swarm draw of which faults are on.

use std::path::PathBuf;
use std::time::Duration;

use browserpool::{Backoff, CapacityPolicy, LegacyPattern, LegacyShape, PoolConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rng::Rng;

mod check;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not a preset name and not a readable file.
    #[error("{name:?} is neither a preset ({presets}) nor a readable scenario file: {source}")]
    NotFound {
        /// What was asked for.
        name: String,
        /// The preset names.
        presets: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The file is not valid scenario TOML.
    #[error("scenario {name:?} is not valid: {message}")]
    Invalid {
        /// The file or preset.
        name: String,
        /// What the parser said.
        message: String,
    },
}

/// A scenario's `capacity_policy`: `"evict_lru"`, `"reject"` or `"wait"`. Any other
/// string is an error naming the field and the allowed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyName {
    /// [`CapacityPolicy::EvictLru`].
    EvictLru,
    /// [`CapacityPolicy::Reject`].
    Reject,
    /// [`CapacityPolicy::Wait`], waiting `acquire_timeout_secs`.
    Wait,
}

impl PolicyName {
    const ALL: [(&'static str, PolicyName); 3] = [
        ("evict_lru", PolicyName::EvictLru),
        ("reject", PolicyName::Reject),
        ("wait", PolicyName::Wait),
    ];

    /// Its name in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::EvictLru => "evict_lru",
            PolicyName::Reject => "reject",
            PolicyName::Wait => "wait",
        }
    }
}

impl Serialize for PolicyName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PolicyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        PolicyName::ALL
            .iter()
            .find(|(n, _)| *n == v)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "capacity_policy = {v:?} is not a policy: use \"evict_lru\", \"reject\" or \"wait\""
                ))
            })
    }
}

/// A scenario's legacy pattern: `{ prefix = "chromelambda-", shape = "uuid" }`
/// ([`LegacyPattern`]). The only shape is `"uuid"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacySpec {
    /// The literal prefix.
    pub prefix: String,
    /// What follows it.
    pub shape: ShapeName,
}

/// The shape of a [`LegacySpec`]: `"uuid"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeName(pub LegacyShape);

impl Serialize for ShapeName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            LegacyShape::Uuid => s.serialize_str("uuid"),
        }
    }
}

impl<'de> Deserialize<'de> for ShapeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "uuid" => Ok(ShapeName(LegacyShape::Uuid)),
            other => Err(serde::de::Error::custom(format!(
                "legacy shape = {other:?} is not a shape: use \"uuid\""
            ))),
        }
    }
}

/// The pool configuration of one side of the comparison, in scenario units (seconds).
/// Omitted fields take `browserpool`'s defaults (for `[unmanaged]`: the old behaviour,
/// [`PoolSpec::unmanaged`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSpec {
    /// `max_browsers`.
    pub max_browsers: usize,
    /// Idle timeout in seconds; 0 turns the reaper off (`None`).
    pub idle_timeout_secs: f64,
    /// `reap_interval` in seconds.
    pub reap_interval_secs: f64,
    /// `tick` in seconds.
    pub tick_secs: f64,
    /// `"evict_lru"`, `"reject"` or `"wait"`.
    pub capacity_policy: PolicyName,
    /// `acquire_timeout` (and the `wait` policy's timeout) in seconds.
    pub acquire_timeout_secs: f64,
    /// `max_lifetime` in seconds; 0 means none.
    pub max_lifetime_secs: f64,
    /// `max_uses`; 0 means none.
    pub max_uses: u64,
    /// `launch_timeout` in seconds.
    pub launch_timeout_secs: f64,
    /// `kill_grace` in seconds.
    pub kill_grace_secs: f64,
    /// `kill_timeout` in seconds.
    pub kill_timeout_secs: f64,
    /// `kill_attempts`.
    pub kill_attempts: u32,
    /// Run the startup sweep at every start.
    pub sweep_on_start: bool,
    /// Grace period before a disconnected client's sessions are released (owner API);
    /// negative means the server never releases owners (the old behaviour).
    pub release_grace_secs: f64,
    /// `legacy`: leftover names of an old server the startup sweep may remove.
    pub legacy: Vec<LegacySpec>,
    /// `legacy_min_age` in seconds.
    pub legacy_min_age_secs: f64,
    /// `spares`: launched, never-used browsers kept ready (0 = none).
    pub spares: usize,
    /// `spare_max_age` in seconds.
    pub spare_max_age_secs: f64,
    /// `memory_budget` in MiB of summed PSS; 0 means none.
    pub memory_budget_mib: u64,
    /// `max_session_memory` in MiB of PSS; 0 means none.
    pub max_session_memory_mib: u64,
    /// `memory_interval` in seconds.
    pub memory_interval_secs: f64,
}

impl Default for PoolSpec {
    fn default() -> Self {
        let d = PoolConfig::default();
        PoolSpec {
            max_browsers: d.max_browsers,
            idle_timeout_secs: d.idle_timeout.map_or(0.0, |t| t.as_secs_f64()),
            reap_interval_secs: d.reap_interval.as_secs_f64(),
            tick_secs: d.tick.as_secs_f64(),
            capacity_policy: PolicyName::EvictLru,
            acquire_timeout_secs: d.acquire_timeout.as_secs_f64(),
            max_lifetime_secs: 0.0,
            max_uses: 0,
            launch_timeout_secs: d.launch_timeout.as_secs_f64(),
            kill_grace_secs: d.kill_grace.as_secs_f64(),
            kill_timeout_secs: d.kill_timeout.as_secs_f64(),
            kill_attempts: d.kill_attempts,
            sweep_on_start: true,
            release_grace_secs: 30.0,
            legacy: Vec::new(),
            legacy_min_age_secs: d.legacy_min_age.as_secs_f64(),
            spares: d.spares,
            spare_max_age_secs: d.spare_max_age.as_secs_f64(),
            memory_budget_mib: 0,
            max_session_memory_mib: 0,
            memory_interval_secs: d.memory_interval.as_secs_f64(),
        }
    }
}

/// `[unmanaged]`: the fields the file gives, over the old behaviour
/// ([`PoolSpec::unmanaged`]) rather than the managed pool's defaults.
fn unmanaged_spec<'de, D: Deserializer<'de>>(d: D) -> Result<PoolSpec, D::Error> {
    use serde::de::Error;
    let given = toml::Table::deserialize(d)?;
    let base = PoolSpec::unmanaged(PoolConfig::default().max_browsers);
    let mut merged = match toml::Value::try_from(&base) {
        Ok(toml::Value::Table(t)) => t,
        Ok(other) => return Err(D::Error::custom(format!("[unmanaged]: {other:?}"))),
        Err(e) => return Err(D::Error::custom(format!("[unmanaged]: {e}"))),
    };
    let all = {
        let mut all = merged.clone();
        all.extend(given.clone());
        all
    };
    toml::Value::Table(all)
        .try_into()
        .map_err(|e: toml::de::Error| {
            // The merged table has no source positions; name the key that fails on its own.
            let culprit = given.iter().find_map(|(k, v)| {
                merged.insert(k.clone(), v.clone());
                let alone: Result<PoolSpec, _> = toml::Value::Table(merged.clone()).try_into();
                alone.err().map(|_| k.clone())
            });
            match culprit {
                Some(k) => D::Error::custom(format!("[unmanaged] {k}: {}", e.message())),
                None => D::Error::custom(format!("[unmanaged]: {}", e.message())),
            }
        })
}

fn secs(s: f64) -> Duration {
    Duration::from_millis((s.max(0.0) * 1000.0).round() as u64)
}

fn opt_secs(s: f64) -> Option<Duration> {
    (s > 0.0).then(|| secs(s))
}

impl PoolSpec {
    /// The old behaviour: no reaper, no sweep, no owner release, reject at capacity.
    pub fn unmanaged(max_browsers: usize) -> Self {
        PoolSpec {
            max_browsers,
            idle_timeout_secs: 0.0,
            capacity_policy: PolicyName::Reject,
            sweep_on_start: false,
            release_grace_secs: -1.0,
            ..PoolSpec::default()
        }
    }

    /// The `PoolConfig` this spec stands for, rooted at `root` with `prefix`.
    pub fn to_config(&self, root: PathBuf, prefix: &str) -> PoolConfig {
        let capacity_policy = match self.capacity_policy {
            PolicyName::Reject => CapacityPolicy::Reject,
            PolicyName::Wait => CapacityPolicy::Wait {
                timeout: secs(self.acquire_timeout_secs),
            },
            PolicyName::EvictLru => CapacityPolicy::EvictLru,
        };
        PoolConfig::default()
            .with_max_browsers(self.max_browsers)
            .with_idle_timeout(opt_secs(self.idle_timeout_secs))
            .with_reap_interval(secs(self.reap_interval_secs))
            .with_tick(secs(self.tick_secs))
            .with_capacity_policy(capacity_policy)
            .with_acquire_timeout(secs(self.acquire_timeout_secs))
            .with_max_lifetime(opt_secs(self.max_lifetime_secs))
            .with_max_uses((self.max_uses > 0).then_some(self.max_uses))
            .with_launch_timeout(secs(self.launch_timeout_secs))
            .with_kill_grace(secs(self.kill_grace_secs))
            .with_kill_timeout(secs(self.kill_timeout_secs))
            .with_kill_attempts(self.kill_attempts)
            .with_remove_backoff(Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(60),
            })
            .with_root(root)
            .with_prefix(prefix.to_owned())
            .with_sweep_on_start(self.sweep_on_start)
            .with_legacy(
                self.legacy
                    .iter()
                    .map(|l| LegacyPattern {
                        prefix: l.prefix.clone(),
                        shape: l.shape.0,
                    })
                    .collect(),
            )
            .with_legacy_min_age(secs(self.legacy_min_age_secs))
            .with_spares(self.spares)
            .with_spare_max_age(secs(self.spare_max_age_secs))
            .with_memory_budget(
                (self.memory_budget_mib > 0).then_some(self.memory_budget_mib << 20),
            )
            .with_max_session_memory(
                (self.max_session_memory_mib > 0).then_some(self.max_session_memory_mib << 20),
            )
            .with_memory_interval(secs(self.memory_interval_secs))
    }
}

/// Client traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Mean new sessions per day (Poisson arrivals).
    pub sessions_per_day: f64,
    /// Amplitude (0..1) of a daily cycle: the rate peaks at 14:00, dips at 02:00.
    pub daily_cycle: f64,
    /// Every `burst_every_hours` (0 = never) `burst_size` clients arrive at once.
    pub burst_every_hours: f64,
    /// Clients per burst.
    pub burst_size: u32,
    /// Operations per session, uniform in `ops_min..=ops_max`.
    pub ops_min: u32,
    /// See `ops_min`.
    pub ops_max: u32,
    /// Operation duration in seconds, uniform in `op_secs_min..op_secs_max`.
    pub op_secs_min: f64,
    /// See `op_secs_min`.
    pub op_secs_max: f64,
    /// Pause before each operation, uniform in `think_secs_min..think_secs_max`.
    pub think_secs_min: f64,
    /// See `think_secs_min`.
    pub think_secs_max: f64,
    /// Probability that an operation is a long one, lasting
    /// `long_op_secs_min..long_op_secs_max` (outlasting the idle timeout).
    pub long_op_probability: f64,
    /// See `long_op_probability`.
    pub long_op_secs_min: f64,
    /// See `long_op_probability`.
    pub long_op_secs_max: f64,
    /// Relative weight of clients that destroy their session when done.
    pub destroy: f64,
    /// Relative weight of clients that crash silently (their host vanishes) and never
    /// destroy.
    pub crash: f64,
    /// Relative weight of clients whose connection drops (the server sees it).
    pub disconnect: f64,
    /// Relative weight of clients that stay connected but forget their session.
    pub forget: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            sessions_per_day: 200.0,
            daily_cycle: 0.5,
            burst_every_hours: 0.0,
            burst_size: 0,
            ops_min: 3,
            ops_max: 30,
            op_secs_min: 1.0,
            op_secs_max: 20.0,
            think_secs_min: 2.0,
            think_secs_max: 60.0,
            long_op_probability: 0.002,
            long_op_secs_min: 1900.0,
            long_op_secs_max: 3600.0,
            destroy: 90.0,
            crash: 3.0,
            disconnect: 3.0,
            forget: 4.0,
        }
    }
}

/// Fault kinds and their maximum probabilities. Under swarm testing each seed turns each
/// kind on with probability 1/2 and draws its probability uniformly in `[0, max]`;
/// without swarm every kind is on at its maximum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Draw a swarm configuration per seed.
    pub swarm: bool,
    /// A launch fails (after its latency).
    pub launch_fail: f64,
    /// A launch hangs past `launch_timeout`.
    pub launch_hang: f64,
    /// Mean browser crashes per browser-day (exponential lifetimes).
    pub browser_crash_per_day: f64,
    /// A tree needs more than one SIGKILL (up to `kill_attempts`).
    pub kill_escalation: f64,
    /// A tree takes a while to die after an effective kill (up to twice `kill_timeout`).
    pub kill_slow: f64,
    /// `create_dir` fails (no space or permission denied).
    pub create_fail: f64,
    /// `remove_dir_all` fails transiently (busy or permission denied).
    pub remove_fail: f64,
    /// Mean server crashes per day.
    pub server_crash_per_day: f64,
    /// A restart's sweep is interrupted by another crash.
    pub crash_during_sweep: f64,
    /// Restart delay after a crash, uniform in seconds up to this.
    pub restart_delay_secs_max: f64,
    /// Browsers die with the server (PR_SET_PDEATHSIG modelled on).
    pub kill_on_parent_death: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            swarm: true,
            launch_fail: 0.0,
            launch_hang: 0.0,
            browser_crash_per_day: 0.0,
            kill_escalation: 0.0,
            kill_slow: 0.0,
            create_fail: 0.0,
            remove_fail: 0.0,
            server_crash_per_day: 0.0,
            crash_during_sweep: 0.0,
            restart_delay_secs_max: 60.0,
            kill_on_parent_death: false,
        }
    }
}

impl Faults {
    /// The per-seed swarm draw: which kinds are on and how likely each is.
    pub fn draw(&self, seed: u64) -> Faults {
        if !self.swarm {
            return self.clone();
        }
        let mut rng = Rng::derive(seed, 0x0053_5741_524d, 0);
        let mut pick = |max: f64| {
            if rng.chance(0.5) {
                rng.uniform(0.0, max)
            } else {
                // still draw, so turning one kind off does not shift the others
                let _ = rng.f64();
                0.0
            }
        };
        Faults {
            swarm: true,
            launch_fail: pick(self.launch_fail),
            launch_hang: pick(self.launch_hang),
            browser_crash_per_day: pick(self.browser_crash_per_day),
            kill_escalation: pick(self.kill_escalation),
            kill_slow: pick(self.kill_slow),
            create_fail: pick(self.create_fail),
            remove_fail: pick(self.remove_fail),
            server_crash_per_day: pick(self.server_crash_per_day),
            crash_during_sweep: pick(self.crash_during_sweep),
            restart_delay_secs_max: self.restart_delay_secs_max,
            kill_on_parent_death: self.kill_on_parent_death,
        }
    }
}

/// The host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Host {
    /// Directory for session directories.
    pub root: String,
    /// Name prefix of session directories and markers.
    pub prefix: String,
    /// PIDs available (small, so they are reused quickly).
    pub pid_space: u32,
    /// Place neighbours the pool must never touch: another user's directory with our
    /// prefix, a symlink with our prefix, a live second pool with browsers, a directory
    /// of ours whose name is neither ours nor legacy, a recent legacy-named profile that
    /// an old server still writes, an old legacy-named directory that is not a profile,
    /// unrelated processes (see `world::neighbours`).
    pub neighbours: bool,
    /// Legacy leftover directories of ours present at the start: Chrome profiles named
    /// `<prefix><uuid>`, with stale `SingletonLock`s naming PIDs of unrelated processes.
    /// The managed pool cleans them only if its `legacy` patterns name them.
    pub legacy_leftovers: u32,
    /// How long before the start the legacy leftovers last changed, hours.
    pub legacy_age_hours: f64,
    /// RSS of a new browser tree, MiB.
    pub rss_base_mib: u64,
    /// RSS growth per day of a tree's age, MiB.
    pub rss_per_day_mib: u64,
    /// RSS growth per client operation, KiB.
    pub rss_per_op_kib: u64,
    /// A tree's PSS as a percentage of its RSS (Chrome's processes share their
    /// libraries, so PSS is below RSS; see the chrome backend's README for a measured
    /// figure).
    pub pss_percent: u64,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            root: "/tmp".into(),
            prefix: "chromelambda-".into(),
            pid_space: 4096,
            neighbours: true,
            legacy_leftovers: 0,
            legacy_age_hours: 72.0,
            rss_base_mib: 300,
            rss_per_day_mib: 190,
            rss_per_op_kib: 256,
            pss_percent: 65,
        }
    }
}

/// A complete scenario. See `sim/README.md` for the file format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// Simulated length of the run, hours.
    pub duration_hours: f64,
    /// The last `quiet_hours` have no new clients, no client activity and no faults: the
    /// convergence oracle checks that the managed pool is empty by the end.
    pub quiet_hours: f64,
    /// Default seed for `replay` without `--seed`.
    pub seed: u64,
    /// The managed pool's configuration.
    pub managed: PoolSpec,
    /// The unmanaged pool's configuration. Fields omitted here take the old behaviour
    /// ([`PoolSpec::unmanaged`]), not the managed pool's defaults.
    #[serde(deserialize_with = "unmanaged_spec")]
    pub unmanaged: PoolSpec,
    /// Client traffic.
    pub workload: Workload,
    /// Faults.
    pub faults: Faults,
    /// The host.
    pub host: Host,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            duration_hours: 24.0,
            quiet_hours: 2.0,
            seed: 1,
            managed: PoolSpec::default(),
            unmanaged: PoolSpec::unmanaged(PoolConfig::default().max_browsers),
            workload: Workload::default(),
            faults: Faults::default(),
            host: Host::default(),
        }
    }
}

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &[
    "kristof5",
    "steady",
    "burst",
    "crashy-server",
    "hung-kill",
    "full-disk",
    "spares",
    "memory-pressure",
];

fn preset_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "kristof5" => include_str!("../scenarios/kristof5.toml"),
        "steady" => include_str!("../scenarios/steady.toml"),
        "burst" => include_str!("../scenarios/burst.toml"),
        "crashy-server" => include_str!("../scenarios/crashy-server.toml"),
        "hung-kill" => include_str!("../scenarios/hung-kill.toml"),
        "full-disk" => include_str!("../scenarios/full-disk.toml"),
        "spares" => include_str!("../scenarios/spares.toml"),
        "memory-pressure" => include_str!("../scenarios/memory-pressure.toml"),
        _ => return None,
    })
}

impl Scenario {
    /// Parse scenario TOML and [check](Scenario::validate) it. Errors name the file,
    /// the field and what is wrong (unknown keys and unknown policy names included).
    pub fn from_toml(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            name: name.to_owned(),
            message,
        };
        let sc: Scenario = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        sc.validate().map_err(invalid)?;
        Ok(sc)
    }

    /// Check what the engine relies on: every number finite and in range, every
    /// `min` at most its `max`, at least one positive client weight, and both pools'
    /// configurations valid (`PoolConfig::validate`). The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        check::scenario(self)
    }

    /// A built-in preset by name.
    pub fn preset(name: &str) -> Result<Scenario, ScenarioError> {
        match preset_text(name) {
            Some(t) => Self::from_toml(name, t),
            None => Err(ScenarioError::NotFound {
                name: name.to_owned(),
                presets: PRESETS.join(", "),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such preset"),
            }),
        }
    }

    /// A preset name, or else a path to a TOML file.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if preset_text(name_or_path).is_some() {
            return Self::preset(name_or_path);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| ScenarioError::NotFound {
            name: name_or_path.to_owned(),
            presets: PRESETS.join(", "),
            source: e,
        })?;
        Self::from_toml(name_or_path, &text)
    }

    /// Simulated length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        (self.duration_hours.max(0.0) * 3_600_000.0) as u64
    }

    /// When the quiet (convergence) phase starts, in milliseconds.
    pub fn quiet_from_ms(&self) -> u64 {
        self.duration_ms()
            .saturating_sub((self.quiet_hours.max(0.0) * 3_600_000.0) as u64)
    }
}
