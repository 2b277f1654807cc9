//! One installed rule and its counters: matches, applications, what is left of
//! its `count`, its ttl and, for `rate_limit`, the current window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::sync::lock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::rule::Rule;
use super::rules::RuleView;

/// An installed rule and its counters.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) rule: Rule,
    installed_at: Instant,
    installed_wall: DateTime<Utc>,
    /// Matches while live.
    pub(super) matched: AtomicU64,
    /// Faults produced.
    pub(super) applied: AtomicU64,
    /// What is left of `count`.
    pub(super) remaining: Option<AtomicU64>,
    /// Set when `count` is used up.
    pub(super) retired: AtomicBool,
    window: Mutex<Window>,
}

/// A `rate_limit` rule's current window.
#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    seen: u64,
}

impl Live {
    pub(super) fn new(rule: Rule, now: Instant) -> Self {
        Self {
            remaining: rule.count.map(AtomicU64::new),
            rule,
            installed_at: now,
            installed_wall: Utc::now(),
            matched: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            window: Mutex::new(Window::default()),
        }
    }

    pub(super) fn is_live(&self, now: Instant) -> bool {
        !self.retired.load(Ordering::Acquire)
            && self
                .rule
                .ttl
                .is_none_or(|ttl| now.saturating_duration_since(self.installed_at) < ttl)
    }

    /// Counts a request against the window; `Some(retry_after)` when over quota.
    pub(super) fn over_quota(&self, limit: u64, window: Duration, now: Instant) -> Option<u64> {
        let mut w = lock(&self.window);
        let start = match w.start {
            Some(start) if now.saturating_duration_since(start) < window => start,
            _ => {
                w.start = Some(now);
                w.seen = 0;
                now
            }
        };
        w.seen += 1;
        (w.seen > limit).then(|| {
            let left = window.saturating_sub(now.saturating_duration_since(start));
            (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
        })
    }

    pub(super) fn view(&self, now: Instant) -> RuleView {
        RuleView {
            rule: self.rule.to_raw(),
            matched: self.matched.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            remaining: self.remaining.as_ref().map(|r| r.load(Ordering::Relaxed)),
            installed_at: self.installed_wall,
            expires_at: self
                .rule
                .ttl
                .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
                .map(|ttl| self.installed_wall + ttl),
            retired: !self.is_live(now),
        }
    }
}
