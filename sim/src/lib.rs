//! # browserpool-sim
//!
//! A deterministic simulated world for `browserpool`: weeks of traffic, browser crashes,
//! server crashes and restarts replayed in milliseconds by a discrete-event engine, with
//! oracles checked after every event. The main entry point for a user is the CLI:
//! `cargo run --release -p browserpool-sim -- replay kristof5` (see `sim/README.md`).
//!
//! - [`world`]: the simulated OS (processes, PIDs, process groups, Chrome trees, an
//!   in-memory filesystem, markers, neighbours) and, in [`world::backend`], the core's
//!   `ProcessLauncher`, `Filesystem` and `Clock` traits over it;
//! - [`engine`]: the discrete-event engine that drives `browserpool::Lifecycle` over the
//!   world, for the `unmanaged` and `managed` pools, with the oracles of [`oracle`];
//! - [`scenario`]: scenario files, presets and the per-seed swarm draw of faults;
//! - [`batch`]: many seeds on all cores; [`report`]: the JSON schema and the table;
//!   [`plot`]: the SVG plot; [`rng`]: the pinned PRNG;
//! - [`net`]: network faults with turmoil around the async `Pool`.
//!
//! Same scenario and seed, same trace, byte for byte.
//!
//! ```
//! use browserpool_sim::{scenario::Scenario, engine::run_pair};
//!
//! let mut scenario = Scenario::preset("steady").unwrap();
//! scenario.duration_hours = 6.0; // keep the doctest short
//! let out = run_pair(&scenario, 1).unwrap();
//! assert!(out.managed.report.oracle_violations.is_empty());
//! ```

pub mod batch;
pub mod engine;
pub mod net;
pub mod oracle;
pub mod plot;
pub mod report;
/// The pinned PRNG (the core's, re-exported): every random choice of a run.
pub use browserpool::rng;
pub mod scenario;
pub mod world;
