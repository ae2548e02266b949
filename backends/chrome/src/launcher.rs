//! [`ChromeLauncher`]: the [`ProcessLauncher`] for real Chromium, and [`ChromeProcess`],
//! its handle on one live browser.

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use browserpool::{
    BackendError, BackendErrorKind, KillStage, LaunchSpec, MemoryUsage, Orphan, ProcessLauncher,
};
use chromiumoxide::cdp::browser_protocol::browser::CloseParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Handler};
use futures::StreamExt;
use tokio::sync::watch;

use crate::config::{find_browser, ChromeConfig, ProcessModel, LEAN_ARGS};
use crate::error::ChromeError;
use crate::matcher::SessionMatcher;
use crate::tree::{self, Tree};
use crate::{orphans, procfs, spawner};

/// The end reason's text (in `EndReason::Crashed { exit }`) when the DevTools connection
/// drops while the browser process still lives: the session is unusable, so the pool
/// ends it, kills its processes and removes its directory.
pub const DEVTOOLS_LOST: &str = "devtools connection lost";

/// A browser that dies also drops its DevTools connection, sometimes a moment before its
/// exit is observed: after a connection loss, an exit within this long is reported as
/// the exit, not as [`DEVTOOLS_LOST`].
const EXIT_AFTER_CDP_LOSS: Duration = Duration::from_millis(250);

/// Name of the profile directory inside a session directory (`--user-data-dir`).
pub const PROFILE_DIR: &str = "profile";
/// Name of the private temporary directory inside a session directory (`TMPDIR`).
pub const TMP_DIR: &str = "tmp";
/// Name of the private home directory inside a session directory (`HOME`, XDG dirs).
pub const HOME_DIR: &str = "home";

/// The longest session directory path, in bytes, Chromium can start in. Chromium binds
/// its profile's singleton socket at `$TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket`
/// and aborts ("Socket path too long") when that exceeds the 107 bytes a Unix socket
/// path may have; `TMPDIR` is `<dir>/tmp`, which leaves 58 bytes for `<dir>`. With
/// the default prefix, `<root>/browserpool-<12 hex digits>-<n>` fits when `root` is at
/// most about 25 bytes (`/tmp`, `/dev/shm`, `/var/lib/browserpool`). A longer one is
/// refused at launch with an error that says so.
pub const MAX_SESSION_DIR_LEN: usize =
    107 - "/tmp/org.chromium.Chromium.XXXXXX/SingletonSocket".len();

/// The arguments the launcher always passes, besides `--user-data-dir`,
/// `--no-sandbox` (when applicable) and `--disable-dev-shm-usage` (when configured).
///
/// Chromium's crash reporter stays on (see the comment in the list): its handler
/// processes leave the browser's process group, and the launcher finds and kills them by
/// their `--database=` inside the session directory.
pub const BASE_ARGS: &[&str] = &[
    "--headless=new",
    "--remote-debugging-port=0",
    // No initial tab: without one, the browser answers its first DevTools connection
    // about 50 ms after writing DevToolsActivePort instead of 250-700 ms (measured on
    // Chromium 156), and an idle browser runs no renderer. Clients open pages with
    // `ChromeSession::new_page`; the browser stays up with no page open.
    "--no-startup-window",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-component-update",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-crash-reporter",
    // Not `--disable-crashpad-for-testing`: with it, Chromium 156's network service
    // crashes in a loop ("FD ownership violation"). The crash handler processes it
    // starts leave the group (setsid); they are found by their `--database=` inside
    // the session directory and killed by PID.
    "--disable-gpu",
    "--disable-quic",
    "--disable-hang-monitor",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--disable-client-side-phishing-detection",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    // SpareRendererForSitePerProcess: Chromium keeps one renderer started ahead of the
    // next navigation. A pooled browser mostly idles, so that renderer is memory and
    // exit work for nothing: without it, one process fewer per browser (10, not 11)
    // and a lower PSS per browser (measured in the crate README). A later
    // `--disable-features=` in `ChromeConfig::args` replaces this whole list.
    // WebUIOmniboxPopup, WebUIOmniboxAimPopup: `--headless=new` runs the full browser
    // UI unseen, and Chromium 156 preloads the omnibox popup's WebUI
    // (`chrome://omnibox-popup.top-chrome/`) into a renderer of its own, plus two
    // `browser_ui` DevTools targets, as soon as a page opens. Nobody can ever see that
    // popup here; without it a browser with one page runs one renderer, not two (about
    // 116 MB RSS less), and a forced teardown, which is mostly the kernel unmapping
    // each process, is about 15 ms shorter (`phases` example, crate README).
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,SpareRendererForSitePerProcess,WebUIOmniboxPopup,WebUIOmniboxAimPopup",
    "--metrics-recording-only",
    "--password-store=basic",
    "--mute-audio",
    "--enable-automation",
];

