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
    admin_send(base, method, path, token, None).await
}

/// Like [`admin_call`], with a JSON body.
pub async fn admin_send(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&Secret>,
    json: Option<&Value>,
) -> Result<(StatusCode, Value), ClientError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut request = Request::builder().method(method).uri(&url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let body = match json {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            body::full(v.to_string())
        }
        None => body::empty(),
    };
    let request = request
        .body(body)
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

/// A string field for the terminal: control characters (escape sequences from
/// unauthenticated webhooks, say) are replaced.
fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
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

/// A table of `/api/faults` rules, one line each.
pub fn fault_table(answer: &Value) -> String {
    let mut out = format!(
        "{:<22} {:<20} {:>6} {:>8} {:>8} {:>9}  {}\n",
        "ID", "ACTION", "P", "MATCHED", "APPLIED", "REMAINING", "MATCH"
    );
    let rules = answer
        .get("faults")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &rules {
        let matcher = r
            .get("match")
            .filter(|m| !m.is_null())
            .map_or_else(|| "any request".to_string(), Value::to_string);
        let number = |k: &str| {
            r.get(k)
                .and_then(Value::as_u64)
                .map_or("-".to_string(), |n| n.to_string())
        };
        let flag = |k: &str| r.get(k).and_then(Value::as_bool).unwrap_or(false);
        let state = match (flag("retired"), flag("paused")) {
            (true, _) => "  (retired)",
            (false, true) => "  (paused)",
            (false, false) => "",
        };
        out.push_str(&format!(
            "{:<22} {:<20} {:>6} {:>8} {:>8} {:>9}  {}{}\n",
            text(r, "id"),
            text(r, "action"),
            r.get("probability")
                .map_or("1".to_string(), Value::to_string),
            number("matched"),
            number("applied"),
            number("remaining"),
            matcher,
            state,
        ));
    }
    out.push_str(&format!("{} rules\n", rules.len()));
    out
}

/// One server-sent event of `/api/events` as a compact line, colored with ANSI
/// escapes when `color` is on. `None` for comments and unknown kinds.
pub fn tail_line(event: &str, data: &Value, color: bool) -> Option<String> {
    use anstyle::{AnsiColor, Style};
    let paint = |style: Style, text: &str| {
        if color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    };
    let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    let time = chrono::Utc::now().format("%H:%M:%S%.3f").to_string();
    let short = |v: &Value, key: &str| -> Option<String> {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.chars()
                    .take(8)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            })
    };
    let line = match event {
        "exchange" => {
            let status = data.get("status").and_then(Value::as_u64).unwrap_or(0);
            let status_style = match status {
                500.. => fg(AnsiColor::Red).bold(),
                400..=499 => fg(AnsiColor::Yellow),
                _ => fg(AnsiColor::Green),
            };
            let lean = text(data, "lean_status");
            let lean = if lean == "-" {
                String::new()
            } else {
                lean.to_string()
            };
            let lean_style = match lean.as_str() {
                "RECONNECT_REQUIRED" => fg(AnsiColor::Magenta).bold(),
                "FAILED" => fg(AnsiColor::Red),
                "OK" | "" => Style::new(),
                _ => fg(AnsiColor::Yellow),
            };
            let mut line = format!(
                "{time}  {:<6} {:<48} {} {:<18} {:>8.1}ms",
                text(data, "method"),
                text(data, "path"),
                paint(status_style, &status.to_string()),
                paint(lean_style, &lean),
                data.get("duration_ms")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
            );
            if let Some(e) = short(data, "entity_id") {
                line.push_str(&format!("  entity={e}"));
            }
            if let Some(r) = short(data, "reconnect_id") {
                line.push_str(&format!("  reconnect={r}"));
            }
            if let Some(f) = data.get("fault").and_then(Value::as_str) {
                line.push_str(&format!(
                    "  {}",
                    paint(fg(AnsiColor::Red), &format!("fault={f}"))
                ));
            }
            line
        }
        "reconnect_new" => format!(
            "{time}  {} entity={} reconnect_id={} ({})",
            paint(fg(AnsiColor::Magenta).bold(), "RECONNECT"),
            text(data, "entity_id"),
            text(data, "reconnect_id"),
            text(data, "source")
        ),
        "reconnect_resolved" => format!(
            "{time}  {} entity={} by {}",
            paint(fg(AnsiColor::Green).bold(), "RESOLVED"),
            text(data, "entity_id"),
            text(data, "resolved_by")
        ),
        "fault_hit" => format!(
            "{time}  {} {} {} {}",
            paint(fg(AnsiColor::Red).bold(), "FAULT"),
            text(data, "rule"),
            text(data, "action"),
            text(data, "path")
        ),
        "webhook" => format!(
            "{time}  {} {} signature={} {}",
            paint(fg(AnsiColor::Cyan).bold(), "WEBHOOK"),
            text(data, "type"),
            text(data, "signature"),
            text(data, "outcome")
        ),
        _ => return None,
    };
    Some(line)
}

/// Follows `/api/events` at `base`, calling `print` with each formatted line
/// until the stream ends.
pub async fn tail(
    base: &str,
    token: Option<&Secret>,
    color: bool,
    mut print: impl FnMut(String),
) -> Result<(), ClientError> {
    let url = format!("{}/api/events", base.trim_end_matches('/'));
    let mut request = Request::builder().method(Method::GET).uri(&url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request
        .body(body::empty())
        .map_err(|e| ClientError::Url(format!("{url}: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<body::Body>();
    let unreachable = |detail: String| ClientError::Unreachable {
        url: base.to_string(),
        detail,
    };
    let response = client
        .request(request)
        .await
        .map_err(|e| unreachable(crate::proxy::classify(&e).1))?;
    if !response.status().is_success() {
        return Err(ClientError::NotJson {
            status: response.status(),
        });
    }
    let mut body = response.into_body();
    let mut buffer = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreachable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = "";
            let mut payload = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    payload.push_str(v);
                }
            }
            if let Ok(value) = serde_json::from_str::<Value>(&payload) {
                if let Some(line) = tail_line(event, &value, color) {
                    print(line);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_are_compact_and_plain_without_color() {
        let ex = serde_json::json!({"method": "POST", "path": "/data/v1/accounts", "status": 200,
            "lean_status": "RECONNECT_REQUIRED", "duration_ms": 12.34, "entity_id": "0123456789abcdef",
            "reconnect_id": "feedbeef-0000"});
        let line = tail_line("exchange", &ex, false).unwrap();
        assert!(
            line.contains("POST") && line.contains("RECONNECT_REQUIRED") && line.contains("12.3ms"),
            "{line}"
        );
        assert!(
            line.contains("entity=01234567") && !line.contains('\u{1b}'),
            "{line}"
        );
        let colored = tail_line("exchange", &ex, true).unwrap();
        assert!(colored.contains('\u{1b}'));
        assert!(tail_line(
            "reconnect_new",
            &serde_json::json!({"entity_id": "e"}),
            false
        )
        .unwrap()
        .contains("RECONNECT"));
        assert!(tail_line("nonsense", &ex, false).is_none());
    }

    #[test]
    fn tail_lines_carry_no_terminal_escapes_from_the_wire() {
        let hook = serde_json::json!({"type": "entity.created\u{1b}[2J", "signature": "valid", "outcome": "accepted"});
        let line = tail_line("webhook", &hook, false).unwrap();
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }

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
