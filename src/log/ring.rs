//! The request log's ring buffer: the last exchanges, bounded in count and in
//! bytes kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::record::ExchangeRecord;

/// Filters of `GET /api/requests`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// HTTP status.
    pub status: Option<u16>,
    /// Lean status.
    pub lean_status: Option<String>,
    /// Entity id.
    pub entity_id: Option<String>,
    /// Path prefix.
    pub path_prefix: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Status class: 2 for 2xx, … 5 for 5xx.
    pub status_class: Option<u16>,
    /// Fault: a rule id, `any` (some fault) or `none`.
    pub fault: Option<String>,
    /// The `[[routes]]` target by name; `default` for the default upstream.
    pub route: Option<String>,
    /// Text found in the path, the query or a body as shown (redacted),
    /// ignoring case.
    pub text: Option<String>,
    /// Most records returned.
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether `r` passes every filter but `limit`.
    pub fn matches(&self, r: &ExchangeRecord) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.status.is_none_or(|s| r.status == s)
            && self.status_class.is_none_or(|c| r.status / 100 == c)
            && same(&self.lean_status, r.lean_status.as_deref())
            && same(&self.entity_id, r.entity_id.as_deref())
            && self
                .method
                .as_deref()
                .is_none_or(|m| r.method.as_str().eq_ignore_ascii_case(m))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| r.path.starts_with(p))
            && match self.fault.as_deref() {
                None => true,
                Some("any") => r.fault.is_some(),
                Some("none") => r.fault.is_none(),
                Some(rule) => r.fault.as_deref() == Some(rule),
            }
            && match self.route.as_deref() {
                None => true,
                Some("default") => r.route.is_none(),
                Some(name) => r.route.as_deref() == Some(name),
            }
            && self.text.as_deref().is_none_or(|t| mentions(r, t))
    }
}

/// Whether `needle` (any case) is in the record's path, query or shown bodies.
fn mentions(r: &ExchangeRecord, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    let has = |s: &str| s.to_lowercase().contains(&needle);
    has(&r.path)
        || r.query.as_deref().is_some_and(has)
        || [&r.request_body, &r.response_body]
            .into_iter()
            .flatten()
            .any(|c| c.render().text.as_deref().is_some_and(has))
}

/// The ring buffer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ring {
    inner: Arc<Mutex<RingState>>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct RingState {
    items: VecDeque<(Arc<ExchangeRecord>, usize)>,
    bytes: usize,
}

impl Ring {
    /// A ring keeping at most `max_entries` records and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(RingState::default())),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        // Pushes and pops keep `bytes` in step; a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `record`, evicting the oldest to stay within both bounds.
    ///
    /// Shared with the journal's queue, so it is not copied; the evicted
    /// records are freed after the lock is released.
    pub fn push(&self, record: Arc<ExchangeRecord>) {
        if self.max_entries == 0 {
            return;
        }
        let mut record = record;
        let mut weight = record.weight();
        if weight > self.max_bytes {
            record = Arc::new(Arc::unwrap_or_clone(record).without_bodies());
            weight = record.weight();
        }
        // Usually one record goes per push; only more need a Vec.
        let (mut evicted, mut more) = (None, Vec::new());
        {
            let mut inner = self.lock();
            inner.items.push_back((record, weight));
            inner.bytes += weight;
            while inner.items.len() > self.max_entries || inner.bytes > self.max_bytes {
                match inner.items.pop_front() {
                    Some((old, w)) => {
                        inner.bytes -= w;
                        match evicted {
                            None => evicted = Some(old),
                            Some(_) => more.push(old),
                        }
                    }
                    None => break,
                }
            }
        }
        drop((evicted, more));
    }

    /// Records matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Vec<Arc<ExchangeRecord>> {
        let inner = self.lock();
        inner
            .items
            .iter()
            .rev()
            .map(|(r, _)| r)
            .filter(|r| filter.matches(r))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// One record by request id.
    pub fn get(&self, id: &str) -> Option<Arc<ExchangeRecord>> {
        self.lock()
            .items
            .iter()
            .rev()
            .find(|(r, _)| r.id == id)
            .map(|(r, _)| r.clone())
    }

    /// Records and bytes kept.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.items.len(), inner.bytes)
    }

    /// The byte cap.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}
