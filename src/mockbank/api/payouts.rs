//! Payouts (`/payouts/v1/…`): the app pays out from an account of a payment
//! source to payout destinations it registered. Each payout is a payment
//! intent and a payment ([`MockbankCore::pay_from`]), settling as payments
//! do. In the shapes Lean's collection records.

use super::*;
use crate::mockbank::payments::{fils, units, Destination, Intent, Manual, Payment, PaymentStatus};

/// A payout's status while it waits for the app's manual authorisation.
const AWAITING: &str = "AWAITING_AUTHORIZATION";

impl MockbankCore {
    pub(super) fn payouts_api(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            ["payment", "destinations"] => {
                allow(m, &[M::POST])?;
                self.create_payout_destinations(call)
            }
            ["payment"] => {
                allow(m, &[M::POST])?;
                self.create_payouts(call)
            }
            ["payments"] => {
                allow(m, &[M::GET])?;
                Ok(self.list_payouts(call))
            }
            ["payments", id, "history"] => {
                allow(m, &[M::GET])?;
                let (state, payment) = self.payout(id)?;
                let now = self.clock.elapsed();
                let mut events = vec![json!({
                    "event": "payment.created", "status": PaymentStatus::PendingWithBank.name(),
                    "post_initiation_status": null, "published_at": shapes::ts(payment.submitted),
                })];
                if payment.status(now) != PaymentStatus::PendingWithBank {
                    // What came after initiation is on the payout itself.
                    events.push(json!({
                        "event": "payment.updated", "status": payment.outcome.name(),
                        "post_initiation_status": null,
                        "published_at": shapes::ts(payment.submitted),
                    }));
                }
                drop(state);
                Ok(ok(json!({
                    "content": [{"payment_id": payment.id, "events": events}],
                    "page": {"number": 0, "size": 10, "total_elements": 1, "total_pages": 1, "sort": null},
                })))
            }
            ["intents", id] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("payment_intent_id", id)?;
                let state = self.lock();
                let intent = state
                    .payments
                    .intent(id)
                    .filter(|i| i.payout)
                    .ok_or_else(unknown_payout)?;
                let payment = state.payments.payments_of(id).last();
                let destination = state.payments.destination(intent.destination);
                Ok(ok(json!({
                    "payment_intent_id": intent.id,
                    "customer_id": intent.customer,
                    "amount": units(intent.amount),
                    "currency": intent.currency,
                    "description": intent.description,
                    "external_reference": null,
                    "payment": payment.map(|p| self.payout_json(&state, p)),
                    "payment_destination": destination.map(payout_destination),
                })))
            }
            [id] => {
                allow(m, &[M::GET])?;
                let (state, payment) = self.payout(id)?;
                Ok(ok(self.payout_json(&state, &payment)))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    /// The payout payment `id`, with the state it was found in.
    fn payout(&self, id: &str) -> Result<(std::sync::MutexGuard<'_, State>, Payment), Reply> {
        let id = parse_uuid("payment_id", id)?;
        let state = self.lock();
        let payment = state
            .payments
            .payments
            .iter()
            .find(|p| p.id == id && state.payments.intent(p.intent).is_some_and(|i| i.payout))
            .cloned()
            .ok_or_else(unknown_payout)?;
        Ok((state, payment))
    }

    /// `POST /payouts/v1/payment/destinations`: a list, any IBAN country.
    fn create_payout_destinations(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let items = body
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("body", "give a non-empty array of destinations"))?;
        let mut made = Vec::new();
        for item in items {
            let text = |k: &str| field(item, k);
            let iban = text("iban")
                .ok_or_else(|| missing("iban"))?
                .replace(' ', "");
            let well_formed = iban.is_ascii()
                && (15..=34).contains(&iban.len())
                && iban[..2].chars().all(|c| c.is_ascii_uppercase())
                && iban[2..4].chars().all(|c| c.is_ascii_digit())
                && iban[4..].chars().all(|c| c.is_ascii_alphanumeric());
            if !well_formed {
                return Err(invalid("iban", &iban));
            }
            let name = text("name").ok_or_else(|| missing("name"))?;
            made.push(Destination {
                id: Uuid::new_v4(),
                bank_identifier: text("bank_identifier")
                    .unwrap_or_else(|| self.region().destination_bank().into()),
                display_name: text("display_name").unwrap_or_else(|| name.clone()),
                name,
                iban,
                address: text("address").unwrap_or_default(),
                city: text("city").unwrap_or_default(),
                country: text("country").unwrap_or_else(|| self.region().country3().into()),
                bank_type: "RETAIL".into(),
                currency: text("currency_iso_code")
                    .unwrap_or_else(|| self.region().currency().into()),
                default: false,
                postal_code: text("postal_code").unwrap_or_default(),
            });
        }
        let answer: Vec<Value> = made
            .iter()
            .map(|d| {
                json!({
                    "add_beneficiary_task_id": Uuid::new_v4(),
                    "destination_id": d.id,
                    "bank_identifier": d.bank_identifier,
                    "iban": d.iban,
                    "account_number": d.account_number(),
                    "display_name": d.display_name,
                    "status": "CONFIRMED",
                })
            })
            .collect();
        self.lock().payments.destinations.extend(made);
        Ok(ok(Value::Array(answer)))
    }