/// Launches headless Chromium for a [`browserpool::Pool`], one process group and one
/// private directory per session.
///
/// Guarantees (beyond those of [`ProcessLauncher`]):
/// - everything the browser writes lives in the session directory: the profile
///   (`<dir>/profile`), `TMPDIR` (`<dir>/tmp`, where Chromium's
///   `org.chromium.Chromium.*` scratch goes), `HOME` and the XDG directories
///   (`<dir>/home`) and, by default, shared memory (`--disable-dev-shm-usage`);
/// - the browser leads its own process group; `kill(Force)` SIGKILLs the group at once,
///   and every process the session's [`SessionMatcher`] proves outside it (crash
///   handlers) is SIGKILLed by the first `/proc` scan of the `wait_gone` that follows;
///   `wait_gone` resolves only when a full scan finds neither;
/// - just before that SIGKILL the group gets nice -20 when this process may lower nice
///   values (`CAP_SYS_NICE`), so the browser's exit runs ahead of other work on a busy
///   host; without the capability the kill is the same, only not boosted;
/// - it is forked from one dedicated thread with `PR_SET_PDEATHSIG(SIGKILL)` (unless
///   [`ChromeConfig::kill_on_parent_death`] is off), so it dies with this process
///   however this process dies, and never earlier;
/// - `exited` resolves when the main process exits *or* the DevTools connection drops
///   while it lives ([`DEVTOOLS_LOST`]): either way the session is unusable and the pool
///   ends it;
/// - stderr is drained continuously (its tail is kept for error messages), stdout and
///   stdin are `/dev/null`: the browser never blocks on a full pipe;
/// - a launch that fails, times out or is cancelled (its future dropped) kills and reaps
///   everything it started before returning or while being dropped;
/// - the process it started is the browser: when the executable is a script (Debian's
///   `/usr/bin/chromium` is one, and `exec`s the browser) and the started process is
///   still that script's interpreter once the browser answers, the launch fails
///   ([`WRAPPER_DID_NOT_EXEC`]) and everything is killed. A wrapper that runs the browser
///   as its child (Debian's `/usr/bin/chromium-headless-shell` does) would put the
///   browser out of reach of kill-on-parent-death and crash detection; configure the
///   binary it runs instead (`/usr/lib/chromium/chromium-headless-shell`).
#[derive(Debug)]
pub struct ChromeLauncher {
    config: ChromeConfig,
    executable: PathBuf,
    /// When `executable` is a `#!` script: its interpreter, resolved.
    interpreter: Option<PathBuf>,
    no_sandbox: bool,
    hostname: String,
}

/// The start of the launch error when the configured executable is a wrapper script that
/// runs the browser as a child instead of `exec`ing it.
pub const WRAPPER_DID_NOT_EXEC: &str =
    "the started process is still the wrapper script's interpreter, not the browser";

/// The interpreter of `exe` if it is a `#!` script, resolved through symlinks.
fn script_interpreter(exe: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(exe).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let interp = text.split_whitespace().next()?;
    std::fs::canonicalize(interp).ok()
}

/// Whether the process `pid` runs the resolved program `program` (`/proc/<pid>/exe`).
fn runs(pid: i32, program: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == program)
}

