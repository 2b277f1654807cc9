//! Lean's verifications: `POST /verifications/v1/accounts` (account
//! verification, Lean's confirmation of payee) and
//! `POST /insights/v1/name-verification`, answered from the test users' own
//! identities and accounts, so that a verification agrees with what the data
//! API shows for the same person and account.
//!
//! How an account verification's outcome is decided, in this order:
//!
//! 1. **A scenario account**: an IBAN whose characters after the country and
//!    check digits are zeros ending in two digits (`AE070000000000000000003`),
//!    or an `ACCOUNT_ID` of zeros ending in two digits (`0000000003`), answers
//!    the scenario those digits name ([`SCENARIOS`]): `01` an active account
//!    held by whoever is named, `02` blocked, `03` closed, `04` in liquidation
//!    (`status: OK`, ownership not verified, the name masked), `11` … `15`
//!    `status: FAILED` with `LEAN_ERROR`, `BANK_ISSUE`, `UNSUPPORTED_BY_BANK`,
//!    `DISABLED_BY_LEAN` or `GIVEN_INPUT_CANNOT_BE_VERIFIED`.
//! 2. **AE and SA** (an `IBAN` is required): the IBAN of a test user's account
//!    answers from that user. `account_ownership_verified` is true when the
//!    request's `type` is the user's (`PERSONAL`, `BUSINESS` for the corporate
//!    bank) and every identification the Mockbank can check matches —
//!    `FULL_NAME` (the full name, or first and last name), `GIVEN_NAME`,
//!    `SURNAME`, `NATIONAL_ID` (digits only), ignoring case and punctuation;
//!    `REGISTRATION_ID` is not checked (test users have none). The holder's
//!    name comes back in full when verified, masked (`An**** Ja****`)
//!    otherwise. A user whose bank is under maintenance answers `FAILED` /
//!    `BANK_ISSUE`. Any other IBAN is `404 DATA_NOT_FOUND`.
//! 3. **Other countries** (no test users there): the account is active and
//!    held by the name given, with the country's currency where Lean's
//!    recorded answers carry one, and the bank's BIC when the request names
//!    one.
//!
//! A name verification compares `full_name` with the entity's identity as
//! `/data/v2/identity` shows it: `PERFECT_MATCH` (confidence 1.0) when the
//! words are the same in the same order, ignoring case and punctuation;
//! otherwise the confidence is the share of distinct words the two names have
//! in common (at most 0.99): `PARTIAL_MATCH` from 0.5, `NO_MATCH` below.

use std::collections::BTreeSet;

use super::insights::{body_entity, one_credential, value_text, wants_async, without_results_id};
use super::*;
use crate::mockbank::insights::Insight;
use crate::mockbank::users::Bank;

