//! [`Server`]: the shared state, the router and the drain on shutdown.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use browserpool::{AcquireError, Lease, OwnerKey, Pool, ShutdownReport};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::attach::{Attachments, Connections};
use crate::backend::CdpLauncher;
use crate::config::ServerConfig;
use crate::error::{ApiError, ConfigError};
use crate::metrics::Metrics;
use crate::{api, auth};

/// State shared by every request and connection.
pub(crate) struct App<L: CdpLauncher> {
    pub(crate) pool: Arc<Pool<L>>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Metrics,
    pub(crate) attach: Arc<Attachments>,
    pub(crate) conns: Arc<Connections>,
    pub(crate) draining: AtomicBool,
    pub(crate) closing: watch::Sender<bool>,
    seq: AtomicU64,
    failed_launches: AtomicU32,
    pub(crate) product: String,
    pub(crate) started: Instant,
}

impl<L: CdpLauncher> App<L> {
    /// A new session for a caller of `kind` (`ws` or `http`) described by `label`. Its
    /// owner key is unique, so releasing it touches only this session.
    pub(crate) async fn acquire(&self, kind: &str, label: &str) -> Result<Lease<L>, ApiError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(ApiError::draining());
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let owner = OwnerKey::new(format!("{kind}-{n} {label}"));
        let t0 = Instant::now();
        let result = self.pool.acquire_for(owner.clone()).await;
        self.metrics.observe_acquire(result.is_ok(), t0.elapsed());
        match result {
            Ok(lease) => {
                self.failed_launches.store(0, Ordering::Relaxed);
                self.attach
                    .register(lease.id(), owner, lease.activity().clone());
                Ok(lease)
            }
            Err(e) => {
                if matches!(e, AcquireError::LaunchFailed { .. }) {
                    self.failed_launches.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(owner = %owner, error = %e, "session request refused");
                Err(e.into())
            }
        }
    }

    /// Destroy a session and wait until its processes are gone and its directory removed.
    pub(crate) async fn destroy(&self, id: browserpool::SessionId) -> Result<(), ApiError> {
        let t0 = Instant::now();
        self.pool.destroy(id).await?;
        self.metrics.teardown.observe(t0.elapsed().as_secs_f64());
        Ok(())
    }

    /// The WebSocket base URL clients should use: `--public-url`, else `ws://` + `Host`.
    pub(crate) fn ws_base(&self, headers: &HeaderMap) -> String {
        if let Some(base) = self.config.public_ws_base() {
            return base;
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '?', '#']))
            .unwrap_or("localhost");
        format!("ws://{host}")
    }

    /// Whether `/readyz` answers 200: not draining, the pool's reaper running, and the
    /// last launches not all failing.
    pub(crate) fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining: shutting down".into());
        }
        if !self.pool.reaper_running() {
            return Err("the pool's reaper task has stopped".into());
        }
        if let Some(why) = self.pool.stats().unhealthy {
            return Err(format!("the pool is unhealthy: {why}"));
        }
        let failed = self.failed_launches.load(Ordering::Relaxed);
        if failed >= self.config.unready_after_failed_launches {
            return Err(format!(
                "the last {failed} browser launches failed; see the server log"
            ));
        }
        Ok(())
    }
}

/// The browser server: a [`Pool`] behind a CDP WebSocket proxy and an HTTP API.
///
/// See the [crate docs](crate) for the endpoints. [`Server::serve`] runs it until a
/// shutdown signal, then drains: new sessions are refused (`/readyz` answers 503),
/// running sessions get up to [`ServerConfig::drain_timeout`] to finish, then the pool is
/// shut down (every browser killed, every directory removed).
pub struct Server<L: CdpLauncher> {
    app: Arc<App<L>>,
}

/// What [`Server::serve`] did on its way out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// How long the drain waited for sessions to finish.
    pub waited: Duration,
    /// Sessions still live when the drain stopped waiting (the drain timeout passed);
    /// the pool's shutdown tore them down.
    pub live_at_deadline: usize,
    /// What the pool's shutdown reported.
    pub shutdown: ShutdownReport,
}

impl DrainReport {
    /// True when the pool's shutdown left nothing behind (every session's processes
    /// gone and directory removed).
    pub fn is_clean(&self) -> bool {
        self.shutdown.unfinished.is_empty() && self.shutdown.dirs_left.is_empty()
    }
}

