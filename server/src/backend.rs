//! [`CdpLauncher`]: a launcher whose browsers speak CDP over a WebSocket the server can
//! reach, so the proxy knows where to forward a session's frames.

use std::path::Path;
use std::time::Duration;

use browserpool::ProcessLauncher;
use browserpool_chrome::ChromeLauncher;

/// A [`ProcessLauncher`] whose live browsers expose a browser-level CDP WebSocket.
pub trait CdpLauncher: ProcessLauncher {
    /// The browser-level CDP endpoint of a live browser, such as
    /// `ws://127.0.0.1:41234/devtools/browser/<uuid>`. It must be reachable from this
    /// process only (loopback): the server never hands it to clients.
    fn cdp_endpoint(process: &Self::Process) -> &str;
}

impl CdpLauncher for ChromeLauncher {
    fn cdp_endpoint(process: &Self::Process) -> &str {
        process.ws_url()
    }
}

/// `HeadlessChrome/<version>` from `<executable> --version` (which prints, for Debian's
/// build, `Chromium 156.0.8078.114 built on Debian ...`). Runs it once, bounded by 10 s,
/// without a profile; falls back to `HeadlessChrome` if that fails.
pub fn chromium_product(executable: &Path) -> String {
    let run = || -> Option<String> {
        let mut child = std::process::Command::new(executable)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
        parse_version(&out)
    };
    run()
        .map(|v| format!("HeadlessChrome/{v}"))
        .unwrap_or_else(|| "HeadlessChrome".to_owned())
}

/// The first dotted version number in `text`.
fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_version_banners() {
        assert_eq!(
            parse_version("Chromium 156.0.8078.114 built on Debian GNU/Linux 12 (bookworm)\n")
                .as_deref(),
            Some("156.0.8078.114")
        );
        assert_eq!(
            parse_version("Google Chrome 120.0.1.2 "),
            Some("120.0.1.2".into())
        );
        assert_eq!(parse_version("nothing here"), None);
        assert_eq!(
            chromium_product(Path::new("/nonexistent/chromium")),
            "HeadlessChrome"
        );
    }
}
