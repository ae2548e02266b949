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
use rustix::process::Signal;

use crate::config::{find_browser, ChromeConfig};
use crate::error::ChromeError;
use crate::tree::Tree;
use crate::{orphans, procfs, spawner};

/// Name of the profile directory inside a session directory (`--user-data-dir`).
pub const PROFILE_DIR: &str = "profile";
/// Name of the private temporary directory inside a session directory (`TMPDIR`).
pub const TMP_DIR: &str = "tmp";
/// Name of the private home directory inside a session directory (`HOME`, XDG dirs).
pub const HOME_DIR: &str = "home";

/// The arguments the launcher always passes, besides `--user-data-dir`,
/// `--no-sandbox` (when applicable) and `--disable-dev-shm-usage` (when configured).
pub const BASE_ARGS: &[&str] = &[
    "--headless=new",
    "--remote-debugging-port=0",
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
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
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
/// - the browser leads its own process group; `kill(Force)` SIGKILLs the group;
/// - it is forked from one dedicated thread with `PR_SET_PDEATHSIG(SIGKILL)`, so it dies
///   with this process however this process dies, and never earlier;
/// - stderr is drained continuously (its tail is kept for error messages), stdout and
///   stdin are `/dev/null`: the browser never blocks on a full pipe;
/// - a launch that fails, times out or is cancelled (its future dropped) kills and reaps
///   everything it started before returning or while being dropped.
#[derive(Debug)]
pub struct ChromeLauncher {
    config: ChromeConfig,
    executable: PathBuf,
    no_sandbox: bool,
    hostname: String,
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
        Ok(ChromeLauncher {
            config,
            executable,
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
    /// carries; the startup sweep's proof of ownership.
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
        Self::prepare_dir(&dir).map_err(|e| BackendError::from_io("launch", &dir, &e))?;
        let spawned = spawner::spawn(self.command(&dir)).await.map_err(|e| {
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
        let handler = tokio::spawn(drive(handler));
        Ok(ChromeProcess {
            handler,
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

/// Kill and reap a launch that failed (bounded), then build its error.
async fn fail(tree: Tree, kind: BackendErrorKind, msg: String, dir: &Path) -> BackendError {
    tree.signal_group(Signal::KILL);
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
        if let Ok(text) = std::fs::read_to_string(port_file) {
            if let Some(url) = parse_port_file(&text) {
                return Ok(url);
            }
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// The WebSocket URL from the contents of `DevToolsActivePort`, once it is complete.
pub(crate) fn parse_port_file(text: &str) -> Option<String> {
    let mut lines = text.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    let path = lines.next()?.trim();
    if port == 0 || !path.starts_with('/') {
        return None;
    }
    // Guard against reading a half-written file: a browser endpoint ends in a UUID.
    if let Some(id) = path.strip_prefix("/devtools/browser/") {
        if id.len() != 36 {
            return None;
        }
    }
    Some(format!("ws://127.0.0.1:{port}{path}"))
}

/// Drive chromiumoxide's handler until the connection ends. Browser events are handled
/// here and never stamp session activity.
async fn drive(mut handler: Handler) {
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
}

/// One live Chromium: its process group, its CDP connection and its directory.
///
/// Dropping it aborts the CDP handler task and, if the processes were not confirmed gone
/// yet, SIGKILLs the group and waits (at most about a second) until it is gone: a
/// belt-and-braces net under the pool's own.
pub struct ChromeProcess {
    handler: tokio::task::JoinHandle<()>,
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
    /// The CDP client. Commands sent through it directly do not stamp session activity:
    /// go through [`ChromeSession`](crate::ChromeSession) (or wrap calls in
    /// `Lease::begin_op`) so the pool sees the session as used.
    pub fn browser(&self) -> &Arc<Browser> {
        &self.browser
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

    /// Live (non-zombie) processes of the browser's process group, from `/proc`.
    pub fn live_processes(&self) -> Vec<u32> {
        if self.tree.is_reaped() {
            return Vec::new();
        }
        procfs::live_group_members(self.tree.pid())
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
                process.tree.signal_group(Signal::KILL);
                // Then anything of this browser that left the group (the crash
                // handler); the group is already dying meanwhile.
                let _ = tokio::task::spawn_blocking(process.tree.stray_killer()).await;
                Ok(())
            }
        }
    }

    async fn wait_gone(&self, process: &ChromeProcess) {
        process.tree.wait_gone().await;
        process.handler.abort();
    }

    async fn exited(&self, process: &ChromeProcess) -> String {
        process.tree.exited().await
    }

    fn kill_on_drop(&self, process: &ChromeProcess) {
        process.handler.abort();
        process.tree.kill_and_wait_sync(Duration::from_secs(1));
    }

    async fn memory(&self, process: &ChromeProcess) -> Option<MemoryUsage> {
        if process.tree.is_reaped() {
            return None;
        }
        let pgid = process.tree.pid();
        tokio::task::spawn_blocking(move || group_memory(pgid))
            .await
            .ok()
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

/// RSS and PSS summed over the live members of process group `pgid`.
pub(crate) fn group_memory(pgid: i32) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    for pid in procfs::live_group_members(pgid) {
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
        let ok = "41235\n/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a";
        assert_eq!(
            parse_port_file(ok).unwrap(),
            "ws://127.0.0.1:41235/devtools/browser/5b9bad9d-a11a-4234-a890-d91a56a87d5a"
        );
        assert_eq!(parse_port_file(""), None);
        assert_eq!(parse_port_file("41235\n"), None);
        assert_eq!(parse_port_file("41235\n/devtools/browser/5b9b"), None);
        assert_eq!(parse_port_file("x\n/devtools/browser/"), None);
    }

    #[test]
    fn user_data_dir_arg_is_exact() {
        assert_eq!(
            ChromeLauncher::user_data_dir_arg(Path::new("/r/bp-abc-1")),
            OsString::from("--user-data-dir=/r/bp-abc-1/profile")
        );
    }
}
