//! Payments in the Mockbank, free of HTTP: destinations (where an app's
//! payments go), payment intents (what the app asks its customer to pay) and
//! payments (the customer paying an intent from a bank account), with their
//! outcomes decided by the amount so a test can ask for each.
//!
//! | amount ends in | the bank |
//! | --- | --- |
//! | `.13` | rejects it: `REJECTED_BY_BANK` |
//! | `.99` | fails it: `FAILED` |
//! | anything else | accepts it: `ACCEPTED_BY_BANK` |
//!
//! A payment starts `PENDING_WITH_BANK` and reaches its outcome after
//! `mockbank.async_delay` (the Mockbank clock's time).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::region::Region;

/// Where an application's payments are paid to.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    pub(super) id: Uuid,
    /// The bank the destination account is at.
    pub(super) bank_identifier: String,
    pub(super) name: String,
    pub(super) display_name: String,
    pub(super) iban: String,
    pub(super) address: String,
    pub(super) city: String,
    pub(super) country: String,
    pub(super) bank_type: String,
    pub(super) currency: String,
    pub(super) default: bool,
    /// Given with payout destinations; empty otherwise.
    pub(super) postal_code: String,
}

impl Destination {
    /// The local account number inside the IBAN (after the country, check
    /// digits and bank code).
    pub(super) fn account_number(&self) -> &str {
        self.iban
            .get(4 + self.bank_code_len()..)
            .unwrap_or_default()
    }

    /// A SWIFT code for the IBAN's bank code.
    pub(super) fn swift_code(&self) -> String {
        let country = self.iban.get(..2).unwrap_or("AE");
        let code = self.iban.get(4..4 + self.bank_code_len()).unwrap_or("000");
        format!("MOCK{code}{country}XXX")
    }

    /// Saudi IBANs have a two-digit bank code, UAE ones three.
    fn bank_code_len(&self) -> usize {
        if self.iban.starts_with("SA") {
            2
        } else {
            3
        }
    }
}

/// The destination every Mockbank starts with (Lean's sandbox apps have one),
/// in the region's country and currency.
pub(super) fn default_destination(region: Region) -> Destination {
    let (iban, address, city) = match region {
        Region::Uae => (
            "AE070331234567890123456".to_string(),
            "Sheikh Zayed Road",
            "Dubai",
        ),
        Region::Ksa => (
            super::region::saudi_iban("80", "001234567890123456"),
            "King Fahd Road",
            "Riyadh",
        ),
    };
    Destination {
        id: Uuid::from_u128(0x6d6f636b_6261_6e6b_6465_737431000001),
        bank_identifier: region.destination_bank().into(),
        name: "Mockbank Merchant LLC".into(),
        display_name: "Mockbank Merchant".into(),
        iban,
        address: address.into(),
        city: city.into(),
        country: region.country3().into(),
        bank_type: "RETAIL".into(),
        currency: region.currency().into(),
        default: true,
        postal_code: String::new(),
    }
}

/// What an application asks its customer to pay.
#[derive(Debug, Clone)]
pub(super) struct Intent {
    pub(super) id: Uuid,
    pub(super) customer: Uuid,
    /// In fils (hundredths of the currency unit).
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) description: Option<String>,
    pub(super) destination: Uuid,
    pub(super) created: DateTime<Utc>,
    pub(super) updated: DateTime<Utc>,
    /// A payout (the app paying out from a payment source), not a payment
    /// the customer makes.
    pub(super) payout: bool,
    /// A payout sent with `authorize_payment: false`: it waits for the app
    /// to authorise it before it is paid.
    pub(super) manual: Option<Manual>,
}

/// A payout waiting for, or past, the app's manual authorisation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Manual {
    /// The test user, account and payment source it will be paid from.
    pub(super) user: usize,
    pub(super) account: Uuid,
    pub(super) source: Uuid,
    /// `None` while it waits; then whether it was authorised.
    pub(super) decided: Option<bool>,
}

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PaymentStatus {
    PendingWithBank,
    AcceptedByBank,
    RejectedByBank,
    Failed,
}

