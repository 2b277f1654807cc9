//! An action's keys: which action reads which, their validation into an
//! [`Action`], and back.

use std::time::Duration;

use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::preset::{Preset, DEFAULT_GRANULAR_STATUS};
use super::raw::RawRule;
use super::rule::{Action, Delay, RuleError, ACTION_NAMES, DEFAULT_TIMEOUT, DEFAULT_WINDOW};
use super::value::{boolean, bounded, nonzero, show_duration, text, uint};

/// Which action reads which keys.
const ACTION_KEYS: [(&str, &[&str]); 9] = [
    (
        "delay",
        &[
            "delay",
            "delay_min",
            "delay_max",
            "delay_mean",
            "delay_stddev",
        ],
    ),
    ("status", &["status", "body", "content_type"]),
    ("lean_error", &["lean_error"]),
    ("reconnect_required", &["sticky"]),
    ("failed", &["granular_status_code"]),
    ("rate_limit", &["limit", "window"]),
    ("timeout", &["timeout"]),
    ("truncate", &["after_bytes"]),
    ("throttle", &["bytes_per_second"]),
];

impl RawRule {
    fn action_keys(&self) -> [(&'static str, Option<&Value>); 16] {
        [
            ("delay", self.delay.as_ref()),
            ("delay_min", self.delay_min.as_ref()),
            ("delay_max", self.delay_max.as_ref()),
            ("delay_mean", self.delay_mean.as_ref()),
            ("delay_stddev", self.delay_stddev.as_ref()),
            ("status", self.status.as_ref()),
            ("body", self.body.as_ref()),
            ("content_type", self.content_type.as_ref()),
            ("lean_error", self.lean_error.as_ref()),
            ("sticky", self.sticky.as_ref()),
            ("granular_status_code", self.granular_status_code.as_ref()),
            ("limit", self.limit.as_ref()),
            ("window", self.window.as_ref()),
            ("timeout", self.timeout.as_ref()),
            ("after_bytes", self.after_bytes.as_ref()),
            ("bytes_per_second", self.bytes_per_second.as_ref()),
        ]
    }
}

/// The action of `raw`, refusing keys that belong to other actions.
pub(super) fn action_from_raw(raw: &RawRule) -> Result<Action, RuleError> {
    let action_name = match &raw.action {
        Some(v) => text("action", v)?.to_ascii_lowercase(),
        None => {
            return Err(RuleError::new(
                "action",
                format!("missing (one of {})", ACTION_NAMES.join(", ")),
            ))
        }
    };
    let action_name = match action_name.as_str() {
        "reconnect" => "reconnect_required",
        other => ACTION_NAMES
            .into_iter()
            .find(|n| *n == other)
            .ok_or_else(|| {
                RuleError::new(
                    "action",
                    format!("`{other}` is not one of {}", ACTION_NAMES.join(", ")),
                )
            })?,
    };
    let allowed = ACTION_KEYS
        .iter()
        .find(|(a, _)| *a == action_name)
        .map(|(_, keys)| *keys)
        .unwrap_or(&[]);
    for (key, value) in raw.action_keys() {
        if value.is_some() && !allowed.contains(&key) {
            return Err(RuleError::new(
                key,
                format!("not used by action `{action_name}`"),
            ));
        }
    }
    action(action_name, raw)
}

/// Writes `action`'s keys into `raw`.
pub(super) fn write_action(action: &Action, raw: &mut RawRule) {
    match action {
        Action::Delay(Delay::Fixed(d)) => raw.delay = Some(show_duration(*d)),
        Action::Delay(Delay::Uniform { min, max }) => {
            raw.delay_min = Some(show_duration(*min));
            raw.delay_max = Some(show_duration(*max));
        }
        Action::Delay(Delay::Normal { mean, stddev }) => {
            raw.delay_mean = Some(show_duration(*mean));
            raw.delay_stddev = Some(show_duration(*stddev));
        }
        Action::Status {
            code,
            body,
            content_type,
        } => {
            raw.status = Some(json!(code.as_u16()));
            raw.body = (!body.is_empty()).then(|| json!(body));
            raw.content_type = Some(json!(String::from_utf8_lossy(content_type.as_bytes())));
        }
        Action::LeanError(preset) => raw.lean_error = Some(json!(preset.name())),
        Action::ReconnectRequired { sticky } => raw.sticky = sticky.then(|| json!(true)),
        Action::Failed {
            granular_status_code,
        } => raw.granular_status_code = Some(json!(granular_status_code)),
        Action::RateLimit { limit, window } => {
            raw.limit = Some(json!(limit));
            raw.window = Some(show_duration(*window));
        }
        Action::Timeout { hold } => raw.timeout = Some(show_duration(*hold)),
        Action::Truncate { after_bytes } => raw.after_bytes = Some(json!(after_bytes)),
        Action::Throttle { bytes_per_second } => {
            raw.bytes_per_second = Some(json!(bytes_per_second))
        }
        Action::Pending | Action::Reset | Action::Corrupt => {}
    }
}

fn action(name: &str, raw: &RawRule) -> Result<Action, RuleError> {
    let required = |key: &str, v: &Option<Value>| {
        v.clone()
            .ok_or_else(|| RuleError::new(key, format!("required for action `{name}`")))
    };
    Ok(match name {
        "delay" => Action::Delay(delay(raw)?),
        "status" => {
            let code = uint("status", &required("status", &raw.status)?)?;
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
            let body = raw
                .body
                .as_ref()
                .map(|v| text("body", v))
                .transpose()?
                .unwrap_or_default();
            let content_type = match &raw.content_type {
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
            Action::Status {
                code,
                body,
                content_type,
            }
        }
        "lean_error" => {
            let preset = text("lean_error", &required("lean_error", &raw.lean_error)?)?;
            Action::LeanError(Preset::from_name(&preset).ok_or_else(|| {
                let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                RuleError::new(
                    "lean_error",
                    format!("`{preset}` is not one of {}", names.join(", ")),
                )
            })?)
        }
        "reconnect_required" => Action::ReconnectRequired {
            sticky: raw
                .sticky
                .as_ref()
                .map(|v| boolean("sticky", v))
                .transpose()?
                .unwrap_or(false),
        },
        "failed" => {
            let code = match &raw.granular_status_code {
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
            Action::Failed {
                granular_status_code: code,
            }
        }
        "pending" => Action::Pending,
        "rate_limit" => Action::RateLimit {
            limit: uint("limit", &required("limit", &raw.limit)?)?,
            window: match &raw.window {
                Some(v) => nonzero(bounded("window", v)?, "window")?,
                None => DEFAULT_WINDOW,
            },
        },
        "reset" => Action::Reset,
        "timeout" => Action::Timeout {
            hold: match &raw.timeout {
                Some(v) => nonzero(bounded("timeout", v)?, "timeout")?,
                None => DEFAULT_TIMEOUT,
            },
        },
        "truncate" => Action::Truncate {
            after_bytes: uint("after_bytes", &required("after_bytes", &raw.after_bytes)?)?,
        },
        "corrupt" => Action::Corrupt,
        _ => {
            let rate = uint(
                "bytes_per_second",
                &required("bytes_per_second", &raw.bytes_per_second)?,
            )?;
            if rate == 0 {
                return Err(RuleError::new("bytes_per_second", "must be at least 1"));
            }
            Action::Throttle {
                bytes_per_second: rate,
            }
        }
    })
}

fn delay(raw: &RawRule) -> Result<Delay, RuleError> {
    let get = |key: &'static str, v: &Option<Value>| {
        v.as_ref()
            .map(|v| bounded(key, v).map(|d| (key, d)))
            .transpose()
    };
    let fixed = get("delay", &raw.delay)?;
    let min = get("delay_min", &raw.delay_min)?;
    let max = get("delay_max", &raw.delay_max)?;
    let mean = get("delay_mean", &raw.delay_mean)?;
    let stddev = get("delay_stddev", &raw.delay_stddev)?;
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
