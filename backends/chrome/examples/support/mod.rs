//! Shared by the examples: the Chromium configuration and the launch floor.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use browserpool_chrome::{
    parse_devtools_active_port, ChromeConfig, ChromeLauncher, SessionMatcher, PROFILE_DIR,
};

/// The default Chromium configuration plus the whitespace-separated flags in the
/// `CHROME_ARGS` environment variable, for comparing flag sets with the same command.
pub fn chrome_config() -> ChromeConfig {
    let mut config = ChromeConfig::default();
    if let Ok(extra) = std::env::var("CHROME_ARGS") {
        config.args.extend(extra.split_whitespace().map(Into::into));
    }
    config
}

/// A bare spawn of the launcher's command, timed until `DevToolsActivePort` is complete;
/// then everything of it is killed (by the matcher) and its directory removed.
pub fn bare_spawn_ms(launcher: &ChromeLauncher, dir: &Path) -> f64 {
    std::fs::create_dir(dir).unwrap();
    ChromeLauncher::prepare_dir(dir).unwrap();
    let mut cmd = launcher.command(dir);
    cmd.stderr(std::process::Stdio::null()).process_group(0);
    let port_file = dir.join(PROFILE_DIR).join("DevToolsActivePort");
    let t = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let ms = loop {
        if let Ok(text) = std::fs::read(&port_file) {
            if parse_devtools_active_port(&text).is_some() {
                break t.elapsed().as_secs_f64() * 1e3;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no DevTools endpoint"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    // Not reaped yet, so the group id is still ours.
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    let matcher = SessionMatcher::new(dir);
    let _ = child.wait();
    while !matcher.live().is_empty() {
        matcher.kill_all();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir_all(dir).unwrap();
    ms
}
