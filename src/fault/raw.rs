//! The one written shape of a rule, shared by the config file (`[[faults]]`), the
//! admin API and the listing: plain data, validated into a
//! [`Rule`](super::Rule) by [`Rule::from_raw`](super::Rule::from_raw).
//!
//! Values are read leniently (any JSON/TOML value) and checked there, so that
//! a wrong value is refused naming its field (`count: -1 is not a
//! non-negative integer`) rather than with a generic deserializer message;
//! unknown keys too are refused there, naming the key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::RuleError;

/// A rule as written: the keys every rule may have, then the action's own
/// keys (`params`). Each action reads its own keys and refuses the others':
///
/// | action | keys |
/// | --- | --- |
/// | `delay` | `delay`, or `delay_min` + `delay_max`, or `delay_mean` + `delay_stddev` |
/// | `status` | `status` (200–599), `body`, `content_type` |
/// | `lean_error` | `lean_error` (e.g. `RATE_LIMIT_EXCEEDED`) |
/// | `reconnect_required` (alias `reconnect`) | `sticky` |
/// | `failed` | `granular_status_code` (default `BANK_MAINTENANCE`) |
/// | `rate_limit` | `limit`, `window` (default `1m`) |
/// | `timeout` | `timeout` (default `30s`, at most `10m`) |
/// | `truncate` | `after_bytes` |
/// | `throttle` | `bytes_per_second` |
/// | `pending`, `reset`, `corrupt` | none |
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawRule {
    /// Unique id; generated (`fault-xxxxxxxx`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The action's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Value>,
    /// Conditions (the [`RawMatch`] keys); absent matches every request.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Value>,
    /// 0–1, default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<Value>,
    /// Apply this many times, then retire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Value>,
    /// Retire after this duration (`"5m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Value>,
    /// Skip the first N matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The action's own keys (`delay`, `status`, `limit`, …), and any key that
    /// is no rule's (refused by validation, naming it).
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

/// The `match` table. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawMatch {
    /// `GET`, `POST`, … (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Value>,
    /// Path glob, e.g. `/data/v2/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Value>,
    /// The entity the request names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<Value>,
    /// Table of header name → value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// Table of query parameter → value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Value>,
}

