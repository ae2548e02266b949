//! Helpers shared by the Pool integration tests: the fake launcher's pool over a real
//! temporary root, directory listings and the usual waits.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use browserpool::testing::FakeLauncher;
use browserpool::{EndReason, Pool, PoolConfig, SessionError};

/// Two browsers, idle timeout 10 s, reap interval 1 s, tick 500 ms, prefix `bpx-`.
pub fn cfg(root: &Path) -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(2)
        .with_idle_timeout(Some(Duration::from_secs(10)))
        .with_reap_interval(Duration::from_secs(1))
        .with_tick(Duration::from_millis(500))
        .with_root(root)
        .with_prefix("bpx-")
}

/// A pool over a fake launcher that writes files into session directories; each launch
/// takes `launch_delay` (zero: instant).
pub async fn pool_with_delay(
    config: PoolConfig,
    launch_delay: Duration,
) -> (Pool<FakeLauncher>, FakeLauncher) {
    let launcher = FakeLauncher::new();
    launcher.write_files.store(true, Ordering::Relaxed);
    if !launch_delay.is_zero() {
        launcher.set_launch_delay(launch_delay);
    }
    let pool = Pool::new(config, launcher.clone()).await.unwrap();
    watchdog();
    (pool, launcher)
}

/// Virtual time after which [`watchdog`] ends the test binary. No test here runs for
/// more than a few hours of virtual time.
pub const WATCHDOG: Duration = Duration::from_secs(2 * 24 * 3600);

/// Make a hang fail. Under paused time, a request the pool never answers does not block
/// the test: tokio keeps advancing its clock to the reaper's next tick, forever, and
/// the test hangs instead of failing (as with a mutant that drops the pool's actions).
/// This task, spawned on the test's runtime, exits the test binary with an error once
/// [`WATCHDOG`] of its time has passed. With real time it never fires (the runtime
/// ends with the test).
pub fn watchdog() {
    use std::io::Write;
    tokio::spawn(async {
        tokio::time::sleep(WATCHDOG).await;
        // Straight to stderr: the test harness captures `eprintln!`, and would drop it.
        let _ = writeln!(
            std::io::stderr(),
            "watchdog: a test still runs after {WATCHDOG:?} of paused time; something waits forever"
        );
        std::process::exit(101);
    });
}

/// [`pool_with_delay`] with instant launches.
pub async fn pool(config: PoolConfig) -> (Pool<FakeLauncher>, FakeLauncher) {
    pool_with_delay(config, Duration::ZERO).await
}

/// Names under `root`, sorted.
pub fn entries(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Session directories (not markers) under `root`, sorted.
pub fn session_dirs(root: &Path) -> Vec<String> {
    entries(root)
        .into_iter()
        .filter(|n| !n.ends_with(".lock"))
        .collect()
}

/// Let spawned teardown tasks run (time is paused; this advances it a little).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The reason in a `SessionError::Ended`; panics on anything else.
pub fn ended(r: Result<impl std::fmt::Debug, SessionError>) -> EndReason {
    match r {
        Err(SessionError::Ended { reason, .. }) => reason,
        other => panic!("expected Ended, got {other:?}"),
    }
}

/// Log events at `warn` and above, as text, for as long as the guard lives (on this
/// thread: a `start_paused` test's runtime runs the pool's tasks on it too).
pub fn capture_warnings() -> (tracing::subscriber::DefaultGuard, Arc<Mutex<Vec<u8>>>) {
    capture(tracing::Level::WARN)
}

/// Log events at `level` and above, as text, for as long as the guard lives (on this
/// thread, as for [`capture_warnings`]).
pub fn capture(level: tracing::Level) -> (tracing::subscriber::DefaultGuard, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .with_writer(move || Sink(sink.clone()))
        .finish();
    (tracing::subscriber::set_default(subscriber), buf)
}

/// The text captured so far by [`capture_warnings`].
pub fn captured(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
