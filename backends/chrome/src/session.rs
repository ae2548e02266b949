//! [`ChromeSession`] and [`ChromePage`]: the handles a server drives a pooled browser
//! through. Every client-initiated CDP command goes through
//! [`Lease::begin_op`](browserpool::Lease::begin_op), which marks the session busy
//! while the command is in flight (so it is never reaped, evicted or retired under it)
//! and stamps activity at both ends. Browser-originated events are handled by the CDP
//! handler task and never stamp activity.

use std::future::Future;
use std::sync::Arc;

use browserpool::{Lease, SessionId};
use chromiumoxide::error::CdpError;
use chromiumoxide::js::EvaluationResult;
use chromiumoxide::{Browser, Page};

use crate::error::ChromeError;
use crate::launcher::ChromeLauncher;

/// A pooled Chromium session, as a server holds it.
///
/// Cheap to clone. Dropping it does not end the session (the pool owns it); the pool's
/// idle reaper, eviction, `destroy` and shutdown do. Once the session has ended, every
/// method fails with [`ChromeError::Session`] saying why (for a crash: "browser exited
/// by itself (killed by signal 9)").
#[derive(Clone, Debug)]
pub struct ChromeSession {
    lease: Lease<ChromeLauncher>,
}

impl From<Lease<ChromeLauncher>> for ChromeSession {
    fn from(lease: Lease<ChromeLauncher>) -> Self {
        ChromeSession { lease }
    }
}

/// Turn a CDP failure into the most useful error: the session's end reason if it has
/// ended, the browser's exit status if it died under the command, else the CDP error.
fn explain(lease: &Lease<ChromeLauncher>, e: CdpError) -> ChromeError {
    if lease.is_ended() {
        return ChromeError::Session(lease.ended_error());
    }
    if let Some(exit) = lease.process().exit_status() {
        return ChromeError::BrowserExited { exit };
    }
    ChromeError::Cdp(e)
}

impl ChromeSession {
    /// Wrap a lease from a `Pool<ChromeLauncher>`.
    pub fn new(lease: Lease<ChromeLauncher>) -> Self {
        ChromeSession { lease }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.lease.id()
    }

    /// The underlying lease.
    pub fn lease(&self) -> &Lease<ChromeLauncher> {
        &self.lease
    }

    /// Run any CDP work on the browser as one client operation: the session is busy
    /// while `f`'s future runs and activity is stamped when it starts and ends. The
    /// escape hatch for everything the other methods do not cover.
    ///
    /// The browser handle is lent for the operation: a clone kept after `f`'s future
    /// ends is unstamped (like [`ChromeProcess::browser_unstamped`](crate::ChromeProcess::browser_unstamped)).
    pub async fn run<F, Fut, T>(&self, f: F) -> Result<T, ChromeError>
    where
        F: FnOnce(Arc<Browser>) -> Fut,
        Fut: Future<Output = Result<T, CdpError>>,
    {
        let _op = self.lease.begin_op()?;
        let browser = self.lease.process().browser_unstamped().clone();
        f(browser).await.map_err(|e| explain(&self.lease, e))
    }

    /// Open a new page (tab) at `url`.
    pub async fn new_page(&self, url: &str) -> Result<ChromePage, ChromeError> {
        let page = self.run(|b| async move { b.new_page(url).await }).await?;
        Ok(ChromePage {
            page,
            lease: self.lease.clone(),
        })
    }

    /// The browser's open pages.
    pub async fn pages(&self) -> Result<Vec<ChromePage>, ChromeError> {
        let pages = self.run(|b| async move { b.pages().await }).await?;
        Ok(pages
            .into_iter()
            .map(|page| ChromePage {
                page,
                lease: self.lease.clone(),
            })
            .collect())
    }

    /// The browser's product string (e.g. `HeadlessChrome/156.0...`).
    pub async fn version(&self) -> Result<String, ChromeError> {
        self.run(|b| async move { Ok(b.version().await?.product) })
            .await
    }
}

/// A page of a [`ChromeSession`]. Every method is one client operation on the session
/// (busy while in flight, activity stamped).
#[derive(Clone, Debug)]
pub struct ChromePage {
    page: Page,
    lease: Lease<ChromeLauncher>,
}

impl ChromePage {
    /// Run any CDP work on this page as one client operation: the session is busy while
    /// `f`'s future runs and activity is stamped when it starts and ends. A clone of the
    /// page kept after that is unstamped (like [`ChromePage::page_unstamped`]).
    pub async fn run<F, Fut, T>(&self, f: F) -> Result<T, ChromeError>
    where
        F: FnOnce(Page) -> Fut,
        Fut: Future<Output = Result<T, CdpError>>,
    {
        let _op = self.lease.begin_op()?;
        f(self.page.clone())
            .await
            .map_err(|e| explain(&self.lease, e))
    }

    /// Navigate to `url` and wait for the navigation to finish.
    pub async fn goto(&self, url: &str) -> Result<(), ChromeError> {
        self.run(|p| async move { p.goto(url).await.map(|_| ()) })
            .await
    }

    /// The page's HTML.
    pub async fn content(&self) -> Result<String, ChromeError> {
        self.run(|p| async move { p.content().await }).await
    }

    /// Evaluate a JavaScript expression (or function) in the page.
    pub async fn evaluate(&self, expression: &str) -> Result<EvaluationResult, ChromeError> {
        self.run(|p| async move { p.evaluate(expression).await })
            .await
    }

    /// The page's current URL.
    pub async fn url(&self) -> Result<Option<String>, ChromeError> {
        self.run(|p| async move { p.url().await }).await
    }

    /// Close the page.
    pub async fn close(self) -> Result<(), ChromeError> {
        self.run(|p| async move { p.close().await }).await
    }

    /// The raw chromiumoxide page, **unstamped**: commands sent through it neither stamp
    /// activity nor mark the session busy, so the pool may reap, evict or retire the
    /// session while they run. Use [`ChromePage::run`] instead, or hold a
    /// `Lease::begin_op` guard while using it.
    pub fn page_unstamped(&self) -> &Page {
        &self.page
    }
}
