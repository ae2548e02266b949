//! # browserpool-sim
//!
//! A deterministic simulated world for `browserpool`: weeks of traffic, browser crashes,
//! server crashes and restarts replayed in milliseconds by a discrete-event engine, with
//! oracles checked after every event.
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
pub mod rng;
pub mod scenario;
pub mod world;
