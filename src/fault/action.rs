//! What a rule does: [`Action`], and the one table that says, for each action,
//! its name, the keys it reads, how it is read from them and written back.
//!
//! Adding an action: a variant of [`Action`], an entry in [`ACTIONS`] (its
//! name, keys and reader), an arm in [`write_action`], and what the fault layer
//! does with it (`layer.rs`).

use std::f64::consts::TAU;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::error::RuleError;
use super::preset::{Preset, DEFAULT_GRANULAR_STATUS};
use super::value::{boolean, bounded, nonzero, show_duration, text, uint, MAX_DURATION};

/// How long `timeout` holds a request when the rule does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The `rate_limit` window when the rule does not say.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

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

/// An action's own keys, as written (a rule's `params`).
pub(super) struct Params<'a> {
    name: &'static str,
    keys: &'a Map<String, Value>,
}

impl<'a> Params<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.keys.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, RuleError> {
        self.get(key)
            .ok_or_else(|| RuleError::new(key, format!("required for action `{}`", self.name)))
    }
}

/// One action: its name as written, the keys it reads, and how it reads them.
pub(super) struct ActionSpec {
    /// The name in rules and specs.
    pub(super) name: &'static str,
    /// The keys it reads; any other action key is refused.
    pub(super) keys: &'static [&'static str],
    /// Reads the action from its keys.
    read: fn(&Params<'_>) -> Result<Action, RuleError>,
}

/// Every action, in the order they are listed.
pub(super) const ACTIONS: [ActionSpec; 12] = [
    ActionSpec {
        name: "delay",
        keys: &[
            "delay",
            "delay_min",
            "delay_max",
            "delay_mean",
            "delay_stddev",
        ],
        read: |p| delay(p).map(Action::Delay),
    },
    ActionSpec {
        name: "status",
        keys: &["status", "body", "content_type"],
        read: status,
    },
    ActionSpec {
        name: "lean_error",
        keys: &["lean_error"],
        read: |p| {
            let preset = text("lean_error", p.required("lean_error")?)?;
            Preset::from_name(&preset)
                .map(Action::LeanError)
                .ok_or_else(|| {
                    let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                    RuleError::new(
                        "lean_error",
                        format!("`{preset}` is not one of {}", names.join(", ")),
                    )
                })
        },
    },
    ActionSpec {
        name: "reconnect_required",
        keys: &["sticky"],
        read: |p| {
            Ok(Action::ReconnectRequired {
                sticky: p
                    .get("sticky")
                    .map(|v| boolean("sticky", v))
                    .transpose()?
                    .unwrap_or(false),
            })
        },
    },
    ActionSpec {
        name: "failed",
        keys: &["granular_status_code"],
        read: failed,
    },
    ActionSpec {
        name: "pending",
        keys: &[],
        read: |_| Ok(Action::Pending),
    },
    ActionSpec {
        name: "rate_limit",
        keys: &["limit", "window"],
        read: |p| {
            Ok(Action::RateLimit {
                limit: uint("limit", p.required("limit")?)?,
                window: match p.get("window") {
                    Some(v) => nonzero(bounded("window", v)?, "window")?,
                    None => DEFAULT_WINDOW,
                },
            })
        },
    },
    ActionSpec {
        name: "reset",
        keys: &[],
        read: |_| Ok(Action::Reset),
    },
    ActionSpec {
        name: "timeout",
        keys: &["timeout"],
        read: |p| {
            Ok(Action::Timeout {
                hold: match p.get("timeout") {
                    Some(v) => nonzero(bounded("timeout", v)?, "timeout")?,
                    None => DEFAULT_TIMEOUT,
                },
            })
        },
    },
    ActionSpec {
        name: "truncate",
        keys: &["after_bytes"],
        read: |p| {
            Ok(Action::Truncate {
                after_bytes: uint("after_bytes", p.required("after_bytes")?)?,
            })
        },
    },
    ActionSpec {
        name: "corrupt",
        keys: &[],
        read: |_| Ok(Action::Corrupt),
    },
    ActionSpec {
        name: "throttle",
        keys: &["bytes_per_second"],
        read: |p| {
            let rate = uint("bytes_per_second", p.required("bytes_per_second")?)?;
            if rate == 0 {
                return Err(RuleError::new("bytes_per_second", "must be at least 1"));
            }
            Ok(Action::Throttle {
                bytes_per_second: rate,
            })
        },
    },
];

/// Action names as written in rules and specs, in [`ACTIONS`] order.
pub const ACTION_NAMES: [&str; ACTIONS.len()] = {
    let mut names = [""; ACTIONS.len()];
    let mut i = 0;
    while i < ACTIONS.len() {
        names[i] = ACTIONS[i].name;
        i += 1;
    }
    names
};

/// Whether `key` is one of any action's keys.
pub(super) fn is_action_key(key: &str) -> bool {
    ACTIONS.iter().any(|a| a.keys.contains(&key))
}

/// Reads the action `name` (or its alias `reconnect`) from `params`, refusing
/// keys that belong to other actions and keys that are no rule's.
pub(super) fn read_action(name: &Value, params: &Map<String, Value>) -> Result<Action, RuleError> {
    let written = text("action", name)?.to_ascii_lowercase();
    let wanted = if written == "reconnect" {
        "reconnect_required"
    } else {
        written.as_str()
    };
    let spec = ACTIONS.iter().find(|a| a.name == wanted).ok_or_else(|| {
        RuleError::new(
            "action",
            format!("`{written}` is not one of {}", ACTION_NAMES.join(", ")),
        )
    })?;
    for key in params.keys() {
        if spec.keys.contains(&key.as_str()) {
            continue;
        }
        let reason = if is_action_key(key) {
            format!("not used by action `{}`", spec.name)
        } else {
            "unknown key".to_string()
        };
        return Err(RuleError::new(key, reason));
    }
    (spec.read)(&Params {
        name: spec.name,
        keys: params,
    })
}

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

