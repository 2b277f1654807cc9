//! One exchange as the request log keeps it (already redacted).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use memchr::memmem::Finder;
use serde::Serialize;

use super::redact;
use crate::lean::KNOWN_STATUSES;
use crate::metrics::label;

/// A captured body: the first bytes as they passed, rendered (redacted) only
/// when it is shown, so the exchange itself pays for a copy and nothing more.
/// Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Capture {
    mime: Option<Cow<'static, str>>,
    raw: Bytes,
    size: u64,
    truncated: bool,
    redact: redact::Redactor,
    hidden: Option<&'static str>,
}

/// What a capture shows.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The text, when it can be shown.
    pub text: Option<String>,
    /// Why the text is not shown, when it is not.
    pub note: Option<String>,
}

impl Capture {
    /// The capture of `bytes` (the first bytes of a body of `size`), shown as
    /// `redact` says.
    pub fn new(
        bytes: Bytes,
        size: u64,
        truncated: bool,
        mime: Option<&str>,
        redact: redact::Redactor,
    ) -> Self {
        Self {
            mime: mime.map(|m| label(m, &MIMES)),
            raw: bytes,
            size,
            truncated,
            redact,
            hidden: None,
        }
    }

    /// Its content type.
    pub fn mime(&self) -> Option<&str> {
        self.mime.as_deref()
    }

    /// Bytes of the whole body.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Drops the captured bytes, saying why.
    pub fn hide(&mut self, why: &'static str) {
        self.raw = Bytes::new();
        self.hidden = Some(why);
    }

    /// The text to show (redacted) or why there is none.
    pub fn render(&self) -> Rendered {
        let shown = |text: Option<String>, note: Option<String>| Rendered { text, note };
        if let Some(why) = self.hidden {
            return shown(None, Some(why.to_string()));
        }
        let size = self.size;
        let bytes = &self.raw[..];
        if bytes.is_empty() {
            return shown(None, None);
        }
        let kind = self
            .mime
            .as_deref()
            .and_then(|m| m.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Ok(utf8) = std::str::from_utf8(bytes) else {
            return shown(None, Some(format!("{size} bytes of binary data")));
        };
        if !self.redact.is_on() {
            return shown(Some(utf8.to_string()), None);
        }
        if kind == "application/json" || kind.ends_with("+json") {
            if self.truncated {
                return shown(
                    None,
                    Some("truncated JSON is not shown: it cannot be redacted safely".into()),
                );
            }
            return match serde_json::from_str::<serde_json::Value>(utf8) {
                Ok(mut v) => {
                    self.redact.json(&mut v);
                    shown(Some(v.to_string()), None)
                }
                Err(_) => shown(
                    None,
                    Some("malformed JSON is not shown: it cannot be redacted safely".into()),
                ),
            };
        }
        if kind == "application/x-www-form-urlencoded" {
            return shown(Some(self.redact.form(utf8)), None);
        }
        // Default-deny: free text (and anything else) cannot be redacted
        // safely, so only its size and type are shown.
        let what = if kind.is_empty() {
            "unlabelled data"
        } else {
            kind.as_str()
        };
        shown(
            None,
            Some(format!(
                "{size} bytes of {what}, not shown: only JSON and form bodies can be redacted (log.redact = false shows it)"
            )),
        )
    }

    fn weight(&self) -> usize {
        self.raw.len() + 96
    }
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("mime", &self.mime)
            .field("size", &self.size)
            .field("truncated", &self.truncated)
            .finish_non_exhaustive()
    }
}

impl Serialize for Capture {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let rendered = self.render();
        let mut s = serializer.serialize_struct("Capture", 5)?;
        s.serialize_field("mime", &self.mime)?;
        s.serialize_field("text", &rendered.text)?;
        s.serialize_field("size", &self.size)?;
        s.serialize_field("truncated", &self.truncated)?;
        s.serialize_field("note", &rendered.note)?;
        s.end()
    }
}

/// Headers as they passed, redacted when shown (`Debug` included).
///
/// Kept as one owned block of names and values rather than a `HeaderMap`:
/// header values parsed by hyper are slices of the connection's read buffer,
/// and keeping those in a record would keep the whole buffer (with the body
/// bytes read alongside) alive; and a record's headers are only ever shown,
/// never looked up, so building a map for each exchange would be wasted work.
#[derive(Clone, Default)]
pub struct Headers {
    /// Each header as its name's and its value's lengths (`u32`,
    /// little-endian), then the name and the value: one allocation for the
    /// whole block, made and freed once per record.
    block: Box<[u8]>,
    count: u32,
    redact: redact::Redactor,
}

impl Headers {
    /// A copy of `map`, shown as `redact` says.
    pub fn new(map: &HeaderMap, redact: redact::Redactor) -> Self {
        Self::picking(map, redact, []).0
    }

