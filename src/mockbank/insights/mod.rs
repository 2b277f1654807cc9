//! Insights computed from a test user's own transactions — income, expenses and
//! cash flows — in the shapes Lean's Postman collection records. Free of HTTP:
//! the handlers are in `api/insights.rs`, and an insight is a data call like
//! any other (same entity checks, session rules and async path).
//!
//! What counts, so that the numbers add up against
//! `/data/v2/accounts/{account_id}/transactions` (amounts are summed in fils,
//! then written with two decimals):
//!
//! - **income**: the credits of current and savings accounts, less transfers
//!   between the customer's own accounts (`transaction_type: TRANSFER`);
//!   `salary` is those of `transaction_type: SALARY`, `non_salary` the rest.
//!   A credit card's credits are repayments, not income.
//! - **expenses**: every debit of every account, by category of its merchant
//!   category code.
//! - **cash flows** (`/insights/v2/assets/cashflows`): credits in and debits out
//!   of the asset accounts (current and savings; a credit card is a
//!   liability), so `net` is how much those balances grew.
//!
//! Expenses and cash flows are in `spending.rs`; the KSA-only insights
//! (obligations, employment, cash balances) in `ksa.rs`, with what they count.
//!
//! The months run from the first transaction of the entity's accounts (or the
//! `start_date` asked for) to today (or the `end_date`), newest first; a month
//! is complete when the data covers all of it. Periods (`P3M` … `P12M`) are the
//! last 3 … 12 months up to today.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use serde_json::{json, Map, Value};

use super::users::{Account, SubType, TestUser, Txn};

mod ksa;
mod spending;
pub(super) use ksa::{balances, credit_obligations, employment, non_credit_obligations};
pub(super) use spending::{cashflows, expenses};

/// What an insights call asked for; kept with async and post-reconnect results
/// like the data a data call asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Insight {
    /// `POST /insights/v2/income`
    Income(IncomeType),
    /// `GET /insights/v2/expenses`
    Expenses(Window),
    /// `GET /insights/v2/assets/cashflows`
    Cashflows(Window),
    /// `GET /insights/v2/liabilities/credit-obligations` (KSA)
    CreditObligations(Window),
    /// `GET /insights/v2/liabilities/non-credit-obligations` (KSA)
    NonCreditObligations(Window),
    /// `GET /insights/v2/income/employment` (KSA)
    Employment(Window),
    /// `GET /insights/v2/assets/balances` (KSA)
    Balances(Window),
    /// `POST /insights/v1/name-verification`: the name to compare with the
    /// entity's identity.
    NameVerification(String),
}

/// `income_type` of an income call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IncomeType {
    /// `ALL`: salary and non-salary income.
    All,
    /// `SALARY` only (`non_salary` is null).
    Salary,
    /// `NON_SALARY` only (`salary` is null).
    NonSalary,
}

impl IncomeType {
    /// From Lean's value.
    pub(super) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "ALL" => IncomeType::All,
            "SALARY" => IncomeType::Salary,
            "NON_SALARY" => IncomeType::NonSalary,
            _ => return None,
        })
    }
}

/// `start_date` / `end_date` of a call (none: from the first transaction, to
/// today).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Window {
    /// First day included.
    pub(super) start: Option<NaiveDate>,
    /// Last day included.
    pub(super) end: Option<NaiveDate>,
}

// ------------------------------------------------------------------ months

/// One calendar month of the span, with what fell in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Month {
    year: i32,
    month: u32,
    complete: bool,
}

impl Month {
    fn of(day: NaiveDate) -> (i32, u32) {
        (day.year(), day.month())
    }

    fn key(self) -> (i32, u32) {
        (self.year, self.month)
    }

    fn json(self, fils: i64) -> Value {
        json!({"month": self.month, "year": self.year, "amount": money(fils)})
    }
}

/// The days an insight covers and the months they fall in.
struct Span {
    start: NaiveDate,
    end: NaiveDate,
    today: NaiveDate,
    /// Newest first.
    months: Vec<Month>,
}