impl PaymentStatus {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::PendingWithBank => "PENDING_WITH_BANK",
            Self::AcceptedByBank => "ACCEPTED_BY_BANK",
            Self::RejectedByBank => "REJECTED_BY_BANK",
            Self::Failed => "FAILED",
        }
    }

    /// How the bank ends a payment of `amount` fils (the module's table).
    pub(super) fn outcome(amount: i64) -> Self {
        match amount.rem_euclid(100) {
            13 => Self::RejectedByBank,
            99 => Self::Failed,
            _ => Self::AcceptedByBank,
        }
    }
}

/// A customer paying an intent from one of a test user's accounts.
#[derive(Debug, Clone)]
pub(super) struct Payment {
    pub(super) id: Uuid,
    pub(super) intent: Uuid,
    /// The payment source: the entity it was paid from.
    pub(super) source: Uuid,
    /// Index of the test user who paid, and the account.
    pub(super) user: usize,
    pub(super) account: Uuid,
    /// How the bank ends it.
    pub(super) outcome: PaymentStatus,
    /// Clock reading when the bank reaches the outcome.
    pub(super) settles: std::time::Duration,
    pub(super) submitted: DateTime<Utc>,
    pub(super) initiated: DateTime<Utc>,
    pub(super) bank_reference: String,
}

/// How long a new beneficiary waits at the corporate bank before payments
/// to it can start (Mockbank time); the other banks add beneficiaries at once.
pub(super) const BENEFICIARY_COOL_OFF: std::time::Duration = std::time::Duration::from_secs(600);

/// A destination added as a beneficiary at the customer's bank.
#[derive(Debug, Clone)]
pub(super) struct Beneficiary {
    pub(super) id: Uuid,
    pub(super) destination: Uuid,
    /// Clock reading when its cool-off ends (the creation time if none).
    pub(super) active_from: std::time::Duration,
    pub(super) active_from_wall: DateTime<Utc>,
}

impl Beneficiary {
    pub(super) fn status(&self, now: std::time::Duration) -> &'static str {
        if now >= self.active_from {
            "ACTIVE"
        } else {
            "AWAITING_BENEFICIARY_COOL_OFF"
        }
    }
}

/// A customer's bank accounts pre-authorised for payments.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) id: Uuid,
    pub(super) customer: Uuid,
    /// Index of the test user, and the accounts shared.
    pub(super) user: usize,
    pub(super) accounts: Vec<Uuid>,
    pub(super) beneficiaries: Vec<Beneficiary>,
}

impl Source {
    /// `ACTIVE`, or `AWAITING_BENEFICIARY_COOL_OFF` while a beneficiary is.
    pub(super) fn status(&self, now: std::time::Duration) -> &'static str {
        if self.beneficiaries.iter().all(|b| b.status(now) == "ACTIVE") {
            "ACTIVE"
        } else {
            "AWAITING_BENEFICIARY_COOL_OFF"
        }
    }
}

/// Limits of an Account-on-File consent, in fils and counts.
#[derive(Debug, Clone)]
pub(super) struct Controls {
    pub(super) period_type: String,
    pub(super) max_individual: i64,
    pub(super) max_cumulative: Option<i64>,
    pub(super) max_payments: u64,
    pub(super) max_per_period: i64,
    pub(super) max_payments_per_period: u64,
}

/// Where an Account-on-File consent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConsentStatus {
    AwaitingAuthorisation,
    Authorised,
    Rejected,
    Revoked,
    Expired,
    /// Its limits are used up: no payment more.
    Consumed,
}

impl ConsentStatus {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::AwaitingAuthorisation => "AWAITING_AUTHORISATION",
            Self::Authorised => "AUTHORISED",
            Self::Rejected => "REJECTED",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::Consumed => "CONSUMED",
        }
    }
}

/// One change of a consent, for `/consents/{id}/history`.
#[derive(Debug, Clone)]
pub(super) struct ConsentEvent {
    pub(super) id: Uuid,
    pub(super) kind: &'static str,
    pub(super) description: &'static str,
    pub(super) at: DateTime<Utc>,
    pub(super) by: &'static str,
}

