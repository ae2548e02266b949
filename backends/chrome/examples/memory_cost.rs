//! What the memory sampler costs with `N` idle browsers: one `smaps_rollup` read per
//! process, one session tree's measurement (`ProcessLauncher::memory`: a `/proc` scan
//! for the tree's processes, then one `smaps_rollup` per process), and a whole sampling
//! round two ways, alternated so that both see the same load:
//!
//! - *per session*: every session's `memory` at once (what the sampler did before issue
//!   12's batching: one `/proc` scan per session, quadratic in `N`);
//! - *batched*: `Pool::memory`, i.e. one `ProcessLauncher::memory_of_all` call (what the
//!   sampler does now: one `/proc` scan for all sessions, then one read per process);
//!
//! with the wall time and the CPU this process spent per round (user + system, from
//! `/proc/self/stat`, which counts the blocking pool's threads and not the browsers),
//! its share of one core at the default 5 s interval, and the load averages before and
//! after (the figures are only comparable under similar load).
//!
//! ```text
//! cargo run --release -p browserpool-chrome --example memory_cost -- 8
//! cargo run --release -p browserpool-chrome --example memory_cost -- 128 --simulated
//! ```
//!
//! `--simulated` launches stand-ins instead of Chromium (`examples/support/fake_browser.py`,
//! Python 3 at `/usr/bin/python3`): through the same launcher and pool, each with the
//! process shape of an idle Chromium 156 (6 processes in its group, 2 crash-handler
//! stand-ins outside it that only the matcher attributes) at a fraction of its memory,
//! so that the host can hold more of them. Their processes map far less memory than
//! Chromium's, so their `smaps_rollup` reads are cheaper: the scan's share is realistic,
//! the reads' share is not (the example prints the per-read cost of both).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// PoolConfig is being made #[non_exhaustive]: code outside core builds it from
// default() and assigns fields, which this lint would turn into a struct literal.
#![allow(clippy::field_reassign_with_default)]

use std::os::unix::fs::PermissionsExt;
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

/// The load averages (1, 5, 15 minutes) from `/proc/loadavg`.
fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A launcher configuration whose "browser" is `fake_browser.py`, through a `#!/bin/sh`
/// wrapper that `exec`s it, written into `dir`.
fn fake_browser(dir: &std::path::Path) -> ChromeConfig {
    let py = dir.join("fake_browser.py");
    std::fs::write(&py, include_str!("support/fake_browser.py")).unwrap();
    let exe = dir.join("fake-chromium");
    std::fs::write(
        &exe,
        format!("#!/bin/sh\nexec /usr/bin/python3 {} \"$@\"\n", py.display()),
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = ChromeConfig::default();
    c.executable = Some(exe);
    c
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let simulated = args.iter().any(|a| a == "--simulated");
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(8);
    let root = tempfile::Builder::new()
        .prefix("bpc-memcost-")
        .tempdir()
        .unwrap();
    let fake_dir = tempfile::Builder::new()
        .prefix("bpc-fake-")
        .tempdir()
        .unwrap();
    let mut c = PoolConfig::default();
    c.max_browsers = n;
    c.root = root.path().to_owned();
    c.idle_timeout = None;
    c.launch_timeout = Duration::from_secs(120);
    let config = if simulated {
        fake_browser(fake_dir.path())
    } else {
        ChromeConfig::default()
    };
    let launcher = ChromeLauncher::new(config).unwrap();
    let pool = Pool::new(c, launcher).await.unwrap();
    let mut leases = Vec::new();
    for _ in 0..n {
        leases.push(pool.acquire().await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let load_before = loadavg();
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
    for _ in 0..3 {
        for l in leases.iter().take(32) {
            let t = Instant::now();
            let m = pool.launcher().memory(l.process()).await.unwrap();
            trees.push(t.elapsed());
            assert!(m.pss_bytes > 0);
        }
    }

    // Whole rounds, alternating the two ways, so that both see the same load.
    let rounds = 10;
    let (mut walls_each, mut walls_batched) = (Vec::new(), Vec::new());
    let (mut cpu_each, mut cpu_batched) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (t, c0) = (Instant::now(), cpu());
        let each =
            futures::future::join_all(leases.iter().map(|l| pool.launcher().memory(l.process())))
                .await;
        walls_each.push(t.elapsed());
        cpu_each += cpu() - c0;
        assert!(each.iter().all(Option::is_some));

        let (t, c0) = (Instant::now(), cpu());
        let m = pool.memory().await;
        walls_batched.push(t.elapsed());
        cpu_batched += cpu() - c0;
        assert_eq!(m.sessions.len(), n);
    }
    // This process's CPU while idle (the DevTools connections' tasks), for comparison.
    let c0 = cpu();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = cpu() - c0;
    let load_after = loadavg();
    let m = pool.memory().await;
    println!(
        "{} {n}: {} processes in sessions, {host_procs} on the host, {} MiB PSS in all",
        if simulated {
            "simulated browsers"
        } else {
            "browsers"
        },
        m.total.processes,
        m.total.pss_bytes >> 20
    );
    println!("  load average before {load_before}, after {load_after}");
    println!(
        "  smaps_rollup read per process: median {:?}",
        median(reads)
    );
    println!(
        "  one session tree (scan + reads): median {:?}",
        median(trees)
    );
    for (how, walls, cpu) in [
        ("per session (before)", walls_each, cpu_each),
        ("batched (now)", walls_batched, cpu_batched),
    ] {
        let per_round = cpu / rounds;
        println!(
            "  one round, {how}: median wall {:?}, CPU {:?} per round = {:.2} % of one core at a 5 s interval",
            median(walls),
            per_round,
            per_round.as_secs_f64() / 5.0 * 100.0
        );
    }
    println!("  idle: CPU {idle:?} in 5 s without measuring");
    drop(leases);
    let report = pool.shutdown().await;
    assert!(report.unfinished.is_empty() && report.dirs_left.is_empty());
}
