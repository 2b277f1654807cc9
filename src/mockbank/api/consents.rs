//! Account-on-File consents (`/consents/…`): created by the app, authorised
//! by the customer (the control API stands in for Link's `authorizeConsent`),
//! then revoked, rejected or expired. The shapes are the ones Lean's
//! collection records for each endpoint.

use super::*;
use crate::mockbank::payments::{
    fils_of_number_or_text, units, Consent, ConsentEvent, ConsentStatus, Controls,
};

/// A consent lasts this long.
const CONSENT_DAYS: i64 = 364;

impl MockbankCore {
    pub(super) fn consents_api(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            ["account-on-file"] => {
                allow(m, &[M::POST])?;
                self.create_consent(call)
            }
            ["v1"] => {
                allow(m, &[M::GET])?;
                Ok(self.list_consents(call))
            }
            [id] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("consent_id", id)?;
                let state = self.lock();
                let c = consent(&state, id)?;
                Ok(ok(self.consent_json(c, true)))
            }
            [id, "balance"] => {
                allow(m, &[M::GET])?;
                self.consent_balance(parse_uuid("consent_id", id)?)
            }
            [id, "history"] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("consent_id", id)?;
                let state = self.lock();
                let c = consent(&state, id)?;
                let data: Vec<Value> = c
                    .history
                    .iter()
                    .map(|e| {
                        json!({
                            "id": e.id, "type": e.kind, "description": e.description,
                            "timestamp": shapes::ts(e.at), "updated_by": e.by, "reason": null,
                        })
                    })
                    .collect();
                let total = data.len();
                Ok(ok(json!({
                    "data": data,
                    "page": {"number": 0, "size": 100, "total_elements": total, "total_pages": total.div_ceil(100)},
                })))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    fn create_consent(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let text = |k: &str| field(&body, k);
        let customer = parse_uuid(
            "customer_id",
            &text("customer_id").ok_or_else(|| missing("customer_id"))?,
        )?;
        let currency = text("currency").unwrap_or_else(|| self.region().currency().into());
        if currency != self.region().currency() {
            return Err(invalid("currency", &currency));
        }
        let controls = controls(body.get("control_parameters").unwrap_or(&Value::Null))?;
        let now = self.clock.now();
        let mut state = self.lock();
        if state.customer(customer).is_none() {
            return Err(unknown_customer());
        }
        let destination = match text("destination_account_id") {
            None => state
                .payments
                .destinations
                .iter()
                .find(|d| d.default)
                .map(|d| d.id)
                .ok_or_else(|| missing("destination_account_id"))?,
            Some(v) => {
                let id = parse_uuid("destination_account_id", &v)?;
                state
                    .payments
                    .destination(id)
                    .ok_or_else(|| invalid("destination_account_id", &v))?
                    .id
            }
        };
        let consent = Consent {
            id: Uuid::new_v4(),
            customer,
            destination,
            reference: text("reference").unwrap_or_default(),
            currency,
            purpose: text("purpose").unwrap_or_else(|| "FIS".into()),
            controls,
            status: ConsentStatus::AwaitingAuthorisation,
            account: None,
            start: now,
            expires: now + chrono::Duration::days(CONSENT_DAYS),
            payments: 0,
            paid: 0,
            taken: Vec::new(),
            history: vec![event(
                "CONSENT_CREATED",
                "A new consent was created.",
                now,
                "LEAN",
            )],
        };
        let c = &consent.controls;
        let answer = json!({
            "id": consent.id,
            "application_id": self.application_id(),
            "start_date_time": shapes::ts(consent.start),
            "expiration_date_time": shapes::ts(consent.expires),
            "customer_id": consent.customer,
            "status": consent.status.name(),
            "destination_account_id": consent.destination,
            "reference": consent.reference,
            "currency": consent.currency,
            "purpose": consent.purpose,
            "control_parameters": {
                "period_type": c.period_type,
                "max_individual_amount": units(c.max_individual),
                "max_cumulative_amount": c.max_cumulative.map(units),
                "max_cumulative_number_of_payments": c.max_payments,
                "max_cumulative_amount_per_period": units(c.max_per_period),
                "max_cumulative_number_of_payments_per_period": c.max_payments_per_period,
            },
            "immediate_payment": null,
        });
        state.payments.consents.push(consent);
        Ok(ok(answer))
    }