/// An Account-on-File consent: the customer lets the app pull payments
/// within limits, from the account chosen at authorisation.
#[derive(Debug, Clone)]
pub(super) struct Consent {
    pub(super) id: Uuid,
    pub(super) customer: Uuid,
    pub(super) destination: Uuid,
    pub(super) reference: String,
    pub(super) currency: String,
    pub(super) purpose: String,
    pub(super) controls: Controls,
    pub(super) status: ConsentStatus,
    /// The test user and account, once authorised.
    pub(super) account: Option<(usize, Uuid)>,
    pub(super) start: DateTime<Utc>,
    pub(super) expires: DateTime<Utc>,
    pub(super) payments: u64,
    pub(super) paid: i64,
    /// When each payment on the consent was made, and its amount: what
    /// the per-period limits count.
    pub(super) taken: Vec<(DateTime<Utc>, i64)>,
    pub(super) history: Vec<ConsentEvent>,
}

impl Consent {
    /// Payments and their sum in the period (`period_type`) holding `now`.
    pub(super) fn in_period(&self, now: DateTime<Utc>) -> (u64, i64) {
        let start = period_start(&self.controls.period_type, now);
        self.taken
            .iter()
            .filter(|(at, _)| *at >= start)
            .fold((0, 0), |(n, sum), (_, amount)| (n + 1, sum + amount))
    }

    /// Why a payment of `amount` fils at `now` is beyond the consent's
    /// limits, if it is.
    pub(super) fn refuses(&self, amount: i64, now: DateTime<Utc>) -> Option<String> {
        let c = &self.controls;
        let (n, sum) = self.in_period(now);
        if amount > c.max_individual {
            return Some(format!(
                "The amount is more than the consent's max_individual_amount ({:.2}).",
                units(c.max_individual)
            ));
        }
        if c.max_cumulative.is_some_and(|max| self.paid + amount > max) {
            return Some("The payment would pass the consent's max_cumulative_amount.".into());
        }
        if self.payments >= c.max_payments {
            return Some("The consent's max_cumulative_number_of_payments is reached.".into());
        }
        if sum + amount > c.max_per_period {
            return Some(format!(
                "The payment would pass the consent's max_cumulative_amount_per_period in this {}.",
                c.period_type.to_lowercase()
            ));
        }
        if n >= c.max_payments_per_period {
            return Some(format!(
                "The consent's max_cumulative_number_of_payments_per_period is reached in this {}.",
                c.period_type.to_lowercase()
            ));
        }
        None
    }

    /// Whether the whole-life limits are used up (the period ones renew).
    pub(super) fn used_up(&self) -> bool {
        let c = &self.controls;
        self.payments >= c.max_payments || c.max_cumulative.is_some_and(|max| self.paid >= max)
    }
}

/// The start of the consent period (`Day`/`Daily`, `Week` from Monday,
/// `Month`, `Year`) holding `now`, in UTC.
pub(super) fn period_start(period: &str, now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike, NaiveDate, TimeZone};
    let day = now.date_naive();
    let first = match period {
        "Week" => day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())),
        "Month" => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day),
        "Year" => NaiveDate::from_ymd_opt(day.year(), 1, 1).unwrap_or(day),
        _ => day,
    };
    Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Money given back on an accepted payment, once the app approves it.
#[derive(Debug, Clone)]
pub(super) struct Refund {
    pub(super) id: Uuid,
    pub(super) payment: Uuid,
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) reason: String,
    pub(super) description: Option<String>,
    pub(super) external_reference: Option<String>,
    /// `CREATED`, then `APPROVED` or `REJECTED` (`PUT /payouts/refunds`).
    pub(super) status: &'static str,
    pub(super) created: DateTime<Utc>,
}

/// Why a refund is made, as Lean lists them.
pub(super) const REFUND_REASONS: [&str; 4] = [
    "CUSTOMER_REQUEST",
    "DUPLICATED_PAYMENT",
    "FRAUDULENT_PAYMENT",
    "ORDER_CANCELLED",
];

