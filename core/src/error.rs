//! Typed errors. Each names what happened, to which session, and what the caller can do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::session::{EndReason, SessionId};

/// An invalid [`PoolConfig`](crate::PoolConfig), refused at construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_browsers` is zero, so no session could ever be served.
    #[error("max_browsers is 0: set it to the number of browsers this host can hold (at least 1)")]
    ZeroMaxBrowsers,
    /// `max_browsers` is above [`PoolConfig::MAX_BROWSERS`](crate::PoolConfig::MAX_BROWSERS).
    #[error("max_browsers is {max_browsers}, above the limit of {limit}: no host holds that many browsers; set it to the number this host can hold")]
    TooManyBrowsers {
        /// The value given.
        max_browsers: usize,
        /// [`PoolConfig::MAX_BROWSERS`](crate::PoolConfig::MAX_BROWSERS).
        limit: usize,
    },
    /// A duration that must be positive is zero (below one millisecond).
    #[error("{field} is zero: give it a positive duration of at least 1 ms (use None to opt out where the field is optional)")]
    ZeroDuration {
        /// The field's name.
        field: &'static str,
    },
    /// A duration is longer than [`PoolConfig::MAX_DURATION`](crate::PoolConfig::MAX_DURATION)
    /// (one year).
    #[error("{field} is {value:?}, longer than one year: give at most 365 days (use None to opt out where the field is optional)")]
    DurationTooLong {
        /// The field's name.
        field: &'static str,
        /// The refused value.
        value: Duration,
    },
    /// A budget the pool derives from several fields overflows or exceeds one year.
    #[error("{sum} exceeds one year: lower these fields")]
    SumTooLong {
        /// The sum, written with the fields' names.
        sum: &'static str,
    },
    /// `tick` is longer than `reap_interval`.
    #[error("tick ({tick:?}) is longer than reap_interval ({reap_interval:?}): the tick must be at most the reap interval")]
    TickLongerThanReapInterval {
        /// The configured tick.
        tick: Duration,
        /// The configured reap interval.
        reap_interval: Duration,
    },
    /// `remove_backoff.max` is shorter than `remove_backoff.initial`.
    #[error("remove_backoff.max is shorter than remove_backoff.initial: the cap must be at least the first delay")]
    BackoffInverted,
    /// `max_uses` is `Some(0)`.
    #[error(
        "max_uses is Some(0): a session would retire before its first use; use None to opt out"
    )]
    ZeroMaxUses,
    /// `kill_attempts` is zero.
    #[error("kill_attempts is 0: at least one forced kill is needed to tear a session down")]
    ZeroKillAttempts,
    /// `tombstones` is zero.
    #[error("tombstones is 0: keep at least one so late callers learn why their session ended")]
    ZeroTombstones,
    /// More spares than `max_browsers`: they could never all be launched.
    #[error("spares is {spares} but max_browsers is {max_browsers}: spares count against max_browsers, so set spares to at most max_browsers (0 turns prewarming off)")]
    TooManySpares {
        /// The configured spares.
        spares: usize,
        /// The configured bound.
        max_browsers: usize,
    },
    /// `memory_budget` or `max_session_memory` is `Some(0)`.
    #[error("{field} is Some(0): no browser fits in zero bytes; give a positive number of bytes, or None to opt out")]
    ZeroMemory {
        /// The field's name.
        field: &'static str,
    },
    /// A name prefix (the pool's, or a legacy pattern's) could take entries that belong
    /// to other software. See [`PoolConfig::validate`](crate::PoolConfig::validate) for
    /// the exact rule.
    #[error("{field} {prefix:?} is refused because {why}: use at least 4 characters of [A-Za-z0-9._-] ending in '-' or '_' that no shared tool uses, such as \"browserpool-\"")]
    BadPrefix {
        /// Which field: `prefix` or `legacy[i].prefix`.
        field: String,
        /// The refused prefix.
        prefix: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The root is a relative path, which would depend on the working directory.
    #[error("root {root:?} is relative: give an absolute directory such as /tmp")]
    RelativeRoot {
        /// The refused root.
        root: PathBuf,
    },
}

