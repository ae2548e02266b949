//! The HTTP endpoints and the WebSocket entry points.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use browserpool::{Phase, SessionId, SessionInfo};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::backend::CdpLauncher;
use crate::error::ApiError;
use crate::metrics::Scrape;
use crate::proxy::{self, Link};
use crate::status;
use crate::upgrade::{self, Upgrade};

/// One session as `GET /sessions` and the status page show it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionRow {
    /// `s17`.
    pub id: String,
    /// Its owner key (`ws-3 127.0.0.1:50000`, `http-4 alice`).
    pub owner: Option<String>,
    /// `launching`, `idle`, `busy`, `stopping` or `removing`.
    pub state: &'static str,
    /// Milliseconds since the last client activity (0 while busy).
    pub idle_for_ms: u64,
    /// The same, for people (`12s`, `3m 4s`).
    pub idle_for: String,
    /// Client commands so far.
    pub uses: u64,
    /// Client commands awaiting their response.
    pub in_flight: u32,
    /// Milliseconds since its browser came up.
    pub age_ms: u64,
    /// WebSocket connections attached now.
    pub connections: u32,
    /// Its last connection dropped and the release grace period is running.
    pub on_notice: bool,
    /// Why it is ending, once teardown has begun.
    pub ending: Option<String>,
    /// Proportional set size of its process tree, if measured.
    pub pss_bytes: Option<u64>,
    /// Resident set size of its process tree, if measured.
    pub rss_bytes: Option<u64>,
    /// Live processes in its tree, if measured.
    pub processes: Option<u32>,
    /// Its directory.
    pub dir: String,
    /// Where to reconnect to it.
    pub ws_url: String,
}

/// `12s`, `3m 4s`, `450ms`: whole seconds from one second up.
pub fn human(d: Duration) -> String {
    let d = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(d).to_string()
}

fn state_name(i: &SessionInfo) -> &'static str {
    match i.phase {
        Phase::Launching => "launching",
        Phase::Live if i.is_busy() => "busy",
        Phase::Live => "idle",
        Phase::Stopping => "stopping",
        Phase::Removing => "removing",
    }
}

pub(crate) async fn rows<L: CdpLauncher>(app: &App<L>, base: &str) -> Vec<SessionRow> {
    let infos = app.pool.sessions();
    let memory = app.pool.memory().await;
    infos
        .into_iter()
        .map(|i| {
            let mem = memory
                .sessions
                .iter()
                .find(|(id, _)| *id == i.id)
                .map(|(_, m)| *m);
            SessionRow {
                id: i.id.to_string(),
                owner: i.owner.as_ref().map(|o| o.to_string()),
                state: state_name(&i),
                idle_for_ms: i.idle_for.as_millis() as u64,
                idle_for: human(i.idle_for),
                uses: i.uses,
                in_flight: i.in_flight,
                age_ms: i.age.as_millis() as u64,
                connections: app.attach.get(i.id).map_or(0, |(_, n)| n),
                on_notice: i.on_notice,
                ending: i.ending.as_ref().map(|r| r.label().to_owned()),
                pss_bytes: mem.map(|m| m.pss_bytes),
                rss_bytes: mem.map(|m| m.rss_bytes),
                processes: mem.map(|m| m.processes),
                dir: i.dir.display().to_string(),
                ws_url: format!("{base}/devtools/browser/{}", i.id),
            }
        })
        .collect()
}