impl Span {
    /// From `window` over data that starts on `data_start`.
    fn new(window: Window, data_start: Option<NaiveDate>, today: NaiveDate) -> Span {
        let end = window.end.unwrap_or(today);
        let start = window.start.or(data_start).unwrap_or(end).min(end);
        // The data covers a day when it is past the first transaction and
        // not after today (today itself is not over).
        let covered_from = data_start.map_or(start, |d| d.max(start));
        let mut months = Vec::new();
        let mut first = NaiveDate::from_ymd_opt(end.year(), end.month(), 1).unwrap_or(end);
        loop {
            let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
            let last = next.pred_opt().unwrap_or(first);
            months.push(Month {
                year: first.year(),
                month: first.month(),
                complete: first >= covered_from && last <= end && last < today,
            });
            if first <= start {
                break;
            }
            first = first.checked_sub_months(Months::new(1)).unwrap_or(start);
        }
        Span {
            start,
            end,
            today,
            months,
        }
    }

    fn contains(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.end
    }

    /// The first day of the last `n` months up to today.
    fn period_start(&self, n: u32) -> NaiveDate {
        self.today
            .checked_sub_months(Months::new(n))
            .unwrap_or(self.start)
    }
}

/// A transaction with its account.
type Entry<'a> = (&'a Account, &'a Txn);

/// The transactions of `accounts` in `span` that `keep` selects, newest first.
fn select<'a>(
    accounts: impl Iterator<Item = &'a Account>,
    span: &Span,
    keep: impl Fn(&Account, &Txn) -> bool,
) -> Vec<Entry<'a>> {
    let mut out: Vec<Entry<'a>> = accounts
        .flat_map(|a| a.transactions.iter().map(move |t| (a, t)))
        .filter(|(a, t)| span.contains(t.date) && keep(a, t))
        .collect();
    out.sort_by_key(|(_, t)| std::cmp::Reverse(t.date));
    out
}

/// The first transaction date of the user's accounts.
fn data_start(user: &TestUser) -> Option<NaiveDate> {
    user.accounts
        .iter()
        .filter_map(|a| a.transactions.first().map(|t| t.date))
        .min()
}

fn currency(user: &TestUser) -> &'static str {
    user.accounts.first().map_or("AED", |a| a.currency)
}

fn is_asset(a: &Account) -> bool {
    a.sub_type != SubType::CreditCard
}

// ------------------------------------------------------------------ numbers

/// Fils to a JSON amount with two decimals.
fn money(fils: i64) -> Value {
    json!(fils as f64 / 100.0)
}

fn amount(currency: &str, fils: i64) -> Value {
    json!({"currency": currency, "amount": money(fils)})
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `a / b` with two decimals; 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        round2(a / b)
    }
}

fn date_time(day: NaiveDate) -> String {
    format!("{day}T00:00:00Z")
}

