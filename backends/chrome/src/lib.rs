//! # browserpool-chrome
//!
//! The Chromium backend of [`browserpool`]: a [`ProcessLauncher`](browserpool::ProcessLauncher)
//! that runs real headless Chromium through [`chromiumoxide`] and never leaves a process
//! or a file behind.
//!
//! ```no_run
//! use std::time::Duration;
//! use browserpool::{Pool, PoolConfig};
//! use browserpool_chrome::{ChromeConfig, ChromeLauncher, ChromeSession};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let launcher = ChromeLauncher::new(ChromeConfig::default())?; // finds chromium on PATH
//! let config = PoolConfig::default()
//!     .with_max_browsers(4)
//!     .with_idle_timeout(Some(Duration::from_secs(300)));
//! let pool = Pool::new(config, launcher).await?; // sweeps what a dead predecessor left
//!
//! let session = ChromeSession::new(pool.acquire().await?);
//! let page = session.new_page("about:blank").await?; // stamps activity
//! page.evaluate("document.title = 'hello'").await?;
//! let title: String = page.evaluate("document.title").await?.into_value()?;
//! assert_eq!(title, "hello");
//!
//! pool.destroy(session.id()).await?; // group SIGKILLed, reaped, directory removed
//! pool.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## What it guarantees
//!
//! - **Everything in one directory.** Each session's browser lives in the pool's fresh
//!   session directory: `profile/` (`--user-data-dir`), `tmp/` (`TMPDIR`, where Chromium
//!   puts its `org.chromium.Chromium.*` scratch, and shared memory with
//!   `--disable-dev-shm-usage`) and `home/` (`HOME` and the XDG directories). Removing
//!   the directory removes every file the browser made, even after a SIGKILL.
//! - **One matcher for "process of this session".** [`SessionMatcher`] decides, from
//!   `/proc/<pid>/cmdline`, which processes belong to a session directory: the main
//!   process (argument `--user-data-dir=<dir>/profile`), every helper (Chromium rewrites
//!   their titles into one space-joined string, where the flag is matched as a whole
//!   token) and the crash handlers (`--database=` inside the directory). Kills, waits,
//!   sweeps, memory figures, the tests' leftover checks and the `churn` example all use
//!   it.
//! - **Whole-tree kills.** The browser leads its own process group; a forced kill is
//!   SIGKILL to the group plus every process the matcher proves outside it (Chromium's
//!   crash reporter stays on: its handlers leave the group). The teardown then waits
//!   until a full `/proc` scan finds no live process of the group and none the matcher
//!   proves (zombies count as gone: they hold no memory), killing helpers that appear
//!   late (the crash handler's double fork), and reaps the main process.
//! - **Kill on parent death, never early.** Browsers are forked by one dedicated thread
//!   that lives as long as the process, with `PR_SET_PDEATHSIG(SIGKILL)`: a SIGKILLed or
//!   OOM-killed server takes its browsers with it (helpers and crash handlers exit
//!   within a few hundred milliseconds of their browser). The next pool's startup sweep
//!   removes their directories. [`ChromeConfig::kill_on_parent_death`] turns this off;
//!   the sweep then kills the survivors first.
//! - **No blocked pipes.** stdin and stdout are `/dev/null`; stderr is drained by a
//!   thread that keeps only its tail for error messages.
//! - **Cancel-safe, leak-free launch.** A launch that fails, times out or is dropped
//!   kills and reaps what it started.
//! - **Crash detection.** [`ProcessLauncher::exited`](browserpool::ProcessLauncher::exited)
//!   resolves the moment the main process exits ("exit code N", "killed by signal N")
//!   or its DevTools connection drops while it lives ([`DEVTOOLS_LOST`]); the pool then
//!   ends the session (`EndReason::Crashed` with that text), kills its processes,
//!   removes its directory, and the client's next call gets [`ChromeError::Session`]
//!   with the reason.
//! - **No unstamped use by accident.** [`ChromeSession`] and [`ChromePage`] run every
//!   command as one client operation (busy while in flight, activity stamped). The raw
//!   chromiumoxide handles are reachable only through accessors named `*_unstamped`.
//! - **Proven-orphan sweeps.** [`ProcessLauncher::find_orphans`](browserpool::ProcessLauncher::find_orphans)
//!   reports a process only if the directory's [`SessionMatcher`] proves it
//!   (candidates from `SingletonLock`, checked against this host's name, and from a
//!   `/proc` scan), and `kill_orphan` re-checks that proof right before signalling
//!   (through a pidfd). Nothing is killed by name or by PID alone.
//! - **Outside input is parsed strictly.** `SingletonLock` targets,
//!   `DevToolsActivePort`, `/proc/<pid>/stat`, `cmdline` and `smaps_rollup` are parsed
//!   by functions that never panic and answer `None` to anything malformed, which is
//!   then skipped, never followed (property-tested on arbitrary bytes).
//! - **Measurements.** [`ProcessLauncher::memory`](browserpool::ProcessLauncher::memory)
//!   sums RSS and PSS over the session's processes from `/proc/<pid>/smaps_rollup`;
//!   [`ProcessLauncher::memory_of_all`](browserpool::ProcessLauncher::memory_of_all),
//!   which the pool's sampler calls once per round, gives every session the same
//!   figure from one `/proc` scan shared by all of them.
//!
//! ## Limits
//!
//! - A session directory may be at most [`MAX_SESSION_DIR_LEN`] (58) bytes long:
//!   Chromium aborts when its singleton socket path, under the session's `TMPDIR`,
//!   exceeds the 107 bytes of a Unix socket path. A longer one is refused at launch with
//!   an error naming the fix (a shorter `PoolConfig::root` or prefix).
//! - Browsers start with no page (`--no-startup-window`: they answer DevTools sooner and
//!   run no renderer while idle); open pages with [`ChromeSession::new_page`].
//!
//! ## Containers
//!
//! When the browser's main process dies, its helpers are reparented to PID 1, which must
//! reap them. A container whose PID 1 is the server itself (no init) accumulates zombie
//! processes: they hold no memory, but they fill the PID table. Run such containers with
//! an init (`docker run --init`, `tini`, `dumb-init`), or call
//! [`become_child_subreaper`] once at start-up so that orphaned helpers are reparented to
//! the server, whose teardowns then reap them.
//!
//! `PR_SET_PDEATHSIG` also fires when this process `exec`s: a server that re-executes
//! itself loses its browsers (the new image's startup sweep removes their directories).

mod config;
mod error;
mod launcher;
mod matcher;
mod orphans;
pub mod procfs;
mod session;
mod spawner;
mod tree;

pub use config::{
    find_browser, ChromeConfig, ProcessModel, BROWSER_ENV_VARS, BROWSER_NAMES, LEAN_ARGS,
};
pub use error::ChromeError;
pub use launcher::{
    parse_devtools_active_port, ChromeLauncher, ChromeProcess, BASE_ARGS, DEVTOOLS_LOST, HOME_DIR,
    MAX_SESSION_DIR_LEN, PROFILE_DIR, TMP_DIR, WRAPPER_DID_NOT_EXEC,
};
pub use matcher::SessionMatcher;
pub use session::{ChromePage, ChromeSession};

/// Make this process the "child subreaper" of its descendants (`PR_SET_CHILD_SUBREAPER`):
/// orphaned browser helpers are reparented to it instead of PID 1, and teardowns reap
/// them. Opt-in, for containers without an init. Call it once, early; it affects the
/// whole process and every child it has.
pub fn become_child_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}
