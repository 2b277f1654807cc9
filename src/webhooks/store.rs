//! Received webhooks, kept for inspection: a list bounded in count and in bytes,
//! newest last, with the raw body (for byte-identical relays and replays) and a
//! redacted view. A rejected delivery keeps only a prefix of its body: the
//! listener faces the internet, and forged bodies must not pin memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;

use super::verify::Verdict;
use crate::log::redact::{is_secret_header, Redactor};

/// Body bytes shown in a record (the relay keeps all of it).
const SHOWN_BODY: usize = 64 * 1024;

/// Body bytes kept of a rejected delivery.
pub(super) const REJECTED_PREFIX: usize = 1024;

/// What a kept delivery costs beside its body and headers (its record, ids,
/// relay statuses), counted against the byte bound.
const OVERHEAD: usize = 512;

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered 200, recorded, relayed.
    Accepted,
    /// Signature invalid under `enforce`: answered 401.
    Rejected,
    /// A repeated `event_id` (Lean retries): answered 200, not relayed again.
    Duplicate,
}

/// Relay progress towards one target.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    /// The app's URL.
    pub target: String,
    /// `queued`, `delivered`, `failed` (given up after `max_attempts`),
    /// `dropped` (not queued: the queue was full or could not be written, here
    /// or for another target) or `dead` (set aside: `GET /api/webhooks/dead`).
    pub state: &'static str,
    /// Attempts so far.
    pub attempts: u32,
    /// Last failure.
    pub last_error: Option<String>,
}

/// One received webhook, as shown by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookRecord {
    /// leanproxy's id for this delivery.
    pub id: String,
    /// Arrival time.
    pub received_at: DateTime<Utc>,
    /// Path it was posted to.
    pub path: String,
    /// Headers, secrets redacted.
    pub headers: Vec<(String, String)>,
    /// The body as text (capped at 64 KiB here); `None` in a summary (the
    /// list), which never carries bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Why the body is not shown, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_note: Option<String>,
    /// Body size in bytes, as received.
    pub body_bytes: usize,
    /// Only the first bytes of the body are kept (a rejected delivery): it
    /// cannot be replayed.
    pub body_truncated: bool,
    /// Lean's `type`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Lean's `event_id`.
    pub event_id: Option<String>,
    /// Entity named in the payload.
    pub entity_id: Option<String>,
    /// Reconnect id named in the payload.
    pub reconnect_id: Option<String>,
    /// Results id named in the payload.
    pub results_id: Option<String>,
    /// Signature verdict.
    pub signature: Verdict,
    /// Accepted, rejected or duplicate.
    pub outcome: Outcome,
    /// The registry record it resolved, if any (entity id or `reconnect:<id>`).
    pub resolved_reconnect: Option<String>,
    /// Relay progress per target.
    pub relay: Vec<RelayStatus>,
}

/// A received webhook: its record plus what a relay needs.
#[derive(Debug)]
pub struct Stored {
    record: Mutex<WebhookRecord>,
    /// The raw body, or its first bytes when the record says `body_truncated`.
    pub body: Bytes,
    /// Headers to forward unchanged (signature included).
    pub forward: Vec<(HeaderName, HeaderValue)>,
}

impl Stored {
    /// A snapshot of the record, with the body shown as `redact` says: a
    /// whole JSON body redacted (names, IBANs, secrets), anything else (a
    /// refused delivery's prefix, a body that is not JSON) only described,
    /// since it cannot be redacted safely.
    pub fn record(&self, redact: &Redactor) -> WebhookRecord {
        let mut record = self.summary();
        let shown = &self.body[..self.body.len().min(SHOWN_BODY)];
        if !redact.is_on() {
            record.body = Some(String::from_utf8_lossy(shown).into_owned());
            return record;
        }
        let json = (!record.body_truncated && shown.len() == self.body.len())
            .then(|| serde_json::from_slice::<Value>(shown).ok())
            .flatten();
        match json {
            Some(mut v) => {
                redact.json(&mut v);
                record.body = Some(v.to_string());
            }
            None => {
                let kept = if record.body_truncated {
                    format!(
                        "the first {} of {} bytes are kept (a refused delivery)",
                        self.body.len(),
                        record.body_bytes
                    )
                } else {
                    format!("{} bytes", record.body_bytes)
                };
                record.body_note = Some(format!(
                    "{kept}; not shown: only a whole JSON body can be redacted (log.redact = false shows it)"
                ));
            }
        }
        record
    }

    /// A snapshot of the record without the body.
    pub fn summary(&self) -> WebhookRecord {
        self.lock().clone()
    }

    /// Whether only a prefix of the body is kept.
    pub fn truncated(&self) -> bool {
        self.lock().body_truncated
    }

    /// Bytes this delivery holds, as counted against the store's bound.
    fn weight(&self) -> usize {
        let record = self.lock();
        let shown: usize = record.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let forward: usize = self
            .forward
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        OVERHEAD + self.body.len() + shown + forward + record.path.len()
    }

