//! Expenses and cash flows, computed from a test user's own transactions
//! (what counts: the module docs of `insights`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::*;

// ------------------------------------------------------------------ expenses

/// Lean's expense category of a merchant category code.
fn category(mcc: &str) -> &'static str {
    match mcc {
        "5411" => "GROCERIES",
        "5812" | "5814" => "RESTAURANTS_DINING",
        "5399" | "5942" => "RETAIL",
        "4814" | "4900" | "6513" => "RENT_AND_SERVICES",
        "4121" | "5541" => "TRANSPORT",
        _ => "OTHER",
    }
}

/// The `insights` of `GET /insights/v2/expenses`.
pub(in crate::mockbank) fn expenses(user: &TestUser, today: NaiveDate, window: Window) -> Value {
    let span = Span::new(window, data_start(user), today);
    let debits = select(user.accounts.iter(), &span, |_, t| !t.credit);
    let months = per_month(&span, &debits);
    let categories = by_category(&debits);
    let all = sum(&debits);
    let breakdowns: Vec<Value> = categories
        .iter()
        .map(|(name, entries)| {
            let fils = sum(entries);
            let mut item = Map::new();
            item.insert("category".into(), json!(name));
            item.insert("amount".into(), money(fils));
            item.insert("count".into(), json!(entries.len()));
            item.insert(
                "fraction_of_total_expenses".into(),
                json!(ratio(fils as f64, all as f64)),
            );
            item.insert(
                "average_days_between_transactions".into(),
                json!(days_between(entries)),
            );
            let mut rest = summary(entries, &per_month(&span, entries));
            rest.remove("amount");
            rest.remove("count");
            item.extend(rest);
            Value::Object(item)
        })
        .collect();
    let mut total = summary(&debits, &months);
    total.insert(
        "breakdown".into(),
        json!([{"by": "category", "breakdowns": breakdowns}]),
    );
    let monthly: Vec<Value> = months
        .iter()
        .map(|(m, fils, count)| {
            let in_month: Vec<Entry<'_>> = debits
                .iter()
                .filter(|(_, t)| Month::of(t.date) == m.key())
                .copied()
                .collect();
            let breakdowns: Vec<Value> = by_category(&in_month)
                .iter()
                .map(|(name, entries)| {
                    let part = sum(entries);
                    json!({
                        "category": name,
                        "amount": money(part),
                        "count": entries.len(),
                        "fraction_of_total_expenses": ratio(part as f64, *fils as f64),
                    })
                })
                .collect();
            json!({
                "month": m.month,
                "year": m.year,
                "amount": money(*fils),
                "count": count,
                "is_month_complete": m.complete,
                "breakdown": [{"by": "category", "breakdowns": breakdowns}],
            })
        })
        .collect();
    json!({"currency": currency(user), "total": total, "monthly_totals": monthly})
}

/// Entries by category, the largest amount first.
fn by_category<'a>(entries: &[Entry<'a>]) -> Vec<(&'static str, Vec<Entry<'a>>)> {
    let mut groups: BTreeMap<&'static str, Vec<Entry<'a>>> = BTreeMap::new();
    for entry in entries {
        groups
            .entry(category(entry.1.merchant.1))
            .or_default()
            .push(*entry);
    }
    let mut out: Vec<_> = groups.into_iter().collect();
    out.sort_by_key(|(_, entries)| std::cmp::Reverse(sum(entries)));
    out
}