impl ChromeLauncher {
    /// A launcher for `config`. Finds the browser now (see
    /// [`find_browser`](crate::find_browser)) so a missing browser is reported at
    /// start-up, not at the first request.
    pub fn new(config: ChromeConfig) -> Result<Self, ChromeError> {
        let executable = find_browser(config.executable.as_deref())?;
        let no_sandbox = config
            .no_sandbox
            .unwrap_or_else(|| rustix::process::geteuid().is_root());
        if config.process_model == ProcessModel::Lean && !no_sandbox {
            return Err(ChromeError::InvalidConfig(
                "process_model Lean needs the sandbox off (Chromium refuses --no-zygote with \
                 its sandbox on): set no_sandbox to Some(true), or use ProcessModel::Standard"
                    .to_owned(),
            ));
        }
        let interpreter = script_interpreter(&executable);
        Ok(ChromeLauncher {
            config,
            executable,
            interpreter,
            no_sandbox,
            hostname: orphans::hostname(),
        })
    }

    /// The browser executable in use.
    pub fn executable(&self) -> &Path {
        &self.executable
    }

    /// The configuration in force.
    pub fn config(&self) -> &ChromeConfig {
        &self.config
    }

    /// The exact `--user-data-dir=...` argument a browser of session directory `dir`
    /// carries. Which processes are a session's is decided by [`SessionMatcher`], not by
    /// comparing arguments with this.
    pub fn user_data_dir_arg(dir: &Path) -> OsString {
        let mut arg = OsString::from("--user-data-dir=");
        arg.push(dir.join(PROFILE_DIR));
        arg
    }

    /// The command that launches a browser for session directory `dir` (which, with its
    /// `profile`, `tmp` and `home` subdirectories, must exist): executable, arguments,
    /// environment, working directory and stdio. [`ProcessLauncher::launch`] forks it
    /// from the spawner thread in a new process group; it is public so that tools and
    /// tests can reproduce exactly what a pool runs.
    pub fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.executable);
        cmd.args(BASE_ARGS);
        if self.no_sandbox {
            cmd.arg("--no-sandbox");
        }
        if self.config.shm_in_session_dir {
            cmd.arg("--disable-dev-shm-usage");
        }
        cmd.arg(Self::user_data_dir_arg(dir));
        if self.config.process_model == ProcessModel::Lean {
            cmd.args(LEAN_ARGS);
        }
        cmd.args(&self.config.args);
        let tmp = dir.join(TMP_DIR);
        let home = dir.join(HOME_DIR);
        cmd.env("TMPDIR", &tmp)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .current_dir(&tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Create `profile`, `tmp` and `home` (0700) inside the session directory.
    pub fn prepare_dir(dir: &Path) -> std::io::Result<()> {
        for sub in [PROFILE_DIR, TMP_DIR, HOME_DIR] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join(sub))?;
        }
        Ok(())
    }

    async fn launch_inner(&self, spec: &LaunchSpec) -> Result<ChromeProcess, BackendError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.launch_timeout;
        let dir = spec.dir.clone();
        let len = dir.as_os_str().len();
        if len > MAX_SESSION_DIR_LEN {
            return Err(BackendError::new(
                "launch",
                BackendErrorKind::Launch,
                format!(
                    "session directory path is {len} bytes; Chromium cannot start in one longer than {MAX_SESSION_DIR_LEN} (its singleton socket path under TMPDIR would exceed 107 bytes): use a shorter PoolConfig::root or prefix"
                ),
            )
            .at(&dir));
        }
        Self::prepare_dir(&dir).map_err(|e| BackendError::from_io("launch", &dir, e))?;
        let spawned = spawner::spawn(self.command(&dir), self.config.kill_on_parent_death)
            .await
            .map_err(|e| {
                BackendError::new(
                    "launch",
                    BackendErrorKind::Launch,
                    format!("cannot start {}: {e}", self.executable.display()),
                )
                .at(&dir)
            })?;
        // From here on, dropping `tree` (an error below, or this future being dropped)
        // kills and reaps the whole group.
        let tree = Tree::new(spawned.pid, spawned.stderr, dir.clone()).map_err(|e| {
            BackendError::new("launch", BackendErrorKind::Launch, e.to_string()).at(&dir)
        })?;
        let port_file = dir.join(PROFILE_DIR).join("DevToolsActivePort");
        let url = match tokio::time::timeout_at(deadline, wait_endpoint(&tree, &port_file)).await {
            Ok(Ok(url)) => url,
            Ok(Err(msg)) => {
                return Err(fail(tree, BackendErrorKind::Launch, msg, &dir).await);
            }
            Err(_) => {
                let msg = format!(
                    "no DevTools endpoint within {:?}; stderr: {}",
                    self.config.launch_timeout,
                    tail(&tree.stderr_tail())
                );
                return Err(fail(tree, BackendErrorKind::TimedOut, msg, &dir).await);
            }
        };
        if let Some(interp) = &self.interpreter {
            if runs(tree.pid(), interp) {
                let msg = format!(
                    "{WRAPPER_DID_NOT_EXEC} ({} runs the browser as its child, so kill-on-parent-death and crash detection would watch the script): set ChromeConfig::executable to the browser binary it runs",
                    self.executable.display()
                );
                return Err(fail(tree, BackendErrorKind::Launch, msg, &dir).await);
            }
        }
        let handler_config = HandlerConfig {
            request_timeout: self.config.request_timeout,
            ..HandlerConfig::default()
        };
        let (browser, handler) = match tokio::time::timeout_at(
            deadline,
            Browser::connect_with_config(url.clone(), handler_config),
        )
        .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                let msg = format!("cannot connect to {url}: {e}");
                return Err(fail(tree, BackendErrorKind::Launch, msg, &dir).await);
            }
            Err(_) => {
                let msg = format!("CDP connection to {url} not made within the launch timeout");
                return Err(fail(tree, BackendErrorKind::TimedOut, msg, &dir).await);
            }
        };
        let (closed_tx, cdp_closed) = watch::channel(false);
        let handler = tokio::spawn(drive(handler, closed_tx));
        Ok(ChromeProcess {
            handler,
            cdp_closed,
            browser: Arc::new(browser),
            ws_url: url,
            dir,
            launched_in: started.elapsed(),
            tree,
        })
    }
}

