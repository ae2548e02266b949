//! What the memory sampler costs with `N` idle real browsers: one `smaps_rollup` read per
//! process, one session tree's measurement (`ProcessLauncher::memory`: a `/proc` scan
//! for the tree's processes, then one `smaps_rollup` per process), and a whole sampling
//! round (`Pool::memory`, every session at once, as the sampler does), with the CPU the
//! process spent per round and its share of one core at the default 5 s interval.
//!
//! ```text
//! cargo run --release -p browserpool-chrome --example memory_cost -- 8
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// PoolConfig is being made #[non_exhaustive]: code outside core builds it from
// default() and assigns fields, which this lint would turn into a struct literal.
#![allow(clippy::field_reassign_with_default)]

use std::time::{Duration, Instant};

use browserpool::{Pool, PoolConfig, ProcessLauncher};
use browserpool_chrome::{procfs, ChromeConfig, ChromeLauncher, SessionMatcher};

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = 100; // USER_HZ on Linux
    Duration::from_micros(ticks * 1_000_000 / hz)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(8);
    let root = tempfile::Builder::new()
        .prefix("bpc-memcost-")
        .tempdir()
        .unwrap();
    let mut c = PoolConfig::default();
    c.max_browsers = n;
    c.root = root.path().to_owned();
    c.idle_timeout = None;
    c.launch_timeout = Duration::from_secs(120);
    let launcher = ChromeLauncher::new(ChromeConfig::default()).unwrap();
    let pool = Pool::new(c, launcher).await.unwrap();
    let mut leases = Vec::new();
    for _ in 0..n {
        leases.push(pool.acquire().await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let host_procs = procfs::live_processes().len();

    // One smaps_rollup read per process of every session.
    let mut pids = Vec::new();
    for l in &leases {
        for (st, _) in SessionMatcher::new(&pool.session_dir(l.id())).live() {
            pids.push(st.pid);
        }
    }
    let mut reads = Vec::new();
    for _ in 0..5 {
        for &pid in &pids {
            let t = Instant::now();
            let _ = procfs::memory(pid);
            reads.push(t.elapsed());
        }
    }

    // One session tree: the launcher's own measurement, sessions one after another.
    let mut trees = Vec::new();
    for _ in 0..5 {
        for l in &leases {
            let t = Instant::now();
            let m = pool.launcher().memory(l.process()).await.unwrap();
            trees.push(t.elapsed());
            assert!(m.pss_bytes > 0);
        }
    }

    // Whole rounds, all sessions at once (what the sampler does every interval).
    let rounds = 10;
    let mut walls = Vec::new();
    let cpu0 = cpu();
    for _ in 0..rounds {
        let t = Instant::now();
        let m = pool.memory().await;
        walls.push(t.elapsed());
        assert_eq!(m.sessions.len(), n);
    }
    let cpu_per_round = (cpu() - cpu0) / rounds;
    let pss: u64 = pool.memory().await.total.pss_bytes;
    println!(
        "browsers {n}: {} processes in sessions, {host_procs} on the host, {} MiB PSS in all",
        pids.len(),
        pss >> 20
    );
    println!(
        "  smaps_rollup read per process: median {:?}",
        median(reads)
    );
    println!(
        "  one session tree (scan + reads): median {:?}",
        median(trees)
    );
    println!(
        "  one round, all sessions at once: median wall {:?}, CPU {:?} per round = {:.2} % of one core at a 5 s interval",
        median(walls),
        cpu_per_round,
        cpu_per_round.as_secs_f64() / 5.0 * 100.0
    );
    drop(leases);
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
}
