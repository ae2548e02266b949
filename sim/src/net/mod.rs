//! Network faults with turmoil: an RPC server embedding the async [`browserpool::Pool`],
//! clients that crash, hang, drop their connections or get partitioned, server crashes
//! and restarts, and invariants checked between simulation steps.
//!
//! - [`proto`]: the line-delimited JSON protocol (`create`, `operate`, `destroy`, `ping`);
//! - [`server`]: [`server::serve`], generic over any [`browserpool::ProcessLauncher`]:
//!   one [`browserpool::OwnerKey`] per connection, `release_owner(grace)` when the
//!   connection ends (EOF, reset, or keepalive timeout for a peer that vanished silently);
//! - [`backend`]: [`backend::NetLauncher`] and [`backend::MemFs`], the "OS" that outlives
//!   a server crash;
//! - [`scenario`]: [`scenario::run`] builds the simulation from a seed, injects faults and
//!   returns a [`scenario::NetReport`] listing invariant violations.
//!
//! turmoil (pinned to 0.7.2) moves time in fixed ticks, so these runs cover one simulated
//! hour plus convergence, not weeks; the discrete-event world covers weeks.
//!
//! ```
//! use std::time::Duration;
//! use browserpool_sim::net::scenario::{run, NetScenario};
//!
//! let mut s = NetScenario::new(7);
//! s.chaos = Duration::from_secs(120); // a short run for the example
//! let report = run(&s);
//! assert!(report.violations.is_empty(), "{:#?}", report.violations);
//! ```

pub mod backend;
pub mod proto;
pub mod rng;
pub mod scenario;
pub mod server;