fn tail(s: &str) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(1024);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_owned()
}

/// Kill and reap every process of a launch that failed (bounded), then build its error.
async fn fail(tree: Tree, kind: BackendErrorKind, msg: String, dir: &Path) -> BackendError {
    tree.kill_forced();
    let _ = tokio::time::timeout(Duration::from_secs(2), tree.wait_gone()).await;
    drop(tree); // if anything survived, Drop tries once more, synchronously
    BackendError::new("launch", kind, msg).at(dir)
}

/// Poll `DevToolsActivePort` (first line: port, second: path) until it is complete,
/// failing at once if the browser exits first.
async fn wait_endpoint(tree: &Tree, port_file: &Path) -> Result<String, String> {
    loop {
        if let Some(exit) = tree.exit_status() {
            // Give the drainer a moment to collect the last words.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(format!(
                "browser exited before DevTools was ready ({exit}); stderr: {}",
                tail(&tree.stderr_tail())
            ));
        }
        if let Ok(text) = std::fs::read(port_file) {
            if let Some(url) = parse_devtools_active_port(&text) {
                return Ok(url);
            }
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// The browser's DevTools WebSocket URL from the contents of
/// `<profile>/DevToolsActivePort`, once the file is complete: a first line with the port
/// (1-65535, plain digits) and a second with `/devtools/browser/<UUID>`. Anything else
/// (a half-written file, another format) is `None`: the caller polls again, and nothing
/// it read is ever connected to.
pub fn parse_devtools_active_port(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.split('\n');
    let port = lines.next()?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let path = lines.next()?.trim_end_matches('\r');
    let id = path.strip_prefix("/devtools/browser/")?;
    let uuid_shaped = id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if port == 0 || !uuid_shaped || lines.any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(format!("ws://127.0.0.1:{port}{path}"))
}

/// Drive chromiumoxide's handler until the connection ends, then say so on `closed`
/// (unless this task was aborted, which drops `closed` unsent). Browser events are
/// handled here and never stamp session activity.
async fn drive(mut handler: Handler, closed: watch::Sender<bool>) {
    let mut consecutive_errors = 0u32;
    while let Some(r) = handler.next().await {
        match r {
            Ok(()) => consecutive_errors = 0,
            Err(CdpError::Ws(_)) | Err(CdpError::Io(_)) => break,
            Err(e) => {
                consecutive_errors += 1;
                tracing::debug!(error = %e, "CDP handler error");
                if consecutive_errors > 100 {
                    break;
                }
            }
        }
    }
    tracing::debug!("DevTools connection ended");
    let _ = closed.send(true);
}

/// One live Chromium: its process group, its CDP connection and its directory.
///
/// Dropping it aborts the CDP handler task and, if the processes were not confirmed gone
/// yet, SIGKILLs the group and waits (at most about a second) until it is gone: a
/// belt-and-braces net under the pool's own.
pub struct ChromeProcess {
    handler: tokio::task::JoinHandle<()>,
    /// Becomes true when the DevTools connection has ended.
    cdp_closed: watch::Receiver<bool>,
    browser: Arc<Browser>,
    ws_url: String,
    dir: PathBuf,
    launched_in: Duration,
    tree: Tree,
}

impl std::fmt::Debug for ChromeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromeProcess")
            .field("pid", &self.pid())
            .field("dir", &self.dir)
            .field("ws_url", &self.ws_url)
            .finish()
    }
}