/// The payments part of the Mockbank's state.
#[derive(Debug)]
pub(super) struct Payments {
    pub(super) destinations: Vec<Destination>,
    pub(super) intents: Vec<Intent>,
    pub(super) payments: Vec<Payment>,
    pub(super) sources: Vec<Source>,
    pub(super) consents: Vec<Consent>,
    pub(super) refunds: Vec<Refund>,
    /// Account-on-File payments by their `Idempotency-Key`: a retried
    /// request gets the payment the first one made (nil while the first
    /// is in progress).
    pub(super) idempotency: Vec<(String, Uuid)>,
}

impl Default for Payments {
    fn default() -> Self {
        Self::new(Region::Uae)
    }
}

impl Payments {
    /// What a Mockbank of `region` starts with: its default destination.
    pub(super) fn new(region: Region) -> Self {
        Self {
            destinations: vec![default_destination(region)],
            intents: Vec::new(),
            payments: Vec::new(),
            sources: Vec::new(),
            consents: Vec::new(),
            refunds: Vec::new(),
            idempotency: Vec::new(),
        }
    }
}

impl Payment {
    /// Where the payment is at clock reading `now`.
    pub(super) fn status(&self, now: std::time::Duration) -> PaymentStatus {
        if now >= self.settles {
            self.outcome
        } else {
            PaymentStatus::PendingWithBank
        }
    }
}

impl Payments {
    pub(super) fn destination(&self, id: Uuid) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.id == id)
    }

    pub(super) fn intent(&self, id: Uuid) -> Option<&Intent> {
        self.intents.iter().find(|i| i.id == id)
    }

    pub(super) fn payments_of(&self, intent: Uuid) -> impl Iterator<Item = &Payment> {
        self.payments.iter().filter(move |p| p.intent == intent)
    }
}

/// An amount as Lean writes it (`5.00` is `5.0` in JSON): fils to units.
pub(super) fn units(fils: i64) -> f64 {
    fils as f64 / 100.0
}

/// An amount from JSON, in fils: positive, at most two decimals.
pub(super) fn fils(value: &serde_json::Value) -> Option<i64> {
    let n = value.as_f64()?;
    let fils = (n * 100.0).round();
    let exact = ((fils / 100.0) - n).abs() < 1e-9;
    (n > 0.0 && n.is_finite() && exact && fils < 1e13).then_some(fils as i64)
}

/// [`fils`] of an amount written as a number or as a string of one
/// (`"120.50"`, as Lean's collection sends them).
pub(super) fn fils_of_number_or_text(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::String(s) => fils(&serde_json::json!(s.trim().parse::<f64>().ok()?)),
        other => fils(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_follow_the_amount_and_amounts_are_exact() {
        assert_eq!(PaymentStatus::outcome(1013), PaymentStatus::RejectedByBank);
        assert_eq!(PaymentStatus::outcome(1099), PaymentStatus::Failed);
        assert_eq!(PaymentStatus::outcome(1000), PaymentStatus::AcceptedByBank);
        assert_eq!(fils(&json!(12.34)), Some(1234));
        assert_eq!(fils(&json!(5)), Some(500));
        assert_eq!(fils(&json!(1.005)), None);
        assert_eq!(fils(&json!(0)), None);
        assert_eq!(fils(&json!(-3)), None);
        assert_eq!(fils(&json!("5")), None);
        assert_eq!(
            default_destination(Region::Uae).account_number(),
            "1234567890123456"
        );
        let ksa = default_destination(Region::Ksa);
        assert_eq!(ksa.account_number(), "001234567890123456");
        assert_eq!(ksa.swift_code(), "MOCK80SAXXX");
        assert!(super::super::region::iban_valid(&ksa.iban));
        assert_eq!(ksa.currency, "SAR");
    }

    #[test]
    fn consent_periods_start_on_the_day_monday_first_of_month_and_year() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-10T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let start = |p| period_start(p, at).to_rfc3339();
        assert_eq!(start("Day"), "2026-12-10T00:00:00+00:00");
        assert_eq!(start("Week"), "2026-12-07T00:00:00+00:00");
        assert_eq!(start("Month"), "2026-12-01T00:00:00+00:00");
        assert_eq!(start("Year"), "2026-01-01T00:00:00+00:00");
    }
}
