//! # browserpool
//!
//! A pool of headless browser sessions that stays bounded however its clients behave
//! (crash, disconnect, forget to destroy) and however the server dies.
//!
//! Four mechanisms, each tested on its own:
//! - an **idle reaper** that tears down sessions with no client activity for
//!   [`PoolConfig::idle_timeout`] (default 30 minutes), discovered lazily so a reap tick
//!   costs in proportion to what expired;
//! - **LRU eviction at capacity** instead of an error ([`CapacityPolicy::EvictLru`]);
//! - a **Drop safety net**: dropping the [`Pool`] (or anything owning a live browser)
//!   kills the process tree and removes the directory, in any context;
//! - a **startup sweep** of what a crashed predecessor left under the root
//!   ([`sweep`]), which removes only what it can prove is ours (a dead pool's session
//!   directories, or an old Chrome profile matching a configured [`LegacyPattern`]),
//!   never follows a symlink, never touches another user's entries and never touches a
//!   live pool's directories.
//!
//! Every decision is made by [`Lifecycle`], a pure, deterministic state machine
//! (sans-IO, in the style of `quinn-proto`). [`Pool`] is the thin async shell that feeds
//! it and carries out its [`Action`]s through the [`Clock`], [`ProcessLauncher`] and
//! [`Filesystem`] traits. Real Chromium lives in `browserpool-chrome`; a simulated world
//! that replays 15-day leak scenarios lives in `browserpool-sim`.
//!
//! ## Example
//!
//! A server embedding the pool: every RPC stamps activity through its lease; a dropped
//! connection releases its sessions after a grace period.
//!
//! ```
//! use std::time::Duration;
//! use browserpool::{testing::FakeLauncher, OwnerKey, Pool, PoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let config = PoolConfig::default()
//!     .with_max_browsers(4)
//!     .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
//!     .with_root(root.path());
//! // With `browserpool-chrome`, the launcher would be `ChromeLauncher`.
//! let pool = Pool::new(config, FakeLauncher::new()).await?;
//!
//! // RPC "create": the session belongs to this connection.
//! let conn = OwnerKey::new("conn-1");
//! let lease = pool.acquire_for(conn.clone()).await?;
//! let id = lease.id();
//!
//! // RPC "operate": look the session up by id; an op in flight is never reaped.
//! {
//!     let lease = pool.session(id)?;
//!     let _op = lease.begin_op()?;
//!     // ... drive the browser through lease.process() ...
//! }
//!
//! // The connection dropped: destroy its sessions unless used again within 30 s.
//! pool.release_owner(&conn, Duration::from_secs(30));
//!
//! // RPC "destroy" (clients should still call it; correctness does not depend on it).
//! pool.destroy(id).await?;
//! assert!(pool.session(id).is_err());
//!
//! pool.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod config;
mod dropnet;
pub mod error;
pub mod fs;
pub mod lease;
pub mod machine;
pub mod pool;
pub mod rng;
pub mod session;
pub mod stats;
pub mod sweep;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use backend::{
    memory_of_each, DirEntryInfo, EntryKind, Filesystem, KillStage, LaunchSpec, MarkerLock,
    MarkerState, MemoryUsage, Orphan, ProcessLauncher, ProfileLayout, ProfileProbe,
};
pub use config::{Backoff, CapacityPolicy, PoolConfig};
pub use dropnet::run_blocking_cleanup;
pub use error::{
    AcquireError, BackendError, BackendErrorKind, ConfigError, PoolError, SessionError,
};
pub use fs::OsFilesystem;
pub use lease::{Lease, OpGuard, OwnedOpGuard};
pub use machine::{
    Action, Input, Lifecycle, MachineStats, Phase, SessionInfo, TeardownBegun, Ticket,
};
pub use pool::{Pool, PoolBuilder, ShutdownReport};
pub use session::{
    Activity, ActivityRef, EndReason, MemoryLimit, OwnerKey, RetireCause, SessionId,
};
pub use stats::{PoolMemory, PoolStats, Totals};
pub use sweep::{LegacyPattern, LegacyShape, SweepReport};
pub use time::{Clock, CoarseClock, Timestamp, TokioClock};
