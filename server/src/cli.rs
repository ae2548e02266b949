//! The binary's settings: command-line flags (clap), each with an environment variable
//! `BROWSERPOOL_<FLAG>` and a key in an optional TOML file (`--config`).
//!
//! Precedence: flag, then environment variable, then the file, then the default.
//! Durations are in humantime form (`30m`, `500ms`, `1h 30m`); `--idle-timeout` and
//! `--max-lifetime` also take `off`. An invalid value is refused with a message naming
//! the flag (the binary exits with status 2).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use browserpool::{CapacityPolicy, PoolConfig};
use browserpool_chrome::{ChromeConfig, ProcessModel};
use clap::{Parser, ValueEnum};
use serde::Deserialize;

use crate::config::ServerConfig;
use crate::error::ConfigError;

/// How `--capacity-policy` is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Evict the least recently active idle session (the default).
    EvictLru,
    /// Refuse with 429 at capacity.
    Reject,
    /// Queue until a slot frees or `--acquire-timeout` passes.
    Wait,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A duration that may be `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<Duration>);

/// Parse a humantime duration (`30m`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 30s, 500ms, 30m or 1h"))
}

/// Parse a duration or `off`.
pub fn parse_limit(s: &str) -> Result<Limit, String> {
    match s.trim() {
        "off" | "none" => Ok(Limit(None)),
        other => parse_duration(other).map(|d| Limit(Some(d))),
    }
}

/// Parse a byte count: `1048576`, `64KiB`, `64MiB`, `1GiB`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size: write it like 1048576, 64KiB or 64MiB"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`: use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parse a memory size in bytes (as [`parse_bytes`]: `2147483648`, `512MiB`, `2GiB`).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    parse_bytes(s).map(|n| n as u64)
}