/// What a scenario account answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scenario {
    /// `status: OK` with this `account_status`.
    Status(&'static str),
    /// `status: FAILED` with this `granular_status_code`.
    Failed(&'static str),
}

/// Scenario accounts, by the two digits their zeros end in.
pub(super) const SCENARIOS: [(&str, Scenario); 9] = [
    ("01", Scenario::Status("ACTIVE")),
    ("02", Scenario::Status("BLOCKED")),
    ("03", Scenario::Status("CLOSED")),
    ("04", Scenario::Status("IN_LIQUIDATION")),
    ("11", Scenario::Failed("LEAN_ERROR")),
    ("12", Scenario::Failed("BANK_ISSUE")),
    ("13", Scenario::Failed("UNSUPPORTED_BY_BANK")),
    ("14", Scenario::Failed("DISABLED_BY_LEAN")),
    ("15", Scenario::Failed("GIVEN_INPUT_CANNOT_BE_VERIFIED")),
];

/// Identification types Lean takes.
const IDENTIFICATIONS: [&str; 5] = [
    "FULL_NAME",
    "GIVEN_NAME",
    "SURNAME",
    "NATIONAL_ID",
    "REGISTRATION_ID",
];

/// Currencies of the countries whose recorded verifications name one; the
/// others answer `account_currency: null`, as Lean's do.
const CURRENCIES: [(&str, &str); 13] = [
    ("AR", "ARS"),
    ("BR", "BRL"),
    ("GB", "GBP"),
    ("ID", "IDR"),
    ("IN", "INR"),
    ("KR", "KRW"),
    ("MX", "MXN"),
    ("MY", "MYR"),
    ("NG", "NGN"),
    ("PE", "PEN"),
    ("PK", "PKR"),
    ("UY", "UYU"),
    ("VN", "VND"),
];

/// An account verification request, checked.
#[derive(Debug)]
pub(super) struct AccountCheck {
    /// `country_code`, upper case.
    country: String,
    /// `PERSONAL` or `BUSINESS`.
    kind: String,
    /// Whether `account` is an IBAN (else an `ACCOUNT_ID`).
    iban: bool,
    /// The account, upper case, without spaces.
    account: String,
    /// `(type, value)` pairs.
    identifications: Vec<(String, String)>,
    /// `bank_identifier` when it is a BIC.
    bic: Option<String>,
}

/// What the Mockbank decides for an account verification.
#[derive(Debug)]
pub(super) enum Outcome<'a> {
    /// A test user's account.
    Holder(&'a TestUser),
    /// A scenario account.
    Scenario(Scenario),
    /// An account outside AE and SA: verified as given.
    Abroad,
    /// An AE or SA account no test user has.
    Unknown,
}

impl AccountCheck {
    /// Checks the body of `POST /verifications/v1/accounts`.
    pub(super) fn parse(body: &Value) -> Result<AccountCheck, Reply> {
        let text = |v: Option<&Value>, field: &str| -> Result<String, Reply> {
            match v {
                None | Some(Value::Null) => Err(missing(field)),
                Some(Value::String(s)) if s.trim().is_empty() => Err(missing(field)),
                Some(Value::String(s)) => Ok(s.trim().to_string()),
                Some(other) => Err(invalid(field, &value_text(other))),
            }
        };
        let country = text(body.get("country_code"), "country_code")?.to_uppercase();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid("country_code", &country));
        }
        let kind = text(body.get("type"), "type")?;
        if kind != "PERSONAL" && kind != "BUSINESS" {
            return Err(invalid("type", &kind));
        }
        let details = body.get("account_details");
        let scheme = text(details.and_then(|d| d.get("type")), "account_details.type")?;
        let raw = text(
            details.and_then(|d| d.get("value")),
            "account_details.value",
        )?;
        let account: String = raw
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let iban = match scheme.as_str() {
            "IBAN" => true,
            "ACCOUNT_ID" => false,
            _ => return Err(invalid("account_details.type", &scheme)),
        };
        let home = matches!(country.as_str(), "AE" | "SA");
        if home && !iban {
            return Err(invalid("account_details.type", &scheme));
        }
        let iban_length = match country.as_str() {
            "AE" => 23..=23,
            "SA" => 24..=24,
            _ => 15..=34,
        };
        if iban
            && (!account.starts_with(&country)
                || !iban_length.contains(&account.len())
                || !account.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(invalid("account_details.value", &raw));
        }
        let list = match body.get("identifications") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            None | Some(Value::Null) | Some(Value::Array(_)) => {
                return Err(missing("identifications"))
            }
            Some(other) => return Err(invalid("identifications", &value_text(other))),
        };
        let mut identifications = Vec::new();
        for item in list {
            let kind = text(item.get("type"), "identifications.type")?;
            if !IDENTIFICATIONS.contains(&kind.as_str()) {
                return Err(invalid("identifications.type", &kind));
            }
            let value = text(item.get("value"), "identifications.value")?;
            identifications.push((kind, value));
        }
        let bic = body
            .get("bank_identifier")
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("BIC"))
            .and_then(|b| b.get("value").and_then(Value::as_str))
            .map(str::to_string);
        Ok(AccountCheck {
            country,
            kind,
            iban,
            account,
            identifications,
            bic,
        })
    }

    /// The scenario the account names, if it is a scenario account.
    fn scenario(&self) -> Option<Scenario> {
        let part = if self.iban {
            self.account.get(4..)?
        } else {
            self.account.as_str()
        };
        let (zeros, digits) = part.split_at(part.len().checked_sub(2)?);
        if zeros.is_empty() || zeros.chars().any(|c| c != '0') {
            return None;
        }
        SCENARIOS
            .iter()
            .find(|(code, _)| *code == digits)
            .map(|(_, s)| *s)
    }

    /// What the Mockbank answers for this request.
    pub(super) fn decide<'a>(&self, users: &'a [TestUser]) -> Outcome<'a> {
        if let Some(s) = self.scenario() {
            return Outcome::Scenario(s);
        }
        if !matches!(self.country.as_str(), "AE" | "SA") {
            return Outcome::Abroad;
        }
        users
            .iter()
            .find(|u| u.accounts.iter().any(|a| a.iban == self.account))
            .map_or(Outcome::Unknown, Outcome::Holder)
    }

    /// The name the request gives: `FULL_NAME`, else `GIVEN_NAME SURNAME`.
    fn name(&self) -> Option<String> {
        let of = |kind: &str| {
            self.identifications
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, v)| v.clone())
        };
        of("FULL_NAME").or_else(|| {
            let parts: Vec<String> = [of("GIVEN_NAME"), of("SURNAME")]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    }

    /// Whether `user` is who the request says holds the account.
    fn owned_by(&self, user: &TestUser) -> bool {
        let id = &user.identity;
        let (first, last) = id
            .short_name
            .split_once(' ')
            .unwrap_or((&id.short_name, ""));
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let checked: Vec<bool> = self
            .identifications
            .iter()
            .filter_map(|(kind, value)| match kind.as_str() {
                "FULL_NAME" => {
                    Some(same_words(value, &id.full_name) || same_words(value, &id.short_name))
                }
                "GIVEN_NAME" => Some(same_words(value, first)),
                "SURNAME" => Some(same_words(value, last)),
                "NATIONAL_ID" => Some(digits(value) == digits(&id.national_id)),
                _ => None,
            })
            .collect();
        self.kind == user.bank.account_type && !checked.is_empty() && checked.iter().all(|ok| *ok)
    }
}

