//! A rule as the admin API lists it and the CLI reads it back: the written
//! rule with its counters.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::live::Live;
use super::quota::Counters;
use super::raw::RawRule;
use crate::backend::Op;

/// A rule as listed by the admin API and the CLI: the written rule and its
/// counters. It reads back from what it writes (the CLI's admin client).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    /// The rule, in the shape it is written in.
    #[serde(flatten)]
    pub rule: RawRule,
    /// Requests that matched while it was live (including those let through by
    /// `after`, `probability` or the rate limit's quota).
    pub matched: u64,
    /// Requests it faulted.
    pub applied: u64,
    /// Applications left, when it has a `count`.
    pub remaining: Option<u64>,
    /// When it was installed.
    pub installed_at: DateTime<Utc>,
    /// When its `ttl` ends.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether its `count` is used up or its `ttl` has passed.
    pub retired: bool,
    /// Whether it is paused (kept, offered no request).
    pub paused: bool,
}

/// `live` as listed at `now`, with its `counters`.
pub(super) fn view(live: &Live, counters: Counters, now: Instant) -> RuleView {
    RuleView {
        rule: live.rule.to_raw(),
        matched: counters.matched,
        applied: counters.applied,
        remaining: counters.remaining,
        installed_at: live.installed_wall,
        expires_at: live
            .rule
            .ttl
            .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
            .map(|ttl| live.installed_wall + ttl),
        // Another replica may have taken the last one.
        retired: !live.is_live(now) || counters.remaining == Some(0),
        paused: live.paused.load(Ordering::Relaxed),
    }
}

/// The views of `rules` at `now`.
pub(super) fn views(rules: Vec<Arc<Live>>, now: Instant) -> Op<Vec<RuleView>> {
    let counters = Op::all(rules.iter().map(|l| l.quota.counters()).collect());
    counters.map(move |counters| {
        rules
            .iter()
            .zip(counters)
            .map(|(l, c)| view(l, c, now))
            .collect()
    })
}

impl<'de> Deserialize<'de> for RuleView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The rule's keys are flattened beside the counters, and the rule
        // refuses unknown keys: the counters are taken out first.
        #[derive(Deserialize)]
        struct Counters {
            matched: u64,
            applied: u64,
            remaining: Option<u64>,
            installed_at: DateTime<Utc>,
            expires_at: Option<DateTime<Utc>>,
            retired: bool,
            #[serde(default)]
            paused: bool,
        }
        const COUNTERS: [&str; 7] = [
            "matched",
            "applied",
            "remaining",
            "installed_at",
            "expires_at",
            "retired",
            "paused",
        ];
        use serde::de::Error;
        let mut rule = serde_json::Map::deserialize(d)?;
        let counters: serde_json::Map<String, serde_json::Value> = COUNTERS
            .iter()
            .filter_map(|k| rule.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let c: Counters = serde_json::from_value(serde_json::Value::Object(counters))
            .map_err(D::Error::custom)?;
        let rule: RawRule =
            serde_json::from_value(serde_json::Value::Object(rule)).map_err(D::Error::custom)?;
        Ok(RuleView {
            rule,
            matched: c.matched,
            applied: c.applied,
            remaining: c.remaining,
            installed_at: c.installed_at,
            expires_at: c.expires_at,
            retired: c.retired,
            paused: c.paused,
        })
    }
}
