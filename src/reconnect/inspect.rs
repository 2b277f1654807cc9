//! Finding RECONNECT_REQUIRED in a Lean answer: a substring search over the raw
//! bytes (memchr), and JSON parsing only when the marker is there.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::exchange::Api;

static MARKER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"RECONNECT_REQUIRED"));

/// A RECONNECT_REQUIRED answer's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// v1 `payload.reconnect_id`, or the v2 `results_id`.
    pub reconnect_id: String,
    /// The answer's `results_id`.
    pub results_id: Option<String>,
    /// Which shape it had.
    pub api: Api,
}

/// What a scan of an answer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// No RECONNECT_REQUIRED status.
    Clear,
    /// A RECONNECT_REQUIRED answer.
    Reconnect(Found),
    /// The marker is there but the body is not JSON; passed through unchanged.
    Malformed(String),
    /// `status: RECONNECT_REQUIRED` without a usable id.
    NoId,
}

/// The few fields of a Lean answer the scan needs. Everything else (`data`,
/// `payload` lists, ...) is skipped by the parser without being built.
#[derive(Deserialize)]
struct Envelope {
    status: Option<String>,
    results_id: Option<String>,
    payload: Option<PayloadIds>,
}

#[derive(Deserialize)]
struct PayloadIds {
    reconnect_id: Option<String>,
}

/// Scans a complete answer body.
pub fn scan(body: &[u8]) -> Scan {
    if MARKER.find(body).is_none() {
        return Scan::Clear;
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            // Valid JSON of another shape (a non-object payload) is no reconnect.
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Scan::Clear,
                Err(_) => Scan::Malformed(e.to_string()),
            };
        }
    };
    if envelope.status.as_deref() != Some("RECONNECT_REQUIRED") {
        // The word appears elsewhere (a description, a nested object).
        return Scan::Clear;
    }
    let v1 = envelope.payload.and_then(|p| p.reconnect_id);
    match (v1, envelope.results_id) {
        (Some(id), results_id) => Scan::Reconnect(Found {
            reconnect_id: id,
            results_id,
            api: Api::V1,
        }),
        (None, Some(id)) => Scan::Reconnect(Found {
            reconnect_id: id.clone(),
            results_id: Some(id),
            api: Api::V2,
        }),
        (None, None) => Scan::NoId,
    }
}

/// What the first bytes of an answer tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead<'a> {
    /// The answer is an object whose first member is `status` with this plain
    /// string value (`{"status":"OK",...`), as every Lean answer is.
    Status(&'a [u8]),
    /// Too few bytes to tell yet.
    NeedMore,
    /// Some other shape: only a scan of the whole answer can tell.
    Other,
}

/// Reads the leading `status` of an answer from its first bytes, so that an
/// answer which is not RECONNECT_REQUIRED need not be copied to its end.
pub(super) fn leading_status(prefix: &[u8]) -> Lead<'_> {
    let mut i = 0;
    match expect(prefix, &mut i, &[b"{", b"\"status\""]) {
        Ok(()) => status_value(&prefix[i..]),
        Err(lead) => lead,
    }
}

/// The plain string value that follows a `"status"` key (`rest` starts just
/// after the key): `: "OK"` gives `Status(b"OK")`.
pub(crate) fn status_value(rest: &[u8]) -> Lead<'_> {
    let mut i = 0;
    if let Err(lead) = expect(rest, &mut i, &[b":", b"\""]) {
        return lead;
    }
    let rest = &rest[i..];
    match memchr::memchr2(b'"', b'\\', rest) {
        Some(end) if rest[end] == b'"' => Lead::Status(&rest[..end]),
        Some(_) => Lead::Other, // an escape: leave it to the full parse
        None if rest.len() > 64 => Lead::Other,
        None => Lead::NeedMore,
    }
}

/// Matches each of `tokens` in turn from `bytes[*i..]`, JSON whitespace before
/// each; `Err` says the bytes end too early (`NeedMore`) or differ (`Other`).
fn expect(bytes: &[u8], i: &mut usize, tokens: &[&[u8]]) -> Result<(), Lead<'static>> {
    for want in tokens {
        while bytes.get(*i).is_some_and(|b| b" \t\r\n".contains(b)) {
            *i += 1;
        }
        let have = &bytes[(*i).min(bytes.len())..];
        let n = have.len().min(want.len());
        if have[..n] != want[..n] {
            return Err(Lead::Other);
        }
        if n < want.len() {
            return Err(Lead::NeedMore);
        }
        *i += want.len();
    }
    Ok(())
}

/// Whether a complete answer body is a Lean `status: OK` answer.
pub fn is_ok_answer(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Status {
        status: Option<String>,
    }
    serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.status)
        .is_some_and(|s| s == "OK")
}

