//! Where round-robin touch time goes at large `n`: the same relaxed store reached
//! through different memory layouts, measured in one process (median of 7 samples of
//! 20 M touches each, warm).
//!
//! ```text
//! cargo run --release -p browserpool-benches --example touch_layout -- 100000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use browserpool::{Activity, ActivityRef, CoarseClock, Timestamp};
use browserpool_benches::floor::Floor;
use browserpool_benches::ours::OursPool;
use browserpool_benches::{run_touches, Pattern, Touch};

/// One `Arc<AtomicU64>` per session, allocated back to back.
struct Boxed(Vec<Arc<AtomicU64>>);

impl Touch for Boxed {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn touch(&self, i: usize) {
        self.0[i].store(1, Ordering::Relaxed)
    }
}

/// `Activity::touch(coarse.now())` through a plain `Vec<Arc<Activity>>`.
struct Acts(Vec<Arc<Activity>>, Arc<CoarseClock>);

impl Touch for Acts {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn touch(&self, i: usize) {
        self.0[i].touch(self.1.now())
    }
}

/// `Activity::touch(coarse.now())` through a plain `Vec<ActivityRef>`.
struct Refs(Vec<ActivityRef>, Arc<CoarseClock>);

impl Touch for Refs {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn touch(&self, i: usize) {
        self.0[i].touch(self.1.now())
    }
}

fn measure<T: Touch>(name: &str, t: &T) {
    let iters = 20_000_000;
    let mut v: Vec<f64> = (0..7)
        .map(|_| run_touches(t, Pattern::RoundRobin, iters).as_nanos() as f64 / iters as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    println!("{name:55} {:.2} ns", v[3]);
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().expect("n must be a number"));
    let pool = OursPool::new(n).unwrap();
    let clock = Arc::new(CoarseClock::new(Timestamp(5)));
    println!("round-robin touch over n = {n}");
    measure("floor: Vec<AtomicU64>", &Floor::new(n));
    measure(
        "Vec<Arc<AtomicU64>>, allocated back to back",
        &Boxed((0..n).map(|_| Arc::new(AtomicU64::new(0))).collect()),
    );
    measure(
        "Vec<Arc<Activity>>, allocated back to back",
        &Acts(
            (0..n)
                .map(|_| Arc::new(Activity::new(Timestamp(0))))
                .collect(),
            clock.clone(),
        ),
    );
    measure(
        "Vec<ActivityRef> of the pool's own cells (chunked)",
        &Refs(
            pool.leases().iter().map(|l| l.activity().clone()).collect(),
            clock,
        ),
    );
    measure("ours: Vec<Lease> (24-byte handles), Lease::touch", &pool);
}
