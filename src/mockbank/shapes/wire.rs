//! The data answers apps read most (v2 accounts, transactions and balances,
//! the v1 balance and transactions) and the envelopes and page of the data
//! API's answers, as borrowed structs written straight to bytes (with
//! sonic-rs, `api/reply.rs`): their fields are Lean's keys in the order
//! `shapes.rs` used to build them, their values borrow from the test user and
//! its accounts, `()` is a `null`. A `serde_json::Value` tree costs a
//! map, an allocated key and a hash per field, built and dropped for every
//! answer: most of a page of transactions' time. The other answers are
//! `Value`s from `shapes.rs`, carried in the same envelopes
//! (`V2Ok<V2Page<Value>>`, `V1Ok<Value>`). `tests/it/mockbank_answers.rs`
//! holds the bytes to a fixture.

use std::fmt::{self, Display};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use uuid::Uuid;

use super::{ts, ts_ms, v1_type};
use crate::mockbank::region::Region;
use crate::mockbank::users::{Account, AccountName, SubType, TestUser, Txn};

/// Fils as a JSON amount (`12.5`): an `f64`, as Lean writes amounts.
pub(in crate::mockbank) fn money(fils: i64) -> f64 {
    (fils as f64) / 100.0
}

/// A value written as its `Display` text, a JSON string without a `String`.
#[derive(Clone, Copy)]
pub(in crate::mockbank) struct Shown<T>(pub(in crate::mockbank) T);

impl<T: Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `2026-05-13T00:00:00Z`: a day as resources' date-times show it.
#[derive(Clone, Copy)]
pub(in crate::mockbank) struct Midnight(pub(in crate::mockbank) NaiveDate);

impl Midnight {
    /// The text, for years 0 to 9999 (every day the Mockbank has): digits
    /// put in place, with no formatting machinery.
    fn text(&self) -> Option<[u8; 20]> {
        let year = u32::try_from(self.0.year()).ok().filter(|y| *y <= 9999)?;
        let mut text = *b"0000-00-00T00:00:00Z";
        for (at, value, width) in [(0, year, 4), (5, self.0.month(), 2), (8, self.0.day(), 2)] {
            let mut v = value;
            for i in (at..at + width).rev() {
                text[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        Some(text)
    }
}

impl Display for Midnight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?),
            None => write!(f, "{}T00:00:00Z", self.0),
        }
    }
}

/// Written as one string: a page of 50 transactions writes 100 of them, and
/// `collect_str` would escape what `Display` gives it piece by piece.
impl Serialize for Midnight {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.text() {
            Some(text) => {
                s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
            }
            None => s.collect_str(self),
        }
    }
}

/// A text backwards (a transaction's `statement_reference`), written as one
/// string (`collect_str` would escape it a character at a time).
struct Reversed<'a>(&'a str);

impl Serialize for Reversed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.chars().rev().collect::<String>())
    }
}

/// `{currency, amount}`.
#[derive(Serialize)]
pub(in crate::mockbank) struct Amount<'a> {
    currency: &'a str,
    amount: f64,
}

impl<'a> Amount<'a> {
    pub(in crate::mockbank) fn new(currency: &'a str, fils: i64) -> Self {
        Self {
            currency,
            amount: money(fils),
        }
    }
}

/// A v2 `page` object.
#[derive(Serialize)]
pub(in crate::mockbank) struct Page {
    number: usize,
    size: usize,
    total_elements: usize,
    total_pages: usize,
    sort: (),
}

impl Page {
    /// Page `number` of `size` of `total` items.
    pub(in crate::mockbank) fn new(number: usize, size: usize, total: usize) -> Self {
        let total_pages = if size == 0 { 0 } else { total.div_ceil(size) };
        Self {
            number,
            size,
            total_elements: total,
            total_pages,
            sort: (),
        }
    }
}

// ------------------------------------------------------------------ envelopes

/// v2 success: `{status: OK, results_id, message, meta, timestamp,
/// status_detail, refreshed_at, type, data}`.
#[derive(Serialize)]
pub(in crate::mockbank) struct V2Ok<'a, T> {
    status: &'static str,
    results_id: Uuid,
    message: &'static str,
    meta: (),
    timestamp: String,
    status_detail: (),
    refreshed_at: String,
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

