//! What the `leanproxy` subcommands that talk to a running instance share: a
//! small client for the admin API and the terminal formatting of its answers.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::body;
use crate::config::Secret;

/// Why a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL could not be built.
    #[error("bad admin URL {0}")]
    Url(String),
    /// Nothing answered.
    #[error("cannot reach the admin API at {url} ({detail}); is leanproxy running? (--admin URL)")]
    Unreachable {
        /// The admin base URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The answer was not JSON.
    #[error("the admin API answered {status} with a body that is not JSON")]
    NotJson {
        /// HTTP status.
        status: StatusCode,
    },
}

/// Calls the admin API at `base` (e.g. `http://127.0.0.1:7071`) and returns the
/// status and JSON body.
pub async fn admin_call(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&Secret>,
) -> Result<(StatusCode, Value), ClientError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut request = Request::builder().method(method).uri(&url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request
        .body(body::empty())
        .map_err(|e| ClientError::Url(format!("{url}: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<body::Body>();
    let response = client
        .request(request)
        .await
        .map_err(|e| ClientError::Unreachable {
            url: base.to_string(),
            detail: crate::proxy::classify(&e).1,
        })?;
    let status = response.status();
    let bytes: Bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: base.to_string(),
            detail: e.to_string(),
        })?
        .to_bytes();
    let json = serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson { status })?;
    Ok((status, json))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// A table of `/api/reconnects` records, one line each.
pub fn reconnect_table(answer: &Value) -> String {
    let mut out = format!(
        "{:<9} {:<38} {:<38} {:>5} {:>6}  {:<20} {}\n",
        "STATE", "ENTITY", "RECONNECT ID", "HITS", "CALLS", "FIRST SEEN", "SOURCE"
    );
    let records = answer
        .get("reconnects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &records {
        let first_seen: String = text(r, "first_seen").chars().take(19).collect();
        out.push_str(&format!(
            "{:<9} {:<38} {:<38} {:>5} {:>6}  {:<20} {}\n",
            text(r, "state"),
            text(r, "entity_id"),
            text(r, "reconnect_id"),
            r.get("hits").and_then(Value::as_u64).unwrap_or(0),
            r.get("calls_while_pending")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            first_seen,
            text(r, "source"),
        ));
    }
    out.push_str(&format!(
        "{} pending, {} listed\n",
        answer.get("pending").and_then(Value::as_u64).unwrap_or(0),
        records.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_each_record_and_the_pending_count() {
        let answer = serde_json::json!({
            "pending": 1,
            "reconnects": [{"state": "pending", "entity_id": "e-1", "reconnect_id": "r-1",
                            "hits": 4, "calls_while_pending": 3,
                            "first_seen": "2026-11-25T00:35:29.123Z", "source": "upstream"}],
        });
        let table = reconnect_table(&answer);
        let line = table.lines().nth(1).unwrap();
        assert!(line.starts_with("pending") && line.contains("e-1") && line.contains("r-1"));
        assert!(line.contains("2026-11-25T00:35:29 ") || line.contains("2026-11-25T00:35:29"));
        assert!(table.ends_with("1 pending, 1 listed\n"));
    }
}
