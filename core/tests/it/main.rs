//! The core's integration tests, in one test binary: each module was its own binary
//! before, and every one of them compiled and linked the pool, its fake launcher and
//! tokio again (a debug rebuild after a change to the machine took 10.2 s with nine
//! binaries). Run one group with a filter, e.g. `cargo test -p browserpool --test it
//! -- pool::`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

mod config_props;
mod machine_props;
mod memory;
mod pool;
mod spares;
mod supervision;
mod sweep;
mod sweep_race;
mod ticks;
