//! Lean's payments API in the Mockbank: destinations, payment intents and
//! payments (`/payments/v1/…`), in the shapes Lean's collection records for
//! each endpoint. The rules (outcomes by amount, settling) are in
//! `src/mockbank/payments.rs`; paying is [`MockbankCore::pay`], shared by the
//! control endpoint `/_mockbank/payments` and Link's `pay` in the browser.

use super::*;
use crate::mockbank::payments::{fils, units, Destination, Intent, Payment, PaymentStatus, Source};

/// How an intent is shown: each endpoint records its own set of keys.
#[derive(Clone, Copy, PartialEq)]
enum IntentView {
    /// `POST /payments/v1/intents`.
    Created,
    /// `GET /payments/v1/intents/{id}`.
    One,
    /// An element of `GET /payments/v1/intents`.
    Listed,
}

impl MockbankCore {
    pub(super) fn payments_api(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            ["intents"] => match *m {
                M::POST => self.create_intent(call),
                M::GET => Ok(self.list_intents(call)),
                _ => Err(wrong_method()),
            },
            ["intents", id] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("intent_id", id)?;
                let state = self.lock();
                let intent = state.payments.intent(id).ok_or_else(unknown_intent)?;
                Ok(ok(self.intent_json(&state, intent, IntentView::One)))
            }
            ["destinations"] => match *m {
                M::POST => self.create_destination(call),
                M::GET => {
                    let state = self.lock();
                    let list: Vec<Value> = state
                        .payments
                        .destinations
                        .iter()
                        .map(destination_listed)
                        .collect();
                    Ok(ok(Value::Array(list)))
                }
                _ => Err(wrong_method()),
            },
            [id] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("payment_id", id)?;
                let state = self.lock();
                let payment = state
                    .payments
                    .payments
                    .iter()
                    .find(|p| p.id == id)
                    .ok_or_else(unknown_payment)?;
                Ok(ok(self.payment_json(&state, payment)))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    fn create_intent(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        self.new_intent(&call.json()?)
    }

    /// A payment intent from `body` (Lean's request shape), with
    /// `payment_intent.created` sent: the one code path of the API and of
    /// the boilerplate page's `/_mockbank/link/intent`.
    pub(super) fn new_intent(&self, body: &Value) -> Result<Reply, Reply> {
        let amount = match body.get("amount") {
            None | Some(Value::Null) => return Err(missing("amount")),
            Some(v) => fils(v).ok_or_else(|| invalid("amount", &v.to_string()))?,
        };
        let currency = match body.get("currency").and_then(Value::as_str) {
            None => return Err(missing("currency")),
            Some(c) if c == self.region().currency() => c.to_string(),
            Some(other) => return Err(invalid("currency", other)),
        };
        let customer = match body.get("customer_id").and_then(Value::as_str) {
            None | Some("") => return Err(missing("customer_id")),
            Some(v) => parse_uuid("customer_id", v)?,
        };
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let now = self.clock.now();
        let mut state = self.lock();
        if state.customer(customer).is_none() {
            return Err(unknown_customer());
        }
        let destination = match body.get("payment_destination_id").and_then(Value::as_str) {
            None | Some("") => state
                .payments
                .destinations
                .iter()
                .find(|d| d.default)
                .map(|d| d.id)
                .ok_or_else(|| missing("payment_destination_id"))?,
            Some(v) => {
                let id = parse_uuid("payment_destination_id", v)?;
                state
                    .payments
                    .destination(id)
                    .ok_or_else(|| invalid("payment_destination_id", v))?
                    .id
            }
        };
        let intent = Intent {
            id: Uuid::new_v4(),
            customer,
            amount,
            currency,
            description,
            destination,
            created: now,
            updated: now,
            payout: false,
            manual: None,
        };
        state.payments.intents.push(intent.clone());
        let answer = self.intent_json(&state, &intent, IntentView::Created);
        drop(state);
        self.webhooks.send(
            "payment_intent.created",
            json!({
                "amount": units(intent.amount),
                "reason": intent.description,
                "status": "INTENT_CREATED",
                "currency": intent.currency,
                "metadata": body.get("metadata").cloned().unwrap_or(Value::Null),
                "intent_id": intent.id,
            }),
            "Payment intent created",
        );
        Ok(ok(answer))
    }

