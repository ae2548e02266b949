//! Every endpoint, in process, on the fake CDP launcher (core's `FakeLauncher` with a
//! fake DevTools endpoint per browser). Real time, short timeouts; timeouts below are
//! hang guards, never what is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use browserpool::testing::FakeLauncher;
use browserpool::{CapacityPolicy, Pool, PoolConfig};
use browserpool_server::testing::FakeCdpLauncher;
use browserpool_server::{DrainReport, Server, ServerConfig};
use futures::SinkExt;
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "test-token-0123456789";

struct TestServer {
    http: String,
    ws: String,
    fake: FakeLauncher,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<DrainReport>>>,
    root: tempfile::TempDir,
}

/// Server settings for tests: a short drain, so that a session a test leaves open does
/// not hold its shutdown up for the default 30 s.
fn cfg() -> ServerConfig {
    ServerConfig {
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

fn quick_pool(root: &std::path::Path) -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(4)
        .with_idle_timeout(Some(Duration::from_secs(60)))
        .with_reap_interval(Duration::from_millis(50))
        .with_tick(Duration::from_millis(10))
        .with_acquire_timeout(Duration::from_secs(5))
        .with_root(root.to_owned())
        .with_prefix("bpsrv-")
}

impl TestServer {
    async fn start(pool: impl FnOnce(&mut PoolConfig), server: ServerConfig) -> TestServer {
        let root = tempfile::tempdir().unwrap();
        let mut config = quick_pool(root.path());
        pool(&mut config);
        let fake = FakeLauncher::new();
        fake.write_files
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let launcher = FakeCdpLauncher::wrap(fake.clone()).await.unwrap();
        let pool = Pool::new(config, launcher).await.unwrap();
        let server = Server::new(pool, server).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            http: format!("http://{addr}"),
            ws: format!("ws://{addr}"),
            fake,
            stop: Some(stop),
            serving: Some(serving),
            root,
        }
    }

    async fn default() -> TestServer {
        Self::start(|_| {}, cfg()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    async fn sessions(&self) -> Vec<Value> {
        let a = get(&self.url("/sessions")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json().as_array().unwrap().clone()
    }

    /// Session directories left under the root.
    fn dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect()
    }

    async fn shutdown(mut self) -> DrainReport {
        let _ = self.stop.take().unwrap().send(());
        let report = tokio::time::timeout(Duration::from_secs(30), self.serving.take().unwrap())
            .await
            .expect("serve did not return")
            .unwrap()
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert!(
            self.fake.alive().is_empty(),
            "browsers left: {:?}",
            self.fake.alive()
        );
        assert!(self.dirs().is_empty(), "dirs left: {:?}", self.dirs());
        report
    }
}

fn ended_total(metrics: &str, reason: &str) -> u64 {
    let key = format!("browserpool_sessions_ended_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {key} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_json_version_and_unknown_paths() {
    let s = TestServer::default().await;
    let h = get(&s.url("/healthz")).await;
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
    let r = get(&s.url("/readyz")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = get(&s.url("/json/version")).await;
    assert_eq!(v.status, 200);
    let v = v.json();
    assert_eq!(v["webSocketDebuggerUrl"], format!("{}/", s.ws));
    assert!(v["Browser"].as_str().unwrap().starts_with("HeadlessChrome"));
    assert_eq!(v["Protocol-Version"], "1.3");
    assert_eq!(get(&s.url("/json/version/")).await.status, 200);
    let nf = get(&s.url("/nope")).await;
    assert_eq!(nf.status, 404);
    assert!(nf.json()["error"].as_str().unwrap().contains("/nope"));
    let na = http("PUT", &s.url("/sessions"), &[], "").await;
    assert_eq!(na.status, 405);
    assert!(na.json()["error"].is_string());
    let sw = get(&s.url("/sweep")).await.json();
    assert_eq!(sw["removed"], json!([]));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_are_created_listed_shown_and_destroyed() {
    let s = TestServer::default().await;
    let c = http(
        "POST",
        &s.url("/sessions"),
        &[("x-browserpool-owner", "alice")],
        "",
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let c = c.json();
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["ws_url"], format!("{}/devtools/browser/{id}", s.ws));
    assert!(c["owner"].as_str().unwrap().ends_with(" alice"));
    let c2 = http("POST", &s.url("/sessions"), &[], r#"{"owner":"bob"}"#)
        .await
        .json();
    let id2 = c2["id"].as_str().unwrap().to_owned();

    let list = s.sessions().await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "idle");
    assert_eq!(list[0]["uses"], 0);
    assert_eq!(list[0]["pss_bytes"], 80u64 << 20);
    assert!(list[1]["owner"].as_str().unwrap().ends_with(" bob"));

    let one = get(&s.url(&format!("/sessions/{id}"))).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], id.as_str());

    let dir = std::path::PathBuf::from(list[0]["dir"].as_str().unwrap());
    assert!(dir.exists());
    let d = http("DELETE", &s.url(&format!("/sessions/{id}")), &[], "").await;
    assert_eq!(d.status, 200, "{}", d.body);
    // DELETE returns once the tree is gone and the directory removed.
    assert!(!dir.exists());
    assert_eq!(s.fake.alive().len(), 1);
    let again = http("DELETE", &s.url(&format!("/sessions/{id}")), &[], "").await;
    assert_eq!(again.status, 410);
    assert_eq!(again.json()["session"], id.as_str());
    assert!(again.json()["error"]
        .as_str()
        .unwrap()
        .contains("destroyed"));
    let gone = get(&s.url(&format!("/sessions/{id}"))).await;
    assert_eq!(gone.status, 410);
    assert_eq!(s.sessions().await.len(), 1);
    let m = get(&s.url("/metrics")).await.body;
    assert_eq!(ended_total(&m, "destroyed"), 1);
    assert!(
        m.contains("browserpool_teardown_duration_seconds_count 1"),
        "{m}"
    );
    let _ = id2;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_loses_nothing() {
    let s = TestServer::start(
        |_| {},
        ServerConfig {
            max_message_size: 4096,
            ..cfg()
        },
    )
    .await;
    let malformed = http("POST", &s.url("/sessions"), &[], "{owner:").await;
    assert_eq!(malformed.status, 400);
    assert!(malformed.json()["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let unknown_field = http("POST", &s.url("/sessions"), &[], r#"{"ownr":"x"}"#).await;
    assert_eq!(unknown_field.status, 400);
    let big = format!(r#"{{"owner":"{}"}}"#, "x".repeat(10_000));
    let too_big = http("POST", &s.url("/sessions"), &[], &big).await;
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    assert!(too_big.json()["error"].is_string());
    let bad_id = get(&s.url("/sessions/banana")).await;
    assert_eq!(bad_id.status, 400);
    let unknown = get(&s.url("/sessions/s999")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["session"], "s999");
    let unknown_ws = ws_connect(&format!("{}/devtools/browser/s999", s.ws), &[]).await;
    assert_eq!(unknown_ws.err(), Some(404));
    let not_ws = get(&s.url("/devtools/browser/s999")).await;
    assert_eq!(not_ws.status, 404);
    // Nothing was created by any of it.
    assert!(s.sessions().await.is_empty());
    assert_eq!(
        s.fake.launches.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_everywhere_but_the_probes() {
    let s = TestServer::start(
        |_| {},
        ServerConfig {
            token: Some(TOKEN.into()),
            ..cfg()
        },
    )
    .await;
    let bearer = format!("Bearer {TOKEN}");
    for path in [
        "/",
        "/sessions",
        "/metrics",
        "/json/version",
        "/sweep",
        "/sessions/s1",
    ] {
        let a = get(&s.url(path)).await;
        assert_eq!(a.status, 401, "{path}: {}", a.body);
        assert!(a.json()["error"].as_str().unwrap().contains("token"));
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        let wrong = http(
            "GET",
            &s.url(path),
            &[("authorization", "Bearer test-token-0123456780")],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
    }
    assert_eq!(http("POST", &s.url("/sessions"), &[], "").await.status, 401);
    assert_eq!(
        ws_connect(&format!("{}/", s.ws), &[]).await.err(),
        Some(401)
    );
    assert_eq!(
        ws_connect(&format!("{}/?token=wrong-token-0123456789", s.ws), &[])
            .await
            .err(),
        Some(401)
    );
    assert!(s.sessions_with(&bearer).await.is_empty());
    assert_eq!(
        get(&s.url(&format!("/sessions?token={TOKEN}")))
            .await
            .status,
        200
    );
    assert_eq!(get(&s.url("/healthz")).await.status, 200);
    assert_eq!(get(&s.url("/readyz")).await.status, 200);
    let mut ws = ws_connect(&format!("{}/?token={TOKEN}", s.ws), &[])
        .await
        .unwrap();
    assert_eq!(
        cdp(&mut ws, 1, "Browser.getVersion", json!({})).await["result"]["product"],
        "FakeChrome/1.0"
    );
    let mut ws2 = ws_connect(&format!("{}/", s.ws), &[("authorization", &bearer)])
        .await
        .unwrap();
    assert!(cdp(&mut ws2, 1, "Target.getTargets", json!({})).await["result"].is_object());
    assert_eq!(s.sessions_with(&bearer).await.len(), 2);
    drop((ws, ws2));
    s.shutdown().await;
}

impl TestServer {
    async fn sessions_with(&self, auth: &str) -> Vec<Value> {
        let a = http(
            "GET",
            &self.url("/sessions"),
            &[("authorization", auth)],
            "",
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json().as_array().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_and_full_queue_answer_429_with_retry_after() {
    let s = TestServer::start(
        |c| {
            c.max_browsers = 1;
            c.capacity_policy = CapacityPolicy::Reject;
        },
        cfg(),
    )
    .await;
    assert_eq!(http("POST", &s.url("/sessions"), &[], "").await.status, 201);
    let full = http("POST", &s.url("/sessions"), &[], "").await;
    assert_eq!(full.status, 429, "{}", full.body);
    assert_eq!(full.header("retry-after"), Some("1"));
    assert!(full.json()["error"].as_str().unwrap().contains("capacity"));
    assert_eq!(
        ws_connect(&format!("{}/", s.ws), &[]).await.err(),
        Some(429)
    );
    s.shutdown().await;

    // Wait policy with no room in the queue.
    let s = TestServer::start(
        |c| {
            c.max_browsers = 1;
            c.max_waiters = 0;
            c.capacity_policy = CapacityPolicy::Wait {
                timeout: Duration::from_secs(5),
            };
        },
        cfg(),
    )
    .await;
    assert_eq!(http("POST", &s.url("/sessions"), &[], "").await.status, 201);
    let queue_full = http("POST", &s.url("/sessions"), &[], "").await;
    assert_eq!(queue_full.status, 429, "{}", queue_full.body);
    assert_eq!(queue_full.header("retry-after"), Some("1"));
    assert!(queue_full.json()["error"]
        .as_str()
        .unwrap()
        .contains("waiting"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_answers_429() {
    let s = TestServer::start(
        |_| {},
        ServerConfig {
            max_connections: 1,
            ..cfg()
        },
    )
    .await;
    let mut first = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    assert_eq!(
        ws_connect(&format!("{}/", s.ws), &[]).await.err(),
        Some(429)
    );
    // Closing the first frees the place.
    first.close(None).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the connection place to free",
        || async { ws_connect(&format!("{}/", s.ws), &[]).await.is_ok() },
    )
    .await;
    let m = get(&s.url("/metrics")).await.body;
    let refused: u64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("browserpool_ws_connections_refused_total{reason=\"max_connections\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{m}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_forwards_frames_and_counts_commands() {
    let s = TestServer::default().await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    let r = cdp(
        &mut ws,
        1,
        "Test.echo",
        json!({"big": "x".repeat(100_000), "n": 7}),
    )
    .await;
    assert_eq!(r["result"]["n"], 7);
    assert_eq!(r["result"]["big"].as_str().unwrap().len(), 100_000);
    // A message with a sessionId comes back with it.
    ws.send(Message::text(
        r#"{"id":2,"method":"Runtime.enable","sessionId":"ABC"}"#,
    ))
    .await
    .unwrap();
    assert_eq!(wait_response(&mut ws, 2).await["sessionId"], "ABC");
    // A malformed message is forwarded; the browser answers with its own error.
    ws.send(Message::text("not json")).await.unwrap();
    let list = s.sessions().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["uses"], 2);
    assert_eq!(list[0]["connections"], 1);
    assert!(list[0]["owner"].as_str().unwrap().starts_with("ws-"));
    let m = get(&s.url("/metrics")).await.body;
    assert!(
        m.contains("browserpool_cdp_messages_total{direction=\"client\"} 3"),
        "{m}"
    );
    drop(ws);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_awaiting_its_response_keeps_the_session_past_the_idle_timeout() {
    let s = TestServer::start(|c| c.idle_timeout = Some(Duration::from_millis(300)), cfg()).await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    ws.send(Message::text(
        r#"{"id":1,"method":"Test.sleep","params":{"ms":1500}}"#,
    ))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the session to show as busy",
        || async {
            s.sessions()
                .await
                .first()
                .is_some_and(|r| r["state"] == "busy" && r["in_flight"] == 1)
        },
    )
    .await;
    // Five idle timeouts later the response arrives on the same session.
    let r = wait_response(&mut ws, 1).await;
    assert_eq!(r["result"], json!({}));
    let list = s.sessions().await;
    assert_eq!(list.len(), 1, "reaped while a command was in flight");
    assert_eq!(list[0]["state"], "idle");
    // Then, idle for real, it is reaped and the client told why.
    let (code, reason) = closed(&mut ws).await.expect("a close frame");
    assert_eq!(code, 1001);
    assert!(reason.contains("without activity"), "{reason}");
    let m = get(&s.url("/metrics")).await.body;
    assert_eq!(ended_total(&m, "idle"), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_events_are_not_activity() {
    let s = TestServer::start(|c| c.idle_timeout = Some(Duration::from_millis(400)), cfg()).await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    // The browser keeps talking (an event every 20 ms for 10 s); the client says nothing.
    cdp(
        &mut ws,
        1,
        "Test.emit",
        json!({"count": 500, "intervalMs": 20}),
    )
    .await;
    let (code, reason) = closed(&mut ws).await.expect("a close frame");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("without activity"), "{reason}");
    let m = get(&s.url("/metrics")).await.body;
    assert_eq!(ended_total(&m, "idle"), 1);
    eventually(Duration::from_secs(5), "the session to be gone", || async {
        s.sessions().await.is_empty()
    })
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_close_destroys_the_session() {
    let s = TestServer::default().await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    let dir = std::path::PathBuf::from(s.sessions().await[0]["dir"].as_str().unwrap().to_owned());
    let r = cdp(&mut ws, 2, "Browser.close", json!({})).await;
    assert_eq!(r, json!({"id": 2, "result": {}}));
    let (code, _) = closed(&mut ws).await.expect("a close frame");
    assert_eq!(code, 1000);
    assert!(s.sessions().await.is_empty());
    assert!(!dir.exists());
    assert!(s.fake.alive().is_empty());
    let m = get(&s.url("/metrics")).await.body;
    assert_eq!(ended_total(&m, "destroyed"), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_releases_its_session_after_the_grace() {
    let s = TestServer::start(
        |_| {},
        ServerConfig {
            release_grace: Duration::from_millis(300),
            ..cfg()
        },
    )
    .await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    let id = s.sessions().await[0]["id"].as_str().unwrap().to_owned();
    // Drop the TCP connection without a close frame (a crashed client).
    drop(ws);
    eventually(
        Duration::from_secs(10),
        "the session to be released",
        || async { get(&s.url(&format!("/sessions/{id}"))).await.status == 410 },
    )
    .await;
    let gone = get(&s.url(&format!("/sessions/{id}"))).await.json();
    assert!(gone["error"].as_str().unwrap().contains("grace"), "{gone}");
    eventually(
        Duration::from_secs(5),
        "the fake browser to die",
        || async { s.fake.alive().is_empty() },
    )
    .await;
    let m = get(&s.url("/metrics")).await.body;
    assert_eq!(ended_total(&m, "owner_released"), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_within_the_grace_keeps_the_session() {
    let s = TestServer::start(
        |_| {},
        ServerConfig {
            release_grace: Duration::from_millis(500),
            ..cfg()
        },
    )
    .await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    let row = s.sessions().await[0].clone();
    let id = row["id"].as_str().unwrap().to_owned();
    ws.close(None).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the session to be put on notice",
        || async {
            s.sessions()
                .await
                .first()
                .is_some_and(|r| r["on_notice"] == true && r["connections"] == 0)
        },
    )
    .await;
    let mut again = ws_connect(row["ws_url"].as_str().unwrap(), &[])
        .await
        .unwrap();
    // Well past the grace, still attached and the same browser.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = cdp(&mut again, 2, "Test.echo", json!({"still": "here"})).await;
    assert_eq!(r["result"]["still"], "here");
    let list = s.sessions().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["connections"], 1);
    assert_eq!(list[0]["uses"], 2);
    let m = get(&s.url("/metrics")).await.body;
    assert_eq!(ended_total(&m, "owner_released"), 0);
    assert_eq!(
        s.fake.launches.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(again);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_connection_with_1009() {
    let s = TestServer::start(
        |_| {},
        ServerConfig {
            max_message_size: 64 * 1024,
            release_grace: Duration::from_millis(100),
            ..cfg()
        },
    )
    .await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    let big = json!({"id": 1, "method": "Test.echo", "params": {"x": "y".repeat(100_000)}});
    let _ = ws.send(Message::text(big.to_string())).await;
    let (code, reason) = closed(&mut ws).await.expect("a close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("max-message-size"), "{reason}");
    eventually(
        Duration::from_secs(10),
        "the session to be released",
        || async { s.sessions().await.is_empty() },
    )
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_elsewhere_closes_its_client_with_the_reason() {
    let s = TestServer::default().await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    let id = s.sessions().await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        http("DELETE", &s.url(&format!("/sessions/{id}")), &[], "")
            .await
            .status,
        200
    );
    let (code, reason) = closed(&mut ws).await.expect("a close frame");
    assert_eq!(code, 1001);
    assert!(reason.contains("destroyed by a client"), "{reason}");
    // A crash is reported the same way.
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    let id = s.fake.alive()[0];
    assert!(s.fake.crash(id, "killed by signal 11"));
    let (code, reason) = closed(&mut ws).await.expect("a close frame");
    assert!(matches!(code, 1001 | 1011), "{code} {reason}");
    eventually(
        Duration::from_secs(5),
        "the crash to be recorded",
        || async { ended_total(&get(&s.url("/metrics")).await.body, "crashed") == 1 },
    )
    .await;
    s.shutdown().await;
}

/// Every client settles when eviction takes its session: one evicted before it sent a
/// single frame (its session ended right after the upgrade), and one whose acquire sat in
/// the queue while every session was busy. None of them may be left without an answer or
/// a close frame (each wait below is a hang guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_evicted_sessions_and_queued_clients_all_settle() {
    let s = TestServer::start(|c| c.max_browsers = 2, cfg()).await;
    // Two fresh connections that have sent nothing yet.
    let mut a = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    let mut b = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    // A third evicts the least recently active: `a`, which never said a word.
    let mut c = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    let (code, reason) = closed(&mut a).await.expect("a close frame for a");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("evicted"), "{reason}");
    // Now both sessions are busy: the next connection's acquire waits in the queue.
    b.send(Message::text(
        json!({"id": 7, "method": "Test.sleep", "params": {"ms": 600}}).to_string(),
    ))
    .await
    .unwrap();
    c.send(Message::text(
        json!({"id": 7, "method": "Test.sleep", "params": {"ms": 300}}).to_string(),
    ))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "both sessions to be busy",
        || async {
            s.sessions()
                .await
                .iter()
                .filter(|r| r["state"] == "busy")
                .count()
                == 2
        },
    )
    .await;
    let ws = s.ws.clone();
    let queued = tokio::spawn(async move { ws_connect(&format!("{ws}/"), &[]).await });
    // `c`'s command finishes first (a busy session is never evicted under a command)...
    assert_eq!(wait_response(&mut c, 7).await["id"], 7);
    // ...then the queued client is served by evicting `c`, now the least recently
    // active, whose client gets the reason.
    let (code, reason) = closed(&mut c).await.expect("a close frame for c");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("evicted"), "{reason}");
    let mut d = tokio::time::timeout(Duration::from_secs(30), queued)
        .await
        .expect("the queued client never got an answer")
        .unwrap()
        .expect("the queued client was refused");
    assert_eq!(wait_response(&mut b, 7).await["id"], 7);
    assert_eq!(
        cdp(&mut d, 1, "Test.echo", json!({"x": 1})).await["result"]["x"],
        1
    );
    assert_eq!(
        ended_total(&get(&s.url("/metrics")).await.body, "evicted"),
        2
    );
    drop((b, d));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() {
    let s = TestServer::default().await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    ws.send(Message::text(
        r#"{"id":2,"method":"Test.sleep","params":{"ms":2000}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(http("POST", &s.url("/sessions"), &[], "").await.status, 201);
    eventually(Duration::from_secs(5), "one busy session", || async {
        get(&s.url("/metrics"))
            .await
            .body
            .contains("browserpool_sessions{state=\"busy\"} 1")
    })
    .await;
    let a = get(&s.url("/metrics")).await;
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = a.body;
    let families =
        prom_text::parse(&text).unwrap_or_else(|e| panic!("invalid Prometheus text: {e}\n{text}"));
    let names: Vec<&String> = families.keys().collect();
    for name in [
        "browserpool_sessions",
        "browserpool_sessions_ended_total",
        "browserpool_acquire_duration_seconds",
        "browserpool_teardown_duration_seconds",
        "browserpool_chromium_processes",
        "browserpool_pss_bytes",
        "browserpool_memory_accounted_bytes",
        "browserpool_acquire_refused_memory_total",
        "browserpool_memory_over_budget_with_one_session_total",
        "browserpool_queue_length",
        "browserpool_sweep_removed_entries_total",
        "browserpool_sweep_killed_processes_total",
        "browserpool_ws_connections",
    ] {
        assert!(families.contains_key(name), "{name} missing from {names:?}");
    }
    for name in families.keys() {
        assert!(name.starts_with("browserpool_"), "{name}");
    }
    assert!(
        text.contains("browserpool_sessions{state=\"idle\"} 1"),
        "{text}"
    );
    assert!(text.contains("browserpool_chromium_processes 22"), "{text}");
    assert!(
        text.contains("browserpool_sessions_ended_total{reason=\"memory\"} 0"),
        "{text}"
    );
    assert!(
        !text.contains("browserpool_memory_budget_bytes"),
        "no budget configured: {text}"
    );
    assert!(
        text.contains(&format!("browserpool_pss_bytes {}", 2 * (80u64 << 20))),
        "{text}"
    );
    assert!(
        text.contains("browserpool_acquire_duration_seconds_count{outcome=\"ok\"} 2"),
        "{text}"
    );
    drop(ws);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_lists_the_sessions() {
    let s = TestServer::default().await;
    let c = http(
        "POST",
        &s.url("/sessions"),
        &[],
        r#"{"owner":"<img src=x onerror=alert(1)>"}"#,
    )
    .await;
    let id = c.json()["id"].as_str().unwrap().to_owned();
    let page = get(&s.url("/")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("http-equiv=refresh"));
    assert!(page.body.contains(&format!("data-id=\"{id}\"")));
    assert!(page.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.body.contains("<img"));
    assert!(!page.body.contains("<script"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_sessions_and_waits_for_running_ones() {
    let mut s = TestServer::start(
        |_| {},
        ServerConfig {
            drain_timeout: Duration::from_secs(20),
            release_grace: Duration::from_millis(200),
            ..cfg()
        },
    )
    .await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    // A session nobody is attached to does not hold the drain up.
    let made = http("POST", &s.url("/sessions"), &[], "").await;
    assert_eq!(made.status, 201);
    let made = made.json()["id"].as_str().unwrap().to_owned();
    // The pool counts activity stamped in the same clock tick as an owner's release as
    // use after it (the session is kept): let the clock pass the new session's stamp
    // before the drain releases it.
    eventually(
        Duration::from_secs(5),
        "the new session to be idle",
        || async {
            s.sessions()
                .await
                .iter()
                .any(|r| r["id"] == made.as_str() && r["idle_for_ms"].as_u64() > Some(0))
        },
    )
    .await;
    let _ = s.stop.take().unwrap().send(());
    eventually(Duration::from_secs(5), "readyz to turn 503", || async {
        get(&s.url("/readyz")).await.status == 503
    })
    .await;
    let refused = http("POST", &s.url("/sessions"), &[], "").await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        ws_connect(&format!("{}/", s.ws), &[]).await.err(),
        Some(503)
    );
    assert_eq!(get(&s.url("/healthz")).await.status, 200);
    // The unattached session goes after its grace; the running one still works...
    eventually(
        Duration::from_secs(10),
        "the unattached session to be released",
        || async { s.sessions().await.len() == 1 },
    )
    .await;
    assert_eq!(
        cdp(&mut ws, 2, "Test.echo", json!({"a": 1})).await["result"]["a"],
        1
    );
    // ...and when its client closes it, the drain ends well before its timeout.
    cdp(&mut ws, 3, "Browser.close", json!({})).await;
    let report = tokio::time::timeout(Duration::from_secs(10), s.serving.take().unwrap())
        .await
        .expect("the drain did not end when the last session did")
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.live_at_deadline, 0);
    assert!(report.waited < Duration::from_secs(20));
    assert!(s.fake.alive().is_empty());
    assert!(s.dirs().is_empty(), "{:?}", s.dirs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_shuts_down_sessions_still_connected() {
    let mut s = TestServer::start(
        |_| {},
        ServerConfig {
            drain_timeout: Duration::from_millis(300),
            ..cfg()
        },
    )
    .await;
    let mut ws = ws_connect(&format!("{}/", s.ws), &[]).await.unwrap();
    cdp(&mut ws, 1, "Target.getTargets", json!({})).await;
    let _ = s.stop.take().unwrap().send(());
    let (code, reason) = closed(&mut ws).await.expect("a close frame");
    assert_eq!(code, 1001, "{reason}");
    let report = tokio::time::timeout(Duration::from_secs(10), s.serving.take().unwrap())
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.live_at_deadline, 1);
    assert_eq!(report.shutdown.torn_down, 1);
    assert!(s.fake.alive().is_empty());
    assert!(s.dirs().is_empty(), "{:?}", s.dirs());
}

/// The metrics check above is only as good as its reader: it refuses what the text
/// format does not allow.
#[test]
fn the_prometheus_text_reader_refuses_malformed_text() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{k=\"v\\\"x\"} 3\n\
        # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
    let f = prom_text::parse(good).unwrap();
    assert_eq!(f["a_total"].samples[0].labels["k"], "v\"x");
    assert_eq!(f["h"].samples.len(), 4);
    for bad in [
        "a 1",                                                            // no final newline
        "a{k=v} 1\n",                                                     // unquoted label value
        "a{k=\"v\" 1\n",                                                  // unclosed labels
        "a{__k=\"v\"} 1\n",                                               // reserved label name
        "a{k=\"\\q\"} 1\n",                                               // bad escape
        "1a 1\n",                                                         // bad metric name
        "a one\n",                                                        // bad value
        "a 1 2 3\n",                                                      // extra field
        "a 1\na 2\n",                                                     // the same series twice
        "a 1\nb 1\na{k=\"v\"} 1\n",                                       // a family split up
        "a 1\n# TYPE a gauge\n",                                          // TYPE after samples
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",                          // TYPE twice
        "# TYPE a sometimes\na 1\n",                                      // unknown type
        "# TYPE a counter\na -1\n",                                       // negative counter
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", // count != +Inf
    ] {
        assert!(prom_text::parse(bad).is_err(), "accepted {bad:?}");
    }
}
