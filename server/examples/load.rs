//! Load generator for `browserpool-server` (measures; asserts nothing).
//!
//! ```text
//! cargo run --release -p browserpool-server --example load -- --clients 50 --duration 30s --json
//! cargo run --release -p browserpool-server --example load -- --backend chrome --clients 50 --duration 30s --json
//! ```
//!
//! Starts a server in this process on 127.0.0.1 (loopback only) over the fake CDP
//! launcher or real Chromium, then:
//! 1. **overhead**: one session, `--samples` CDP round trips (`Browser.getVersion`)
//!    through the proxy and the same number straight to the browser's own DevTools
//!    socket, interleaved; reports both and the difference at p50 and p99;
//! 2. **load**: `--clients` concurrent clients for `--duration`, each looping: connect to
//!    `ws://HOST/` (a fresh session; the handshake time is the acquire latency), send
//!    `--commands` round trips, `Browser.close` (destroy), repeat.
//!
//! Bounded in time and count; stops by itself; shuts the pool down and checks that no
//! browser process or session directory is left.

// A measuring tool: a failed setup step ends the run with its message, as in the chrome
// backend's examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use browserpool::sweep::session_dir_name;
use browserpool::{Pool, PoolConfig, SessionId};
use browserpool_chrome::{ChromeConfig, ChromeLauncher, SessionMatcher};
use browserpool_server::cli::parse_duration;
use browserpool_server::testing::FakeCdpLauncher;
use browserpool_server::{CdpLauncher, Server, ServerConfig};
use clap::{Parser, ValueEnum};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Fake,
    Chrome,
}

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent clients in the load phase.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Length of the load phase.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Browsers behind the server.
    #[arg(long, value_enum, default_value = "fake")]
    backend: Backend,
    /// Pool size [default: --clients for fake, 4 for chrome].
    #[arg(long)]
    max_browsers: Option<usize>,
    /// CDP round trips per session in the load phase.
    #[arg(long, default_value_t = 5)]
    commands: usize,
    /// Round trips each way in the overhead phase.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn round_trip(ws: &mut Ws, id: i64) -> Result<Duration, String> {
    let t0 = Instant::now();
    ws.send(Message::text(format!(
        r#"{{"id":{id},"method":"Browser.getVersion"}}"#
    )))
    .await
    .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if t.as_str().starts_with(&format!("{{\"id\":{id},")) {
                    return Ok(t0.elapsed());
                }
            }
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    errors: AtomicU64,
}

