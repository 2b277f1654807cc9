//! One installed rule: its counters and quotas (kept by the rule set's
//! [`QuotaStore`](super::quota::QuotaStore)), when it was installed, and
//! whether it is paused or retired.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::quota::RuleQuota;
use super::rule::Rule;

/// An installed rule.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) rule: Rule,
    /// Names this installation's counters; the same on every replica.
    pub(super) installation: String,
    installed_at: Instant,
    pub(super) installed_wall: DateTime<Utc>,
    /// Matches, applications, what is left of `count`, the `rate_limit`
    /// window.
    pub(super) quota: Arc<dyn RuleQuota>,
    /// Set once its `count` is used up. Kept here, not in the quota store:
    /// every evaluation reads it for every rule. Another replica that takes
    /// the last one makes this one's next take find none left: the request
    /// goes on to the next rule, as when another request took it.
    pub(super) retired: AtomicBool,
    /// Set while the rule is paused: kept with its counters, offered nothing.
    pub(super) paused: AtomicBool,
}

impl Live {
    pub(super) fn new(
        rule: Rule,
        installation: String,
        quota: Arc<dyn RuleQuota>,
        at: (Instant, DateTime<Utc>),
    ) -> Self {
        Self {
            rule,
            installation,
            installed_at: at.0,
            installed_wall: at.1,
            quota,
            retired: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        }
    }

    pub(super) fn is_live(&self, now: Instant) -> bool {
        !self.retired.load(Ordering::Acquire)
            && self
                .rule
                .ttl
                .is_none_or(|ttl| now.saturating_duration_since(self.installed_at) < ttl)
    }
}
