//! # browserpool-benches
//!
//! Benchmarks of browserpool's hot paths (activity stamping, the reaper tick, LRU
//! eviction, a whole acquire/touch/destroy cycle) beside two baselines that do the same
//! job, so that the comparison is about design, not about semantics:
//!
//! - [`ours`]: the real `browserpool` code: [`browserpool::Lease::touch`] on leases
//!   handed out by an async [`browserpool::Pool`], and the sans-IO
//!   [`browserpool::Lifecycle`] driven directly for reaping and eviction (the way the
//!   `Pool` shell drives it, minus the backend's kill time), with
//!   [`null_backend::NullLauncher`] and `browserpool::testing::NullFs` as the backend;
//! - [`naive`]: the obvious design: `HashMap<Id, Arc<Instance>>` with a per-instance
//!   atomic timestamp, a full scan per reap tick and a full scan per eviction;
//! - [`moka_cache`]: `moka::sync::Cache` with `time_to_idle`, `max_capacity`, pure LRU
//!   eviction and an eviction listener that counts victims;
//! - [`floor`]: a bare relaxed `AtomicU64` store, the least any touch can cost.
//!
//! Each fixture documents exactly what one measured operation does. The criterion benches
//! live in `benches/benches/`; the `compare` binary ([`compare`]) measures all of them
//! side by side in one process, interleaving rounds so that machine drift hits every
//! implementation alike.
//!
//! ## Example
//!
//! Every fixture is usable on its own; here the naive baseline and our lifecycle machine
//! reap exactly the same number of expired sessions in one tick:
//!
//! ```
//! use browserpool_benches::{naive::NaiveReap, ours::OursReap, ReapFixture};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1 000 sessions, 10 of which expire at each generation's tick.
//! let mut ours = OursReap::new(1_000, 10)?;
//! let mut naive = NaiveReap::new(1_000, 10);
//! assert_eq!(ours.tick(1), 10);
//! assert_eq!(naive.tick(1), 10);
//! // Put the reaped sessions back (fresh ids, same old stamps) for the next round.
//! ours.restore();
//! naive.restore();
//! assert_eq!(ours.live(), 1_000);
//! assert_eq!(naive.len(), 1_000);
//! # Ok(())
//! # }
//! ```

pub mod compare;
pub mod floor;
pub mod moka_cache;
pub mod naive;
pub mod null_backend;
pub mod ours;
pub mod targets;
pub mod touch;

use std::time::Duration;

pub use touch::{run_touches, Pattern, Touch};

/// Session counts every criterion benchmark is run at.
pub const SIZES: [usize; 3] = [100, 10_000, 100_000];

/// Session counts the `compare` binary measures: [`SIZES`] plus n = 1 000, where a full
/// scan is still cheap enough for the naive design to be a fair rival (criterion keeps
/// [`SIZES`] so that its history compares).
pub const COMPARE_SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];

/// Expired sessions per reap tick.
pub const EXPIRED: [usize; 3] = [0, 1, 100];

/// Idle timeout every implementation enforces in the reap benchmarks (30 minutes, the
/// pool's default), in milliseconds of virtual time.
pub const IDLE_MS: u64 = 30 * 60 * 1000;

/// The reap interval (idle-deadline grid) of the lifecycle machine, in milliseconds; also
/// the spacing between the stamps of successive generations of expiring sessions.
pub const GRID_MS: u64 = 60 * 1000;

/// The machine's tick (coarse-clock resolution and deadline slack), in milliseconds.
pub const TICK_MS: u64 = 1000;

/// Whether this process is a criterion bench binary running in test mode (`cargo test
/// --benches`, or `cargo bench -- --test`): then every benchmark runs its routine once,
/// and fixtures should keep setup small.
pub fn criterion_test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let test = args.iter().any(|a| a == "--test");
    !bench || test
}

/// The session counts to use: [`SIZES`], or only the smallest two when `quick`.
pub fn sizes(quick: bool) -> Vec<usize> {
    if quick {
        vec![100, 10_000]
    } else {
        SIZES.to_vec()
    }
}

/// A reaper-tick fixture: a structure holding `n` sessions of which, at tick `g`
/// (`1..=gens()`), exactly `k` are past the idle timeout.
///
/// Generation `g`'s `k` sessions were last active at `g * GRID_MS`; the others ("fresh")
/// at `(gens() + 1) * GRID_MS`. Tick `g` runs at the first instant at which generation `g`
/// is expired for that implementation, so it reaps exactly generation `g`. Ticks must be
/// run in increasing `g` since the last [`ReapFixture::restore`]; between `restore`s the
/// number of sessions therefore drops by at most `k * (gens() - 1)` before a tick, which
/// [`gens_for`] keeps under 10 % of `n`.
pub trait ReapFixture {
    /// Generations of expiring sessions available between restores.
    fn gens(&self) -> usize;
    /// Run the tick of generation `g` and return how many sessions it reaped (`k`).
    fn tick(&mut self, g: usize) -> usize;
    /// A tick at which nothing is expired; returns how many sessions it reaped (0).
    fn tick_idle(&mut self) -> usize;
    /// Replace every session reaped since the last restore with a new one stamped like
    /// the one it replaces, so that every generation again holds `k` sessions.
    fn restore(&mut self);
}

/// How many generations of `k` expiring sessions a reap fixture of `n` sessions holds:
/// at most 32, at least 1, and at most 10 % of `n` in total when that allows one.
pub fn gens_for(n: usize, k: usize) -> usize {
    if k == 0 {
        return 1;
    }
    (n / 10 / k).clamp(1, 32)
}

/// The virtual time (ms) at which generation `g`'s sessions were last active.
pub fn gen_stamp(g: usize) -> u64 {
    g as u64 * GRID_MS
}

/// Time `iters` operations of a [`ReapFixture`], excluding restores: ticks run in chunks
/// of [`ReapFixture::gens`], each chunk timed as a whole, with a restore after each
/// chunk. With `k == 0`, `iters` idle ticks are timed as one block.
///
/// Panics (a bench bug, not an input error) if a tick reaps a number other than `k`.
pub fn time_reaps<F: ReapFixture + ?Sized>(f: &mut F, k: usize, iters: u64) -> Duration {
    if k == 0 {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            let reaped = f.tick_idle();
            assert_eq!(reaped, 0, "an idle tick reaped something");
        }
        return start.elapsed();
    }
    let gens = f.gens() as u64;
    let mut total = Duration::ZERO;
    let mut done = 0;
    let mut reaped = 0usize;
    while done < iters {
        let chunk = gens.min(iters - done);
        let start = std::time::Instant::now();
        for g in 1..=chunk {
            reaped += std::hint::black_box(f.tick(g as usize));
        }
        total += start.elapsed();
        assert_eq!(reaped, k * chunk as usize, "a tick reaped the wrong number");
        reaped = 0;
        f.restore();
        done += chunk;
    }
    total
}