/// The `entity_id` of a JSON request body (v1 data calls), if it has one.
pub fn entity_of_body(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("entity_id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The `entity_id` an answer names (at its top level, or in its `payload` or
/// `data`), if any: it tells which entity a reconnect belongs to when the
/// request did not say.
pub(super) fn entity_of_answer(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let found =
        [&v, &v["payload"], &v["data"]]
            .into_iter()
            .find_map(|o| match o.get("entity_id")? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            });
    found
}

/// The `entity_id` query parameter (v2 data calls), if present.
pub fn entity_of_query(query: Option<&str>) -> Option<String> {
    let query = query?;
    // Cheap pre-check: most queries have no entity.
    memchr::memmem::find(query.as_bytes(), b"entity_id=")?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "entity_id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_its_entity_at_the_top_or_in_its_envelope() {
        assert_eq!(
            entity_of_answer(br#"{"entity_id":"e-1"}"#).as_deref(),
            Some("e-1")
        );
        assert_eq!(
            entity_of_answer(br#"{"status":"RECONNECT_REQUIRED","payload":{"entity_id":"e-2"}}"#)
                .as_deref(),
            Some("e-2")
        );
        assert_eq!(entity_of_answer(br#"{"data":{"entity_id":""}}"#), None);
        assert_eq!(entity_of_answer(b"not json"), None);
    }

    #[test]
    fn v1_shape_gives_payload_reconnect_id() {
        let body = br#"{"status":"RECONNECT_REQUIRED","payload":{"reconnect_id":"r-1","type":"reconnect"},"results_id":"res-1","message":"User input is required to reconnect with the bank","timestamp":"2020-12-30T16:40:49.779695Z"}"#;
        assert_eq!(
            scan(body),
            Scan::Reconnect(Found {
                reconnect_id: "r-1".into(),
                results_id: Some("res-1".into()),
                api: Api::V1
            })
        );
    }

    #[test]
    fn v2_shape_uses_results_id() {
        let body = br#"{"status":"RECONNECT_REQUIRED","data":null,"results_id":"7a16","message":"m","meta":null,"timestamp":"t","status_detail":null}"#;
        match scan(body) {
            Scan::Reconnect(f) => assert_eq!((f.reconnect_id.as_str(), f.api), ("7a16", Api::V2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn marker_outside_status_is_not_a_reconnect() {
        assert_eq!(
            scan(br#"{"status":"OK","message":"no RECONNECT_REQUIRED here"}"#),
            Scan::Clear
        );
        assert_eq!(scan(br#"{"status":"OK"}"#), Scan::Clear);
    }

    #[test]
    fn non_object_payload_is_not_a_reconnect_and_not_malformed() {
        assert_eq!(
            scan(br#"{"status":"OK","payload":["RECONNECT_REQUIRED"]}"#),
            Scan::Clear
        );
        assert!(is_ok_answer(br#"{"data":{"x":[1,2]},"status":"OK"}"#));
        assert!(!is_ok_answer(br#"{"status":"FAILED"}"#));
    }

    #[test]
    fn leading_status_is_read_from_the_first_bytes() {
        assert_eq!(
            leading_status(br#"{"status":"OK","data":"#),
            Lead::Status(b"OK")
        );
        assert_eq!(
            leading_status(b" {\n  \"status\" : \"RECONNECT_REQUIRED\","),
            Lead::Status(b"RECONNECT_REQUIRED")
        );
        for short in [
            &b""[..],
            b" ",
            b"{",
            b"{\"sta",
            b"{\"status\"",
            b"{\"status\": \"O",
        ] {
            assert_eq!(leading_status(short), Lead::NeedMore, "{short:?}");
        }
        for other in [
            &br#"{"data":{"status":"OK"}}"#[..],
            br#"["status"]"#,
            br#"{"status":null}"#,
            br#"{"status":"O\u004b"}"#,
            b"<html>",
        ] {
            assert_eq!(leading_status(other), Lead::Other, "{other:?}");
        }
    }

    #[test]
    fn malformed_json_with_marker_is_reported_not_parsed() {
        assert!(matches!(
            scan(b"{\"status\":\"RECONNECT_REQUIRED\","),
            Scan::Malformed(_)
        ));
    }

    #[test]
    fn entity_comes_from_query_or_body() {
        assert_eq!(
            entity_of_query(Some("page=0&entity_id=e%2D1&size=5")).as_deref(),
            Some("e-1")
        );
        assert_eq!(entity_of_query(Some("page=0")), None);
        assert_eq!(
            entity_of_body(br#"{"entity_id":"e-2","async":false}"#).as_deref(),
            Some("e-2")
        );
        assert_eq!(entity_of_body(br#"{"entity_id":"#), None);
    }
}
