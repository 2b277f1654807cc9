//! The terminal formatting of the admin API's answers: tables and live lines.

use serde_json::Value;

use crate::admin::{FaultList, ReconnectList};

/// A string field for the terminal: control characters (escape sequences from
/// unauthenticated webhooks, say) are replaced.
fn text(v: &Value, key: &str) -> String {
    clean(v.get(key).and_then(Value::as_str).unwrap_or("-"))
}

/// Control characters (escape sequences from unauthenticated webhooks, say)
/// replaced, for the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A unit enum's serialised name (`pending`, `upstream`).
fn name(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A table of `/api/reconnects` records, one line each.
pub fn reconnect_table(answer: &ReconnectList) -> String {
    let mut out = format!(
        "{:<9} {:<38} {:<38} {:>5} {:>6}  {:<20} {}\n",
        "STATE", "ENTITY", "RECONNECT ID", "HITS", "CALLS", "FIRST SEEN", "SOURCE"
    );
    for r in &answer.reconnects {
        out.push_str(&format!(
            "{:<9} {:<38} {:<38} {:>5} {:>6}  {:<20} {}\n",
            name(&r.state),
            clean(r.entity_id.as_deref().unwrap_or("-")),
            clean(&r.reconnect_id),
            r.hits,
            r.calls_while_pending,
            r.first_seen.format("%Y-%m-%dT%H:%M:%S"),
            name(&r.source),
        ));
    }
    out.push_str(&format!(
        "{} pending, {} listed\n",
        answer.pending,
        answer.reconnects.len()
    ));
    out
}

/// A table of `/api/faults` rules, one line each.
pub fn fault_table(answer: &FaultList) -> String {
    let mut out = format!(
        "{:<22} {:<20} {:>6} {:>8} {:>8} {:>9}  {}\n",
        "ID", "ACTION", "P", "MATCHED", "APPLIED", "REMAINING", "MATCH"
    );
    let shown = |v: &Option<Value>| match v {
        Some(Value::String(s)) => clean(s),
        Some(other) => other.to_string(),
        None => "-".to_string(),
    };
    for r in &answer.faults {
        let matcher = r
            .rule
            .matcher
            .as_ref()
            .and_then(|m| serde_json::to_string(m).ok())
            .unwrap_or_else(|| "any request".to_string());
        let state = match (r.retired, r.paused) {
            (true, _) => "  (retired)",
            (false, true) => "  (paused)",
            (false, false) => "",
        };
        out.push_str(&format!(
            "{:<22} {:<20} {:>6} {:>8} {:>8} {:>9}  {}{}\n",
            shown(&r.rule.id),
            shown(&r.rule.action),
            r.rule
                .probability
                .as_ref()
                .map_or("1".to_string(), Value::to_string),
            r.matched,
            r.applied,
            r.remaining.map_or("-".to_string(), |n| n.to_string()),
            clean(&matcher),
            state,
        ));
    }
    out.push_str(&format!("{} rules\n", answer.faults.len()));
    out
}

/// One server-sent event of `/api/events` as a compact line, colored with ANSI
/// escapes when `color` is on. `None` for comments and unknown kinds.
pub fn tail_line(event: &str, data: &Value, color: bool) -> Option<String> {
    use anstyle::{AnsiColor, Style};
    let paint = |style: Style, text: &str| {
        if color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    };
    let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    let time = chrono::Utc::now().format("%H:%M:%S%.3f").to_string();
    let short = |v: &Value, key: &str| -> Option<String> {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.chars()
                    .take(8)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            })
    };
    let line = match event {
        "exchange" => {
            let status = data.get("status").and_then(Value::as_u64).unwrap_or(0);
            let status_style = match status {
                500.. => fg(AnsiColor::Red).bold(),
                400..=499 => fg(AnsiColor::Yellow),
                _ => fg(AnsiColor::Green),
            };
            let lean = text(data, "lean_status");
            let lean = if lean == "-" {
                String::new()
            } else {
                lean.to_string()
            };
            let lean_style = match lean.as_str() {
                "RECONNECT_REQUIRED" => fg(AnsiColor::Magenta).bold(),
                "FAILED" => fg(AnsiColor::Red),
                "OK" | "" => Style::new(),
                _ => fg(AnsiColor::Yellow),
            };
            let mut line = format!(
                "{time}  {:<6} {:<48} {} {:<18} {:>8.1}ms",
                text(data, "method"),
                text(data, "path"),
                paint(status_style, &status.to_string()),
                paint(lean_style, &lean),
                data.get("duration_ms")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
            );
            if let Some(e) = short(data, "entity_id") {
                line.push_str(&format!("  entity={e}"));
            }
            if let Some(r) = short(data, "reconnect_id") {
                line.push_str(&format!("  reconnect={r}"));
            }
            if let Some(f) = data.get("fault").and_then(Value::as_str) {
                line.push_str(&format!(
                    "  {}",
                    paint(fg(AnsiColor::Red), &format!("fault={f}"))
                ));
            }
            line
        }
        "reconnect_new" => format!(
            "{time}  {} entity={} reconnect_id={} ({})",
            paint(fg(AnsiColor::Magenta).bold(), "RECONNECT"),
            text(data, "entity_id"),
            text(data, "reconnect_id"),
            text(data, "source")
        ),
        "reconnect_resolved" => format!(
            "{time}  {} entity={} by {}",
            paint(fg(AnsiColor::Green).bold(), "RESOLVED"),
            text(data, "entity_id"),
            text(data, "resolved_by")
        ),
        "fault_hit" => format!(
            "{time}  {} {} {} {}",
            paint(fg(AnsiColor::Red).bold(), "FAULT"),
            text(data, "rule"),
            text(data, "action"),
            text(data, "path")
        ),
        "webhook" => format!(
            "{time}  {} {} signature={} {}",
            paint(fg(AnsiColor::Cyan).bold(), "WEBHOOK"),
            text(data, "type"),
            text(data, "signature"),
            text(data, "outcome")
        ),
        _ => return None,
    };
    // With several replicas, which one it happened on.
    Some(match short(data, "replica") {
        Some(replica) => format!("{line}  @{replica}"),
        None => line,
    })
}

