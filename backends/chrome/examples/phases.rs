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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use browserpool::{Filesystem, KillStage, LaunchSpec, OsFilesystem, ProcessLauncher, SessionId};
use browserpool_chrome::{ChromeLauncher, SessionMatcher};
use support::{bare_spawn_ms, chrome_config};

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

fn label(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).replace('\0', " ");
    let kind = text
        .split(' ')
        .find_map(|t| t.strip_prefix("--type="))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if text.contains("crashpad") {
                "crashpad".into()
            } else {
                "browser".into()
            }
        });
    let kind = if kind == "utility" {
        text.split(' ')
            .find_map(|t| t.strip_prefix("--utility-sub-type="))
            .map_or(kind.clone(), |s| {
                s.rsplit('.').next().unwrap_or(s).to_owned()
            })
    } else {
        kind
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map_or(String::new(), |v| {
                v.trim().split(' ').next().unwrap_or("").to_owned()
            })
    };
    format!(
        "{kind}[{}t,{}MB]",
        field("Threads:"),
        field("VmRSS:").parse::<u64>().unwrap_or(0) / 1024
    )
}

/// Exit times of `pids` (ms after the instant received on `start`), from pidfds.
fn deaths(pids: &[i32], start: std::sync::mpsc::Receiver<Instant>) -> Vec<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let fds: Vec<_> = pids
            .iter()
            .map(|&p| {
                let fd = rustix::process::pidfd_open(
                    rustix::process::Pid::from_raw(p).unwrap(),
                    rustix::process::PidfdFlags::empty(),
                )
                .unwrap();
                // SAFETY: the AsyncFd owns the pidfd, which stays open while registered.
                unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        fd,
                        tokio::io::Interest::READABLE,
                    )
                }
                .unwrap()
            })
            .collect();
        let t0 = start.recv().unwrap();
        let waits = fds.iter().map(|fd| async move {
            let _ = fd.readable().await.unwrap();
            Instant::now().duration_since(t0).as_secs_f64() * 1e3
        });
        futures::future::join_all(waits).await
    })
}

/// The fields of the launcher's `session processes gone` events, as text.
#[derive(Clone, Default)]
struct GoneEvents(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GoneEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct V(String);
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if !matches!(f.name(), "message" | "dir" | "pgid") {
                    self.0.push_str(&format!(" {}={:.1?}", f.name(), v));
                }
            }
            fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
                self.0.push_str(&format!(" {}={v:.1}", f.name()));
            }
        }
        // The `kill` event carries only the stage; keep the wait's account.
        if event.metadata().target() == "browserpool_chrome::teardown"
            && event.metadata().fields().field("wait_ms").is_some()
        {
            let mut v = V(String::new());
            event.record(&mut v);
            self.0.lock().unwrap().push(v.0);
        }
    }
}

#[tokio::main]
async fn main() {
    let gone = GoneEvents::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(gone.clone());
        tracing::subscriber::set_global_default(subscriber).unwrap();
    }
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(8, |s| s.parse().expect("rounds"));
    let root_in = args.next().map_or_else(std::env::temp_dir, Into::into);
    let root = tempfile::Builder::new()
        .prefix("bpc-phases-")
        .tempdir_in(root_in)
        .unwrap();
    let launcher = ChromeLauncher::new(chrome_config()).unwrap();
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
        let pids: Vec<i32> = p.live_processes().into_iter().map(|p| p as i32).collect();
        let labels: Vec<String> = pids.iter().map(|&pid| label(pid)).collect();
        let (start_tx, start_rx) = std::sync::mpsc::channel::<Instant>();
        let observer = {
            let pids = pids.clone();
            std::thread::spawn(move || deaths(&pids, start_rx))
        };
        std::thread::sleep(Duration::from_millis(20));
        let t1 = Instant::now();
        start_tx.send(t1).unwrap();
        launcher.kill(&p, KillStage::Force).await.unwrap();
        let boost = std::env::var("BOOST").is_ok() && i % 2 == 1;
        if boost {
            let r = rustix::process::setpriority_pgrp(
                rustix::process::Pid::from_raw(p.pid() as i32),
                -20,
            );
            println!("  boosted {r:?}");
        }
        let t2 = Instant::now();
        launcher.wait_gone(&p).await;
        let t3 = Instant::now();
        fs.remove_dir_all(&dir).await.unwrap();
        let t4 = Instant::now();
        assert!(SessionMatcher::new(&dir).live().is_empty());
        drop(p);
        let mut died: Vec<(f64, String)> =
            observer.join().unwrap().into_iter().zip(labels).collect();
        died.sort_by(|a, b| a.0.total_cmp(&b.0));
        for g in gone.0.lock().unwrap().drain(..) {
            println!("  wait_gone:{g}");
        }
        let last = died.last().map_or(0.0, |d| d.0);
        println!(
            "  deaths after kill (ms): {}  | last {last:.1}, wait_gone returned {:.1}",
            died.iter()
                .map(|(d, l)| format!("{l} {d:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            ms(t3 - t1)
        );
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
