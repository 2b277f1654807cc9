//! Fault rules on the admin API.

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::{Admin, FaultList, Removed};
use crate::body::{self, Body};
use crate::fault::{parse_rule, parse_spec, Edit, Edited, Placement, RuleError};
use crate::lean::{json_response, ErrorEnvelope};

/// Largest rule body accepted.
const MAX_RULE: usize = 64 * 1024;

/// A change the shared rule set on Redis could not take now: 503.
fn unreachable(e: &RuleError) -> Response<Body> {
    ErrorEnvelope::new("STATE_UNAVAILABLE", e.to_string())
        .with_metadata(json!({"field": e.field}))
        .into_response(StatusCode::SERVICE_UNAVAILABLE)
}

fn unknown_fault(id: &str) -> Response<Body> {
    ErrorEnvelope::new("UNKNOWN_FAULT", format!("no fault rule `{id}`"))
        .into_response(StatusCode::NOT_FOUND)
}

/// Where `POST /api/faults` puts the rule: `?position=N` (0 is first) or
/// `?before=<id>`; neither: last.
fn placement(query: Option<&str>) -> Result<Placement, String> {
    let mut placement = Placement::Last;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let next = match k.as_ref() {
            "position" => Placement::Position(v.parse().map_err(|_| {
                format!("position: `{v}` is not a whole number (0 is the first place)")
            })?),
            "before" if !v.is_empty() => Placement::Before(v.into_owned()),
            "before" => return Err("before: a rule id is required".into()),
            // Read by `add_fault`.
            "dry_run" => continue,
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; use position, before or dry_run"
                ))
            }
        };
        if placement != Placement::Last {
            return Err("give one of position and before".into());
        }
        placement = next;
    }
    Ok(placement)
}

impl Admin {
    pub(super) async fn list_faults(&self) -> Response<Body> {
        let rules = &self.inner.faults;
        json_response(
            StatusCode::OK,
            &FaultList {
                seed: rules.seed(),
                allowed: rules.refusal().is_none(),
                faults: rules.list().await,
            },
        )
    }

    pub(super) async fn add_fault(&self, req: Request<Body>) -> Response<Body> {
        if let Some(why) = self.inner.faults.refusal() {
            return ErrorEnvelope::new("FAULTS_REFUSED", why).into_response(StatusCode::FORBIDDEN);
        }
        let query = req.uri().query().map(str::to_string);
        let query = query.as_deref();
        let placement = match placement(query) {
            Ok(p) => p,
            Err(e) => {
                return ErrorEnvelope::new("INVALID_PARAMETERS", e)
                    .into_response(StatusCode::BAD_REQUEST)
            }
        };
        let bytes = match body::read_limited(req.into_body(), MAX_RULE).await {
            Ok(b) => b,
            Err(e) => {
                return ErrorEnvelope::new("INVALID_PARAMETERS", format!("rule body: {e}"))
                    .into_response(StatusCode::BAD_REQUEST)
            }
        };
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return ErrorEnvelope::new(
                    "INVALID_PARAMETERS",
                    format!("rule body is not JSON: {e}"),
                )
                .into_response(StatusCode::BAD_REQUEST)
            }
        };
        // `{"spec": "..."}`: the compact grammar of `leanproxy faults add`.
        let spec = value
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("spec"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let parsed = match spec {
            Some(spec) => parse_spec(&spec),
            None => parse_rule(value),
        };
        let rule = match parsed {
            Ok(rule) => rule,
            Err(e) => {
                return ErrorEnvelope::new("INVALID_PARAMETERS", e.to_string())
                    .with_metadata(json!({"field": e.field}))
                    .into_response(StatusCode::BAD_REQUEST)
            }
        };
        let id = rule.id.clone();
        let dry_run = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .any(|(k, v)| k == "dry_run" && v == "true");
        if dry_run {
            // The dashboard checks a rule as it is typed.
            return json_response(
                StatusCode::OK,
                &json!({"valid": true, "id": id, "rule": rule.to_raw()}),
            );
        }
        match self
            .inner
            .faults
            .edit(Edit::Add(Box::new(rule), placement))
            .await
        {
            Err(e) if e.field == "state" => unreachable(&e),
            Ok(_) => {
                tracing::info!(target: "leanproxy::fault", rule = %id, "fault rule added");
                let view = self.inner.faults.get(&id).await;
                json_response(StatusCode::CREATED, &view)
            }
            Err(e) => ErrorEnvelope::new("INVALID_PARAMETERS", e.to_string())
                .with_metadata(json!({"field": e.field}))
                .into_response(if e.field == "before" {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::CONFLICT
                }),
        }
    }

    /// `POST /api/faults/{id}/pause` and `/resume`.
    pub(super) async fn pause_fault(&self, id: &str, paused: bool) -> Response<Body> {
        match self.inner.faults.edit(Edit::Pause(id.into(), paused)).await {
            Ok(Edited::Done(true)) => {}
            Err(e) => return unreachable(&e),
            Ok(_) => return unknown_fault(id),
        }
        let word = if paused { "paused" } else { "resumed" };
        tracing::info!(target: "leanproxy::fault", rule = %id, "fault rule {word}");
        json_response(StatusCode::OK, &self.inner.faults.get(id).await)
    }

    pub(super) async fn remove_fault(&self, id: &str) -> Response<Body> {
        match self.inner.faults.edit(Edit::Remove(id.into())).await {
            Ok(Edited::Done(true)) => {
                tracing::info!(target: "leanproxy::fault", rule = %id, "fault rule removed");
                json_response(StatusCode::OK, &Removed { removed: id })
            }
            Err(e) => unreachable(&e),
            Ok(_) => unknown_fault(id),
        }
    }

    pub(super) async fn clear_faults(&self) -> Response<Body> {
        match self.inner.faults.edit(Edit::Clear).await {
            Ok(Edited::Cleared(n)) => json_response(StatusCode::OK, &Removed { removed: n }),
            Ok(Edited::Done(_)) => json_response(StatusCode::OK, &Removed { removed: 0 }),
            Err(e) => unreachable(&e),
        }
    }
}
