//! [`ChromeError`]: what the Chromium backend and its session handle report.

use std::path::PathBuf;

use browserpool::SessionError;

/// Errors of the Chromium backend and of [`ChromeSession`](crate::ChromeSession).
#[derive(Debug, thiserror::Error)]
pub enum ChromeError {
    /// No browser was configured and none was found.
    #[error("no Chromium found (searched {searched}): install one (e.g. `apt-get install chromium`) or set ChromeConfig::executable or $CHROME")]
    BrowserNotFound {
        /// Where we looked.
        searched: String,
    },
    /// The configured browser is not an executable file.
    #[error("browser {path:?} (from {source_name}) is not an executable file: fix the path")]
    BrowserNotExecutable {
        /// The path that was given.
        path: PathBuf,
        /// Where it came from (the config field or environment variable).
        source_name: String,
    },
    /// The configuration cannot work; the message names the field and what to change.
    /// Returned by [`ChromeLauncher::new`](crate::ChromeLauncher::new), before any
    /// browser is started.
    #[error("invalid ChromeConfig: {0}")]
    InvalidConfig(String),
    /// The session has ended (reaped, evicted, crashed, destroyed...): the reason says
    /// how. Acquire a new session.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The browser process exited while the command was in flight.
    #[error("the browser exited ({exit}) during the command: acquire a new session")]
    BrowserExited {
        /// How it exited ("exit code N", "killed by signal N").
        exit: String,
    },
    /// A CDP command failed while the browser was alive.
    #[error("CDP command failed: {0}")]
    Cdp(#[from] chromiumoxide::error::CdpError),
}
