//! The dashboard: a page on the admin listener that watches exchanges,
//! reconnects and webhooks live and steers faults and the Mockbank through the
//! admin API. Its files are plain JS, CSS and HTML in `assets/`, embedded in
//! the binary; the page holds no data of its own and asks for the admin token
//! when the API wants one. Also here: what only the dashboard needs of the
//! API (replaying an exchange, the Mockbank's controls, where things listen).

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::Admin;
use crate::body::{self, Body};
use crate::lean::{json_response, ErrorEnvelope};
use crate::log::redact::REDACTED;

const HTML: &str = include_str!("assets/dashboard.html");
const JS: &str = include_str!("assets/dashboard.js");
const CSS: &str = include_str!("assets/dashboard.css");

/// Largest edited request a replay takes.
const MAX_REPLAY: usize = 1 << 20;

/// Request headers a replay does not copy: the proxy sets them again, or
/// they describe the old connection.
const NOT_REPLAYED: [&str; 12] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-leanproxy-replay-of",
];

/// `GET /`.
pub(super) fn page() -> Response<Body> {
    let mut r = file(HTML, "text/html; charset=utf-8");
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    r
}

/// `GET /ui/{file}`.
pub(super) fn asset(name: &str) -> Response<Body> {
    match name {
        "dashboard.js" => file(JS, "text/javascript; charset=utf-8"),
        "dashboard.css" => file(CSS, "text/css; charset=utf-8"),
        _ => ErrorEnvelope::new("NOT_FOUND", format!("no dashboard file {name}"))
            .into_response(StatusCode::NOT_FOUND),
    }
}

fn file(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

impl Admin {
    /// `GET /api/info`.
    pub(super) fn info(&self) -> Response<Body> {
        json_response(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "proxy": self.inner.proxy.as_ref().map(|u| u.to_string().trim_end_matches('/').to_string()),
                "mockbank": self.inner.mockbank.as_ref().map(|(_, url)| url.trim_end_matches('/').to_string()),
                "token_required": self.inner.expected.is_some(),
            }),
        )
    }

    /// `POST /api/requests/{id}/replay`: the kept request, as edited, sent
    /// through the proxy again. It is recorded as a new exchange (its
    /// `x-leanproxy-replay-of` names the old one); the answer gives its id.
    pub(super) async fn replay_request(&self, id: &str, req: Request<Body>) -> Response<Body> {
        let Some(proxy) = self.inner.proxy.clone() else {
            return ErrorEnvelope::new("NO_PROXY", "this admin listener serves no proxy")
                .into_response(StatusCode::CONFLICT);
        };
        let Some(record) = self.inner.telemetry.ring().get(id) else {
            return ErrorEnvelope::new("UNKNOWN_REQUEST", format!("no exchange {id} is kept"))
                .into_response(StatusCode::NOT_FOUND);
        };
        let edit: Value = match body::read_limited(req.into_body(), MAX_REPLAY).await {
            Ok(b) if b.is_empty() => json!({}),
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(v) => v,
                Err(e) => return invalid(format!("the edit is not JSON: {e}")),
            },
            Err(e) => return invalid(format!("the edit: {e}")),
        };
        let text = |k: &str| edit.get(k).and_then(Value::as_str).map(str::to_string);
        let method = match text("method").map(|m| Method::from_bytes(m.as_bytes())) {
            None => record.method.clone(),
            Some(Ok(m)) => m,
            Some(Err(_)) => return invalid("method: not an HTTP method".into()),
        };
        let path = text("path").unwrap_or_else(|| match &record.query {
            Some(q) => format!("{}?{q}", record.path),
            None => record.path.clone(),
        });
        if !path.starts_with('/') {
            return invalid("path: must start with /".into());
        }
        let headers: Vec<(String, String)> = match edit.get("headers") {
            None | Some(Value::Null) => record.request_headers.pairs(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            Some(_) => return invalid("headers: give an object of names and values".into()),
        };
        let body_text = match edit.get("body") {
            Some(Value::String(b)) => Some(b.clone()),
            Some(Value::Null) | None => record.request_body.as_ref().and_then(|c| c.render().text),
            Some(_) => return invalid("body: give the body as a string".into()),
        };
        let new_id = uuid::Uuid::new_v4().to_string();
        let mut out = Request::builder()
            .method(method)
            .uri(format!("{}{path}", proxy.to_string().trim_end_matches('/')))
            .header("x-request-id", &new_id)
            .header("x-leanproxy-replay-of", id);
        for (name, value) in &headers {
            let lower = name.to_ascii_lowercase();
            if NOT_REPLAYED.contains(&lower.as_str()) || value == REDACTED {
                continue;
            }
            out = out.header(name.as_str(), value.as_str());
        }
        let out = match out.body(body::full(Bytes::from(body_text.unwrap_or_default()))) {
            Ok(r) => r,
            Err(e) => return invalid(format!("the request cannot be built: {e}")),
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Body>();
        match client.request(out).await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                // Read it all, so the exchange is complete (and recorded)
                // before the dashboard asks for it.
                let _ = http_body_util::BodyExt::collect(answer.into_body()).await;
                tracing::info!(target: "leanproxy::admin", replay_of = %id, id = %new_id, "exchange replayed");
                json_response(
                    StatusCode::CREATED,
                    &json!({"id": new_id, "replay_of": id, "status": status}),
                )
            }
            Err(e) => ErrorEnvelope::new("REPLAY_FAILED", format!("the proxy did not answer: {e}"))
                .into_response(StatusCode::BAD_GATEWAY),
        }
    }

    /// `/api/mockbank/{rest}`: the embedded Mockbank's `/_mockbank/{rest}`,
    /// called in-process (this request already passed the admin's guard).
    /// The future owns what it needs: it borrows nothing across the call.
    pub(super) fn to_mockbank(
        &self,
        rest: &str,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        let controls = self.inner.mockbank.as_ref().map(|(c, _)| c.clone());
        let path = format!("/_mockbank/{rest}");
        async move {
            let Some(controls) = controls else {
                return ErrorEnvelope::new("NO_MOCKBANK", "leanproxy runs no embedded Mockbank")
                    .into_response(StatusCode::NOT_FOUND);
            };
            if req.method() == Method::POST {
                if let Some(refused) = super::guard::require_json(req.headers()) {
                    return refused;
                }
            }
            let (parts, body) = req.into_parts();
            let query = parts
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let inner = Request::builder()
                .method(parts.method)
                .uri(format!("{path}{query}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
            match inner {
                Ok(inner) => {
                    let mut controls = controls;
                    if let Err(never) =
                        std::future::poll_fn(|cx| tower::Service::poll_ready(&mut controls, cx))
                            .await
                    {
                        match never {}
                    }
                    match tower::Service::call(&mut controls, inner).await {
                        Ok(answer) => answer,
                        Err(never) => match never {},
                    }
                }
                Err(e) => invalid(format!("path: {e}")),
            }
        }
    }
}

fn invalid(message: String) -> Response<Body> {
    ErrorEnvelope::new("INVALID_PARAMETERS", message).into_response(StatusCode::BAD_REQUEST)
}