fn parse_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{raw}` is not a session id: ids look like s17 (see GET /sessions)"
        ))
    })
}

/// `GET /`: the status page, or a new session for a WebSocket client.
pub(crate) async fn root<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if upgrade::is_upgrade(&req) {
        return match new_session_ws(&app, peer, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
    }
    let base = app.ws_base(req.headers());
    let rows = rows(&app, &base).await;
    let view = status::View {
        stats: app.pool.stats(),
        memory: app.pool.memory().await,
        rows: &rows,
        max_browsers: app.pool.config().max_browsers,
        draining: app.draining.load(Ordering::Acquire),
        ws_open: app.conns.open(),
        product: &app.product,
        ws_base: &base,
        uptime: app.started.elapsed(),
        sweep: app.pool.sweep_report(),
    };
    let mut resp = Html(status::render(&view)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn new_session_ws<L: CdpLauncher>(
    app: &Arc<App<L>>,
    peer: SocketAddr,
    mut req: Request,
) -> Result<Response, ApiError> {
    if app.draining.load(Ordering::Acquire) {
        app.metrics.refuse("draining");
        return Err(ApiError::draining());
    }
    let up = Upgrade::from_request(&mut req)?;
    let Some(conn) = app.conns.try_open(app.config.max_connections) else {
        app.metrics.refuse("max_connections");
        return Err(too_many_connections(app.config.max_connections));
    };
    let lease = app
        .acquire("ws", &peer.to_string())
        .await
        .inspect_err(|_| {
            app.metrics.refuse("acquire");
        })?;
    let id = lease.id();
    let Some(attach) = app.attach.attach(&app.pool, id, app.config.release_grace) else {
        return Err(lease.ended_error().into());
    };
    tracing::info!(session = %id, peer = %peer, "new session for a WebSocket client");
    spawn_proxy(app, lease, attach, conn, up)
}

fn too_many_connections(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{max} WebSocket connections are open (--max-connections): retry later"),
    )
    .retry_after(Duration::from_secs(1))
}

fn spawn_proxy<L: CdpLauncher>(
    app: &Arc<App<L>>,
    lease: browserpool::Lease<L>,
    attach: crate::attach::AttachGuard<L>,
    conn: crate::attach::ConnGuard,
    up: Upgrade,
) -> Result<Response, ApiError> {
    let resp = up.response();
    app.metrics.ws_accepted.inc();
    // Not supervised beyond its guards: if this task panics or ends, dropping the link
    // detaches the connection and releases the session's owner with the grace period.
    tokio::spawn(proxy::run(
        Link {
            app: app.clone(),
            lease,
            attach,
            conn,
        },
        up,
    ));
    Ok(resp)
}

/// `GET /devtools/browser/{id}`: attach to an existing session (reconnect).
pub(crate) async fn attach_ws<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let lease = app.pool.session(id).map_err(|e| {
        app.metrics.refuse("unknown_session");
        ApiError::from(e)
    })?;
    if !upgrade::is_upgrade(&req) {
        return Err(ApiError::bad_request(format!(
            "session {id} is a CDP WebSocket endpoint: connect with a WebSocket client"
        ))
        .session(id));
    }
    let up = Upgrade::from_request(&mut req).map_err(|e| e.session(id))?;
    let Some(conn) = app.conns.try_open(app.config.max_connections) else {
        app.metrics.refuse("max_connections");
        return Err(too_many_connections(app.config.max_connections).session(id));
    };
    // Reattaching is use, and `attach` cancels a release that the last disconnect started.
    lease.touch();
    let Some(attach) = app.attach.attach(&app.pool, id, app.config.release_grace) else {
        return Err(ApiError::from(lease.ended_error()));
    };
    tracing::info!(session = %id, peer = %peer, "client attached to an existing session");
    spawn_proxy(&app, lease, attach, conn, up)
}

/// `GET /json/version`, shaped like Chromium's so that clients discovering the endpoint
/// over HTTP work. Its `webSocketDebuggerUrl` gives a fresh session per connection.
pub(crate) async fn json_version<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    Json(json!({
        "Browser": app.product,
        "Protocol-Version": "1.3",
        "User-Agent": concat!("browserpool-server/", env!("CARGO_PKG_VERSION")),
        "V8-Version": "",
        "WebKit-Version": "",
        "webSocketDebuggerUrl": format!("{}/", app.ws_base(&headers)),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    owner: Option<String>,
}

/// `POST /sessions`: a new session owned by the caller (`{"owner": "..."}` in the body,
/// else the `X-Browserpool-Owner` header, else the peer address).
pub(crate) async fn create<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let parsed: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not valid JSON of the form {{\"owner\": \"name\"}}: {e}"
            ))
        })?
    };
    let label = parsed
        .owner
        .or_else(|| {
            headers
                .get("x-browserpool-owner")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| peer.ip().to_string());
    if label.len() > 200 || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "owner must be at most 200 characters without control characters",
        ));
    }
    let lease = app.acquire("http", &label).await?;
    let id = lease.id();
    let base = app.ws_base(&headers);
    let owner = app.attach.get(id).map(|(o, _)| o.to_string());
    tracing::info!(session = %id, owner = ?owner, "new session over HTTP");
    let body = json!({
        "id": id.to_string(),
        "ws_url": format!("{base}/devtools/browser/{id}"),
        "owner": owner,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /sessions`.
