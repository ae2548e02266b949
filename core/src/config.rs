//! Pool configuration and its validation.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;
use crate::sweep::LegacyPattern;

/// What happens when a session is requested while `max_browsers` process trees are live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapacityPolicy {
    /// Tear down the least-recently-active session that has no operation in flight and
    /// launch the new one in its place once its processes are gone. If every session is
    /// busy, the request waits (FIFO, bounded by [`PoolConfig::acquire_timeout`] and
    /// [`PoolConfig::max_waiters`]) and then fails with a clear error. The default.
    EvictLru,
    /// Refuse at once with [`AcquireError::AtCapacity`](crate::AcquireError::AtCapacity):
    /// the old behaviour, for callers that prefer to shed load.
    Reject,
    /// Queue fairly (FIFO) until a slot frees or `timeout` passes.
    Wait {
        /// How long a request may wait for a slot.
        timeout: Duration,
    },
}

/// Retry schedule for removing a directory that could not be removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of the doubling delay. Retries never stop: a directory that cannot be
    /// removed is retried at this interval for as long as the pool lives.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << shift)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Configuration of a [`Pool`](crate::Pool) and its [`Lifecycle`](crate::Lifecycle).
///
/// Build it from [`PoolConfig::default()`] with the `with_*` setters (one per field), or
/// by assigning its public fields; it is checked by [`PoolConfig::validate`] when a pool
/// or machine is constructed, so an invalid value is refused before anything is launched
/// or removed.
///
/// The struct is `#[non_exhaustive]`: a later release may add fields (with defaults that
/// keep today's behaviour) without breaking code that builds it this way.
///
/// ```
/// use std::time::Duration;
/// use browserpool::PoolConfig;
///
/// let config = PoolConfig::default()
///     .with_max_browsers(4)
///     .with_idle_timeout(Some(Duration::from_secs(600)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Hard bound on live browser process trees, counting sessions being launched and
    /// sessions being torn down until their processes are gone. Default 8; at least 1
    /// and at most [`PoolConfig::MAX_BROWSERS`].
    pub max_browsers: usize,
    /// A session with no client activity for this long is reaped. `None` opts out.
    /// Default 30 minutes.
    pub idle_timeout: Option<Duration>,
    /// Granularity of idle reaping: idle deadlines are rounded up to a multiple of this
    /// interval so that reaps coalesce into at most one reaper wake-up per interval. A
    /// session is reaped at least `idle_timeout` and less than `idle_timeout +
    /// reap_interval` after its last stamped activity (stamps are up to one `tick` coarse).
    /// Default 60 s.
    pub reap_interval: Duration,
    /// Heartbeat of the reaper task: how often it refreshes the coarse activity clock and
    /// rechecks requests waiting for a busy pool, while clients use the clock or requests
    /// wait (an idle pool does not tick; a stamp taken after a pause reads the real
    /// clock). Also the resolution of activity stamps. Default 1 s; must not exceed
    /// `reap_interval`.
    pub tick: Duration,
    /// What to do at capacity. Default [`CapacityPolicy::EvictLru`].
    pub capacity_policy: CapacityPolicy,
    /// Bound on how long an `EvictLru` request waits when every session is busy.
    /// If at that moment an idle session exists or a victim is being killed for the
    /// request, the wait is extended once by `kill_grace + kill_timeout * kill_attempts`
    /// (a victim's whole kill budget), so a request is not refused while an idle
    /// session could serve it. Default 30 s.
    pub acquire_timeout: Duration,
    /// Bound on the number of queued requests (`EvictLru` fallback and `Wait`); one more
    /// is refused with [`AcquireError::QueueFull`](crate::AcquireError::QueueFull).
    /// Default 1024.
    pub max_waiters: usize,
    /// Retire a session this long after launch, the next time it has no operation in
    /// flight. Bounds Chrome's memory growth. Default `None`.
    pub max_lifetime: Option<Duration>,
    /// Retire a session after this many client operations, the next time it has no
    /// operation in flight. Default `None`.
    pub max_uses: Option<u64>,
    /// A launch that has not produced a usable browser by then is abandoned, its
    /// processes killed and its directory removed. Default 30 s.
    pub launch_timeout: Duration,
    /// Budget for a graceful close (for Chrome: CDP `Browser.close`) before the process
    /// tree is killed. Zero skips the graceful step. Default 0: a pool session holds
    /// nothing worth flushing, and SIGKILL of the process group is the fast, sure path.
    pub kill_grace: Duration,
    /// How long to wait for the process tree to be gone after each forced kill.
    /// Default 5 s.
    pub kill_timeout: Duration,
    /// Kill attempts (a graceful close counts as one) before a teardown is reported as
    /// stuck. A stuck session keeps
    /// counting against `max_browsers` and is retried every `kill_timeout`, forever: a
    /// tree that will not die is never forgotten. Default 3.
    pub kill_attempts: u32,
    /// Retry schedule for directories that could not be removed. Default 100 ms doubling
    /// to 60 s.
    pub remove_backoff: Backoff,
    /// Directory under which session directories are created and swept. Default
    /// `std::env::temp_dir()`.
    pub root: PathBuf,
    /// Name prefix of session directories and pool markers under `root`. Default
    /// `"browserpool-"`. The startup sweep removes only entries whose names are this
    /// pool's exact shapes (`<prefix><instance>-<n>`, `<prefix><instance>.lock`), so the
    /// prefix may be shared with other software; it must still pass the rules of
    /// [`PoolConfig::validate`] (at least 4 characters, ending in `-` or `_`, not a
    /// shared system prefix).
    pub prefix: String,
    /// Run the startup sweep when the pool is built. Default true.
    pub sweep_on_start: bool,
    /// Names of an earlier server's leftover directories that the startup sweep may
    /// remove, for example [`LegacyPattern::uuid`]`("chromelambda-")` for a server
    /// migrating from `chromelambda-<uuid>` directories. A directory matching one is
    /// removed only if it is a real directory of the current user, holds a Chrome profile
    /// (in itself or in `profile/`), has not changed for [`PoolConfig::legacy_min_age`],
    /// and the launcher's proven processes in it could be killed first. Default empty:
    /// nothing that is not this pool's own is ever removed.
    pub legacy: Vec<LegacyPattern>,
    /// How long a legacy directory must have gone unchanged (its own, its `profile/` and
    /// its profile entries' modification times) before the sweep may remove it, so that
    /// an old server still running during a rolling deploy keeps its sessions. Default
    /// 1 hour: twice the default `idle_timeout`, longer than this pool would keep an idle
    /// session itself. Must be positive.
    pub legacy_min_age: Duration,
    /// How many ended sessions are remembered so that a late caller learns why its
    /// session ended. Older ones are forgotten first. Default 4096.
    pub tombstones: usize,
    /// Prewarmed spares: how many launched, never-used browsers the pool keeps ready so
    /// that `acquire` skips the launch. Default 0 (none). At most `max_browsers`.
    ///
    /// Guarantees (decided by the [`Lifecycle`](crate::Lifecycle)): a spare is handed
    /// out at most once and a browser that was ever handed out never becomes a spare; spares
    /// count against `max_browsers`, only ever fill free slots (a spare launch never
    /// evicts a session and never makes a request wait), and a request that finds no
    /// ready spare takes over a spare launch in flight before it launches its own; at
    /// most [`PoolConfig::SPARE_LAUNCH_CONCURRENCY`] spare launches run at once; after a
    /// failed launch, refills back off ([`PoolConfig::SPARE_BACKOFF`]); spares are not
    /// idle-reaped but retired after [`PoolConfig::spare_max_age`] and replaced; a spare
    /// that crashes is replaced; shutdown and `Drop` tear spares down like any session.
    pub spares: usize,
    /// A spare that has waited this long without being handed out is retired
    /// ([`RetireCause::SpareMaxAge`](crate::RetireCause::SpareMaxAge)) and replaced, so a
    /// handed-out browser is never older than this plus its own use. Default 30 minutes;
    /// must be positive and at most [`PoolConfig::MAX_DURATION`].
    pub spare_max_age: Duration,
    /// Memory budget in bytes for the summed proportional set size (PSS) of every
    /// session's process tree. `None` (the default) opts out. When the pool's measured
    /// memory (plus an estimate for launches not yet measured) is over the budget, the
    /// least-recently-active idle sessions are torn down with
    /// [`EndReason::Memory`](crate::EndReason::Memory) until it is under; a busy session is
    /// never torn down for it, and neither is the last session (that is counted in
    /// [`Totals::over_budget_with_one_session`](crate::Totals::over_budget_with_one_session)
    /// instead). An acquire that would exceed it evicts idle sessions first; if every
    /// session is busy it follows `capacity_policy` and fails with
    /// [`AcquireError::MemoryBudget`](crate::AcquireError::MemoryBudget). Must be positive.
    pub memory_budget: Option<u64>,
    /// A session whose process tree's PSS is measured above this many bytes is retired
    /// ([`EndReason::Memory`](crate::EndReason::Memory)) at its next moment without an
    /// operation in flight. `None` (the default) opts out. Must be positive.
    pub max_session_memory: Option<u64>,
    /// How often the pool measures every session's memory (one
    /// [`ProcessLauncher::memory_of_all`](crate::ProcessLauncher::memory_of_all) call
    /// for all sessions; a round unfinished within one interval is abandoned) while
    /// `memory_budget` or `max_session_memory` is set. Default 5 s; must be positive and
    /// at most [`PoolConfig::MAX_DURATION`].
    pub memory_interval: Duration,
}

