//! `browserpool-server`: see the crate docs and `server/README.md`.

use std::process::ExitCode;

use browserpool::Pool;
use browserpool_chrome::{ChromeError, ChromeLauncher};
use browserpool_server::cli::{pool_error, Cli, LogFormat, Settings};
use browserpool_server::{chromium_product, ConfigError, Server};
use clap::{CommandFactory, Parser};
use tracing_subscriber::EnvFilter;

/// Print a configuration error the way clap prints its own (naming the flag) and exit 2.
fn refuse(e: &ConfigError) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, e.to_string())
        .exit()
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; only a kill will stop the server");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
}

fn main() -> ExitCode {
    let settings = match Cli::parse().settings() {
        Ok(s) => s,
        Err(e) => refuse(&e),
    };
    init_logging(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> ExitCode {
    let launcher = match ChromeLauncher::new(settings.chrome.clone()) {
        Ok(l) => l,
        Err(
            e @ (ChromeError::BrowserNotExecutable { .. } | ChromeError::BrowserNotFound { .. }),
        ) => refuse(&ConfigError::new(
            "chromium",
            format!(
                "{e}; install Chromium (Debian: apt-get install chromium) or pass --chromium PATH"
            ),
        )),
        Err(e @ ChromeError::InvalidConfig(_)) => {
            refuse(&ConfigError::new("lean-processes", e.to_string()))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the Chromium launcher");
            return ExitCode::FAILURE;
        }
    };
    let executable = launcher.executable().to_owned();
    let product = tokio::task::spawn_blocking(move || chromium_product(&executable))
        .await
        .unwrap_or_else(|_| "HeadlessChrome".to_owned());
    let pool = match Pool::new(settings.pool.clone(), launcher).await {
        Ok(p) => p,
        Err(browserpool::PoolError::Config(e)) => refuse(&pool_error(&e)),
        Err(e) => {
            tracing::error!(error = %e, root = %settings.pool.root.display(), "cannot start the pool");
            return ExitCode::FAILURE;
        }
    };
    let sweep = pool.sweep_report();
    tracing::info!(
        removed = sweep.removed.len(),
        killed = sweep.killed.len(),
        skipped = sweep.skipped.len(),
        failed = sweep.failed.len(),
        "startup sweep"
    );
    for p in &sweep.removed {
        tracing::info!(path = %p.display(), "startup sweep removed a leftover");
    }
    let server = match Server::new(pool, settings.server.clone()) {
        Ok(s) => s.with_product(product.clone()),
        Err(e) => refuse(&e),
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %settings.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(settings.listen);
    // One line on stdout for scripts (and the tests) to learn the port; logs go to stderr.
    println!("browserpool-server listening on {addr}");
    tracing::info!(%addr, browser = %product, max_browsers = settings.pool.max_browsers,
        idle_timeout = ?settings.pool.idle_timeout, release_grace = ?settings.server.release_grace,
        auth = settings.server.token.is_some(), "serving");
    match server.serve(listener, shutdown_signal()).await {
        Ok(report) if report.is_clean() => {
            tracing::info!(waited = ?report.waited, torn_down = report.shutdown.torn_down,
                "stopped; every browser and directory is gone");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            tracing::error!(unfinished = ?report.shutdown.unfinished, dirs_left = ?report.shutdown.dirs_left,
                "stopped with teardowns unfinished; the next start's sweep removes what is left");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = %e, "the HTTP server failed");
            ExitCode::FAILURE
        }
    }
}