    fn lock(&self) -> MutexGuard<'_, WebhookRecord> {
        // Updates replace fields whole; a poisoned lock holds consistent data.
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the record in place.
    pub fn update(&self, f: impl FnOnce(&mut WebhookRecord)) {
        f(&mut self.lock());
    }
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

/// Builds the record of a delivery (ids parsed from Lean's envelope). With
/// `keep`, only that many bytes of the body are kept, copied, so the whole
/// body is freed.
pub(super) fn parse(
    id: String,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    signature: Verdict,
    keep: Option<usize>,
) -> Stored {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let kind = text(&json, &["type"]);
    let payload_id = text(&json, &["payload", "id"]);
    let (entity_id, results_id) = match kind.as_deref() {
        Some("results.ready") => (text(&json, &["payload", "entity_id"]), payload_id),
        Some(k) if k.starts_with("entity.") => (
            text(&json, &["payload", "entity_id"]).or(payload_id),
            text(&json, &["payload", "results_id"]),
        ),
        _ => (
            text(&json, &["payload", "entity_id"]),
            text(&json, &["payload", "results_id"]),
        ),
    };
    let shown: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let value = if is_secret_header(k.as_str()) {
                "[redacted]".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.to_string(), value)
        })
        .collect();
    let forward = headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "host"
                    | "content-length"
                    | "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "te"
                    | "upgrade"
                    | "proxy-connection"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let body_bytes = body.len();
    let (body, body_truncated) = match keep {
        Some(n) if n < body.len() => (Bytes::copy_from_slice(&body[..n]), true),
        _ => (body, false),
    };
    let record = WebhookRecord {
        id,
        received_at: Utc::now(),
        path: path.to_string(),
        headers: shown,
        body: None,
        body_note: None,
        body_bytes,
        body_truncated,
        kind,
        event_id: text(&json, &["event_id"]),
        entity_id,
        reconnect_id: text(&json, &["payload", "reconnect_id"]),
        results_id,
        signature,
        outcome: Outcome::Accepted,
        resolved_reconnect: None,
        relay: Vec::new(),
    };
    Stored {
        record: Mutex::new(record),
        body,
        forward,
    }
}

/// The received webhooks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Mutex<StoreState>>,
    limit: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct StoreState {
    /// Deliveries with their weight, oldest first.
    items: VecDeque<(Arc<Stored>, usize)>,
    /// The sum of the weights in `items`.
    bytes: usize,
}

/// One page of summaries (no bodies), from [`Store::page`].
#[derive(Debug, Clone)]
pub struct Page {
    /// The newest matching deliveries before the cursor, oldest first.
    pub records: Vec<WebhookRecord>,
    /// The cursor of the next (older) page, when there is one: the id of
    /// this page's oldest delivery.
    pub next_before: Option<String>,
}

