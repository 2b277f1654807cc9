//! One exchange as the request log keeps it (already redacted).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::redact;

/// A captured body (redacted, capped).
#[derive(Debug, Clone, Serialize)]
pub struct Capture {
    /// Its content type.
    pub mime: Option<String>,
    /// The text, when it can be shown.
    pub text: Option<String>,
    /// Bytes seen (the whole body, not only the capture).
    pub size: u64,
    /// Whether the capture stopped at the limit.
    pub truncated: bool,
    /// Why the text is not shown, when it is not.
    pub note: Option<String>,
}

impl Capture {
    /// A capture of `bytes` (the first bytes of a body of `size`), redacted
    /// unless `redact` is off.
    pub fn new(bytes: &[u8], size: u64, truncated: bool, mime: Option<&str>, redact: bool) -> Self {
        let mime_owned = mime.map(str::to_string);
        let kind = mime
            .and_then(|m| m.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let shown = |text: Option<String>, note: Option<String>| Capture {
            mime: mime_owned.clone(),
            text,
            size,
            truncated,
            note,
        };
        if bytes.is_empty() {
            return shown(None, None);
        }
        let Ok(utf8) = std::str::from_utf8(bytes) else {
            return shown(None, Some(format!("{size} bytes of binary data")));
        };
        if !redact {
            return shown(Some(utf8.to_string()), None);
        }
        if kind == "application/json" || kind.ends_with("+json") {
            if truncated {
                return shown(
                    None,
                    Some("truncated JSON is not shown: it cannot be redacted safely".into()),
                );
            }
            return match serde_json::from_str::<serde_json::Value>(utf8) {
                Ok(mut v) => {
                    redact::json(&mut v);
                    shown(Some(v.to_string()), None)
                }
                Err(_) => shown(
                    None,
                    Some("malformed JSON is not shown: it cannot be redacted safely".into()),
                ),
            };
        }
        if kind == "application/x-www-form-urlencoded" {
            return shown(Some(redact::form(utf8)), None);
        }
        if kind.starts_with("text/") {
            return shown(Some(utf8.to_string()), None);
        }
        shown(
            None,
            Some(format!(
                "{size} bytes of {}",
                if kind.is_empty() {
                    "unlabelled data"
                } else {
                    &kind
                }
            )),
        )
    }

    fn weight(&self) -> usize {
        self.text.as_ref().map_or(0, String::len) + 64
    }
}

/// One exchange.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRecord {
    /// The request id (`x-request-id`).
    pub id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Host the app addressed.
    pub host: Option<String>,
    /// Path.
    pub path: String,
    /// Query string, secrets removed.
    pub query: Option<String>,
    /// HTTP version of the app's request.
    pub version: String,
    /// The app's address.
    pub client: Option<String>,
    /// Request headers, secrets removed.
    pub request_headers: Vec<(String, String)>,
    /// Request body.
    pub request_body: Option<Capture>,
    /// HTTP status of the answer.
    pub status: u16,
    /// Response headers, secrets removed.
    pub response_headers: Vec<(String, String)>,
    /// Response body.
    pub response_body: Option<Capture>,
    /// Lean `status` of the answer.
    pub lean_status: Option<String>,
    /// Entity of the request.
    pub entity_id: Option<String>,
    /// Reconnect id the answer carried.
    pub reconnect_id: Option<String>,
    /// The fault rule that produced or changed the answer.
    pub fault: Option<String>,
    /// Lean's `lean-correlation-id`.
    pub lean_correlation_id: Option<String>,
    /// Time to the upstream's response head, when there was one.
    pub upstream_ms: Option<f64>,
    /// Total time, body included.
    pub duration_ms: f64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// False when the app went away before the answer's end.
    pub completed: bool,
    /// leanproxy's diagnosis when the upstream failed.
    pub upstream_error: Option<String>,
}

impl ExchangeRecord {
    /// Approximate memory kept for this record (what the ring's byte cap counts).
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .request_headers
            .iter()
            .chain(&self.response_headers)
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum();
        512 + headers
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + self.request_body.as_ref().map_or(0, Capture::weight)
            + self.response_body.as_ref().map_or(0, Capture::weight)
    }

    /// Drops the body texts (kept when the record alone exceeds the byte cap).
    pub fn without_bodies(mut self) -> Self {
        for capture in [&mut self.request_body, &mut self.response_body]
            .into_iter()
            .flatten()
        {
            if capture.text.take().is_some() {
                capture.note = Some("body dropped: larger than the request log's byte cap".into());
            }
        }
        self
    }
}

/// Lean's top-level `status` from the first bytes of an answer: the value of the
/// first `"status"` key, which in Lean's envelopes comes before any nested one.
pub fn lean_status(body: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(body, b"\"status\"")?;
    let rest = &body[at + 8..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let rest = &rest[colon + 1..];
    let quote = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[quote] != b'"' {
        return None;
    }
    let rest = &rest[quote + 1..];
    let end = rest.iter().position(|b| *b == b'"')?;
    let value = std::str::from_utf8(&rest[..end]).ok()?;
    value
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'_')
        .then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lean_status_is_the_first_status_key() {
        assert_eq!(
            lean_status(br#"{"status":"OK","data":{"accounts":[{"status":"ENABLED"}]}}"#)
                .as_deref(),
            Some("OK")
        );
        assert_eq!(
            lean_status(
                br#"{"results_id":"x","timestamp":"t","status" : "UNKNOWN_ENTITY","message":"m"}"#
            )
            .as_deref(),
            Some("UNKNOWN_ENTITY")
        );
        assert_eq!(lean_status(br#"{"error":"invalid_client"}"#), None);
        assert_eq!(
            lean_status(br#"{"status":"ok"}"#),
            None,
            "not a Lean status"
        );
    }

    #[test]
    fn truncated_json_is_never_shown() {
        let c = Capture::new(
            br#"{"iban":"AE07033123456789012345"#,
            10_000,
            true,
            Some("application/json"),
            true,
        );
        assert!(c.text.is_none());
        assert!(c.note.unwrap().contains("cannot be redacted"));
    }

    #[test]
    fn json_is_redacted_and_text_kept() {
        let c = Capture::new(
            br#"{"full_name":"Mae Zulauf"}"#,
            27,
            false,
            Some("application/json; charset=utf-8"),
            true,
        );
        assert_eq!(c.text.as_deref(), Some(r#"{"full_name":"[redacted]"}"#));
        let raw = Capture::new(
            br#"{"full_name":"Mae Zulauf"}"#,
            27,
            false,
            Some("application/json"),
            false,
        );
        assert!(raw.text.unwrap().contains("Mae"));
    }
}
