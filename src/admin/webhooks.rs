//! Received webhooks on the admin API: the list, replays, dead letters.

use http::{Response, StatusCode};
use serde_json::json;

use super::{bad_filter, unknown_webhook, Admin};
use crate::body::Body;
use crate::lean::{json_response, ErrorEnvelope};
use crate::webhooks::{ReplayDeadError, ReplayError};

impl Admin {
    pub(super) fn replay_dead(&self, id: &str) -> Response<Body> {
        match self.inner.webhooks.replay_dead(id) {
            Ok(status) => json_response(StatusCode::ACCEPTED, &json!({"relay": [status]})),
            Err(e @ ReplayDeadError::Unknown(_)) => {
                ErrorEnvelope::new("UNKNOWN_DEAD_LETTER", e.to_string())
                    .into_response(StatusCode::NOT_FOUND)
            }
            Err(e @ ReplayDeadError::NoTarget(_)) => {
                ErrorEnvelope::new("NO_RELAY_TARGETS", e.to_string())
                    .into_response(StatusCode::CONFLICT)
            }
            Err(e @ ReplayDeadError::Io(_)) => {
                ErrorEnvelope::new("RELAY_QUEUE_ERROR", e.to_string())
                    .into_response(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    pub(super) fn replay(&self, id: &str) -> Response<Body> {
        match self.inner.webhooks.replay(id) {
            Err(ReplayError::Unknown) => unknown_webhook(id),
            Err(e @ ReplayError::Truncated) => {
                ErrorEnvelope::new("BODY_NOT_KEPT", format!("{id} cannot be replayed: {e}"))
                    .into_response(StatusCode::CONFLICT)
            }
            Ok(statuses) if statuses.is_empty() => ErrorEnvelope::new(
                "NO_RELAY_TARGETS",
                "no relay targets configured (webhooks.relay)",
            )
            .into_response(StatusCode::CONFLICT),
            Ok(statuses) => match statuses.iter().find(|s| s.state == "dropped") {
                // Queued for every target or none (see `Relay::enqueue`).
                Some(dropped) => ErrorEnvelope::new(
                    "RELAY_QUEUE_FULL",
                    format!(
                        "the replay could not be queued: {}",
                        dropped.last_error.as_deref().unwrap_or("unknown error")
                    ),
                )
                .into_response(StatusCode::SERVICE_UNAVAILABLE),
                None => json_response(StatusCode::ACCEPTED, &json!({"relay": statuses})),
            },
        }
    }

    pub(super) fn webhooks(&self, query: Option<&str>) -> Response<Body> {
        /// Deliveries listed per page, by default and at most.
        const LIMIT: (usize, usize) = (100, 1000);
        let mut kind = None;
        let mut verdict = None;
        let mut outcome = None;
        let mut before = None;
        let mut limit = LIMIT.0;
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "type" => kind = Some(v.into_owned()),
                "verdict" => verdict = Some(v.into_owned()),
                "outcome" => outcome = Some(v.into_owned()),
                "before" => before = Some(v.into_owned()),
                "limit" => match v.parse() {
                    Ok(n) if (1..=LIMIT.1).contains(&n) => limit = n,
                    _ => {
                        return bad_filter(&format!(
                            "limit: `{v}` is not a number from 1 to {}",
                            LIMIT.1
                        ))
                    }
                },
                other => {
                    return bad_filter(&format!(
                        "unknown filter `{other}`; use type, verdict, outcome, limit, before"
                    ))
                }
            }
        }
        let keep = |r: &crate::webhooks::WebhookRecord| {
            kind.as_deref().is_none_or(|k| r.kind.as_deref() == Some(k))
                && verdict.as_deref().is_none_or(|v| r.signature.name() == v)
                && outcome
                    .as_deref()
                    .is_none_or(|o| serde_json::to_value(r.outcome).ok() == Some(json!(o)))
        };
        let webhooks = &self.inner.webhooks;
        let Some(page) = webhooks.page(keep, before.as_deref(), limit) else {
            return unknown_webhook(before.as_deref().unwrap_or_default());
        };
        let (kept, kept_bytes, history_bytes) = webhooks.usage();
        json_response(
            StatusCode::OK,
            &json!({
                "kept": kept,
                "kept_bytes": kept_bytes,
                "history_bytes": history_bytes,
                "webhooks": page.records,
                "next_before": page.next_before,
            }),
        )
    }
}
