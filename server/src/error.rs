//! Errors: what an HTTP caller gets back (`{ "error": ..., "session": ... }`) and what
//! refuses a configuration.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use browserpool::{AcquireError, SessionError, SessionId};

/// An HTTP error answer. Its body is always JSON: `{"error": "<what happened and what to
/// do>", "session": "s17" | null}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What happened, to which session, and what the caller can do.
    pub message: String,
    /// The session concerned, if any.
    pub session: Option<SessionId>,
    /// Seconds to put in a `Retry-After` header (for 429 and 503).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with `status` and `message`, about no particular session.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            session: None,
            retry_after: None,
        }
    }

    /// The same error, about `id`.
    pub fn session(mut self, id: SessionId) -> Self {
        self.session = Some(id);
        self
    }

    /// The same error, asking the caller to retry after `d`.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 503 while draining: this server takes no new sessions.
    pub fn draining() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is draining (shutting down): it takes no new sessions; connect to another instance",
        )
        .retry_after(Duration::from_secs(1))
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.message,
            "session": self.session.map(|s| s.to_string()),
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<SessionError> for ApiError {
    /// 404 for an id this pool never issued (or forgot), 410 Gone with the reason for a
    /// session that has ended, 504 when a destroy waited the whole kill budget and the
    /// tree is still being killed in the background, 503 when the pool is unhealthy.
    fn from(e: SessionError) -> Self {
        let (status, id) = match &e {
            SessionError::Unknown { id } => (StatusCode::NOT_FOUND, *id),
            SessionError::Ended { id, .. } => (StatusCode::GONE, *id),
            // The tree is still being killed in the background; the caller may retry.
            SessionError::TeardownPending { id, .. } => (StatusCode::GATEWAY_TIMEOUT, *id),
            SessionError::PoolUnhealthy { id, .. } => (StatusCode::SERVICE_UNAVAILABLE, *id),
            // A kind this server does not know yet (the enum is non-exhaustive).
            _ => return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        ApiError::new(status, e.to_string()).session(id)
    }
}

impl From<AcquireError> for ApiError {
    /// 429 + Retry-After when the pool is full (`Reject`) or its queue is full; 503 +
    /// Retry-After when a wait timed out or the pool is shutting down; 503 without
    /// Retry-After when the pool is unhealthy (it will not recover; restart); 502 when the
    /// browser could not be launched or died at once.
    fn from(e: AcquireError) -> Self {
        let one = Duration::from_secs(1);
        match &e {
            AcquireError::AtCapacity { .. } | AcquireError::QueueFull { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry_after(one)
            }
            AcquireError::WaitTimedOut { .. } | AcquireError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(one)
            }
            AcquireError::Unhealthy { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            AcquireError::LaunchFailed { id, .. } | AcquireError::EndedBeforeHandout { id, .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()).session(*id)
            }
            // A kind this server does not know yet (the enum is non-exhaustive).
            _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

/// A server configuration that cannot work; names the setting (as its command-line flag)
/// and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for --{flag}: {message}")]
pub struct ConfigError {
    /// The flag, without the leading dashes (`idle-timeout`).
    pub flag: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    /// An error about `flag`.
    pub fn new(flag: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            flag,
            message: message.into(),
        }
    }
}
