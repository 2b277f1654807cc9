//! Payments on an Account-on-File consent (`POST /payments/account-on-file`)
//! and a consent's balance (`GET /consents/{id}/balance`). Lean's collection
//! records neither answer, so the payment is answered as
//! `GET /payments/v1/{payment_id}` shows it (with the `consent_id`), and it
//! settles, with its webhooks, as every payment does ([`MockbankCore::pay_from`]).
//!
//! A payment is checked against the consent's limits; one the bank will accept
//! counts in `payment_consumption` (a payment the bank rejects or fails, by its
//! amount or because the bank is down, does not). When the whole-life limits
//! (`max_cumulative_number_of_payments`, `max_cumulative_amount`) are used up,
//! the consent is `CONSUMED`; the per-period limits renew with the period.

use super::consents::unknown_consent;
use super::*;
use crate::mockbank::payments::{
    fils_of_number_or_text, units, ConsentEvent, ConsentStatus, Intent, PaymentStatus,
};

impl MockbankCore {
    /// `POST /payments/account-on-file`.
    pub(super) fn aof_payment(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        allow(call.method, &[Method::POST])?;
        let body = call.json()?;
        let key = call
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string);
        if let Some(k) = key.as_deref() {
            if let Some(answer) = self.claim_key(k)? {
                return Ok(ok(answer));
            }
        }
        let made = self.aof_pay(&body);
        if let Some(k) = key {
            let mut state = self.lock();
            let keys = &mut state.payments.idempotency;
            let paid = made
                .as_ref()
                .ok()
                .and_then(|a| a["id"].as_str())
                .and_then(|id| Uuid::parse_str(id).ok());
            match paid {
                // The key now names the payment it made.
                Some(id) => keys
                    .iter_mut()
                    .filter(|(x, _)| *x == k)
                    .for_each(|e| e.1 = id),
                // A refused request may be sent again with the same key.
                None => keys.retain(|(x, _)| *x != k),
            }
        }
        made.map(ok)
    }

    /// Claims `key` for a new payment (`None`), or the payment it already
    /// made; a request with the key still in progress is refused.
    fn claim_key(&self, key: &str) -> Result<Option<Value>, Reply> {
        let mut state = self.lock();
        match state.payments.idempotency.iter().find(|(k, _)| k == key) {
            None => {
                state
                    .payments
                    .idempotency
                    .push((key.to_string(), Uuid::nil()));
                Ok(None)
            }
            Some((_, id)) if id.is_nil() => Err(error(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_IN_USE",
                "A request with this Idempotency-Key is in progress.",
                false,
            )),
            Some((_, id)) => {
                let payment = state.payments.payments.iter().find(|p| p.id == *id);
                Ok(payment.map(|p| {
                    let mut answer = self.payment_json(&state, p);
                    answer["consent_id"] = json!(p.source);
                    answer
                }))
            }
        }
    }

    /// The payment of a `POST /payments/account-on-file` body.
    fn aof_pay(&self, body: &Value) -> Result<Value, Reply> {
        let consent_id = parse_uuid(
            "consent_id",
            &field(body, "consent_id").ok_or_else(|| missing("consent_id"))?,
        )?;
        let amount = match body.get("amount") {
            None | Some(Value::Null) => return Err(missing("amount")),
            Some(v) => fils_of_number_or_text(v)
                .ok_or_else(|| invalid("amount", v.as_str().map_or(&v.to_string(), |s| s)))?,
        };
        let reference = field(body, "reference");
        let (intent, user, account) = self.take_from_consent(consent_id, amount, reference)?;
        let mut answer = self.pay_from(intent, user, account, Some(consent_id))?;
        answer["consent_id"] = json!(consent_id);
        answer["creditor_reference"] = json!(field(body, "creditor_reference"));
        Ok(answer)
    }

    /// Checks a payment of `amount` against consent `id`, counts it when the
    /// bank will accept it, and makes its intent: the intent, the test user
    /// and the account to pay from.
    fn take_from_consent(
        &self,
        id: Uuid,
        amount: i64,
        reference: Option<String>,
    ) -> Result<(Uuid, usize, Uuid), Reply> {
        let now = self.clock.now();
        let mut state = self.lock();
        let consent = state
            .payments
            .consents
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(unknown_consent)?;
        let (Some((user, account)), ConsentStatus::Authorised) = (consent.account, consent.status)
        else {
            return Err(error(
                StatusCode::CONFLICT,
                "INVALID_CONSENT_STATUS",
                format!(
                    "The consent is {}: payments need an AUTHORISED consent.",
                    consent.status.name()
                ),
                false,
            ));
        };
        if let Some(why) = consent.refuses(amount, now) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "CONSENT_LIMIT_EXCEEDED",
                why,
                false,
            ));
        }
        let (customer, destination, currency) = (
            consent.customer,
            consent.destination,
            consent.currency.clone(),
        );
        let counts = state.bank_up(self.users[user].bank.identifier)
            && PaymentStatus::outcome(amount) == PaymentStatus::AcceptedByBank;
        let intent = Intent {
            id: Uuid::new_v4(),
            customer,
            amount,
            currency,
            description: reference,
            destination,
            created: now,
            updated: now,
            payout: false,
            manual: None,
        };
        let intent_id = intent.id;
        state.payments.intents.push(intent);
        if counts {
            let consent = state
                .payments
                .consents
                .iter_mut()
                .find(|c| c.id == id)
                .expect("found above, under the same lock");
            consent.payments += 1;
            consent.paid += amount;
            consent.taken.push((now, amount));
            if consent.used_up() {
                consent.status = ConsentStatus::Consumed;
                consent.history.push(ConsentEvent {
                    id: Uuid::new_v4(),
                    kind: "CONSENT_CONSUMED",
                    description: "The consent's limits are used up.",
                    at: now,
                    by: "LEAN",
                });
            }
        }
        Ok((intent_id, user, account))
    }

    /// `GET /consents/{id}/balance`: the consented account's balance.
    pub(super) fn consent_balance(&self, id: Uuid) -> Result<Reply, Reply> {
        let state = self.lock();
        let consent = state
            .payments
            .consents
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(unknown_consent)?;
        let found = consent.account.and_then(|(user, account)| {
            let u = &self.users[user];
            u.accounts.iter().find(|a| a.id == account)
        });
        let (Some(account), ConsentStatus::Authorised | ConsentStatus::Consumed) =
            (found, consent.status)
        else {
            return Err(error(
                StatusCode::CONFLICT,
                "INVALID_CONSENT_STATUS",
                format!(
                    "The consent is {}: a balance needs an AUTHORISED consent.",
                    consent.status.name()
                ),
                false,
            ));
        };
        Ok(ok(json!({
            "consent_id": consent.id,
            "iban": account.iban,
            "currency": account.currency,
            "balance": units(account.closing_balance()),
            "balance_last_updated": shapes::ts(self.clock.now()),
        })))
    }
}