    fn list_intents(&self, call: &Call<'_>) -> Reply {
        let state = self.lock();
        let all: Vec<Value> = state
            .payments
            .intents
            .iter()
            .rev()
            .filter(|i| !i.payout)
            .map(|i| self.intent_json(&state, i, IntentView::Listed))
            .collect();
        listing(call, ("page_number", "page_size", 50), "data", &all, None)
    }

    fn create_destination(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let text = |k: &str| field(&body, k);
        let iban = text("iban")
            .ok_or_else(|| missing("iban"))?
            .replace(' ', "");
        let region = self.region();
        // UAE IBANs are 23 characters, Saudi ones 24 (check digits checked).
        let length = if region == crate::mockbank::Region::Ksa {
            24
        } else {
            23
        };
        if !(iban.len() == length
            && iban.starts_with(region.country())
            && iban[2..].chars().all(|c| c.is_ascii_digit())
            && (region == crate::mockbank::Region::Uae
                || crate::mockbank::region::iban_valid(&iban)))
        {
            return Err(invalid("iban", &iban));
        }
        let name = text("name").ok_or_else(|| missing("name"))?;
        let destination = Destination {
            id: Uuid::new_v4(),
            bank_identifier: region.destination_bank().into(),
            display_name: text("display_name").unwrap_or_else(|| name.clone()),
            name,
            iban,
            address: text("address").unwrap_or_default(),
            city: text("city").unwrap_or_default(),
            country: text("country").unwrap_or_else(|| region.country3().into()),
            bank_type: text("bank_type").unwrap_or_else(|| "RETAIL".into()),
            currency: region.currency().into(),
            default: false,
            postal_code: String::new(),
        };
        let answer = json!({
            "id": destination.id,
            "status": "ACTIVE",
            "default": destination.default,
            "branch_address": format!("{}, {}", destination.city, destination.country),
            "name": destination.name,
            "iban": destination.iban,
            "display_name": destination.display_name,
            "address": destination.address,
            "city": destination.city,
            "country": destination.country,
            "swift_code": destination.swift_code(),
            "account_number": destination.account_number(),
        });
        self.lock().payments.destinations.push(destination);
        Ok(ok(answer))
    }

    /// Test user `user` pays `intent_id` from `account` (one of theirs): a
    /// payment `PENDING_WITH_BANK` with `payment.created` now, and its
    /// outcome (by the amount) with `payment.updated` after
    /// `mockbank.async_delay`. A bank that is down fails it at once.
    pub(in crate::mockbank) fn pay(
        &self,
        intent_id: Uuid,
        user: usize,
        account: Uuid,
    ) -> Result<Value, Reply> {
        self.pay_from(intent_id, user, account, None)
    }