    /// A copy of `map`, and the first value of each of `names`, found in the
    /// same pass: a message has few headers, and comparing each name is
    /// cheaper than hashing every name looked up.
    pub(crate) fn picking<'m, const N: usize>(
        map: &'m HeaderMap,
        redact: redact::Redactor,
        names: [&HeaderName; N],
    ) -> (Self, [Option<&'m HeaderValue>; N]) {
        let size = map
            .iter()
            .map(|(k, v)| 8 + k.as_str().len() + v.len())
            .sum::<usize>();
        let mut block = Vec::with_capacity(size);
        let mut picked = [None; N];
        for (name, value) in map {
            for (wanted, slot) in names.iter().zip(picked.iter_mut()) {
                if slot.is_none() && name == *wanted {
                    *slot = Some(value);
                }
            }
            let name = name.as_str().as_bytes();
            // Header blocks are far below 4 GiB (leanproxy caps them at 64 KiB).
            block.extend_from_slice(&(name.len() as u32).to_le_bytes());
            block.extend_from_slice(&(value.len() as u32).to_le_bytes());
            block.extend_from_slice(name);
            block.extend_from_slice(value.as_bytes());
        }
        let headers = Self {
            block: block.into_boxed_slice(),
            count: map.len() as u32,
            redact,
        };
        (headers, picked)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut rest: &[u8] = &self.block;
        std::iter::from_fn(move || {
            let (lengths, tail) = rest.split_first_chunk::<8>()?;
            let [a, b, c, d, e, f, g, h] = *lengths;
            let name_len = u32::from_le_bytes([a, b, c, d]) as usize;
            let value_len = u32::from_le_bytes([e, f, g, h]) as usize;
            let (name, tail) = tail.split_at_checked(name_len)?;
            let (value, tail) = tail.split_at_checked(value_len)?;
            rest = tail;
            Some((std::str::from_utf8(name).unwrap_or(""), value))
        })
    }

    /// Name and shown value of each header.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), self.redact.header(k, v)))
            .collect()
    }

    fn weight(&self) -> usize {
        self.block.len() + 24 * self.count as usize
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pairs()).finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.pairs().serialize(serializer)
    }
}

/// One exchange.
///
/// Its fields share what the exchange already holds or name it from a fixed
/// set (method, version, Lean status, failure) where they can: each string a
/// record owns is one more allocation to make per exchange, and one more to
/// free when the ring evicts it.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRecord {
    /// The request id (`x-request-id`): the value sent upstream and echoed.
    #[serde(serialize_with = "header_text")]
    pub id: HeaderValue,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// HTTP method.
    #[serde(serialize_with = "method_text")]
    pub method: Method,
    /// Host the app addressed.
    pub host: Option<String>,
    /// Path.
    pub path: String,
    /// Query string, secrets removed.
    pub query: Option<String>,
    /// HTTP version of the app's request.
    pub version: &'static str,
    /// The app's address (shared with its connection).
    pub client: Option<Arc<str>>,
    /// Request headers, secrets removed when shown.
    pub request_headers: Headers,
    /// Request body.
    pub request_body: Option<Capture>,
    /// HTTP status of the answer.
    pub status: u16,
    /// Response headers, secrets removed when shown.
    pub response_headers: Headers,
    /// Response body.
    pub response_body: Option<Capture>,
    /// Lean `status` of the answer.
    pub lean_status: Option<Cow<'static, str>>,
    /// Entity of the request.
    pub entity_id: Option<String>,
    /// Reconnect id the answer carried.
    pub reconnect_id: Option<String>,
    /// The fault rule that produced or changed the answer.
    pub fault: Option<String>,
    /// Lean's `lean-correlation-id`.
    pub lean_correlation_id: Option<String>,
    /// Time to the upstream's response head, when there was one.
    pub upstream_ms: Option<f64>,
    /// Total time, body included.
    pub duration_ms: f64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// False when the app went away before the answer's end.
    pub completed: bool,
    /// leanproxy's diagnosis when the upstream failed.
    pub upstream_error: Option<&'static str>,
    /// The `[[routes]]` target it went to (none: the default upstream).
    pub route: Option<Arc<str>>,
    /// The replica that served it, when there are several (`state.replica`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<Arc<str>>,
}

impl ExchangeRecord {
    /// The record as the live event stream shows an exchange (no headers, no
    /// bodies).
    pub fn summary(&self) -> crate::events::ExchangeSummary {
        crate::events::ExchangeSummary {
            id: self.id.to_str().unwrap_or_default().to_string(),
            started_at: self
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            method: self.method.to_string(),
            path: self.path.clone(),
            status: self.status,
            lean_status: self.lean_status.as_deref().map(str::to_string),
            entity_id: self.entity_id.clone(),
            reconnect_id: self.reconnect_id.clone(),
            fault: self.fault.clone(),
            upstream_ms: self.upstream_ms,
            route: self.route.as_deref().map(str::to_string),
            duration_ms: self.duration_ms,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }
}

fn header_text<S: serde::Serializer>(value: &HeaderValue, s: S) -> Result<S::Ok, S::Error> {
    // Request ids are visible ASCII (checked or generated by the request log).
    s.serialize_str(value.to_str().unwrap_or_default())
}

fn method_text<S: serde::Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// Content types named without an allocation; others are owned.
const MIMES: [&str; 4] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=utf-8",
    "text/plain; charset=utf-8",
];

