//! One installed rule and its counters: matches, applications, what is left of
//! its `count`, its ttl and, for `rate_limit`, the current window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::sync::lock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::rule::Rule;

/// An installed rule and its counters.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) rule: Rule,
    installed_at: Instant,
    pub(super) installed_wall: DateTime<Utc>,
    /// Matches while live.
    pub(super) matched: AtomicU64,
    /// Faults produced.
    pub(super) applied: AtomicU64,
    /// What is left of `count`.
    pub(super) remaining: Option<AtomicU64>,
    /// Set when `count` is used up.
    pub(super) retired: AtomicBool,
    /// Set while the rule is paused: kept with its counters, offered nothing.
    pub(super) paused: AtomicBool,
    window: Mutex<Window>,
}

/// A `rate_limit` rule's current window.
#[derive(Debug, Default)]
pub(super) struct Window {
    start: Option<Instant>,
    seen: u64,
}

impl Window {
    /// Counts a request; `Some(retry_after)` (whole seconds until the window
    /// ends, at least 1) when it is over `limit`.
    pub(super) fn over_quota(&mut self, limit: u64, window: Duration, now: Instant) -> Option<u64> {
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
    pub(super) fn ended(&self, window: Duration, now: Instant) -> bool {
        self.start
            .is_none_or(|start| now.saturating_duration_since(start) >= window)
    }
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
            paused: AtomicBool::new(false),
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
        lock(&self.window).over_quota(limit, window, now)
    }
}
