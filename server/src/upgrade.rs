//! The WebSocket handshake on top of hyper's connection upgrade, so both sides of the
//! proxy are plain `tokio-tungstenite` streams and frames pass through without being
//! converted or re-validated.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::error::ApiError;

/// The client side of a proxied connection.
pub(crate) type ClientSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade(req: &Request) -> bool {
    has_token(req.headers(), header::UPGRADE, "websocket")
}

/// A checked upgrade request: the 101 answer to send and the future that yields the
/// connection once it has been sent.
pub(crate) struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// Check the handshake headers (RFC 6455 §4.2.1) and take the connection.
    pub(crate) fn from_request(req: &mut Request) -> Result<Self, ApiError> {
        let h = req.headers();
        if req.method() != Method::GET {
            return Err(ApiError::bad_request("a WebSocket upgrade must use GET"));
        }
        if !has_token(h, header::CONNECTION, "upgrade") || !is_upgrade(req) {
            return Err(ApiError::bad_request(
                "expected `Connection: upgrade` and `Upgrade: websocket`",
            ));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(ApiError::bad_request(
                "only WebSocket version 13 is supported",
            ));
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
        };
        let accept = derive_accept_key(key.as_bytes());
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err(ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded (HTTP/1.1 is required)",
            ));
        };
        Ok(Upgrade { accept, on_upgrade })
    }

    /// The `101 Switching Protocols` response.
    pub(crate) fn response(&self) -> Response {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }

    /// Wait until the 101 has been sent and the connection is ours.
    pub(crate) async fn socket(
        self,
        max_message_size: usize,
    ) -> Result<ClientSocket, hyper::Error> {
        let upgraded = self.on_upgrade.await?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message_size))
            .max_frame_size(Some(max_message_size));
        Ok(
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await,
        )
    }
}
