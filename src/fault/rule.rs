//! The validated rule: what it matches, what it does, and how often. Built from a
//! [`RawRule`] or a spec, never from unchecked input.

use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use super::action::{read_action, write_action, Action, ACTION_NAMES};
use super::error::RuleError;
use super::matcher::Match;
use super::raw::{RawMatch, RawRule};
use super::value::{duration, nonzero, probability, show_duration, text, uint};

/// A fault rule, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique among the installed rules; shown in `x-leanproxy-injected`.
    pub id: String,
    /// Which requests it applies to.
    pub matcher: Match,
    /// What it does.
    pub action: Action,
    /// Chance (0–1) that a match is faulted, drawn from the seeded RNG.
    pub probability: f64,
    /// Apply this many times, then retire.
    pub count: Option<u64>,
    /// Retire this long after installation.
    pub ttl: Option<Duration>,
    /// Let the first `after` matches pass untouched.
    pub after: u64,
}

/// Parses and validates a rule given as JSON (the admin API's body).
pub fn parse_rule(value: Value) -> Result<Rule, RuleError> {
    if !value.is_object() {
        return Err(RuleError::new("rule", "must be a JSON object"));
    }
    // Every field of a written rule takes any value, and the action's keys
    // any name: reading an object cannot fail; validation names what is wrong.
    let raw: RawRule =
        serde_json::from_value(value).map_err(|e| RuleError::new("rule", e.to_string()))?;
    Rule::from_raw(raw)
}

impl Rule {
    /// Validates a written rule. Generates an id when none is given.
    pub fn from_raw(raw: RawRule) -> Result<Rule, RuleError> {
        let action = match &raw.action {
            Some(name) => read_action(name, &raw.params)?,
            None => {
                return Err(RuleError::new(
                    "action",
                    format!("missing (one of {})", ACTION_NAMES.join(", ")),
                ))
            }
        };
        let id = match &raw.id {
            Some(v) => checked_id(text("id", v)?)?,
            None => generated_id(),
        };
        let probability = match &raw.probability {
            Some(v) => probability(v)?,
            None => 1.0,
        };
        let count = raw.count.as_ref().map(|v| uint("count", v)).transpose()?;
        if count == Some(0) {
            return Err(RuleError::new(
                "count",
                "0 would never apply (give 1 or more, or leave it out)",
            ));
        }
        let ttl = raw
            .ttl
            .as_ref()
            .map(|v| nonzero(duration("ttl", v)?, "ttl"))
            .transpose()?;
        let after = raw.after.as_ref().map(|v| uint("after", v)).transpose()?;
        let matcher = raw
            .matcher
            .as_ref()
            .map(|m| Match::from_raw(&RawMatch::from_value(m)?))
            .transpose()?;
        Ok(Rule {
            id,
            matcher: matcher.unwrap_or_default(),
            action,
            probability,
            count,
            ttl,
            after: after.unwrap_or(0),
        })
    }

    /// The rule as written, for listing; [`Rule::from_raw`] gives it back.
    pub fn to_raw(&self) -> RawRule {
        let mut raw = RawRule {
            id: Some(json!(self.id)),
            action: Some(json!(self.action.name())),
            matcher: (self.matcher != Match::default()).then(|| self.matcher.to_raw().to_value()),
            probability: (self.probability != 1.0).then(|| json!(self.probability)),
            count: self.count.map(|c| json!(c)),
            ttl: self.ttl.map(show_duration),
            after: (self.after > 0).then(|| json!(self.after)),
            ..RawRule::default()
        };
        write_action(&self.action, &mut raw.params);
        raw
    }
}

fn checked_id(id: String) -> Result<String, RuleError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !ok {
        return Err(RuleError::new(
            "id",
            format!("`{id}` must be 1–64 letters, digits, `-`, `_`, `.` or `:`"),
        ));
    }
    Ok(id)
}

fn generated_id() -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("fault-{}", &uuid[..8])
}

/// Whether a match with this probability is faulted.
pub(super) fn hit(rng: Option<&mut impl Rng>, probability: f64) -> bool {
    match rng {
        _ if probability >= 1.0 => true,
        Some(rng) => rng.random::<f64>() < probability,
        None => false,
    }
}