impl<L: CdpLauncher> Server<L> {
    /// A server for `pool` (already built, swept and running). Refuses an invalid
    /// `config`, naming the flag.
    pub fn new(pool: Pool<L>, config: ServerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let (closing, _) = watch::channel(false);
        Ok(Server {
            app: Arc::new(App {
                pool: Arc::new(pool),
                config,
                metrics: Metrics::new(),
                attach: Arc::default(),
                conns: Arc::default(),
                draining: AtomicBool::new(false),
                closing,
                seq: AtomicU64::new(0),
                failed_launches: AtomicU32::new(0),
                product: "HeadlessChrome".to_owned(),
                started: Instant::now(),
            }),
        })
    }

    /// Report `product` as the `Browser` of `/json/version` (such as
    /// [`chromium_product`](crate::backend::chromium_product)'s answer).
    pub fn with_product(mut self, product: impl Into<String>) -> Self {
        if let Some(app) = Arc::get_mut(&mut self.app) {
            app.product = product.into();
        }
        self
    }

    /// The pool behind the server.
    pub fn pool(&self) -> &Arc<Pool<L>> {
        &self.app.pool
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.app.draining.load(Ordering::Acquire)
    }

    /// The axum router with every endpoint (for embedding in a larger server; the
    /// caller must then serve it with `into_make_service_with_connect_info::<SocketAddr>`).
    pub fn router(&self) -> Router {
        let app = self.app.clone();
        let authed = Router::new()
            .route("/", get(api::root::<L>))
            .route("/devtools/browser/{id}", get(api::attach_ws::<L>))
            .route("/json/version", get(api::json_version::<L>))
            .route("/json/version/", get(api::json_version::<L>))
            .route("/sessions", get(api::list::<L>).post(api::create::<L>))
            .route(
                "/sessions/{id}",
                get(api::get_one::<L>).delete(api::delete::<L>),
            )
            .route("/metrics", get(api::metrics::<L>))
            .route("/sweep", get(api::sweep::<L>))
            .route_layer(axum::middleware::from_fn_with_state(
                app.clone(),
                auth::require_token::<L>,
            ));
        authed
            .route("/healthz", get(api::healthz::<L>))
            .route("/readyz", get(api::readyz::<L>))
            .fallback(api::not_found)
            .method_not_allowed_fallback(api::method_not_allowed)
            .layer(DefaultBodyLimit::max(self.app.config.max_message_size))
            .with_state(app)
    }

    /// Serve on `listener` until `shutdown` resolves (for the binary: SIGTERM or
    /// SIGINT), then drain and shut the pool down. Returns what the drain did; an error
    /// only if the listener failed.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> std::io::Result<DrainReport>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let router = self.router();
        let app = self.app;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let http = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        });
        let mut http = tokio::spawn(http.into_future());
        tokio::select! {
            _ = shutdown => {}
            r = &mut http => {
                let e = match r {
                    Ok(Ok(())) => std::io::Error::other("the HTTP server stopped by itself"),
                    Ok(Err(e)) => e,
                    Err(e) => std::io::Error::other(e.to_string()),
                };
                app.draining.store(true, Ordering::Release);
                let _ = app.pool.shutdown().await;
                let _ = app.closing.send(true);
                return Err(e);
            }
        }
        let report = drain(&app).await;
        let _ = stop_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(5), &mut http)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open 5 s after shutdown; closing them");
            http.abort();
        }
        Ok(report)
    }
}

async fn drain<L: CdpLauncher>(app: &Arc<App<L>>) -> DrainReport {
    let start = Instant::now();
    app.draining.store(true, Ordering::Release);
    let timeout = app.config.drain_timeout;
    let live = |app: &App<L>| {
        let s = app.pool.stats();
        s.launching + s.live
    };
    tracing::info!(live = live(app), timeout = ?timeout,
        "draining: refusing new sessions, letting running ones finish");
    // Sessions no client is attached to would only hold the drain up: start their grace.
    for owner in app.attach.unattached() {
        app.pool.release_owner(&owner, app.config.release_grace);
    }
    let deadline = start + timeout;
    loop {
        let n = live(app);
        let now = Instant::now();
        if n == 0 || now >= deadline {
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
    }
    let live_at_deadline = live(app);
    let waited = start.elapsed();
    if live_at_deadline > 0 {
        tracing::warn!(
            sessions = live_at_deadline,
            "drain timeout passed; shutting the remaining sessions down"
        );
    }
    let shutdown = app.pool.shutdown().await;
    let _ = app.closing.send(true);
    tracing::info!(waited = ?waited, torn_down = shutdown.torn_down,
        unfinished = shutdown.unfinished.len(), dirs_left = shutdown.dirs_left.len(), "pool shut down");
    DrainReport {
        waited,
        live_at_deadline,
        shutdown,
    }
}