    fn list_consents(&self, call: &Call<'_>) -> Reply {
        let state = self.lock();
        let all: Vec<Value> = state
            .payments
            .consents
            .iter()
            .rev()
            .map(|c| self.consent_json(c, false))
            .collect();
        listing(
            call,
            ("page_number", "page_size", 100),
            "data",
            &all,
            Some(json!([])),
        )
    }

    /// `POST /_mockbank/consents/{id}/{authorise|reject|revoke|expire}`:
    /// what the customer (or the bank, or time) does to a consent.
    pub(super) fn consent_control(
        &self,
        call: &Call<'_>,
        id: &str,
        action: &str,
    ) -> Result<Reply, Reply> {
        allow(call.method, &[Method::POST])?;
        let id = parse_uuid("consent_id", id)?;
        let chosen = if action == "authorise" {
            let body = call.json()?;
            let user = self.login(&body)?;
            let account = match body.get("account_id").and_then(Value::as_str) {
                None | Some("") => self.users[user].accounts[0].id,
                Some(v) => parse_uuid("account_id", v)?,
            };
            Some((user, account))
        } else {
            None
        };
        self.change_consent(id, action, chosen).map(ok)
    }

    /// Authorises (with the test user and account `chosen`), rejects,
    /// revokes or expires consent `id`: the one code path of the control
    /// API and of Link's `authorizeConsent`.
    pub(in crate::mockbank) fn change_consent(
        &self,
        id: Uuid,
        action: &str,
        chosen: Option<(usize, Uuid)>,
    ) -> Result<Value, Reply> {
        if let Some((user, account)) = chosen {
            if !self.users[user].accounts.iter().any(|a| a.id == account) {
                return Err(invalid("account_id", &account.to_string()));
            }
        }
        let (status, kind, description, by) = match action {
            "authorise" => (
                ConsentStatus::Authorised,
                "CONSENT_AUTHORISED",
                "The customer authorised the consent.",
                "CUSTOMER",
            ),
            "reject" => (
                ConsentStatus::Rejected,
                "CONSENT_REJECTED",
                "The customer rejected the consent.",
                "CUSTOMER",
            ),
            "revoke" => (
                ConsentStatus::Revoked,
                "CONSENT_REVOKED",
                "The consent was revoked.",
                "CUSTOMER",
            ),
            "expire" => (
                ConsentStatus::Expired,
                "CONSENT_EXPIRED",
                "The consent expired.",
                "LEAN",
            ),
            _ => return Err(not_found_url(&format!("/_mockbank/consents/{id}/{action}"))),
        };
        if action == "authorise" && chosen.is_none() {
            return Err(missing("account_id"));
        }
        let now = self.clock.now();
        let mut state = self.lock();
        let c = state
            .payments
            .consents
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(unknown_consent)?;
        let open = matches!(c.status, ConsentStatus::AwaitingAuthorisation)
            || (c.status == ConsentStatus::Authorised && matches!(action, "revoke" | "expire"));
        if !open {
            return Err(error(
                StatusCode::CONFLICT,
                "INVALID_CONSENT_STATUS",
                format!(
                    "The consent is {}: it cannot be {action}d.",
                    c.status.name()
                ),
                false,
            ));
        }
        c.status = status;
        if chosen.is_some() {
            c.account = chosen;
        }
        c.history.push(event(kind, description, now, by));
        let c = c.clone();
        Ok(self.consent_json(&c, true))
    }