async fn run<L: CdpLauncher>(
    args: &Args,
    launcher: L,
    root: &std::path::Path,
) -> serde_json::Value {
    let max_browsers = args.max_browsers.unwrap_or(match args.backend {
        Backend::Fake => args.clients,
        Backend::Chrome => 4,
    });
    let pool = Pool::new(
        PoolConfig::default()
            .with_max_browsers(max_browsers)
            .with_root(root.to_owned())
            .with_prefix("bpload-")
            .with_acquire_timeout(Duration::from_secs(60)),
        launcher,
    )
    .await
    .expect("pool");
    let server = Server::new(
        pool,
        ServerConfig {
            release_grace: Duration::from_secs(1),
            max_connections: args.clients * 2 + 8,
            ..ServerConfig::default()
        },
    )
    .expect("server");
    let pool = server.pool().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let url = format!("ws://{addr}/");

    // 1. Overhead: proxied vs direct, interleaved, on one quiet session.
    let (mut proxied, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let id = pool.sessions()[0].id;
    let direct_url = {
        let lease = pool.session(id).expect("session");
        L::cdp_endpoint(lease.process()).to_owned()
    };
    let (mut direct, _) = tokio_tungstenite::connect_async(&direct_url)
        .await
        .expect("direct");
    let (mut via, mut straight) = (Vec::new(), Vec::new());
    for i in 0..(args.samples as i64 + 50) {
        let a = round_trip(&mut proxied, i).await.expect("proxied rtt");
        let b = round_trip(&mut direct, i).await.expect("direct rtt");
        if i >= 50 {
            via.push(a.as_secs_f64() * 1e3);
            straight.push(b.as_secs_f64() * 1e3);
        }
    }
    let _ = direct.close(None).await;
    let _ = proxied
        .send(Message::text(r#"{"id":999999,"method":"Browser.close"}"#))
        .await;
    while let Some(Ok(m)) = proxied.next().await {
        if m.is_close() {
            break;
        }
    }
    let (vp50, vp99, dp50, dp99) = (
        pct(&mut via, 0.5),
        pct(&mut via, 0.99),
        pct(&mut straight, 0.5),
        pct(&mut straight, 0.99),
    );

    // 2. Load.
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (url, tally, commands) = (url.clone(), tally.clone(), args.commands);
        tasks.push(tokio::spawn(async move {
            let (mut acquire, mut rtt) = (Vec::new(), Vec::new());
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut ws = match tokio_tungstenite::connect_async(&url).await {
                    Ok((ws, _)) => ws,
                    Err(_) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                acquire.push(t0.elapsed().as_secs_f64() * 1e3);
                let mut ok = true;
                for i in 0..commands as i64 {
                    match round_trip(&mut ws, i).await {
                        Ok(d) => rtt.push(d.as_secs_f64() * 1e3),
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok && round_trip_close(&mut ws).await {
                    tally.sessions.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            (acquire, rtt)
        }));
    }
    let (mut acquire, mut rtt) = (Vec::new(), Vec::new());
    for t in tasks {
        if let Ok((a, r)) = t.await {
            acquire.extend(a);
            rtt.extend(r);
        }
    }
    let elapsed = args.duration.as_secs_f64();
    let stats = pool.stats();
    let instance = pool.instance().to_owned();
    let issued = stats.totals.created + stats.totals.launch_failed + 1;
    let _ = stop.send(());
    let report = serving.await.expect("join").expect("serve");
    let sessions = tally.sessions.load(Ordering::Relaxed);
    json!({
        "backend": format!("{:?}", args.backend).to_lowercase(),
        "clients": args.clients,
        "max_browsers": max_browsers,
        "duration_s": elapsed,
        "sessions": sessions,
        "sessions_per_s": sessions as f64 / elapsed,
        "errors": tally.errors.load(Ordering::Relaxed),
        "evicted": stats.totals.evicted,
        "acquire_ms": {"p50": pct(&mut acquire, 0.5), "p99": pct(&mut acquire, 0.99), "n": acquire.len()},
        "rtt_under_load_ms": {"p50": pct(&mut rtt, 0.5), "p99": pct(&mut rtt, 0.99), "n": rtt.len()},
        "overhead": {
            "samples": args.samples,
            "proxied_ms": {"p50": vp50, "p99": vp99},
            "direct_ms": {"p50": dp50, "p99": dp99},
            "added_ms": {"p50": vp50 - dp50, "p99": vp99 - dp99},
        },
        "drain_clean": report.is_clean(),
        "instance": instance,
        "issued": issued,
    })
}

async fn round_trip_close(ws: &mut Ws) -> bool {
    if ws
        .send(Message::text(r#"{"id":424242,"method":"Browser.close"}"#))
        .await
        .is_err()
    {
        return false;
    }
    let mut answered = false;
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(t) if t.as_str().starts_with("{\"id\":424242,") => answered = true,
            Message::Close(_) => break,
            _ => {}
        }
    }
    answered
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let load_before = loadavg();
    let root = tempfile::tempdir().expect("tempdir");
    let t0 = Instant::now();
    let mut out = match args.backend {
        Backend::Fake => {
            run(
                &args,
                FakeCdpLauncher::new().await.expect("fake"),
                root.path(),
            )
            .await
        }
        Backend::Chrome => {
            let launcher = ChromeLauncher::new(ChromeConfig::default()).expect("chromium");
            run(&args, launcher, root.path()).await
        }
    };
    let leftover_dirs = std::fs::read_dir(root.path())
        .map(|d| d.count())
        .unwrap_or(0);
    // Every session directory the pool could have made, checked with the chrome
    // backend's process matcher (the one "process of this session" test).
    let instance = out["instance"].as_str().unwrap_or_default().to_owned();
    let issued = out["issued"].as_u64().unwrap_or(0);
    let snapshot = browserpool_chrome::procfs::live_processes();
    let leftover_processes: usize = (1..=issued)
        .map(|n| {
            let name = session_dir_name("bpload-", &instance, SessionId(n));
            SessionMatcher::new(&root.path().join(name))
                .live_in(&snapshot)
                .len()
        })
        .sum();
    out["leftover_dirs"] = json!(leftover_dirs);
    out["leftover_processes"] = json!(leftover_processes);
    out["loadavg_before"] = json!(load_before);
    out["loadavg_after"] = json!(loadavg());
    out["wall_s"] = json!(t0.elapsed().as_secs_f64());
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
}