    /// [`Self::pay`], with the payment source it comes from when known (a
    /// payout's, a checkout's, an Account-on-File consent's).
    pub(in crate::mockbank) fn pay_from(
        &self,
        intent_id: Uuid,
        user: usize,
        account: Uuid,
        source: Option<Uuid>,
    ) -> Result<Value, Reply> {
        let u = &self.users[user];
        if !u.accounts.iter().any(|a| a.id == account) {
            return Err(invalid("account_id", &account.to_string()));
        }
        let now = self.clock.elapsed();
        let wall = self.clock.now();
        let mut state = self.lock();
        let intent = state
            .payments
            .intent(intent_id)
            .ok_or_else(unknown_intent)?
            .clone();
        let paid = state.payments.payments_of(intent_id).any(|p| {
            p.status(now) != PaymentStatus::Failed && p.outcome != PaymentStatus::RejectedByBank
        });
        if paid {
            return Err(error(
                StatusCode::CONFLICT,
                "INTENT_ALREADY_PAID",
                "This payment intent has a payment that is pending or accepted.",
                false,
            ));
        }
        // A payout that waits for the app's authorisation (or was rejected)
        // is paid only once authorised, whoever asks.
        if intent.manual.is_some_and(|m| m.decided != Some(true)) {
            return Err(error(
                StatusCode::CONFLICT,
                "PAYOUT_NOT_AUTHORIZED",
                "This payout waits for the app's authorisation, or was rejected: it cannot be paid.",
                false,
            ));
        }
        let bank_up = state.bank_up(u.bank.identifier);
        let outcome = if bank_up {
            PaymentStatus::outcome(intent.amount)
        } else {
            PaymentStatus::Failed
        };
        let settles = if bank_up {
            now + self.settings.async_delay
        } else {
            now
        };
        let payment = Payment {
            id: Uuid::new_v4(),
            intent: intent_id,
            source: source.unwrap_or_else(|| Uuid::new_v5(&intent.customer, u.username.as_bytes())),
            user,
            account,
            outcome,
            settles,
            submitted: wall,
            initiated: wall,
            bank_reference: format!(
                "MOCK{}",
                &Uuid::new_v4().simple().to_string()[..12].to_uppercase()
            ),
        };
        state.payments.payments.push(payment.clone());
        let answer = self.payment_json(&state, &payment);
        drop(state);
        let payload = |status: PaymentStatus| {
            json!({
                "id": payment.id,
                "amount": units(intent.amount),
                "reason": intent.description,
                "status": status.name(),
                "currency": intent.currency,
                "metadata": null,
                "intent_id": intent.id,
                "customer_id": intent.customer,
                "payment_destination_id": intent.destination,
                "bank_transaction_reference": payment.bank_reference,
            })
        };
        self.webhooks.send(
            "payment.created",
            payload(payment.status(now)),
            "A payment object has been created.",
        );
        let (clock, webhooks, last) = (self.clock.clone(), self.webhooks.clone(), payload(outcome));
        let settles_at = payment.settles;
        tokio::spawn(async move {
            clock.sleep_until(settles_at).await;
            webhooks.send(
                "payment.updated",
                last,
                "A payment object has been updated.",
            );
        });
        Ok(answer)
    }

    /// `/customers/v1/{customer_id}/payment-sources[/{id}]`.
    pub(super) fn payment_sources_api(
        &self,
        call: &Call<'_>,
        customer: &str,
        source: Option<&str>,
    ) -> Result<Reply, Reply> {
        use Method as M;
        let customer = parse_uuid("customer_id", customer)?;
        let now = self.clock.elapsed();
        let mut state = self.lock();
        if state.customer(customer).is_none() {
            return Err(unknown_customer());
        }
        let Some(source) = source else {
            allow(call.method, &[M::GET])?;
            let list: Vec<Value> = state
                .payments
                .sources
                .iter()
                .filter(|s| s.customer == customer)
                .map(|s| self.source_json(s, now, true))
                .collect();
            return Ok(ok(Value::Array(list)));
        };
        let id = parse_uuid("payment_source_id", source)?;
        let at = state
            .payments
            .sources
            .iter()
            .position(|s| s.id == id && s.customer == customer)
            .ok_or_else(unknown_source)?;
        match *call.method {
            M::GET => Ok(ok(self.source_json(
                &state.payments.sources[at],
                now,
                false,
            ))),
            M::DELETE => {
                state.payments.sources.remove(at);
                Ok(ok(json!({})))
            }
            _ => Err(wrong_method()),
        }
    }