/// One setter per field, for building a [`PoolConfig`] outside this crate (it is
/// `#[non_exhaustive]`, so struct literals are refused there). Each returns the changed
/// configuration; nothing is checked until [`PoolConfig::validate`] runs at construction.
impl PoolConfig {
    /// Sets [`PoolConfig::max_browsers`].
    #[must_use]
    pub fn with_max_browsers(mut self, max_browsers: usize) -> Self {
        self.max_browsers = max_browsers;
        self
    }
    /// Sets [`PoolConfig::idle_timeout`].
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }
    /// Sets [`PoolConfig::reap_interval`].
    #[must_use]
    pub fn with_reap_interval(mut self, reap_interval: Duration) -> Self {
        self.reap_interval = reap_interval;
        self
    }
    /// Sets [`PoolConfig::tick`].
    #[must_use]
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }
    /// Sets [`PoolConfig::capacity_policy`].
    #[must_use]
    pub fn with_capacity_policy(mut self, capacity_policy: CapacityPolicy) -> Self {
        self.capacity_policy = capacity_policy;
        self
    }
    /// Sets [`PoolConfig::acquire_timeout`].
    #[must_use]
    pub fn with_acquire_timeout(mut self, acquire_timeout: Duration) -> Self {
        self.acquire_timeout = acquire_timeout;
        self
    }
    /// Sets [`PoolConfig::max_waiters`].
    #[must_use]
    pub fn with_max_waiters(mut self, max_waiters: usize) -> Self {
        self.max_waiters = max_waiters;
        self
    }
    /// Sets [`PoolConfig::max_lifetime`].
    #[must_use]
    pub fn with_max_lifetime(mut self, max_lifetime: Option<Duration>) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }
    /// Sets [`PoolConfig::max_uses`].
    #[must_use]
    pub fn with_max_uses(mut self, max_uses: Option<u64>) -> Self {
        self.max_uses = max_uses;
        self
    }
    /// Sets [`PoolConfig::launch_timeout`].
    #[must_use]
    pub fn with_launch_timeout(mut self, launch_timeout: Duration) -> Self {
        self.launch_timeout = launch_timeout;
        self
    }
    /// Sets [`PoolConfig::kill_grace`].
    #[must_use]
    pub fn with_kill_grace(mut self, kill_grace: Duration) -> Self {
        self.kill_grace = kill_grace;
        self
    }
    /// Sets [`PoolConfig::kill_timeout`].
    #[must_use]
    pub fn with_kill_timeout(mut self, kill_timeout: Duration) -> Self {
        self.kill_timeout = kill_timeout;
        self
    }
    /// Sets [`PoolConfig::kill_attempts`].
    #[must_use]
    pub fn with_kill_attempts(mut self, kill_attempts: u32) -> Self {
        self.kill_attempts = kill_attempts;
        self
    }
    /// Sets [`PoolConfig::remove_backoff`].
    #[must_use]
    pub fn with_remove_backoff(mut self, remove_backoff: Backoff) -> Self {
        self.remove_backoff = remove_backoff;
        self
    }
    /// Sets [`PoolConfig::root`].
    #[must_use]
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }
    /// Sets [`PoolConfig::prefix`].
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets [`PoolConfig::sweep_on_start`].
    #[must_use]
    pub fn with_sweep_on_start(mut self, sweep_on_start: bool) -> Self {
        self.sweep_on_start = sweep_on_start;
        self
    }
    /// Sets [`PoolConfig::legacy`].
    #[must_use]
    pub fn with_legacy(mut self, legacy: Vec<LegacyPattern>) -> Self {
        self.legacy = legacy;
        self
    }
    /// Sets [`PoolConfig::legacy_min_age`].
    #[must_use]
    pub fn with_legacy_min_age(mut self, legacy_min_age: Duration) -> Self {
        self.legacy_min_age = legacy_min_age;
        self
    }
    /// Sets [`PoolConfig::tombstones`].
    #[must_use]
    pub fn with_tombstones(mut self, tombstones: usize) -> Self {
        self.tombstones = tombstones;
        self
    }
    /// Sets [`PoolConfig::spares`].
    #[must_use]
    pub fn with_spares(mut self, spares: usize) -> Self {
        self.spares = spares;
        self
    }
    /// Sets [`PoolConfig::spare_max_age`].
    #[must_use]
    pub fn with_spare_max_age(mut self, spare_max_age: Duration) -> Self {
        self.spare_max_age = spare_max_age;
        self
    }
    /// Sets [`PoolConfig::memory_budget`].
    #[must_use]
    pub fn with_memory_budget(mut self, memory_budget: Option<u64>) -> Self {
        self.memory_budget = memory_budget;
        self
    }
    /// Sets [`PoolConfig::max_session_memory`].
    #[must_use]
    pub fn with_max_session_memory(mut self, max_session_memory: Option<u64>) -> Self {
        self.max_session_memory = max_session_memory;
        self
    }
    /// Sets [`PoolConfig::memory_interval`].
    #[must_use]
    pub fn with_memory_interval(mut self, memory_interval: Duration) -> Self {
        self.memory_interval = memory_interval;
        self
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_browsers: 8,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            reap_interval: Duration::from_secs(60),
            tick: Duration::from_secs(1),
            capacity_policy: CapacityPolicy::EvictLru,
            acquire_timeout: Duration::from_secs(30),
            max_waiters: 1024,
            max_lifetime: None,
            max_uses: None,
            launch_timeout: Duration::from_secs(30),
            kill_grace: Duration::ZERO,
            kill_timeout: Duration::from_secs(5),
            kill_attempts: 3,
            remove_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(60),
            },
            root: std::env::temp_dir(),
            prefix: "browserpool-".to_owned(),
            sweep_on_start: true,
            legacy: Vec::new(),
            legacy_min_age: Duration::from_secs(3600),
            tombstones: 4096,
            spares: 0,
            spare_max_age: Duration::from_secs(30 * 60),
            memory_budget: None,
            max_session_memory: None,
            memory_interval: Duration::from_secs(5),
        }
    }
}

