//! Lenient readers for written rule values: any JSON/TOML value comes in, a typed
//! value or a [`RuleError`] naming the field comes out.

use std::time::Duration;

use serde_json::{json, Value};

use super::error::RuleError;

/// Longest delay, `timeout` hold or rate-limit window a rule may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 60);

/// A value as quoted in errors: strings in backticks, the rest as JSON.
pub(super) fn show(v: &Value) -> String {
    match v {
        // Spec values arrive as strings; numbers read better unquoted.
        Value::String(s) if s.trim().parse::<f64>().is_ok() => s.clone(),
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

pub(super) fn text(field: &str, v: &Value) -> Result<String, RuleError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(RuleError::new(
            field,
            format!("{} is not a string", show(other)),
        )),
    }
}

/// A string, number or boolean as text (TOML writes `page = 0`).
pub(super) fn scalar_text(field: &str, v: &Value) -> Result<String, RuleError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(RuleError::new(field, format!("{other} is not a string"))),
    }
}

pub(super) fn table<'a>(
    field: &str,
    v: Option<&'a Value>,
) -> Result<Vec<(&'a String, &'a Value)>, RuleError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().collect()),
        Some(other) => Err(RuleError::new(
            field,
            format!("{} is not a table of name = value", show(other)),
        )),
    }
}

pub(super) fn uint(field: &str, v: &Value) -> Result<u64, RuleError> {
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| RuleError::new(field, format!("{} is not a non-negative integer", show(v))))
}

pub(super) fn probability(v: &Value) -> Result<f64, RuleError> {
    let p = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    p.filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| RuleError::new("probability", format!("{} is not between 0 and 1", show(v))))
}

pub(super) fn boolean(field: &str, v: &Value) -> Result<bool, RuleError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(RuleError::new(
            field,
            format!("{} is not true or false", show(other)),
        )),
    }
}

pub(super) fn duration(field: &str, v: &Value) -> Result<Duration, RuleError> {
    match v {
        Value::String(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            RuleError::new(
                field,
                format!("`{s}` is not a duration such as \"200ms\" or \"5m\" ({e})"),
            )
        }),
        Value::Number(n) => Err(RuleError::new(
            field,
            format!("{n} has no unit: write a duration such as \"{n}ms\" or \"{n}s\""),
        )),
        other => Err(RuleError::new(field, format!("{other} is not a duration"))),
    }
}

/// A duration of at most [`MAX_DURATION`].
pub(super) fn bounded(field: &str, v: &Value) -> Result<Duration, RuleError> {
    let d = duration(field, v)?;
    if d > MAX_DURATION {
        return Err(RuleError::new(
            field,
            format!(
                "{} is longer than the maximum of {}",
                humantime::format_duration(d),
                humantime::format_duration(MAX_DURATION)
            ),
        ));
    }
    Ok(d)
}

pub(super) fn nonzero(d: Duration, field: &str) -> Result<Duration, RuleError> {
    if d.is_zero() {
        return Err(RuleError::new(field, "must be longer than 0"));
    }
    Ok(d)
}

pub(super) fn show_duration(d: Duration) -> Value {
    json!(humantime::format_duration(d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_leniently_and_checked() {
        assert_eq!(uint("n", &json!(2)).unwrap(), 2);
        assert_eq!(uint("n", &json!(2.0)).unwrap(), 2);
        assert_eq!(uint("n", &json!(" 2 ")).unwrap(), 2);
        for bad in [
            json!(-1),
            json!(1.5),
            json!(true),
            json!("two"),
            json!(null),
        ] {
            assert_eq!(uint("n", &bad).unwrap_err().field, "n", "{bad}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            duration("d", &json!("1m 30s")).unwrap(),
            Duration::from_secs(90)
        );
        let e = duration("d", &json!(200)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d: 200 has no unit: write a duration such as \"200ms\" or \"200s\""
        );
        assert!(bounded("d", &json!("11m")).is_err());
        assert_eq!(
            show_duration(Duration::from_millis(1500)),
            json!("1s 500ms")
        );
    }

    #[test]
    fn values_are_quoted_in_errors_unless_numeric() {
        assert_eq!(show(&json!("abc")), "`abc`");
        assert_eq!(show(&json!("-1")), "-1");
        assert_eq!(show(&json!([1])), "[1]");
    }
}
