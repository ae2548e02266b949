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
//! hour plus convergence, not weeks; the discrete-event world covers weeks. At the
//! default 100 ms tick one seed (6 hosts, 3961 simulated seconds) takes about 0.3-0.6 s
//! in the dev profile; at 10 ms about 4 s.
//!
//! ## Faults modelled
//! - **partition** (`Sim::partition`): every message between a client and the server is
//!   dropped; neither side gets a FIN or RST. The server notices only through its
//!   keepalive; the client through its request timeout. turmoil 0.7.2 TCP does not
//!   retransmit, so a connection that lived through a partition stays broken.
//! - **hold** (`Sim::hold`/`release`): messages wait on the link, then arrive in a burst
//!   (a hung client or a stalled link).
//! - **client crash** (`Sim::crash`, later `bounce`): the client's sockets send FIN/RST,
//!   as a kernel does for a dead process.
//! - **client disconnects**: clients drop their connection without destroying, forget
//!   sessions while staying connected (the idle reaper or LRU eviction ends them), or
//!   stop at the end of the chaos phase.
//! - **server crash, hard**: turmoil drops the host's runtime, but the [`browserpool::Pool`]
//!   itself is kept alive by the harness and never dropped, so its Drop safety net does
//!   not run (as after SIGKILL or OOM); the OS releases its marker lock; browsers and
//!   directories survive. The restarted server's new pool (new instance id, same backend)
//!   must find and kill them in its startup sweep. (Futures of in-flight tasks are still
//!   dropped by turmoil; none of their destructors does backend I/O.)
//! - **server crash, soft**: the pool is dropped after the crash, so the Drop safety net
//!   cleans up (a panic or an orderly exit without `shutdown`).
//! - **launch failures**: the next 1-2 launches fail.
//!
//! ## Not modelled
//! Message loss on a healthy link (`fail_rate` breaks TCP in turmoil 0.7.2), clock jumps,
//! slow or stuck kills and filesystem errors (the discrete-event world covers those),
//! kill-on-parent-death (browsers always survive a hard crash: the worst case), a
//! reconnecting client resuming an old session id.
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
pub mod scenario;
pub mod server;