impl ConfigError {
    /// The field (or, for [`ConfigError::SumTooLong`], the sum of fields) that was refused.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::ZeroMaxBrowsers | ConfigError::TooManyBrowsers { .. } => "max_browsers",
            ConfigError::ZeroDuration { field } | ConfigError::DurationTooLong { field, .. } => {
                field
            }
            ConfigError::SumTooLong { sum } => sum,
            ConfigError::TickLongerThanReapInterval { .. } => "tick",
            ConfigError::BackoffInverted => "remove_backoff.max",
            ConfigError::ZeroMaxUses => "max_uses",
            ConfigError::ZeroKillAttempts => "kill_attempts",
            ConfigError::ZeroTombstones => "tombstones",
            ConfigError::TooManySpares { .. } => "spares",
            ConfigError::ZeroMemory { field } => field,
            ConfigError::BadPrefix { .. } => "prefix",
            ConfigError::RelativeRoot { .. } => "root",
        }
    }
}

/// Why a request for a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// The pool is full and its policy is `Reject`.
    #[error("pool at capacity ({max} browsers) and the policy is Reject: retry later, destroy a session, or use EvictLru")]
    AtCapacity {
        /// The configured `max_browsers`.
        max: usize,
    },
    /// The memory budget, not `max_browsers`, was the limit: the sessions' measured
    /// memory plus the estimate for a new browser exceeds `memory_budget`, and no idle
    /// session could be evicted to make room (every session was busy). Under `Reject`
    /// this comes at once; under `Wait` and `EvictLru` when the wait runs out.
    #[error("memory budget reached: sessions use {in_use} of the {budget}-byte memory_budget and a new browser needs about {estimate} more, and every session is busy so none could be evicted; the limit was memory, not max_browsers: retry later, destroy a session, or raise memory_budget")]
    MemoryBudget {
        /// The configured `memory_budget` in bytes.
        budget: u64,
        /// The measured memory of the pool's sessions (plus estimates for those not yet
        /// measured), in bytes.
        in_use: u64,
        /// The estimate for one more browser, in bytes.
        estimate: u64,
    },
    /// The request waited for a slot and none freed in time.
    #[error("no browser slot freed within {waited:?}: every session stayed busy; retry later or raise max_browsers")]
    WaitTimedOut {
        /// How long the request waited.
        waited: Duration,
    },
    /// Too many requests are already waiting.
    #[error("{max_waiters} requests are already waiting for a browser: retry later or raise max_waiters")]
    QueueFull {
        /// The configured `max_waiters`.
        max_waiters: usize,
    },
    /// The browser for this request could not be launched; its processes and directory
    /// were cleaned up.
    #[error("launching browser for session {id} failed: {reason}; nothing was left behind, retry the request")]
    LaunchFailed {
        /// The session that was being launched.
        id: SessionId,
        /// What the backend reported.
        reason: String,
    },
    /// The pool is shutting down or was dropped.
    #[error("the pool is shutting down: no new sessions are served")]
    ShuttingDown,
    /// The pool's reaper task kept panicking and the pool gave up restarting it, so it
    /// could no longer keep sessions bounded; it refuses new sessions.
    #[error("the pool is unhealthy and refuses new sessions: {reason}")]
    Unhealthy {
        /// What went wrong.
        reason: String,
    },
    /// The session was launched but ended before it could be handed out (for example
    /// its browser crashed at once).
    #[error("session {id} ended before it could be handed out: {reason}; retry the request")]
    EndedBeforeHandout {
        /// The session.
        id: SessionId,
        /// Why it ended.
        reason: EndReason,
    },
}

/// Why an operation on a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session has ended; `reason` says how (reaped, evicted, crashed, destroyed...).
    #[error("session {id} has ended: {reason}; acquire a new session")]
    Ended {
        /// The session.
        id: SessionId,
        /// Why it ended.
        reason: EndReason,
    },
    /// `destroy` waited the whole kill budget and the session's process tree is still
    /// alive. The pool keeps killing it in the background; it counts against
    /// `max_browsers` until it is gone.
    #[error("session {id} is still being torn down after {waited:?}: its process tree has not died; the pool keeps killing it in the background")]
    TeardownPending {
        /// The session.
        id: SessionId,
        /// How long `destroy` waited.
        waited: Duration,
    },
    /// The pool's reaper task kept panicking and the pool gave up restarting it; it no
    /// longer hands out or looks up sessions (they can still be destroyed).
    #[error("session {id}: the pool is unhealthy: {reason}; shut it down and build a new one")]
    PoolUnhealthy {
        /// The session asked for.
        id: SessionId,
        /// What went wrong.
        reason: String,
    },
    /// The id was never issued by this pool, or it ended so long ago that its tombstone
    /// was forgotten (see [`PoolConfig::tombstones`](crate::PoolConfig::tombstones)).
    #[error("session {id} is unknown to this pool (never issued, or ended long ago): acquire a new session")]
    Unknown {
        /// The session.
        id: SessionId,
    },
}

