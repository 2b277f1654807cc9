//! The insights Lean serves only in KSA, in the shapes of Lean's KSA Postman
//! collection, computed from the user's own transactions so that they add up
//! against `/data/v2/accounts/{account_id}/transactions`:
//!
//! - **credit obligations** (`/insights/v2/liabilities/credit-obligations`):
//!   `loan_repayments` are the debits of `transaction_type: LOAN_REPAYMENT`
//!   (KSA current accounts pay a monthly finance installment),
//!   `loan_received` the credits of `LOAN_DISBURSEMENT`; `credit_cards_spending`
//!   and `credit_cards_repayments` are the debits and credits of credit card
//!   accounts, whose balance (what is owed) is `credit_cards_balance`.
//! - **non-credit obligations** (`/insights/v2/liabilities/non-credit-obligations`):
//!   the debits of current and savings accounts to a merchant (`merchant_name`)
//!   met in at least two calendar months of the span, other than loan
//!   repayments and transfers; broken down by merchant
//!   (`RECURRING_TRANSACTIONS`), the parts adding up to the total.
//! - **employment** (`/insights/v2/income/employment`): the `SALARY` credits
//!   by payer, each payer matched to its registered employer.
//! - **cash balances** (`/insights/v2/assets/balances`): the combined
//!   end-of-day balance of the current and savings accounts; `current_balance`
//!   is their closing balance, `contribution_amount` a month's credits.
//!
//! Monthly averages are over the span's months for totals and over the months
//! a merchant was paid for its part. KSA's weekend is Friday and Saturday.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Months, NaiveDate, Weekday};
use serde_json::{json, Value};

use super::{
    amount, currency, data_start, date_time, is_asset, mean, money, per_month, ratio, round2,
    sample_deviation, select, sum, Entry, Month, Span, Window,
};
use crate::mockbank::region::KSA_EMPLOYERS;
use crate::mockbank::users::{Account, TestUser};

/// A credit counts toward `percent_greater_than_x` above this, in halalas
/// (1,000 SAR).
const LARGE: i64 = 100_000;

fn counted(cur: &str, entries: &[Entry<'_>]) -> Value {
    json!({"amount": amount(cur, sum(entries)), "count": entries.len()})
}

/// The entries of `entries` booked in `month`.
fn in_month<'a>(entries: &[Entry<'a>], month: &Month) -> Vec<Entry<'a>> {
    entries
        .iter()
        .filter(|(_, t)| Month::of(t.date) == month.key())
        .copied()
        .collect()
}

/// The end-of-day balance of `accounts` on `day` (before their first
/// transaction: their opening balance).
fn balance_on(accounts: &[&Account], day: NaiveDate) -> i64 {
    accounts
        .iter()
        .map(|a| {
            a.transactions
                .iter()
                .take_while(|t| t.date <= day)
                .last()
                .map_or(a.opening_balance, |t| t.balance_after)
        })
        .sum()
}

/// Each day of `span` up to today with the end-of-day balance of `accounts`.
fn daily(accounts: &[&Account], span: &Span) -> Vec<(NaiveDate, i64)> {
    let last = span.end.min(span.today);
    span.start
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| (d, balance_on(accounts, d)))
        .collect()
}

/// The mean of `days`' balances, in halalas.
fn average(days: &[(NaiveDate, i64)]) -> i64 {
    let xs: Vec<f64> = days.iter().map(|(_, b)| *b as f64).collect();
    mean(&xs).round() as i64
}

/// The balance before `span` starts.
fn initial(accounts: &[&Account], span: &Span) -> i64 {
    balance_on(accounts, span.start.pred_opt().unwrap_or(span.start))
}

/// `DAILY`, `WEEKLY` or `MONTHLY`: how often money comes in, from the mean
/// count of credits a month.
fn frequency(credits: usize, months: usize) -> &'static str {
    let per_month = credits as f64 / months.max(1) as f64;
    if per_month >= 20.0 {
        "DAILY"
    } else if per_month >= 4.0 {
        "WEEKLY"
    } else {
        "MONTHLY"
    }
}

