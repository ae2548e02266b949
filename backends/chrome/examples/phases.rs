//! Where a session's time goes, phase by phase, without a pool around it: for each of
//! `N` rounds, a bare spawn of the launcher's exact command (until `DevToolsActivePort`
//! is complete), then a launch through the launcher (until CDP is usable), a page, and
//! a forced teardown timed as `kill`, `wait_gone` (until no process of the session is
//! alive, by the matcher) and the directory's removal.
//!
//! ```text
//! cargo run --release -p browserpool-chrome --example phases -- 8 /dev/shm
//! ```
//!
//! The second argument is where the temporary root is made (default `$TMPDIR`): compare
//! a disk with a tmpfs to see what removing a profile costs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use browserpool::{Filesystem, KillStage, LaunchSpec, OsFilesystem, ProcessLauncher, SessionId};
use browserpool_chrome::{ChromeConfig, ChromeLauncher, SessionMatcher};
use support::bare_spawn_ms;

/// Files and bytes under `dir` (not following symlinks).
fn size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.path().symlink_metadata().unwrap();
        if m.is_dir() {
            let (f, b) = size(&e.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += m.len();
        }
    }
    (files, bytes)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(8, |s| s.parse().expect("rounds"));
    let root_in = args.next().map_or_else(std::env::temp_dir, Into::into);
    let root = tempfile::Builder::new()
        .prefix("bpc-phases-")
        .tempdir_in(root_in)
        .unwrap();
    let launcher = ChromeLauncher::new(ChromeConfig::default()).unwrap();
    let fs = OsFilesystem::new();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("root {}", root.path().display());
    for i in 0..rounds {
        let bare = bare_spawn_ms(&launcher, &root.path().join(format!("bare-{i}")));
        let dir = root.path().join(format!("s-{i}"));
        fs.create_dir(&dir).await.unwrap();
        let spec = LaunchSpec {
            id: SessionId(i as u64 + 1),
            dir: dir.clone(),
        };
        let t0 = Instant::now();
        let p = launcher.launch(&spec).await.unwrap();
        let launch = t0.elapsed();
        let page = p
            .browser_unstamped()
            .new_page("data:text/html,<p>x</p>")
            .await
            .unwrap();
        page.evaluate("1 + 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let procs = p.live_processes().len();
        let (files, bytes) = size(&dir);
        let t1 = Instant::now();
        launcher.kill(&p, KillStage::Force).await.unwrap();
        let t2 = Instant::now();
        launcher.wait_gone(&p).await;
        let t3 = Instant::now();
        fs.remove_dir_all(&dir).await.unwrap();
        let t4 = Instant::now();
        assert!(SessionMatcher::new(&dir).live().is_empty());
        drop(p);
        println!(
            "bare {bare:6.1}  launch {:6.1}  | kill {:5.1}  wait_gone {:6.1}  rm {:6.1}  teardown {:6.1} ms  | {procs} processes, {files} files, {bytes} bytes",
            ms(launch),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t4 - t3),
            ms(t4 - t1)
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average {}", load.trim());
}
