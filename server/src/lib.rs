//! # browserpool-server
//!
//! A leak-proof browser server: unmodified Puppeteer and Playwright clients connect to it
//! over the Chrome DevTools Protocol, and whatever they do (crash, disconnect, forget to
//! close), its Chromium processes, memory and directories stay bounded, because it embeds
//! a [`browserpool::Pool`].
//!
//! ```
//! use std::time::Duration;
//! use browserpool::{Pool, PoolConfig};
//! use browserpool_server::{testing::FakeCdpLauncher, Server, ServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! // With real Chromium the launcher is `browserpool_chrome::ChromeLauncher`.
//! let launcher = FakeCdpLauncher::new().await?;
//! let pool = Pool::new(
//!     PoolConfig::default().with_max_browsers(4).with_root(root.path().to_owned()),
//!     launcher,
//! )
//! .await?;
//! let server = Server::new(
//!     pool,
//!     ServerConfig { release_grace: Duration::from_secs(30), ..ServerConfig::default() },
//! )?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("clients connect to ws://{}/", listener.local_addr()?);
//!
//! // Serve until the shutdown future resolves (the binary uses SIGTERM/SIGINT), then
//! // drain: refuse new sessions, let running ones finish, shut the pool down.
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.serve(listener, async move { let _ = stopped.await; }));
//! let _ = stop.send(());
//! let report = serving.await??;
//! assert!(report.is_clean());
//! # Ok(())
//! # }
//! ```
//!
//! ## Endpoints
//!
//! | | |
//! |---|---|
//! | `ws://HOST/` | a fresh session for this connection; raw CDP (`puppeteer.connect({ browserWSEndpoint })`) |
//! | `ws://HOST/devtools/browser/{id}` | attach to an existing session (reconnect) |
//! | `GET /json/version` | like Chromium's, for clients that discover the endpoint over HTTP |
//! | `POST /sessions` | `{id, ws_url, owner}`: a session owned by the caller |
//! | `GET /sessions`, `GET /sessions/{id}` | id, owner, state, idle for, uses, PSS, connections |
//! | `DELETE /sessions/{id}` | returns once the process tree is gone and the directory removed |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (503 while draining or unhealthy) |
//! | `GET /metrics` | Prometheus text format, `browserpool_*` |
//! | `GET /sweep` | what the startup sweep removed, killed, skipped |
//! | `GET /` | the status page (server-rendered, refreshes itself) |
//!
//! Errors are JSON: `{"error": "...", "session": "s3" | null}`.
//!
//! ## What the proxy guarantees
//!
//! - Every client message stamps activity; a session is busy (never reaped, evicted or
//!   retired) while a client command awaits its response; browser events are not
//!   activity. It reads only `id` and `method` of client messages.
//! - `Browser.close` destroys the session through the pool's teardown.
//! - When the last connection attached to a session drops, its owner is released with
//!   [`ServerConfig::release_grace`]: a reconnect within the grace keeps the session,
//!   otherwise it is torn down. A connected but idle client is reaped by the idle timeout.

pub mod api;
pub mod app;
mod attach;
pub mod auth;
pub mod backend;
pub mod cdp;
pub mod cli;
pub mod config;
pub mod error;
mod metrics;
mod proxy;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
mod upgrade;

pub use app::{DrainReport, Server};
pub use backend::{chromium_product, CdpLauncher};
pub use config::ServerConfig;
pub use error::{ApiError, ConfigError};
