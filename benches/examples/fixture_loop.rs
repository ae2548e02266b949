//! Run one `compare` fixture in a loop, for a profiler (`perf record`, `valgrind
//! --tool=callgrind`) to show where its time goes.
//!
//! ```text
//! cargo run --release -p browserpool-benches --example fixture_loop -- evict 100 1000000
//! cargo run --release -p browserpool-benches --example fixture_loop -- reap 100000 2000 100
//! cargo run --release -p browserpool-benches --example fixture_loop -- touch 100000 100000000
//! valgrind --tool=callgrind target/release/examples/fixture_loop evict 100 100000
//! ```
//!
//! Arguments: the fixture (`evict`, `reap`, `touch`, or the naive design's
//! `naive-evict`, `naive-reap`), `n`, the operations to run, and for the reaps the expired
//! sessions per tick `k`. Prints nanoseconds per operation (meaningless under valgrind).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use browserpool_benches::naive::{self, NaiveEvict, NaiveReap};
use browserpool_benches::ours::{time_evictions, OursEvict, OursPool, OursReap};
use browserpool_benches::{run_touches, time_reaps, Pattern};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let what = args.first().map_or("evict", String::as_str);
    let n = arg(1, 100) as usize;
    let iters = arg(2, 100_000);
    let start = Instant::now();
    let elapsed = match what {
        "evict" => {
            let mut f = OursEvict::new(n).unwrap();
            eprintln!("built in {:?}", start.elapsed());
            time_evictions(&mut f, iters)
        }
        "reap" => {
            let k = arg(3, 100) as usize;
            let mut f = OursReap::new(n, k).unwrap();
            eprintln!("built in {:?}", start.elapsed());
            time_reaps(&mut f, k, iters)
        }
        "naive-evict" => {
            let mut f = NaiveEvict::new(n);
            naive::time_evictions(&mut f, iters)
        }
        "naive-reap" => {
            let k = arg(3, 100) as usize;
            let mut f = NaiveReap::new(n, k);
            time_reaps(&mut f, k, iters)
        }
        "touch" => {
            let p = OursPool::new(n).unwrap();
            eprintln!("built in {:?}", start.elapsed());
            run_touches(&p, Pattern::RoundRobin, n as u64);
            run_touches(&p, Pattern::RoundRobin, iters)
        }
        other => panic!("unknown fixture {other:?}: evict, reap or touch"),
    };
    println!(
        "{what} n = {n}: {:.2} ns per operation",
        elapsed.as_nanos() as f64 / iters as f64
    );
}