    /// `POST /payouts/v1/payment`: from each payment source account, to each
    /// destination given, a payment initiated at once or, without
    /// `authorize_payment: true` (Lean's default is false), once the app
    /// authorises it.
    fn create_payouts(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let details = body
            .get("payment_details")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| missing("payment_details"))?;
        let mut out = Vec::new();
        let mut end_user = None;
        for detail in details {
            let account = parse_uuid(
                "account_id",
                detail
                    .get("account_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )?;
            let (source, customer, user) = {
                let state = self.lock();
                let source = state
                    .payments
                    .sources
                    .iter()
                    .find(|s| s.accounts.contains(&account))
                    .ok_or_else(|| {
                        invalid(
                            "account_id",
                            &format!("{account} (not an account of a payment source)"),
                        )
                    })?;
                (source.id, source.customer, source.user)
            };
            end_user = Some(source);
            for target in detail
                .get("destination_details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(self.payout_to(target, customer, (user, account, source))?);
            }
        }
        Ok(ok(
            json!({"end_user_id": end_user, "payouts_payment_details": out}),
        ))
    }

    /// One payout of `create_payouts`, to the destination `target` names,
    /// from `(user, account, source)`: paid at once with
    /// `authorize_payment: true`, else waiting for the app's authorisation
    /// (`POST /_mockbank/payouts/{payment_intent_id}/authorise`).
    fn payout_to(
        &self,
        target: &Value,
        customer: Uuid,
        (user, account, source): (usize, Uuid, Uuid),
    ) -> Result<Value, Reply> {
        let auto = match target.get("authorize_payment") {
            None | Some(Value::Null) => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| invalid("authorize_payment", &v.to_string()))?,
        };
        let destination = parse_uuid(
            "payment_destination_id",
            target
                .get("payment_destination_id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )?;
        let amount = target.get("amount").and_then(fils).ok_or_else(|| {
            invalid(
                "amount",
                &target
                    .get("amount")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            )
        })?;
        let u = &self.users[user];
        let from = u
            .accounts
            .iter()
            .find(|a| a.id == account)
            .ok_or_else(|| invalid("account_id", &account.to_string()))?;
        let now = self.clock.now();
        let intent = Intent {
            id: Uuid::new_v4(),
            customer,
            amount,
            currency: from.currency.to_string(),
            description: target
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            destination,
            created: now,
            updated: now,
            payout: true,
            manual: (!auto).then_some(Manual {
                user,
                account,
                source,
                decided: None,
            }),
        };
        let recipient = {
            let mut state = self.lock();
            let d = state
                .payments
                .destination(destination)
                .cloned()
                .ok_or_else(|| invalid("payment_destination_id", &destination.to_string()))?;
            state.payments.intents.push(intent.clone());
            d
        };
        if auto {
            self.pay_from(intent.id, user, account, Some(source))?;
        }
        Ok(json!({
            "payment_intent_id": intent.id,
            "initiate_payment_task_id": Uuid::new_v4(),
            "account_number": from.number,
            "iban": from.iban,
            "destination_details": {
                "destination_id": destination,
                "amount": units(amount),
                "currency": intent.currency,
                "payment_status": if auto { "CREATED" } else { AWAITING },
                "error_message": null,
                "recipient_details": {
                    "account_number": recipient.account_number(),
                    "iban": recipient.iban,
                    "name": recipient.name,
                },
            },
            "bank_identifier": u.bank.identifier,
        }))
    }

    /// `POST /_mockbank/payouts/{payment_intent_id}/{authorise|reject}`:
    /// what the app's approver does to a payout waiting for manual
    /// authorisation (in Lean's dashboard). Authorised, it is paid as the
    /// others are, with its webhooks.
    pub(super) fn payout_control(
        &self,
        call: &Call<'_>,
        id: &str,
        action: &str,
    ) -> Result<Reply, Reply> {
        allow(call.method, &[Method::POST])?;
        let id = parse_uuid("payment_intent_id", id)?;
        let authorise = match action {
            "authorise" | "authorize" => true,
            "reject" => false,
            _ => return Err(not_found_url(call.path)),
        };
        let manual = {
            let mut state = self.lock();
            let intent = state
                .payments
                .intents
                .iter_mut()
                .find(|i| i.id == id && i.payout)
                .ok_or_else(unknown_payout)?;
            let Some(manual) = intent.manual.as_mut().filter(|m| m.decided.is_none()) else {
                return Err(error(
                    StatusCode::CONFLICT,
                    "PAYOUT_NOT_AWAITING_AUTHORIZATION",
                    "This payout is not waiting for a manual authorisation.",
                    false,
                ));
            };
            manual.decided = Some(authorise);
            intent.updated = self.clock.now();
            *manual
        };
        if !authorise {
            return Ok(ok(json!({"payment_intent_id": id, "status": "REJECTED"})));
        }
        let payment = self.pay_from(id, manual.user, manual.account, Some(manual.source))?;
        let state = self.lock();
        let p = state
            .payments
            .payments
            .iter()
            .find(|p| Some(p.id.to_string().as_str()) == payment["id"].as_str())
            .ok_or_else(unknown_payout)?;
        Ok(ok(self.payout_json(&state, p)))
    }

    fn list_payouts(&self, call: &Call<'_>) -> Reply {
        let now = self.clock.elapsed();
        let state = self.lock();
        let all: Vec<Value> = state
            .payments
            .intents
            .iter()
            .rev()
            .filter(|i| i.payout)
            .filter_map(|intent| {
                let d = state.payments.destination(intent.destination)?;
                let p = state.payments.payments_of(intent.id).last();
                let status = match (p, intent.manual.and_then(|m| m.decided)) {
                    (Some(p), _) => p.status(now).name(),
                    (None, Some(false)) => "REJECTED",
                    (None, _) => AWAITING,
                };
                Some(json!({
                    "recipient_name": d.name,
                    "recipient_bank_name": d.bank_identifier,
                    "recipient_iban": d.iban,
                    "recipient_cool_off_expiry": shapes::ts(intent.created),
                    "recipient_address": d.address,
                    "recipient_city": d.city,
                    "recipient_country": d.country,
                    "description": intent.description,
                    "currency": intent.currency,
                    "amount": units(intent.amount),
                    "created_at": shapes::ts(intent.created),
                    "updated_at": shapes::ts(intent.updated),
                    "payment_intent_id": intent.id,
                    "auto_authorized": intent.manual.is_none(),
                    "pending_manual_authorization": intent.manual.is_some_and(|m| m.decided.is_none()),
                    "status": status,
                    "post_initiation_status": p.and_then(|p| post_initiation(p, now)),
                    "bank_transaction_reference": p.filter(|p| p.status(now) == PaymentStatus::AcceptedByBank).map(|p| p.bank_reference.clone()),
                }))
            })
            .collect();
        listing(
            call,
            ("page_number", "page_size", 50),
            "content",
            &all,
            Some(Value::Null),
        )
    }

    /// A payout payment: a payment's keys and three of its own.
    fn payout_json(&self, state: &State, p: &Payment) -> Value {
        let now = self.clock.elapsed();
        let mut out = self.payment_json(state, p);
        out["post_initiation_status"] = json!(post_initiation(p, now));
        out["granular_status_code"] = Value::Null;
        out["status_additional_details"] = Value::Null;
        out
    }
}

/// After the bank accepted a payout it is `PROCESSED`; before, nothing.
fn post_initiation(p: &Payment, now: Duration) -> Option<&'static str> {
    (p.status(now) == PaymentStatus::AcceptedByBank).then_some("PROCESSED")
}

/// A payout's destination, in the keys `GET /payouts/v1/intents/{id}` records.
fn payout_destination(d: &Destination) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "bank_identifier": d.bank_identifier,
        "short_name": d.display_name,
        "iban": d.iban,
        "account_number": d.account_number(),
        "swift_code": d.swift_code(),
        "status": "ACTIVE",
        "address": d.address,
        "country": d.country,
        "city": d.city,
        "emirate": d.city,
        "ifsc": null,
        "sort_code": null,
        "cool_off_expiry": null,
        "routing_code": null,
        "transit_code": null,
        "branch_address": d.address,
        "currency_iso_code": d.currency,
        "postal_code": d.postal_code,
    })
}

fn unknown_payout() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_PAYOUT",
        "No payout with this id.",
        false,
    )
}