/// The command line. Every flag also reads `BROWSERPOOL_<FLAG>` and the `--config` file.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "browserpool-server",
    version,
    about = "A leak-proof browser server: Puppeteer and Playwright connect over CDP; idle, abandoned and disconnected sessions are reclaimed, and nothing is left behind."
)]
pub struct Cli {
    /// TOML file with any of these settings; keys are the flag names (`max-browsers = 8`,
    /// `idle-timeout = "30m"`, `chromium-arg = ["--lang=en"]`).
    #[arg(long, env = "BROWSERPOOL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on. [default: 127.0.0.1:9222]
    #[arg(long, env = "BROWSERPOOL_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Base URL that `ws_url` and /json/version point at (ws://, wss://, http://, https://),
    /// for a server behind a proxy or in Kubernetes. [default: ws:// + the request's Host]
    #[arg(long, env = "BROWSERPOOL_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Directory for session directories (and what the startup sweep cleans). [default: $TMPDIR or /tmp]
    #[arg(long, env = "BROWSERPOOL_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Name prefix of session directories under --root. [default: browserpool-]
    #[arg(long, env = "BROWSERPOOL_PREFIX")]
    pub prefix: Option<String>,
    /// Bound on live browsers. [default: 8]
    #[arg(long, env = "BROWSERPOOL_MAX_BROWSERS", value_name = "N")]
    pub max_browsers: Option<usize>,
    /// What happens at --max-browsers. [default: evict-lru]
    #[arg(long, env = "BROWSERPOOL_CAPACITY_POLICY", value_enum)]
    pub capacity_policy: Option<Policy>,
    /// Bound on requests waiting for a browser; one more gets 429. [default: 1024]
    #[arg(long, env = "BROWSERPOOL_QUEUE", value_name = "N")]
    pub queue: Option<usize>,
    /// How long a request may wait for a browser (evict-lru with every session busy, or wait). [default: 30s]
    #[arg(long, env = "BROWSERPOOL_ACQUIRE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub acquire_timeout: Option<Duration>,
    /// A session with no client activity for this long is reaped, connected or not; `off` disables. [default: 30m]
    #[arg(long, env = "BROWSERPOOL_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_limit)]
    pub idle_timeout: Option<Limit>,
    /// Granularity of idle reaping (a session goes between --idle-timeout and that plus this). [default: 60s]
    #[arg(long, env = "BROWSERPOOL_REAP_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub reap_interval: Option<Duration>,
    /// How long a session survives after its last connection drops, for a reconnect. [default: 60s]
    #[arg(long, env = "BROWSERPOOL_RELEASE_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub release_grace: Option<Duration>,
    /// Retire a session this long after launch; `off` disables. [default: off]
    #[arg(long, env = "BROWSERPOOL_MAX_LIFETIME", value_name = "DURATION", value_parser = parse_limit)]
    pub max_lifetime: Option<Limit>,
    /// Retire a session after this many CDP commands. [default: unlimited]
    #[arg(long, env = "BROWSERPOOL_MAX_USES", value_name = "N")]
    pub max_uses: Option<u64>,
    /// A browser not usable by then is killed and the request fails. [default: 30s]
    #[arg(long, env = "BROWSERPOOL_LAUNCH_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub launch_timeout: Option<Duration>,
    /// How long to wait for a killed process tree to be gone before escalating. [default: 5s]
    #[arg(long, env = "BROWSERPOOL_KILL_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub kill_timeout: Option<Duration>,
    /// The browser executable. [default: $CHROME, $BROWSERPOOL_CHROME, then chromium on PATH]
    #[arg(long, env = "BROWSERPOOL_CHROMIUM", value_name = "PATH")]
    pub chromium: Option<PathBuf>,
    /// An extra Chromium argument (repeatable; the environment variable holds one).
    #[arg(
        long,
        env = "BROWSERPOOL_CHROMIUM_ARG",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pub chromium_arg: Vec<String>,
    /// Require this token on every request (Authorization: Bearer, or ?token=); at least 16 characters.
    #[arg(long, env = "BROWSERPOOL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// On SIGTERM/SIGINT, how long to let sessions finish before shutting them down. [default: 30s]
    #[arg(long, env = "BROWSERPOOL_DRAIN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Log format. [default: text]
    #[arg(long, env = "BROWSERPOOL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Allow a non-loopback --listen without --token (anyone who can reach the port gets a browser).
    #[arg(long, env = "BROWSERPOOL_INSECURE_LISTEN_ANY")]
    pub insecure_listen_any: bool,
    /// Run each browser in 5 processes instead of 8-9 (GPU and network service inside the
    /// browser, no zygotes): shorter teardowns and launches, less memory; a GPU or network
    /// service crash then ends the session. Needs Chromium's sandbox off (as root it is).
    #[arg(long, env = "BROWSERPOOL_LEAN_PROCESSES")]
    pub lean_processes: bool,
    /// Bound on open WebSocket connections; one more gets 429. [default: 256]
    #[arg(long, env = "BROWSERPOOL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest request body or client WebSocket message (413, or close code 1009). [default: 64MiB]
    #[arg(long, env = "BROWSERPOOL_MAX_MESSAGE_SIZE", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_message_size: Option<usize>,
    /// Memory budget: the summed PSS of every session's browser processes. Above it the
    /// least recently active idle sessions are torn down, and a request that would
    /// exceed it waits or is refused (by the capacity policy) with a memory error.
    /// Must be positive. [default: none]
    #[arg(long, env = "BROWSERPOOL_MEMORY_BUDGET", value_name = "BYTES", value_parser = parse_memory)]
    pub memory_budget: Option<u64>,
    /// A session whose browser processes' PSS exceeds this is retired at its next idle
    /// moment. Must be positive. [default: none]
    #[arg(long, env = "BROWSERPOOL_MAX_SESSION_MEMORY", value_name = "BYTES", value_parser = parse_memory)]
    pub max_session_memory: Option<u64>,
    /// How often every session's memory is measured while --memory-budget or
    /// --max-session-memory is set. [default: 5s]
    #[arg(long, env = "BROWSERPOOL_MEMORY_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub memory_interval: Option<Duration>,
}

