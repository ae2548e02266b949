//! The only parts of a CDP frame the proxy reads: the `id` and `method` of a client's
//! message, and the `id` of a browser's response. Everything else passes through as the
//! bytes that arrived.

use std::borrow::Cow;

use serde::Deserialize;

/// The head of a client message.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ClientHead<'a> {
    /// The command id; a response with the same id ends the command.
    #[serde(default)]
    pub id: Option<i64>,
    /// The command, such as `Page.navigate`.
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
}

/// Read `id` and `method` from a client message (other fields are skipped, not built).
/// `None` if the text is not a JSON object with those fields well-typed: the proxy then
/// forwards it untouched and the browser answers with its own error.
pub fn client_head(text: &str) -> Option<ClientHead<'_>> {
    serde_json::from_str(text).ok()
}

/// The `id` of a browser message if it is a command response, `None` for an event.
///
/// Chromium writes responses as `{"id":N,...}` and events as `{"method":...}`, so the
/// common cases cost a prefix check; anything else is parsed in full.
pub fn response_id(text: &str) -> Option<i64> {
    if let Some(rest) = text.strip_prefix("{\"id\":") {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        if let Ok(id) = rest[..end].parse() {
            return Some(id);
        }
    }
    if text.starts_with("{\"method\":") {
        return None;
    }
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        id: Option<i64>,
    }
    serde_json::from_str::<Head>(text).ok().and_then(|h| h.id)
}

/// The response the proxy sends itself for a command it handles (`Browser.close`).
pub fn empty_result(id: i64) -> String {
    format!("{{\"id\":{id},\"result\":{{}}}}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_heads_read_id_and_method_wherever_they_are() {
        let h = client_head(
            r#"{"method":"Page.navigate","params":{"url":"data:,x"},"id":7,"sessionId":"S"}"#,
        )
        .unwrap();
        assert_eq!(h.id, Some(7));
        assert_eq!(h.method.as_deref(), Some("Page.navigate"));
        let h = client_head(r#"{"id":1,"method":"Browser.cl\u006fse"}"#).unwrap();
        assert_eq!(h.method.as_deref(), Some("Browser.close"));
        assert_eq!(client_head("{}").unwrap(), ClientHead::default());
        assert!(client_head("not json").is_none());
        assert!(client_head(r#"{"id":"x"}"#).is_none());
    }

    #[test]
    fn response_ids_fast_path_and_fallback() {
        assert_eq!(response_id(r#"{"id":42,"result":{}}"#), Some(42));
        assert_eq!(response_id(r#"{"id":3}"#), Some(3));
        assert_eq!(
            response_id(r#"{"method":"Page.loadEventFired","params":{"id":9}}"#),
            None
        );
        assert_eq!(
            response_id(r#"{"result":{},"id":5,"sessionId":"S"}"#),
            Some(5)
        );
        assert_eq!(response_id(r#"{"error":{"code":-32601},"id":6}"#), Some(6));
        assert_eq!(response_id(r#"{"params":{},"method":"X"}"#), None);
        assert_eq!(response_id("garbage"), None);
        assert_eq!(empty_result(9), r#"{"id":9,"result":{}}"#);
        assert_eq!(response_id(&empty_result(9)), Some(9));
    }
}
