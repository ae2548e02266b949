//! [`ChromeConfig`] and browser discovery.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ChromeError;

/// Environment variables consulted, in order, when no executable is configured.
pub const BROWSER_ENV_VARS: [&str; 2] = ["CHROME", "BROWSERPOOL_CHROME"];

/// Executable names looked up on `PATH`, in order, when neither the config nor the
/// environment names one.
pub const BROWSER_NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// How [`ChromeLauncher`](crate::ChromeLauncher) starts and stops Chromium.
///
/// Build it with [`ChromeConfig::default()`] and struct update syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChromeConfig {
    /// The browser executable. `None`: the first of `$CHROME`, `$BROWSERPOOL_CHROME`,
    /// then `chromium`, `chromium-browser`, `google-chrome` on `PATH`. Nothing is ever
    /// downloaded.
    pub executable: Option<PathBuf>,
    /// Extra command-line arguments, appended after the launcher's own. They must not
    /// set `--user-data-dir` or `--remote-debugging-port` (the launcher owns those).
    pub args: Vec<OsString>,
    /// Pass `--no-sandbox`. `None` (the default): only when running as root, where
    /// Chromium refuses to start with its sandbox.
    pub no_sandbox: Option<bool>,
    /// A launch that has not produced a usable CDP connection by then is killed,
    /// reaped and reported as failed. The pool's own `launch_timeout` bounds it from
    /// outside too. Default 20 s.
    pub launch_timeout: Duration,
    /// Budget for a graceful close (CDP `Browser.close`) when the pool asks for one
    /// (`PoolConfig::kill_grace` > 0). Default 2 s.
    pub graceful_close: Duration,
    /// Timeout of one CDP request (chromiumoxide's `request_timeout`). Default 30 s.
    pub request_timeout: Duration,
    /// Pass `--disable-dev-shm-usage`, so Chromium's shared-memory files live in the
    /// session's private `TMPDIR` instead of `/dev/shm` (where a SIGKILLed browser would
    /// leave them behind). Default true.
    pub shm_in_session_dir: bool,
    /// Arm `PR_SET_PDEATHSIG(SIGKILL)` in every browser, so that a server killed by
    /// SIGKILL or the OOM killer takes its browsers with it (their helpers follow within
    /// a few hundred milliseconds, and crash handlers exit when their browser is gone).
    /// Default true.
    ///
    /// Turn it off only if this process `exec`s itself (the death signal fires on
    /// `exec` too) and must keep its browsers across that. Browsers of a server that
    /// dies then keep running until the next pool on the same root and prefix starts:
    /// its startup sweep kills them (after proving them ours through `SingletonLock` and
    /// their command lines) before removing their directories.
    pub kill_on_parent_death: bool,
    /// Which processes each browser runs. Default [`ProcessModel::Standard`].
    /// [`ProcessModel::Lean`] needs the sandbox off: [`ChromeLauncher::new`](crate::ChromeLauncher::new)
    /// refuses it otherwise.
    pub process_model: ProcessModel,
}

/// How many processes each browser runs.
///
/// A pooled browser is its own isolation unit (one session, one browser, one process
/// group), so a service that crashes inside the browser process costs the session and
/// nothing else. What a process costs is paid on every teardown: after SIGKILL the
/// kernel unmaps each process's memory, most of it the Chromium image mapped once per
/// process (figures in the crate README, "Fewer processes per browser").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessModel {
    /// Chromium's own: two zygotes, a GPU process, the network and storage services,
    /// renderers (8-9 processes per browser with one page open on Chromium 156,
    /// counting the two crash handlers).
    #[default]
    Standard,
    /// The GPU and the network service run inside the browser process and renderers
    /// start without zygotes ([`LEAN_ARGS`]): 5 processes per browser with one page
    /// open. Measured on Chromium 156 (crate README): one client on one browser,
    /// teardown p50 52-55 ms against 60-68 ms, launch floor 209-213 ms against 230-237
    /// ms; 20 clients on 4 browsers, PSS per browser 128 MiB against 150-153 MiB.
    ///
    /// The price: a crash of the GPU or network service is a crash of the browser, so
    /// the session ends (reason `crashed`) where Chromium would restart the service.
    /// Chromium refuses to start without zygotes while its sandbox is on, so this
    /// needs the sandbox off (`no_sandbox`, which is the default as root). A
    /// `--enable-features=` in [`ChromeConfig::args`] replaces the one in
    /// [`LEAN_ARGS`]; add `NetworkServiceInProcess2` to it to keep the network service
    /// in the browser.
    Lean,
}

/// The arguments [`ProcessModel::Lean`] adds, after the launcher's own and before
/// [`ChromeConfig::args`].
pub const LEAN_ARGS: &[&str] = &[
    "--no-zygote",
    "--in-process-gpu",
    "--enable-features=NetworkServiceInProcess2",
];

impl Default for ChromeConfig {
    fn default() -> Self {
        ChromeConfig {
            executable: None,
            args: Vec::new(),
            no_sandbox: None,
            launch_timeout: Duration::from_secs(20),
            graceful_close: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            shm_in_session_dir: true,
            kill_on_parent_death: true,
            process_model: ProcessModel::Standard,
        }
    }
}

/// Find the browser: `configured`, else `$CHROME`, `$BROWSERPOOL_CHROME`, else
/// `chromium`, `chromium-browser`, `google-chrome` on `PATH`. The result is an
/// executable file; nothing is downloaded.
pub fn find_browser(configured: Option<&Path>) -> Result<PathBuf, ChromeError> {
    if let Some(p) = configured {
        return check_executable(p, "ChromeConfig::executable");
    }
    for var in BROWSER_ENV_VARS {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return check_executable(Path::new(&v), var);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in BROWSER_NAMES {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(ChromeError::BrowserNotFound {
        searched: format!(
            "$CHROME, $BROWSERPOOL_CHROME, and {} on PATH",
            BROWSER_NAMES.join(", ")
        ),
    })
}

fn check_executable(p: &Path, source: &str) -> Result<PathBuf, ChromeError> {
    let p = if p.components().count() == 1 && !p.is_absolute() {
        // A bare name: look it up on PATH.
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|c| is_executable(c))
            .unwrap_or_else(|| p.to_owned())
    } else {
        p.to_owned()
    };
    if is_executable(&p) {
        Ok(p)
    } else {
        Err(ChromeError::BrowserNotExecutable {
            path: p,
            source_name: source.to_owned(),
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configured_path_must_be_executable() {
        let err = find_browser(Some(Path::new("/nonexistent/chrome"))).unwrap_err();
        assert!(
            matches!(err, ChromeError::BrowserNotExecutable { .. }),
            "{err}"
        );
        assert_eq!(
            find_browser(Some(Path::new("/bin/sh"))).unwrap(),
            PathBuf::from("/bin/sh")
        );
        // A bare name is looked up on PATH.
        assert!(find_browser(Some(Path::new("sh"))).unwrap().is_absolute());
    }
}