pub(crate) async fn list<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
) -> Json<Vec<SessionRow>> {
    Json(rows(&app, &app.ws_base(&headers)).await)
}

/// `GET /sessions/{id}`: 200 while launching or live; 410 with the reason once its
/// teardown has begun; 404 if never issued.
pub(crate) async fn get_one<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SessionRow>, ApiError> {
    let id = parse_id(&raw)?;
    let rows = rows(&app, &app.ws_base(&headers)).await;
    match rows.into_iter().find(|r| r.id == id.to_string()) {
        Some(r) if r.ending.is_none() => Ok(Json(r)),
        _ => Err(match app.pool.session(id) {
            Err(e) => e.into(),
            Ok(_) => ApiError::new(StatusCode::NOT_FOUND, format!("session {id} is not listed"))
                .session(id),
        }),
    }
}

/// `DELETE /sessions/{id}`: returns once the process tree is gone and the directory
/// removed.
pub(crate) async fn delete<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&raw)?;
    app.destroy(id).await?;
    Ok(Json(json!({"id": id.to_string(), "ended": "destroyed"})))
}

/// `GET /healthz`: liveness. 200 while the pool's reaper runs.
pub(crate) async fn healthz<L: CdpLauncher>(State(app): State<Arc<App<L>>>) -> Response {
    if app.pool.reaper_running() {
        Json(json!({"status": "ok", "uptime_s": app.started.elapsed().as_secs()})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pool's reaper task has stopped: restart the server",
        )
        .into_response()
    }
}

/// `GET /readyz`: readiness. 503 while draining or when the pool is unhealthy.
pub(crate) async fn readyz<L: CdpLauncher>(State(app): State<Arc<App<L>>>) -> Response {
    match app.ready() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why)
            .retry_after(Duration::from_secs(1))
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format 0.0.4.
pub(crate) async fn metrics<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
) -> Result<Response, ApiError> {
    let stats = app.pool.stats();
    let memory = app.pool.memory().await;
    let scrape = Scrape {
        stats: &stats,
        memory: &memory,
        sweep: app.pool.sweep_report(),
        max_browsers: app.pool.config().max_browsers,
        ws_open: app.conns.open(),
        draining: app.draining.load(Ordering::Acquire),
        ready: app.ready().is_ok(),
    };
    let text = app.metrics.render(&scrape).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the metrics",
        )
    })?;
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    Ok(resp)
}

/// `GET /sweep`: what this server's startup sweep removed, killed, skipped and failed.
pub(crate) async fn sweep<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
) -> Json<serde_json::Value> {
    let r = app.pool.sweep_report();
    Json(json!({
        "removed": r.removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "killed": r.killed.iter().map(|o| json!({
            "pid": o.pid, "dir": o.dir.display().to_string(), "proof": o.proof,
        })).collect::<Vec<_>>(),
        "skipped": r.skipped.iter().map(|s| json!({
            "path": s.path.display().to_string(), "reason": s.reason.to_string(),
        })).collect::<Vec<_>>(),
        "failed": r.failed.iter().map(|(p, e)| json!({
            "path": p.display().to_string(), "error": e.to_string(),
        })).collect::<Vec<_>>(),
    }))
}

/// 404 for any other path.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

/// 405 for a known path with another method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not supported on {}", uri.path()),
    )
}
