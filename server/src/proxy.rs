//! The CDP WebSocket proxy: one task per client connection, forwarding frames both ways
//! between the client and its session's browser.
//!
//! It reads only the `id` and `method` of client messages and the `id` of browser
//! responses:
//! - every client message stamps activity; a command (a message with an `id`) keeps the
//!   session busy until the browser's response with that id passes back, so a long
//!   `Runtime.evaluate` is never reaped or evicted under its client;
//! - browser events are forwarded but are not activity;
//! - `Browser.close` is answered here and turned into a destroy of the session (the
//!   pool's teardown: tree killed, directory removed), since a pooled browser must not
//!   exit behind the pool's back.
//!
//! When the session ends for any other reason (idle, evicted, retired, crashed, shutdown)
//! the browser's connection closes and the client gets a close frame with the reason.

use std::sync::Arc;

use browserpool::Lease;
use futures::{SinkExt, StreamExt};
use rustc_hash::FxHashMap;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::app::App;
use crate::attach::{AttachGuard, ConnGuard};
use crate::backend::CdpLauncher;
use crate::cdp;
use crate::upgrade::{ClientSocket, Upgrade};

/// Commands awaiting a response on one connection, beyond which the client is cut off
/// (a client that never reads its answers must not grow the server without bound).
const MAX_PENDING: usize = 100_000;

/// Everything a proxied connection holds; dropping it detaches the connection (and
/// releases the session's owner with the grace period if it was the last one).
pub(crate) struct Link<L: CdpLauncher> {
    pub(crate) app: Arc<App<L>>,
    pub(crate) lease: Lease<L>,
    pub(crate) attach: AttachGuard<L>,
    pub(crate) conn: ConnGuard,
}

enum End {
    ClientClosed,
    ClientGone,
    TooBig(usize),
    TooManyPending,
    UpstreamGone,
    Destroyed,
    ServerClosing,
}

fn close_frame(code: CloseCode, reason: &str) -> Message {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

/// Run one proxied connection until either side closes or the session ends.
pub(crate) async fn run<L: CdpLauncher>(link: Link<L>, upgrade: Upgrade) {
    let app = link.app.clone();
    let id = link.lease.id();
    let client = match upgrade.socket(app.config.max_message_size).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(session = %id, error = %e, "WebSocket upgrade failed");
            return;
        }
    };
    let url = L::cdp_endpoint(link.lease.process()).to_owned();
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let upstream = match tokio_tungstenite::connect_async_with_config(
        url.as_str(),
        Some(config),
        true,
    )
    .await
    {
        Ok((s, _)) => s,
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "cannot reach the session's browser");
            let mut client = client;
            let reason = match link.lease.check() {
                Err(e) => e.to_string(),
                Ok(()) => format!("cannot reach the browser of session {id}: {e}"),
            };
            let _ = client.send(close_frame(CloseCode::Error, &reason)).await;
            return;
        }
    };
    pump(link, client, upstream).await;
}

async fn pump<L: CdpLauncher, U>(link: Link<L>, client: ClientSocket, upstream: U)
where
    U: futures::Stream<Item = Result<Message, WsError>>
        + futures::Sink<Message, Error = WsError>
        + Unpin,
{
    let Link {
        app,
        lease,
        attach,
        conn,
    } = link;
    let id = lease.id();
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let from_client = app
        .metrics
        .cdp_messages
        .get_or_create(&[("direction", "client")])
        .clone();
    let from_browser = app
        .metrics
        .cdp_messages
        .get_or_create(&[("direction", "browser")])
        .clone();
    let mut closing = app.closing.subscribe();
    // Command id -> (op guard keeping the session busy, commands with that id in flight).
    let mut pending: FxHashMap<i64, (browserpool::OwnedOpGuard<L>, u32)> = FxHashMap::default();
    let end = if *closing.borrow_and_update() {
        End::ServerClosing
    } else {
        loop {
            tokio::select! {
                m = c_rx.next() => match m {
                    Some(Ok(Message::Text(text))) => {
                        from_client.inc();
                        let head = cdp::client_head(text.as_str());
                        match head.as_ref().and_then(|h| h.id.map(|i| (i, h.method.as_deref()))) {
                            Some((cmd, Some("Browser.close"))) => {
                                drop(pending);
                                let _ = c_tx.send(Message::text(cdp::empty_result(cmd))).await;
                                if let Err(e) = app.destroy(id).await {
                                    tracing::debug!(session = %id, error = %e, "Browser.close on an ended session");
                                }
                                break End::Destroyed;
                            }
                            Some((cmd, _)) => {
                                if pending.len() >= MAX_PENDING {
                                    break End::TooManyPending;
                                }
                                match pending.get_mut(&cmd) {
                                    Some((_, n)) => {
                                        lease.touch();
                                        *n += 1;
                                    }
                                    None => match lease.begin_op_owned() {
                                        Ok(g) => {
                                            pending.insert(cmd, (g, 1));
                                        }
                                        Err(_) => break End::UpstreamGone,
                                    },
                                }
                            }
                            None => lease.touch(),
                        }
                        if u_tx.send(Message::Text(text)).await.is_err() {
                            break End::UpstreamGone;
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        from_client.inc();
                        lease.touch();
                        if u_tx.send(Message::Binary(b)).await.is_err() {
                            break End::UpstreamGone;
                        }
                    }
                    // Pings are answered by the WebSocket layer; they are not activity.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break End::ClientClosed,
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                        break End::TooBig(size)
                    }
                    Some(Err(_)) => break End::ClientGone,
                },
                m = u_rx.next() => match m {
                    Some(Ok(Message::Text(text))) => {
                        from_browser.inc();
                        if !pending.is_empty() {
                            if let Some(rid) = cdp::response_id(text.as_str()) {
                                if let Some((_, n)) = pending.get_mut(&rid) {
                                    *n -= 1;
                                    if *n == 0 {
                                        pending.remove(&rid);
                                    }
                                }
                            }
                        }
                        if c_tx.send(Message::Text(text)).await.is_err() {
                            break End::ClientGone;
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        from_browser.inc();
                        if c_tx.send(Message::Binary(b)).await.is_err() {
                            break End::ClientGone;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break End::UpstreamGone,
                },
                _ = closing.changed() => break End::ServerClosing,
            }
        }
    };
    let limit = app.config.max_message_size;
    let goodbye = match end {
        End::ClientClosed | End::ClientGone => None,
        End::TooBig(size) => Some(close_frame(
            CloseCode::Size,
            &format!(
                "message of {size} bytes is over the limit of {limit} bytes (--max-message-size)"
            ),
        )),
        End::TooManyPending => Some(close_frame(
            CloseCode::Policy,
            &format!("more than {MAX_PENDING} commands awaiting responses"),
        )),
        End::Destroyed => Some(close_frame(
            CloseCode::Normal,
            &format!("session {id} destroyed"),
        )),
        End::ServerClosing => Some(close_frame(CloseCode::Away, "server shutting down")),
        End::UpstreamGone => Some(match lease.check() {
            Err(e) => close_frame(CloseCode::Away, &e.to_string()),
            Ok(()) => close_frame(
                CloseCode::Error,
                &format!("the DevTools connection of session {id} closed"),
            ),
        }),
    };
    let bye = async {
        if let Some(frame) = goodbye {
            let _ = c_tx.send(frame).await;
        }
        let _ = c_tx.close().await;
        let _ = u_tx.close().await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bye).await;
    drop(attach);
    drop(conn);
}