// ------------------------------------------------------------------ credit

/// The `insights` of `GET /insights/v2/liabilities/credit-obligations`.
pub(in crate::mockbank) fn credit_obligations(
    user: &TestUser,
    today: NaiveDate,
    window: Window,
) -> Value {
    let span = Span::new(window, data_start(user), today);
    let cur = currency(user);
    let all = user.accounts.iter();
    let repaid = select(all.clone(), &span, |_, t| {
        !t.credit && t.kind == "LOAN_REPAYMENT"
    });
    let received = select(all, &span, |_, t| t.credit && t.kind == "LOAN_DISBURSEMENT");
    let cards: Vec<&Account> = user.accounts.iter().filter(|a| !is_asset(a)).collect();
    let spent = select(cards.iter().copied(), &span, |_, t| !t.credit);
    let card_repaid = select(cards.iter().copied(), &span, |_, t| t.credit);
    let owed_now = -balance_on(&cards, span.end.min(today));
    let part = |repaid: &[Entry<'_>],
                received: &[Entry<'_>],
                spent: &[Entry<'_>],
                card_repaid: &[Entry<'_>]| {
        json!({
            "loan_repayments": counted(cur, repaid),
            "loan_received": counted(cur, received),
            "credit_cards_repayments": counted(cur, card_repaid),
            "credit_cards_spending": counted(cur, spent),
        })
    };
    let mut total = part(&repaid, &received, &spent, &card_repaid);
    let stats = loan_stats(cur, "loan_repayment", &repaid)
        .into_iter()
        .chain(loan_stats(cur, "loan_received", &received));
    let balance = card_balance(cur, &cards, &span, card_repaid.len());
    if let Some(obj) = total.as_object_mut() {
        obj.extend(stats);
        obj.insert("credit_cards_balance".into(), balance.clone());
    }
    let monthly: Vec<Value> = span
        .months
        .iter()
        .map(|m| {
            let mut v = part(
                &in_month(&repaid, m),
                &in_month(&received, m),
                &in_month(&spent, m),
                &in_month(&card_repaid, m),
            );
            v["month"] = json!(m.month);
            v["year"] = json!(m.year);
            v["is_month_complete"] = json!(m.complete);
            v["credit_cards_balance"] = balance.clone();
            v
        })
        .collect();
    json!({
        "current_credit_cards_balance": {
            "amount": if cards.is_empty() { Value::Null } else { amount(cur, owed_now) },
        },
        "number_of_credit_cards": cards.len(),
        "total": total,
        "monthly_totals": monthly,
    })
}

/// `minimum_…`, `maximum_…`, `average_…` and `last_…_date_time` of loan
/// entries (null without any).
fn loan_stats(cur: &str, name: &str, entries: &[Entry<'_>]) -> Vec<(String, Value)> {
    let amounts: Vec<i64> = entries.iter().map(|(_, t)| t.amount).collect();
    let some = |v: Option<i64>| v.map_or(Value::Null, |fils| amount(cur, fils));
    let avg = (!amounts.is_empty()).then(|| sum(entries) / amounts.len() as i64);
    vec![
        (
            format!("minimum_{name}"),
            some(amounts.iter().min().copied()),
        ),
        (
            format!("maximum_{name}"),
            some(amounts.iter().max().copied()),
        ),
        (format!("average_{name}"), some(avg)),
        (
            format!("last_{name}_date_time"),
            json!(entries.first().map(|(_, t)| date_time(t.date))),
        ),
    ]
}

/// What the cards owe: average, at the start, now, what is left of the limit
/// and how often they are repaid; nulls without a card.
fn card_balance(cur: &str, cards: &[&Account], span: &Span, repayments: usize) -> Value {
    if cards.is_empty() {
        return json!({
            "average_balance": null, "initial_balance": null, "current_balance": null,
            "available_balance": null, "frequency_of_contributions": null,
        });
    }
    let days = daily(cards, span);
    let owed_now = -days.last().map_or(0, |(_, b)| *b);
    let limit: i64 = cards.iter().filter_map(|a| a.credit_limit).sum();
    json!({
        "average_balance": amount(cur, -average(&days)),
        "initial_balance": amount(cur, -initial(cards, span)),
        "current_balance": amount(cur, owed_now),
        "available_balance": amount(cur, limit - owed_now),
        "frequency_of_contributions": frequency(repayments, span.months.len()),
    })
}

// ------------------------------------------------------------------ non-credit

/// `{month: "January", amount}` of the largest (`max`) or smallest month.
fn extreme(cur: &str, months: &[(Month, i64)], max: bool) -> Value {
    let pick = if max {
        months.iter().max_by_key(|(_, fils)| *fils)
    } else {
        months.iter().min_by_key(|(_, fils)| *fils)
    };
    pick.map_or(Value::Null, |(m, fils)| {
        let name = u8::try_from(m.month)
            .ok()
            .and_then(|n| chrono::Month::try_from(n).ok())
            .map_or("", |month| month.name());
        json!({"month": name, "amount": amount(cur, *fils)})
    })
}

/// The shared keys of a total and of a part: monthly averages over `months`.
fn obligation_stats(cur: &str, entries: &[Entry<'_>], months: &[(Month, i64)]) -> Value {
    let n = months.len().max(1) as i64;
    json!({
        "amount": amount(cur, sum(entries)),
        "count": entries.len(),
        "average_monthly_amount": amount(cur, sum(entries) / n),
        "average_monthly_count": (entries.len() as f64 / n as f64).round() as i64,
        "maximum_monthly_amount": extreme(cur, months, true),
        "minimum_monthly_amount": extreme(cur, months, false),
    })
}

/// Each month of `span` with what `entries` booked in it.
fn month_sums(span: &Span, entries: &[Entry<'_>]) -> Vec<(Month, i64)> {
    per_month(span, entries)
        .into_iter()
        .map(|(m, fils, _)| (m, fils))
        .collect()
}

/// The `insights` of `GET /insights/v2/liabilities/non-credit-obligations`.
pub(in crate::mockbank) fn non_credit_obligations(
    user: &TestUser,
    today: NaiveDate,
    window: Window,
) -> Value {
    let span = Span::new(window, data_start(user), today);
    let cur = currency(user);
    let debits = select(
        user.accounts.iter().filter(|a| is_asset(a)),
        &span,
        |_, t| !t.credit && !matches!(t.kind, "LOAN_REPAYMENT" | "TRANSFER"),
    );
    let mut by_merchant: BTreeMap<&str, Vec<Entry<'_>>> = BTreeMap::new();
    for entry in &debits {
        by_merchant
            .entry(entry.1.merchant.0)
            .or_default()
            .push(*entry);
    }
    by_merchant.retain(|_, entries| {
        let months: BTreeSet<(i32, u32)> = entries.iter().map(|(_, t)| Month::of(t.date)).collect();
        months.len() >= 2
    });
    let mut recurring: Vec<Entry<'_>> = by_merchant.values().flatten().copied().collect();
    recurring.sort_by_key(|(_, t)| std::cmp::Reverse(t.date));
    let all = sum(&recurring);
    let mut parts: Vec<(&str, Vec<Entry<'_>>)> = by_merchant.into_iter().collect();
    parts.sort_by_key(|(_, entries)| std::cmp::Reverse(sum(entries)));
    let breakdowns: Vec<Value> = parts
        .iter()
        .map(|(name, entries)| {
            let active: Vec<(Month, i64)> = month_sums(&span, entries)
                .into_iter()
                .filter(|(_, fils)| *fils > 0)
                .collect();
            let mut v = obligation_stats(cur, entries, &active);
            v["transaction_name"] = json!(name.to_uppercase());
            v["fraction_of_total_obligations"] = json!(ratio(sum(entries) as f64, all as f64));
            v
        })
        .collect();
    let months = month_sums(&span, &recurring);
    let mut total = obligation_stats(cur, &recurring, &months);
    total["first_date_time"] = json!(recurring.last().map(|(_, t)| date_time(t.date)));
    total["last_date_time"] = json!(recurring.first().map(|(_, t)| date_time(t.date)));
    total["breakdown"] = json!([{"by": "RECURRING_TRANSACTIONS", "breakdowns": breakdowns}]);
    let monthly: Vec<Value> = span
        .months
        .iter()
        .map(|m| {
            let entries = in_month(&recurring, m);
            json!({
                "month": m.month, "year": m.year, "is_month_complete": m.complete,
                "amount": amount(cur, sum(&entries)), "count": entries.len(),
            })
        })
        .collect();
    json!({"total": total, "monthly_totals": monthly})
}

// ------------------------------------------------------------------ employment

/// The `insights` of `GET /insights/v2/income/employment`.
pub(in crate::mockbank) fn employment(user: &TestUser, today: NaiveDate, window: Window) -> Value {
    let span = Span::new(window, data_start(user), today);
    let salaries = select(user.accounts.iter(), &span, |_, t| {
        t.credit && t.kind == "SALARY"
    });
    let mut by_payer: BTreeMap<&str, Vec<Entry<'_>>> = BTreeMap::new();
    for entry in &salaries {
        by_payer.entry(entry.1.merchant.0).or_default().push(*entry);
    }
    let details: Vec<Value> = by_payer
        .iter()
        .map(|(payer, entries)| {
            let days: Vec<f64> = entries
                .iter()
                .map(|(_, t)| f64::from(t.date.day()))
                .collect();
            let amounts: Vec<f64> = entries
                .iter()
                .map(|(_, t)| t.amount as f64 / 100.0)
                .collect();
            let date_variance = round2(sample_deviation(&days));
            let amount_variance = round2(sample_deviation(&amounts));
            // Consistent: paid within three days of the same date each month,
            // amounts within a tenth of their mean.
            let consistent = date_variance <= 3.0 && amount_variance <= mean(&amounts) / 10.0;
            let matched = KSA_EMPLOYERS.iter().find(|e| e.bank_name == *payer).map_or(
                Value::Null,
                |e| json!({"name": {"en": e.en, "ar": e.ar}, "cr_number": e.cr_number}),
            );
            json!({
                "bank_employer_name": payer,
                "matched_reference_employer": matched,
                "salary_consistent": consistent,
                "salary_date_variance": date_variance,
                "salary_amount_variance": amount_variance,
                "first_salary_date": entries.last().map(|(_, t)| date_time(t.date)),
            })
        })
        .collect();
    json!({"employment_details": details})
}

// ------------------------------------------------------------------ balances

/// The `insights` of `GET /insights/v2/assets/balances`.
pub(in crate::mockbank) fn balances(user: &TestUser, today: NaiveDate, window: Window) -> Value {
    let span = Span::new(window, data_start(user), today);
    let cur = currency(user);
    let assets: Vec<&Account> = user.accounts.iter().filter(|a| is_asset(a)).collect();
    let days = daily(&assets, &span);
    let moves = select(assets.iter().copied(), &span, |_, _| true);
    let (credits, debits): (Vec<Entry<'_>>, Vec<Entry<'_>>) =
        moves.iter().copied().partition(|(_, t)| t.credit);
    let start = initial(&assets, &span);
    let now = days.last().map_or(start, |(_, b)| *b);
    let monthly: Vec<Value> = span
        .months
        .iter()
        .rev()
        .map(|m| {
            let in_it: Vec<(NaiveDate, i64)> = days
                .iter()
                .filter(|(d, _)| Month::of(*d) == m.key())
                .copied()
                .collect();
            let before = in_it.first().map_or(start, |(d, _)| {
                balance_on(&assets, d.pred_opt().unwrap_or(*d))
            });
            let after = in_it.last().map_or(before, |(_, b)| *b);
            json!({
                "month": m.month, "year": m.year, "is_month_complete": m.complete,
                "monthly_growth_rate": ratio((after - before) as f64, before as f64),
                "contribution_amount": amount(cur, sum(&in_month(&credits, m))),
                "average_balance": amount(cur, average(&in_it)),
                "initial_balance": amount(cur, before),
            })
        })
        .collect();
    let grew = monthly
        .iter()
        .filter(|m| m["is_month_complete"] == true)
        .filter(|m| m["monthly_growth_rate"].as_f64().is_some_and(|r| r > 0.0))
        .count();
    let periods: Vec<Value> = [3, 6, 9, 12]
        .iter()
        .map(|n| {
            let from = today
                .checked_sub_months(Months::new(*n))
                .unwrap_or(span.start);
            let recent: Vec<(NaiveDate, i64)> =
                days.iter().filter(|(d, _)| *d > from).copied().collect();
            json!({"period": format!("P{n}M"), "average_balance": money(average(&recent))})
        })
        .collect();
    let changes: Vec<f64> = span
        .months
        .iter()
        .map(|m| (sum(&in_month(&credits, m)) - sum(&in_month(&debits, m))) as f64 / 100.0)
        .collect();
    json!({
        "total": {
            "average_balance": amount(cur, average(&days)),
            "initial_balance": amount(cur, start),
            "current_balance": amount(cur, now),
            "available_balance": amount(cur, now),
            "frequency_of_contributions": frequency(credits.len(), span.months.len()),
        },
        "monthly_totals": monthly,
        "balance_factors": {
            "periods": periods,
            "balance_trend_average_month_on_month": round2(mean(&changes)),
            "current_balance": money(now),
            "balance_trend": grew,
            "inflow_factors": flow_factors(&credits, true),
            "outflow_factors": flow_factors(&debits, false),
            "daily_net_cashflow_estimate": round2((now - start) as f64 / 100.0 / days.len().max(1) as f64),
        },
    })
}

/// What describes the credits (`inflow`) or the debits of the span.
fn flow_factors(entries: &[Entry<'_>], inflow: bool) -> Value {
    let mut amounts: Vec<i64> = entries.iter().map(|(_, t)| t.amount).collect();
    amounts.sort_unstable();
    let median = |xs: &[i64]| xs.get(xs.len() / 2).copied().unwrap_or(0);
    let weekend = entries
        .iter()
        .filter(|(_, t)| matches!(t.date.weekday(), Weekday::Fri | Weekday::Sat))
        .count();
    // Oldest first, for the gaps between them.
    let mut dates: Vec<NaiveDate> = entries.iter().map(|(_, t)| t.date).collect();
    dates.sort_unstable();
    let mut gaps: Vec<i64> = dates.windows(2).map(|w| (w[1] - w[0]).num_days()).collect();
    gaps.sort_unstable();
    let percent = |n: usize| (n * 100).checked_div(entries.len()).unwrap_or(0);
    let large = entries.iter().filter(|(_, t)| t.amount > LARGE).count();
    let mut months_of: BTreeMap<&str, BTreeSet<(i32, u32)>> = BTreeMap::new();
    for (_, t) in entries {
        months_of
            .entry(t.merchant.0)
            .or_default()
            .insert(Month::of(t.date));
    }
    let recurring: Vec<f64> = entries
        .iter()
        .filter(|(_, t)| months_of.get(t.merchant.0).is_some_and(|m| m.len() >= 2))
        .map(|(_, t)| t.amount as f64 / 100.0)
        .collect();
    let mut factors = json!({
        "median_transaction_amount": money(median(&amounts)),
        "max_transaction_amount": money(amounts.last().copied().unwrap_or(0)),
        "min_transaction_amount": money(amounts.first().copied().unwrap_or(0)),
        "weekday_transaction_count": entries.len() - weekend,
        "weekend_transaction_count": weekend,
        "average_time": ratio(gaps.iter().sum::<i64>() as f64, gaps.len() as f64),
        "percent_greater_than_x": percent(large),
        "recurring_average": round2(mean(&recurring)),
        "median_days": median(&gaps),
    });
    if inflow {
        let salaries = entries.iter().filter(|(_, t)| t.kind == "SALARY").count();
        factors["percent_salary_transaction"] = json!(percent(salaries));
    } else {
        factors["spike_transactions"] = json!(spikes(entries));
    }
    factors
}

/// The months whose debits exceed one and a half times the monthly mean.
fn spikes(entries: &[Entry<'_>]) -> Vec<Value> {
    let mut by: BTreeMap<(i32, u32), i64> = BTreeMap::new();
    for (_, t) in entries {
        *by.entry(Month::of(t.date)).or_default() += t.amount;
    }
    let totals: Vec<f64> = by.values().map(|f| *f as f64).collect();
    let threshold = mean(&totals) * 1.5;
    by.iter()
        .filter(|(_, fils)| **fils as f64 > threshold)
        .map(|((year, month), fils)| json!({"month": month, "year": year, "amount": money(*fils)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mockbank::users::test_users;
    use crate::mockbank::Region;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 5, 13).unwrap()
    }

    fn fils(v: &Value) -> i64 {
        (v["amount"].as_f64().unwrap() * 100.0).round() as i64
    }

    #[test]
    fn non_credit_obligations_parts_add_up_to_the_total_and_the_months() {
        let user = &test_users(7, today(), Region::Ksa)[2];
        let v = non_credit_obligations(user, today(), Window::default());
        let total = fils(&v["total"]["amount"]);
        assert!(total > 0, "{v}");
        let parts: i64 = v["total"]["breakdown"][0]["breakdowns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| fils(&p["amount"]))
            .sum();
        assert_eq!(parts, total);
        let months: i64 = v["monthly_totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| fils(&m["amount"]))
            .sum();
        assert_eq!(months, total);
        assert_eq!(v["total"]["amount"]["currency"], "SAR");
    }

    #[test]
    fn credit_obligations_count_installments_and_card_use() {
        let user = &test_users(7, today(), Region::Ksa)[2];
        let v = credit_obligations(user, today(), Window::default());
        let installments: i64 = user
            .accounts
            .iter()
            .flat_map(|a| &a.transactions)
            .filter(|t| t.kind == "LOAN_REPAYMENT")
            .map(|t| t.amount)
            .sum();
        assert!(installments > 0);
        assert_eq!(fils(&v["total"]["loan_repayments"]["amount"]), installments);
        assert_eq!(v["number_of_credit_cards"], 1);
        let card = user.accounts.iter().find(|a| !is_asset(a)).unwrap();
        assert_eq!(
            fils(&v["current_credit_cards_balance"]["amount"]),
            -card.closing_balance()
        );
    }

    #[test]
    fn cash_balances_end_at_the_closing_balances_and_months_run_oldest_first() {
        let user = &test_users(7, today(), Region::Ksa)[1];
        let v = balances(user, today(), Window::default());
        let closing: i64 = user.accounts.iter().map(|a| a.closing_balance()).sum();
        assert_eq!(fils(&v["total"]["current_balance"]), closing);
        let opening: i64 = user.accounts.iter().map(|a| a.opening_balance).sum();
        assert_eq!(fils(&v["total"]["initial_balance"]), opening);
        let months = v["monthly_totals"].as_array().unwrap();
        assert!(months[0]["year"].as_i64() <= months[months.len() - 1]["year"].as_i64());
        assert_eq!(months[months.len() - 1]["is_month_complete"], false);
    }

    #[test]
    fn employment_names_the_registered_employer_of_the_salaries() {
        let user = &test_users(7, today(), Region::Ksa)[0];
        let v = employment(user, today(), Window::default());
        let details = v["employment_details"].as_array().unwrap();
        assert_eq!(details.len(), 1);
        let employer = user.employer.unwrap();
        assert_eq!(details[0]["bank_employer_name"], employer.bank_name);
        assert_eq!(
            details[0]["matched_reference_employer"]["cr_number"],
            employer.cr_number
        );
        assert_eq!(details[0]["salary_date_variance"], 0.0);
    }
}
