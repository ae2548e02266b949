//! The token check: `Authorization: Bearer <token>` or `?token=<token>`, compared in
//! constant time.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::backend::CdpLauncher;
use crate::error::ApiError;

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Whether `given` equals `expected`. Constant time in the contents; only the length
/// can leak (and the expected token is at least 16 characters).
pub fn token_matches(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The token a request carries, from its `Authorization: Bearer` header or its `token`
/// query parameter.
pub(crate) fn request_token(req: &Request) -> Option<String> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
    bearer.or_else(|| {
        Query::<TokenQuery>::try_from_uri(req.uri())
            .ok()
            .and_then(|q| q.0.token)
    })
}

/// Middleware: 401 unless the request carries the configured token (no-op without one).
pub(crate) async fn require_token<L: CdpLauncher>(
    State(app): State<Arc<App<L>>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &app.config.token {
        let ok = request_token(&req).is_some_and(|t| token_matches(&t, expected));
        if !ok {
            if crate::upgrade::is_upgrade(&req) {
                app.metrics.refuse("unauthorized");
            }
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send `Authorization: Bearer <token>` or add `?token=<token>`",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(token_matches("secret-secret-123", "secret-secret-123"));
        assert!(!token_matches("secret-secret-124", "secret-secret-123"));
        assert!(!token_matches("secret-secret-12", "secret-secret-123"));
        assert!(!token_matches("", "secret-secret-123"));
    }
}