impl<'a, T: Serialize> V2Ok<'a, T> {
    pub(in crate::mockbank) fn new(
        kind: &'a str,
        data: T,
        results_id: Uuid,
        now: DateTime<Utc>,
        refreshed: DateTime<Utc>,
    ) -> Self {
        Self {
            status: "OK",
            results_id,
            message: "Data successfully retrieved",
            meta: (),
            timestamp: ts(now),
            status_detail: (),
            refreshed_at: ts_ms(refreshed),
            kind,
            data,
        }
    }
}

/// A v2 page's `data`: `{type, <key>: [items], page}`, then `null` for each
/// of `nulls` (account identities' `account_id`).
pub(in crate::mockbank) struct V2Page<'a, T> {
    pub(in crate::mockbank) kind: &'a str,
    pub(in crate::mockbank) key: &'a str,
    pub(in crate::mockbank) items: Vec<T>,
    pub(in crate::mockbank) page: Page,
    pub(in crate::mockbank) nulls: &'a [&'a str],
}

impl<T: Serialize> Serialize for V2Page<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3 + self.nulls.len()))?;
        map.serialize_entry("type", self.kind)?;
        map.serialize_entry(self.key, &self.items)?;
        map.serialize_entry("page", &self.page)?;
        for key in self.nulls {
            map.serialize_entry(key, &())?;
        }
        map.end()
    }
}

/// v1 success: `{status: OK, payload, results_id, message, timestamp, meta,
/// status_detail}`.
#[derive(Serialize)]
pub(in crate::mockbank) struct V1Ok<T> {
    status: &'static str,
    payload: T,
    results_id: Uuid,
    message: &'static str,
    timestamp: String,
    meta: (),
    status_detail: (),
}

impl<T: Serialize> V1Ok<T> {
    pub(in crate::mockbank) fn new(payload: T, results_id: Uuid, now: DateTime<Utc>) -> Self {
        Self {
            status: "OK",
            payload,
            results_id,
            message: "Data successfully retrieved",
            timestamp: ts(now),
            meta: (),
            status_detail: (),
        }
    }
}

// ------------------------------------------------------------------ v2 accounts

/// `{scheme_name, identification, name}`, an account's IBAN or BBAN.
#[derive(Serialize)]
struct Scheme<'a> {
    scheme_name: &'static str,
    identification: &'a str,
    name: Shown<AccountName<'a>>,
}

/// `{scheme_name, identification}`.
#[derive(Serialize)]
struct Agent {
    scheme_name: &'static str,
    identification: &'static str,
}

/// A v2 account.
#[derive(Serialize)]
pub(in crate::mockbank) struct V2Account<'a> {
    entity_id: Uuid,
    account_id: Uuid,
    account_holder_name: &'a str,
    account_holder_short_name: &'a str,
    status: &'static str,
    status_update_date_time: String,
    currency: &'a str,
    account_type: &'a str,
    account_sub_type: &'static str,
    nickname: String,
    description: Shown<AccountName<'a>>,
    opening_date: Shown<NaiveDate>,
    maturity_date: (),
    account: [Scheme<'a>; 2],
    servicer: Agent,
    regional_data: (),
}

impl<'a> V2Account<'a> {
    pub(in crate::mockbank) fn new(entity: Uuid, user: &'a TestUser, a: &'a Account) -> Self {
        let name = Shown(a.shown_name(user));
        let scheme = |scheme_name, identification| Scheme {
            scheme_name,
            identification,
            name,
        };
        let updated = a.opened.and_hms_opt(8, 0, 0).unwrap_or_default().and_utc();
        Self {
            entity_id: entity,
            account_id: a.id,
            account_holder_name: &user.identity.full_name,
            account_holder_short_name: &user.identity.short_name,
            status: "ENABLED",
            status_update_date_time: ts_ms(updated),
            currency: a.currency,
            account_type: user.bank.account_type,
            account_sub_type: a.sub_type.v2(),
            nickname: format!("{} Account", a.sub_type.product()),
            description: name,
            opening_date: Shown(a.opened),
            maturity_date: (),
            account: [scheme("IBAN", &a.iban), scheme("BBAN", &a.number)],
            servicer: Agent {
                scheme_name: "BICFI",
                identification: "Lean Mockbank",
            },
            regional_data: (),
        }
    }
}

fn indicator(fils: i64) -> &'static str {
    if fils < 0 {
        "DEBIT"
    } else {
        "CREDIT"
    }
}

// ------------------------------------------------------------------ v2 transactions

/// A transaction's `balance`.
#[derive(Serialize)]
struct TxnBalance<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    credit_debit_indicator: &'static str,
    amount: Amount<'a>,
}