/// The `--config` file: the same settings, keys spelled as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    public_url: Option<String>,
    root: Option<PathBuf>,
    prefix: Option<String>,
    max_browsers: Option<usize>,
    capacity_policy: Option<Policy>,
    queue: Option<usize>,
    acquire_timeout: Option<String>,
    idle_timeout: Option<String>,
    reap_interval: Option<String>,
    release_grace: Option<String>,
    max_lifetime: Option<String>,
    max_uses: Option<u64>,
    launch_timeout: Option<String>,
    kill_timeout: Option<String>,
    chromium: Option<PathBuf>,
    chromium_arg: Option<Vec<String>>,
    token: Option<String>,
    drain_timeout: Option<String>,
    log_format: Option<LogFormat>,
    insecure_listen_any: Option<bool>,
    lean_processes: Option<bool>,
    max_connections: Option<usize>,
    max_message_size: Option<String>,
    memory_budget: Option<String>,
    max_session_memory: Option<String>,
    memory_interval: Option<String>,
}

/// Everything the binary needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The server's own settings.
    pub server: ServerConfig,
    /// The pool's.
    pub pool: PoolConfig,
    /// Chromium's.
    pub chrome: ChromeConfig,
    /// Log format.
    pub log_format: LogFormat,
}

fn from_file<T>(
    flag: &'static str,
    v: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    v.map(|s| parse(&s).map_err(|m| ConfigError::new(flag, format!("{m} (in the --config file)"))))
        .transpose()
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::new("config", format!("{}: {}", path.display(), e.message())))
}

/// The flag name for a field of [`PoolConfig`].
fn pool_flag(field: &str) -> &'static str {
    match field {
        "idle_timeout" => "idle-timeout",
        "reap_interval" | "tick" => "reap-interval",
        "acquire_timeout" | "capacity_policy.Wait.timeout" => "acquire-timeout",
        "launch_timeout" => "launch-timeout",
        "kill_timeout" => "kill-timeout",
        "max_lifetime" => "max-lifetime",
        "memory_interval" => "memory-interval",
        _ => "config",
    }
}

/// Turn a pool configuration error into one naming the flag.
pub fn pool_error(e: &browserpool::ConfigError) -> ConfigError {
    use browserpool::ConfigError as E;
    let flag = match e {
        E::ZeroMaxBrowsers | E::TooManyBrowsers { .. } => "max-browsers",
        E::ZeroDuration { field } | E::DurationTooLong { field, .. } => pool_flag(field),
        E::ZeroMemory { field } if *field == "memory_budget" => "memory-budget",
        E::ZeroMemory { .. } => "max-session-memory",
        E::TickLongerThanReapInterval { .. } => "reap-interval",
        E::ZeroMaxUses => "max-uses",
        E::BadPrefix { .. } => "prefix",
        E::RelativeRoot { .. } => "root",
        _ => "config",
    };
    ConfigError::new(flag, e.to_string())
}

impl Cli {
    /// Merge flags, environment (already in `self`), the `--config` file and defaults;
    /// validate everything. The error names the flag at fault.
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let listen = match self.listen {
            Some(a) => a,
            None => match file.listen {
                Some(s) => s.trim().parse().map_err(|_| {
                    ConfigError::new(
                        "listen",
                        format!(
                            "`{s}` is not an address like 127.0.0.1:9222 (in the --config file)"
                        ),
                    )
                })?,
                None => SocketAddr::from(([127, 0, 0, 1], 9222)),
            },
        };
        let token = self.token.or(file.token);
        let insecure = self.insecure_listen_any || file.insecure_listen_any.unwrap_or(false);
        if !listen.ip().is_loopback() && token.is_none() && !insecure {
            return Err(ConfigError::new(
                "listen",
                format!("{listen} is not a loopback address and no --token is set: anyone who can reach it would get a browser. Set --token (or BROWSERPOOL_TOKEN), or pass --insecure-listen-any"),
            ));
        }