impl ChromeProcess {
    /// The raw CDP client, **unstamped**: commands sent through it neither stamp
    /// session activity nor mark the session busy, so the pool may reap, evict or retire
    /// the session while they run. Go through [`ChromeSession`](crate::ChromeSession)
    /// (whose `run` hands this client out for the duration of one client operation), or
    /// hold a `Lease::begin_op` guard while using it.
    pub fn browser_unstamped(&self) -> &Arc<Browser> {
        &self.browser
    }

    /// Whether the DevTools connection is still up (when it drops, the pool ends the
    /// session with [`DEVTOOLS_LOST`]).
    pub fn devtools_connected(&self) -> bool {
        !*self.cdp_closed.borrow()
    }

    /// The matcher that decides which processes are this session's.
    pub fn matcher(&self) -> &SessionMatcher {
        self.tree.matcher()
    }

    /// The browser's main PID, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.tree.pid() as u32
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The DevTools WebSocket URL.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// From spawn until the CDP connection was usable.
    pub fn launch_duration(&self) -> Duration {
        self.launched_in
    }

    /// How the main process exited ("exit code N", "killed by signal N"), if it has.
    pub fn exit_status(&self) -> Option<String> {
        self.tree.exit_status()
    }

    /// The last few KiB the browser wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.tree.stderr_tail()
    }

    /// Live (non-zombie) processes of this session, sorted: the members of the
    /// browser's process group and the processes its [`SessionMatcher`] proves outside
    /// it (crash handlers). Scans `/proc` (blocking, a few milliseconds).
    pub fn live_processes(&self) -> Vec<u32> {
        (self.tree.scanner())()
            .all()
            .into_iter()
            .map(|p| p as u32)
            .collect()
    }
}

impl Drop for ChromeProcess {
    fn drop(&mut self) {
        self.handler.abort();
        // `tree` is dropped after this and kills the group if it is not confirmed gone.
    }
}

#[async_trait]
impl ProcessLauncher for ChromeLauncher {
    type Process = ChromeProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<ChromeProcess, BackendError> {
        self.launch_inner(spec).await
    }

    async fn kill(&self, process: &ChromeProcess, stage: KillStage) -> Result<(), BackendError> {
        tracing::debug!(
            target: "browserpool_chrome::teardown",
            dir = %process.dir.display(),
            stage = ?stage,
            "kill"
        );
        match stage {
            KillStage::Graceful => {
                let close = process.browser.execute(CloseParams::default());
                match tokio::time::timeout(self.config.graceful_close, close).await {
                    Ok(Ok(_)) => Ok(()),
                    // The connection dropping because the browser exited is success.
                    Ok(Err(_)) if process.exit_status().is_some() => Ok(()),
                    Ok(Err(e)) => Err(BackendError::new(
                        "kill",
                        BackendErrorKind::Other,
                        format!("Browser.close failed: {e}"),
                    )
                    .at(&process.dir)),
                    Err(_) => Err(BackendError::new(
                        "kill",
                        BackendErrorKind::TimedOut,
                        format!(
                            "Browser.close not answered within {:?}",
                            self.config.graceful_close
                        ),
                    )
                    .at(&process.dir)),
                }
            }
            KillStage::Force => {
                // The group now; what left it (the crash handlers) at the first scan of
                // the `wait_gone` that follows.
                process.tree.kill_forced();
                Ok(())
            }
        }
    }