/// A transaction's `charge_amount` (none).
#[derive(Serialize)]
struct Charge<'a> {
    amount: f64,
    currency: &'a str,
    charge_included: bool,
}

#[derive(Serialize)]
struct Code {
    code: &'static str,
    sub_code: &'static str,
}

#[derive(Serialize)]
struct Card<'a> {
    authorization_type: &'static str,
    card_scheme_name: &'static str,
    identification: &'a str,
    name: &'static str,
}

#[derive(Serialize)]
struct Merchant {
    merchant_category_code: &'static str,
    merchant_name: &'static str,
}

#[derive(Serialize)]
struct Proprietary {
    code: &'static str,
    issuer: &'static str,
}

/// A v2 transaction.
#[derive(Serialize)]
pub(in crate::mockbank) struct V2Transaction<'a> {
    entity_id: Uuid,
    account_id: Uuid,
    transaction_id: Uuid,
    transaction_information: &'a str,
    transaction_reference: &'a str,
    credit_debit_indicator: &'static str,
    amount: Amount<'a>,
    transaction_mutability: &'static str,
    booking_date_time: Midnight,
    insights: (),
    balance: TxnBalance<'a>,
    status: &'static str,
    statement_reference: [Reversed<'a>; 1],
    value_date_time: Midnight,
    index: usize,
    charge_amount: Charge<'a>,
    bank_transaction_code: Code,
    card_instrument: Card<'a>,
    merchant_details: Merchant,
    proprietary_bank_transaction_code: Proprietary,
    currency_exchange: (),
    creditor_account: (),
    creditor_agent: (),
    debtor_account: (),
    debtor_agent: (),
    local_time_zone: &'static str,
    transaction_type: &'static str,
    sub_transaction_type: &'static str,
    payment_modes: (),
    flags: [(); 0],
    regional_data: (),
}

impl<'a> V2Transaction<'a> {
    /// `t` of `a`; `index` is its position in the newest-first list.
    pub(in crate::mockbank) fn new(
        region: Region,
        entity: Uuid,
        a: &'a Account,
        t: &'a Txn,
        index: usize,
    ) -> Self {
        let side = if t.credit { "CREDIT" } else { "DEBIT" };
        Self {
            entity_id: entity,
            account_id: a.id,
            transaction_id: t.id,
            transaction_information: &t.information,
            transaction_reference: &t.reference,
            credit_debit_indicator: side,
            amount: Amount::new(a.currency, t.amount),
            transaction_mutability: "IMMUTABLE",
            booking_date_time: Midnight(t.date),
            insights: (),
            balance: TxnBalance {
                kind: "PREVIOUSLY_CLOSED_BOOKED",
                credit_debit_indicator: indicator(t.balance_after),
                amount: Amount::new(a.currency, t.balance_after.abs()),
            },
            status: "BOOKED",
            statement_reference: [Reversed(&t.reference)],
            value_date_time: Midnight(t.date),
            index,
            charge_amount: Charge {
                amount: 0.0,
                currency: a.currency,
                charge_included: false,
            },
            bank_transaction_code: Code {
                code: t.kind,
                sub_code: side,
            },
            card_instrument: Card {
                authorization_type: "CONSUMER_DEVICE",
                card_scheme_name: "VISA",
                identification: &a.number[a.number.len().saturating_sub(4)..],
                name: "Mockbank Card",
            },
            merchant_details: Merchant {
                merchant_category_code: t.merchant.1,
                merchant_name: t.merchant.0,
            },
            proprietary_bank_transaction_code: Proprietary {
                code: t.kind,
                issuer: "Lean Mockbank",
            },
            currency_exchange: (),
            creditor_account: (),
            creditor_agent: (),
            debtor_account: (),
            debtor_agent: (),
            local_time_zone: region.time_zone(),
            transaction_type: t.kind,
            sub_transaction_type: if t.credit { "DEPOSIT" } else { "WITHDRAWAL" },
            payment_modes: (),
            flags: [],
            regional_data: (),
        }
    }
}

// ------------------------------------------------------------------ balances

/// A balance's `credit_line`.
#[derive(Serialize)]
struct CreditLine<'a> {
    included: bool,
    amount: Amount<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A v2 balance.
