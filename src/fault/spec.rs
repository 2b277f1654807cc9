//! The compact spec grammar of `leanproxy faults add <spec>` and the request
//! header `x-leanproxy-fault: <spec>`:
//!
//! ```text
//! spec    = action *( SP option )
//! action  = name [ "=" value ]
//! option  = key "=" value | "sticky"
//! ```
//!
//! Tokens are separated by spaces; a value with spaces is written in double quotes
//! (`body="down for maintenance"`, with `\"` and `\\` inside). A spec is turned
//! into a [`RawRule`] and validated like any other rule, so both say the same
//! things about a bad value; errors name the spec's own key (`p`, not
//! `probability`).

use serde_json::{json, Map, Value};

use super::error::RuleError;
use super::raw::{RawMatch, RawRule};
use super::rule::Rule;

/// Options a spec may carry after the action.
const OPTIONS: &str = "id, p, count, ttl, after, sticky, method, path, entity_id, header.NAME, query.NAME, body, content_type";

/// Every action and option of the spec, each with an example: the help of
/// `leanproxy faults add` (a test checks that it and the README name every
/// action and option).
pub const SPEC_HELP: &str = "\
A spec is an action, then options, separated by spaces; quote a value with
spaces (body=\"down for maintenance\"). The same spec works in the
x-leanproxy-fault request header.

Actions:
  delay=200ms                 wait, then forward (also delay=100ms..300ms
                              uniform, delay=200ms~50ms normal)
  status=503                  answer this HTTP status (with body= and
                              content_type=) instead of forwarding
  lean_error=RATE_LIMIT_EXCEEDED
                              Lean's exact error envelope and status
                              (INTERNAL_SERVER_ERROR, CONSENT_EXPIRED, ...)
  reconnect                   a synthetic RECONNECT_REQUIRED, v1 or v2 shape
                              by path (also: reconnect_required)
  failed                      status FAILED (failed=BANK_MAINTENANCE picks the
                              granular_status_code)
  pending                     status PENDING
  rate_limit=10/1m            429 with Retry-After once 10 requests came within
                              a minute (rate_limit=10: the default window)
  reset                       close the app's connection without an answer
  timeout                     hold the request without answering, then close
                              (timeout=30s: how long)
  truncate=100                forward the answer but cut its body after 100 bytes
  corrupt                     forward the answer with malformed JSON as its body
  throttle=1024               forward the answer at 1024 bytes per second

Options:
  id=slow-accounts            the rule's id (default: generated)
  p=0.1                       probability; a declined roll goes on to the next
                              rule
  count=3                     apply 3 times, then retire
  ttl=5m                      retire after 5 minutes
  after=2                     let the first 2 matching requests through
  sticky                      (reconnect) keep answering RECONNECT_REQUIRED for
                              the entity until the registry resolves it
  method=POST                 match the method
  path=/data/v2/*             match the path (a glob)
  entity_id=ENTITY            match the request's entity
  header.x-app=web            match a request header
  query.page=2                match a query parameter
  body=\"down\"               the answer's body (status, lean_error)
  content_type=text/plain     the answer's content type (status)

Examples:
  leanproxy faults add 'reconnect path=/data/v2/* count=2'
  leanproxy faults add 'lean_error=RATE_LIMIT_EXCEEDED p=0.1'
  leanproxy faults add 'lean_error=CONSENT_EXPIRED entity_id=ENTITY' --position 0
  leanproxy faults add 'delay=2s method=GET' --before slow-accounts";

/// Parses and validates a spec such as `reconnect path=/data/v2/* count=2`.
pub fn parse_spec(spec: &str) -> Result<Rule, RuleError> {
    let mut origins = Vec::new();
    let raw = spec_to_raw(spec, &mut origins)?;
    Rule::from_raw(raw).map_err(|mut e| {
        // Name the key the user wrote, not the field it was stored in.
        if let Some((_, key)) = origins.iter().find(|(field, _)| *field == e.field) {
            e.field.clone_from(key);
        }
        e
    })
}

/// Splits a spec at spaces outside double quotes, removing the quotes.
fn tokens(spec: &str) -> Result<Vec<String>, RuleError> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            '\\' if quoted => match chars.next() {
                Some(escaped) => current.push(escaped),
                None => break,
            },
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            c => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if quoted {
        return Err(RuleError::new(
            "spec",
            format!("unterminated quote in `{}`", spec.trim()),
        ));
    }
    if in_token {
        tokens.push(current);
    }
    Ok(tokens)
}

fn spec_to_raw(spec: &str, origins: &mut Vec<(String, String)>) -> Result<RawRule, RuleError> {
    let tokens = tokens(spec)?;
    let mut tokens = tokens.iter();
    let Some(first) = tokens.next() else {
        return Err(RuleError::new(
            "action",
            "missing: a spec starts with an action such as `delay=200ms` or `reconnect`",
        ));
    };
    let mut raw = RawRule::default();
    let (name, value) = match first.split_once('=') {
        Some((name, value)) => (name.to_ascii_lowercase(), Some(value)),
        None => (first.to_ascii_lowercase(), None),
    };
    action(&mut raw, &name, value, origins)?;

    let mut matcher = RawMatch::default();
    let mut headers = Map::new();
    let mut query = Map::new();
    let mut seen: Vec<String> = Vec::new();
    for token in tokens {
        let (key, value) = match token.split_once('=') {
            Some((key, value)) => (key, value),
            None if token.eq_ignore_ascii_case("sticky") => (token.as_str(), "true"),
            None => {
                return Err(RuleError::new(
                    token,
                    format!("not an option: options are key=value ({OPTIONS})"),
                ))
            }
        };
        let lower = key.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(RuleError::new(key, "given twice"));
        }
        seen.push(lower.clone());
        let v = Some(json!(value));
        let field = match lower.as_str() {
            "id" => set(&mut raw.id, v, "id"),
            "p" | "probability" => set(&mut raw.probability, v, "probability"),
            "count" => set(&mut raw.count, v, "count"),
            "ttl" => set(&mut raw.ttl, v, "ttl"),
            "after" => set(&mut raw.after, v, "after"),
            "sticky" => param(&mut raw, v, "sticky"),
            "body" => param(&mut raw, v, "body"),
            "content_type" => param(&mut raw, v, "content_type"),
            "method" => set(&mut matcher.method, v, "match.method"),
            "path" => set(&mut matcher.path, v, "match.path"),
            "entity_id" | "entity" => set(&mut matcher.entity_id, v, "match.entity_id"),
            _ => {
                if let Some(name) = lower.strip_prefix("header.").filter(|n| !n.is_empty()) {
                    headers.insert(name.to_owned(), json!(value));
                    format!("match.headers.{name}")
                } else if let Some(name) = lower
                    .starts_with("query.")
                    .then(|| &key["query.".len()..])
                    .filter(|n| !n.is_empty())
                {
                    query.insert(name.to_owned(), json!(value));
                    format!("match.query.{name}")
                } else {
                    return Err(RuleError::new(
                        key,
                        format!("unknown option (options: {OPTIONS})"),
                    ));
                }
            }
        };
        origins.push((field, key.to_owned()));
    }
    if !headers.is_empty() {
        matcher.headers = Some(Value::Object(headers));
    }
    if !query.is_empty() {
        matcher.query = Some(Value::Object(query));
    }
    if matcher != RawMatch::default() {
        raw.matcher = Some(matcher.to_value());
    }
    Ok(raw)
}

/// Sets the action key `field` of `raw`; the field, for error messages.
fn param(raw: &mut RawRule, value: Option<Value>, field: &str) -> String {
    if let Some(value) = value {
        raw.params.insert(field.to_owned(), value);
    }
    field.to_owned()
}

fn set(slot: &mut Option<Value>, value: Option<Value>, field: &str) -> String {
    *slot = value;
    field.to_owned()
}

/// Fills the action and its value's fields from the first token.
fn action(
    raw: &mut RawRule,
    name: &str,
    value: Option<&str>,
    origins: &mut Vec<(String, String)>,
) -> Result<(), RuleError> {
    let mut put = |field: &str, v: &str| {
        raw.params.insert(field.to_owned(), json!(v));
        origins.push((field.to_owned(), name.to_owned()));
    };
    let needs = |what: &str| {
        value.ok_or_else(|| {
            RuleError::new("action", format!("`{name}` needs a value: `{name}={what}`"))
        })
    };
    let takes_none = || match value {
        Some(v) => Err(RuleError::new(
            "action",
            format!("`{name}` takes no value (got `{name}={v}`)"),
        )),
        None => Ok(()),
    };
    let canonical = match name {
        "delay" => {
            let v = needs("200ms, 100ms..300ms or 200ms~50ms")?;
            if let Some((min, max)) = v.split_once("..") {
                put("delay_min", min);
                put("delay_max", max);
            } else if let Some((mean, stddev)) = v.split_once('~') {
                put("delay_mean", mean);
                put("delay_stddev", stddev);
            } else {
                put("delay", v);
            }
            name
        }
        "status" => {
            put("status", needs("503")?);
            name
        }
        "lean_error" => {
            put("lean_error", needs("RATE_LIMIT_EXCEEDED")?);
            name
        }
        "failed" => {
            if let Some(code) = value {
                put("granular_status_code", code);
            }
            name
        }
        "rate_limit" => {
            let v = needs("10/1m")?;
            match v.split_once('/') {
                Some((limit, window)) => {
                    put("limit", limit);
                    put("window", window);
                }
                None => put("limit", v),
            }
            name
        }
        "timeout" => {
            if let Some(hold) = value {
                put("timeout", hold);
            }
            name
        }
        "truncate" => {
            put("after_bytes", needs("100")?);
            name
        }
        "throttle" => {
            put("bytes_per_second", needs("1024")?);
            name
        }
        "reconnect" | "reconnect_required" | "pending" | "reset" | "corrupt" => {
            takes_none()?;
            name
        }
        // Unknown: validation refuses it with the list of actions.
        other => other,
    };
    raw.action = Some(json!(canonical));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_names_every_action_and_option() {
        for action in super::super::ACTION_NAMES {
            assert!(super::SPEC_HELP.contains(action), "{action}");
        }
        for option in super::OPTIONS.split(", ") {
            let option = option.trim_end_matches("NAME");
            assert!(super::SPEC_HELP.contains(option), "{option}");
        }
    }

    use std::time::Duration;

    use http::{HeaderValue, Method, StatusCode};

    use super::*;
    use crate::fault::{Action, Delay, Preset};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn field(spec: &str) -> String {
        parse_spec(spec).unwrap_err().field
    }

    #[test]
    fn every_action_parses() {
        let cases = [
            ("delay=200ms", Action::Delay(Delay::Fixed(ms(200)))),
            (
                "delay=100ms..300ms",
                Action::Delay(Delay::Uniform {
                    min: ms(100),
                    max: ms(300),
                }),
            ),
            (
                "delay=200ms~50ms",
                Action::Delay(Delay::Normal {
                    mean: ms(200),
                    stddev: ms(50),
                }),
            ),
            (
                "status=503",
                Action::Status {
                    code: StatusCode::SERVICE_UNAVAILABLE,
                    body: String::new(),
                    content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
                },
            ),
            (
                "lean_error=RATE_LIMIT_EXCEEDED",
                Action::LeanError(Preset::RateLimitExceeded),
            ),
            ("reconnect", Action::ReconnectRequired { sticky: false }),
            (
                "reconnect_required sticky",
                Action::ReconnectRequired { sticky: true },
            ),
            (
                "failed",
                Action::Failed {
                    granular_status_code: "BANK_MAINTENANCE".into(),
                },
            ),
            (
                "failed=LOGGED_IN_ELSEWHERE",
                Action::Failed {
                    granular_status_code: "LOGGED_IN_ELSEWHERE".into(),
                },
            ),
            ("pending", Action::Pending),
            (
                "rate_limit=10/1m",
                Action::RateLimit {
                    limit: 10,
                    window: Duration::from_secs(60),
                },
            ),
            ("reset", Action::Reset),
            (
                "timeout",
                Action::Timeout {
                    hold: Duration::from_secs(30),
                },
            ),
            (
                "timeout=5s",
                Action::Timeout {
                    hold: Duration::from_secs(5),
                },
            ),
            ("truncate=100", Action::Truncate { after_bytes: 100 }),
            ("corrupt", Action::Corrupt),
            (
                "throttle=1024",
                Action::Throttle {
                    bytes_per_second: 1024,
                },
            ),
        ];
        for (spec, action) in cases {
            let rule = parse_spec(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(rule.action, action, "{spec}");
            assert_eq!(rule.probability, 1.0);
            assert!(rule.id.starts_with("fault-"), "{}", rule.id);
        }
    }

    #[test]
    fn reconnect_with_path_and_count() {
        let rule = parse_spec("reconnect path=/data/v2/* count=2").unwrap();
        assert_eq!(rule.action, Action::ReconnectRequired { sticky: false });
        assert_eq!(rule.count, Some(2));
        assert_eq!(rule.matcher.path.unwrap().as_str(), "/data/v2/*");
    }

    #[test]
    fn lean_error_with_probability() {
        let rule = parse_spec("lean_error=RATE_LIMIT_EXCEEDED p=0.1").unwrap();
        assert_eq!(rule.probability, 0.1);
    }

    #[test]
    fn delay_range_with_method() {
        let rule = parse_spec("delay=100ms..300ms method=get").unwrap();
        assert_eq!(rule.matcher.method, Some(Method::GET));
    }

    #[test]
    fn quoted_body_keeps_its_spaces_and_escapes() {
        let rule = parse_spec(r#"status=503 body="down for \"maintenance\"" id=m1"#).unwrap();
        assert_eq!(rule.id, "m1");
        match rule.action {
            Action::Status { code, body, .. } => {
                assert_eq!(code, 503);
                assert_eq!(body, r#"down for "maintenance""#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_option_lands_in_its_field() {
        let rule = parse_spec(
            "pending id=a1 p=0.5 count=3 ttl=5m after=2 method=POST path=/data/v1/* entity=e-1 header.X-Env=staging query.page=0",
        )
        .unwrap();
        assert_eq!(rule.id, "a1");
        assert_eq!(rule.probability, 0.5);
        assert_eq!(rule.count, Some(3));
        assert_eq!(rule.ttl, Some(Duration::from_secs(300)));
        assert_eq!(rule.after, 2);
        assert_eq!(rule.matcher.method, Some(Method::POST));
        assert_eq!(rule.matcher.entity_id.as_deref(), Some("e-1"));
        assert_eq!(rule.matcher.headers.len(), 1);
        assert_eq!(rule.matcher.headers[0].0, "x-env");
        assert_eq!(rule.matcher.headers[0].1, "staging");
        assert_eq!(rule.matcher.query, [("page".to_owned(), "0".to_owned())]);
    }

    #[test]
    fn errors_name_the_key_as_written() {
        assert_eq!(field("explode"), "action");
        assert_eq!(field("reset p=1.5"), "p");
        assert_eq!(field("reset count=-1"), "count");
        assert_eq!(field("delay=fast"), "delay");
        assert_eq!(field("delay=300ms..100ms"), "delay");
        assert_eq!(field("status=99"), "status");
        assert_eq!(field("rate_limit=ten/1m"), "rate_limit");
        assert_eq!(field("reset path=data"), "path");
        assert_eq!(field("reset header.bad\u{1}=x"), "header.bad\u{1}");
        assert_eq!(field("reset colour=red"), "colour");
        assert_eq!(field("reset loud"), "loud");
        assert_eq!(field("reset count=1 count=2"), "count");
        assert_eq!(field("reset body=x"), "body");
        assert_eq!(field("reset=now"), "action");
        assert_eq!(field("status"), "action");
        assert_eq!(field("   "), "action");
        assert_eq!(field(r#"status=503 body="open"#), "spec");
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert_eq!(
            parse_spec("reset p=1.5").unwrap_err().to_string(),
            "p: 1.5 is not between 0 and 1"
        );
        let e = parse_spec("explode").unwrap_err().to_string();
        assert!(
            e.starts_with("action: `explode` is not one of delay, status"),
            "{e}"
        );
    }
}
