//! Where the fault rules' counters and quotas are kept: [`QuotaStore`] (with a
//! [`RuleQuota`] per installed rule), and [`MemoryQuotas`], today's backend,
//! atomics and small maps in memory.
//!
//! What is kept here is what several replicas would have to share for a rule
//! to mean the same across them: a rule's matches (`after`), what is left of
//! its `count`, its applications, its `rate_limit` window, the windows of
//! `rate_limit` one-offs (`x-leanproxy-fault`), and the entities held in a
//! sticky synthetic reconnect. The rules themselves, whether one is paused,
//! and the seeded RNG stay with each replica's [`FaultRules`](super::FaultRules).
//!
//! The second backend, for several replicas, is `RedisQuotas` (`redis.rs`:
//! `INCR` and Lua scripts for `count` and the windows, keys named by rule id
//! and installation, a hash of sticky entities), checked by the same
//! contract (`quota_contract.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;
use uuid::Uuid;

use crate::backend::Op;
use crate::sync::lock;

/// How many distinct `rate_limit` header texts keep a window.
const MAX_HEADER_WINDOWS: usize = 1024;

/// A rule's counters, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Requests that matched while it was live.
    pub(crate) matched: u64,
    /// Requests it faulted.
    pub(crate) applied: u64,
    /// What is left of its `count`, when it has one.
    pub(crate) remaining: Option<u64>,
}

/// What taking one of a rule's `count` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// One taken, more are left (or the rule has no `count`).
    Took,
    /// The last one taken: the rule retires.
    Last,
    /// None was left: another request took the last one.
    Gone,
}

/// An entity held in a sticky synthetic reconnect: every call naming it gets
/// the same answer until the registry resolves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Sticky {
    /// The rule that made it.
    pub(crate) rule: String,
    /// The reconnect id the answers carry (v1).
    pub(crate) reconnect_id: Uuid,
    /// The results id the answers carry (v2's reconnect id).
    pub(crate) results_id: Uuid,
    /// When the hold began (a hold written before this field existed counts
    /// from when it is read).
    #[serde(default = "chrono::Utc::now")]
    pub(crate) since: chrono::DateTime<chrono::Utc>,
}

/// The counters of one installed rule. On the request path: a request that a
/// live rule matches takes [`count_match`](Self::count_match), then, as the
/// rule says, [`over_quota`](Self::over_quota), [`take`](Self::take) and
/// [`count_applied`](Self::count_applied), each awaited in the fault layer's
/// future (the memory backend answers each at once). Only requests that a
/// rule matches pay for them.
pub(crate) trait RuleQuota: Send + Sync + fmt::Debug {
    /// Counts a match; the matches counted before this one (for `after`).
    fn count_match(&self) -> Op<u64>;

    /// Counts a request against the rule's `rate_limit` window (`limit`
    /// requests per `window`, which starts at the first request after the
    /// previous one ended); `Some(retry_after)` (whole seconds until the
    /// window ends, at least 1) when it is over.
    fn over_quota(&self, limit: u64, window: Duration, now: Instant) -> Op<Option<u64>>;

    /// Takes one of the rule's `count`.
    fn take(&self) -> Op<Take>;

    /// Counts an application (a request faulted).
    fn count_applied(&self) -> Op<()>;

    /// The counters, for the listing.
    fn counters(&self) -> Op<Counters>;
}

/// The fault rules' counters and quotas, wherever they are kept.
pub(crate) trait QuotaStore: Send + Sync + fmt::Debug {
    /// The counters of the rule `id` in its `installation` (a name each
    /// installation has, the same on every replica), with `count`
    /// applications when it has a `count`. Called when a rule is installed,
    /// not per request: a network backend names its keys here.
    fn rule(&self, id: &str, installation: &str, count: Option<u64>) -> Arc<dyn RuleQuota>;

    /// Counts a request against the `rate_limit` window of the one-off rule
    /// written `key` (an `x-leanproxy-fault` header's text), as
    /// [`RuleQuota::over_quota`] does. Request path, for such requests.
    fn over_quota(&self, key: &str, limit: u64, window: Duration, now: Instant) -> Op<Option<u64>>;

    /// Holds `entity` in a sticky synthetic reconnect.
    fn hold(&self, entity: &str, sticky: Sticky) -> Op<()>;

    /// The sticky reconnect `entity` is held in. Request path, for requests
    /// naming an entity while [`holds_any`](Self::holds_any).
    fn held(&self, entity: &str) -> Op<Option<Sticky>>;

    /// Lets `entity` go.
    fn release(&self, entity: &str) -> Op<()>;

    /// Whether any entity may be held. Request path, for every request while
    /// no rule is installed (the fault layer's way around all of it): it must
    /// answer from memory, so a network backend keeps a local hint (set when
    /// it holds or learns of a hold), erring towards `true`.
    fn holds_any(&self) -> bool;