    /// Test user `user` pre-authorises `accounts` for payments to the
    /// default destination: a payment source with its beneficiary, and
    /// `payment_source.created` and `payment_source.beneficiary.created`
    /// (then `.updated` when a cool-off ends). The one code path of
    /// `/_mockbank/payment-sources` and Link's `createPaymentSource`.
    pub(in crate::mockbank) fn create_source(
        &self,
        customer: Uuid,
        user: usize,
        accounts: Option<Vec<Uuid>>,
    ) -> Result<Value, Reply> {
        let u = &self.users[user];
        let accounts = accounts.unwrap_or_else(|| u.accounts.iter().map(|a| a.id).collect());
        let now = self.clock.elapsed();
        let mut state = self.lock();
        if state.customer(customer).is_none() {
            return Err(unknown_customer());
        }
        let destination = state
            .payments
            .destinations
            .iter()
            .find(|d| d.default)
            .map(|d| d.id)
            .ok_or_else(|| missing("payment_destination_id"))?;
        let source = Source {
            id: Uuid::new_v4(),
            customer,
            user,
            accounts,
            beneficiaries: vec![self.new_beneficiary(user, destination, now)],
        };
        state.payments.sources.push(source.clone());
        let answer = self.source_json(&source, now, false);
        drop(state);
        let beneficiary = &source.beneficiaries[0];
        self.webhooks.send(
            "payment_source.created",
            json!({
                "id": source.id,
                "status": source.status(now),
                "bank_name": u.bank.name,
                "customer_id": customer,
                "end_user_id": null,
                "bank_identifier": u.bank.identifier,
            }),
            "A payment source was pre-authorized by your customer.",
        );
        self.beneficiary_webhooks(&source, beneficiary, now);
        Ok(answer)
    }

    /// A payment source in the keys Lean records: the list's accounts carry
    /// balances, the single one's do not.
    pub(super) fn source_json(&self, s: &Source, now: Duration, balances: bool) -> Value {
        let user = &self.users[s.user];
        let cooling = s
            .beneficiaries
            .iter()
            .find(|b| b.status(now) != "ACTIVE")
            .or(s.beneficiaries.first());
        let accounts: Vec<Value> = user
            .accounts
            .iter()
            .filter(|a| s.accounts.contains(&a.id))
            .map(|a| {
                let mut out = json!({
                    "id": Uuid::new_v5(&s.id, a.id.as_bytes()),
                    "account_id": a.id,
                    "account_name": a.name(user),
                    "account_number": a.number,
                    "iban": a.iban,
                    "currency": a.currency,
                });
                if balances {
                    out["balance"] = json!(units(a.closing_balance()));
                    out["balance_last_updated"] = json!(shapes::ts(self.clock.now()));
                }
                out
            })
            .collect();
        json!({
            "id": s.id,
            "customer_id": s.customer,
            "app_id": self.settings.client_id,
            "status": s.status(now),
            "beneficiary_cool_off_expiry": cooling.map(|b| shapes::ts(b.active_from_wall)),
            "bank_identifier": user.bank.identifier,
            "beneficiaries": s.beneficiaries.iter().map(|b| json!({
                "id": b.id,
                "payment_destination_id": b.destination,
                "status": b.status(now),
                "beneficiary_cool_off_expiry": shapes::ts(b.active_from_wall),
            })).collect::<Vec<_>>(),
            "accounts": accounts,
        })
    }

    fn intent_json(&self, state: &State, intent: &Intent, view: IntentView) -> Value {
        let payments: Vec<Value> = state
            .payments
            .payments_of(intent.id)
            .map(|p| self.payment_json(state, p))
            .collect();
        let destination = state
            .payments
            .destination(intent.destination)
            .map(|d| destination_of_intent(d, view))
            .unwrap_or(Value::Null);
        let mut out = json!({
            "payment_intent_id": intent.id,
            "customer_id": intent.customer,
            "amount": units(intent.amount),
            "currency": intent.currency,
            "description": intent.description.clone().unwrap_or_else(|| intent.id.simple().to_string()),
            "payments": payments,
            "payment_destination": destination,
        });
        match view {
            IntentView::Created => {
                out["created_at"] = Value::Null;
                out["updated_at"] = Value::Null;
            }
            IntentView::One => {
                out["created_at"] = json!(shapes::ts(intent.created));
                out["updated_at"] = json!(shapes::ts(intent.updated));
            }
            IntentView::Listed => {}
        }
        out
    }