    /// A consent as `GET /consents/{id}` shows it (`one`) or as the list does.
    fn consent_json(&self, c: &Consent, one: bool) -> Value {
        let account = c.account.and_then(|(user, account)| {
            let u = &self.users[user];
            u.accounts.iter().find(|a| a.id == account).map(|a| (u, a))
        });
        let k = &c.controls;
        let in_period = c.in_period(self.clock.now());
        let mut out = json!({
            "consent_id": c.id,
            "bank_identifier": account.map(|(u, _)| u.bank.identifier),
            "application_id": self.application_id(),
            "start_date_time": shapes::ts(c.start),
            "expiration_date_time": shapes::ts(c.expires),
            "customer_id": c.customer,
            "status": c.status.name(),
            "destination_account_id": c.destination,
            "reference": c.reference,
            "consented_account": account.map(|(u, a)| json!({"iban": a.iban, "holder_name": u.identity.full_name})),
            "currency": c.currency,
            "payment_purpose": {"code": c.purpose, "description": purpose(&c.purpose)},
            "control_parameters": {
                "type": "VariableOnDemand",
                "period_type": k.period_type,
                "max_individual_amount": units(k.max_individual),
                "max_cumulative_amount": k.max_cumulative.map(units),
                "max_cumulative_number_of_payments": k.max_payments,
                "max_cumulative_amount_per_period": units(k.max_per_period),
                "max_cumulative_number_of_payments_per_period": k.max_payments_per_period,
            },
            "payment_consumption": {
                "cumulative_number_of_payments": c.payments,
                "cumulative_value_of_payments": units(c.paid),
                "cumulative_number_of_payments_in_current_period": in_period.0,
                "cumulative_value_of_payments_in_current_period": units(in_period.1),
            },
        });
        if one {
            out["immediate_payment"] = Value::Null;
        }
        out
    }

    /// The app's id, as Lean shows it on consents (stable per client id).
    fn application_id(&self) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, self.settings.client_id.as_bytes())
    }
}

fn consent(state: &State, id: Uuid) -> Result<&Consent, Reply> {
    state
        .payments
        .consents
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(unknown_consent)
}

fn event(
    kind: &'static str,
    description: &'static str,
    at: chrono::DateTime<chrono::Utc>,
    by: &'static str,
) -> ConsentEvent {
    ConsentEvent {
        id: Uuid::new_v4(),
        kind,
        description,
        at,
        by,
    }
}

/// `control_parameters`: amounts as numbers or strings (the collection sends
/// strings, `""` for "not given"). Limits not given: 365 payments in all and
/// per period, the per-period amount the individual one.
fn controls(v: &Value) -> Result<Controls, Reply> {
    let amount = |key: &str| -> Result<Option<i64>, Reply> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(given) => fils_of_number_or_text(given).map(Some).ok_or_else(|| {
                let shown = given.as_str().map_or(given.to_string(), str::to_string);
                invalid(&format!("control_parameters.{key}"), &shown)
            }),
        }
    };
    let count = |key: &str| -> Result<Option<u64>, Reply> {
        amount(key).map(|n| n.map(|fils| (fils / 100) as u64))
    };
    let max_individual = amount("max_individual_amount")?
        .ok_or_else(|| missing("control_parameters.max_individual_amount"))?;
    let period_type = match v.get("period_type").and_then(Value::as_str) {
        None => "Month".to_string(),
        Some(p @ ("Year" | "Month" | "Day" | "Daily" | "Week")) => p.to_string(),
        Some(other) => return Err(invalid("control_parameters.period_type", other)),
    };
    Ok(Controls {
        period_type,
        max_individual,
        max_cumulative: amount("max_cumulative_amount")?,
        max_payments: count("max_cumulative_number_of_payments")?.unwrap_or(365),
        max_per_period: amount("max_cumulative_amount_per_period")?.unwrap_or(max_individual),
        max_payments_per_period: count("max_cumulative_number_of_payments_per_period")?
            .unwrap_or(365),
    })
}

/// The description of a payment purpose code.
fn purpose(code: &str) -> &'static str {
    match code {
        "FIS" => "Financial services",
        "GDS" => "Purchase of goods",
        "SRV" => "Purchase of services",
        _ => "Other",
    }
}

pub(super) fn unknown_consent() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_CONSENT",
        "No consent with this consent_id.",
        false,
    )
}