/// The words of a name: lower case, split at anything not a letter or digit.
fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn same_words(a: &str, b: &str) -> bool {
    let a = words(a);
    !a.is_empty() && a == words(b)
}

/// Lean's `match_type` and `confidence` for `given` against `actual`.
pub(super) fn compare_names(given: &str, actual: &str) -> (&'static str, f64) {
    if same_words(given, actual) {
        return ("PERFECT_MATCH", 1.0);
    }
    let given: BTreeSet<String> = words(given).into_iter().collect();
    let actual: BTreeSet<String> = words(actual).into_iter().collect();
    let union = given.union(&actual).count();
    let shared = given.intersection(&actual).count();
    let confidence = if union == 0 {
        0.0
    } else {
        ((shared as f64 / union as f64) * 100.0).round() / 100.0
    }
    .min(0.99);
    let kind = if confidence >= 0.5 {
        "PARTIAL_MATCH"
    } else {
        "NO_MATCH"
    };
    (kind, confidence)
}

/// `Angelika Jacobs` → `An**** Ja****`, as Lean shows a holder it did not verify.
fn mask(name: &str) -> String {
    name.split_whitespace()
        .map(|w| format!("{}****", w.chars().take(2).collect::<String>()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A mock bank's name in Arabic.
fn arabic_name(bank: &Bank) -> &'static str {
    match bank.identifier {
        "LEAN_OF_CORPORATE_UAE" => "بنك لين التجريبي للشركات",
        "LEAN_OF_MAINTENANCE_UAE" => "بنك لين التجريبي للصيانة",
        "LEA1_SAMAOB_SAU" => "بنك لين التجريبي السعودي",
        _ => "بنك لين التجريبي",
    }
}

/// `bank_details` of a mock bank.
fn mock_bank_details(bank: &Bank) -> Value {
    json!({
        "bank_name": {"en": bank.name, "ar": arabic_name(bank)},
        "bank_identifiers": [{"type": "BIC", "value": bank.swift_code}],
    })
}

/// The mock bank of `country` (`MOCKAE01` for AE), for scenario accounts.
fn home_bank(country: &str) -> &'static Bank {
    crate::mockbank::Region::ALL
        .iter()
        .flat_map(|r| r.banks())
        .find(|b| b.swift_code.get(4..6) == Some(country))
        .unwrap_or(crate::mockbank::Region::Ksa.mock_bank())
}

/// `status: FAILED` of an account verification, with Lean's recorded texts.
fn failed(code: &str, results_id: Uuid, now: chrono::DateTime<chrono::Utc>) -> Value {
    let (message, info) = match code {
        "LEAN_ERROR" => ("System error occurred", "Internal system error occurred"),
        "BANK_ISSUE" => (
            "Bank temporarily unavailable",
            "Bank is experiencing technical issues",
        ),
        "UNSUPPORTED_BY_BANK" => (
            "Bank verification not supported",
            "This bank does not support verification",
        ),
        "DISABLED_BY_LEAN" => (
            "Verification temporarily disabled",
            "Verification disabled for this bank",
        ),
        _ => (
            "Account cannot be verified in this case. Please do not retry.",
            "Account cannot be verified in this case. Please do not retry.",
        ),
    };
    json!({
        "status": "FAILED",
        "message": message,
        "timestamp": ts(now),
        "meta": null,
        "verifications": null,
        "results_id": results_id,
        "status_detail": {"granular_status_code": code, "status_additional_info": info},
    })
}

impl MockbankCore {
    /// Routes `/verifications/…` and `/insights/v1/…`.
    pub(super) fn verifications(&self, call: &Call<'_>, segments: &[&str]) -> Result<Reply, Reply> {
        match segments {
            ["verifications", "v1", "accounts"] => {
                allow(call.method, &[Method::POST]).and_then(|()| self.verify_account(call))
            }
            ["insights", "v1", "name-verification"] => {
                allow(call.method, &[Method::POST]).and_then(|()| self.verify_name(call))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    fn verify_account(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json().map_err(without_results_id)?;
        let check = AccountCheck::parse(&body).map_err(without_results_id)?;
        let now = self.clock.now();
        let results_id = Uuid::new_v4();
        let home = matches!(check.country.as_str(), "AE" | "SA");
        let abroad_bank = || match &check.bic {
            Some(bic) => {
                json!({"bank_name": null, "bank_identifiers": [{"type": "BIC", "value": bic}]})
            }
            None => Value::Null,
        };
        let (status, verified, holder, bank) = match check.decide(&self.users) {
            Outcome::Unknown => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "DATA_NOT_FOUND",
                    "The data requested could not be found",
                    false,
                ))
            }
            Outcome::Scenario(Scenario::Failed(code)) => {
                return Ok(ok(failed(code, results_id, now)))
            }
            // A bank under maintenance now (`/_mockbank/banks/{bank}/down`).
            Outcome::Holder(user) if !self.lock().bank_up(user.bank.identifier) => {
                return Ok(ok(failed("BANK_ISSUE", results_id, now)))
            }
            Outcome::Holder(user) => {
                let verified = check.owned_by(user);
                let name = &user.identity.full_name;
                let holder = if verified { name.clone() } else { mask(name) };
                (
                    "ACTIVE",
                    verified,
                    Some(holder),
                    mock_bank_details(user.bank),
                )
            }
            Outcome::Scenario(Scenario::Status(status)) => {
                let verified = status == "ACTIVE";
                let holder = check.name().map(|n| if verified { n } else { mask(&n) });
                let bank = if home {
                    mock_bank_details(home_bank(&check.country))
                } else {
                    abroad_bank()
                };
                (status, verified, holder, bank)
            }
            Outcome::Abroad => ("ACTIVE", true, check.name(), abroad_bank()),
        };
        let currency = CURRENCIES
            .iter()
            .find(|(country, _)| *country == check.country)
            .map(|(_, c)| *c);
        Ok(ok(json!({
            "status": "OK",
            "results_id": results_id,
            "message": "Data successfully retrieved",
            "meta": null,
            "timestamp": ts(now),
            "status_detail": null,
            "verifications": {
                "account_ownership_verified": verified,
                "matching": null,
                "bank_details": bank,
                "account_status": status,
                "account_holder_name": holder,
                "account_currency": currency,
                "verification_method": "CONFIRMATION_OF_PAYEE_SERVICE",
            },
        })))
    }

    fn verify_name(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        one_credential(call)?;
        let body = call.json().map_err(without_results_id)?;
        let name = match body.get("full_name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(without_results_id(missing("full_name")))
            }
            Some(other) => {
                return Err(without_results_id(invalid("full_name", &value_text(other))))
            }
        };
        self.data_call(
            body_entity(&body).as_deref(),
            DataRequest::Insight(Insight::NameVerification(name)),
            wants_async(call, &body),
        )
        .map_err(without_results_id)
    }

    /// The OK answer of a name verification against `user`'s identity.
    pub(super) fn name_verification(
        &self,
        user: &TestUser,
        given: &str,
        results_id: Uuid,
    ) -> Value {
        let retrieved = &user.identity.full_name;
        let (match_type, confidence) = compare_names(given, retrieved);
        json!({
            "status": "OK",
            "results_id": results_id,
            "message": "Name verification completed successfully",
            "meta": null,
            "timestamp": ts(self.clock.now()),
            "status_detail": null,
            "data": {
                "type": "name-verification",
                "full_name_provided": given,
                "full_name_retrieved": retrieved,
                "match_type": match_type,
                "confidence": confidence,
            },
            "type": "name-verification",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mockbank::users::test_users;

    fn parsed(body: Value) -> AccountCheck {
        AccountCheck::parse(&body).unwrap_or_else(|refused| panic!("{}", refused.value()))
    }

    fn users() -> Vec<TestUser> {
        test_users(
            7,
            chrono::NaiveDate::from_ymd_opt(2026, 5, 13).unwrap(),
            crate::mockbank::Region::Uae,
        )
    }

    fn check(country: &str, iban: &str, names: &[(&str, &str)]) -> AccountCheck {
        let ids: Vec<Value> = names
            .iter()
            .map(|(t, v)| json!({"type": t, "value": v}))
            .collect();
        parsed(json!({
            "country_code": country,
            "type": "PERSONAL",
            "account_details": {"type": "IBAN", "value": iban},
            "identifications": ids,
        }))
    }

    #[test]
    fn a_test_users_iban_with_their_name_is_verified_and_another_name_is_not() {
        let users = users();
        let user = &users[1];
        let iban = &user.accounts[1].iban;
        let full = &user.identity.full_name;
        let right = check("AE", iban, &[("FULL_NAME", &full.to_uppercase())]);
        assert!(matches!(right.decide(&users), Outcome::Holder(u) if u.username == user.username));
        assert!(right.owned_by(user));
        let short = check("AE", iban, &[("FULL_NAME", &user.identity.short_name)]);
        assert!(short.owned_by(user));
        let national = check(
            "AE",
            iban,
            &[("NATIONAL_ID", &user.identity.national_id.replace('-', ""))],
        );
        assert!(national.owned_by(user));
        let wrong = check("AE", iban, &[("FULL_NAME", "Someone Else")]);
        assert!(!wrong.owned_by(user));
        let mut business = check("AE", iban, &[("FULL_NAME", full)]);
        business.kind = "BUSINESS".into();
        assert!(
            !business.owned_by(user),
            "a personal account is not a business's"
        );
    }

    #[test]
    fn an_iban_no_user_has_is_unknown_and_zeros_name_a_scenario() {
        let users = users();
        let unknown = check("AE", "AE070331234567890123456", &[("FULL_NAME", "A B")]);
        assert!(matches!(unknown.decide(&users), Outcome::Unknown));
        let closed = parsed(json!({
            "country_code": "SA", "type": "PERSONAL",
            "account_details": {"type": "IBAN", "value": "SA00 0000 0000 0000 0000 0003"},
            "identifications": [{"type": "NATIONAL_ID", "value": "1"}],
        }));
        assert_eq!(closed.scenario(), Some(Scenario::Status("CLOSED")));
        let failed = check("AE", "AE000000000000000000015", &[("FULL_NAME", "A B")]);
        assert_eq!(
            failed.scenario(),
            Some(Scenario::Failed("GIVEN_INPUT_CANNOT_BE_VERIFIED"))
        );
        let abroad = parsed(json!({
            "country_code": "GB", "type": "PERSONAL",
            "account_details": {"type": "ACCOUNT_ID", "value": "12345678"},
            "identifications": [{"type": "GIVEN_NAME", "value": "Harry"}, {"type": "SURNAME", "value": "Potter"}],
        }));
        assert!(matches!(abroad.decide(&users), Outcome::Abroad));
        assert_eq!(abroad.name().as_deref(), Some("Harry Potter"));
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let message = |body: Value| {
            AccountCheck::parse(&body).unwrap_err().value()["message"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let base = json!({
            "country_code": "AE", "type": "PERSONAL",
            "account_details": {"type": "IBAN", "value": "AE07033123"},
            "identifications": [{"type": "FULL_NAME", "value": "A"}],
        });
        assert!(message(base.clone()).contains("account_details.value"));
        let mut no_ids = base.clone();
        no_ids["account_details"]["value"] = json!("AE070331234567890123456");
        no_ids["identifications"] = json!([]);
        assert!(message(no_ids).contains("identifications"));
        let mut account_id = base;
        account_id["account_details"]["type"] = json!("ACCOUNT_ID");
        assert!(
            message(account_id).contains("account_details.type"),
            "AE needs an IBAN"
        );
    }

    #[test]
    fn names_match_perfectly_partially_or_not() {
        assert_eq!(
            compare_names("angelika  ART jacobs", "Angelika Art Jacobs"),
            ("PERFECT_MATCH", 1.0)
        );
        assert_eq!(
            compare_names("Angelika Jacobs", "Angelika Art Jacobs"),
            ("PARTIAL_MATCH", 0.67)
        );
        assert_eq!(
            compare_names("Jacobs Angelika Art", "Angelika Art Jacobs"),
            ("PARTIAL_MATCH", 0.99)
        );
        assert_eq!(
            compare_names("Omar Jacobs", "Angelika Art Jacobs"),
            ("NO_MATCH", 0.25)
        );
        assert_eq!(mask("Angelika Art Jacobs"), "An**** Ar**** Ja****");
    }
}