impl RawMatch {
    /// The keys of a `match` table.
    const KEYS: [&'static str; 5] = ["method", "path", "entity_id", "headers", "query"];

    /// Reads a `match` value: a table of the [`RawMatch`] keys.
    pub fn from_value(value: &Value) -> Result<RawMatch, RuleError> {
        let Value::Object(table) = value else {
            return Err(RuleError::new("match", "must be a table of conditions"));
        };
        if let Some(key) = table.keys().find(|k| !Self::KEYS.contains(&k.as_str())) {
            return Err(RuleError::new(
                format!("match.{key}"),
                format!("unknown key (expected one of {})", Self::KEYS.join(", ")),
            ));
        }
        let get = |k: &str| table.get(k).cloned();
        Ok(RawMatch {
            method: get("method"),
            path: get("path"),
            entity_id: get("entity_id"),
            headers: get("headers"),
            query: get("query"),
        })
    }

    /// The `match` value it writes.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::fault::{parse_rule, Action, Delay, Rule, ACTION_NAMES};

    fn refused(v: Value) -> RuleError {
        parse_rule(v).unwrap_err()
    }

    #[test]
    fn every_action_parses_from_json() {
        let cases = [
            json!({"action": "delay", "delay": "200ms"}),
            json!({"action": "delay", "delay_min": "100ms", "delay_max": "300ms"}),
            json!({"action": "delay", "delay_mean": "200ms", "delay_stddev": "50ms"}),
            json!({"action": "status", "status": 503, "body": "{\"down\":true}"}),
            json!({"action": "lean_error", "lean_error": "CONSENT_EXPIRED"}),
            json!({"action": "reconnect_required", "sticky": true}),
            json!({"action": "reconnect"}),
            json!({"action": "failed", "granular_status_code": "logged_in_elsewhere"}),
            json!({"action": "pending"}),
            json!({"action": "rate_limit", "limit": 10, "window": "1m"}),
            json!({"action": "reset"}),
            json!({"action": "timeout", "timeout": "45s"}),
            json!({"action": "truncate", "after_bytes": 100}),
            json!({"action": "corrupt"}),
            json!({"action": "throttle", "bytes_per_second": 1024}),
        ];
        let mut names = Vec::new();
        for case in cases {
            let rule = parse_rule(case.clone()).unwrap_or_else(|e| panic!("{case}: {e}"));
            names.push(rule.action.name());
            // Listing gives back an equivalent rule.
            let again = Rule::from_raw(rule.to_raw()).unwrap();
            assert_eq!(again, rule, "{case}");
        }
        names.dedup();
        assert_eq!(names, ACTION_NAMES);
    }

    #[test]
    fn json_values_become_typed_values() {
        let rule = parse_rule(json!({
            "id": "slow",
            "action": "status",
            "status": 418,
            "body": "{\"teapot\":true}",
            "match": {
                "method": "post",
                "path": "/data/v1/*",
                "entity_id": "e-1",
                "headers": {"X-Env": "staging"},
                "query": {"page": 0}
            },
            "probability": 0.25,
            "count": 2,
            "ttl": "1h 30m",
            "after": 1
        }))
        .unwrap();
        assert_eq!(rule.id, "slow");
        assert_eq!(rule.probability, 0.25);
        assert_eq!(rule.count, Some(2));
        assert_eq!(rule.ttl, Some(Duration::from_secs(5400)));
        assert_eq!(rule.after, 1);
        assert_eq!(rule.matcher.method, Some(Method::POST));
        assert_eq!(rule.matcher.headers[0].0, "x-env");
        assert_eq!(rule.matcher.query, [("page".to_owned(), "0".to_owned())]);
        match &rule.action {
            Action::Status { content_type, .. } => assert_eq!(content_type, "application/json"),
            other => panic!("{other:?}"),
        }
        let raw = serde_json::to_value(rule.to_raw()).unwrap();
        assert_eq!(raw["ttl"], "1h 30m");
        assert_eq!(raw["match"]["query"]["page"], "0");
        assert_eq!(Rule::from_raw(rule.to_raw()).unwrap(), rule);
    }

    #[test]
    fn missing_id_is_generated_and_kept_by_to_raw() {
        let rule = parse_rule(json!({"action": "reset"})).unwrap();
        assert!(
            rule.id.starts_with("fault-") && rule.id.len() == 14,
            "{}",
            rule.id
        );
        assert_eq!(Rule::from_raw(rule.to_raw()).unwrap().id, rule.id);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let cases = [
            (json!({"action": "explode"}), "action"),
            (json!({}), "action"),
            (json!({"action": 3}), "action"),
            (
                json!({"action": "reset", "probability": 1.5}),
                "probability",
            ),
            (
                json!({"action": "reset", "probability": "often"}),
                "probability",
            ),
            (json!({"action": "reset", "count": -1}), "count"),
            (json!({"action": "reset", "count": 1.5}), "count"),
            (json!({"action": "reset", "count": 0}), "count"),
            (json!({"action": "reset", "after": -2}), "after"),
            (json!({"action": "reset", "ttl": "soon"}), "ttl"),
            (json!({"action": "reset", "ttl": 300}), "ttl"),
            (json!({"action": "reset", "ttl": "0s"}), "ttl"),
            (json!({"action": "reset", "colour": "red"}), "colour"),
            (
                json!({"action": "reset", "match": {"colour": "red"}}),
                "match.colour",
            ),
            (json!({"action": "reset", "match": "all"}), "match"),
            (
                json!({"action": "reset", "match": {"path": "data/*"}}),
                "match.path",
            ),
            (
                json!({"action": "reset", "match": {"path": "/a/[b"}}),
                "match.path",
            ),
            (
                json!({"action": "reset", "match": {"method": "G T"}}),
                "match.method",
            ),
            (
                json!({"action": "reset", "match": {"headers": "x"}}),
                "match.headers",
            ),
            (
                json!({"action": "reset", "match": {"headers": {"x": "a\nb"}}}),
                "match.headers.x",
            ),
            (
                json!({"action": "reset", "match": {"query": {"a": [1]}}}),
                "match.query.a",
            ),
            (json!({"action": "reset", "id": "has space"}), "id"),
            (json!({"action": "reset", "status": 500}), "status"),
            (json!({"action": "status", "status": 99}), "status"),
            (json!({"action": "status", "status": 600}), "status"),
            (json!({"action": "status"}), "status"),
            (
                json!({"action": "status", "status": 500, "content_type": "a\u{1}"}),
                "content_type",
            ),
            (json!({"action": "delay"}), "delay"),
            (json!({"action": "delay", "delay": "2h"}), "delay"),
            (
                json!({"action": "delay", "delay": "1s", "delay_min": "1s"}),
                "delay_min",
            ),
            (json!({"action": "delay", "delay_min": "1s"}), "delay_max"),
            (
                json!({"action": "delay", "delay_min": "2s", "delay_max": "1s"}),
                "delay_min",
            ),
            (
                json!({"action": "delay", "delay_stddev": "1s"}),
                "delay_mean",
            ),
            (
                json!({"action": "lean_error", "lean_error": "NOPE"}),
                "lean_error",
            ),
            (json!({"action": "lean_error"}), "lean_error"),
            (
                json!({"action": "failed", "granular_status_code": "bad-code"}),
                "granular_status_code",
            ),
            (json!({"action": "reconnect", "sticky": "yes"}), "sticky"),
            (json!({"action": "rate_limit"}), "limit"),
            (
                json!({"action": "rate_limit", "limit": 1, "window": "0s"}),
                "window",
            ),
            (json!({"action": "timeout", "timeout": "11m"}), "timeout"),
            (json!({"action": "truncate"}), "after_bytes"),
            (
                json!({"action": "throttle", "bytes_per_second": 0}),
                "bytes_per_second",
            ),
            (json!([1, 2]), "rule"),
        ];
        for (case, field) in cases {
            assert_eq!(refused(case.clone()).field, field, "{case}");
        }
    }

    #[test]
    fn error_messages_read_as_field_then_reason() {
        let msg = |v| refused(v).to_string();
        assert_eq!(
            msg(json!({"action": "reset", "probability": 1.5})),
            "probability: 1.5 is not between 0 and 1"
        );
        assert_eq!(
            msg(json!({"action": "reset", "count": -1})),
            "count: -1 is not a non-negative integer"
        );
        assert_eq!(
            msg(json!({"action": "status", "status": 99})),
            "status: 99 is not an HTTP status between 200 and 599"
        );
        assert!(msg(json!({"action": "explode"}))
            .starts_with("action: `explode` is not one of delay, status, lean_error"));
        assert!(msg(json!({"action": "reset", "colour": 1})).starts_with("colour: unknown key"));
    }

    #[test]
    fn rules_read_naturally_from_toml() {
        #[derive(Deserialize)]
        struct File {
            faults: Vec<RawRule>,
        }
        let file: File = toml::from_str(
            r#"
            [[faults]]
            id = "slow-accounts"
            action = "delay"
            delay = "200ms"
            match = { method = "GET", path = "/data/v2/*", headers = { x-env = "staging" }, query = { page = 0 } }
            probability = 0.3
            count = 2
            ttl = "5m"
            after = 2

            [[faults]]
            action = "lean_error"
            lean_error = "RATE_LIMIT_EXCEEDED"

            [[faults]]
            action = "reset"
            count = -1
            "#,
        )
        .unwrap();
        let mut faults = file.faults.into_iter();
        let slow = Rule::from_raw(faults.next().unwrap()).unwrap();
        assert_eq!(slow.id, "slow-accounts");
        assert_eq!(
            slow.action,
            Action::Delay(Delay::Fixed(Duration::from_millis(200)))
        );
        assert_eq!(slow.count, Some(2));
        assert_eq!(slow.matcher.query, [("page".to_owned(), "0".to_owned())]);
        assert!(Rule::from_raw(faults.next().unwrap()).is_ok());
        let negative = Rule::from_raw(faults.next().unwrap()).unwrap_err();
        assert_eq!(
            negative.to_string(),
            "count: -1 is not a non-negative integer"
        );

        // An unknown key reads as data, and validation refuses it by name.
        let unknown = toml::from_str::<File>("[[faults]]\naction = \"reset\"\ncolour = 1\n")
            .unwrap()
            .faults
            .remove(0);
        assert_eq!(Rule::from_raw(unknown).unwrap_err().field, "colour");
    }
}