impl PoolConfig {
    /// The longest any duration of the configuration, or any sum the pool derives from
    /// them ([`PoolConfig::kill_budget`], [`PoolConfig::shutdown_budget`]), may be: one
    /// year (365 days). Longer values are refused by [`PoolConfig::validate`], so that no
    /// deadline the pool computes can overflow.
    pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// The most spare launches in flight at once: 1. Spares are refilled one after
    /// another, so prewarming never adds more than one launch to what clients start
    /// themselves (browserless v1's preboot launched its whole swarm at once and
    /// overshot its concurrency limit).
    pub const SPARE_LAUNCH_CONCURRENCY: usize = 1;

    /// The largest `max_browsers` [`PoolConfig::validate`] accepts: 2^20 (1 048 576),
    /// far above what any host holds and above the benchmarks' 100 000 sessions. Without
    /// a bound, `max_browsers = usize::MAX` with as many `spares` was a valid config
    /// that made the pool launch spares without end.
    pub const MAX_BROWSERS: usize = 1 << 20;

    /// How refills back off after launch failures: after `n` failed launches in a row
    /// (a client's or a spare's), no spare is launched for `SPARE_BACKOFF.delay(n)` of
    /// machine time: 1 s doubling to 60 s. A successful launch resets the count.
    pub const SPARE_BACKOFF: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    /// The longest a teardown spends killing before it reports the tree as stuck:
    /// `kill_grace + kill_timeout * kill_attempts` (saturating). [`Pool::destroy`]
    /// waits at most this long.
    ///
    /// [`Pool::destroy`]: crate::Pool::destroy
    pub fn kill_budget(&self) -> Duration {
        self.kill_timeout
            .saturating_mul(self.kill_attempts)
            .saturating_add(self.kill_grace)
    }

