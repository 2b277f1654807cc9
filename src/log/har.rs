//! HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>) of the request log.

use std::sync::Arc;

use serde_json::{json, Value};

use super::record::{Capture, ExchangeRecord, Headers};

fn headers(headers: &Headers) -> Vec<Value> {
    headers
        .pairs()
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect()
}

fn status_text(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

fn size(capture: &Option<Capture>) -> i64 {
    capture.as_ref().map_or(0, |c| c.size() as i64)
}

/// The HAR document of `records` (oldest first in the file).
pub fn document(records: &[Arc<ExchangeRecord>]) -> Value {
    let entries: Vec<Value> = records
        .iter()
        .rev()
        .map(|r| {
            let host = r.host.as_deref().unwrap_or("leanproxy");
            let url = match &r.query {
                Some(q) => format!("http://{host}{}?{q}", r.path),
                None => format!("http://{host}{}", r.path),
            };
            let query: Vec<Value> = r
                .query
                .as_deref()
                .map(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| json!({"name": k, "value": v}))
                        .collect()
                })
                .unwrap_or_default();
            let wait = r.upstream_ms.unwrap_or(r.duration_ms).max(0.0);
            let mut request = json!({
                "method": r.method.as_str(),
                "url": url,
                "httpVersion": r.version,
                "cookies": [],
                "headers": headers(&r.request_headers),
                "queryString": query,
                "headersSize": -1,
                "bodySize": size(&r.request_body),
            });
            if let Some(body) = &r.request_body {
                let shown = body.render();
                request["postData"] = json!({
                    "mimeType": body.mime().unwrap_or_default(),
                    "text": shown.text.or(shown.note).unwrap_or_default(),
                });
            }
            let mut content = json!({
                "size": size(&r.response_body),
                "mimeType": r.response_body.as_ref().and_then(|c| c.mime()).unwrap_or_default(),
            });
            if let Some(text) = r.response_body.as_ref().and_then(|c| {
                let shown = c.render();
                shown.text.or(shown.note)
            }) {
                content["text"] = json!(text);
            }
            json!({
                "startedDateTime": r.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "time": r.duration_ms,
                "request": request,
                "response": {
                    "status": r.status,
                    "statusText": status_text(r.status),
                    "httpVersion": r.version,
                    "cookies": [],
                    "headers": headers(&r.response_headers),
                    "content": content,
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": size(&r.response_body),
                },
                "cache": {},
                "timings": {"send": 0, "wait": wait, "receive": (r.duration_ms - wait).max(0.0)},
                "_requestId": r.id.to_str().unwrap_or_default(),
                "_leanStatus": r.lean_status,
                "_fault": r.fault,
            })
        })
        .collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "leanproxy", "version": env!("CARGO_PKG_VERSION")},
            "entries": entries,
        }
    })
}