impl Store {
    /// A store keeping the last `limit` deliveries, evicting the oldest
    /// while they hold more than `max_bytes`; the newest is kept whatever
    /// its size.
    pub fn new(limit: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StoreState::default())),
            limit: limit.max(1),
            max_bytes,
        }
    }

    /// Event ids this many times the deliveries kept are remembered (see
    /// [`Claims`](super::Claims)).
    pub const CLAIMS_PER_DELIVERY: usize = 4;

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a delivery, evicting the oldest to stay within both bounds.
    pub fn push(&self, stored: Arc<Stored>) {
        let weight = stored.weight();
        // Usually one delivery goes per push; they are freed after the lock
        // is released.
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            inner.items.push_back((stored, weight));
            inner.bytes += weight;
            while inner.items.len() > self.limit
                || (inner.bytes > self.max_bytes && inner.items.len() > 1)
            {
                match inner.items.pop_front() {
                    Some((old, w)) => {
                        inner.bytes -= w;
                        evicted.push(old);
                    }
                    None => break,
                }
            }
        }
        drop(evicted);
    }

    /// A delivery by id.
    pub fn get(&self, id: &str) -> Option<Arc<Stored>> {
        self.lock()
            .items
            .iter()
            .rev()
            .find(|(s, _)| s.lock().id == id)
            .map(|(s, _)| s.clone())
    }

    /// Records, oldest first, with their bodies shown as `redact` says.
    pub fn records(&self, redact: &Redactor) -> Vec<WebhookRecord> {
        self.lock()
            .items
            .iter()
            .map(|(s, _)| s.record(redact))
            .collect()
    }

    /// The newest `limit` deliveries that `keep` accepts, from before the
    /// delivery `before` (from the newest without it), as summaries. `None`
    /// when `before` is not kept (any more).
    pub fn page(
        &self,
        keep: impl Fn(&WebhookRecord) -> bool,
        before: Option<&str>,
        limit: usize,
    ) -> Option<Page> {
        let inner = self.lock();
        let newest = inner.items.iter().rev().map(|(s, _)| s);
        let mut older: Box<dyn Iterator<Item = &Arc<Stored>>> = Box::new(newest);
        if let Some(before) = before {
            let at = inner
                .items
                .iter()
                .rev()
                .position(|(s, _)| s.lock().id == before)?;
            older = Box::new(older.skip(at + 1));
        }
        let mut records = Vec::new();
        let mut more = false;
        for summary in older.map(|s| s.summary()).filter(|r| keep(r)) {
            if records.len() == limit {
                more = true;
                break;
            }
            records.push(summary);
        }
        records.reverse();
        let next_before = more
            .then(|| records.first().map(|r| r.id.clone()))
            .flatten();
        Some(Page {
            records,
            next_before,
        })
    }

    /// Deliveries and bytes kept.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.items.len(), inner.bytes)
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &str) -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert("lean-signature", HeaderValue::from_static("sha512=abc"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("host", HeaderValue::from_static("127.0.0.1:7073"));
        parse(
            "w1".into(),
            "/lean",
            &headers,
            Bytes::from(body.to_string()),
            Verdict::Valid,
            None,
        )
    }

    fn named(id: &str, body: &str) -> Arc<Stored> {
        let s = stored(body);
        s.update(|r| r.id = id.into());
        Arc::new(s)
    }

    #[test]
    fn ids_come_from_the_payload_by_type() {
        let r = stored(r#"{"type":"entity.reconnected","payload":{"id":"e-1","reconnect_id":"r-1"},"event_id":"ev"}"#).record(&Redactor::default());
        assert_eq!(
            (r.entity_id.as_deref(), r.reconnect_id.as_deref()),
            (Some("e-1"), Some("r-1"))
        );
        let r = stored(r#"{"type":"results.ready","payload":{"id":"res-1"}}"#)
            .record(&Redactor::default());
        assert_eq!(
            (r.entity_id, r.results_id.as_deref()),
            (None, Some("res-1"))
        );
    }

    #[test]
    fn signature_is_redacted_in_the_record_but_forwarded() {
        let s = stored("{}");
        let shown = s.record(&Redactor::default()).headers;
        assert!(shown.contains(&("lean-signature".into(), "[redacted]".into())));
        assert!(s
            .forward
            .iter()
            .any(|(k, v)| k == "lean-signature" && v == "sha512=abc"));
        assert!(!s.forward.iter().any(|(k, _)| k == "host"));
    }

    #[test]
    fn store_is_bounded() {
        let store = Store::new(2, usize::MAX);
        for i in 0..3 {
            let s = stored("{}");
            s.update(|r| r.id = format!("w{i}"));
            store.push(Arc::new(s));
        }
        let ids: Vec<String> = store
            .records(&Redactor::default())
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["w1", "w2"]);
    }

    #[test]
    fn store_evicts_the_oldest_to_stay_within_its_bytes() {
        let big = "x".repeat(10_000);
        let one = named("w0", &big).weight();
        let store = Store::new(100, 3 * one);
        for i in 0..5 {
            store.push(named(&format!("w{i}"), &big));
        }
        let ids: Vec<String> = store
            .records(&Redactor::default())
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["w2", "w3", "w4"]);
        assert_eq!(store.usage(), (3, 3 * one));
        // One delivery larger than the bound is still kept, alone.
        store.push(named("huge", &"y".repeat(40_000)));
        assert_eq!(store.usage().0, 1);
    }

    #[test]
    fn a_kept_prefix_is_a_copy_marked_truncated_with_the_full_length() {
        let body = Bytes::from(vec![b'a'; 100_000]);
        let s = parse(
            "w".into(),
            "/",
            &HeaderMap::new(),
            body,
            Verdict::Missing,
            Some(REJECTED_PREFIX),
        );
        let r = s.record(&Redactor::off());
        assert_eq!(s.body.len(), REJECTED_PREFIX);
        assert_eq!(r.body.map(|b| b.len()), Some(REJECTED_PREFIX));
        // Redacting, a prefix is described, not shown.
        let shown = s.record(&Redactor::default());
        assert_eq!(shown.body, None);
        assert!(shown
            .body_note
            .unwrap()
            .starts_with("the first 1024 of 100000 bytes are kept"));
        assert!(r.body_truncated);
        assert_eq!(r.body_bytes, 100_000);
        assert!(s.weight() < 2 * REJECTED_PREFIX);
    }

    #[test]
    fn pages_go_back_from_the_newest_and_carry_no_bodies() {
        let store = Store::new(100, usize::MAX);
        for i in 0..5 {
            store.push(named(&format!("w{i}"), "{}"));
        }
        let ids = |p: &Page| p.records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let first = store.page(|_| true, None, 2).unwrap();
        assert_eq!(ids(&first), ["w3", "w4"]);
        assert!(first.records.iter().all(|r| r.body.is_none()));
        assert_eq!(first.next_before.as_deref(), Some("w3"));
        let second = store.page(|_| true, Some("w3"), 2).unwrap();
        assert_eq!(ids(&second), ["w1", "w2"]);
        let last = store.page(|_| true, Some("w1"), 2).unwrap();
        assert_eq!(
            (ids(&last), last.next_before),
            (vec!["w0".to_string()], None)
        );
        let odd = store.page(|r| r.id != "w3", None, 2).unwrap();
        assert_eq!(ids(&odd), ["w2", "w4"]);
        assert!(store.page(|_| true, Some("gone"), 2).is_none());
    }
}