    pub(super) fn payment_json(&self, state: &State, p: &Payment) -> Value {
        let user = &self.users[p.user];
        let account = user.accounts.iter().find(|a| a.id == p.account);
        let intent = state.payments.intent(p.intent);
        let destination = intent.and_then(|i| state.payments.destination(i.destination));
        json!({
            "id": p.id,
            "payment_intent_id": p.intent,
            "payment_source_id": p.source,
            "sender_details": {
                "account_number": account.map(|a| a.number.clone()).unwrap_or_default(),
                "iban": account.map(|a| a.iban.clone()).unwrap_or_default(),
                "name": user.identity.full_name,
            },
            "recipient_details": {
                "account_number": destination.map(|d| d.account_number().to_string()).unwrap_or_default(),
                "iban": destination.map(|d| d.iban.clone()).unwrap_or_default(),
                "name": destination.map(|d| d.name.clone()).unwrap_or_default(),
            },
            "amount": intent.map_or(0.0, |i| units(i.amount)),
            "currency": intent.map_or(self.region().currency().to_string(), |i| i.currency.clone()),
            "description": intent
                .and_then(|i| i.description.clone())
                .unwrap_or_else(|| p.intent.simple().to_string()),
            "submission_timestamp": shapes::ts_ms(p.submitted),
            "initiation_timestamp": shapes::ts_ms(p.initiated),
            "status": p.status(self.clock.elapsed()).name(),
            "bank_transaction_reference": p.bank_reference,
        })
    }
}

/// The destination inside an intent: the keys each endpoint records.
fn destination_of_intent(d: &Destination, view: IntentView) -> Value {
    let mut out = json!({
        "id": d.id,
        "bank_identifier": d.bank_identifier,
        "name": d.name,
        "iban": d.iban,
        "display_name": d.display_name,
        "account_number": d.account_number(),
        "swift_code": d.swift_code(),
        "status": "CONFIRMED",
        "address": d.address,
        "country": d.country,
        "city": d.city,
        "default": d.default,
        "owner_type": "APPLICATION",
    });
    if view == IntentView::Listed {
        return out;
    }
    out["branch_address"] = json!(format!("{}, {}", d.city, d.country));
    out["currency_iso_code"] = json!(d.currency);
    out["confirmation_of_payee_status"] = json!("MATCH");
    out["bank_type"] = json!(d.bank_type);
    if view == IntentView::One {
        for key in [
            "ifsc",
            "sort_code",
            "routing_number",
            "transit_code",
            "postal_code",
        ] {
            out[key] = Value::Null;
        }
    }
    out
}

/// A destination as `GET /payments/v1/destinations` lists it.
fn destination_listed(d: &Destination) -> Value {
    json!({
        "id": d.id,
        "status": "CONFIRMED",
        "default": d.default,
        "name": d.name,
        "iban": d.iban,
        "display_name": d.display_name,
        "address": d.address,
        "city": d.city,
        "country": d.country,
        "swift_code": d.swift_code(),
        "account_number": d.account_number(),
        "currency": d.currency,
    })
}

fn unknown_intent() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_PAYMENT_INTENT",
        "No payment intent with this payment_intent_id.",
        false,
    )
}

pub(super) fn unknown_source() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_PAYMENT_SOURCE",
        "No payment source with this payment_source_id for this customer.",
        false,
    )
}

fn unknown_payment() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_PAYMENT",
        "No payment with this payment_id.",
        false,
    )
}
