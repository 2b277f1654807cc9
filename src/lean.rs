//! Lean's wire shapes that leanproxy itself produces.
//!
//! Lean answers every non-2xx call with one envelope (as recorded in Lean's
//! Postman collection):
//! `{"timestamp", "status", "message", "metadata"}` and sometimes `results_id`. Errors
//! leanproxy makes (an unreachable upstream, later injected faults) use the same
//! shape so that an app's error handling sees what it would see from Lean.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::body::{full, Body};

/// The header Lean signs webhooks with.
pub const SIGNATURE_HEADER: &str = "lean-signature";

/// Lean statuses named without an allocation wherever a status is kept or
/// counted (records, metrics labels); others are owned. `""` stands for an
/// answer without one.
pub(crate) const KNOWN_STATUSES: [&str; 11] = [
    "",
    "OK",
    "PENDING",
    "FAILED",
    "RECONNECT_REQUIRED",
    "UNKNOWN_ENTITY",
    "INVALID_PARAMETERS",
    "CONSENT_EXPIRED",
    "ACCEPTED_BY_BANK",
    "INTENT_CREATED",
    "FINISHED",
];

/// Lean's webhook signature of `body`: `sha512=<lowercase hex HMAC-SHA512>` keyed
/// with the webhook secret (Lean's webhook documentation).
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<sha2::Sha512>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    format!("sha512={}", hex::encode(mac.finalize().into_bytes()))
}

/// Lean's timestamp format: RFC 3339, UTC, nanoseconds, `Z` suffix
/// (`2025-09-10T21:05:59.919233187Z`).
pub fn timestamp_now() -> String {
    timestamp(Utc::now())
}

/// Lean's error envelope for non-2xx answers.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEnvelope {
    /// Present on some of Lean's errors, absent on others (409, 403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_id: Option<String>,
    /// When the error was produced, in [`timestamp_now`]'s format.
    pub timestamp: String,
    /// Machine-readable code, e.g. `INVALID_PARAMETERS` or `BAD_GATEWAY`.
    pub status: String,
    /// Human-readable explanation.
    pub message: String,
    /// Extra detail; Lean sends `null`, leanproxy puts its diagnosis here.
    pub metadata: Value,
}

impl ErrorEnvelope {
    /// An envelope stamped now, with `metadata: null`.
    pub fn new(status: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            results_id: None,
            timestamp: timestamp_now(),
            status: status.into(),
            message: message.into(),
            metadata: Value::Null,
        }
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// The envelope as a JSON response with the given HTTP status.
    pub fn into_response(self, code: StatusCode) -> Response<Body> {
        json_response(code, &self)
    }
}

/// A time in Lean's envelope format (nanoseconds, `Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

// Data answers that are not errors (HTTP 200): RECONNECT_REQUIRED, PENDING and
// FAILED, in both API generations. The Mockbank and injected faults share them.

/// v2 RECONNECT_REQUIRED: the `results_id` is the reconnect id.
pub fn v2_reconnect(results_id: Uuid, now: DateTime<Utc>) -> Value {
    json!({
        "status": "RECONNECT_REQUIRED",
        "data": null,
        "results_id": results_id,
        "message": "User input is required to reconnect with the bank",
        "meta": null,
        "timestamp": timestamp(now),
        "status_detail": null,
    })
}

/// v2 PENDING (async).
pub fn v2_pending(results_id: Uuid, now: DateTime<Utc>) -> Value {
    json!({
        "status": "PENDING",
        "results_id": results_id,
        "message": "Please wait for a webhook or try again later.",
        "meta": null,
        "timestamp": timestamp(now),
        "status_detail": null,
        "data": null,
    })
}

/// v2 data error: HTTP 200, `status: FAILED`, `status_detail.granular_status_code`.
pub fn v2_failed(results_id: Uuid, code: &str, now: DateTime<Utc>) -> Value {
    json!({
        "status": "FAILED",
        "results_id": results_id,
        "message": "The request could not be completed by the bank",
        "meta": null,
        "timestamp": timestamp(now),
        "status_detail": status_detail(code),
        "data": null,
    })
}

/// v1 RECONNECT_REQUIRED, as documented: `payload.reconnect_id`, `type: reconnect`.
pub fn v1_reconnect(reconnect_id: Uuid, results_id: Uuid, now: DateTime<Utc>) -> Value {
    json!({
        "status": "RECONNECT_REQUIRED",
        "payload": {"reconnect_id": reconnect_id, "type": "reconnect"},
        "results_id": results_id,
        "message": "User input is required to reconnect with the bank",
        "timestamp": timestamp(now),
    })
}

/// v1 PENDING (async).
pub fn v1_pending(results_id: Uuid, now: DateTime<Utc>) -> Value {
    json!({
        "status": "PENDING",
        "payload": null,
        "results_id": results_id,
        "message": "Results not yet returned. Please wait",
        "timestamp": timestamp(now),
    })
}

/// v1 data error.
pub fn v1_failed(results_id: Uuid, code: &str, now: DateTime<Utc>) -> Value {
    json!({
        "status": "FAILED",
        "payload": null,
        "results_id": results_id,
        "message": "The request could not be completed by the bank",
        "timestamp": timestamp(now),
        "meta": null,
        "status_detail": status_detail(code),
    })
}

/// The `status_detail` object of a `status: FAILED` answer:
/// `{"granular_status_code", "status_additional_info"}`. The texts for
/// `BANK_ISSUE` and `LEAN_ERROR` are recorded; `BANK_MAINTENANCE`'s is the
/// Mockbank's; the others are leanproxy's wording.
pub fn status_detail(granular_status_code: &str) -> Value {
    let info = match granular_status_code {
        "BANK_MAINTENANCE" => {
            "The bank is currently undergoing maintenance. Please try again later."
        }
        "BANK_ISSUE" => "Bank is experiencing technical issues",
        "LEAN_ERROR" => "Internal system error occurred",
        "LOGGED_IN_ELSEWHERE" => {
            "The user is logged in to the bank elsewhere. Please try again later."
        }
        "DUPLICATED_REQUEST" => {
            "Please wait for the response or wait for one minute before making another request."
        }
        "DISABLED_BY_LEAN" => "The bank connection has been disabled by Lean",
        "DISABLED_BY_CLIENT" => "The bank connection has been disabled by the client",
        "EU_ACCOUNT_LOCKED" => "The user's bank account is locked",
        "UNSUPPORTED_BY_BANK" => "This bank does not support this request",
        _ => "The bank could not process the request.",
    };
    json!({"granular_status_code": granular_status_code, "status_additional_info": info})
}

/// A JSON response of `value` (`content-type: application/json`).
pub fn json_response<T: Serialize>(code: StatusCode, value: &T) -> Response<Body> {
    // Serialising our own plain structs cannot fail; an empty object is a safe
    // fallback that keeps the answer valid JSON.
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(Bytes::from(bytes)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_nanoseconds_and_z() {
        let ts = timestamp_now();
        assert!(ts.ends_with('Z'), "{ts}");
        let frac = ts.rsplit('.').next().unwrap();
        assert_eq!(frac.len(), 10, "9 digits and Z: {ts}");
    }

    #[test]
    fn signature_is_hex_hmac_sha512_with_prefix() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = webhook_signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn envelope_has_lean_keys_and_no_results_id_when_absent() {
        let env = ErrorEnvelope::new("BAD_GATEWAY", "nope");
        let v = serde_json::to_value(&env).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["message", "metadata", "status", "timestamp"]);
        assert!(obj["metadata"].is_null());
    }
}