fn sum(entries: &[Entry<'_>]) -> i64 {
    entries.iter().map(|(_, t)| t.amount).sum()
}

/// Amount and count per month of `span`, newest first.
fn per_month(span: &Span, entries: &[Entry<'_>]) -> Vec<(Month, i64, usize)> {
    let mut by: BTreeMap<(i32, u32), (i64, usize)> = BTreeMap::new();
    for (_, t) in entries {
        let slot = by.entry(Month::of(t.date)).or_default();
        slot.0 += t.amount;
        slot.1 += 1;
    }
    span.months
        .iter()
        .map(|m| {
            let (fils, count) = by.get(&m.key()).copied().unwrap_or_default();
            (*m, fils, count)
        })
        .collect()
}

/// The keys every total shares: amount, count, first and last dates, monthly
/// averages, the largest and smallest month.
fn summary(entries: &[Entry<'_>], months: &[(Month, i64, usize)]) -> Map<String, Value> {
    let n = months.len().max(1) as f64;
    let total = sum(entries);
    // Newest first: `min_by_key` keeps the newest smallest month,
    // `max_by_key` the oldest largest one.
    let smallest = months.iter().min_by_key(|(_, fils, _)| *fils);
    let largest = months.iter().max_by_key(|(_, fils, _)| *fils);
    let mut map = Map::new();
    map.insert("amount".into(), money(total));
    map.insert("count".into(), json!(entries.len()));
    map.insert(
        "first_date_time".into(),
        json!(entries.last().map(|(_, t)| date_time(t.date))),
    );
    map.insert(
        "last_date_time".into(),
        json!(entries.first().map(|(_, t)| date_time(t.date))),
    );
    map.insert(
        "average_monthly_amount".into(),
        json!(round2(total as f64 / 100.0 / n)),
    );
    map.insert(
        "average_monthly_count".into(),
        json!(round2(entries.len() as f64 / n)),
    );
    map.insert(
        "maximum_monthly_amount".into(),
        largest.map_or(Value::Null, |(m, fils, _)| m.json(*fils)),
    );
    map.insert(
        "minimum_monthly_amount".into(),
        smallest.map_or(Value::Null, |(m, fils, _)| m.json(*fils)),
    );
    map
}

// ------------------------------------------------------------------ income

/// The `insights` of `POST /insights/v2/income`.
pub(super) fn income(user: &TestUser, today: NaiveDate, kind: IncomeType) -> Value {
    let span = Span::new(Window::default(), data_start(user), today);
    let credits = select(user.accounts.iter(), &span, |a, t| {
        is_asset(a) && t.credit && t.kind != "TRANSFER"
    });
    let (salary, other): (Vec<Entry<'_>>, Vec<Entry<'_>>) =
        credits.into_iter().partition(|(_, t)| t.kind == "SALARY");
    let cur = currency(user);
    let group = |entries: &[Entry<'_>], salary: bool| income_group(&span, entries, salary, cur);
    json!({
        "salary": if kind == IncomeType::NonSalary { Value::Null } else { group(&salary, true) },
        "non_salary": if kind == IncomeType::Salary { Value::Null } else { group(&other, false) },
    })
}

fn income_group(span: &Span, entries: &[Entry<'_>], salary: bool, currency: &str) -> Value {
    let months = per_month(span, entries);
    let received = months.iter().filter(|(_, _, count)| *count > 0).count();
    let mut total = summary(entries, &months);
    total.insert(
        "average_monthly_received_value".into(),
        json!(ratio(sum(entries) as f64 / 100.0, received as f64)),
    );
    let monthly: Vec<Value> = months
        .iter()
        .map(|(m, fils, count)| {
            json!({"month": m.month, "year": m.year, "amount": money(*fils), "count": count, "is_month_complete": m.complete})
        })
        .collect();
    let transactions: Vec<Value> = entries
        .iter()
        .map(|(a, t)| {
            json!({
                "account_id": a.id,
                "transaction_id": t.id,
                "transaction_information": t.information,
                "booking_date_time": date_time(t.date),
                "amount": money(t.amount),
                // Lean names no source for salaries; other income says what it is.
                "income_source": if salary { Value::Null } else { json!({"type": t.kind, "name": null}) },
            })
        })
        .collect();
    let periods: Vec<Value> = [3, 6, 9, 12]
        .into_iter()
        .filter_map(|n| {
            let from = span.period_start(n);
            let amounts: Vec<f64> = entries
                .iter()
                .filter(|(_, t)| t.date > from)
                .map(|(_, t)| t.amount as f64 / 100.0)
                .collect();
            (!amounts.is_empty()).then(|| {
                json!({
                    "period": format!("P{n}M"),
                    "income_variation": round2(sample_deviation(&amounts)),
                    "average_income": {"currency": currency, "amount": round2(mean(&amounts))},
                })
            })
        })
        .collect();
    let largest = entries.iter().map(|(_, t)| t.amount).max().unwrap_or(0);
    let smallest = entries.iter().map(|(_, t)| t.amount).min().unwrap_or(0);
    json!({
        "currency": currency,
        "total": total,
        "monthly_totals": monthly,
        "transactions": transactions,
        "income_factors": {
            "periods": periods,
            "delta_min_max": money(largest - smallest),
            "average_monthly_income_change": round2(monthly_change(&months)),
        },
    })
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// The sample standard deviation (0 below two values).
fn sample_deviation(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let squares: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (squares / (xs.len() - 1) as f64).sqrt()
}

/// The mean relative change from one month to the next, over the months
/// that follow a month with income.
fn monthly_change(months: &[(Month, i64, usize)]) -> f64 {
    let changes: Vec<f64> = months
        .windows(2)
        .filter(|pair| pair[1].1 > 0)
        .map(|pair| (pair[0].1 - pair[1].1) as f64 / pair[1].1 as f64)
        .collect();
    mean(&changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mockbank::users::test_users;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 5, 13).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn fils(v: &Value) -> i64 {
        (v.as_f64().unwrap() * 100.0).round() as i64
    }

    #[test]
    fn the_span_runs_newest_first_and_only_covered_months_are_complete() {
        let span = Span::new(Window::default(), Some(day(2026, 1, 14)), today());
        let months: Vec<(u32, bool)> = span.months.iter().map(|m| (m.month, m.complete)).collect();
        assert_eq!(
            months,
            [(5, false), (4, true), (3, true), (2, true), (1, false)]
        );
        let asked = Window {
            start: Some(day(2025, 12, 1)),
            end: Some(day(2026, 2, 28)),
        };
        let span = Span::new(asked, Some(day(2026, 1, 1)), today());
        let months: Vec<(u32, bool)> = span.months.iter().map(|m| (m.month, m.complete)).collect();
        assert_eq!(
            months,
            [(2, true), (1, true), (12, false)],
            "before the data: not covered"
        );
    }

    #[test]
    fn income_is_salary_plus_other_credits_of_asset_accounts() {
        let user = &test_users(7, today(), crate::mockbank::Region::Uae)[2];
        let v = income(user, today(), IncomeType::All);
        let expected_salary: i64 = user
            .accounts
            .iter()
            .flat_map(|a| &a.transactions)
            .filter(|t| t.kind == "SALARY")
            .map(|t| t.amount)
            .sum();
        assert_eq!(fils(&v["salary"]["total"]["amount"]), expected_salary);
        let monthly: i64 = v["salary"]["monthly_totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| fils(&m["amount"]))
            .sum();
        assert_eq!(monthly, expected_salary);
        let other = &v["non_salary"]["transactions"];
        assert!(other
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["income_source"]["type"] == "INTEREST"));
        assert!(income(user, today(), IncomeType::Salary)["non_salary"].is_null());
    }

    #[test]
    fn expense_categories_add_up_to_the_total_each_month() {
        let user = &test_users(7, today(), crate::mockbank::Region::Uae)[2];
        let v = expenses(user, today(), Window::default());
        let debits: i64 = user
            .accounts
            .iter()
            .flat_map(|a| &a.transactions)
            .filter(|t| !t.credit)
            .map(|t| t.amount)
            .sum();
        assert_eq!(fils(&v["total"]["amount"]), debits);
        for month in v["monthly_totals"].as_array().unwrap() {
            let parts: i64 = month["breakdown"][0]["breakdowns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| fils(&b["amount"]))
                .sum();
            assert_eq!(parts, fils(&month["amount"]));
        }
    }

    #[test]
    fn cash_flows_net_is_the_growth_of_the_asset_balances() {
        let user = &test_users(7, today(), crate::mockbank::Region::Uae)[2];
        let v = cashflows(user, today(), Window::default());
        let growth: i64 = user
            .accounts
            .iter()
            .filter(|a| is_asset(a))
            .map(|a| a.closing_balance() - a.opening_balance)
            .sum();
        assert_eq!(fils(&v["total"]["net"]["overall_amount"]["amount"]), growth);
        let later = cashflows(
            user,
            today(),
            Window {
                start: Some(today()),
                end: None,
            },
        );
        assert_eq!(later["monthly_totals"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn deviation_and_change_follow_their_definitions() {
        assert_eq!(round2(sample_deviation(&[2.0, 4.0, 6.0])), 2.0);
        assert_eq!(sample_deviation(&[5.0]), 0.0);
        let m = |month, fils| {
            (
                Month {
                    year: 2026,
                    month,
                    complete: true,
                },
                fils,
                1,
            )
        };
        // Newest first: 100 → 150 (+50%), 150 → 0 (-100%), 0 → 10 not counted.
        let months = [m(4, 10), m(3, 0), m(2, 150), m(1, 100)];
        assert_eq!(round2(monthly_change(&months)), -0.25);
    }
}