/// What a [`ProcessLauncher`](crate::ProcessLauncher) or [`Filesystem`](crate::Filesystem)
/// reports when an operation fails.
///
/// An error made from an [`std::io::Error`] ([`BackendError::from_io`]) keeps it as its
/// [`source()`](std::error::Error::source), so callers can walk down to the OS error.
/// Equality compares what the pool acts on (`op`, `path`, `kind`, `message`), not the
/// source.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendError {
    /// What was being done ("launch", "kill", "remove", ...).
    pub op: &'static str,
    /// The path concerned, if any.
    pub path: Option<PathBuf>,
    /// A coarse classification that the pool and simulations act on.
    pub kind: BackendErrorKind,
    /// The backend's own description.
    pub message: String,
    /// The I/O error this was made from, if any.
    pub source: Option<Arc<std::io::Error>>,
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        write!(f, "{} {path}: {:?}: {}", self.op, self.kind, self.message)
    }
}

impl std::error::Error for BackendError {
    /// The [`std::io::Error`] itself (not its `Arc`), so callers can downcast to it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
            && self.path == other.path
            && self.kind == other.kind
            && self.message == other.message
    }
}

impl Eq for BackendError {}

impl BackendError {
    /// A new error.
    pub fn new(op: &'static str, kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            op,
            path: None,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, naming `path`.
    pub fn at(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Classify an I/O error; the error is kept as this error's `source()`.
    pub fn from_io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => BackendErrorKind::NotFound,
            K::PermissionDenied => BackendErrorKind::PermissionDenied,
            K::AlreadyExists => BackendErrorKind::AlreadyExists,
            K::TimedOut => BackendErrorKind::TimedOut,
            K::StorageFull => BackendErrorKind::NoSpace,
            K::ResourceBusy | K::DirectoryNotEmpty => BackendErrorKind::Busy,
            _ => BackendErrorKind::Other,
        };
        let mut err = BackendError::new(op, kind, e.to_string()).at(path);
        err.source = Some(Arc::new(e));
        err
    }
}

/// Classification of a [`BackendError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The thing was not there (for a removal: already gone, which counts as success).
    NotFound,
    /// Permission denied.
    PermissionDenied,
    /// Something is in the way (a directory that already exists).
    AlreadyExists,
    /// Busy or not empty; usually transient.
    Busy,
    /// No space left on the device.
    NoSpace,
    /// Did not finish in time.
    TimedOut,
    /// The browser could not be started or connected to.
    Launch,
    /// Anything else.
    Other,
}

/// Why a [`Pool`](crate::Pool) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The configuration was refused; nothing was launched or removed.
    #[error("invalid pool configuration: {0}")]
    Config(#[from] ConfigError),
    /// The pool's ownership marker could not be created or locked under the root.
    #[error(
        "cannot create the pool's ownership marker: {0}; check that root exists and is writable"
    )]
    Marker(BackendError),
    /// Listing the root for the startup sweep failed.
    #[error("startup sweep could not list the root: {0}")]
    Sweep(BackendError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_io_backend_error_keeps_the_os_error_as_its_source() {
        let io = std::io::Error::from_raw_os_error(28); // ENOSPC
        let e = BackendError::from_io("remove", "/tmp/x", io);
        assert_eq!(e.kind, BackendErrorKind::NoSpace);
        let src = e.source().expect("a source");
        let io = src
            .downcast_ref::<std::io::Error>()
            .expect("the io::Error itself");
        assert_eq!(io.raw_os_error(), Some(28));
        assert!(BackendError::new("x", BackendErrorKind::Other, "m")
            .source()
            .is_none());
    }
}
