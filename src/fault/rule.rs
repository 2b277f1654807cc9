//! The validated rule: what it matches, what it does, and how often. Built from a
//! [`RawRule`](super::RawRule) or a spec, never from unchecked input.

use std::f64::consts::TAU;
use std::fmt;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use rand::Rng;

use super::matcher::Match;
use super::preset::Preset;

/// Longest delay, `timeout` hold or rate-limit window a rule may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 60);
/// How long `timeout` holds a request when the rule does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The `rate_limit` window when the rule does not say.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

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

/// How long a `delay` fault waits before forwarding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between `min` and `max` (inclusive).
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
    /// Normally distributed, clamped to `[0, mean + 4 × stddev]` and to
    /// [`MAX_DURATION`].
    Normal {
        /// Mean.
        mean: Duration,
        /// Standard deviation.
        stddev: Duration,
    },
}

/// What a matching rule does to the exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Wait, then forward.
    Delay(Delay),
    /// Answer with this status and body instead of forwarding.
    Status {
        /// The HTTP status (200–599).
        code: StatusCode,
        /// The body.
        body: String,
        /// The `content-type` of the body.
        content_type: HeaderValue,
    },
    /// Answer with Lean's error envelope.
    LeanError(Preset),
    /// Answer with a synthetic `RECONNECT_REQUIRED` (v1 or v2 shape, from the
    /// path) with a fresh reconnect id.
    ReconnectRequired {
        /// Keep answering it for the entity, with the same id, until the
        /// registry marks it resolved.
        sticky: bool,
    },
    /// Answer with Lean's data error: HTTP 200, `status: FAILED`.
    Failed {
        /// The `status_detail.granular_status_code`, e.g. `BANK_MAINTENANCE`.
        granular_status_code: String,
    },
    /// Answer with `status: PENDING` and a results id.
    Pending,
    /// Answer 429 `RATE_LIMIT_EXCEEDED` once more than `limit` matching
    /// requests arrived in the current `window`.
    RateLimit {
        /// Requests allowed per window.
        limit: u64,
        /// Length of a window, starting at its first request.
        window: Duration,
    },
    /// Close the client connection without answering.
    Reset,
    /// Hold the request without answering for `hold`, then close.
    Timeout {
        /// How long to hold (at most [`MAX_DURATION`]).
        hold: Duration,
    },
    /// Forward, but cut the response body after this many bytes and close.
    Truncate {
        /// Bytes of the real body that are sent.
        after_bytes: u64,
    },
    /// Forward, but replace the body with malformed JSON.
    Corrupt,
    /// Forward, streaming the body at this rate.
    Throttle {
        /// Bytes per second.
        bytes_per_second: u64,
    },
}

/// Action names as written in rules and specs.
pub const ACTION_NAMES: [&str; 12] = [
    "delay",
    "status",
    "lean_error",
    "reconnect_required",
    "failed",
    "pending",
    "rate_limit",
    "reset",
    "timeout",
    "truncate",
    "corrupt",
    "throttle",
];

impl Action {
    /// The action's name as written in rules (`reconnect_required`, not its
    /// `reconnect` alias).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Delay(_) => "delay",
            Action::Status { .. } => "status",
            Action::LeanError(_) => "lean_error",
            Action::ReconnectRequired { .. } => "reconnect_required",
            Action::Failed { .. } => "failed",
            Action::Pending => "pending",
            Action::RateLimit { .. } => "rate_limit",
            Action::Reset => "reset",
            Action::Timeout { .. } => "timeout",
            Action::Truncate { .. } => "truncate",
            Action::Corrupt => "corrupt",
            Action::Throttle { .. } => "throttle",
        }
    }
}

/// Why a rule was refused: the field (or spec token) and the reason. Displayed as
/// `<field>: <reason>`, e.g. `probability: 1.5 is not between 0 and 1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    /// The field, e.g. `count` or `match.path`; in a spec, the token's key.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RuleError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Translates a serde error about a [`RawRule`](super::RawRule) (unknown or
    /// repeated key, a table where a value was expected) into one naming the key.
    pub fn from_serde(error: &dyn fmt::Display) -> Self {
        let message = error.to_string();
        let quoted = message.split('`').nth(1).map(str::to_owned);
        if message.starts_with("unknown field") {
            let key = quoted.unwrap_or_default();
            // RawMatch's keys are the only ones that include `method`.
            let in_match = message.contains("`method`") && !message.contains("`action`");
            let field = if in_match {
                format!("match.{key}")
            } else {
                key
            };
            let expected = message
                .split_once("expected ")
                .map(|(_, rest)| format!(" (expected {rest})"))
                .unwrap_or_default();
            return Self::new(field, format!("unknown key{expected}"));
        }
        if message.starts_with("duplicate field") {
            return Self::new(quoted.unwrap_or_default(), "given twice");
        }
        if message.contains("RawMatch") {
            return Self::new("match", "must be a table of conditions");
        }
        if message.contains("RawRule") {
            return Self::new("rule", "must be a table (JSON object)");
        }
        Self::new("rule", message)
    }
}

/// Whether a match with this probability is faulted.
pub(super) fn hit(rng: Option<&mut impl Rng>, probability: f64) -> bool {
    match rng {
        _ if probability >= 1.0 => true,
        Some(rng) => rng.random::<f64>() < probability,
        None => false,
    }
}

impl Action {
    /// The concrete delay of a `delay` action, drawn from `rng` (the lower
    /// bound or mean without one).
    pub(super) fn sample_delay(&self, rng: Option<&mut impl Rng>) -> Option<Duration> {
        let Action::Delay(delay) = self else {
            return None;
        };
        Some(match (delay, rng) {
            (Delay::Fixed(d), _) => *d,
            (Delay::Uniform { min, max }, Some(rng)) => {
                let nanos = |d: &Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.random_range(nanos(min)..=nanos(max)))
            }
            (Delay::Normal { mean, stddev }, Some(rng)) => {
                // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos();
                let cap = mean
                    .saturating_add(stddev.saturating_mul(4))
                    .min(MAX_DURATION)
                    .as_secs_f64();
                let secs = mean.as_secs_f64() + z * stddev.as_secs_f64();
                Duration::from_secs_f64(secs.clamp(0.0, cap))
            }
            (Delay::Uniform { min, .. }, None) => *min,
            (Delay::Normal { mean, .. }, None) => *mean,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_displays_field_then_reason() {
        let e = RuleError::new("probability", "1.5 is not between 0 and 1");
        assert_eq!(e.to_string(), "probability: 1.5 is not between 0 and 1");
    }

    #[test]
    fn action_names_are_listed_in_order() {
        assert_eq!(Action::Pending.name(), "pending");
        assert_eq!(
            Action::ReconnectRequired { sticky: true }.name(),
            "reconnect_required"
        );
        assert!(ACTION_NAMES.contains(&Action::Corrupt.name()));
    }
}