    async fn wait_gone(&self, process: &ChromeProcess) {
        process.tree.wait_gone().await;
        process.handler.abort();
    }

    async fn exited(&self, process: &ChromeProcess) -> String {
        let mut cdp = process.cdp_closed.clone();
        let lost = async move {
            if cdp.wait_for(|closed| *closed).await.is_err() {
                // The handler task was aborted (teardown under way): not a loss.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            exit = process.tree.exited() => exit,
            () = lost => {
                match tokio::time::timeout(EXIT_AFTER_CDP_LOSS, process.tree.exited()).await {
                    Ok(exit) => exit,
                    Err(_) => {
                        tracing::warn!(dir = %process.dir.display(), "DevTools connection lost while the browser lives");
                        DEVTOOLS_LOST.to_owned()
                    }
                }
            }
        }
    }

    fn kill_on_drop(&self, process: &ChromeProcess) {
        process.handler.abort();
        process.tree.kill_and_wait_sync(Duration::from_secs(1));
    }

    /// One `/proc` scan for the session's processes (group members and what its
    /// [`SessionMatcher`] proves), then one `smaps_rollup` read per process. `None` once
    /// the browser's main process is reaped (the tree is gone).
    async fn memory(&self, process: &ChromeProcess) -> Option<MemoryUsage> {
        if process.tree.is_reaped() {
            return None;
        }
        let scanner = process.tree.scanner();
        tokio::task::spawn_blocking(move || session_memory(&scanner().all()))
            .await
            .ok()
    }

    /// Every session's figure from **one** `/proc` scan shared by all of them
    /// (`tree::scan_sessions`), then one `smaps_rollup` read per process found: a
    /// round costs one pass over the host's processes plus one read per session process,
    /// instead of one pass per session. The reads run as one blocking job per session,
    /// all at once (as the per-session calls did): a read of a Chromium process costs
    /// milliseconds (it walks the whole address space), so one thread reading every
    /// session's processes in turn would make a large pool's round outlast its interval.
    ///
    /// Each session's processes are exactly those its own
    /// [`memory`](ProcessLauncher::memory) call would find on the same snapshot (its live
    /// group members, and the processes its matcher proves, such as the crash handlers
    /// outside the group); a process is counted for at most one session (session
    /// directories are unique, groups disjoint). `None` for a session whose main process
    /// is reaped, for every session if the scan's blocking job fails, and for a session
    /// whose reading job fails.
    async fn memory_of_all(&self, processes: &[Arc<ChromeProcess>]) -> Vec<Option<MemoryUsage>> {
        let targets: Vec<Option<tree::Target>> = processes
            .iter()
            .map(|p| (!p.tree.is_reaped()).then(|| p.tree.target()))
            .collect();
        let n = targets.len();
        let live: Vec<tree::Target> = targets.iter().flatten().cloned().collect();
        let Ok((scans, _)) = tokio::task::spawn_blocking(move || tree::scan_sessions(&live)).await
        else {
            return vec![None; n];
        };
        let mut scans = scans.into_iter();
        let reads = targets.iter().map(|t| {
            let found = t.as_ref().and_then(|_| scans.next());
            async move {
                let pids = found?.all();
                tokio::task::spawn_blocking(move || session_memory(&pids))
                    .await
                    .ok()
            }
        });
        futures::future::join_all(reads).await
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        let dir = dir.to_owned();
        let host = self.hostname.clone();
        tokio::task::spawn_blocking(move || orphans::find(&dir, &host))
            .await
            .map_err(|e| BackendError::new("find_orphans", BackendErrorKind::Other, e.to_string()))
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        orphans::kill(orphan).await
    }
}

/// RSS and PSS summed over `pids` (a session's live processes).
fn session_memory(pids: &[i32]) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    for &pid in pids {
        if let Some((rss, pss)) = procfs::memory(pid) {
            m.rss_bytes += rss;
            m.pss_bytes += pss;
            m.processes += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn port_file_must_be_complete() {
        let ok = b"41235\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a";
        assert_eq!(
            parse_devtools_active_port(ok).unwrap(),
            "ws://127.0.0.1:41235/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a"
        );
        let captured = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chromium-156/DevToolsActivePort"
        ))
        .unwrap();
        assert!(parse_devtools_active_port(&captured).is_some());
        for bad in [
            &b""[..],
            b"41235\n",
            b"41235\n/devtools/browser/5b9b",
            b"x\n/devtools/browser/",
            b"0\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a",
            b"+5\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a",
            b"70000\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a",
            b"41235\n/devtools/page/5b9bad9d-a11a-4234-a890-d91a56a87d5a",
            b"41235\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a/../x",
            b"41235\n/devtools/browser/5b9bad9d_a11a_4234_a890_d91a56a87d5a",
            b"41235\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a\n@evil",
        ] {
            assert_eq!(
                parse_devtools_active_port(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn port_files_never_panic_and_yield_only_local_browser_endpoints(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)
        ) {
            if let Some(url) = parse_devtools_active_port(&bytes) {
                let rest = url.strip_prefix("ws://127.0.0.1:").unwrap();
                let (port, path) = rest.split_once('/').unwrap();
                proptest::prop_assert!(port.parse::<u16>().is_ok_and(|p| p > 0));
                proptest::prop_assert!(path.starts_with("devtools/browser/") && path.len() == 53);
            }
        }

        #[test]
        fn port_files_chromium_writes_parse(port in 1u16.., id in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            let text = format!("{port}\n/devtools/browser/{id}");
            proptest::prop_assert_eq!(
                parse_devtools_active_port(text.as_bytes()),
                Some(format!("ws://127.0.0.1:{port}/devtools/browser/{id}"))
            );
        }
    }

    #[test]
    fn the_longest_session_directory_leaves_room_for_chromiums_socket() {
        let dir = format!("/{}", "d".repeat(MAX_SESSION_DIR_LEN - 1));
        let socket = format!("{dir}/tmp/org.chromium.Chromium.AbCdEf/SingletonSocket");
        assert_eq!(socket.len(), 107);
        assert_eq!(MAX_SESSION_DIR_LEN, 58);
    }

    fn args_of(config: ChromeConfig) -> Vec<String> {
        let launcher = ChromeLauncher::new(ChromeConfig {
            executable: Some(PathBuf::from("/bin/true")),
            ..config
        })
        .unwrap();
        launcher
            .command(Path::new("/r/bp-abc-1"))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_lean_model_adds_its_flags_before_the_users() {
        let user = ChromeConfig {
            no_sandbox: Some(true),
            args: vec!["--enable-features=X".into()],
            ..ChromeConfig::default()
        };
        let standard = args_of(user.clone());
        assert!(LEAN_ARGS
            .iter()
            .all(|a| !standard.contains(&(*a).to_owned())));
        let lean = args_of(ChromeConfig {
            process_model: ProcessModel::Lean,
            ..user
        });
        let at = |a: &str| lean.iter().position(|x| x == a).unwrap();
        for a in LEAN_ARGS {
            assert!(
                at(a) > at("--no-sandbox") && at(a) < at("--enable-features=X"),
                "{a}"
            );
        }
        assert_eq!(lean.len(), standard.len() + LEAN_ARGS.len());
    }

    #[test]
    fn the_lean_model_with_the_sandbox_on_is_refused() {
        let err = ChromeLauncher::new(ChromeConfig {
            executable: Some(PathBuf::from("/bin/true")),
            no_sandbox: Some(false),
            process_model: ProcessModel::Lean,
            ..ChromeConfig::default()
        })
        .err()
        .unwrap();
        assert!(matches!(err, ChromeError::InvalidConfig(_)));
        assert!(err.to_string().contains("no_sandbox"), "{err}");
        // Sandbox off: accepted.
        args_of(ChromeConfig {
            no_sandbox: Some(true),
            process_model: ProcessModel::Lean,
            ..ChromeConfig::default()
        });
    }

    #[test]
    fn user_data_dir_arg_is_exact() {
        assert_eq!(
            ChromeLauncher::user_data_dir_arg(Path::new("/r/bp-abc-1")),
            OsString::from("--user-data-dir=/r/bp-abc-1/profile")
        );
    }
}