/// A Mockbank control answer for the terminal: the users and entities as
/// tables, the clock and other answers as `key: value` lines.
pub(super) fn mockbank_answer(path: &str, answer: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let rows = |list: &Value, keys: &[&str]| -> String {
        let mut out = String::new();
        for item in list.as_array().into_iter().flatten() {
            let cells: Vec<String> = keys.iter().map(|k| text(&item[*k])).collect();
            out.push_str(&cells.join("  "));
            out.push('\n');
        }
        out.trim_end().to_string()
    };
    match path {
        "users" => format!(
            "OTP {}\n{}",
            text(&answer["otp"]),
            rows(&answer["users"], &["username", "password", "behaviour"])
        ),
        "entities" => rows(
            &answer["entities"],
            &[
                "entity_id",
                "username",
                "bank_identifier",
                "session",
                "reconnect_id",
            ],
        ),
        _ => match answer.as_object() {
            Some(map) => map
                .iter()
                .map(|(k, v)| format!("{k}: {}", text(v)))
                .collect::<Vec<_>>()
                .join("\n"),
            None => text(answer),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_are_compact_and_plain_without_color() {
        let ex = serde_json::json!({"method": "POST", "path": "/data/v1/accounts", "status": 200,
            "lean_status": "RECONNECT_REQUIRED", "duration_ms": 12.34, "entity_id": "0123456789abcdef",
            "reconnect_id": "feedbeef-0000"});
        let line = tail_line("exchange", &ex, false).unwrap();
        assert!(
            line.contains("POST") && line.contains("RECONNECT_REQUIRED") && line.contains("12.3ms"),
            "{line}"
        );
        assert!(
            line.contains("entity=01234567") && !line.contains('\u{1b}'),
            "{line}"
        );
        let fleet =
            serde_json::json!({"rule": "r", "action": "status", "path": "/x", "replica": "web-2"});
        assert!(tail_line("fault_hit", &fleet, false)
            .unwrap()
            .ends_with("  @web-2"));
        let colored = tail_line("exchange", &ex, true).unwrap();
        assert!(colored.contains('\u{1b}'));
        assert!(tail_line(
            "reconnect_new",
            &serde_json::json!({"entity_id": "e"}),
            false
        )
        .unwrap()
        .contains("RECONNECT"));
        assert!(tail_line("nonsense", &ex, false).is_none());
    }

    #[test]
    fn tail_lines_carry_no_terminal_escapes_from_the_wire() {
        let hook = serde_json::json!({"type": "entity.created\u{1b}[2J", "signature": "valid", "outcome": "accepted"});
        let line = tail_line("webhook", &hook, false).unwrap();
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }

    #[test]
    fn table_lists_each_record_and_the_pending_count() {
        let answer = serde_json::json!({
            "pending": 1,
            "stats": {"total": 1, "inspected": 1, "uninspected": 0},
            "reconnects": [{"state": "pending", "entity_id": "e-1", "reconnect_id": "r-1",
                            "results_id": null, "api": "v1", "path": "/data/v1/accounts",
                            "last_seen": "2026-11-25T00:35:29.123Z", "replaced": 0,
                            "expires_at": "2026-12-25T00:35:29.123Z",
                            "hits": 4, "calls_while_pending": 3,
                            "first_seen": "2026-11-25T00:35:29.123Z", "source": "upstream"}],
        });
        let table = reconnect_table(&serde_json::from_value(answer).unwrap());
        let line = table.lines().nth(1).unwrap();
        assert!(line.starts_with("pending") && line.contains("e-1") && line.contains("r-1"));
        assert!(line.contains("2026-11-25T00:35:29 ") || line.contains("2026-11-25T00:35:29"));
        assert!(table.ends_with("1 pending, 1 listed\n"));
    }
}