    /// Brings what [`holds_any`](Self::holds_any) answers from up to date
    /// (a network backend: whether another replica holds an entity). Called
    /// about once a second and when a replica says it held one.
    fn refresh(&self) -> Op<()> {
        Op::ready(())
    }
}

/// Today's backend: everything in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryQuotas {
    /// `rate_limit` windows of one-off rules, by their header text.
    header_windows: Mutex<HashMap<String, (Window, Duration)>>,
    sticky: DashMap<String, Sticky>,
    /// Entities in `sticky`, read without touching the map's shards.
    held: AtomicUsize,
}

impl MemoryQuotas {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }
}

impl QuotaStore for MemoryQuotas {
    fn rule(&self, _id: &str, _installation: &str, count: Option<u64>) -> Arc<dyn RuleQuota> {
        Arc::new(MemoryRuleQuota {
            matched: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            remaining: count.map(AtomicU64::new),
            window: Mutex::new(Window::default()),
        })
    }

    fn over_quota(&self, key: &str, limit: u64, window: Duration, now: Instant) -> Op<Option<u64>> {
        let mut windows = lock(&self.header_windows);
        if !windows.contains_key(key) && windows.len() >= MAX_HEADER_WINDOWS {
            // Bounded: ended windows go first; if none has, the oldest.
            windows.retain(|_, (w, length)| !w.ended(*length, now));
            if windows.len() >= MAX_HEADER_WINDOWS {
                windows.clear();
            }
        }
        let (w, length) = windows
            .entry(key.to_string())
            .or_insert_with(|| (Window::default(), window));
        *length = window;
        Op::ready(w.over_quota(limit, window, now))
    }

    fn hold(&self, entity: &str, sticky: Sticky) -> Op<()> {
        if self.sticky.insert(entity.to_string(), sticky).is_none() {
            self.held.fetch_add(1, Ordering::AcqRel);
        }
        Op::ready(())
    }

    fn held(&self, entity: &str) -> Op<Option<Sticky>> {
        Op::ready(self.sticky.get(entity).map(|s| s.clone()))
    }

    fn release(&self, entity: &str) -> Op<()> {
        if self.sticky.remove(entity).is_some() {
            self.held.fetch_sub(1, Ordering::AcqRel);
        }
        Op::ready(())
    }

    fn holds_any(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }
}

/// One rule's counters in memory: atomics, so `count` is exact under any
/// concurrency, and its window under a lock held for the count.
#[derive(Debug)]
struct MemoryRuleQuota {
    matched: AtomicU64,
    applied: AtomicU64,
    /// What is left of `count`.
    remaining: Option<AtomicU64>,
    window: Mutex<Window>,
}

impl RuleQuota for MemoryRuleQuota {
    fn count_match(&self) -> Op<u64> {
        Op::ready(self.matched.fetch_add(1, Ordering::Relaxed))
    }

    fn over_quota(&self, limit: u64, window: Duration, now: Instant) -> Op<Option<u64>> {
        Op::ready(lock(&self.window).over_quota(limit, window, now))
    }

    fn take(&self) -> Op<Take> {
        let Some(remaining) = &self.remaining else {
            return Op::ready(Take::Took);
        };
        Op::ready(
            match remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
            {
                Ok(1) => Take::Last,
                Ok(_) => Take::Took,
                Err(_) => Take::Gone,
            },
        )
    }

    fn count_applied(&self) -> Op<()> {
        self.applied.fetch_add(1, Ordering::Relaxed);
        Op::ready(())
    }

    fn counters(&self) -> Op<Counters> {
        Op::ready(Counters {
            matched: self.matched.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            remaining: self.remaining.as_ref().map(|r| r.load(Ordering::Relaxed)),
        })
    }
}

/// A `rate_limit` window.
#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    seen: u64,
}

impl Window {
    /// Counts a request; `Some(retry_after)` (whole seconds until the window
    /// ends, at least 1) when it is over `limit`.
    fn over_quota(&mut self, limit: u64, window: Duration, now: Instant) -> Option<u64> {
        let start = match self.start {
            Some(start) if now.saturating_duration_since(start) < window => start,
            _ => {
                self.start = Some(now);
                self.seen = 0;
                now
            }
        };
        self.seen += 1;
        (self.seen > limit).then(|| {
            let left = window.saturating_sub(now.saturating_duration_since(start));
            (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
        })
    }

    /// Whether the window has ended by `now` (it can be forgotten).
    fn ended(&self, window: Duration, now: Instant) -> bool {
        self.start
            .is_none_or(|start| now.saturating_duration_since(start) >= window)
    }
}
