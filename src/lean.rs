//! Lean's wire shapes that leanproxy itself produces.
//!
//! Lean answers every non-2xx call with one envelope (`../shared/lean-api.md` §4.3):
//! `{"timestamp", "status", "message", "metadata"}` and sometimes `results_id`. Errors
//! leanproxy makes (an unreachable upstream, later injected faults) use the same
//! shape so that an app's error handling sees what it would see from Lean.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::body::{full, Body};

/// The header Lean signs webhooks with.
pub const SIGNATURE_HEADER: &str = "lean-signature";

/// Lean's webhook signature of `body`: `sha512=<lowercase hex HMAC-SHA512>` keyed
/// with the webhook secret (`../shared/lean-api.md` §7.3).
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
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
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
