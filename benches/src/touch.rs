//! Access patterns of the `touch` benchmark, shared by every implementation.

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Something holding `len()` sessions whose activity can be stamped by index.
///
/// `touch(i)` must do exactly what a server does per client command on session `i`,
/// through the handle a server holds; each implementation documents what that is.
pub trait Touch: Sync {
    /// Sessions held (at least 2).
    fn len(&self) -> usize;
    /// Whether no session is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stamp activity on session `i` (`i < len()`).
    fn touch(&self, i: usize);
}

/// Which sessions are touched, in what order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// The same session (index 0) every time.
    Same,
    /// Sessions `0, 1, …, n-1, 0, 1, …`: every touch lands on a different session, so
    /// at large `n` every touch misses the cache.
    RoundRobin,
    /// Two threads at once, each touching its own session repeatedly (index 0 and index
    /// `n / 2`, far apart in memory). The time reported is per touch per thread: the
    /// slower thread's elapsed time divided by its touch count.
    TwoThreads,
}

impl Pattern {
    /// Every pattern, in report order.
    pub const ALL: [Pattern; 3] = [Pattern::Same, Pattern::RoundRobin, Pattern::TwoThreads];

    /// A short stable name (`same`, `round_robin`, `two_threads`).
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Same => "same",
            Pattern::RoundRobin => "round_robin",
            Pattern::TwoThreads => "two_threads",
        }
    }
}

/// Run `iters` touches of `t` in `pattern` and return the time they took (for
/// [`Pattern::TwoThreads`]: the slower thread's time for its `iters` touches).
///
/// The loop around each touch is the same for every implementation (an index increment
/// and a wrap check for round-robin), so differences are the touches' own.
#[inline(never)]
pub fn run_touches<T: Touch + ?Sized>(t: &T, pattern: Pattern, iters: u64) -> Duration {
    match pattern {
        Pattern::Same => {
            let start = Instant::now();
            for _ in 0..iters {
                t.touch(std::hint::black_box(0));
            }
            start.elapsed()
        }
        Pattern::RoundRobin => {
            let n = t.len();
            let mut i = 0usize;
            let start = Instant::now();
            for _ in 0..iters {
                t.touch(i);
                i += 1;
                if i == n {
                    i = 0;
                }
            }
            start.elapsed()
        }
        Pattern::TwoThreads => {
            let barrier = Barrier::new(2);
            let other = t.len() / 2;
            let run = |idx: usize| {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    t.touch(std::hint::black_box(idx));
                }
                start.elapsed()
            };
            let run = &run;
            std::thread::scope(|s| {
                let h = s.spawn(move || run(other));
                let mine = run(0);
                // A panic in the other thread is a bench bug: propagate it.
                let theirs = match h.join() {
                    Ok(d) => d,
                    Err(p) => std::panic::resume_unwind(p),
                };
                mine.max(theirs)
            })
        }
    }
}