    /// The longest [`Pool::shutdown`](crate::Pool::shutdown) waits: a launch in flight,
    /// every kill attempt and one more, and a directory retry:
    /// `launch_timeout + kill_grace + kill_timeout * (kill_attempts + 1) +
    /// remove_backoff.max` (saturating).
    pub fn shutdown_budget(&self) -> Duration {
        self.launch_timeout
            .saturating_add(self.kill_budget())
            .saturating_add(self.kill_timeout)
            .saturating_add(self.remove_backoff.max)
    }

    /// Check every field; the first problem found is returned with the field's name and
    /// what to do about it. Every duration must be at most [`PoolConfig::MAX_DURATION`],
    /// and so must the budgets derived from them.
    ///
    /// The prefix rule (for `prefix` and every `legacy[i].prefix`): at least 4
    /// characters, all of `[A-Za-z0-9._-]`, ending in `-` or `_`, and, compared
    /// ASCII-case-insensitively, neither starting with nor being the start of one of
    /// [`SHARED_PREFIXES`] (`tmp`, `temp`, `systemd-`, `snap-`, `chromium`,
    /// `org.chromium`, `.`, `puppeteer`, `playwright`, `scoped_dir`). So `tmp-`, `TEMP_`,
    /// `systemd-x-`, `.cache-` and `scoped_` are refused; `browserpool-` and
    /// `chromelambda-` are fine.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_browsers == 0 {
            return Err(ConfigError::ZeroMaxBrowsers);
        }
        if self.max_browsers > Self::MAX_BROWSERS {
            return Err(ConfigError::TooManyBrowsers {
                max_browsers: self.max_browsers,
                limit: Self::MAX_BROWSERS,
            });
        }
        let positive = [
            ("reap_interval", Some(self.reap_interval)),
            ("tick", Some(self.tick)),
            ("acquire_timeout", Some(self.acquire_timeout)),
            ("launch_timeout", Some(self.launch_timeout)),
            ("kill_timeout", Some(self.kill_timeout)),
            ("remove_backoff.initial", Some(self.remove_backoff.initial)),
            ("remove_backoff.max", Some(self.remove_backoff.max)),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("legacy_min_age", Some(self.legacy_min_age)),
            ("spare_max_age", Some(self.spare_max_age)),
            ("memory_interval", Some(self.memory_interval)),
            (
                "capacity_policy.Wait.timeout",
                match self.capacity_policy {
                    CapacityPolicy::Wait { timeout } => Some(timeout),
                    _ => None,
                },
            ),
        ];
        for (field, value) in positive {
            if let Some(d) = value {
                if d.as_millis() == 0 {
                    return Err(ConfigError::ZeroDuration { field });
                }
            }
        }
        let bounded = positive
            .into_iter()
            .chain([("kill_grace", Some(self.kill_grace))]);
        for (field, value) in bounded {
            if let Some(value) = value.filter(|d| *d > Self::MAX_DURATION) {
                return Err(ConfigError::DurationTooLong { field, value });
            }
        }
        // The budgets the pool adds up, computed without saturating: an overflow is refused
        // like any other sum past the bound.
        let kill = self
            .kill_timeout
            .checked_mul(self.kill_attempts)
            .and_then(|d| d.checked_add(self.kill_grace));
        let shutdown = kill
            .and_then(|d| d.checked_add(self.launch_timeout))
            .and_then(|d| d.checked_add(self.kill_timeout))
            .and_then(|d| d.checked_add(self.remove_backoff.max));
        for (sum, value) in [
            ("kill_grace + kill_timeout * kill_attempts", kill),
            (
                "launch_timeout + kill_grace + kill_timeout * (kill_attempts + 1) + remove_backoff.max",
                shutdown,
            ),
        ] {
            if value.is_none_or(|d| d > Self::MAX_DURATION) {
                return Err(ConfigError::SumTooLong { sum });
            }
        }
        if self.tick > self.reap_interval {
            return Err(ConfigError::TickLongerThanReapInterval {
                tick: self.tick,
                reap_interval: self.reap_interval,
            });
        }
        if self.remove_backoff.max < self.remove_backoff.initial {
            return Err(ConfigError::BackoffInverted);
        }
        if self.max_uses == Some(0) {
            return Err(ConfigError::ZeroMaxUses);
        }
        if self.kill_attempts == 0 {
            return Err(ConfigError::ZeroKillAttempts);
        }
        if self.tombstones == 0 {
            return Err(ConfigError::ZeroTombstones);
        }
        for (field, value) in [
            ("memory_budget", self.memory_budget),
            ("max_session_memory", self.max_session_memory),
        ] {
            if value == Some(0) {
                return Err(ConfigError::ZeroMemory { field });
            }
        }
        if self.spares > self.max_browsers {
            return Err(ConfigError::TooManySpares {
                spares: self.spares,
                max_browsers: self.max_browsers,
            });
        }
        validate_prefix("prefix", &self.prefix)?;
        for (i, p) in self.legacy.iter().enumerate() {
            validate_prefix(&format!("legacy[{i}].prefix"), &p.prefix)?;
        }
        if !self.root.is_absolute() {
            return Err(ConfigError::RelativeRoot {
                root: self.root.clone(),
            });
        }
        Ok(())
    }
}