#[derive(Serialize)]
pub(in crate::mockbank) struct V2Balance<'a> {
    entity_id: Uuid,
    account_id: Uuid,
    credit_debit_indicator: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    amount: Amount<'a>,
    date_time: &'a str,
    credit_line: [CreditLine<'a>; 1],
    regional_data: (),
}

/// The v2 balances of an account; `date_time` is when they were read.
pub(in crate::mockbank) fn v2_balances<'a>(
    entity: Uuid,
    a: &'a Account,
    date_time: &'a str,
) -> Vec<V2Balance<'a>> {
    let closing = a.closing_balance();
    let limit = a.credit_limit.unwrap_or(0);
    [
        "CLOSING_AVAILABLE",
        "CLOSING_BOOKED",
        "INTERIM_AVAILABLE",
        "INTERIM_BOOKED",
    ]
    .into_iter()
    .map(|kind| {
        let shown = if kind.ends_with("AVAILABLE") && a.sub_type == SubType::CreditCard {
            limit + closing
        } else {
            closing
        };
        V2Balance {
            entity_id: entity,
            account_id: a.id,
            credit_debit_indicator: indicator(shown),
            kind,
            amount: Amount::new(a.currency, shown.abs()),
            date_time,
            credit_line: [CreditLine {
                included: a.credit_limit.is_some(),
                amount: Amount::new(a.currency, limit),
                kind: "AVAILABLE",
            }],
            regional_data: (),
        }
    })
    .collect()
}

// ------------------------------------------------------------------ v1

/// A v1 transaction: its amount signed (negative: money out).
#[derive(Serialize)]
struct V1Transaction<'a> {
    transaction_id: Uuid,
    timestamp: Midnight,
    description: &'a str,
    amount: f64,
    currency_code: &'a str,
    pending: bool,
    running_balance: f64,
    insights: (),
}

/// The v1 transactions payload: every transaction of an account, newest
/// first (v1 has no pages).
#[derive(Serialize)]
pub(in crate::mockbank) struct V1Transactions<'a> {
    account_id: Uuid,
    transactions: Vec<V1Transaction<'a>>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> V1Transactions<'a> {
    pub(in crate::mockbank) fn new(a: &'a Account) -> Self {
        let transactions = a
            .transactions
            .iter()
            .rev()
            .map(|t| V1Transaction {
                transaction_id: t.id,
                timestamp: Midnight(t.date),
                description: &t.information,
                amount: money(if t.credit { t.amount } else { -t.amount }),
                currency_code: a.currency,
                pending: false,
                running_balance: money(t.balance_after),
                insights: (),
            })
            .collect();
        Self {
            account_id: a.id,
            transactions,
            kind: "transactions",
        }
    }
}

/// The v1 balance payload.
#[derive(Serialize)]
pub(in crate::mockbank) struct V1Balance<'a> {
    balance: f64,
    currency_code: &'a str,
    account_id: Uuid,
    account_name: Shown<AccountName<'a>>,
    account_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> V1Balance<'a> {
    pub(in crate::mockbank) fn new(user: &'a TestUser, a: &'a Account) -> Self {
        Self {
            balance: money(a.closing_balance()),
            currency_code: a.currency,
            account_id: a.id,
            account_name: Shown(a.shown_name(user)),
            account_type: v1_type(a.sub_type),
            kind: "balance",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: impl Serialize) -> String {
        sonic_rs::to_string(&value).expect("written")
    }

    #[test]
    fn a_midnight_is_shown_and_written_as_chronos_text_of_the_day_for_every_year() {
        for (y, m, d) in [
            (2026, 5, 13),
            (999, 1, 2),
            (1, 12, 31),
            (9999, 12, 31),
            (10000, 1, 1),
            (-1, 3, 4),
        ] {
            let day = NaiveDate::from_ymd_opt(y, m, d).expect("a day");
            // chrono's own text of the day is the reference.
            let expected = format!("{day}T00:00:00Z");
            assert_eq!(Midnight(day).to_string(), expected, "{day}");
            assert_eq!(json(Midnight(day)), format!("\"{expected}\""), "{day}");
        }
        let day = NaiveDate::from_ymd_opt(2026, 5, 13).expect("a day");
        assert_eq!(json(Midnight(day)), "\"2026-05-13T00:00:00Z\"");
    }

    #[test]
    fn a_reversed_text_is_written_backwards_and_escaped() {
        assert_eq!(json(Reversed("AB12")), "\"21BA\"");
        assert_eq!(json(Reversed("a\"é")), "\"é\\\"a\"");
    }
}
