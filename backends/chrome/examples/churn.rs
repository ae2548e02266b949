//! Churn real Chromium through a pool: clients acquire a session, use a page, then
//! either destroy it or abandon it (never destroy it), and the pool's idle reaper and
//! LRU eviction have to keep the host bounded. Prints a summary (JSON with `--json`).
//!
//! ```text
//! cargo run --release -p browserpool-chrome --example churn -- \
//!     --clients 20 --max-browsers 4 --abandon 0.5 --idle-timeout 3s \
//!     --reap-interval 500ms --duration 30s --json
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use browserpool::{Pool, PoolConfig};
use browserpool_chrome::{procfs, ChromeConfig, ChromeLauncher, ChromeSession};
use clap::Parser;

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad unit in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Churn real Chromium through a browserpool.
#[derive(Parser, Debug)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// The pool's max_browsers.
    #[arg(long, default_value_t = 4)]
    max_browsers: usize,
    /// Share of sessions a client abandons instead of destroying (0..=1).
    #[arg(long, default_value_t = 0.5)]
    abandon: f64,
    /// The pool's idle_timeout (e.g. 3s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    idle_timeout: Duration,
    /// The pool's reap_interval.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    reap_interval: Duration,
    /// How long clients keep churning.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    duration: Duration,
    /// Seed of the clients' abandon decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize, Debug)]
struct Summary {
    launched: u64,
    destroyed: u64,
    reaped: u64,
    evicted: u64,
    crashed: u64,
    abandoned_by_clients: u64,
    client_errors: u64,
    peak_browsers: u64,
    peak_processes: u64,
    peak_pss_bytes: u64,
    acquire_ms_p50: f64,
    acquire_ms_p99: f64,
    launch_ms_p50: f64,
    launch_ms_p99: f64,
    teardown_ms_p50: f64,
    teardown_ms_p99: f64,
    teardowns_measured: usize,
    leftover_processes: u64,
    leftover_dirs: u64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    (v[i.min(v.len() - 1)] * 100.0).round() / 100.0
}

/// Live processes of browsers whose session directory is under `root`.
fn browser_processes(root: &Path) -> u64 {
    let mut n = 0;
    for pid in procfs::all_pids() {
        if !procfs::stat(pid).is_some_and(|s| s.is_live()) {
            continue;
        }
        let Some(args) = procfs::cmdline(pid) else {
            continue;
        };
        let ours = args.iter().any(|a| {
            let a = String::from_utf8_lossy(a);
            ["--user-data-dir=", "--database="].iter().any(|k| {
                a.strip_prefix(k)
                    .is_some_and(|p| Path::new(p).starts_with(root))
            })
        });
        if ours {
            n += 1;
        }
    }
    n
}

struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        // SplitMix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct Samples {
    acquire: Vec<f64>,
    launch: Vec<f64>,
    teardown: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let root_dir = tempfile::Builder::new()
        .prefix("browserpool-churn-")
        .tempdir()
        .unwrap();
    let root: PathBuf = root_dir.path().to_owned();
    let config = PoolConfig {
        max_browsers: args.max_browsers,
        idle_timeout: Some(args.idle_timeout),
        reap_interval: args.reap_interval,
        tick: args.reap_interval.min(Duration::from_secs(1)),
        root: root.clone(),
        ..PoolConfig::default()
    };
    let launcher = ChromeLauncher::new(ChromeConfig::default()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let pool = Arc::new(Pool::new(config, launcher).await.unwrap());
    let samples = Arc::new(Mutex::new(Samples::default()));
    let abandoned = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;

    // Monitor: peaks of browsers, processes and PSS.
    let peaks = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let monitor = {
        let (pool, peaks, root) = (pool.clone(), peaks.clone(), root.clone());
        tokio::spawn(async move {
            loop {
                let st = pool.stats();
                let browsers = (st.launching + st.live + st.stopping) as u64;
                let r = root.clone();
                let procs = tokio::task::spawn_blocking(move || browser_processes(&r))
                    .await
                    .unwrap_or(0);
                let pss = pool.memory().await.total.pss_bytes;
                {
                    let mut p = peaks.lock().unwrap();
                    p.0 = p.0.max(browsers);
                    p.1 = p.1.max(procs);
                    p.2 = p.2.max(pss);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (pool, samples, abandoned, errors) = (
            pool.clone(),
            samples.clone(),
            abandoned.clone(),
            errors.clone(),
        );
        let p_abandon = args.abandon;
        let mut rng = Rng(args.seed.wrapping_mul(1_000_003).wrapping_add(c as u64));
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let t = Instant::now();
                let lease = match pool.acquire().await {
                    Ok(l) => l,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "acquire failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acquire_ms = t.elapsed().as_secs_f64() * 1e3;
                let launch_ms = lease.process().launch_duration().as_secs_f64() * 1e3;
                {
                    let mut s = samples.lock().unwrap();
                    s.acquire.push(acquire_ms);
                    s.launch.push(launch_ms);
                }
                let session = ChromeSession::new(lease);
                let id = session.id();
                let pgid = session.lease().process().pid();
                let dir = pool.session_dir(id);
                let work = async {
                    let page = session
                        .new_page("data:text/html,<title>churn</title><p>work</p>")
                        .await?;
                    let _: i64 = page
                        .evaluate("1 + 1")
                        .await?
                        .into_value()
                        .map_err(|e| browserpool_chrome::ChromeError::Cdp(e.into()))?;
                    page.close().await
                };
                if work.await.is_err() {
                    // Evicted under us (another client needed the slot): expected.
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if rng.next_f64() < p_abandon {
                    // Walk away without destroying: only the pool can clean this up.
                    abandoned.fetch_add(1, Ordering::Relaxed);
                    drop(session);
                    continue;
                }
                let t = Instant::now();
                if pool.destroy(id).await.is_err() {
                    continue; // already ended (evicted meanwhile)
                }
                // Destroy until no process and no directory remain.
                while !procfs::live_group_members(pgid as i32).is_empty() || dir.exists() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                samples
                    .lock()
                    .unwrap()
                    .teardown
                    .push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    monitor.abort();
    let _ = monitor.await;

    let totals = pool.stats().totals;
    let report = pool.shutdown().await;
    if !report.unfinished.is_empty() || !report.dirs_left.is_empty() {
        eprintln!("shutdown left work: {report:?}");
    }
    let pool = Arc::try_unwrap(pool).ok().expect("clients are done");
    drop(pool);

    let leftover_processes = browser_processes(&root);
    let leftover_dirs = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .count() as u64;
    let (peak_browsers, peak_processes, peak_pss_bytes) = *peaks.lock().unwrap();
    let mut s = std::mem::take(&mut *samples.lock().unwrap());
    let summary = Summary {
        launched: totals.created,
        destroyed: totals.destroyed,
        reaped: totals.reaped,
        evicted: totals.evicted,
        crashed: totals.crashed,
        abandoned_by_clients: abandoned.load(Ordering::Relaxed),
        client_errors: errors.load(Ordering::Relaxed),
        peak_browsers,
        peak_processes,
        peak_pss_bytes,
        acquire_ms_p50: pct(&mut s.acquire, 0.50),
        acquire_ms_p99: pct(&mut s.acquire, 0.99),
        launch_ms_p50: pct(&mut s.launch, 0.50),
        launch_ms_p99: pct(&mut s.launch, 0.99),
        teardown_ms_p50: pct(&mut s.teardown, 0.50),
        teardown_ms_p99: pct(&mut s.teardown, 0.99),
        teardowns_measured: s.teardown.len(),
        leftover_processes,
        leftover_dirs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    } else {
        println!("{summary:#?}");
    }
    drop(root_dir);
    if leftover_processes != 0 || leftover_dirs != 0 {
        std::process::exit(1);
    }
}
