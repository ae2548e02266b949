//! [`ServerConfig`]: what the server adds on top of the pool's own
//! [`PoolConfig`](browserpool::PoolConfig).

use std::time::Duration;

use crate::error::ConfigError;

/// The server's own settings. Build it with [`ServerConfig::default()`] and struct
/// update syntax; [`Server::new`](crate::Server::new) validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Base URL that `ws_url`s and `/json/version` point at, such as
    /// `ws://browserpool-0.browserpool:9222` behind a proxy or in Kubernetes (`http://`
    /// and `https://` are turned into `ws://` and `wss://`). `None`: `ws://` plus the
    /// request's `Host` header.
    pub public_url: Option<String>,
    /// When set, every request (HTTP and WebSocket) except `/healthz` and `/readyz` must
    /// carry `Authorization: Bearer <token>` or `?token=<token>`; others get 401.
    pub token: Option<String>,
    /// How long a session survives after the last connection attached to it drops,
    /// so that its client can reconnect (`ws://HOST/devtools/browser/<id>`). Default 60 s.
    pub release_grace: Duration,
    /// On SIGTERM/SIGINT, how long to let sessions finish before the pool is shut down.
    /// Default 30 s.
    pub drain_timeout: Duration,
    /// Bound on WebSocket connections open at once; one more is refused with 429.
    /// Default 256.
    pub max_connections: usize,
    /// Largest request body and largest client WebSocket message, in bytes. A larger
    /// body gets 413; a larger WebSocket message closes the connection with code 1009
    /// ("message too big", the WebSocket form of 413). Default 64 MiB.
    pub max_message_size: usize,
    /// After this many launch failures in a row, `/readyz` answers 503 until a launch
    /// succeeds again (the browser is probably broken on this host). Default 3.
    pub unready_after_failed_launches: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            public_url: None,
            token: None,
            release_grace: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_message_size: 64 << 20,
            unready_after_failed_launches: 3,
        }
    }
}

impl ServerConfig {
    /// Check every field; the first problem is returned with its flag name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            normalize_public_url(url)?;
        }
        if let Some(t) = &self.token {
            if t.is_empty() {
                return Err(ConfigError::new(
                    "token",
                    "the token is empty: give a secret of at least 16 characters, or none",
                ));
            }
            if t.len() < 16 {
                return Err(ConfigError::new(
                    "token",
                    "the token is shorter than 16 characters: use a longer random secret",
                ));
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::new(
                    "token",
                    "the token contains whitespace or control characters",
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("max-connections", "must be at least 1"));
        }
        if self.max_message_size < 1024 {
            return Err(ConfigError::new(
                "max-message-size",
                "must be at least 1024 bytes (CDP messages are often tens of kilobytes)",
            ));
        }
        if self.unready_after_failed_launches == 0 {
            return Err(ConfigError::new(
                "unready-after-failed-launches",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The WebSocket base URL (no trailing slash) from `public_url`, if set.
    pub fn public_ws_base(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .and_then(|u| normalize_public_url(u).ok())
    }
}

/// `ws://host[:port][/prefix]` without a trailing slash, from a `ws`, `wss`, `http` or
/// `https` URL.
pub fn normalize_public_url(url: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        ConfigError::new(
            "public-url",
            format!("`{url}` is not a URL: write it like ws://host:9222"),
        )
    })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(ConfigError::new(
                "public-url",
                format!("scheme `{other}` is not ws, wss, http or https"),
            ))
        }
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(ConfigError::new(
            "public-url",
            format!("`{url}` needs a host and no query or fragment: write it like ws://host:9222"),
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn public_urls_are_normalized_to_websocket_bases() {
        assert_eq!(normalize_public_url("http://a:1/").unwrap(), "ws://a:1");
        assert_eq!(normalize_public_url("HTTPS://a/x/").unwrap(), "wss://a/x");
        assert_eq!(normalize_public_url("ws://a:9222").unwrap(), "ws://a:9222");
        assert_eq!(
            normalize_public_url("a:9222").unwrap_err().flag,
            "public-url"
        );
        assert_eq!(
            normalize_public_url("ftp://a").unwrap_err().flag,
            "public-url"
        );
        assert_eq!(
            normalize_public_url("ws://a/?x").unwrap_err().flag,
            "public-url"
        );
    }

    #[test]
    fn validation_names_the_flag() {
        let bad = |c: ServerConfig| c.validate().unwrap_err().flag;
        let d = ServerConfig::default();
        assert!(d.validate().is_ok());
        assert_eq!(
            bad(ServerConfig {
                token: Some("short".into()),
                ..d.clone()
            }),
            "token"
        );
        assert_eq!(
            bad(ServerConfig {
                max_connections: 0,
                ..d.clone()
            }),
            "max-connections"
        );
        assert_eq!(
            bad(ServerConfig {
                max_message_size: 10,
                ..d.clone()
            }),
            "max-message-size"
        );
        assert_eq!(
            bad(ServerConfig {
                public_url: Some("nope".into()),
                ..d
            }),
            "public-url"
        );
    }
}