impl ExchangeRecord {
    /// Approximate memory kept for this record (what the ring's byte cap counts).
    pub fn weight(&self) -> usize {
        512 + self.request_headers.weight()
            + self.response_headers.weight()
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + self.request_body.as_ref().map_or(0, Capture::weight)
            + self.response_body.as_ref().map_or(0, Capture::weight)
    }

    /// Drops the body texts (kept when the record alone exceeds the byte cap).
    pub fn without_bodies(mut self) -> Self {
        for capture in [&mut self.request_body, &mut self.response_body]
            .into_iter()
            .flatten()
        {
            capture.hide("body dropped: larger than the request log's byte cap");
        }
        self
    }
}

/// Lean's top-level `status` from the first bytes of an answer: the value of the
/// first `"status"` key, which in Lean's envelopes comes before any nested one.
pub fn lean_status(body: &[u8]) -> Option<Cow<'static, str>> {
    // Built once: `memmem::find` sets up its searcher on every call, which
    // cost more than the search over a 1 KiB answer.
    static STATUS_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"status\""));
    let at = STATUS_KEY.find(body)?;
    match crate::reconnect::status_value(&body[at + 8..]) {
        crate::reconnect::Lead::Status(value)
            if value.iter().all(|b| b.is_ascii_uppercase() || *b == b'_') =>
        {
            // Upper-case ASCII only, so valid UTF-8.
            std::str::from_utf8(value)
                .ok()
                .map(|v| label(v, &KNOWN_STATUSES))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lean_status_is_the_first_status_key() {
        assert_eq!(
            lean_status(br#"{"status":"OK","data":{"accounts":[{"status":"ENABLED"}]}}"#)
                .as_deref(),
            Some("OK")
        );
        assert_eq!(
            lean_status(
                br#"{"results_id":"x","timestamp":"t","status" : "UNKNOWN_ENTITY","message":"m"}"#
            )
            .as_deref(),
            Some("UNKNOWN_ENTITY")
        );
        assert_eq!(lean_status(br#"{"error":"invalid_client"}"#), None);
        assert_eq!(
            lean_status(br#"{"status":"ok"}"#),
            None,
            "not a Lean status"
        );
    }

    #[test]
    fn truncated_json_is_never_shown() {
        let body = Bytes::from_static(br#"{"iban":"AE07033123456789012345"#);
        let c = Capture::new(
            body,
            10_000,
            true,
            Some("application/json"),
            crate::log::redact::Redactor::default(),
        )
        .render();
        assert!(c.text.is_none());
        assert!(c.note.unwrap().contains("cannot be redacted"));
    }

    #[test]
    fn json_is_redacted_and_text_kept() {
        let body = Bytes::from_static(br#"{"full_name":"Mae Zulauf"}"#);
        let c = Capture::new(
            body.clone(),
            27,
            false,
            Some("application/json; charset=utf-8"),
            crate::log::redact::Redactor::default(),
        );
        assert_eq!(
            c.render().text.as_deref(),
            Some(r#"{"full_name":"[redacted]"}"#)
        );
        assert!(
            !serde_json::to_string(&c).unwrap().contains("Mae"),
            "serialized redacted"
        );
        let raw = Capture::new(
            body,
            27,
            false,
            Some("application/json"),
            crate::log::redact::Redactor::off(),
        );
        assert!(raw.render().text.unwrap().contains("Mae"));
    }

    #[test]
    fn headers_keep_every_name_and_value_in_order() {
        let mut map = HeaderMap::new();
        map.append("accept", http::HeaderValue::from_static("application/json"));
        map.append("x-empty", http::HeaderValue::from_static(""));
        map.append("accept", http::HeaderValue::from_static("text/plain"));
        map.append(
            "x-long",
            http::HeaderValue::from_str(&"v".repeat(70_000)).unwrap(),
        );
        let expected: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let headers = Headers::new(&map, crate::log::redact::Redactor::off());
        assert_eq!(headers.pairs(), expected);
        assert_eq!(Headers::default().pairs(), Vec::new());
    }

    #[test]
    fn headers_are_redacted_when_shown() {
        let mut map = HeaderMap::new();
        map.insert("lean-app-token", http::HeaderValue::from_static("tok-1"));
        map.insert("accept", http::HeaderValue::from_static("application/json"));
        let headers = Headers::new(&map, crate::log::redact::Redactor::default());
        assert!(
            !format!("{headers:?}").contains("tok-1"),
            "Debug redacts too"
        );
        let capture = Capture::new(
            Bytes::from_static(b"{\"iban\":\"AE0703312345\"}"),
            25,
            false,
            Some("application/json"),
            crate::log::redact::Redactor::default(),
        );
        assert!(
            !format!("{capture:?}").contains("AE07"),
            "Debug shows no bytes"
        );
        let shown = serde_json::to_string(&headers).unwrap();
        assert!(
            !shown.contains("tok-1") && shown.contains("application/json"),
            "{shown}"
        );
    }
}