/// Writes `action`'s keys into `params`.
pub(super) fn write_action(action: &Action, params: &mut Map<String, Value>) {
    let mut put = |key: &str, value: Value| {
        params.insert(key.to_string(), value);
    };
    match action {
        Action::Delay(Delay::Fixed(d)) => put("delay", show_duration(*d)),
        Action::Delay(Delay::Uniform { min, max }) => {
            put("delay_min", show_duration(*min));
            put("delay_max", show_duration(*max));
        }
        Action::Delay(Delay::Normal { mean, stddev }) => {
            put("delay_mean", show_duration(*mean));
            put("delay_stddev", show_duration(*stddev));
        }
        Action::Status {
            code,
            body,
            content_type,
        } => {
            put("status", json!(code.as_u16()));
            if !body.is_empty() {
                put("body", json!(body));
            }
            put(
                "content_type",
                json!(String::from_utf8_lossy(content_type.as_bytes())),
            );
        }
        Action::LeanError(preset) => put("lean_error", json!(preset.name())),
        Action::ReconnectRequired { sticky } => {
            if *sticky {
                put("sticky", json!(true));
            }
        }
        Action::Failed {
            granular_status_code,
        } => put("granular_status_code", json!(granular_status_code)),
        Action::RateLimit { limit, window } => {
            put("limit", json!(limit));
            put("window", show_duration(*window));
        }
        Action::Timeout { hold } => put("timeout", show_duration(*hold)),
        Action::Truncate { after_bytes } => put("after_bytes", json!(after_bytes)),
        Action::Throttle { bytes_per_second } => put("bytes_per_second", json!(bytes_per_second)),
        Action::Pending | Action::Reset | Action::Corrupt => {}
    }
}

fn status(p: &Params<'_>) -> Result<Action, RuleError> {
    let code = uint("status", p.required("status")?)?;
    let code = u16::try_from(code)
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            RuleError::new(
                "status",
                format!("{code} is not an HTTP status between 200 and 599"),
            )
        })?;
    let body = p
        .get("body")
        .map(|v| text("body", v))
        .transpose()?
        .unwrap_or_default();
    let content_type = match p.get("content_type") {
        Some(v) => {
            let ct = text("content_type", v)?;
            HeaderValue::from_str(&ct).map_err(|_| {
                RuleError::new("content_type", format!("`{ct}` is not a header value"))
            })?
        }
        None if serde_json::from_str::<Value>(&body)
            .is_ok_and(|v| v.is_object() || v.is_array()) =>
        {
            HeaderValue::from_static("application/json")
        }
        None => HeaderValue::from_static("text/plain; charset=utf-8"),
    };
    Ok(Action::Status {
        code,
        body,
        content_type,
    })
}

fn failed(p: &Params<'_>) -> Result<Action, RuleError> {
    let code = match p.get("granular_status_code") {
        Some(v) => text("granular_status_code", v)?.to_ascii_uppercase(),
        None => DEFAULT_GRANULAR_STATUS.to_owned(),
    };
    let well_formed = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(RuleError::new(
            "granular_status_code",
            format!("`{code}` is not a code such as BANK_MAINTENANCE"),
        ));
    }
    Ok(Action::Failed {
        granular_status_code: code,
    })
}

fn delay(p: &Params<'_>) -> Result<Delay, RuleError> {
    let get = |key: &'static str| {
        p.get(key)
            .map(|v| bounded(key, v).map(|d| (key, d)))
            .transpose()
    };
    let fixed = get("delay")?;
    let min = get("delay_min")?;
    let max = get("delay_max")?;
    let mean = get("delay_mean")?;
    let stddev = get("delay_stddev")?;
    let forms = [fixed, min.or(max), mean.or(stddev)];
    let mut given = forms.iter().flatten();
    if let (Some((first, _)), Some((second, _))) = (given.next(), given.next()) {
        return Err(RuleError::new(
            *second,
            format!("cannot be combined with {first} (give delay, or delay_min and delay_max, or delay_mean and delay_stddev)"),
        ));
    }
    let pair = |a: Option<(&str, Duration)>, b: Option<(&str, Duration)>, a_key, b_key| match (a, b)
    {
        (Some((_, a)), Some((_, b))) => Ok((a, b)),
        (Some(_), None) => Err(RuleError::new(b_key, format!("required with {a_key}"))),
        _ => Err(RuleError::new(a_key, format!("required with {b_key}"))),
    };
    if let Some((_, d)) = fixed {
        Ok(Delay::Fixed(d))
    } else if min.is_some() || max.is_some() {
        let (min, max) = pair(min, max, "delay_min", "delay_max")?;
        if min > max {
            return Err(RuleError::new(
                "delay_min",
                format!(
                    "{} is longer than delay_max {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(Delay::Uniform { min, max })
    } else if mean.is_some() || stddev.is_some() {
        let (mean, stddev) = pair(mean, stddev, "delay_mean", "delay_stddev")?;
        Ok(Delay::Normal { mean, stddev })
    } else {
        Err(RuleError::new(
            "delay",
            "required for action `delay` (or delay_min and delay_max, or delay_mean and delay_stddev)",
        ))
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
    fn action_names_are_listed_in_order() {
        assert_eq!(Action::Pending.name(), "pending");
        assert_eq!(
            Action::ReconnectRequired { sticky: true }.name(),
            "reconnect_required"
        );
        assert!(ACTION_NAMES.contains(&Action::Corrupt.name()));
        // The table and the variants agree.
        for spec in &ACTIONS {
            assert!(ACTION_NAMES.contains(&spec.name));
        }
    }
}
