//! Real Chromium, real clients nobody here wrote: the `browserpool-server` binary on
//! Debian's Chromium, driven by unmodified `puppeteer-core` and `playwright-core` (npm,
//! pinned in `tests/client/package-lock.json`). The clients never launch or download a
//! browser: every browser comes through the server.
//!
//! If `tests/client/node_modules` is missing, the first test runs `npm ci` there (with
//! browser downloads disabled). Node and npm are required: without them these tests
//! fail with a message saying so (they are never skipped).
//!
//! Tests run one at a time (each starts its own server and browsers on a shared 2-core
//! machine). Every test ends by checking that no process of any of its sessions is alive
//! and that no session directory is left.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use browserpool::sweep::session_dir_name;
use browserpool::SessionId;
use browserpool_chrome::{procfs, SessionMatcher};
use serde_json::{json, Value};
use support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client")
}

/// Node and the pinned npm packages, installed once per test run if missing.
fn ensure_clients() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        if !node.as_ref().is_ok_and(|o| o.status.success()) {
            return Err("`node` is not installed: these tests drive real puppeteer-core and \
                playwright-core clients; install Node.js 20+ and npm (Debian: apt-get install -y nodejs npm)"
                .into());
        }
        let dir = client_dir();
        if dir.join("node_modules/puppeteer-core").is_dir()
            && dir.join("node_modules/playwright-core").is_dir()
        {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .env("PUPPETEER_SKIP_DOWNLOAD", "1")
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .output()
            .map_err(|e| format!("cannot run `npm ci` in {} ({e}): install npm", dir.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci` in {} failed:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// A `browserpool-server` child process on its own root and prefix.
struct ServerProc {
    child: Child,
    http: String,
    ws: String,
    log: PathBuf,
}

fn spawn_server(root: &Path, prefix: &str, log: &Path, args: &[&str]) -> ServerProc {
    let logfile = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_browserpool-server"))
        .args(["--listen", "127.0.0.1:0", "--chromium", "/usr/bin/chromium"])
        .arg("--root")
        .arg(root)
        .args(["--prefix", prefix])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("BROWSERPOOL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(logfile)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let addr = line
        .trim()
        .strip_prefix("browserpool-server listening on ")
        .unwrap_or_else(|| {
            panic!(
                "server did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_owned();
    ServerProc {
        child,
        http: format!("http://{addr}"),
        ws: format!("ws://{addr}"),
        log: log.to_owned(),
    }
}

impl ServerProc {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.http)
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Wait for the process to exit (hang guard: 60 s); its exit code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (0 means: drained, nothing left).
    fn stop(&mut self) -> i32 {
        self.signal(rustix::process::Signal::TERM);
        self.wait_exit()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = get(&self.url("/metrics")).await.body;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    async fn ended(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "browserpool_sessions_ended_total{{reason=\"{reason}\"}}"
        ))
        .await
    }

    async fn sessions(&self) -> Vec<Value> {
        get(&self.url("/sessions"))
            .await
            .json()
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One test's world: a private root, a log, and the leftover check at the end.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    log: PathBuf,
    prefix: String,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl World {
    fn new(name: &str) -> World {
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        ensure_clients();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        World {
            log: tmp.path().join("server.log"),
            root,
            prefix: format!("bpt-{name}-"),
            _tmp: tmp,
            _lock: lock,
        }
    }

    fn server(&self, args: &[&str]) -> ServerProc {
        spawn_server(&self.root, &self.prefix, &self.log, args)
    }

    /// Session directories `1..=n` of every pool instance that ran on this root.
    fn all_session_dirs(&self, instances: &[String], n: u64) -> Vec<PathBuf> {
        instances
            .iter()
            .flat_map(|i| (1..=n).map(move |k| (i.clone(), k)))
            .map(|(i, k)| {
                self.root
                    .join(session_dir_name(&self.prefix, &i, SessionId(k)))
            })
            .collect()
    }

    /// Nothing left: no live process of any session directory (by the chrome backend's
    /// matcher), no entry under the root.
    fn assert_nothing_left(&self, instances: &[String]) {
        let snapshot = procfs::live_processes();
        let alive: Vec<_> = self
            .all_session_dirs(instances, 64)
            .iter()
            .flat_map(|d| SessionMatcher::new(d).live_in(&snapshot))
            .collect();
        assert!(alive.is_empty(), "browser processes left: {alive:?}");
        let left: Vec<_> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "left under the root: {left:?}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// The pool instance of a session directory path.
fn instance_of(dir: &str, prefix: &str) -> String {
    let name = Path::new(dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let rest = name.strip_prefix(prefix).unwrap();
    rest.rsplit_once('-').unwrap().0.to_owned()
}

/// A node scenario, its stdout read line by line as JSON.
struct Node {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

fn node(scenario: &str, opts: Value) -> Node {
    let mut child = Command::new("node")
        .arg("scenario.mjs")
        .arg(scenario)
        .arg(opts.to_string())
        .current_dir(client_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line).unwrap_or(json!({ "raw": line }));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    Node { child, lines }
}

impl Node {
    /// The next JSON line (hang guard: `secs`). Panics on a scenario error.
    fn next(&mut self, secs: u64) -> Value {
        let v = self
            .lines
            .recv_timeout(Duration::from_secs(secs))
            .unwrap_or_else(|_| panic!("no output from the node scenario within {secs} s"));
        assert!(v.get("error").is_none(), "node scenario failed: {v}");
        v
    }

    /// The exit code (hang guard: 120 s).
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "node scenario did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn puppeteer_clean_close_and_the_status_page_matches_the_api() {
    let w = World::new("close");
    let mut s = w.server(&[]);
    rt().block_on(async {
        // Two quiet sessions for the table, made over HTTP.
        for owner in ["alice", "bob"] {
            let c = http("POST", &s.url("/sessions"), &[], &json!({"owner": owner}).to_string()).await;
            assert_eq!(c.status, 201, "{}", c.body);
        }
        let mut n = node(
            "status-page",
            json!({"http": s.http, "ws": s.ws, "screenshot": std::env::var("BROWSERPOOL_SCREENSHOT").ok()}),
        );
        let out = n.next(90);
        assert_eq!(n.wait(), 0);
        let rows = out["rows"].as_array().unwrap();
        let api = out["api"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{out}");
        assert_eq!(rows.len(), api.len(), "{out}");
        for (row, s) in rows.iter().zip(api) {
            assert_eq!(row["id"], s["id"], "{out}");
            assert_eq!(row["owner"], s["owner"], "{out}");
            if s["owner"].as_str().unwrap().starts_with("http-") {
                // The quiet sessions do not change between the page and the API call.
                assert_eq!(row["state"], s["state"], "{out}");
                assert_eq!(row["uses"], s["uses"], "{out}");
                assert_eq!(row["state"], "idle");
            } else {
                // The session rendering the page is the puppeteer client's own.
                assert!(s["owner"].as_str().unwrap().starts_with("ws-"), "{out}");
                assert!(row["uses"].as_u64().unwrap() > 0, "{out}");
            }
            assert!(row["pss"].as_str().unwrap().ends_with("MiB"), "{out}");
        }
        assert_eq!(out["figures"]["live"], "3 / 8", "{out}");
        assert_eq!(out["reloaded"].as_array().unwrap().len(), 3, "the page did not refresh itself: {out}");
        // browser.close() destroyed the client's session through the pool (the client
        // may exit before the teardown has finished).
        eventually(Duration::from_secs(20), "the client's session to be destroyed", || async {
            s.ended("destroyed").await == 1.0 && s.sessions().await.len() == 2
        })
        .await;
        let left = s.sessions().await;
        let instance = instance_of(left[0]["dir"].as_str().unwrap(), &w.prefix);
        for r in left {
            let id = r["id"].as_str().unwrap();
            assert_eq!(http("DELETE", &s.url(&format!("/sessions/{id}")), &[], "").await.status, 200);
        }
        assert_eq!(s.stop(), 0, "{}", s.log_text());
        w.assert_nothing_left(&[instance]);
    });
}

#[test]
fn puppeteer_disconnect_without_close_is_gone_after_the_grace() {
    let w = World::new("drop");
    let mut s = w.server(&["--release-grace", "2s"]);
    rt().block_on(async {
        let mut n = node("basic", json!({"http": s.http, "ws": s.ws, "end": "exit"}));
        let first = n.next(60);
        assert_eq!(
            (first["sum"].as_i64(), first["text"].as_str()),
            (Some(2), Some("hello")),
            "{first}"
        );
        let id = first["id"].as_str().unwrap().to_owned();
        let dir = first["dir"].as_str().unwrap().to_owned();
        assert_eq!(n.wait(), 0);
        // Within the grace it is still there, on notice.
        let row = get(&s.url(&format!("/sessions/{id}"))).await;
        if row.status == 200 {
            assert_eq!(row.json()["connections"], 0);
        }
        eventually(
            Duration::from_secs(20),
            "the session to end after the grace",
            || async { get(&s.url(&format!("/sessions/{id}"))).await.status == 410 },
        )
        .await;
        let gone = get(&s.url(&format!("/sessions/{id}"))).await.json();
        assert!(gone["error"].as_str().unwrap().contains("grace"), "{gone}");
        assert_eq!(s.ended("owner_released").await, 1.0);
        // 410 comes as soon as teardown begins; the tree and the directory go next.
        eventually(
            Duration::from_secs(20),
            "the tree and directory to be gone",
            || async {
                SessionMatcher::new(Path::new(&dir)).live().is_empty() && !Path::new(&dir).exists()
            },
        )
        .await;
        assert_eq!(s.stop(), 0, "{}", s.log_text());
        w.assert_nothing_left(&[instance_of(&dir, &w.prefix)]);
    });
}

#[test]
fn puppeteer_reconnects_within_the_grace_to_the_same_browser() {
    let w = World::new("reconnect");
    let mut s = w.server(&["--release-grace", "3s"]);
    rt().block_on(async {
        let mut n = node(
            "reconnect",
            json!({"http": s.http, "ws": s.ws, "holdMs": 4000}),
        );
        let first = n.next(60);
        let dir = first["dir"].as_str().unwrap().to_owned();
        let out = n.next(60);
        assert_eq!(n.wait(), 0);
        assert!(
            out["titles"]
                .as_array()
                .unwrap()
                .contains(&json!("keep-me")),
            "{out}"
        );
        assert_eq!(out["again"], "hello");
        assert_eq!(out["after"], json!([first["id"]]), "{out}");
        assert_eq!(s.metric("browserpool_sessions_created_total").await, 1.0);
        assert_eq!(s.ended("owner_released").await, 0.0);
        assert_eq!(s.ended("destroyed").await, 1.0);
        assert_eq!(s.stop(), 0, "{}", s.log_text());
        w.assert_nothing_left(&[instance_of(&dir, &w.prefix)]);
    });
}

#[test]
fn a_long_evaluate_survives_the_idle_timeout_and_an_idle_client_is_reaped() {
    let w = World::new("long");
    let mut s = w.server(&["--idle-timeout", "2s", "--reap-interval", "500ms"]);
    rt().block_on(async {
        let mut n = node(
            "long-evaluate",
            json!({"http": s.http, "ws": s.ws, "ms": 6000}),
        );
        let first = n.next(60);
        let dir = first["dir"].as_str().unwrap().to_owned();
        let evaluated = n.next(60);
        assert_eq!(evaluated["value"], 42, "{evaluated}");
        assert_eq!(evaluated["listed"], json!([first["id"]]), "{evaluated}");
        assert_eq!(s.ended("idle").await, 0.0);
        // Connected but idle: the idle timeout reaps it and the client is disconnected.
        let out = n.next(60);
        assert_eq!(n.wait(), 0);
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(s.ended("idle").await, 1.0);
        assert_eq!(s.metric("browserpool_sessions_created_total").await, 1.0);
        assert_eq!(s.stop(), 0, "{}", s.log_text());
        w.assert_nothing_left(&[instance_of(&dir, &w.prefix)]);
    });
}

#[test]
fn twenty_puppeteer_clients_on_a_four_browser_pool() {
    let w = World::new("crowd");
    let mut s = w.server(&["--max-browsers", "4", "--release-grace", "1s"]);
    rt().block_on(async {
        let mut n = node(
            "crowd",
            json!({"http": s.http, "ws": s.ws, "clients": 20, "holdMs": 300}),
        );
        // Watch occupancy while the crowd runs.
        let mut peak = 0.0f64;
        let mut instance = None;
        let started = Instant::now();
        let out = loop {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the crowd did not finish in 300 s"
            );
            if let Some(st) = n.child.try_wait().unwrap() {
                let last = n
                    .lines
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| {
                        panic!("the crowd scenario exited ({st}) without a result")
                    });
                break last;
            }
            let text = get(&s.url("/metrics")).await.body;
            let occupied: f64 = ["launching", "idle", "busy", "stopping"]
                .iter()
                .map(|st| {
                    let key = format!("browserpool_sessions{{state=\"{st}\"}} ");
                    text.lines()
                        .find_map(|l| l.strip_prefix(&key))
                        .unwrap()
                        .trim()
                        .parse::<f64>()
                        .unwrap()
                })
                .sum();
            peak = peak.max(occupied);
            if instance.is_none() {
                if let Some(r) = s.sessions().await.first() {
                    instance = Some(instance_of(r["dir"].as_str().unwrap(), &w.prefix));
                }
            }
            if let Ok(v) = n.lines.try_recv() {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Every client's promise settled: a client left waiting makes the scenario exit
        // 4 naming it (node's event loop drained) or 3 (its hang guard fired).
        assert_eq!(n.wait(), 0, "a crowd client never settled: {out}");
        assert_eq!(out["done"], true, "{out}");
        let (ok, failed) = (out["ok"].as_u64().unwrap(), out["failed"].as_u64().unwrap());
        assert_eq!(ok + failed, 20);
        assert!(ok >= 4, "{out}");
        assert!(peak <= 4.0, "more than 4 browsers at once: {peak}");
        let evicted = s.ended("evicted").await;
        assert!(
            evicted >= 1.0,
            "a 4-browser pool served 20 clients without evicting: {out}"
        );
        // Clients whose session was evicted under them fail with an error (puppeteer
        // words it several ways): each failure is an error, none is a hang.
        assert_eq!(
            out["errors"].as_array().unwrap().len() as u64,
            failed,
            "{out}"
        );
        eprintln!(
            "crowd: {ok} ok, {failed} failed, peak {peak} browsers, {evicted} evicted: {}",
            out["errors"]
        );
        eventually(Duration::from_secs(30), "every session to end", || async {
            s.sessions().await.is_empty()
        })
        .await;
        let created = s.metric("browserpool_sessions_created_total").await;
        assert!(created >= 20.0, "{created}");
        assert_eq!(s.stop(), 0, "{}", s.log_text());
        w.assert_nothing_left(&[instance.unwrap()]);
    });
}

#[test]
fn sigterm_drains_running_sessions_then_exits_0() {
    let w = World::new("term");
    let mut s = w.server(&["--drain-timeout", "30s"]);
    rt().block_on(async {
        let mut n = node(
            "hold",
            json!({"http": s.http, "ws": s.ws, "clients": 1, "evaluateMs": 4000}),
        );
        let ready = n.next(60);
        let dir = ready["sessions"][0]["dir"].as_str().unwrap().to_owned();
        let t0 = Instant::now();
        s.signal(rustix::process::Signal::TERM);
        eventually(Duration::from_secs(5), "readyz to answer 503", || async {
            get(&s.url("/readyz")).await.status == 503
        })
        .await;
        assert_eq!(
            ws_connect(&format!("{}/", s.ws), &[]).await.err(),
            Some(503)
        );
        assert_eq!(http("POST", &s.url("/sessions"), &[], "").await.status, 503);
        // The evaluate started before the signal finishes; the client closes; the server
        // exits 0 without waiting for the drain timeout.
        let out = n.next(60);
        assert_eq!(out["values"], json!([42]), "{out}");
        assert_eq!(n.wait(), 0);
        assert_eq!(s.wait_exit(), 0, "{}", s.log_text());
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the drain waited for its timeout"
        );
        assert!(
            s.log_text().contains("every browser and directory is gone"),
            "{}",
            s.log_text()
        );
        w.assert_nothing_left(&[instance_of(&dir, &w.prefix)]);
    });
}

#[test]
fn sigkill_takes_the_browsers_along_and_the_next_start_sweeps() {
    let w = World::new("kill");
    let mut s = w.server(&[]);
    let (dirs, instance) = rt().block_on(async {
        let mut n = node("hold", json!({"http": s.http, "ws": s.ws, "clients": 3}));
        let ready = n.next(90);
        let dirs: Vec<PathBuf> = ready["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| PathBuf::from(r["dir"].as_str().unwrap()))
            .collect();
        assert_eq!(dirs.len(), 3);
        for d in &dirs {
            assert!(
                !SessionMatcher::new(d).live().is_empty(),
                "no browser found for {}",
                d.display()
            );
        }
        let instance = instance_of(dirs[0].to_str().unwrap(), &w.prefix);
        s.signal(rustix::process::Signal::KILL);
        assert_eq!(s.wait_exit(), -1);
        let killed_at = Instant::now();
        // Within 2 s no process of those sessions is alive (kill on parent death).
        loop {
            let snapshot = procfs::live_processes();
            let alive: usize = dirs
                .iter()
                .map(|d| SessionMatcher::new(d).live_in(&snapshot).len())
                .sum();
            if alive == 0 {
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(2),
                "{alive} browser processes outlived the server by 2 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(n);
        // The directories are still there, for the next start to sweep.
        assert!(dirs.iter().all(|d| d.exists()));
        (dirs, instance)
    });
    let mut s2 = w.server(&[]);
    rt().block_on(async {
        let sweep = get(&s2.url("/sweep")).await.json();
        let removed: Vec<&str> = sweep["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for d in &dirs {
            assert!(
                removed.contains(&d.to_str().unwrap()),
                "{} not in the sweep report: {sweep}",
                d.display()
            );
            assert!(!d.exists());
        }
        assert_eq!(
            s2.metric("browserpool_sweep_removed_entries_total").await as usize,
            removed.len()
        );
        let status = get(&s2.url("/")).await.body;
        assert!(status.contains(&format!("startup sweep removed: <b>{}</b>", removed.len())));
        let second = get(&s2.url("/sessions")).await.json();
        assert_eq!(second, json!([]));
    });
    assert_eq!(s2.stop(), 0, "{}", s2.log_text());
    drop(s);
    w.assert_nothing_left(&[instance]);
}

#[test]
fn playwright_connects_over_cdp() {
    let w = World::new("pw");
    let mut s = w.server(&["--release-grace", "1s"]);
    rt().block_on(async {
        let mut n = node("playwright", json!({"http": s.http, "ws": s.ws}));
        let out = n.next(90);
        assert_eq!(n.wait(), 0);
        assert_eq!(
            (out["text"].as_str(), out["sum"].as_i64()),
            (Some("playwright"), Some(42)),
            "{out}"
        );
        let dir = out["dir"].as_str().unwrap().to_owned();
        // Playwright's close() of a connectOverCDP browser disconnects; the grace ends it.
        eventually(Duration::from_secs(20), "the session to end", || async {
            s.sessions().await.is_empty()
        })
        .await;
        assert_eq!(s.stop(), 0, "{}", s.log_text());
        w.assert_nothing_left(&[instance_of(&dir, &w.prefix)]);
    });
}