/// Prefixes that other software uses under shared temporary directories. A pool prefix
/// (or legacy prefix) may neither start with one of these nor be the start of one,
/// compared ASCII-case-insensitively (some filesystems ignore case, and tools vary it:
/// `Temp`, `TMP`).
pub const SHARED_PREFIXES: &[&str] = &[
    "tmp",          // Python tempfile, mktemp(1), many others
    "temp",         // Windows-style and assorted tools
    "systemd-",     // systemd-private-*
    "snap-",        // snap-private-tmp
    "chromium",     // Chromium's own scratch directories
    "org.chromium", // org.chromium.Chromium.* (Chromium's scoped temp dirs)
    ".",            // hidden entries: .X11-unix, .ICE-unix, ..
    "puppeteer",    // puppeteer_dev_chrome_profile-*
    "playwright",   // playwright_chromiumdev_profile-*
    "scoped_dir",   // Chromium's ScopedTempDir
];

/// The prefix rule: at least 4 characters, all of `[A-Za-z0-9._-]`, ending in `-` or `_`
/// (so the prefix ends at a word boundary and `bp-` never takes `bpf...`), and, compared
/// ASCII-case-insensitively, neither starting with an entry of [`SHARED_PREFIXES`] (so
/// `tmp-`, `TEMP_`, `systemd-x-` and `.cache-` are refused) nor being the start of one.
fn validate_prefix(field: &str, prefix: &str) -> Result<(), ConfigError> {
    let bad = |why: &'static str| {
        Err(ConfigError::BadPrefix {
            field: field.to_owned(),
            prefix: prefix.to_owned(),
            why,
        })
    };
    if prefix.len() < 4 {
        return bad("it is shorter than 4 characters");
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("it has characters other than [A-Za-z0-9._-]");
    }
    if !prefix.ends_with(['-', '_']) {
        return bad("it does not end in '-' or '_'");
    }
    let lower = prefix.to_ascii_lowercase();
    if SHARED_PREFIXES
        .iter()
        .any(|s| lower.starts_with(s) || s.starts_with(lower.as_str()))
    {
        return bad("other software names its entries under a shared temporary directory like this (tmp, temp, systemd-, snap-, chromium, org.chromium, '.', ...)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(PoolConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_values_with_the_field_name() {
        let bad = PoolConfig {
            max_browsers: 0,
            ..PoolConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::ZeroMaxBrowsers));
        let bad = PoolConfig {
            reap_interval: Duration::ZERO,
            ..PoolConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration {
                field: "reap_interval"
            })
        );
        let bad = PoolConfig {
            idle_timeout: Some(Duration::ZERO),
            ..PoolConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration {
                field: "idle_timeout"
            })
        );
        for prefix in ["", "..", "a/b", "x", ".hidden", "tmp*", "bp-"] {
            let bad = PoolConfig {
                prefix: prefix.to_owned(),
                ..PoolConfig::default()
            };
            assert!(
                matches!(bad.validate(), Err(ConfigError::BadPrefix { .. })),
                "{prefix:?}"
            );
        }
        let bad = PoolConfig {
            root: PathBuf::from("relative"),
            ..PoolConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::RelativeRoot { .. })
        ));
        let bad = PoolConfig {
            tick: Duration::from_secs(120),
            ..PoolConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::TickLongerThanReapInterval { .. })
        ));
    }

    #[test]
    fn prefixes_that_other_software_shares_are_refused() {
        let refused = [
            // The defect: with root /tmp, `tmp` took every directory Python's tempfile
            // makes (`tmpXXXXXXXX`).
            "tmp",
            "tmp-",
            "tmp_",
            "TMP_",
            "Tmp-x-",
            "temp_",
            "Temp-",
            "temporal-", // starts with "temp": refused too, the rule is by prefix
            "systemd-",
            "systemd-x-",
            "SYSTEMD-private-",
            "snap-",
            "snap-x_",
            "chromium-",
            "Chromium_pool-",
            "org.chromium-",
            "org.chromium.Chromium.",
            ".bp-",
            ".cache-",
            "puppeteer_dev_chrome_profile-",
            "scoped_",
            "scoped_dir-",
            // shorter than 4 characters
            "bp-",
            "b_-",
            // not ending in '-' or '_'
            "browserpool",
            "chromelambda",
            "bpool.",
            // characters
            "bp/x-",
            "bp x-",
            "bp*-",
            "bpé-",
        ];
        for prefix in refused {
            let bad = PoolConfig {
                prefix: prefix.to_owned(),
                ..PoolConfig::default()
            };
            match bad.validate() {
                Err(ConfigError::BadPrefix {
                    field, prefix: p, ..
                }) => {
                    assert_eq!((field.as_str(), p.as_str()), ("prefix", prefix))
                }
                other => panic!("{prefix:?} was not refused: {other:?}"),
            }
        }
        for ok in [
            "browserpool-",
            "chromelambda-",
            "bpx-",
            "bp_x_",
            "my.app-",
            "sys-",
            "snapshot_",
        ] {
            let good = PoolConfig {
                prefix: ok.to_owned(),
                ..PoolConfig::default()
            };
            assert_eq!(good.validate(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn legacy_patterns_obey_the_prefix_rule_and_the_minimum_age_is_positive() {
        let bad = PoolConfig {
            legacy: vec![
                LegacyPattern::uuid("chromelambda-"),
                LegacyPattern::uuid("tmp"),
            ],
            ..PoolConfig::default()
        };
        match bad.validate() {
            Err(e @ ConfigError::BadPrefix { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("legacy[1].prefix"), "{msg}");
                assert!(msg.contains("\"tmp\""), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        let bad = PoolConfig {
            legacy_min_age: Duration::ZERO,
            ..PoolConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration {
                field: "legacy_min_age"
            })
        );
        let good = PoolConfig {
            legacy: vec![LegacyPattern::uuid("chromelambda-")],
            ..PoolConfig::default()
        };
        assert_eq!(good.validate(), Ok(()));
    }

    #[test]
    #[allow(clippy::field_reassign_with_default)]
    fn memory_limits_must_be_positive_and_the_interval_bounded() {
        for field in ["memory_budget", "max_session_memory"] {
            let mut bad = PoolConfig::default();
            if field == "memory_budget" {
                bad.memory_budget = Some(0);
            } else {
                bad.max_session_memory = Some(0);
            }
            let Err(e) = bad.validate() else {
                panic!("{field} = Some(0) was accepted")
            };
            assert_eq!(e, ConfigError::ZeroMemory { field });
            assert_eq!(e.field(), field);
            assert!(e.to_string().contains(field), "{e}");
        }
        let mut bad = PoolConfig::default();
        bad.memory_interval = Duration::ZERO;
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration {
                field: "memory_interval"
            })
        );
        bad.memory_interval = PoolConfig::MAX_DURATION + Duration::from_secs(1);
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::DurationTooLong {
                field: "memory_interval",
                ..
            })
        ));
        let mut good = PoolConfig::default();
        good.memory_budget = Some(1 << 30);
        good.max_session_memory = Some(1);
        assert_eq!(good.validate(), Ok(()));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(60), Duration::from_secs(1));
    }
}
