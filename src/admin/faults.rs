//! Fault rules on the admin API.

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::Admin;
use crate::body::{self, Body};
use crate::fault::parse_rule;
use crate::lean::{json_response, ErrorEnvelope};

/// Largest rule body accepted.
const MAX_RULE: usize = 64 * 1024;

impl Admin {
    pub(super) fn list_faults(&self) -> Response<Body> {
        let rules = &self.inner.faults;
        json_response(
            StatusCode::OK,
            &json!({
                "seed": rules.seed(),
                "allowed": self.inner.fault_refusal.is_none(),
                "faults": rules.list(),
            }),
        )
    }

    pub(super) async fn add_fault(&self, req: Request<Body>) -> Response<Body> {
        if let Some(why) = &self.inner.fault_refusal {
            return ErrorEnvelope::new("FAULTS_REFUSED", why.clone())
                .into_response(StatusCode::FORBIDDEN);
        }
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
        let rule = match parse_rule(value) {
            Ok(rule) => rule,
            Err(e) => {
                return ErrorEnvelope::new("INVALID_PARAMETERS", e.to_string())
                    .with_metadata(json!({"field": e.field}))
                    .into_response(StatusCode::BAD_REQUEST)
            }
        };
        let id = rule.id.clone();
        match self.inner.faults.add(rule) {
            Ok(()) => {
                tracing::info!(target: "leanproxy::fault", rule = %id, "fault rule added");
                let view = self.inner.faults.get(&id);
                json_response(StatusCode::CREATED, &view)
            }
            Err(e) => ErrorEnvelope::new("INVALID_PARAMETERS", e.to_string())
                .with_metadata(json!({"field": e.field}))
                .into_response(StatusCode::CONFLICT),
        }
    }

    pub(super) fn remove_fault(&self, id: &str) -> Response<Body> {
        if self.inner.faults.remove(id) {
            tracing::info!(target: "leanproxy::fault", rule = %id, "fault rule removed");
            json_response(StatusCode::OK, &json!({"removed": id}))
        } else {
            ErrorEnvelope::new("UNKNOWN_FAULT", format!("no fault rule `{id}`"))
                .into_response(StatusCode::NOT_FOUND)
        }
    }

    pub(super) fn clear_faults(&self) -> Response<Body> {
        let n = self.inner.faults.len();
        self.inner.faults.clear();
        json_response(StatusCode::OK, &json!({"removed": n}))
    }
}