        let d = PoolConfig::default();
        let dur = |flag,
                   cli: Option<Duration>,
                   f: Option<String>|
         -> Result<Option<Duration>, ConfigError> {
            Ok(cli.or(from_file(flag, f, parse_duration)?))
        };
        let lim =
            |flag, cli: Option<Limit>, f: Option<String>| -> Result<Option<Limit>, ConfigError> {
                Ok(cli.or(from_file(flag, f, parse_limit)?))
            };
        let reap_interval = dur("reap-interval", self.reap_interval, file.reap_interval)?
            .unwrap_or(d.reap_interval);
        let acquire_timeout = dur(
            "acquire-timeout",
            self.acquire_timeout,
            file.acquire_timeout,
        )?
        .unwrap_or(d.acquire_timeout);
        let launch_timeout = dur("launch-timeout", self.launch_timeout, file.launch_timeout)?
            .unwrap_or(d.launch_timeout);
        let policy = self
            .capacity_policy
            .or(file.capacity_policy)
            .unwrap_or(Policy::EvictLru);
        let max_uses = self.max_uses.or(file.max_uses);
        if max_uses == Some(0) {
            return Err(ConfigError::new(
                "max-uses",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        let max_browsers = self
            .max_browsers
            .or(file.max_browsers)
            .unwrap_or(d.max_browsers);
        let pool = PoolConfig::default()
            .with_max_browsers(max_browsers)
            .with_idle_timeout(
                lim("idle-timeout", self.idle_timeout, file.idle_timeout)?
                    .map_or(d.idle_timeout, |l| l.0),
            )
            .with_reap_interval(reap_interval)
            // The tick is the resolution of activity stamps; keep it within the interval.
            .with_tick(d.tick.min(reap_interval))
            .with_capacity_policy(match policy {
                Policy::EvictLru => CapacityPolicy::EvictLru,
                Policy::Reject => CapacityPolicy::Reject,
                Policy::Wait => CapacityPolicy::Wait {
                    timeout: acquire_timeout,
                },
            })
            .with_acquire_timeout(acquire_timeout)
            .with_max_waiters(self.queue.or(file.queue).unwrap_or(d.max_waiters))
            .with_max_lifetime(
                lim("max-lifetime", self.max_lifetime, file.max_lifetime)?
                    .map_or(d.max_lifetime, |l| l.0),
            )
            .with_max_uses(max_uses)
            .with_launch_timeout(launch_timeout)
            .with_kill_timeout(
                dur("kill-timeout", self.kill_timeout, file.kill_timeout)?
                    .unwrap_or(d.kill_timeout),
            )
            .with_root(self.root.or(file.root).unwrap_or(d.root))
            .with_prefix(self.prefix.or(file.prefix).unwrap_or(d.prefix))
            .with_memory_budget(match self.memory_budget {
                Some(n) => Some(n),
                None => from_file("memory-budget", file.memory_budget, parse_memory)?,
            })
            .with_max_session_memory(match self.max_session_memory {
                Some(n) => Some(n),
                None => from_file("max-session-memory", file.max_session_memory, parse_memory)?,
            })
            .with_memory_interval(
                dur(
                    "memory-interval",
                    self.memory_interval,
                    file.memory_interval,
                )?
                .unwrap_or(d.memory_interval),
            );
        pool.validate().map_err(|e| pool_error(&e))?;

        let sd = ServerConfig::default();
        let server = ServerConfig {
            public_url: self.public_url.or(file.public_url),
            token,
            release_grace: dur("release-grace", self.release_grace, file.release_grace)?
                .unwrap_or(sd.release_grace),
            drain_timeout: dur("drain-timeout", self.drain_timeout, file.drain_timeout)?
                .unwrap_or(sd.drain_timeout),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(sd.max_connections),
            max_message_size: match self.max_message_size {
                Some(n) => n,
                None => from_file("max-message-size", file.max_message_size, parse_bytes)?
                    .unwrap_or(sd.max_message_size),
            },
            ..sd
        };
        server.validate()?;

        let chromium_args = if self.chromium_arg.is_empty() {
            file.chromium_arg.unwrap_or_default()
        } else {
            self.chromium_arg
        };
        for a in &chromium_args {
            if a.starts_with("--user-data-dir") || a.starts_with("--remote-debugging-port") {
                return Err(ConfigError::new(
                    "chromium-arg",
                    format!("`{a}` is set by the server itself (one private directory and DevTools port per session)"),
                ));
            }
        }
        let chrome = ChromeConfig {
            executable: self.chromium.or(file.chromium),
            args: chromium_args.into_iter().map(Into::into).collect(),
            launch_timeout,
            process_model: if self.lean_processes || file.lean_processes.unwrap_or(false) {
                ProcessModel::Lean
            } else {
                ProcessModel::Standard
            },
            ..ChromeConfig::default()
        };
        Ok(Settings {
            listen,
            server,
            pool,
            chrome,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut v = vec!["browserpool-server"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().settings()
    }

    #[test]
    fn defaults_are_the_pools_and_loopback() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9222".parse().unwrap());
        assert_eq!(s.pool, PoolConfig::default());
        assert_eq!(s.server, ServerConfig::default());
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_map_onto_pool_server_and_chrome_settings() {
        let s = parse(&[
            "--max-browsers",
            "4",
            "--idle-timeout",
            "90s",
            "--reap-interval",
            "500ms",
            "--release-grace",
            "2s",
            "--capacity-policy",
            "wait",
            "--acquire-timeout",
            "3s",
            "--max-lifetime",
            "1h",
            "--max-uses",
            "500",
            "--queue",
            "7",
            "--chromium-arg",
            "--lang=en",
            "--chromium-arg",
            "--window-size=800,600",
            "--token",
            "0123456789abcdef",
            "--max-message-size",
            "2MiB",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(s.pool.max_browsers, 4);
        assert_eq!(s.pool.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.pool.tick, Duration::from_millis(500));
        assert_eq!(
            s.pool.capacity_policy,
            CapacityPolicy::Wait {
                timeout: Duration::from_secs(3)
            }
        );
        assert_eq!(s.pool.max_lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(s.pool.max_uses, Some(500));
        assert_eq!(s.pool.max_waiters, 7);
        assert_eq!(s.server.release_grace, Duration::from_secs(2));
        assert_eq!(s.server.max_message_size, 2 << 20);
        assert_eq!(s.chrome.args.len(), 2);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            parse(&["--idle-timeout", "off"]).unwrap().pool.idle_timeout,
            None
        );
    }

    #[test]
    fn invalid_values_name_their_flag() {
        let flag = |args: &[&str]| parse(args).unwrap_err().flag;
        assert_eq!(flag(&["--max-browsers", "0"]), "max-browsers");
        assert_eq!(flag(&["--reap-interval", "0s"]), "reap-interval");
        assert_eq!(flag(&["--prefix", "x"]), "prefix");
        assert_eq!(flag(&["--root", "relative/dir"]), "root");
        assert_eq!(flag(&["--max-uses", "0"]), "max-uses");
        assert_eq!(flag(&["--token", "short"]), "token");
        assert_eq!(flag(&["--listen", "0.0.0.0:9222"]), "listen");
        assert_eq!(flag(&["--chromium-arg=--user-data-dir=/x"]), "chromium-arg");
        assert_eq!(flag(&["--public-url", "nope"]), "public-url");
        // Non-loopback is fine with a token or the explicit opt-in.
        assert!(parse(&["--listen", "0.0.0.0:9222", "--token", "0123456789abcdef"]).is_ok());
        assert!(parse(&["--listen", "0.0.0.0:9222", "--insecure-listen-any"]).is_ok());
        // Unparsable values are refused by clap itself, naming the flag.
        let e = Cli::try_parse_from(["x", "--idle-timeout", "5 parsecs"]).unwrap_err();
        assert!(e.to_string().contains("--idle-timeout"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn the_config_file_fills_in_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bp.toml");
        std::fs::write(
            &path,
            "max-browsers = 3\nidle-timeout = \"5m\"\nchromium-arg = [\"--lang=de\"]\nrelease-grace = \"10s\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = parse(&["--config", p]).unwrap();
        assert_eq!(s.pool.max_browsers, 3);
        assert_eq!(s.pool.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.chrome.args, vec![std::ffi::OsString::from("--lang=de")]);
        let s = parse(&["--config", p, "--max-browsers", "5"]).unwrap();
        assert_eq!(s.pool.max_browsers, 5);

        std::fs::write(&path, "idle-timeout = \"soon\"\n").unwrap();
        assert_eq!(parse(&["--config", p]).unwrap_err().flag, "idle-timeout");
        std::fs::write(&path, "max-browser = 3\n").unwrap();
        let e = parse(&["--config", p]).unwrap_err();
        assert_eq!(e.flag, "config");
        assert!(e.message.contains("max-browser"), "{e}");
    }

    #[test]
    fn lean_processes_selects_the_lean_model_from_flag_or_file() {
        assert_eq!(
            parse(&[]).unwrap().chrome.process_model,
            ProcessModel::Standard
        );
        assert_eq!(
            parse(&["--lean-processes"]).unwrap().chrome.process_model,
            ProcessModel::Lean
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bp.toml");
        std::fs::write(&path, "lean-processes = true\n").unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(
            parse(&["--config", p]).unwrap().chrome.process_model,
            ProcessModel::Lean
        );
    }

    #[test]
    fn memory_flags_set_the_budget_and_invalid_ones_are_refused_by_the_pools_validation() {
        let s = parse(&[
            "--memory-budget",
            "2GiB",
            "--max-session-memory",
            "512MiB",
            "--memory-interval",
            "10s",
        ])
        .unwrap();
        assert_eq!(s.pool.memory_budget, Some(2 << 30));
        assert_eq!(s.pool.max_session_memory, Some(512 << 20));
        assert_eq!(s.pool.memory_interval, Duration::from_secs(10));
        let d = parse(&[]).unwrap().pool;
        assert_eq!((d.memory_budget, d.max_session_memory), (None, None));
        let flag = |args: &[&str]| parse(args).unwrap_err().flag;
        assert_eq!(flag(&["--memory-budget", "0"]), "memory-budget");
        assert_eq!(
            flag(&["--max-session-memory", "0MiB"]),
            "max-session-memory"
        );
        assert_eq!(flag(&["--memory-interval", "0s"]), "memory-interval");
        assert_eq!(flag(&["--memory-interval", "400days"]), "memory-interval");
        let e = Cli::try_parse_from(["x", "--memory-budget", "lots"]).unwrap_err();
        assert!(e.to_string().contains("--memory-budget"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bp.toml");
        std::fs::write(
            &path,
            "memory-budget = \"1GiB\"\nmemory-interval = \"2s\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = parse(&["--config", p]).unwrap();
        assert_eq!(s.pool.memory_budget, Some(1 << 30));
        assert_eq!(s.pool.memory_interval, Duration::from_secs(2));
        std::fs::write(&path, "max-session-memory = \"big\"\n").unwrap();
        assert_eq!(
            parse(&["--config", p]).unwrap_err().flag,
            "max-session-memory"
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64KiB").unwrap(), 64 << 10);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_limit("off").unwrap(), Limit(None));
    }
}