/// Days between the first and last of `entries` per gap (0 for one entry).
fn days_between(entries: &[Entry<'_>]) -> f64 {
    match (entries.last(), entries.first()) {
        (Some((_, first)), Some((_, last))) if entries.len() > 1 => {
            round2((last.date - first.date).num_days() as f64 / (entries.len() - 1) as f64)
        }
        _ => 0.0,
    }
}

// ------------------------------------------------------------------ cash flows

/// The `insights` of `GET /insights/v2/assets/cashflows`.
pub(in crate::mockbank) fn cashflows(user: &TestUser, today: NaiveDate, window: Window) -> Value {
    let span = Span::new(window, data_start(user), today);
    let cur = currency(user);
    let moves = select(
        user.accounts.iter().filter(|a| is_asset(a)),
        &span,
        |_, _| true,
    );
    let flows = |entries: &[Entry<'_>]| {
        let (ins, outs): (Vec<Entry<'_>>, Vec<Entry<'_>>) =
            entries.iter().copied().partition(|(_, t)| t.credit);
        let (fin, fout) = (sum(&ins), sum(&outs));
        json!({
            "inwards": [{"category": "inflow", "amount": amount(cur, fin), "count": ins.len()}],
            "outwards": [{"category": "outflow", "amount": amount(cur, fout), "count": outs.len()}],
            "net": {"overall_amount": amount(cur, fin - fout), "net_cashflow": null},
        })
    };
    let monthly: Vec<Value> = span
        .months
        .iter()
        .map(|m| {
            let in_month: Vec<Entry<'_>> = moves
                .iter()
                .filter(|(_, t)| Month::of(t.date) == m.key())
                .copied()
                .collect();
            let mut v = json!({"month": m.month, "year": m.year, "is_month_complete": m.complete});
            if let (Some(obj), Value::Object(f)) = (v.as_object_mut(), flows(&in_month)) {
                obj.extend(f);
            }
            v
        })
        .collect();
    let mut behaviour = Vec::new();
    let mut big = Vec::new();
    for n in [12, 9, 6, 3] {
        let from = span.period_start(n);
        let recent: Vec<Entry<'_>> = moves
            .iter()
            .filter(|(_, t)| t.date > from)
            .copied()
            .collect();
        let (ins, outs): (Vec<Entry<'_>>, Vec<Entry<'_>>) =
            recent.iter().copied().partition(|(_, t)| t.credit);
        let (fin, fout) = (sum(&ins) as f64 / 100.0, sum(&outs) as f64 / 100.0);
        let average_in = ratio(fin, ins.len() as f64);
        let average_out = ratio(fout, outs.len() as f64);
        let count_in = (ins.len() as f64 / f64::from(n)).round();
        let count_out = (outs.len() as f64 / f64::from(n)).round();
        behaviour.push(json!({
            "period": format!("P{n}M"),
            "grand_average_credit_amount": {"currency": cur, "amount": average_in},
            "grand_average_credit_count": count_in as i64,
            "grand_average_debit_amount": {"currency": cur, "amount": average_out},
            "grand_average_debit_count": count_out as i64,
            "grand_average_credit_debit_amount_ratio": ratio(average_in, average_out),
            "grand_average_credit_debit_count_ratio": ratio(count_in, count_out),
            "total_volume_of_credit": {"currency": cur, "amount": round2(fin)},
            "total_volume_of_debit": {"currency": cur, "amount": round2(fout)},
            "total_volume_of_credit_debit_ratio": ratio(fin, fout),
        }));
        let max_in = largest_per_month(&ins) / f64::from(n);
        let max_out = largest_per_month(&outs) / f64::from(n);
        big.push(json!({
            "period": format!("P{n}M"),
            "average_max_monthly_credit_amount": {"currency": cur, "amount": round2(max_in)},
            "average_max_monthly_debit_amount": {"currency": cur, "amount": round2(max_out)},
            "average_max_monthly_credit_debit_amount_ratio": ratio(max_in, max_out),
        }));
    }
    json!({
        "total": flows(&moves),
        "monthly_totals": monthly,
        "credit_debit_behaviour": {"periods": behaviour},
        "big_payments": {"periods": big},
    })
}

/// The sum over months of each month's largest amount, in units.
fn largest_per_month(entries: &[Entry<'_>]) -> f64 {
    let mut by: BTreeMap<(i32, u32), i64> = BTreeMap::new();
    for (_, t) in entries {
        let slot = by.entry(Month::of(t.date)).or_default();
        *slot = (*slot).max(t.amount);
    }
    by.values().sum::<i64>() as f64 / 100.0
}
