//! A CDP-speaking fake browser for tests and benchmarks without Chromium: it wraps the
//! core's [`FakeLauncher`] (the one set of test doubles) and gives every fake browser a
//! WebSocket endpoint on loopback that answers CDP commands.
//!
//! The endpoint answers every command with `{"id":N,"result":{}}` (echoing `sessionId`),
//! except:
//! - `Browser.getVersion`: a version object with `product: "FakeChrome/1.0"`;
//! - `Test.echo`: `result` is the command's `params`;
//! - `Test.sleep {"ms": N}`: answers after N milliseconds (other commands meanwhile are
//!   answered at once);
//! - `Test.emit {"count": N, "intervalMs": M}`: answers at once, then sends N events
//!   `{"method":"Test.event","params":{"n":i}}` M milliseconds apart.
//!
//! When the fake browser dies (killed by the pool or crashed by the test), its
//! connections close, as Chromium's do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use browserpool::testing::{FakeLauncher, FakeProcess};
use browserpool::{
    BackendError, KillStage, LaunchSpec, MemoryUsage, Orphan, ProcessLauncher, SessionId,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::backend::CdpLauncher;

type Registry = Arc<Mutex<HashMap<u64, Weak<FakeProcess>>>>;

/// A [`ProcessLauncher`] + [`CdpLauncher`] whose browsers are [`FakeLauncher`]
/// processes with a fake CDP endpoint each. Clones share state.
#[derive(Clone)]
pub struct FakeCdpLauncher {
    fake: FakeLauncher,
    endpoint: Arc<Endpoint>,
}

struct Endpoint {
    addr: SocketAddr,
    procs: Registry,
    accept: tokio::task::AbortHandle,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A fake browser with a CDP endpoint.
#[derive(Debug)]
pub struct FakeCdpProcess {
    fake: Arc<FakeProcess>,
    url: String,
}

impl FakeCdpProcess {
    /// The core fake process (alive until killed or crashed).
    pub fn fake(&self) -> &FakeProcess {
        &self.fake
    }
}

impl FakeCdpLauncher {
    /// A launcher with its CDP endpoint listening on `127.0.0.1`, on a port of the OS's
    /// choosing. Must be called inside a tokio runtime.
    pub async fn new() -> std::io::Result<Self> {
        Self::wrap(FakeLauncher::new()).await
    }

    /// Wrap a [`FakeLauncher`] that the caller keeps a clone of, to steer and inspect.
    pub async fn wrap(fake: FakeLauncher) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let procs: Registry = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, procs.clone(), fake.clone()));
        Ok(FakeCdpLauncher {
            fake,
            endpoint: Arc::new(Endpoint {
                addr,
                procs,
                accept: accept.abort_handle(),
            }),
        })
    }

    /// The wrapped core fake launcher.
    pub fn fake(&self) -> &FakeLauncher {
        &self.fake
    }
}

async fn accept_loop(listener: TcpListener, procs: Registry, fake: FakeLauncher) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, procs.clone(), fake.clone()));
    }
}

async fn serve_connection(stream: TcpStream, procs: Registry, fake: FakeLauncher) {
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    // The error type is tungstenite's; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        if let Ok(mut p) = seen.lock() {
            *p = req.uri().path().to_owned();
        }
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let key = path
        .lock()
        .ok()
        .and_then(|p| p.strip_prefix("/devtools/browser/")?.parse::<u64>().ok());
    let process = key.and_then(|k| procs.lock().ok()?.get(&k)?.upgrade());
    let Some(process) = process.filter(|p| p.is_alive()) else {
        return; // no such browser: drop the connection
    };
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = async move {
        while let Some(m) = out_rx.recv().await {
            if tx.send(Message::text(m)).await.is_err() {
                break;
            }
        }
        let _ = tx.close().await;
    };
    let reader = async {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(cmd) = serde_json::from_str::<Value>(text.as_str()) else {
                let _ = out_tx.send(
                    json!({"error": {"code": -32700, "message": "Message must be a valid JSON"}})
                        .to_string(),
                );
                continue;
            };
            answer(cmd, &out_tx);
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
        _ = fake.exited(&process) => {}
    }
}

fn answer(cmd: Value, out: &mpsc::UnboundedSender<String>) {
    let id = cmd.get("id").cloned().unwrap_or(Value::Null);
    let method = cmd.get("method").and_then(Value::as_str).unwrap_or("");
    let params = cmd.get("params").cloned().unwrap_or(Value::Null);
    let mut reply = json!({"id": id, "result": {}});
    if let Some(s) = cmd.get("sessionId") {
        reply["sessionId"] = s.clone();
    }
    match method {
        "Browser.getVersion" => {
            reply["result"] = json!({
                "protocolVersion": "1.3",
                "product": "FakeChrome/1.0",
                "revision": "0",
                "userAgent": "FakeChrome",
                "jsVersion": "0",
            });
        }
        "Test.echo" => reply["result"] = params,
        "Test.sleep" => {
            let ms = params.get("ms").and_then(Value::as_u64).unwrap_or(0);
            let out = out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = out.send(reply.to_string());
            });
            return;
        }
        "Test.emit" => {
            let count = params.get("count").and_then(Value::as_u64).unwrap_or(1);
            let every = params
                .get("intervalMs")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let _ = out.send(reply.to_string());
            let out = out.clone();
            tokio::spawn(async move {
                for n in 0..count {
                    tokio::time::sleep(Duration::from_millis(every)).await;
                    let ev = json!({"method": "Test.event", "params": {"n": n}});
                    if out.send(ev.to_string()).is_err() {
                        return;
                    }
                }
            });
            return;
        }
        _ => {}
    }
    let _ = out.send(reply.to_string());
}

#[async_trait]
impl ProcessLauncher for FakeCdpLauncher {
    type Process = FakeCdpProcess;

    async fn launch(&self, spec: &LaunchSpec) -> Result<FakeCdpProcess, BackendError> {
        let fake = Arc::new(self.fake.launch(spec).await?);
        let SessionId(n) = spec.id;
        if let Ok(mut procs) = self.endpoint.procs.lock() {
            procs.retain(|_, p| p.strong_count() > 0);
            procs.insert(n, Arc::downgrade(&fake));
        }
        Ok(FakeCdpProcess {
            fake,
            url: format!("ws://{}/devtools/browser/{n}", self.endpoint.addr),
        })
    }

    async fn kill(&self, process: &FakeCdpProcess, stage: KillStage) -> Result<(), BackendError> {
        self.fake.kill(&process.fake, stage).await
    }

    async fn wait_gone(&self, process: &FakeCdpProcess) {
        self.fake.wait_gone(&process.fake).await
    }

    async fn exited(&self, process: &FakeCdpProcess) -> String {
        self.fake.exited(&process.fake).await
    }

    fn kill_on_drop(&self, process: &FakeCdpProcess) {
        self.fake.kill_on_drop(&process.fake)
    }

    async fn memory(&self, process: &FakeCdpProcess) -> Option<MemoryUsage> {
        self.fake.memory(&process.fake).await
    }

    async fn find_orphans(&self, dir: &Path) -> Result<Vec<Orphan>, BackendError> {
        self.fake.find_orphans(dir).await
    }

    async fn kill_orphan(&self, orphan: &Orphan) -> Result<bool, BackendError> {
        self.fake.kill_orphan(orphan).await
    }
}

impl CdpLauncher for FakeCdpLauncher {
    fn cdp_endpoint(process: &FakeCdpProcess) -> &str {
        &process.url
    }
}
